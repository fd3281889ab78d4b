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


# A fixed rung above every trial of its size. When the size was measured at the lowest CRF the search
# allows (it is "saturated"), the guard predicts the rung from that size's own curve with a margin;
# otherwise it keeps crediting it with the best quality any size reaches at that bitrate.


def test_a_saturated_size_is_predicted_from_its_own_curve_with_a_margin():
    e = env()
    c360 = e.curve((640, 360))
    prev, last = c360.points[-2], c360.points[-1]  # CRF 24 and CRF 18 (the lowest CRF, the highest bitrate)
    kbps = 1200.0  # above 360p's highest trial (800 kbps)
    assert kbps > c360.max_kbps
    gain = last.quality - prev.quality
    along = gain / math.log(last.kbps / prev.kbps) * math.log(kbps / last.kbps)
    [(_, q)] = guard.predict(e, [((640, 360), kbps)], generous=True, saturated={(640, 360)})
    assert q == pytest.approx(last.quality + max(gain, along))
    assert q > last.quality + gain - 1e-9  # at least one more CRF step's gain above the highest trial
    assert q != pytest.approx(e.quality_at(kbps))  # not the bigger sizes' quality at 1.2 Mbps
    # Just above the highest trial the margin is the gain between its last two CRFs.
    [(_, q_near)] = guard.predict(e, [((640, 360), last.kbps * 1.01)], generous=True, saturated={(640, 360)})
    assert q_near == pytest.approx(last.quality + gain)
    # The bound lies above the size's real (saturating) curve, so the fixed rung is never undersold.
    w, h = SIZES[360]
    true_q = 85.0 * (1 - math.exp(-1.3 * kbps / 200.0))
    assert q >= true_q and (w, h) == (640, 360)


def test_a_size_not_measured_at_the_lowest_crf_keeps_the_best_of_any_size():
    e = env()
    kbps = 2000.0
    for saturated in ((), {(960, 540)}):  # 360p itself is not saturated
        [(_, q)] = guard.predict(e, [((640, 360), kbps)], generous=True, saturated=saturated)
        assert q == pytest.approx(e.quality_at(kbps))
    # A rung inside its size's trials is interpolated whether the size is saturated or not.
    assert guard.predict(e, [((640, 360), 300.0)], generous=True, saturated={(640, 360)}) == \
        guard.predict(e, [((640, 360), 300.0)], generous=True)  # fmt: skip
    # Not generous (the per-title ladder's own rungs): the curve is held flat, saturated or not.
    [(_, flat)] = guard.predict(e, [((640, 360), kbps)], saturated={(640, 360)})
    assert flat == pytest.approx(e.curve((640, 360)).max_quality)


# The desktop-recording case: the smallest size saturates at low quality (screen text needs pixels); the
# profile's smallest rung sits far above its trials. The per-title ladder puts those bits into 540p.
SCREEN_540 = [(42, 40.0, 66.0), (36, 70.0, 80.0), (30, 120.0, 88.0), (24, 200.0, 93.0), (18, 350.0, 96.0)]
SCREEN_360 = [(30, 20.0, 57.0), (24, 35.0, 61.0), (18, 57.0, 62.6)]  # CRF 18: the lowest the search allows
SCREEN_FIXED = [((640, 360), 145.0), ((960, 540), 400.0), ((960, 540), 800.0)]
SCREEN_PT = [((960, 540), 45.0), ((960, 540), 120.0), ((960, 540), 350.0)]


def screen_env() -> hull.Envelope:
    return hull.envelope([hull.TrialPoint(960, 540, c, k, q) for c, k, q in SCREEN_540]
                         + [hull.TrialPoint(640, 360, c, k, q) for c, k, q in SCREEN_360])  # fmt: skip


def test_a_saturated_size_lets_the_guard_see_a_real_saving():
    e = screen_env()
    kw = dict(pooled=e, per_title=SCREEN_PT, fixed=SCREEN_FIXED, windows=[e, e], usable_points=8, bd=_bd_pair,
              metric_label="VMAF")  # fmt: skip
    before = guard.decide(**kw)
    assert not before.per_title  # 360p@145k credited with 540p's VMAF at 145 kbps: the ladders barely overlap
    assert any("share only" in r for r in before.reasons)
    [(_, q)] = guard.predict(e, SCREEN_FIXED[:1], generous=True, saturated={(640, 360)})
    assert 62.6 + 1.6 < q < 70  # its own curve: the last step's gain carried on in ln(kbps)
    after = guard.decide(**kw, saturated={(640, 360)})
    assert after.per_title, after.reasons
    assert after.checks["predicted_bd_rate_pct"] < -3 and after.checks["predicted_overlap"] >= 0.5
    assert after.checks["saturated_sizes"] == ["640x360"]


def test_the_saturated_bound_does_not_publish_a_losing_ladder():
    """360p measured only at CRFs 30/36/42, 30 being the lowest the search allows: its quality still
    rises steeply there. A per-title ladder that moves the 360p rungs to 720p loses against the real 360p
    curve; the own-curve bound (the last segment carried on) stays above that curve, so the guard keeps
    the profile's ladder."""
    pts = curve_points(720, 1.0) + [p for p in curve_points(360, 1.0) if p.crf >= 30]
    e = hull.envelope(pts)
    fixed = [((1280, 720), 4000.0), ((1280, 720), 2500.0), ((640, 360), 1500.0), ((640, 360), 800.0), ((640, 360), 300.0)]
    losing = [((1280, 720), 4000.0), ((1280, 720), 2500.0), ((1280, 720), 1500.0), ((1280, 720), 800.0), ((1280, 720), 300.0)]

    def true_q(res, kbps):
        cap, knee = {(1280, 720): (99.0, 900.0), (640, 360): (85.0, 200.0)}[res]
        return cap * (1 - math.exp(-1.3 * kbps / knee))

    truth, _ = _bd_pair([(k, true_q(r, k)) for r, k in fixed], [(k, true_q(r, k)) for r, k in losing])
    assert truth > 0  # measured, the per-title ladder loses
    predicted = guard.predict(e, fixed, generous=True, saturated={(640, 360)})
    assert all(q >= true_q(r, k) for (r, k), (_, q) in zip(fixed, predicted, strict=True) if r == (640, 360))
    d = guard.decide(pooled=e, per_title=losing, fixed=fixed, windows=[e], usable_points=8, bd=_bd_pair,
                     metric_label="VMAF", saturated={(640, 360)})  # fmt: skip
    assert not d.per_title and any("is not a saving" in r for r in d.reasons)


# --------------------------------------------------------------------------------------------------
# What a bitrate target is worth in CRF bits (the per-title ladder is encoded capped-CRF, the
# profile's targets bitrates): measured by one calibration encode, used to predict the fixed ladder.
# --------------------------------------------------------------------------------------------------


def test_rate_efficiency_is_the_crf_bitrate_for_the_same_quality_over_the_target():
    curve = env().curve((1280, 720))
    q = curve.quality_at(1600.0)
    assert guard.rate_efficiency(curve, 2000.0, q) == pytest.approx(0.8, rel=1e-6)  # 2000k spent, 1600k worth
    assert guard.rate_efficiency(curve, 1000.0, curve.quality_at(1100.0)) == pytest.approx(1.1, rel=1e-6)
    assert guard.rate_efficiency(curve, 4000.0, q) == pytest.approx(0.4, rel=1e-6)
    # the guard credits half of a measured waste, at most half the bits, and a target better than CRF as it is
    assert guard.credited_efficiency(0.8) == pytest.approx(0.9)
    assert guard.credited_efficiency(0.4) == pytest.approx(0.7) and guard.credited_efficiency(-1.0) == 0.5
    assert guard.credited_efficiency(1.1) == 1.1
    # outside the measured curve nothing can be said
    assert guard.rate_efficiency(curve, 2000.0, curve.max_quality + 0.5) is None
    assert guard.rate_efficiency(curve, 2000.0, curve.points[0].quality - 0.5) is None


def test_a_wasteful_bitrate_target_turns_an_equal_ladder_into_a_saving_and_only_by_what_was_measured():
    """The profile's own rungs as the per-title ladder: no saving while both are encoded the same way; when
    the fixed ladder's targets are measured to be worth 80 % of their bits, the same rungs encoded at the
    CRF the trials measured save about that, and a measured efficiency of 1 changes nothing."""
    same = guard.decide(pooled=env(), per_title=FIXED, fixed=FIXED, windows=[env()], usable_points=15, bd=_bd_pair)
    assert not same.per_title and same.checks["predicted_bd_rate_pct"] == pytest.approx(0.0, abs=0.05)
    assert same.checks["fixed_rate_efficiency"] == 1.0
    worth = guard.decide(pooled=env(), per_title=FIXED, fixed=FIXED, windows=[env()], usable_points=15, bd=_bd_pair,
                         fixed_rate_efficiency=0.8)  # fmt: skip
    assert worth.per_title and worth.checks["fixed_rate_efficiency"] == 0.8
    # at most 1 - 0.8 = 20 % (less where a curve saturates or is extrapolated), far beyond the 3 % margin
    assert -20.5 < worth.checks["predicted_bd_rate_pct"] < -12.0
    # a fixed ladder that is worth more than its bits (efficiency > 1) is predicted better, never worse
    better = guard.decide(pooled=env(), per_title=PER_TITLE, fixed=FIXED, windows=[env()], usable_points=15, bd=_bd_pair,
                          fixed_rate_efficiency=1.3)  # fmt: skip
    plain = guard.decide(pooled=env(), per_title=PER_TITLE, fixed=FIXED, windows=[env()], usable_points=15, bd=_bd_pair)
    assert better.checks["predicted_bd_rate_pct"] > plain.checks["predicted_bd_rate_pct"]


def test_the_fixed_ladder_is_credited_with_the_least_waste_any_window_measured():
    """One calibration encode per window: each is priced against its own window's CRF trials, and the guard
    takes the window where the bitrate target wastes least (as it asks every window to show a saving)."""
    from fractions import Fraction

    from abrpipe.model import PlannedRung
    from abrpipe.pertitle.analysis import Trial, calibration_rung, fixed_rate_efficiency
    from abrpipe.pertitle.metrics import QualityScore
    from abrpipe.plan import LadderPlan

    def rung(kbps: int, rate_control: str = "vbr") -> PlannedRung:
        return PlannedRung(f"720p-{kbps}k", "h264", 1280, 720, Fraction(30), 1, kbps, kbps * 11 // 10, kbps * 2,
                           None, None, None, 60, rate_control)  # fmt: skip

    def window(scale: float) -> list[Trial]:  # the 720p trials of one window
        return [Trial(p.width, p.height, int(p.crf), p.kbps, p.quality, 10, 2.0) for p in curve_points(720, scale)]

    windows = [window(1.0), window(1.5)]
    cal = rung(2000)
    # window 1: the 2000k target reaches what CRF reaches at 1600k (0.8); window 2 (harder) at 1800k (0.9)
    two_seconds_at_2000k = 2000 * 1000 * 2 // 8  # bytes
    parts = [(1, two_seconds_at_2000k, 2.0, QualityScore("vmaf", env().curve((1280, 720)).quality_at(1600), 10)),
             (2, two_seconds_at_2000k, 2.0, QualityScore("vmaf", env(1.5).curve((1280, 720)).quality_at(1800), 10))]  # fmt: skip
    efficiency, note = fixed_rate_efficiency(windows, cal, parts)  # half of window 2's waste credited
    assert efficiency == pytest.approx(0.95, rel=1e-4) and "0.80, 0.90" in note and "predicted at 0.95x" in note
    # a window whose calibration lies outside its own trials says nothing; none that can say: 1.0
    above = (2, 250_000, 1.0, QualityScore("vmaf", 99.5, 10))
    assert fixed_rate_efficiency(windows, cal, [parts[0], above])[0] == pytest.approx(0.9, rel=1e-4)
    assert fixed_rate_efficiency(windows, cal, [above])[0] == 1.0
    assert fixed_rate_efficiency(windows, None, parts) == (1.0, None)
    # the calibrated rung: the lowest bitrate-targeted rung at the measuring size
    plan = LadderPlan("p", "veryfast", "vbr", Fraction(30), 60, 3, (rung(4500), rung(3000), rung(2500, "crf")),
                      (), (), False, False, (), ("hls", "dash"))  # fmt: skip
    assert calibration_rung(plan, (1280, 720)).bitrate_kbps == 3000
    assert calibration_rung(plan, (960, 540)) is None
