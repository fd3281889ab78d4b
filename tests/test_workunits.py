"""Work units: a chunked encode is the same ladder as a one-unit encode, joins are invisible,
finished units survive a killed run and a damaged one is redone, and --dry-run runs as printed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from media import (
    ROOT,
    SHARED_SCHEMA,
    ffmpeg,
    ffmpeg_processes_under,
    ffprobe_json,
    joined_rendition,
    make_clip,
)

from abrpipe import layout, mp4, registry, workunits
from abrpipe.errors import DependencyError
from abrpipe.model import Chunking, WorkUnit
from abrpipe.plan import plan_ladder
from abrpipe.probe import probe

CRF = str(ROOT / "tests" / "data" / "chunk-crf.toml")
VBR = str(ROOT / "tests" / "data" / "chunk-vbr.toml")


def schema_dir() -> str | None:
    configured = os.environ.get("ABRPIPE_DASH_SCHEMA")
    for candidate in (configured, str(SHARED_SCHEMA)):
        if candidate and os.path.exists(os.path.join(candidate, "DASH-MPD.xsd")):
            return candidate
    return None


def abrpipe(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abrpipe", *args], capture_output=True, text=True, timeout=timeout)


def encode(src: Path, out: Path, profile: str, *extra: str) -> dict:
    schema = schema_dir()
    args = ["encode", str(src), "-o", str(out), "-p", profile, "--json", "-q", *extra]
    if schema:
        args += ["--dash-schema", schema]
    proc = abrpipe(*args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def boxes(rendition: Path) -> list[tuple[int, int, int, bool, list[int]]]:
    """(tfdt, duration, samples, starts with a sync sample, mfhd numbers) of every segment."""
    track = mp4.read_init(str(rendition / "init.mp4"))
    out = []
    for seg in sorted(rendition.glob("seg_*.m4s")):
        s = mp4.read_segment(str(seg), track)
        out.append((s.base_decode_time, s.duration, sum(f.sample_count for f in s.fragments), s.starts_with_sync,
                    [f.sequence_number for f in s.fragments]))
    return out


def frame_count(rendition: Path, tmp: Path) -> int:
    data = ffprobe_json("-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames",
                        str(joined_rendition(rendition, tmp)))
    return int(data["streams"][0]["nb_read_frames"])


# ---------------------------------------------------------------------------------------------
# Pure planning


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("wu") / "tiny.mp4", size="320x180", rate="25", seconds=2)


def test_plan_work_cuts_whole_segments_with_preroll_and_tail(tiny_source: Path):
    source = replace(probe(str(tiny_source)), duration_s=61.0)
    plan = plan_ladder(source, registry.load(CRF))
    seg = plan.gop_frames * plan.segment_gops  # 50 frames at 25 fps
    units = workunits.plan_work(source, plan, Chunking(chunk_s=10, preroll_segments=1, tail_gops=1))
    video = [u for u in units if u.kind == "video"]
    assert [u.kind for u in units] == ["video"] * len(video) + ["audio"]
    assert video[0].start_frame == 0 and video[0].preroll_frames == 0
    for a, b in zip(video, video[1:]):
        assert a.end_frame == b.start_frame  # no gap, no overlap
        assert b.start_frame % seg == 0 and b.preroll_frames == seg and a.tail_frames == plan.gop_frames
        assert b.first_segment == a.first_segment + a.segment_count
    assert video[-1].end_frame is None and video[-1].tail_frames == 0  # the last runs to the end
    assert all(u.segment_count == 5 for u in video[:-1])
    # the last bounded unit's tail still lies a whole segment inside the title
    assert video[-2].end_frame + video[-2].tail_frames + seg <= 61 * 25
    # not chunked, or too short to cut: one unit for the whole title, video and audio
    assert workunits.plan_work(source, plan, Chunking(None)) == [WorkUnit(0, "title", fps=plan.base_fps)]
    short = replace(source, duration_s=3.0)
    assert [u.kind for u in workunits.plan_work(short, plan, Chunking(chunk_s=2))] == ["title"]
    # automatic chunking: whole title below the threshold, DEFAULT_CHUNK_S units above it
    assert workunits.resolve_chunking(None, 60).chunk_s is None
    assert workunits.resolve_chunking(None, workunits.AUTO_MIN_DURATION_S).chunk_s == workunits.DEFAULT_CHUNK_S
    assert workunits.resolve_chunking(0, 7200).chunk_s is None


def test_a_worker_with_another_ffmpeg_build_refuses_the_unit(tiny_source: Path, tmp_path: Path):
    source = probe(str(tiny_source))
    plan = plan_ladder(source, registry.load(CRF))
    unit = workunits.plan_work(source, plan, Chunking(None))[0]
    task = workunits.UnitTask(source, plan, unit, str(tmp_path / "units"), "sha256:x", "ffmpeg version 0.0 [other]", "t")
    with pytest.raises(DependencyError, match="ffmpeg build differs") as info:
        workunits.execute(task)
    assert "same ffmpeg build" in (info.value.hint or "")
    assert not (tmp_path / "units" / unit.name).exists()


def test_dry_run_prints_commands_that_run_as_printed(tmp_path: Path):
    src = make_clip(tmp_path / "in.mp4", size="320x180", rate="25", seconds=6)
    out = tmp_path / "out"
    proc = abrpipe("encode", str(src), "-o", str(out), "-p", CRF, "--chunk", "2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 3  # two video units (6 s in 2-s units: the last runs to the end) and the audio
    for line in lines:
        run = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (line, run.stderr)
    units = Path(layout.units_dir(str(out)))
    for name, stream in (("unit-0000", "stream0"), ("unit-0001", "stream1"), ("unit-audio", "audio-stream0")):
        assert (units / name / stream / "init.mp4").is_file()
        assert list((units / name / stream).glob("seg_*.m4s"))
    assert not out.exists()  # a dry run publishes nothing


# ---------------------------------------------------------------------------------------------
# The assembled ladder is the one-unit ladder


SOURCES = {
    # name: (frame rate, extra encoder options of the source)
    "25fps": ("25", ()),
    "29.97fps": ("30000/1001", ()),
    "30fps": ("30", ()),
    # keyframes every 37 frames with B-frames: none of the units starts on a source keyframe
    "30fps-offgrid-keyframes": ("30", ("-g", "37", "-bf", "3")),
}


@pytest.fixture(scope="module")
def pair(request, tmp_path_factory) -> tuple[Path, Path, Path, dict]:
    rate, extra = SOURCES[request.param]
    tmp = tmp_path_factory.mktemp(request.param.replace(".", "_"))
    src = make_clip(tmp / "src.mp4", size="320x180", rate=rate, seconds=8, extra=extra)
    one = tmp / "one"
    encode(src, one, CRF, "--chunk", "off")
    chunked = tmp / "chunked"
    report = encode(src, chunked, CRF, "--chunk", "2", "--workers", "2")
    return src, one, chunked, report


@pytest.mark.slow
@pytest.mark.parametrize("pair", list(SOURCES), indirect=True)
def test_chunked_ladder_has_the_shape_and_frames_of_the_one_unit_ladder(pair, tmp_path: Path):
    src, one, chunked, report = pair
    units = report["encode"]["units"]
    assert [u["kind"] for u in units] == ["video"] * 3 + ["audio"]  # 8 s in 2-s units, then the audio
    assert all(u["attempts"] == 1 and not u["reused"] and u["cpu_s"] > 0 for u in units)
    ids = sorted(p.name for p in one.iterdir() if p.is_dir())
    assert ids == sorted(p.name for p in chunked.iterdir() if p.is_dir()) and len(ids) == 3
    video = [i for i in ids if not i.startswith("audio")]
    for rid in ids:
        a, b = boxes(one / rid), boxes(chunked / rid)
        # same number of segments, same start and duration of each (to the tick), same samples
        assert [s[:3] for s in a] == [s[:3] for s in b], rid
        for (t0, d0, *_), (t1, *_) in zip(b, b[1:]):
            assert t0 + d0 == t1  # tfdt continuous across unit joins
        numbers = [n for s in b for n in s[4]]
        assert numbers == sorted(set(numbers))  # mfhd increasing, no repeat at a join
        if rid in video:
            assert all(s[3] for s in b)  # every segment starts with a key frame
            assert frame_count(chunked / rid, tmp_path) == frame_count(one / rid, tmp_path)
    # keyframes at the same times on every rung, as in the one-unit encode
    starts = {rid: [round(s[0] / mp4.read_init(str(chunked / rid / "init.mp4")).timescale, 3) for s in boxes(chunked / rid)]
              for rid in video}
    assert len(set(map(tuple, starts.values()))) == 1
    proc = abrpipe("validate", str(chunked), "--json", *(["--dash-schema", schema_dir()] if schema_dir() else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    findings = json.loads(proc.stdout)
    assert not [f for f in findings.get("findings", []) if f.get("severity") == "error"]
    if schema_dir() is None:
        pytest.skip("MPEG-DASH XSD not present (../shared/conformance/dash-schema): validated without the schema")


def _psnr_y(rendition: Path, src: Path, width: int, height: int, fps: str, stats: Path) -> list[float]:
    """Per-frame PSNR-Y of a rendition against the source brought to the rendition's size and rate."""
    ffmpeg("-i", str(rendition / "playlist.m3u8"), "-i", str(src), "-lavfi",
           f"[1:v]fps={fps},scale={width}:{height}:flags=bicubic,setsar=1,setpts=PTS-STARTPTS[ref];"
           f"[0:v]setpts=PTS-STARTPTS[enc];[enc][ref]psnr=stats_file={stats}", "-f", "null", "-")
    return [float(m.group(1)) for m in (re.search(r"psnr_y:([0-9.]+|inf)", line) for line in stats.read_text().splitlines()) if m]


@pytest.mark.slow
@pytest.mark.parametrize("pair", ["25fps", "29.97fps"], indirect=True)
def test_joins_are_invisible_with_capped_crf(pair, tmp_path: Path):
    """Decoded frames equal the one-unit encode, or PSNR-Y within 0.1 dB over a GOP either side of
    every join, on every rung."""
    src, one, chunked, report = pair
    joins_s = [u["start_s"] for u in report["encode"]["units"] if u["kind"] == "video" and u["start_s"] > 0]
    assert len(joins_s) == 2
    record = json.loads((chunked / "abrpipe.json").read_text())
    for r in (r for r in record["renditions"] if r["kind"] == "video"):
        fps = Fraction(r["frame_rate"]).limit_denominator(1001)
        same = [ffmpeg_md5(one / r["id"]), ffmpeg_md5(chunked / r["id"])]
        if same[0] == same[1]:
            continue
        a = _psnr_y(one / r["id"], src, r["width"], r["height"], str(fps), tmp_path / "a.log")
        b = _psnr_y(chunked / r["id"], src, r["width"], r["height"], str(fps), tmp_path / "b.log")
        assert len(a) == len(b)
        gop = round(fps)  # 1-s GOPs
        for join in joins_s:
            n = round(join * fps)
            window = slice(max(0, n - gop), n + gop)
            mean_a = sum(a[window]) / len(a[window])
            mean_b = sum(b[window]) / len(b[window])
            assert abs(mean_a - mean_b) < 0.1, (r["id"], join, mean_a, mean_b)


def ffmpeg_md5(rendition: Path) -> list[str]:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(rendition / "playlist.m3u8"), "-f", "framemd5", "-"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split(",")[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]


@pytest.mark.slow
def test_capped_vbr_bitrate_within_one_percent_of_the_one_unit_encode(tmp_path: Path):
    # 8-s units: the shorter the units, the more often x264's one-pass rate control starts afresh
    # (4-s units of this 24-s clip drift by 1.6 %; the default units are 180 s).
    src = make_clip(tmp_path / "src.mp4", size="320x180", rate="25", seconds=24)
    one = encode(src, tmp_path / "one", VBR, "--chunk", "off")
    chunked = encode(src, tmp_path / "chunked", VBR, "--chunk", "8", "--workers", "2")
    assert len(chunked["encode"]["units"]) == 4
    for a, b in zip(one["renditions"], chunked["renditions"]):
        assert a["id"] == b["id"]
        if a["kind"] == "video":
            assert abs(b["average_bps"] - a["average_bps"]) <= 0.01 * a["average_bps"], (a, b)


# ---------------------------------------------------------------------------------------------
# Resume


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_finished_units_and_redoes_a_damaged_one(tmp_path: Path):
    src = make_clip(tmp_path / "src.mp4", size="426x240", rate="30", seconds=16)
    out = tmp_path / "out"
    units_root = Path(layout.units_dir(str(out)))
    args = ["encode", str(src), "-o", str(out), "-p", CRF, "--chunk", "2", "--workers", "1", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "abrpipe", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(units_root.glob("unit-*/unit.json"))) < 3:
            assert proc.poll() is None, "the encode ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while ffmpeg_processes_under(str(units_root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ffmpeg_processes_under(str(units_root)) == []  # ffmpeg died with its parent
    assert not out.exists()
    finished = sorted(p.parent.name for p in units_root.glob("unit-*/unit.json"))
    assert len(finished) >= 3
    # damage one finished unit: a few bytes in the middle of a segment
    damaged = finished[1]
    segment = sorted((units_root / damaged).glob("*/seg_*.m4s"))[0]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2: len(data) // 2 + 8] = b"\xff" * 8
    segment.write_bytes(bytes(data))

    report = encode(src, out, CRF, "--chunk", "2", "--workers", "1")
    units = {u["unit"]: u for u in report["encode"]["units"]}
    assert len(units) == 8  # 7 video units of 2 s and the audio
    assert {name for name, u in units.items() if u["reused"]} == set(finished) - {damaged}
    assert not units[damaged]["reused"]
    assert not units_root.exists()  # published: nothing left to resume
    for r in report["renditions"]:
        if r["kind"] == "video":
            expected = 16 * 30 // (2 if r["frame_rate"] < 20 else 1)
            assert frame_count(out / r["id"], tmp_path) == expected


def test_a_source_without_an_index_stays_one_unit(tiny_source: Path):
    """Input seeking in MPEG-TS starts mid-GOP (wrong frames): such a title is never cut."""
    source = replace(probe(str(tiny_source)), duration_s=600.0)
    plan = plan_ladder(source, registry.load(CRF))
    assert len(workunits.plan_work(source, plan, Chunking(chunk_s=10))) > 2
    ts = replace(source, format_name="mpegts")
    assert [u.kind for u in workunits.plan_work(ts, plan, Chunking(chunk_s=10))] == ["title"]


def test_two_pass_ladders_stay_one_unit(tiny_source: Path):
    """Two-pass x264 writes each unit's initial QP into the PPS: the inits would not be identical."""
    source = replace(probe(str(tiny_source)), duration_s=600.0)
    plan = plan_ladder(source, registry.load(CRF))
    two_pass = replace(plan, video=tuple(replace(r, rate_control="2pass") for r in plan.video))
    assert workunits.chunkable(source, two_pass) is not None
    assert [u.kind for u in workunits.plan_work(source, two_pass, Chunking(chunk_s=10))] == ["title"]


def test_one_progress_display_for_all_units(tmp_path: Path):
    """Without a terminal: plain lines with the frames encoded and the units done/running/failed."""
    src = make_clip(tmp_path / "in.mp4", size="320x180", rate="25", seconds=6)
    proc = abrpipe("encode", str(src), "-o", str(tmp_path / "out"), "-p", CRF, "--chunk", "2", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("encode in.mp4:")]
    assert lines
    counts = [re.search(r"\[units (\d)/3 done, (\d) running, 0 failed\]", line) for line in lines]
    assert all(counts) and all(int(m.group(2)) <= 2 for m in counts if m)  # --workers 2: at most 2 at a time
    assert lines[-1].startswith("encode in.mp4: 100.0% 150 frames") and lines[-1].endswith("[units 3/3 done, 0 running, 0 failed]")
