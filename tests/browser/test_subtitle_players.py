"""Subtitles in real players: hls.js and Shaka on the HLS playlist, dash.js and Shaka on the MPD list
the subtitle tracks with their languages, and show the selected track's cues at their own times
(read back from the <video> element's text tracks, where each player puts what it displays)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from harness import play, require_browser, summary
from media import require_ffmpeg_tools

from abrpipe import registry, subtitles
from abrpipe.pipeline import Job, run_job

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from text_media import SIDECAR_CUES, SIDECAR_VTT, SOURCE_CUES, make_text_source  # noqa: E402

pytestmark = pytest.mark.browser

TEXT_PROFILE = str(Path(__file__).resolve().parent.parent / "data" / "text.toml")
RUNS = [("hlsjs", "master.m3u8"), ("shaka", "master.m3u8"), ("dashjs", "manifest.mpd"), ("shaka", "manifest.mpd")]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> Path:
    require_ffmpeg_tools()
    root = tmp_path_factory.mktemp("subtitle-players")
    source = make_text_source(root, captions=False)
    sidecar = root / "fr.vtt"
    sidecar.write_text(SIDECAR_VTT, encoding="utf-8")
    out = root / "out"
    run_job(Job(input=str(source), output=str(out), profile=registry.load(TEXT_PROFILE),
                subtitles=(subtitles.parse_spec(f"fr={sidecar}"),)))
    return out


@pytest.mark.parametrize(("player", "manifest"), RUNS, ids=[f"{p}-{m.split('.')[1]}" for p, m in RUNS])
def test_player_lists_subtitles_and_shows_cues(player, manifest, encoded):
    require_browser()
    # The English track comes from the source (with markup), the French one from the sidecar: each
    # player is asked for one of them, in turn over the runs.
    lang, expected = ("en", SOURCE_CUES) if (player, manifest) in (("hlsjs", "master.m3u8"), ("shaka", "manifest.mpd")) else ("fr", SIDECAR_CUES)
    result = play(encoded, player, manifest, seconds=75, extra_args=["--text", lang, "--phase-timeout", "40"])
    assert result["killed_leftovers"] == 0
    assert result["ok"], summary(result)
    assert sorted(t["lang"] for t in result["text_tracks"]) == ["en", "fr"], result["text_tracks"]
    shown = sorted((c["start"], c["end"], c["text"]) for c in result["cues"] if c["track"] in (lang, ""))
    assert shown == sorted(expected), result["cues"]
