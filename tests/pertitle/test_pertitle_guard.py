"""The never-worse guard and the prediction check, on synthetic rate/quality curves (no encoding).

The curves are built like real trial results: per size, quality rises with ln(kbps) and saturates;
bigger sizes cost more bits at low rates and reach higher quality. The BD-rate is the real one
(bjontegaard, PCHIP), so a decision here is the decision `encode --per-title` would take.
"""

from __future__ import annotations

import math

import pytest

from abrpipe.pertitle import guard, hull

pytest.importorskip("scipy")
pytest.importorskip("bjontegaard")

from abrpipe.pertitle.analysis import _bd_pair  # noqa: E402  (needs scipy)

SIZES = {720: (1280, 720), 540: (960, 540), 360: (640, 360)}
CRFS = (18, 24, 30, 36, 42)


def curve_points(height: int, scale: float) -> list[hull.TrialPoint]:
    """One size's trial points; ``scale`` multiplies every bitrate (a harder window needs more bits)."""
    w, h = SIZES[height]
    cap = {720: 99.0, 540: 93.0, 360: 85.0}[height]
    knee = {720: 900.0, 540: 450.0, 360: 200.0}[height] * scale
    pts = []
    for crf in CRFS:
        kbps = knee * 2 ** ((30 - crf) / 6)  # x264: about 2x the bits per 6 CRF steps
        quality = cap * (1 - math.exp(-1.3 * kbps / knee))
        pts.append(hull.TrialPoint(w, h, crf, kbps, quality))
    return pts


def env(scale: float = 1.0) -> hull.Envelope:
    return hull.envelope([p for height in SIZES for p in curve_points(height, scale)])


# The profile's ladder: 720p at the top, small sizes at the bottom.
FIXED = [((1280, 720), 4000.0), ((1280, 720), 2500.0), ((960, 540), 1500.0), ((640, 360), 800.0), ((640, 360), 300.0)]
# The per-title ladder hull.choose_rungs picks on these curves (300..4000 kbps, 4 rungs, top at 95):
# the same floor, fewer bits at the top, each rung at the size that is best at its bitrate.
PER_TITLE = [((1280, 720), 2290.0), ((960, 540), 1160.0), ((640, 360), 590.0), ((640, 360), 300.0)]


def decide(windows, **kw):
    kw.setdefault("options", guard.GuardOptions())
    return guard.decide(pooled=env(), per_title=PER_TITLE, fixed=FIXED, windows=windows, usable_points=15,
                        bd=_bd_pair, metric_label="VMAF", **kw)  # fmt: skip


def test_the_ladder_under_test_is_the_one_the_hull_picks():
    rungs = hull.choose_rungs(env(), min_kbps=300, max_kbps=4000, rung_count=5, saturation_quality=95)
    assert [(r.resolution, round(r.kbps, -1)) for r in rungs] == PER_TITLE


def test_confident_saving_uses_the_per_title_ladder():
    d = decide([env(0.9), env(1.1)])
    assert d.per_title, d.reasons
    assert d.checks["predicted_bd_rate_pct"] < -3 and d.checks["predicted_overlap"] >= 0.5
    assert all(v < 0 for v in d.checks["window_bd_rate_pct"])
    assert "per-title ladder used" in d.summary()


def test_a_ladder_predicted_to_lose_keeps_the_profile_ladder():
    worse = [((1280, 720), 4000.0), ((640, 360), 2500.0), ((640, 360), 1500.0), ((640, 360), 800.0), ((640, 360), 300.0)]
    d = guard.decide(pooled=env(), per_title=worse, fixed=FIXED, windows=[env()], usable_points=15, bd=_bd_pair,
                     metric_label="VMAF")  # fmt: skip
    assert not d.per_title
    assert d.checks["predicted_bd_rate_pct"] > 0
    assert any("is not a saving" in r for r in d.reasons)
    assert d.summary().startswith("the profile's ladder is kept: predicted BD-rate +")


def test_a_small_predicted_saving_is_not_enough():
    d = decide([env()], options=guard.GuardOptions(min_saving_pct=99.0))
    assert not d.per_title and any("not a saving of at least 99%" in r for r in d.reasons)


def test_too_few_trial_points_keep_the_profile_ladder():
    d = guard.decide(pooled=env(), per_title=PER_TITLE, fixed=FIXED, windows=[env()], usable_points=4, bd=_bd_pair)
    assert not d.per_title and any("too few usable trial points (4 < 5)" in r for r in d.reasons)


def test_a_rung_at_a_size_with_one_trial_point_is_not_trusted():
    pts = [p for height in (720, 360) for p in curve_points(height, 1.0)] + curve_points(540, 1.0)[:1]
    thin = hull.envelope(pts)
    d = guard.decide(pooled=thin, per_title=PER_TITLE, fixed=FIXED, windows=[thin], usable_points=11, bd=_bd_pair)
    assert not d.per_title and any("too few trial points at 960x540" in r for r in d.reasons)


def test_low_overlap_is_not_a_confident_saving():
    # A per-title ladder that only covers the top of the fixed ladder's quality range.
    top_only = [((1280, 720), 2500.0), ((1280, 720), 1500.0)]
    d = guard.decide(pooled=env(), per_title=top_only, fixed=FIXED, windows=[env()], usable_points=15, bd=_bd_pair)
    assert not d.per_title and d.checks["predicted_overlap"] < 0.5
    assert any("share only" in r for r in d.reasons)


def test_prediction_check_falls_back_when_the_windows_mispredict():
    """The pooled trials predict a saving, but one window's own trials say the per-title ladder loses
    there: the sample does not predict the title, so the profile's ladder is kept."""
    # Window 2: 360p needs under a third of the bits the pooled curves say (a scene whose detail the
    # small size keeps), so there the fixed ladder's 360p rungs beat the per-title ladder's 540p rung.
    bad = hull.envelope(curve_points(720, 1.0) + curve_points(540, 1.0) + curve_points(360, 0.3))
    assert decide([env(), env()]).per_title  # the same pooled prediction with agreeing windows
    d = decide([env(), bad])
    assert not d.per_title
    assert d.checks["predicted_bd_rate_pct"] < -3  # the pooled prediction alone would have said "use it"
    w1, w2 = d.checks["window_bd_rate_pct"]
    assert w1 < 0 and w2 > 0
    assert any(r.startswith("prediction check failed") and "window 2: +" in r for r in d.reasons)


def test_prediction_check_needs_every_window_to_give_a_prediction():
    d = decide([env(), None])
    assert not d.per_title and any("window 2: no prediction" in r for r in d.reasons)


def test_coverage_notes_say_where_the_per_title_ladder_deliberately_stops():
    notes = guard.coverage_notes([(2000.0, 95.2), (300.0, 88.0)], [(4000.0, 98.5), (300.0, 80.0)],
                                 saturation=95.0, min_kbps=300, metric_label="VMAF")  # fmt: skip
    assert len(notes) == 2
    assert "tops out at VMAF 95.2 (it stops where VMAF reaches the saturation target 95)" in notes[0]
    assert "98.5" in notes[0]
    assert "does not go below the profile's lowest bitrate (300 kbps)" in notes[1] and "80.0" in notes[1]
    assert guard.coverage_notes([(4000.0, 98.5), (300.0, 80.0)], [(4000.0, 98.5), (300.0, 80.0)],
                                saturation=95.0, min_kbps=300, metric_label="VMAF") == []  # fmt: skip
