"""Protected output played in real players in headless Chromium with EME ClearKey.

DASH cenc and cbcs in Shaka Player and dash.js (keys given to the players' ClearKey configuration);
HLS cenc and cbcs in Shaka, which fetches the key from the KEYFORMAT="identity" URI (hls.js wants
"org.w3.clearkey" plus a license server instead); HLS AES-128 in hls.js and Shaka, across a key change
(a new key every 2 segments). A wrong key must make playback fail, and the test sees it."""

from __future__ import annotations

import base64
import re
import shutil
import sys
from pathlib import Path

import pytest
from harness import play, require_browser, summary
from media import require_ffmpeg_tools

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from protect_media import (  # noqa: E402
    KEY,
    KID,
    ROTATION_KEYS,
    VIDEO2_KID,
    WRONG_KEY,
    encode,
    rotation_cpix,
    tiny_clip,
    widevine_pssh,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    require_ffmpeg_tools()
    return tiny_clip(tmp_path_factory.mktemp("protect-src"))


_outputs: dict[str, Path] = {}


def protected(kind: str, clip: Path, root: Path) -> Path:
    if kind not in _outputs:
        out = root / f"{kind}-abr"
        if kind == "aes128":
            encode(clip, out, "--hls-aes128", "--key-rotation", "2", "--embed-keys")
        elif kind == "cbcs-license":  # no identity URI: HLS players get the key from a ClearKey license server
            pssh = root / "widevine.pssh"
            pssh.write_text(base64.b64encode(widevine_pssh(KID)).decode() + "\n")
            encode(clip, out, "--encrypt", "cbcs", "--key", f"{KID}:{KEY}", "--pssh", str(pssh))
        elif kind == "rotated":  # CENC key rotation: cbcs, a new video and audio key from 2 s on (CPIX)
            encode(clip, out, "--encrypt", "cbcs", "--cpix", str(rotation_cpix(root / "rotation.cpix.xml")))
        else:
            encode(clip, out, "--encrypt", kind, "--key", f"{KID}:{KEY}", "--embed-keys")
        _outputs[kind] = out
    return _outputs[kind]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("protect-players")


RUNS = [
    ("cenc", "shaka", "manifest.mpd"),
    ("cenc", "dashjs", "manifest.mpd"),
    ("cbcs", "shaka", "manifest.mpd"),
    ("cbcs", "dashjs", "manifest.mpd"),
    ("cenc", "shaka", "master.m3u8"),
    ("cbcs", "shaka", "master.m3u8"),
    ("aes128", "hlsjs", "master.m3u8"),
    ("aes128", "shaka", "master.m3u8"),
]


@pytest.mark.parametrize(("scheme", "player", "manifest"), RUNS, ids=[f"{s}-{p}-{m.split('.')[1]}" for s, p, m in RUNS])
def test_protected_output_plays(scheme, player, manifest, clip, root):
    require_browser()
    out = protected(scheme, clip, root)
    # DASH: the keys come from the player's ClearKey configuration. HLS: the player fetches them from
    # the playlists' key URIs (AES-128, and KEYFORMAT="identity" in Shaka), here OUT/keys/ (--embed-keys).
    keys = {KID: KEY} if manifest.endswith(".mpd") else None
    # AES-128: each forced rendition must play 2.5 s, so it crosses the key change at 2 s.
    result = play(out, player, manifest, seconds=60, clearkeys=keys, advance=2.5 if scheme == "aes128" else 1.0)
    assert result["killed_leftovers"] == 0
    assert result["ok"], summary(result)
    assert len({lvl["height"] for lvl in result["levels"]}) >= 2
    if scheme == "aes128":
        levels = [p for p in result["phases"] if p["name"] in ("lowest", "highest")]
        assert len(levels) == 2 and all(p["played_s"] >= 2.5 for p in levels), summary(result)


@pytest.mark.parametrize(("player", "manifest"), [("shaka", "manifest.mpd"), ("dashjs", "manifest.mpd"), ("shaka", "master.m3u8")])
def test_wrong_key_fails_playback(player, manifest, clip, root, tmp_path):
    require_browser()
    if manifest.endswith(".mpd"):
        out = protected("cenc", clip, root)
        result = play(out, player, manifest, seconds=40, clearkeys={KID: WRONG_KEY})
    else:  # HLS: the key the identity URI serves is wrong
        out = tmp_path / "cbcs-wrong-key"
        shutil.copytree(protected("cbcs", clip, root), out)
        (out / "keys" / f"{KID}.key").write_bytes(bytes.fromhex(WRONG_KEY))
        result = play(out, player, manifest, seconds=40)
    assert result["killed_leftovers"] == 0
    assert not result["ok"], "playback with a wrong key must fail: " + summary(result)
    # It fails because the media element cannot decode what the wrong key "decrypted", not for any
    # other reason (a missing file, a player that never loaded).
    assert [p["name"] for p in result["phases"]][:1] == ["load"] and result["phases"][0]["ok"], summary(result)
    assert any("PIPELINE_ERROR_DECODE" in str(e) for e in result["errors"]), summary(result)
    assert not result["http_errors"], summary(result)


ROTATED = [("shaka", "manifest.mpd"), ("dashjs", "manifest.mpd"), ("shaka", "master.m3u8")]


@pytest.mark.parametrize(("player", "manifest"), ROTATED, ids=[f"{p}-{m.split('.')[1]}" for p, m in ROTATED])
def test_cenc_key_rotation_plays_across_the_key_change(player, manifest, clip, root):
    """Every period's key in the player's ClearKey configuration: each forced rendition plays 2.5 s,
    across the key change at 2 s (the later fragments name their key in a seig sample group)."""
    require_browser()
    out = protected("rotated", clip, root)
    result = play(out, player, manifest, seconds=60, clearkeys=ROTATION_KEYS, advance=2.5)
    assert result["killed_leftovers"] == 0
    assert result["ok"], summary(result)
    levels = [p for p in result["phases"] if p["name"] in ("lowest", "highest")]
    assert len(levels) == 2 and all(p["played_s"] >= 2.5 for p in levels), summary(result)


@pytest.mark.parametrize("manifest", ["manifest.mpd", "master.m3u8"])
def test_cenc_key_rotation_with_a_wrong_second_key_fails_at_the_change(manifest, clip, root):
    """The first period's keys are right, the second period's video key is wrong: playback starts,
    then fails with a decode error once it reaches the key change."""
    require_browser()
    out = protected("rotated", clip, root)
    keys = {**ROTATION_KEYS, VIDEO2_KID: WRONG_KEY}
    result = play(out, "shaka", manifest, seconds=40, clearkeys=keys, advance=2.5)
    assert result["killed_leftovers"] == 0
    assert not result["ok"], "a wrong key for the second period must fail playback: " + summary(result)
    phases = {p["name"]: p for p in result["phases"]}
    assert phases["load"]["ok"] and phases["start"]["ok"], summary(result)  # the first period played
    decode = [e for e in result["errors"] if "PIPELINE_ERROR_DECODE" in str(e)]
    assert decode, summary(result)
    # The first packet the decoder cannot take is after the key change (Chromium's timestamp, in µs).
    stamps = [int(t) for e in decode for t in re.findall(r"timestamp=(\d+)", str(e))]
    assert stamps and min(stamps) >= 2_000_000, summary(result)
    assert not result["http_errors"], summary(result)


@pytest.mark.parametrize("key", [KEY, WRONG_KEY], ids=["right-key", "wrong-key"])
def test_hls_cbcs_plays_in_hlsjs_from_a_clearkey_license_server(key, clip, root):
    """hls.js reads KEYFORMAT="org.w3.clearkey" (the line's URI holds the KID) and asks the license
    server it is configured with (here the harness's W3C ClearKey endpoint) for the key. With the
    right key it plays both renditions; with a wrong one it fails with a decode error."""
    require_browser()
    out = protected("cbcs-license", clip, root)
    lines = (out / "180p-300k" / "playlist.m3u8").read_text().splitlines()
    assert not any('KEYFORMAT="identity"' in line for line in lines)  # nothing but the license server gives the key
    result = play(out, "hlsjs", "master.m3u8", seconds=40, license_keys={KID: key})
    assert result["killed_leftovers"] == 0
    if key == KEY:
        assert result["ok"], summary(result)
        assert len({lvl["height"] for lvl in result["levels"]}) >= 2
    else:
        assert not result["ok"], "playback with a wrong key must fail: " + summary(result)
        assert any("PIPELINE_ERROR_DECODE" in str(e) for e in result["errors"]), summary(result)
        assert not result["http_errors"], summary(result)
