"""Helpers for tests: media made with FFmpeg's lavfi sources, and readers that check outputs
independently of abrpipe's own parsers (ffprobe)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY_PROFILE = str(ROOT / "tests" / "data" / "tiny.toml")
SHARED_SCHEMA = ROOT.parent / "shared" / "conformance" / "dash-schema"

# `make test` (CI: root on Debian) sets this: a test whose capability (chattr +i, mounting a tmpfs...)
# is missing must fail there, not skip. On a developer's machine such a test skips, loudly.
REQUIRE_CAPABILITIES = os.environ.get("ABRPIPE_REQUIRE_CAPABILITIES") == "1"


def missing_capability(what: str) -> NoReturn:
    """Fail under `make test`; elsewhere skip with a warning in pytest's summary."""
    if REQUIRE_CAPABILITIES:
        pytest.fail(f"{what}; ABRPIPE_REQUIRE_CAPABILITIES=1 (make test) requires it", pytrace=False)
    warnings.warn(f"CAPABILITY MISSING, test skipped: {what} (make test would fail here)", stacklevel=2)
    pytest.skip(f"CAPABILITY MISSING: {what}")


def require_ffmpeg_tools() -> None:
    """ffmpeg and ffprobe on PATH, or `missing_capability` (a failure under make test)."""
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        missing_capability("ffmpeg/ffprobe are not installed (make test installs them)")


def require_modules(*names: str) -> None:
    """Import these modules (an extra of the project), or `missing_capability` (a failure under make test)."""
    for name in names:
        try:
            __import__(name)
        except ImportError:
            missing_capability(f"the Python module {name} is not installed (make venv installs it)")


requires_ffmpeg = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")), reason="ffmpeg/ffprobe not installed (make test installs them)"
)


def ffmpeg(*args: str, cwd: str | None = None) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True, cwd=cwd)


def make_clip(
    path: Path,
    *,
    size: str = "640x360",
    rate: str = "30",
    seconds: float = 6,
    audio: str | None = "sine=frequency=440:sample_rate=48000",
    extra: tuple[str, ...] = (),
) -> Path:
    """A moving, colourful test clip (testsrc2 + hue rotation) with an optional tone."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate},hue=H=t"]
    if audio:
        args += ["-f", "lavfi", "-i", audio]
    args += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "96k"]
    ffmpeg(*args, *extra, str(path))
    return path


def ffprobe_json(*args: str) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def joined_rendition(rendition_dir: Path, tmp: Path) -> Path:
    """init.mp4 + every segment in order, as one playable file for ffprobe."""
    joined = tmp / f"{rendition_dir.name}.mp4"
    with open(joined, "wb") as out:
        out.write((rendition_dir / "init.mp4").read_bytes())
        for seg in sorted(rendition_dir.glob("seg_*.m4s")):
            out.write(seg.read_bytes())
    return joined


def keyframe_times(rendition_dir: Path, tmp: Path) -> list[float]:
    """Presentation times of key frames, measured by ffprobe on the joined rendition."""
    data = ffprobe_json("-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", str(joined_rendition(rendition_dir, tmp)))
    return sorted(round(float(p["pts_time"]), 3) for p in data["packets"] if "K" in p.get("flags", ""))


def ffmpeg_processes_under(path: str) -> list[int]:
    """PIDs of ffmpeg processes whose command line mentions `path` (orphan checks)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ffmpeg" in cmdline.split(" ")[0] and path in cmdline:
            pids.append(int(pid))
    return pids


@contextlib.contextmanager
def small_tmpfs(mnt: Path, size: str = "256k", *, required: bool = False) -> Iterator[Path]:
    """A tmpfs of `size` mounted at mnt (root only, as CI runs): a disk that fills up. Where it cannot
    be mounted: fails when `required` or under `make test`, else skips loudly (missing_capability)."""
    mnt.mkdir(exist_ok=True)
    missing = pytest.fail if required else missing_capability
    if os.geteuid() != 0 or shutil.which("mount") is None:
        missing("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        missing(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
