"""Session fixtures: small media made once, and one encoded ladder shared by read-only tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from media import SHARED_SCHEMA, TINY_PROFILE, make_clip


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip_360p(media_dir) -> Path:
    """6 s, 640x360 @ 30 fps with a 440 Hz tone."""
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed")
    return make_clip(media_dir / "clip 360p.mp4")


@pytest.fixture(scope="session")
def encoded_tiny(clip_360p, tmp_path_factory) -> Path:
    """The tiny profile's ladder of clip_360p, encoded once for every test that only reads it."""
    from abrpipe import registry
    from abrpipe.pipeline import Job, run_job

    out = tmp_path_factory.mktemp("encoded") / "tiny-abr"
    schema = str(SHARED_SCHEMA) if (SHARED_SCHEMA / "DASH-MPD.xsd").exists() else None
    run_job(Job(input=str(clip_360p), output=str(out), profile=registry.load(TINY_PROFILE), dash_schema=schema))
    return out


