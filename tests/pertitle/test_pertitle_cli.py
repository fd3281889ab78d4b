"""Per-title end to end on tiny generated clips: `ladder --per-title`, `compare`, `encode --per-title`.

PSNR-Y keeps these fast (the system ffmpeg has it); the VMAF run is small and needs imageio-ffmpeg.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner
from media import TINY_PROFILE, ffprobe_json, joined_rendition, make_clip, requires_ffmpeg

from abrpipe import registry
from abrpipe.cli import cli
from abrpipe.errors import ExitCode, ProfileError
from abrpipe.plan import plan_ladder
from abrpipe.probe import probe

pytestmark = requires_ffmpeg
pytest.importorskip("scipy")


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abrpipe", *args], capture_output=True, text=True, timeout=timeout)


def check_ladder(rungs: list[dict], source_wh: tuple[int, int], lo_kbps: int, hi_kbps: int, max_rungs: int) -> None:
    """Never above the source, never larger going down, bitrates within the profile's limits."""
    assert 1 <= len(rungs) <= max_rungs
    for r in rungs:
        assert r["width"] <= source_wh[0] and r["height"] <= source_wh[1]
        assert lo_kbps <= r["bitrate_kbps"] <= hi_kbps
        assert r["maxrate_kbps"] >= r["bitrate_kbps"]
    for upper, lower in zip(rungs, rungs[1:], strict=False):
        assert lower["width"] * lower["height"] <= upper["width"] * upper["height"]
        assert lower["bitrate_kbps"] < upper["bitrate_kbps"]


@pytest.fixture(scope="module")
def ladder_run(clip_360p, tmp_path_factory):
    d = tmp_path_factory.mktemp("pertitle_ladder")
    res = run_cli("ladder", str(clip_360p), "--per-title", "--metric", "psnr", "-p", TINY_PROFILE, "--json",
                  "--save-profile", str(d / "title.toml"), "--plot", str(d / "hull.png"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), d


def test_ladder_per_title_json(ladder_run, clip_360p):
    data, _ = ladder_run
    assert data["metric"] == "psnr" and data["codec"] == "h264" and data["preset"] == "ultrafast"
    assert data["resolutions"] == ["640x360", "480x270", "320x180"]
    # A diagonal through CRF x size: the biggest size gets the lowest CRFs, each smaller one slides up.
    assert data["crfs_by_size"] == {"640x360": [18, 24, 30], "480x270": [21, 27, 33], "320x180": [24, 30, 36]}
    assert len(data["trials"]) == 9 and all(t["kbps"] > 0 and 15 < t["quality"] <= 100 for t in data["trials"])
    # a title under 30 s is scored on every 10th frame, here of its two 3-s pieces: 0, 10, ..., 80 at 30 fps;
    # 0, 10, ..., 40 for the 15-fps rung
    assert data["every_nth_frame"] == 10
    assert {t["frames"] for t in data["trials"] if t["height"] == 180} == {2 * 5}
    assert {t["frames"] for t in data["trials"] if t["height"] != 180} == {2 * 9}
    # The lowest rung follows quality: at or below the profile's lowest bitrate (150k), never below the floor
    # of max(32 kbps, a quarter of it).
    assert data["bitrate_range_kbps"] == [150, 600] and 37.5 <= data["floor_kbps"] <= 150
    check_ladder(data["ladder"], (640, 360), 37, 600, 3)  # never below the absolute floor, max(32, 150 / 4)
    # Capped CRF: every rung is encoded at the whole CRF its size's trials put nearest to its bitrate, and its
    # bitrate is the one that CRF gives there; the lowest stays within a CRF step (about 12 %) of the floor.
    trial_crfs = {(t["width"], t["height"]): sorted(t2["crf"] for t2 in data["trials"] if t2["height"] == t["height"]) for t in data["trials"]}
    for r in data["ladder"]:
        crfs = trial_crfs[(r["width"], r["height"])]
        assert isinstance(r["crf"], int) and crfs[0] - 6 <= r["crf"] <= crfs[-1] + 6
    assert 0.85 * data["floor_kbps"] <= data["ladder"][-1]["bitrate_kbps"] <= 1.15 * data["floor_kbps"]
    # 6 s: analysed whole, in two pieces (each decoded once, its reference kept small)
    assert data["windows"] == [{"start_s": 0.0, "duration_s": 3.0}, {"start_s": 3.0, "duration_s": None}]
    assert data["cost"]["cpu_s"] > 0
    # the guard's decision, with the figures behind it (one BD-rate per window: the prediction check)
    decision = data["decision"]
    assert data["used_ladder"] == ("per-title" if decision["per_title"] else "profile")
    assert len(decision["checks"]["window_bd_rate_pct"]) == 2 and decision["checks"]["usable_points"] >= 6
    assert decision["per_title"] == (not decision["reasons"])


def test_saved_profile_round_trips(ladder_run, clip_360p):
    data, d = ladder_run
    assert data["saved_profile"] == str(d / "title.toml")
    loaded = registry.load(str(d / "title.toml"))
    assert [(r.width, r.height, r.bitrate_kbps, r.maxrate_kbps, loaded.rate_control_of(r), loaded.crf_of(r)) for r in loaded.rungs] == [
        (r["width"], r["height"], r["bitrate_kbps"], r["maxrate_kbps"], "crf", r["crf"]) for r in data["ladder"]
    ]
    plan = plan_ladder(probe(str(clip_360p)), loaded)  # encodes at exactly the sizes the hull picked
    assert [(r.width, r.height, r.bitrate_kbps) for r in plan.video] == [
        (r["width"], r["height"], r["bitrate_kbps"]) for r in data["ladder"]
    ]
    assert loaded.preset == "ultrafast" and [a.bitrate_kbps for a in loaded.audio] == [64]
    assert (d / "hull.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and data["plot"] == str(d / "hull.png")


def test_usage_errors(clip_360p, tmp_path):
    def invoke(*args):
        return CliRunner().invoke(cli, list(args))

    res = invoke("ladder", "--per-title")
    assert res.exit_code == ExitCode.USAGE and "needs INPUT" in res.output
    res = invoke("ladder", str(clip_360p), "--plot", str(tmp_path / "x.png"))
    assert res.exit_code == ExitCode.USAGE and "--per-title" in res.output
    res = invoke("encode", str(clip_360p), "--per-title", "--dry-run")
    assert res.exit_code == ExitCode.USAGE and "--save-profile" in res.output
    res = invoke("encode", str(clip_360p), "--metric", "psnr")
    assert res.exit_code == ExitCode.USAGE and "--per-title" in res.output
    mixed = tmp_path / "mixed.toml"
    mixed.write_text('schema = 1\ncodec = "h264"\n[[rungs]]\nsize = "640x360"\nbitrate = "600k"\n'
                     '[[rungs]]\nsize = "640x360"\nbitrate = "500k"\ncodec = "hevc"\n')  # fmt: skip
    res = invoke("ladder", str(clip_360p), "--per-title", "-p", str(mixed))
    assert isinstance(res.exception, ProfileError) and res.exception.exit_code == ExitCode.PROFILE
    assert "single-codec profile, this one has h264, hevc" in res.exception.message


@pytest.mark.slow
def test_compare_json(clip_360p, tmp_path):
    work = tmp_path / "work"
    res = run_cli("compare", str(clip_360p), "-p", TINY_PROFILE, "--per-title", "--metric", "psnr", "--json",
                  "--work", str(work), "--plot", str(tmp_path / "cmp.svg"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    bd = data["bd_rate"]
    assert bd["method"] == "pchip" and 0 < bd["overlap"] <= 1 and math.isfinite(bd["percent"])
    assert data["metric"] == "psnr"
    if bd["valid"]:
        assert data["per_title_wins"] == (bd["percent"] < 0)
        assert ("saves" if bd["percent"] < 0 else "LOSES") in data["verdict"]
    else:  # no win claimed from a small overlap
        assert data["per_title_wins"] is None and data["verdict"].startswith("no verdict")
    assert data["verdict"] in res.stderr
    # ... followed by what `encode --per-title` would do with this title, and why
    said = "uses the per-title ladder" if data["decision"]["per_title"] else "keeps the profile's ladder"
    assert f"{data['verdict']}; encode --per-title {said}" in res.stderr
    assert all(r in res.stderr for r in data["decision"]["reasons"])
    # predicted vs measured, per rung of both ladders, and the error over them
    assert [p["id"] for p in data["prediction"]] == [r["id"] for r in data["fixed"]] + [r["id"] for r in data["per_title"]]
    for p in data["prediction"]:
        assert p["quality_error"] == pytest.approx(p["measured_quality"] - p["predicted_quality"], abs=0.002)
    assert data["prediction_error"]["all"]["rungs"] == len(data["prediction"])
    assert "predicted by the trials vs measured after the encode" in res.stderr
    assert [r["id"] for r in data["fixed"]] == ["360p-600k", "270p-350k", "180p-150k"]
    assert len(data["per_title"]) == len(data["analysis"]["ladder"])
    for r in data["fixed"] + data["per_title"]:
        assert r["kbps"] > 0 and 15 < r["quality"] <= 100 and r["frames_scored"] > 0
    # the encoded ladders are kept under --work and are what was measured
    for name, rungs in (("fixed", data["fixed"]), ("per-title", data["per_title"])):
        out = work / name
        assert (out / "master.m3u8").exists() and (out / "manifest.mpd").exists()
        record = json.loads((out / "abrpipe.json").read_text())
        avg = {r["id"]: r["average_bps"] / 1000 for r in record["renditions"]}
        assert {r["id"]: pytest.approx(r["kbps"], abs=0.1) for r in rungs} == avg  # video only
    # The per-title rungs are encoded capped-CRF at the CRF the analysis chose, the profile's at their bitrate
    # targets: x264 writes its rate control into the stream (an SEI in the first frame).
    for name, rungs, crfs in (("per-title", data["per_title"], [r["crf"] for r in data["analysis"]["ladder"]]),
                              ("fixed", data["fixed"], [None] * len(data["fixed"]))):  # fmt: skip
        for rung, crf in zip(rungs, crfs, strict=True):
            stream = b"".join(f.read_bytes() for f in sorted((work / name / rung["id"]).iterdir()))
            settings = stream[stream.index(b"x264 - core"):][:2000]
            assert (b"rc=crf" in settings and f" crf={crf}.0 ".encode() in settings) if crf is not None else b"rc=abr" in settings
    assert data["analysis"]["decision"]["checks"]["fixed_rate_efficiency"] > 0
    assert data["cpu_s"]["analysis"] > 0 and data["cpu_s"]["fixed_encode"] > 0
    assert data["analysis_cpu_vs_fixed_encode"] == pytest.approx(data["cpu_s"]["analysis"] / data["cpu_s"]["fixed_encode"], rel=0.01)
    assert "<svg" in (tmp_path / "cmp.svg").read_text()


@pytest.mark.slow
def test_encode_per_title_with_report(clip_360p, tmp_path):
    out = tmp_path / "out"
    res = run_cli("encode", str(clip_360p), "--per-title", "--report", "--metric", "psnr", "-p", TINY_PROFILE,
                  "-o", str(out), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    check_ladder(data["per_title"]["ladder"], (640, 360), 37, 600, 3)
    used = data["per_title"]["decision"]["per_title"]
    profile_ladder = [{"width": w, "height": h} for w, h in ((640, 360), (480, 270), (320, 180))]
    ladder = data["per_title"]["ladder"] if used else profile_ladder
    # the published renditions are the ladder the guard chose (re-probed), with the audio of the profile
    videos = [r for r in data["renditions"] if r["kind"] == "video"]
    assert [(r["width"], r["height"]) for r in videos] == [(r["width"], r["height"]) for r in ladder]
    for r, rung in zip(videos, ladder, strict=True):
        stream = ffprobe_json("-show_streams", str(joined_rendition(out / r["id"], tmp_path)))["streams"][0]
        assert (stream["width"], stream["height"]) == (rung["width"], rung["height"])
    assert any(r["kind"] == "audio" for r in data["renditions"])
    assert json.loads((out / "pertitle.json").read_text())["ladder"] == data["per_title"]["ladder"]
    saved = registry.load(str(out / "pertitle-profile.toml")).rungs
    assert [(r.width, r.height) for r in saved] == [(r["width"], r["height"]) for r in ladder]
    report = json.loads((out / "pertitle-report.json").read_text())
    published = "per_title" if used else "fixed"
    assert report["bd_rate"]["overlap"] > 0 and [r["id"] for r in report[published]] == [r["id"] for r in videos]
    assert (out / "pertitle-report.png").exists() and report == data["per_title_report"]
    # Published with the ladder in one rename: the report names OUT, and no work area is left.
    assert report["outputs"][published] == str(out) and not (tmp_path / "out.partial").exists()
    # The HTML report draws the hull and marks every rung of the per-title ladder at its bitrate.
    page = (out / "report.html").read_text()
    assert data["report"] == str(out / "report.html") and "upper convex hull" in page
    for i, rung in enumerate(data["per_title"]["ladder"]):
        assert f'data-key="pertitle.rung.{i}" data-value="{rung["width"]}x{rung["height"]}@{rung["bitrate_kbps"]:g}"' in page


@pytest.mark.slow
def test_encode_per_title_keeps_the_profile_ladder_without_a_confident_saving(clip_360p, tmp_path):
    """Never worse: asked for a saving the trials cannot predict, `encode --per-title` publishes the
    profile's own ladder, says so on stderr and records why in pertitle.json."""
    out = tmp_path / "out"
    res = run_cli("encode", str(clip_360p), "--per-title", "--metric", "psnr", "--min-saving", "99", "-p", TINY_PROFILE,
                  "-o", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "decision: the profile's ladder is kept: predicted BD-rate" in res.stderr
    assert "is not a saving of at least 99%" in res.stderr
    analysis = json.loads((out / "pertitle.json").read_text())
    assert analysis["used_ladder"] == "profile" and not analysis["decision"]["per_title"]
    assert any("not a saving of at least 99%" in r for r in analysis["decision"]["reasons"])
    record = json.loads((out / "abrpipe.json").read_text())
    videos = [r for r in record["renditions"] if r["kind"] == "video"]
    assert [r["id"] for r in videos] == ["360p-600k", "270p-350k", "180p-150k"]
    for r in videos:  # re-probed: the profile's sizes, not the per-title ones
        stream = ffprobe_json("-show_streams", str(joined_rendition(out / r["id"], tmp_path)))["streams"][0]
        assert (stream["width"], stream["height"]) == (r["width"], r["height"])
    saved = registry.load(str(out / "pertitle-profile.toml"))
    assert [(s.width, s.height, s.bitrate_kbps) for s in saved.rungs] == [(640, 360, 600), (480, 270, 350), (320, 180, 150)]


def test_min_saving_goes_with_per_title(clip_360p):
    res = CliRunner().invoke(cli, ["encode", str(clip_360p), "--min-saving", "5"])
    assert res.exit_code == ExitCode.USAGE and "--min-saving go with --per-title" in res.output


@pytest.mark.slow
def test_windows_on_mpeg_ts_source(tmp_path):
    """Sampled windows cut with -ss on a container without an index: trial and reference still pair up."""
    from abrpipe.pertitle.analysis import AnalysisOptions, analyse

    clip = make_clip(tmp_path / "clip.ts", seconds=6, audio=None, extra=("-f", "mpegts"))
    opts = AnalysisOptions(metric="psnr", whole_below_s=0, segment_s=1.0, crfs=(20, 40), seconds_per_segment=20, min_segments=2,
                           every_nth=5, short_every_nth=5, scene_aware=False)  # fmt: skip
    a = analyse(probe(str(clip)), registry.load(TINY_PROFILE), opts)
    assert [w.start_s for w in a.windows] == [1.0, 4.0] and len(a.trials) == 6
    for t in a.trials:
        assert t.frames == (2 * 30 // 5 if t.height != 180 else 2 * 15 // 5)
        assert t.quality > (30 if t.crf == 20 else 20)  # a misaligned pair of frames scores far lower
    good = {t.height: t.quality for t in a.trials if t.crf == 20}
    assert good[360] > good[270] > good[180]


def test_scene_cuts_find_a_hard_cut(tmp_path):
    """The shot-cut finder behind scene-aware windows: one hard cut, at 1.5 s, and nothing else."""
    from abrpipe.pertitle.analysis import scene_cuts

    clip = tmp_path / "cut.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=1.5",
                    "-f", "lavfi", "-i", "mandelbrot=size=320x180:rate=30,trim=duration=1.5",
                    "-filter_complex", "[0][1]concat=n=2:v=1,format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
                    str(clip)], check=True, timeout=120)  # fmt: skip
    cuts = scene_cuts(probe(str(clip)), 0.3)
    assert len(cuts) == 1 and cuts[0] == pytest.approx(1.5, abs=0.05)


@pytest.mark.slow
def test_vmaf_when_available(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        pytest.skip("imageio-ffmpeg has no binary for this platform")
    clip = make_clip(tmp_path / "small.mp4", size="480x270", seconds=3, audio=None)
    res = run_cli("ladder", str(clip), "--per-title", "-p", TINY_PROFILE, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["metric"] == "vmaf" and data["saturation"] == 95.0
    assert data["resolutions"] == ["480x270", "320x180"]
    assert all(0 <= t["quality"] <= 100 for t in data["trials"])
    check_ladder(data["ladder"], (480, 270), 37, 350, 2)  # never below the absolute floor
