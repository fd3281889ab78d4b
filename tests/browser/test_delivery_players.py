"""Thumbnails and the MPEG-TS HLS set in real players (headless Chromium):

- Shaka Player finds the thumbnail track in the MPD (DASH-IF image AdaptationSet), in the HLS
  multivariant playlist (EXT-X-IMAGE-STREAM-INF) and in the sidecar WebVTT track, and for a given time
  returns the right sheet and the right tile in it, on the last, partly filled sheet too; dash.js's
  provideThumbnail() does the same from the MPD;
- hls.js and Shaka play master-ts.m3u8 (MPEG-TS segments, audio muxed in) and switch renditions.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from harness import play, require_browser, summary
from media import require_ffmpeg_tools

from abrpipe import registry
from abrpipe.pipeline import Job, run_job
from abrpipe.thumbnails import parse_spec

pytestmark = pytest.mark.browser

TINY_PROFILE = str(Path(__file__).resolve().parents[1] / "data" / "tiny.toml")
SECONDS = 8
# 1 s per tile, 3x2 per sheet: 8 tiles, sheet 1 full (0-6 s), sheet 2 with 2 of 6 tiles (6-8 s).
SPEC = "1s,64x36,3x2"
# (time, sheet, x, y): the tile a seek bar must show at that time.
EXPECTED = [(0.5, 1, 0, 0), (2.5, 1, 128, 0), (4.5, 1, 64, 36), (6.5, 2, 0, 0), (7.5, 2, 64, 0)]


@pytest.fixture(scope="module")
def delivered(tmp_path_factory) -> Path:
    require_ffmpeg_tools()
    root = tmp_path_factory.mktemp("delivery-players")
    clip = root / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30,hue=H=t",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(SECONDS), "-ac", "2",
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(clip)],
        check=True,
    )
    profile = replace(registry.load(TINY_PROFILE), thumbnails=parse_spec(SPEC), hls_ts=True)
    out = root / "out"
    run_job(Job(input=str(clip), output=str(out), profile=profile))
    return out


@pytest.mark.parametrize(("manifest", "track"), [("manifest.mpd", None), ("master.m3u8", None),
                                                 ("manifest.mpd", "thumbnails/thumbnails.vtt")])
def test_shaka_thumbnails(delivered, manifest, track):
    """From the MPD's image AdaptationSet, the HLS image playlist, and the sidecar WebVTT track."""
    require_browser()
    times = ",".join(str(t) for t, *_ in EXPECTED)
    args = ["--thumbnails", times] + (["--thumbnails-track", track] if track else [])
    result = play(delivered, "shaka", manifest, seconds=60, extra_args=args)
    assert result["ok"], summary(result)
    found = result.get("thumbnails") or {}
    assert len(found.get("tracks", [])) == 1, found
    for (t, sheet, x, y), thumb in zip(EXPECTED, found["thumbnails"], strict=True):
        assert thumb is not None, (manifest, t)
        # (from WebVTT, Shaka keeps the #xywh fragment on the URI: the file is the part before it)
        assert thumb["uri"].split("#")[0].endswith(f"thumbnails/sheet_{sheet:05d}.jpg"), (t, thumb)
        assert (thumb["x"], thumb["y"], thumb["width"], thumb["height"]) == (x, y, 64, 36), (t, thumb)
        assert thumb["startTime"] <= t < thumb["startTime"] + thumb["duration"] + 1e-3, (t, thumb)
        assert abs(thumb["duration"] - 1.0) < 0.01, (t, thumb)


def test_dashjs_thumbnails(delivered):
    require_browser()
    times = ",".join(str(t) for t, *_ in EXPECTED)
    result = play(delivered, "dashjs", "manifest.mpd", seconds=60, extra_args=["--thumbnails", times])
    assert result["ok"], summary(result)
    for (t, sheet, x, y), thumb in zip(EXPECTED, result["thumbnails"]["thumbnails"], strict=True):
        assert thumb is not None, t
        assert thumb["uri"].endswith(f"thumbnails/sheet_{sheet:05d}.jpg"), (t, thumb)
        assert (thumb["x"], thumb["y"], thumb["width"], thumb["height"]) == (x, y, 64, 36), (t, thumb)


@pytest.mark.parametrize("player", ["hlsjs", "shaka"])
def test_ts_set_plays_and_switches(delivered, player):
    require_browser()
    result = play(delivered, player, "master-ts.m3u8", seconds=90)
    assert result["killed_leftovers"] == 0
    assert result["ok"], summary(result)
    assert len({lvl["height"] for lvl in result["levels"]}) == 3, result["levels"]
    assert [p["name"] for p in result["phases"]][-2:] == ["lowest", "highest"]
