"""Fixtures for the per-title tests: tiny lavfi clips made with the system ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from pertitle_clipspec import FPS, SECONDS, H, W


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Clips:
    ref: Path  # testsrc2 320x180, 30 fps, 2 s, lossless y4m
    lossless_offset: Path  # the same frames in ffv1/mkv with timestamps starting at 3 s
    lossless_mp4: Path  # the same frames, x264 lossless (qp 0) with B-frames, mp4
    good: Path  # x264 CRF 20 at 320x180
    bad: Path  # x264 CRF 48 at 160x90 (upscaled for the metric)
    window: Path  # lossless cut of the reference: 1.0 s .. 1.5 s (15 frames)


@pytest.fixture(scope="session")
def system_ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("system ffmpeg is not installed (apt-get install ffmpeg)")
    return path


@pytest.fixture(scope="session")
def clips(system_ffmpeg, tmp_path_factory) -> Clips:
    d = tmp_path_factory.mktemp("pertitle_clips")
    c = Clips(
        ref=d / "ref.y4m",
        lossless_offset=d / "offset.mkv",
        lossless_mp4=d / "lossless.mp4",
        good=d / "good.mp4",
        bad=d / "bad.mp4",
        window=d / "window.y4m",
    )
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate={FPS}:duration={SECONDS}", "-pix_fmt", "yuv420p",
            str(c.ref))  # fmt: skip
    _ffmpeg("-i", str(c.ref), "-c:v", "ffv1", "-output_ts_offset", "3", str(c.lossless_offset))
    _ffmpeg("-i", str(c.ref), "-c:v", "libx264", "-qp", "0", "-bf", "3", str(c.lossless_mp4))
    _ffmpeg("-i", str(c.ref), "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(c.good))
    _ffmpeg("-i", str(c.ref), "-vf", "scale=160:90:flags=lanczos", "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "48", str(c.bad))  # fmt: skip
    _ffmpeg("-ss", "1.0", "-t", "0.5", "-i", str(c.ref), "-f", "yuv4mpegpipe", str(c.window))
    return c
