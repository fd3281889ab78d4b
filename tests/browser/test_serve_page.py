"""The `abrpipe serve` player page in headless Chromium: it loads without a console error, plays
abrpipe's HLS and DASH output, pins the lowest and the highest rendition (each really decoded at its
height, shown in the page), and the video is not blank in a screenshot. The vendored Shaka Player is
the pinned npm package, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import NODE_MODULES, require_browser
from PIL import Image
from serving import Server, run_page

from abrpipe.serve import player_dir

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(encoded_tiny):
    require_browser()
    server = Server(encoded_tiny)
    yield server
    assert server.stop() == 0


def pixel_stdev(path: Path) -> float:
    with Image.open(path) as img:
        hist = img.convert("L").histogram()
    n = sum(hist)
    mean = sum(i * c for i, c in enumerate(hist)) / n
    return (sum(c * (i - mean) ** 2 for i, c in enumerate(hist)) / n) ** 0.5


@pytest.mark.parametrize("manifest", ["master.m3u8", "manifest.mpd"])
def test_player_page_plays_and_pins(served, manifest, tmp_path):
    shot = tmp_path / "video.png"
    result = run_page("player", f"http://127.0.0.1:{served.port}/?manifest={manifest}", seconds=75, screenshot=str(shot))
    assert result["ok"], result
    assert result["console_errors"] == [] and result["page_errors"] == [] and result["http_errors"] == []
    heights = sorted({r["height"] for r in result["renditions"]})
    assert heights == [180, 270, 360], "the page lists the three video renditions of the tiny ladder"
    assert result["table_rows"] == 3
    assert [s["height"] for s in result["steps"]] == [180, 360] and all(s["ok"] for s in result["steps"])
    assert result["final_state"]["videoHeight"] == 360 and "640x360" in result["final_state"]["now"]
    # Not blank: testsrc2 is colour bars and moving patterns; a black or flat frame has a stdev near 0.
    assert pixel_stdev(shot) > 20


def test_vendored_player_is_the_pinned_npm_package():
    require_browser()
    vendored = player_dir() / "vendor" / "shaka-player.compiled.js"
    npm = NODE_MODULES / "shaka-player" / "dist" / "shaka-player.compiled.js"
    assert vendored.read_bytes() == npm.read_bytes()
    assert (player_dir() / "vendor" / "shaka-player.LICENSE").read_text().startswith("\n                                 Apache License")
