"""abrpipe's own output, for every built-in profile that headless Chromium can decode (H.264, VP9,
AV1, AAC, Opus), played in real players: hls.js and Shaka on the HLS playlist, dash.js and Shaka on
the MPD. A run passes only if playback starts, time advances, forcing the lowest and then the highest
rendition works, and no player error is raised. Profiles with HEVC, AC-3 or E-AC-3 (which Chromium
cannot decode) are checked by validation and ffprobe in the other tests; in a multi-codec ladder the
players must pick the renditions they can decode by CODECS."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from harness import play, require_browser, summary

from abrpipe import registry
from abrpipe.pipeline import Job, run_job

pytestmark = pytest.mark.browser

UNDECODABLE = {"hevc", "hevc-nvenc", "hevc-qsv", "hevc-vaapi", "hevc-videotoolbox", "ac3", "eac3"}
HARDWARE = ("-nvenc", "-qsv", "-vaapi", "-videotoolbox")
PLAYER_RUNS = [("hlsjs", "master.m3u8"), ("dashjs", "manifest.mpd"), ("shaka", "master.m3u8"), ("shaka", "manifest.mpd")]


def builtin_profiles() -> list[str]:
    return sorted(name for name, entry in registry.entries().items() if entry.origin == "builtin")


def playable(name: str) -> bool:
    profile = registry.load(name)
    codecs = {r.codec for r in profile.rungs} | {a.codec for a in profile.audio}
    if any(c.endswith(HARDWARE) for c in codecs):
        return False
    # Playable if at least the video (or, for audio-only, the audio) has a codec Chromium decodes.
    video = {r.codec for r in profile.rungs}
    audio = {a.codec for a in profile.audio}
    return bool(video - UNDECODABLE) if video else bool(audio - UNDECODABLE)


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory) -> Path:
    """A short version of the demo source: 1280x720 @ 30 fps, motion and colour, a stereo tone."""
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed")
    path = tmp_path_factory.mktemp("demo") / "demo.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,hue=H=t",
         "-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000", "-t", "8", "-ac", "2",
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-metadata:s:a:0", "language=eng", str(path)],
        check=True,
    )
    return path


_encoded: dict[str, Path] = {}


def encoded(name: str, clip: Path, root: Path) -> Path:
    if name not in _encoded:
        out = root / f"{name}-abr"
        run_job(Job(input=str(clip), output=str(out), profile=registry.load(name)))
        _encoded[name] = out
    return _encoded[name]


@pytest.fixture(scope="module")
def out_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("players")


def runs() -> list:
    """hls.js and dash.js on every playable profile; Shaka (HLS and DASH) on `default`, to keep the
    suite short."""
    return [
        pytest.param(profile, player, manifest, id=f"{profile}-{player}-{manifest.split('.')[1]}")
        for profile in builtin_profiles() if playable(profile)
        for player, manifest in (PLAYER_RUNS if profile == "default" else PLAYER_RUNS[:2])
    ]  # fmt: skip


@pytest.mark.parametrize(("profile", "player", "manifest"), runs())
def test_builtin_profile_plays(profile, player, manifest, demo_clip, out_root):
    require_browser()
    out = encoded(profile, demo_clip, out_root)
    result = play(out, player, manifest, seconds=90)
    assert result["killed_leftovers"] == 0
    assert result["ok"], summary(result)
    if registry.load(profile).rungs:
        assert len({lvl["height"] for lvl in result["levels"]}) >= 2, "the player saw at least two video renditions"
    else:
        assert len(result["levels"]) >= 2, "the player saw at least two audio renditions"
