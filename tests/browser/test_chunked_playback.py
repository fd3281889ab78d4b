"""A ladder encoded as several work units plays in real players across the unit joins: each
player seeks to just before every join and must play through it (no stall, no jump, no player
error), then switches to the lowest and the highest rendition."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from harness import play, require_browser, summary

from abrpipe import registry
from abrpipe.pipeline import Job, run_job

pytestmark = pytest.mark.browser

TINY = str(Path(__file__).resolve().parents[1] / "data" / "tiny.toml")
RUNS = [("hlsjs", "master.m3u8"), ("dashjs", "manifest.mpd"), ("shaka", "master.m3u8"), ("shaka", "manifest.mpd")]


@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> tuple[Path, list[float]]:
    if not shutil.which("ffmpeg"):
        pytest.fail("ffmpeg not installed (make test installs it)")
    root = tmp_path_factory.mktemp("chunked-play")
    src = root / "src.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30,hue=H=t",
         "-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000", "-t", "12", "-ac", "2",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-c:a", "aac", str(src)],
        check=True,
    )
    out = root / "out"
    result = run_job(Job(input=str(src), output=str(out), profile=registry.load(TINY), chunk_s=4, workers=2))
    assert result.encode is not None
    joins = [u.unit.start_s for u in result.encode.units if u.unit.kind == "video" and u.unit.start_s > 0]
    assert joins == [4.0, 8.0]
    return out, joins


@pytest.mark.parametrize(("player", "manifest"), RUNS, ids=[f"{p}-{m.split('.')[1]}" for p, m in RUNS])
def test_chunked_ladder_plays_through_every_join(player, manifest, chunked):
    require_browser()
    out, joins = chunked
    result = play(out, player, manifest, seconds=90, extra_args=["--seek-through", ",".join(f"{t:g}" for t in joins)])
    assert result["killed_leftovers"] == 0
    assert result["ok"], summary(result)
    through = [p for p in result["phases"] if p["name"].startswith("through ")]
    assert [p["name"] for p in through] == [f"through {t:g}" for t in joins] and all(p["ok"] for p in through)
