"""The CLI as users and CI call it: --json on stdout, one error line and an exit code on stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from media import TINY_PROFILE, ffmpeg_processes_under, make_clip, requires_ffmpeg

from abrpipe.cli import cli
from abrpipe.errors import ExitCode

pytestmark = requires_ffmpeg


def run_cli(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    """The real entry point (`python -m abrpipe`): exit codes and stream separation as users see them."""
    return subprocess.run([sys.executable, "-m", "abrpipe", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("encode", "ladder", "probe", "profiles", "validate", "batch", "compare"):
        assert command in result.stdout


@pytest.mark.parametrize("module", ["validate_cmd", "batch_cmd", "pertitle_cmd"])
def test_broken_core_command_import_is_an_error(module):
    """A command module that cannot be imported is a broken installation: abrpipe must fail, not run
    on without that command."""
    code = (
        "import sys\n"
        f"sys.modules['abrpipe.cli.{module}'] = None  # makes the import raise ModuleNotFoundError\n"
        "from abrpipe.cli import main\n"
        "main(['--help'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0, result.stdout
    assert f"abrpipe.cli.{module}" in result.stderr


def test_probe_json(clip_360p):
    result = CliRunner().invoke(cli, ["probe", str(clip_360p), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["video"]["width"] == 640 and data["video"]["frame_rate"] == "30"
    assert data["audio"][0]["codec"] == "aac" and data["duration_s"] == pytest.approx(6.0, abs=0.1)


def test_ladder_without_source_lists_the_profile():
    result = CliRunner().invoke(cli, ["ladder", "--profile", "720p", "--json"])
    data = json.loads(result.stdout)
    assert [r["size"] for r in data["rungs"]] == ["1280x720", "960x540", "640x360", "416x234"]


def test_ladder_with_source_reports_dropped_rungs(clip_360p):
    result = CliRunner().invoke(cli, ["ladder", str(clip_360p), "--profile", "default", "--json"])
    data = json.loads(result.stdout)
    assert max(r["height"] for r in data["video"]) == 360
    assert len(data["dropped"]) == 7  # 2x1080p, 2x720p, 540p, 2x432p
    assert all("never upscales" in d["reason"] for d in data["dropped"])


def test_dry_run_prints_the_command_and_runs_nothing(clip_360p, tmp_path):
    out = tmp_path / "out"
    result = run_cli("encode", str(clip_360p), "-o", str(out), "--profile", "720p", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ffmpeg") == 1 and "split=2" in result.stdout and "-filter_complex" in result.stdout
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_encode_json_goes_to_stdout_and_humans_to_stderr(clip_360p, tmp_path):
    out = tmp_path / "o u t"
    result = run_cli("encode", str(clip_360p), "-o", str(out), "--profile", TINY_PROFILE, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["output"] == str(out) and len(data["renditions"]) == 4
    assert "renditions" in result.stderr and "published" in result.stderr
    assert (out / "master.m3u8").exists()


def test_default_output_is_next_to_the_input(tmp_path):
    src = make_clip(tmp_path / "in put $(x) & é.mp4", size="320x180", seconds=2)
    result = run_cli("encode", str(src), "--profile", TINY_PROFILE, "-q")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "in put $(x) & é-abr" / "manifest.mpd").exists()
    assert result.stderr == ""


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda d: d / "missing.mp4", ExitCode.INPUT, "no such file"),
        (lambda d: d, ExitCode.INPUT, "is a directory"),
        (lambda d: written(d / "empty.mp4", b""), ExitCode.INPUT, "empty"),
        (lambda d: written(d / "notes.txt", b"hello\n" * 50), ExitCode.INPUT, "media file"),
    ],
)
def test_bad_inputs_fail_with_one_line(tmp_path, make, code, words):
    path = make(tmp_path)
    result = run_cli("encode", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == code
    errors = [line for line in result.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert len(errors) == 1 and words in errors[0] and str(path.name) in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_profile(clip_360p, tmp_path):
    result = run_cli("encode", str(clip_360p), "--profile", "nope", "-o", str(tmp_path / "o"))
    assert result.returncode == ExitCode.PROFILE and "unknown profile 'nope'" in result.stderr


def test_unwritable_output(clip_360p, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK) and os.geteuid() == 0:
            # root ignores permissions: use a path below a regular file instead
            target = clip_360p / "out"
        else:
            target = locked / "out"
        result = run_cli("encode", str(clip_360p), "-o", str(target), "--profile", TINY_PROFILE)
        assert result.returncode == ExitCode.OUTPUT, result.stderr
        assert "Traceback" not in result.stderr and "abrpipe: error:" in result.stderr
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_ffmpeg_and_publishes_nothing(tmp_path, sig, code):
    src = make_clip(tmp_path / "long.mp4", size="640x360", seconds=40)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "abrpipe", "encode", str(src), "-o", str(out), "--profile", "720p", "--preset", "veryfast"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180
    while not ffmpeg_processes_under(str(src)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ffmpeg_processes_under(str(src)), "ffmpeg never started"
    time.sleep(1.0)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert not out.exists() and not Path(str(out) + ".partial").exists()
    time.sleep(0.5)
    assert ffmpeg_processes_under(str(src)) == []
