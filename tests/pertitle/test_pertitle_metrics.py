"""Metric engine discovery and measurement on tiny lavfi clips (see conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from pertitle_clipspec import FRAMES, H, W

from abrpipe import runner
from abrpipe.pertitle import metrics
from abrpipe.pertitle.metrics import (
    PSNR_CAP_DB,
    MetricEngine,
    MetricEngineError,
    MetricError,
    find_metric_engine,
    list_filters,
    measure,
    self_test,
)

try:
    import imageio_ffmpeg

    IMAGEIO_FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
except Exception:  # not installed, or no binary for this platform
    IMAGEIO_FFMPEG = None

needs_imageio = pytest.mark.skipif(
    IMAGEIO_FFMPEG is None,
    reason="imageio-ffmpeg (the libvmaf ffmpeg) is not installed: pip install imageio-ffmpeg",
)

# (metric, use imageio's ffmpeg?) ; perfect score for identical inputs
ENGINES = [
    pytest.param(("psnr", False), id="system-psnr"),
    pytest.param(("ssim", False), id="system-ssim"),
    pytest.param(("vmaf", True), id="imageio-vmaf", marks=needs_imageio),
    pytest.param(("psnr", True), id="imageio-psnr", marks=needs_imageio),
    pytest.param(("xpsnr", True), id="imageio-xpsnr", marks=needs_imageio),
]
PERFECT = {"psnr": PSNR_CAP_DB, "xpsnr": PSNR_CAP_DB, "ssim": 1.0, "vmaf": 97.0}


@pytest.fixture(params=ENGINES)
def engine(request, system_ffmpeg) -> MetricEngine:
    metric, use_imageio = request.param
    return find_metric_engine(metric, candidates=[IMAGEIO_FFMPEG if use_imageio else system_ffmpeg])


# ------------------------------------------------------------------------------------------------
# discovery
# ------------------------------------------------------------------------------------------------


def test_system_ffmpeg_filters(system_ffmpeg):
    names = list_filters(system_ffmpeg)
    assert {"psnr", "ssim", "scale", "select", "setpts"} <= names
    assert "libvmaf" not in names  # Debian 12's ffmpeg 5.1 is built without libvmaf


@needs_imageio
def test_imageio_ffmpeg_filters():
    names = list_filters(IMAGEIO_FFMPEG)
    assert {"libvmaf", "psnr", "ssim", "xpsnr"} <= names


@needs_imageio
def test_default_engine_prefers_vmaf():
    eng = find_metric_engine()
    assert eng.metric == "vmaf" and eng.has_vmaf and eng.ffmpeg_path == IMAGEIO_FFMPEG


def test_fallback_to_psnr_without_libvmaf(system_ffmpeg):
    eng = find_metric_engine(candidates=["ffmpeg"])
    assert eng == MetricEngine(system_ffmpeg, "psnr", False)


def test_vmaf_unavailable_is_a_clear_error(system_ffmpeg):
    with pytest.raises(MetricEngineError, match="pip install imageio-ffmpeg"):
        find_metric_engine("vmaf", candidates=[system_ffmpeg])
    if "xpsnr" not in list_filters(system_ffmpeg):
        with pytest.raises(MetricEngineError, match="xpsnr"):
            find_metric_engine("xpsnr", candidates=[system_ffmpeg])


def test_bad_inputs_to_discovery(tmp_path):
    with pytest.raises(ValueError, match="unknown metric"):
        find_metric_engine("lpips")
    with pytest.raises(MetricEngineError, match="no usable ffmpeg"):
        find_metric_engine(candidates=[str(tmp_path / "no-such-ffmpeg")])


# ------------------------------------------------------------------------------------------------
# measurement
# ------------------------------------------------------------------------------------------------


def test_identical_good_bad_ordering(engine, clips):
    same = measure(engine, clips.ref, clips.ref, width=W, height=H)
    good = measure(engine, clips.ref, clips.good, width=W, height=H)
    bad = measure(engine, clips.ref, clips.bad, width=W, height=H)  # 160x90, upscaled for scoring
    assert same.metric == good.metric == bad.metric == engine.metric
    assert same.frames == good.frames == bad.frames == FRAMES // 5  # frames 0, 5, ..., 55
    assert same.mean >= PERFECT[engine.metric]
    assert same.mean > good.mean > bad.mean
    margin = {"psnr": 6.0, "xpsnr": 6.0, "ssim": 0.05, "vmaf": 20.0}[engine.metric]
    assert good.mean - bad.mean > margin


def test_container_timestamp_offset_is_normalised(engine, clips):
    """Same frames, timestamps starting at 3 s (mkv) or with B-frame delay (mp4): still identical.

    Without setpts=PTS-STARTPTS the offset copy scores ~25 dB PSNR (frames paired wrongly).
    """
    for copy in (clips.lossless_offset, clips.lossless_mp4):
        res = measure(engine, clips.ref, copy, width=W, height=H)
        assert res.mean >= PERFECT[engine.metric], copy.name
        assert res.frames == FRAMES // 5


def test_every_nth_controls_frame_count(clips, system_ffmpeg):
    eng = find_metric_engine("psnr", candidates=[system_ffmpeg])
    assert measure(eng, clips.ref, clips.good, width=W, height=H, every_nth=1).frames == FRAMES
    assert measure(eng, clips.ref, clips.good, width=W, height=H, every_nth=7).frames == 9  # 0, 7, ..., 56
    with pytest.raises(ValueError, match="every_nth"):
        measure(eng, clips.ref, clips.good, width=W, height=H, every_nth=0)


def test_window_of_reference_against_segment_encode(engine, clips):
    # the distorted file is the 1.0-1.5 s segment: the reference is cut to the same window
    res = measure(
        engine, clips.ref, clips.window, width=W, height=H, every_nth=1, start_s=1.0, duration_s=0.5
    )
    assert res.mean >= PERFECT[engine.metric]
    assert res.frames == 15
    # negative control: without the window the segment is compared with the first 0.5 s
    wrong = measure(engine, clips.ref, clips.window, width=W, height=H, every_nth=1)
    assert wrong.mean < PERFECT[engine.metric]
    assert wrong.frames == 15  # shortest=1: stops when the shorter input ends, no repeated last frame


def test_window_on_both_inputs(clips, system_ffmpeg):
    eng = find_metric_engine("psnr", candidates=[system_ffmpeg])
    res = measure(eng, clips.ref, clips.lossless_offset, width=W, height=H, every_nth=5, start_s=1.0,
                  duration_s=0.5, seek_distorted=True)  # fmt: skip
    assert res.mean == PSNR_CAP_DB and res.frames == 3  # frames 30, 35, 40


def test_measure_at_a_larger_display_size(clips, system_ffmpeg):
    eng = find_metric_engine("psnr", candidates=[system_ffmpeg])
    res = measure(eng, clips.ref, clips.good, width=640, height=360)
    assert 25 < res.mean < PSNR_CAP_DB and res.frames == FRAMES // 5


def test_measure_errors(clips, system_ffmpeg, tmp_path):
    eng = find_metric_engine("psnr", candidates=[system_ffmpeg])
    with pytest.raises(MetricError, match="input not found"):
        measure(eng, clips.ref, tmp_path / "missing.mp4", width=W, height=H)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(MetricError, match="measurement failed"):
        measure(eng, clips.ref, junk, width=W, height=H)
    with pytest.raises(MetricError, match="no frames were compared"):
        measure(eng, clips.ref, clips.good, width=W, height=H, start_s=10.0, seek_distorted=True)


def test_self_test_passes(engine):
    same, worse = self_test(engine)
    assert same.mean > worse.mean


def test_argv_has_sync_and_scaling_steps(clips, system_ffmpeg):
    eng = find_metric_engine("psnr", candidates=[system_ffmpeg])
    argv = metrics.build_argv(eng, clips.ref, clips.bad, width=1280, height=720, every_nth=5, start_s=2.0,
                              duration_s=2.0)  # fmt: skip
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.count("setpts=PTS-STARTPTS") == 2
    assert graph.count("select='not(mod(n\\,5))'") == 2
    assert graph.count("scale=1280:720:flags=bicubic") == 2
    assert graph.count("settb=1,setpts=N") == 2  # index-based pairing after select
    assert "[dis][ref]psnr=" in graph and "shortest=1" in graph
    ref_i, dis_i = [i for i, a in enumerate(argv) if a == "-i"]
    assert argv[ref_i - 4 : ref_i] == ["-ss", "2.000000", "-t", "2.000000"]  # window on the reference
    assert argv[dis_i - 2 : dis_i] == ["-t", "2.000000"]  # distorted: from its start, same length


# ------------------------------------------------------------------------------------------------
# process handling
# ------------------------------------------------------------------------------------------------


def test_run_kills_child_on_timeout(monkeypatch):
    started = []
    real_popen = subprocess.Popen

    def spy(*a, **kw):
        p = real_popen(*a, **kw)
        started.append(p)
        return p

    monkeypatch.setattr(runner.subprocess, "Popen", spy)  # metrics runs processes through abrpipe.runner
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        metrics._run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    assert time.monotonic() - t0 < 10
    (proc,) = started
    assert proc.poll() is not None  # terminated and reaped, not left running


def test_run_returns_exit_status_and_output():
    res = metrics._run(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"], 30
    )
    assert (res.returncode, res.stdout.strip(), res.stderr.strip()) == (3, "out", "err")


def test_measure_timeout_becomes_metric_error(clips, system_ffmpeg):
    eng = find_metric_engine("psnr", candidates=[system_ffmpeg])
    with pytest.raises(MetricError, match="timed out"):
        measure(eng, clips.ref, clips.good, width=3840, height=2160, every_nth=1, timeout_s=0.05)


# ------------------------------------------------------------------------------------------------
# pooling segment scores
# ------------------------------------------------------------------------------------------------


def test_combine_scores_matches_one_long_window(clips, system_ffmpeg):
    eng = find_metric_engine("psnr", candidates=[system_ffmpeg])
    whole = measure(eng, clips.ref, clips.good, width=W, height=H, every_nth=1, duration_s=2.0,
                    seek_distorted=True)  # fmt: skip
    parts = [
        measure(
            eng,
            clips.ref,
            clips.good,
            width=W,
            height=H,
            every_nth=1,
            start_s=s,
            duration_s=d,
            seek_distorted=True,
        )  # fmt: skip
        for s, d in ((0.0, 0.5), (0.5, 1.5))
    ]
    assert [p.frames for p in parts] == [15, 45]
    pooled = metrics.combine_scores(parts)
    assert pooled.frames == whole.frames == FRAMES
    # MSE pooling reproduces ffmpeg's own pooled PSNR (a plain mean of the dB values would not)
    assert pooled.mean == pytest.approx(whole.mean, abs=0.01)
    assert abs((parts[0].mean * 15 + parts[1].mean * 45) / 60 - whole.mean) > abs(pooled.mean - whole.mean)


def test_combine_scores_weights_and_errors():
    from abrpipe.pertitle.metrics import QualityScore, combine_scores

    vm = combine_scores([QualityScore("vmaf", 90.0, 30), QualityScore("vmaf", 60.0, 10)])
    assert vm == QualityScore("vmaf", 82.5, 40)
    assert combine_scores(
        [QualityScore("psnr", 40.0, 5), QualityScore("psnr", 40.0, 7)]
    ).mean == pytest.approx(40.0)
    assert combine_scores([QualityScore("psnr", PSNR_CAP_DB, 5)]).mean == PSNR_CAP_DB
    with pytest.raises(ValueError, match="different metrics"):
        combine_scores([QualityScore("vmaf", 90.0, 3), QualityScore("psnr", 40.0, 3)])
    with pytest.raises(ValueError, match="at least one"):
        combine_scores([])


@needs_imageio
def test_batch_scoring_matches_one_run_per_clip(clips):
    """One VMAF process for several trials (one reference read) gives exactly the per-clip scores."""
    from abrpipe.pertitle.metrics import measure_batch

    eng = find_metric_engine("vmaf")
    one_by_one = [measure(eng, clips.ref, d, width=W, height=H) for d in (clips.good, clips.bad, clips.lossless_mp4)]
    batch = measure_batch(eng, clips.ref, [clips.good, clips.bad, clips.lossless_mp4], width=W, height=H)
    assert batch == one_by_one
    assert batch[0].mean > batch[1].mean + 20 and batch[2].mean > 97
