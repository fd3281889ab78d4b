"""Bracketing the profile's rungs: one more CRF per size whose rungs lie above its trials (no encoding).

The diagonal CRF search trials small sizes only at high CRFs, so a profile rung such as 540p at
1.5 Mbps lies above every 540p trial. The guard can then only assume the best any size reaches there,
which hides a real saving. :func:`bracket_crfs` picks the CRF that measures such a rung instead; these
tests check the CRF it picks and that the guard's decision then follows the measured curves, both ways.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from media import TINY_PROFILE, ffmpeg, require_modules, requires_ffmpeg

from abrpipe import registry
from abrpipe.pertitle import guard, hull
from abrpipe.plan import PlannedRung
from abrpipe.probe import probe

require_modules("scipy", "bjontegaard")

from abrpipe.pertitle.analysis import AnalysisOptions, Trial, _bd_pair, analyse, bracket_crfs  # noqa: E402  (needs scipy)

SIZES = {720: (1280, 720), 540: (960, 540), 360: (640, 360)}
CAP = {720: 99.0, 540: 93.0, 360: 85.0}
KNEE = {720: 900.0, 540: 450.0, 360: 200.0}
#: What the diagonal search trials: the big size at low CRFs, the small ones at high CRFs.
DIAGONAL = {720: (18, 24, 30), 540: (24, 30, 36), 360: (30, 36, 42)}
#: The profile's ladder (as in test_pertitle_guard): 540p and 360p rungs far above their trials.
FIXED = [(720, 4000), (720, 2500), (540, 1500), (360, 800), (360, 300)]


def trial(height: int, crf: int, scale: float = 1.0) -> Trial:
    """A trial on the same model curves as test_pertitle_guard (x264: 2x the bits per 6 CRF steps)."""
    w, h = SIZES[height]
    knee = KNEE[height] * scale
    kbps = knee * 2 ** ((30 - crf) / 6)
    return Trial(w, h, crf, kbps, CAP[height] * (1 - math.exp(-1.3 * kbps / knee)), 10, 2.0)


def rung(height: int, kbps: int) -> PlannedRung:
    w, h = SIZES[height]
    return PlannedRung(id=f"{h}p-{kbps}k", codec="h264", width=w, height=h, fps=30.0, fps_divisor=1,
                       bitrate_kbps=kbps, maxrate_kbps=kbps, bufsize_kbps=2 * kbps, crf=None, codec_profile=None,
                       level=None, gop_frames=60, rate_control="vbr")  # fmt: skip


def diagonal(scale360: float = 1.0) -> list[Trial]:
    return [trial(h, c, scale360 if h == 360 else 1.0) for h, crfs in DIAGONAL.items() for c in crfs]


def decision(trials: list[Trial]) -> tuple[guard.Decision, list[tuple[hull.Resolution, float]]]:
    """What the guard decides from these trials for the ladder choose_rungs picks from them."""
    points = [t.point() for t in trials]
    env = hull.envelope(points)
    chosen = hull.choose_rungs(env, min_kbps=300, max_kbps=4000, rung_count=5, saturation_quality=95)
    per_title = [(r.resolution, r.kbps) for r in chosen]
    fixed = [(SIZES[h], float(k)) for h, k in FIXED]
    d = guard.decide(pooled=env, per_title=per_title, fixed=fixed, windows=[env], usable_points=len(hull.pareto(points)),
                     bd=_bd_pair, metric_label="VMAF")  # fmt: skip
    return d, per_title


def brackets(trials: list[Trial]) -> dict[hull.Resolution, tuple[int, ...]]:
    return bracket_crfs(trials, [rung(h, k) for h, k in FIXED], {SIZES[h]: c for h, c in DIAGONAL.items()}, "h264",
                        saturation=95.0)  # fmt: skip


def test_one_crf_per_size_whose_rungs_lie_above_its_trials():
    got = brackets(diagonal())
    # 720p's trials reach 3.6 Mbps (its 4 and 2.5 Mbps rungs are saturated there): nothing to add.
    # 540p tops out at 900 kbps under a 1.5 Mbps rung, 360p at 200 kbps under 800 kbps: each gets one
    # CRF aimed above its highest rung, at most 12 steps below its lowest CRF.
    assert got == {SIZES[540]: (18,), SIZES[360]: (18,)}
    for h, (crf,) in ((540, got[SIZES[540]]), (360, got[SIZES[360]])):
        assert trial(h, crf).kbps >= max(k for hh, k in FIXED if hh == h)


def test_no_bracket_when_the_trials_already_cover_the_rungs():
    full = [trial(h, c) for h in SIZES for c in (12, 18, 24, 30, 36, 42)]
    assert bracket_crfs(full, [rung(h, k) for h, k in FIXED], {SIZES[h]: (12, 18, 24, 30, 36, 42) for h in SIZES},
                        "h264", saturation=95.0) == {}  # fmt: skip


def test_no_bracket_for_rungs_already_saturated():
    # Only a 720p rung above 720p's trials, where 720p is saturated: measuring it changes nothing.
    assert bracket_crfs(diagonal(), [rung(720, 8000)], {SIZES[720]: DIAGONAL[720]}, "h264", saturation=95.0) == {}


def test_measuring_the_bracketed_rungs_reveals_a_saving_the_guess_hid():
    trials = diagonal()
    before, _ = decision(trials)
    # Above their trials the 540p and 360p rungs are assumed as good as the best size: no saving.
    assert not before.per_title and before.checks["predicted_bd_rate_pct"] > 0
    extra = [trial(h, c) for (_, h), crfs in brackets(trials).items() for c in crfs]
    after, _ = decision(trials + extra)
    assert after.per_title, after.reasons
    assert after.checks["predicted_bd_rate_pct"] <= -3


def test_measured_rungs_that_do_hold_up_keep_the_profile_ladder():
    """Never worse: when the small size really is as good at its rungs as the guess assumed (a scene
    whose detail 360p keeps), measuring it must not turn into a claimed saving."""
    trials = diagonal(scale360=0.3)
    before, _ = decision(trials)
    extra = [trial(h, c, 0.3 if h == 360 else 1.0) for (_, h), crfs in brackets(trials).items() for c in crfs]
    after, _ = decision(trials + extra)
    assert not before.per_title and not after.per_title
    assert any("is not a saving" in r for r in after.reasons)


def _analyse_bars(tmp_path, max_cost_short: float):
    """The per-title analysis of a cheap 3-s clip with TINY_PROFILE: a 99 % margin, so the first pass never
    decides for the per-title ladder, and the whole CRF diagonal over the 3 sizes (180p at CRF 30/36/42,
    below the profile's 180p rung at 150 kbps)."""
    src = tmp_path / "bars.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=640x360:rate=30:duration=3", "-c:v", "libx264", "-preset", "ultrafast",
           "-crf", "10", "-pix_fmt", "yuv420p", str(src))  # fmt: skip
    opts = AnalysisOptions(metric="psnr", guard_options=guard.GuardOptions(min_saving_pct=99), max_cost_short=max_cost_short,
                           diagonal_sizes=3)  # fmt: skip
    return analyse(probe(str(src)), registry.load(TINY_PROFILE), opts)


@requires_ffmpeg
def test_the_second_pass_measures_the_rung_the_first_only_extrapolated(tmp_path):
    """End to end on a cheap clip: the first pass keeps the profile's ladder (a 99 % margin) and leaves
    the 180p rung (150 kbps) above every 180p trial, so a second pass encodes 180p at one more CRF on
    every window, and the rung is then interpolated on measured points."""
    a = _analyse_bars(tmp_path, max_cost_short=1000.0)  # a budget that always allows the pass (its own tests follow)
    small = [t for t in a.trials if t.height == 180]
    extra = [t for t in small if t.crf < 30]  # the first pass measures 180p at CRFs 30/36/42 only
    assert len(extra) == 1, [(t.crf, t.kbps) for t in small]
    assert extra[0].kbps >= 150  # aimed above the rung
    assert any(f"320x180 (CRF {extra[0].crf})" in n for n in a.notes)
    assert all(any(t.height == 180 and t.crf == extra[0].crf for t in w) for w in a.window_trials)  # every window
    assert not next(f for f in a.fixed if f.id == "180p-150k").extrapolated
    assert not a.decision.per_title  # still the 99 % margin


# --- The analysis budget: the second pass runs whole, shrunk or not at all -------------------------

from abrpipe.pertitle.analysis import CostModel, budget_second_pass, cost_budget  # noqa: E402

#: 1 CPU-s per 10 M encoded pixel-frames, 0.5 CPU-s to score a trial on every window; a pass re-decodes
#: 4 s of 1280x720 at 30 fps for its reference.
MODEL = CostModel(encode_cpu_per_pixel_frame=1e-7, metric_cpu_per_trial=0.5, reference_pixels_per_s=1280 * 720 * 30, window_s=4.0)
#: One 540p and one 360p trial over the 4 s of windows: 62.2 M and 27.6 M pixel-frames.
PX = {SIZES[540]: 960 * 540 * 30 * 4.0, SIZES[360]: 640 * 360 * 30 * 4.0}
BRACKETS = {SIZES[540]: (18,), SIZES[360]: (18,)}


def test_the_fixed_encode_estimate_counts_every_rung_over_the_whole_title():
    rungs = [rung(720, 3000), rung(540, 2000), rung(360, 365)]
    px_per_s = (1280 * 720 + 960 * 540 + 640 * 360) * 30 + 1280 * 720 * 30  # the rungs + decoding the source once
    assert MODEL.fixed_encode_cpu_s(_plan(rungs), 10.0) == pytest.approx(1e-7 * px_per_s * 10.0)
    measured = CostModel.measured(encode_cpu_s=9.0, metric_cpu_s=6.0, trial_pixel_frames=80e6, trials=12,
                                  reference_pixels_per_s=1280 * 720 * 30, window_s=4.0)  # fmt: skip
    assert measured.metric_cpu_per_trial == pytest.approx(0.5)
    assert measured.encode_cpu_per_pixel_frame == pytest.approx(9.0 / (80e6 + 1280 * 720 * 30 * 4.0))


def _plan(rungs):
    return SimpleNamespace(video=tuple(rungs))  # the estimate reads only the planned video rungs


def test_the_whole_second_pass_runs_when_the_budget_allows_it():
    whole = MODEL.pass_cpu_s(sum(PX.values()), 2)  # 0.1 * (62.2 + 27.6 + 110.6) M px + 1.0 = 21.0 CPU-s
    kept, note = budget_second_pass(BRACKETS, PX, MODEL, spent_cpu_s=20.0, fixed_cpu_s=(20.0 + whole + 0.01) / 3, max_ratio=3.0)
    assert kept == BRACKETS and note is None


def test_the_second_pass_shrinks_to_the_sizes_that_fit():
    only_360 = MODEL.pass_cpu_s(PX[SIZES[360]], 1)
    kept, note = budget_second_pass(BRACKETS, PX, MODEL, spent_cpu_s=20.0, fixed_cpu_s=(20.0 + only_360 + 0.1) / 3, max_ratio=3.0)
    assert kept == {SIZES[360]: (18,)}
    assert note is not None and note.startswith("second pass shrunk to 640x360") and "3x analysis budget" in note


def test_the_second_pass_is_skipped_when_nothing_fits():
    """A short clip whose first pass already spent most of the budget (the 5-s animation excerpt: 27
    CPU-s of a 3 x 11 CPU-s budget) measures nothing more and says why."""
    kept, note = budget_second_pass(BRACKETS, PX, MODEL, spent_cpu_s=27.0, fixed_cpu_s=11.0, max_ratio=3.0)
    assert kept == {}
    assert note is not None and note.startswith("second pass skipped") and "exceed the 3x analysis budget" in note
    assert "estimated at 11.0 CPU-s" in note


def test_the_budget_is_3x_below_30_s_and_2x_from_30_s_configurable():
    opts = AnalysisOptions()
    assert cost_budget(29.9, opts) == 3.0 and cost_budget(30.0, opts) == 2.0
    assert cost_budget(5.0, AnalysisOptions(max_cost_short=5.0)) == 5.0
    assert cost_budget(60.0, AnalysisOptions(max_cost=1.5)) == 1.5


@requires_ffmpeg
def test_a_second_pass_over_the_budget_is_skipped_and_said(tmp_path):
    """The same clip with a budget the first pass already spends: no extra trial, a note that says why,
    and the guard still decides (on the first pass: the profile's ladder, as before)."""
    a = _analyse_bars(tmp_path, max_cost_short=0.5)
    assert sorted(t.crf for t in a.trials if t.height == 180) == [30, 36, 42]  # the first pass only
    skipped = [n for n in a.notes if n.startswith("second pass skipped")]
    assert len(skipped) == 1 and "0.5x analysis budget" in skipped[0], a.notes
    assert not any("measured with one more CRF" in n for n in a.notes)
    assert a.cost.fixed_encode_estimate_cpu_s > 0
    assert a.cost.budget_cpu_s == pytest.approx(0.5 * a.cost.fixed_encode_estimate_cpu_s)
    assert a.to_dict()["cost"]["fixed_encode_estimate_cpu_s"] > 0
    assert not a.decision.per_title


def test_a_size_measured_at_the_lowest_crf_the_search_allows_counts_as_saturated():
    from abrpipe.pertitle.analysis import BRACKET_MAX_STEP, lowest_allowed_crfs, saturated_sizes

    lowest = lowest_allowed_crfs({SIZES[h]: c for h, c in DIAGONAL.items()}, "h264")
    assert lowest == {SIZES[720]: 18 - BRACKET_MAX_STEP, SIZES[540]: 24 - BRACKET_MAX_STEP, SIZES[360]: 30 - BRACKET_MAX_STEP}
    assert lowest_allowed_crfs({SIZES[720]: (6, 12)}, "h264") == {SIZES[720]: 0}  # never below the encoder's CRF range
    # The first pass alone reaches no size's lowest allowed CRF.
    assert saturated_sizes(diagonal(), lowest) == frozenset()
    # A bracketing CRF stopped by the step limit (360p at CRF 18) saturates that size; one aimed higher (540p at 20) does not.
    assert saturated_sizes(diagonal() + [trial(360, 18), trial(540, 20)], lowest) == {SIZES[360]}
    # bracket_crfs stops exactly there: a rung far above 360p's trials is bracketed at the lowest allowed CRF.
    far = bracket_crfs(diagonal(), [rung(360, 20000)], {SIZES[360]: DIAGONAL[360]}, "h264", saturation=1000.0)
    assert far == {SIZES[360]: (lowest[SIZES[360]],)}
