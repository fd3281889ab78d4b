"""Self-test of the real-player harness.

Builds a tiny 2-rendition H.264/AAC stream (320x180 + 640x360, 8 s, 2 s GOP,
CMAF fMP4 segments, HLS master.m3u8 + DASH manifest.mpd over the same files)
with ffmpeg, then checks that hls.js, dash.js and Shaka really play it and
switch renditions, and that a stream with a missing or corrupt segment is
reported as not ok (the harness can fail).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import browser_required, play, profile_processes, require_browser, summary

pytestmark = pytest.mark.browser

GOOD_CASES = [
    ("hlsjs", "master.m3u8"),
    ("dashjs", "manifest.mpd"),
    ("shaka", "master.m3u8"),
    ("shaka", "manifest.mpd"),
]
BROKEN_CASES = [
    ("hlsjs", "master.m3u8"),
    ("dashjs", "manifest.mpd"),
    ("shaka", "manifest.mpd"),
]
VIDEO_REPS = ("rep0", "rep1")  # rep2 is audio
HEIGHTS = (180, 360)


def make_stream(out: Path) -> None:
    """ffmpeg's dash muxer with -hls_playlist 1: one set of fMP4 segments,
    both manifests, layout like abrpipe's (<rep>/init.mp4, <rep>/seg_NNNNN.m4s)."""
    out.mkdir(parents=True)
    for rep in ("rep0", "rep1", "rep2"):
        (out / rep).mkdir()  # the dash muxer does not create directories
    cmd = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=8",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=8",
        "-filter_complex",
        "[0:v]split=2[a][b];[a]scale=320:180[v0];[b]scale=640:360[v1]",
        "-map",
        "[v0]",
        "-map",
        "[v1]",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "50",
        "-keyint_min",
        "50",
        "-sc_threshold",
        "0",
        "-b:v:0",
        "300k",
        "-b:v:1",
        "800k",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-ac",
        "2",
        "-f",
        "dash",
        "-seg_duration",
        "2",
        "-use_template",
        "1",
        "-use_timeline",
        "1",
        "-hls_playlist",
        "1",
        "-adaptation_sets",
        "id=0,streams=v id=1,streams=a",
        "-init_seg_name",
        "rep$RepresentationID$/init.mp4",
        "-media_seg_name",
        "rep$RepresentationID$/seg_$Number%05d$.m4s",
        str(out / "manifest.mpd"),
    ]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    assert (out / "master.m3u8").is_file() and (out / "rep1" / "seg_00004.m4s").is_file()


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    require_browser()
    if shutil.which("ffmpeg") is None:
        if browser_required():
            pytest.fail("ffmpeg missing", pytrace=False)
        pytest.skip("ffmpeg missing")
    out = tmp_path_factory.mktemp("selftest") / "out"
    make_stream(out)
    return out


@pytest.fixture(scope="module")
def broken(stream, tmp_path_factory) -> dict[str, Path]:
    """Copies of the stream whose 2nd video segment (2-4 s) is missing
    (404) or replaced by deterministic garbage, in every video rendition."""
    root = tmp_path_factory.mktemp("broken")
    missing = root / "missing"
    corrupt = root / "corrupt"
    shutil.copytree(stream, missing)
    shutil.copytree(stream, corrupt)
    rnd = random.Random(1234)
    for rep in VIDEO_REPS:
        (missing / rep / "seg_00002.m4s").unlink()
        seg = corrupt / rep / "seg_00002.m4s"
        seg.write_bytes(rnd.randbytes(seg.stat().st_size))
    return {"missing": missing, "corrupt": corrupt}


def assert_no_browser_left(result: dict) -> None:
    assert result["killed_leftovers"] == 0, "play.mjs left Chromium processes behind"
    assert profile_processes(result["user_data_dir"]) == []


@pytest.mark.parametrize("player,manifest", GOOD_CASES, ids=[f"{p}-{m.split('.')[1]}" for p, m in GOOD_CASES])
def test_plays_and_switches(stream, player, manifest):
    r = play(stream, player, manifest, seconds=60)
    msg = summary(r)
    assert r["ok"], msg
    assert r["started"], msg
    assert r["errors"] == [] and r["media_errors"] == [] and r["page_errors"] == [], msg
    assert sorted(level["height"] for level in r["levels"]) == list(HEIGHTS), msg
    phases = {p["name"]: p for p in r["phases"]}
    assert list(phases) == ["load", "start", "lowest", "highest"], msg
    for name, height in (("lowest", HEIGHTS[0]), ("highest", HEIGHTS[-1])):
        ph = phases[name]
        assert ph["ok"], msg
        assert ph["active_level"] == ph["level"], msg  # the player says so
        assert ph["video_height"] == height, msg  # and the decoded frames agree
        assert ph["played_s"] >= 1.0, msg
    assert r["lowest"] != r["highest"], msg
    assert r["final_time"] >= 2.0, msg
    assert_no_browser_left(r)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
@pytest.mark.parametrize(
    "player,manifest", BROKEN_CASES, ids=[f"{p}-{m.split('.')[1]}" for p, m in BROKEN_CASES]
)
def test_broken_segment_is_not_ok(broken, damage, player, manifest):
    r = play(broken[damage], player, manifest, seconds=40)
    msg = summary(r)
    assert r["ok"] is False, msg
    assert r["reason"], msg
    assert r["returncode"] == 1, msg
    # the failure comes from what the player did, not only from the HTTP log
    assert r["errors"] or r["media_errors"] or not all(p["ok"] for p in r["phases"]), msg
    if damage == "missing":
        assert any(e["status"] == 404 for e in r["http_errors"]), msg
    assert_no_browser_left(r)


def test_global_timeout_closes_browser(stream):
    # a 3 s budget cannot cover the phases: the driver must stop by itself,
    # print its JSON and take Chromium down with it
    r = play(stream, "hlsjs", "master.m3u8", seconds=3)
    msg = summary(r)
    assert r["ok"] is False, msg
    assert "timeout" in (r["reason"] or ""), msg
    assert r["harness_wall_s"] < 20, msg
    assert_no_browser_left(r)


def test_missing_manifest_is_not_ok(stream):
    r = play(stream, "shaka", "nope.mpd", seconds=30)
    assert r["ok"] is False, summary(r)
    assert r["phases"] and r["phases"][0]["name"] == "load" and not r["phases"][0]["ok"], summary(r)
    assert_no_browser_left(r)


def test_require_env_switch(monkeypatch):
    import harness

    monkeypatch.setattr(harness, "browser_available", lambda: "chromium missing (simulated)")
    monkeypatch.setenv("ABRPIPE_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception):
        harness.require_browser()
    monkeypatch.delenv("ABRPIPE_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception):
        harness.require_browser()
