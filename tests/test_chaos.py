"""Chaos: break a running batch in every way we can, then run it again.

While a batch runs, a seeded monkey kills random ffmpeg processes, makes a running job's output
(its work area) unwritable for a moment and finally sends SIGTERM to abrpipe itself; it counts the
faults it injected and fails unless every kind happened at least once. A watcher reads every
published manifest the whole time. Then the same command runs again. Asserted: the second run
completes every job, every published output validates, no published output ever had a manifest
naming a missing file, and no ffmpeg process is left behind. SIGKILL of abrpipe (ffmpeg must die
with it) and Ctrl-C of the whole process group are tested on their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_media import (
    ManifestWatcher,
    assert_no_ffmpeg_left,
    ffmpeg_pids,
    make_clip,
    require_ffmpeg,
    validate,
    write_profile,
)
from media import missing_capability

from abrpipe.errors import ExitCode

# Slow enough per job (a few seconds) that the monkey catches ffmpeg at work.
CHAOS_PROFILE = """\
schema = 1
description = "tests: chaos"
preset = "medium"
gop = 1
segment = 1

[[rungs]]
size = "640x360"
bitrate = "600k"

[[rungs]]
size = "320x180"
bitrate = "150k"

[[audio]]
codec = "aac"
bitrate = "64k"
channels = 2
"""
JOBS = 6
SEED = int(os.environ.get("ABRPIPE_CHAOS_SEED", "1234"))


@pytest.fixture(scope="module")
def chaos_media(tmp_path_factory) -> Path:
    require_ffmpeg()
    d = tmp_path_factory.mktemp("chaos_media")
    for i in range(JOBS):
        make_clip(d / f"title{i}.mp4", size="640x360", seconds=4 + i % 2)
    write_profile(d, "chaos", CHAOS_PROFILE)
    return d


@pytest.fixture()
def batch_dir(chaos_media, tmp_path) -> Path:
    for f in chaos_media.iterdir():
        shutil.copy(f, tmp_path / f.name)
    jobs = ['[defaults]\nprofile = "chaos.toml"\noutput_dir = "out"\n']
    jobs += [f'[[jobs]]\ninput = "title{i}.mp4"\n' for i in range(JOBS)]
    (tmp_path / "jobs.toml").write_text("\n".join(jobs), encoding="utf-8")
    (tmp_path / "out").mkdir()
    return tmp_path


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "abrpipe", "batch", "jobs.toml", *args], cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def _wait_for_ffmpeg(marker: str, proc: subprocess.Popen, timeout_s: float = 60) -> list[int]:
    """Until an encoding ffmpeg (not the probe's ffprobe) runs for the batch."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        pids = ffmpeg_pids(marker, names=(b"ffmpeg",))
        if pids:
            return pids
        time.sleep(0.05)
    raise AssertionError("no ffmpeg process started")


class Freezer:
    """Makes one job's OUT (its work area `OUT.partial/`, where ffmpeg is writing, and every folder in
    it) unwritable for a moment: chmod for a normal user, the immutable flag for root (whom
    permissions do not stop). A freeze that cannot be made is a failure (or a loud skip off CI)."""

    def __init__(self) -> None:
        self.root = os.geteuid() == 0
        self.frozen: list[Path] = []
        if self.root and shutil.which("chattr") is None:
            missing_capability("chattr (e2fsprogs) is needed to freeze a job's output as root")

    def _chattr(self, flag: str, path: Path) -> bool:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0

    def freeze(self, work_area: Path) -> bool:
        """True when the work area itself was frozen (its subfolders too, where they still exist)."""
        dirs = [work_area] + sorted(p for p in work_area.rglob("*") if p.is_dir())
        for d in dirs:
            try:
                ok = self._chattr("+i", d) if self.root else (d.chmod(0o555) is None)
            except OSError:
                ok = False
            if ok:
                self.frozen.append(d)
        return work_area in self.frozen

    def thaw(self) -> None:
        for d in reversed(self.frozen):
            if self.root:
                self._chattr("-i", d)
            else:
                with contextlib.suppress(OSError):
                    d.chmod(0o755)
        self.frozen = []


def _outputs(out: Path) -> list[Path]:
    # OUT.partial is a work area, OUT.units the finished work units a stopped job resumes from
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.endswith((".partial", ".units")))


def _assert_all_published_valid(out: Path) -> None:
    for published in _outputs(out):
        report = validate(published)
        assert not report.errors, (published.name, [f"{f.rule}: {f.message}" for f in report.errors])


FAULTS = ("kill-ffmpeg", "freeze-job-output", "sigterm")


@pytest.mark.slow
def test_chaos_monkey_then_rerun_completes_everything(batch_dir):
    require_ffmpeg()
    rng = random.Random(SEED)
    marker = str(batch_dir)
    out = batch_dir / "out"
    freezer = Freezer()
    actions: list[str] = []
    injected = dict.fromkeys(FAULTS, 0)  # faults that really happened, by kind
    args = ("-j", "2", "--retries", "2", "--retry-delay", "0.2", "--report", "report1.json")

    with ManifestWatcher(out) as watcher:
        proc = _start(batch_dir, *args)
        try:
            _wait_for_ffmpeg(marker, proc)
            # Early enough that the batch is still running (the other faults come first; see below).
            sigterm_at = time.monotonic() + rng.uniform(2.0, 4.0)
            while proc.poll() is None:
                pending = [k for k in FAULTS[:2] if not injected[k]]
                if time.monotonic() >= sigterm_at and not pending:
                    break
                time.sleep(rng.uniform(0.3, 0.9))
                # Random, but a kind not injected yet is tried every other time.
                action = rng.choice(pending) if pending and rng.random() < 0.5 else \
                    rng.choice(["kill-ffmpeg", "kill-ffmpeg", "freeze-job-output", "wait", "wait"])
                if action == "kill-ffmpeg":
                    pids = ffmpeg_pids(marker, names=(b"ffmpeg",))
                    if pids:
                        victim = rng.choice(pids)
                        try:
                            os.kill(victim, signal.SIGKILL)
                        except ProcessLookupError:
                            continue
                        injected["kill-ffmpeg"] += 1
                        actions.append(f"killed ffmpeg {victim}")
                elif action == "freeze-job-output":
                    work_areas = [p for p in out.glob("*.partial") if p.is_dir()]
                    if work_areas:
                        victim_dir = rng.choice(sorted(work_areas))
                        try:
                            if freezer.freeze(victim_dir):
                                injected["freeze-job-output"] += 1
                                actions.append(f"froze {victim_dir.name}")
                            time.sleep(rng.uniform(0.2, 0.6))
                        finally:
                            freezer.thaw()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                injected["sigterm"] += 1
                actions.append("SIGTERM abrpipe")
            _, stderr1 = proc.communicate(timeout=60)
        finally:
            freezer.thaw()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        print(f"chaos seed {SEED}: {actions}; injected {injected}; first run exit code {proc.returncode}")
        not_injected = [k for k in FAULTS if not injected[k]]
        assert not not_injected, f"chaos seed {SEED}: never injected {not_injected} (injected {injected}): no chaos, no test"
        assert proc.returncode == 128 + signal.SIGTERM, stderr1
        assert "Traceback" not in stderr1
        assert_no_ffmpeg_left(marker)
        first = json.loads((batch_dir / "report1.json").read_text())
        assert first["interrupted"] == (proc.returncode == 128 + signal.SIGTERM)
        _assert_all_published_valid(out)

        # The same command again, left alone.
        rerun = _start(batch_dir, "-j", "2", "--report", "report2.json")
        _, stderr2 = rerun.communicate(timeout=240)
        assert rerun.returncode == ExitCode.OK, f"chaos seed {SEED}, actions {actions}:\n{stderr2}"
    assert_no_ffmpeg_left(marker)

    second = json.loads((batch_dir / "report2.json").read_text())
    statuses = {j["name"]: j["status"] for j in second["jobs"]}
    assert set(statuses.values()) <= {"succeeded", "skipped"}, statuses
    done_before = {j["name"] for j in first["jobs"] if j["status"] == "succeeded"}
    assert all(statuses[name] == "skipped" for name in done_before), (done_before, statuses)
    assert [p.name for p in _outputs(out)] == sorted(f"title{i}" for i in range(JOBS))
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")], "a work area was left behind"
    _assert_all_published_valid(out)
    assert watcher.checks > 0
    assert watcher.violations == [], f"chaos seed {SEED}, actions {actions}"


@pytest.mark.slow
def test_sigkill_of_abrpipe_takes_ffmpeg_with_it_and_the_rerun_resumes(batch_dir):
    jobs = 2
    (batch_dir / "jobs.toml").write_text(
        '[defaults]\nprofile = "chaos.toml"\noutput_dir = "out"\n' + "".join(f'[[jobs]]\ninput = "title{i}.mp4"\n' for i in range(jobs))
    )
    marker = str(batch_dir)
    out = batch_dir / "out"
    proc = _start(batch_dir, "-j", "2")
    try:
        _wait_for_ffmpeg(marker, proc)
        time.sleep(0.5)
        proc.kill()  # SIGKILL: no handler runs; the children are told by the kernel (PR_SET_PDEATHSIG)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_no_ffmpeg_left(marker, timeout_s=5)
    assert [p for p in out.iterdir() if p.name.endswith(".partial")], "expected the interrupted work areas"
    _assert_all_published_valid(out)

    rerun = _start(batch_dir, "-j", "2", "--report", "report.json")
    _, stderr = rerun.communicate(timeout=240)
    assert rerun.returncode == ExitCode.OK, stderr
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
    assert len(_outputs(out)) == jobs
    _assert_all_published_valid(out)
    assert_no_ffmpeg_left(marker)


@pytest.mark.slow
def test_ctrl_c_stops_the_whole_batch_cleanly(batch_dir):
    """SIGINT to the process group, as a terminal sends it: ffmpeg gets it too."""
    marker = str(batch_dir)
    out = batch_dir / "out"
    proc = _start(batch_dir, "-j", "2", "--report", "report.json", "--junit", "junit.xml")
    try:
        _wait_for_ffmpeg(marker, proc)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("abrpipe: error:")]
    assert len(lines) == 1 and "interrupted" in lines[0]
    assert_no_ffmpeg_left(marker)
    report = json.loads((batch_dir / "report.json").read_text())
    assert report["interrupted"] and report["exit_code"] == 130
    assert {j["status"] for j in report["jobs"]} <= {"succeeded", "interrupted", "cancelled"}
    assert "interrupted" in {j["status"] for j in report["jobs"]}
    assert (batch_dir / "junit.xml").exists()
    # Nothing half-built was published: whatever is in OUT is complete and valid.
    _assert_all_published_valid(out)
    assert len(_outputs(out)) == sum(1 for j in report["jobs"] if j["status"] == "succeeded")


def test_the_watcher_sees_a_manifest_naming_a_missing_file(tmp_path):
    """The watcher above must be able to fail: a published output missing one segment is caught."""
    out = tmp_path / "out"
    title = out / "title"
    (title / "v").mkdir(parents=True)
    (title / "master.m3u8").write_text('#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/playlist.m3u8\n')
    (title / "v" / "playlist.m3u8").write_text(
        '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:1,\nseg_00001.m4s\n#EXTINF:1,\nseg_00002.m4s\n#EXT-X-ENDLIST\n')
    (title / "manifest.mpd").write_text(
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet><Representation id="v">'
        '<SegmentTemplate startNumber="1" media="$RepresentationID$/seg_$Number%05d$.m4s" initialization="v/init.mp4">'
        '<SegmentTimeline><S t="0" d="1" r="1"/></SegmentTimeline></SegmentTemplate>'
        "</Representation></AdaptationSet></Period></MPD>")
    for name in ("init.mp4", "seg_00001.m4s", "seg_00002.m4s"):
        (title / "v" / name).write_bytes(b"x")
    with ManifestWatcher(out) as watcher:
        time.sleep(0.2)
    assert watcher.checks > 0 and watcher.violations == []

    (title / "v" / "seg_00002.m4s").unlink()
    with ManifestWatcher(out) as watcher:
        time.sleep(0.2)
    assert watcher.violations and "v/seg_00002.m4s" in watcher.violations[0]
