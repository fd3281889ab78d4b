"""Unit tests of abrpipe.pertitle.hull on synthetic curves and on the measured grids of shared/reference/per-title-research.md."""

from __future__ import annotations

import math
import warnings
from itertools import pairwise

import numpy as np
import pytest
from pertitle_research_grid import HIGH, LOW, points

from abrpipe.pertitle.hull import (
    ChosenRung,
    LadderSpacingWarning,
    TrialPoint,
    candidate_resolutions,
    choose_rungs,
    envelope,
    pareto,
    upper_convex_hull,
)

R720, R540, R360, R234 = (1280, 720), (960, 540), (640, 360), (416, 234)


def tp(res, kbps, q, crf=None):
    return TrialPoint(res[0], res[1], crf, kbps, q)


def saturating(res, qmax, k0, rates):
    """q = qmax * (1 - exp(-kbps / k0)): rises quickly, then saturates at qmax."""
    return [tp(res, k, qmax * (1 - math.exp(-k / k0))) for k in rates]


RATES = (100, 200, 400, 800, 1600, 3200, 6400)


def crossing_set():
    """Higher resolutions saturate higher but need more bits: low resolutions win at low rates."""
    return (
        saturating(R234, 70.0, 120.0, RATES)
        + saturating(R360, 82.0, 250.0, RATES)
        + saturating(R540, 90.0, 500.0, RATES)
        + saturating(R720, 98.0, 1000.0, RATES)
    )


# ------------------------------------------------------------------------------------------------
# TrialPoint / pareto
# ------------------------------------------------------------------------------------------------


def test_trialpoint_rejects_bad_values():
    with pytest.raises(ValueError, match="finite"):
        tp(R720, 1000, math.inf)
    with pytest.raises(ValueError, match="kbps"):
        tp(R720, 0, 50)
    with pytest.raises(ValueError, match="width/height"):
        TrialPoint(0, 720, 23, 100, 50)


def test_pareto_drops_crf42_with_more_bits_than_crf36():
    pts = points(HIGH)
    kept = pareto(pts)
    # research grid, high clip, 720p: CRF 42 = 705 kbps / VMAF 11.9 but CRF 36 = 633 kbps / 44.1
    assert not any(p.resolution == R720 and p.crf == 42 for p in kept)
    assert any(p.resolution == R720 and p.crf == 36 for p in kept)
    # same at 540p (332 vs 296 kbps)
    assert not any(p.resolution == R540 and p.crf == 42 for p in kept)
    # every resolution's surviving points are strictly increasing in both rate and quality
    for res in (R720, R540, R360, R234):
        curve = [p for p in kept if p.resolution == res]
        assert all(b.kbps > a.kbps and b.quality > a.quality for a, b in pairwise(curve))


def test_pareto_drops_duplicates_and_saturated_tail_per_resolution_only():
    pts = [
        tp(R720, 1000, 80, 30),
        tp(R720, 1000, 78, 31),  # same rate, worse: dominated
        tp(R720, 2000, 90, 24),
        tp(R720, 4000, 90, 18),  # more bits, no more quality: dominated
        tp(R360, 500, 70, 30),  # a different resolution is never compared with 720p here
        tp(R360, 900, 75, 24),
    ]
    kept = pareto(pts)
    assert [(p.height, p.kbps, p.quality) for p in kept] == [
        (360, 500, 70),
        (360, 900, 75),
        (720, 1000, 80),
        (720, 2000, 90),
    ]


# ------------------------------------------------------------------------------------------------
# upper convex hull
# ------------------------------------------------------------------------------------------------


def test_upper_convex_hull_synthetic():
    pts = [
        tp(R360, 100, 40),
        tp(R360, 200, 50),  # below the chord 100->400 in log space (chord value 55): dropped
        tp(R540, 400, 70),
        tp(R720, 800, 80),
        tp(R720, 1600, 85),
        tp(R720, 3200, 84),  # dominated
    ]
    hull = upper_convex_hull(pts)
    assert [(p.kbps, p.quality) for p in hull] == [(100, 40), (400, 70), (800, 80), (1600, 85)]


def test_upper_convex_hull_matches_research_high_vmaf():
    hull = upper_convex_hull(points(HIGH))
    got = [(p.height, p.crf) for p in hull]
    # per-title-research.md 4.3: "high VMAF: 234p/42-36-30, 360p/30, 540p/30, 360p/24, 540p/24, 720p/24-18"
    assert got == [
        (234, 42),
        (234, 36),
        (234, 30),
        (360, 30),
        (540, 30),
        (360, 24),
        (540, 24),
        (720, 24),
        (720, 18),
    ]


@pytest.mark.parametrize("grid", [LOW, HIGH])
def test_no_point_lies_above_the_hull(grid):
    pts = points(grid)
    hull = upper_convex_hull(pts)
    hx = np.log([p.kbps for p in hull])
    hy = np.array([p.quality for p in hull])
    # concave in log space: slopes decrease along the hull
    slopes = np.diff(hy) / np.diff(hx)
    assert np.all(np.diff(slopes) < 0)
    for p in pts:
        x = math.log(p.kbps)
        if hx[0] <= x <= hx[-1]:
            assert p.quality <= np.interp(x, hx, hy) + 1e-9


# ------------------------------------------------------------------------------------------------
# envelope
# ------------------------------------------------------------------------------------------------


def test_envelope_too_few_points_is_a_clear_error():
    with pytest.raises(ValueError, match="none"):
        envelope([])
    with pytest.raises(ValueError, match="too few trial points"):
        envelope([tp(R720, 1000, 80)])
    # one point per resolution: no curve anywhere
    with pytest.raises(ValueError, match="too few trial points"):
        envelope([tp(R720, 1000, 80), tp(R360, 300, 60)])
    # two points at one resolution, but the second is dominated
    with pytest.raises(ValueError, match="720: 2"):
        envelope([tp(R720, 1000, 80), tp(R720, 1200, 79)])


def test_envelope_accepts_mapping_and_iterable_alike():
    pts = crossing_set()
    by_res = {}
    for p in pts:
        by_res.setdefault(p.resolution, []).append(p)
    a, b = envelope(pts), envelope(by_res)
    for k in (150, 700, 2500):
        assert a.quality_at(k) == b.quality_at(k)


def test_crossing_curves_low_resolution_wins_at_low_rates():
    env = envelope(crossing_set())
    assert env.best_resolution_at(110) == R234
    assert env.best_resolution_at(6000) == R720
    xs = env.crossovers()
    assert [(c.below, c.above) for c in xs] == [(R234, R360), (R360, R540), (R540, R720)]
    rates = [c.kbps for c in xs]
    assert rates == sorted(rates)
    for c in xs:
        # at the crossover both curves give the same quality; just below/above the winner changes
        assert env.curve(c.below).quality_at(c.kbps) == pytest.approx(
            env.curve(c.above).quality_at(c.kbps), abs=1e-6
        )
        assert env.best_resolution_at(c.kbps * 0.99) == c.below
        assert env.best_resolution_at(c.kbps * 1.01) == c.above


def test_envelope_is_max_of_curves_and_flat_beyond_measurements():
    pts = crossing_set()
    env = envelope(pts)
    for k in np.geomspace(100, 6400, 37):
        vals = [q for c in env.curves if (q := c.quality_at(k)) is not None]
        assert env.quality_at(k) == pytest.approx(max(vals))
    top = max(p.quality for p in pts if p.resolution == R720)
    assert env.quality_at(50_000) == pytest.approx(top)  # held flat, never extrapolated upwards
    # PCHIP passes through the measured points
    for p in pareto(pts):
        assert env.curve(p.resolution).quality_at(p.kbps) == pytest.approx(p.quality)


def test_resolution_unavailable_below_its_lowest_trial():
    env = envelope([tp(R360, 100, 50), tp(R360, 1000, 70), tp(R720, 500, 99), tp(R720, 2000, 100)])
    assert env.curve(R720).quality_at(400) is None
    assert env.best_resolution_at(400) == R360  # 720p has no data below 500 kbps
    assert env.best_resolution_at(500) == R720


@pytest.mark.parametrize(
    ("grid", "metric", "published"),
    [
        (LOW, "vmaf", [161, 503, 950]),
        (HIGH, "vmaf", [181, 596, 1949]),
        (LOW, "psnr", [155, 361, 770]),
        (HIGH, "psnr", [220, 505, 1182]),
    ],
)
def test_crossovers_reproduce_research_note(grid, metric, published):
    """per-title-research.md table 4.3 (computed from unrounded measurements; the grid here is rounded)."""
    xs = envelope(points(grid, metric)).crossovers()
    assert [(c.below[1], c.above[1]) for c in xs] == [(234, 360), (360, 540), (540, 720)]
    for c, want in zip(xs, published, strict=True):
        assert c.kbps == pytest.approx(want, rel=0.04)


def test_kbps_for_quality_matches_research_note():
    low, high = envelope(points(LOW)), envelope(points(HIGH))
    for q, want in ((70, 177), (80, 369), (90, 1163), (95, 2381)):
        assert low.kbps_for_quality(q) == pytest.approx(want, rel=0.01)
    for q, want in ((70, 1319), (80, 3045), (90, 11487)):
        assert high.kbps_for_quality(q) == pytest.approx(want, rel=0.01)
    assert high.kbps_for_quality(95) is None  # 93.1 at 33 Mbps: never reached
    # the returned rate really is the first one reaching the quality
    k = low.kbps_for_quality(90)
    assert low.quality_at(k) >= 90 - 1e-9 and low.quality_at(k * 0.999) < 90


# ------------------------------------------------------------------------------------------------
# choose_rungs
# ------------------------------------------------------------------------------------------------


def test_h2_ladders_match_research_note():
    low = choose_rungs(
        envelope(points(LOW)), min_kbps=400, max_kbps=3000, rung_count=4, saturation_quality=95
    )
    assert [r.height for r in low] == [720, 720, 540, 360]
    for r, want in zip(low, (2381, 1314, 725, 400), strict=True):
        assert r.kbps == pytest.approx(want, rel=0.01)
    high = choose_rungs(
        envelope(points(HIGH)), min_kbps=400, max_kbps=3000, rung_count=4, saturation_quality=95
    )
    assert [(r.height, round(r.kbps)) for r in high] == [(720, 3000), (540, 1533), (540, 783), (360, 400)]


def test_top_rung_set_by_saturation():
    env = envelope(crossing_set())
    sat = env.kbps_for_quality(95)
    assert sat is not None and sat < 20_000
    rungs = choose_rungs(env, min_kbps=150, max_kbps=20_000, rung_count=6, saturation_quality=95)
    assert rungs[0].kbps == pytest.approx(sat)
    assert rungs[0].predicted_quality == pytest.approx(95, abs=1e-6)
    assert rungs[-1].kbps == 150


def test_top_rung_capped_by_max_kbps():
    env = envelope(crossing_set())
    rungs = choose_rungs(env, min_kbps=150, max_kbps=1500, rung_count=6, saturation_quality=95)
    assert env.kbps_for_quality(95) > 1500
    assert rungs[0].kbps == 1500
    assert rungs[0].predicted_quality < 95


def test_top_rung_is_max_kbps_when_saturation_never_reached():
    env = envelope(crossing_set())
    rungs = choose_rungs(env, min_kbps=150, max_kbps=8000, rung_count=8, saturation_quality=99.5)
    assert env.kbps_for_quality(99.5) is None
    assert rungs[0].kbps == 8000


def test_spacing_uses_fewest_rungs_within_max_ratio():
    env = envelope(points(HIGH))
    rungs = choose_rungs(env, min_kbps=400, max_kbps=3000, rung_count=8, saturation_quality=95)
    assert len(rungs) == 4  # 3 rungs would be 2.74x apart, 4 rungs are 1.96x apart
    ratios = [a.kbps / b.kbps for a, b in pairwise(rungs)]
    assert all(r <= 2.0 for r in ratios)
    assert ratios == pytest.approx([ratios[0]] * 3)  # geometric
    assert [r.kbps for r in rungs] == sorted((r.kbps for r in rungs), reverse=True)
    # a tighter ratio needs more rungs
    tight = choose_rungs(env, min_kbps=400, max_kbps=3000, rung_count=8, saturation_quality=95, max_ratio=1.5)
    assert len(tight) == 6
    assert all(a.kbps / b.kbps <= 1.5 for a, b in pairwise(tight))


def test_spacing_warning_when_rung_count_too_small():
    env = envelope(points(HIGH))
    with pytest.warns(LadderSpacingWarning, match="2.74x"):
        rungs = choose_rungs(env, min_kbps=400, max_kbps=3000, rung_count=3, saturation_quality=95)
    assert [round(r.kbps) for r in rungs] == [3000, 1095, 400]


def test_single_rung_and_collapsed_ladders():
    env = envelope(crossing_set())
    one = choose_rungs(env, min_kbps=150, max_kbps=1500, rung_count=1, saturation_quality=95)
    assert [r.kbps for r in one] == [1500]
    # everything already saturates below the floor: one rung at min_kbps
    easy = envelope([tp(R720, 100, 96), tp(R720, 200, 98), tp(R360, 50, 90), tp(R360, 80, 93)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rungs = choose_rungs(easy, min_kbps=400, max_kbps=3000, rung_count=4, saturation_quality=95)
    assert rungs == [ChosenRung(1280, 720, 400, 98.0, False)]


def test_resolution_never_increases_down_the_ladder():
    # 720p wins at 1600 and at 400 kbps, but 540p wins at 800 kbps
    pts = [
        tp(R720, 350, 70), tp(R720, 900, 72), tp(R720, 1600, 90),
        tp(R540, 300, 60), tp(R540, 700, 80), tp(R540, 1600, 85),
    ]  # fmt: skip
    env = envelope(pts)
    assert env.best_resolution_at(1600) == R720
    assert env.best_resolution_at(800) == R540
    assert env.best_resolution_at(400) == R720  # unconstrained, the bottom rung would go back up
    rungs = choose_rungs(env, min_kbps=400, max_kbps=1600, rung_count=3, saturation_quality=99)
    assert [r.resolution for r in rungs] == [R720, R540, R540]
    assert rungs[-1].predicted_quality == pytest.approx(env.curve(R540).quality_at(400))
    pixels = [r.width * r.height for r in rungs]
    assert pixels == sorted(pixels, reverse=True)


def test_single_resolution_ladder():
    env = envelope(saturating(R540, 92.0, 600.0, RATES))
    assert env.crossovers() == []
    rungs = choose_rungs(env, min_kbps=200, max_kbps=5000, rung_count=6, saturation_quality=95)
    assert {r.resolution for r in rungs} == {R540}
    assert rungs[0].kbps == 5000  # 92 < 95: never saturates


def test_min_kbps_below_all_trials_is_flagged_extrapolated():
    env = envelope(crossing_set())
    rungs = choose_rungs(env, min_kbps=60, max_kbps=3000, rung_count=8, saturation_quality=99)
    assert rungs[-1].extrapolated and rungs[-1].resolution == R234
    assert rungs[-1].predicted_quality < env.curve(R234).points[0].quality
    assert not any(r.extrapolated for r in rungs[:-1])


def test_choose_rungs_validates_arguments():
    env = envelope(crossing_set())
    with pytest.raises(ValueError, match="max_kbps"):
        choose_rungs(env, min_kbps=500, max_kbps=400, rung_count=4, saturation_quality=95)
    with pytest.raises(ValueError, match="rung_count"):
        choose_rungs(env, min_kbps=400, max_kbps=3000, rung_count=0, saturation_quality=95)
    with pytest.raises(ValueError, match="max_ratio"):
        choose_rungs(env, min_kbps=400, max_kbps=3000, rung_count=4, saturation_quality=95, max_ratio=1.0)


# ------------------------------------------------------------------------------------------------
# candidate resolutions
# ------------------------------------------------------------------------------------------------


def test_candidate_resolutions():
    assert candidate_resolutions(1280, 720) == [(1280, 720), (960, 540), (768, 432), (640, 360), (416, 234)]
    assert candidate_resolutions(1920, 1080)[0] == (1920, 1080)
    # source smaller than every candidate: its own size
    assert candidate_resolutions(320, 180) == [(320, 180)]
    assert candidate_resolutions(321, 181) == [(320, 180)]
    # other aspect ratios keep the source's shape, never wider than the source
    assert candidate_resolutions(1920, 800)[:2] == [(1728, 720), (1296, 540)]
    assert candidate_resolutions(640, 480) == [(576, 432), (480, 360), (312, 234)]


def test_small_source_gives_usable_single_resolution_ladder():
    (res,) = candidate_resolutions(320, 180)
    env = envelope(saturating(res, 90.0, 150.0, (50, 100, 200, 400, 800)))
    rungs = choose_rungs(env, min_kbps=100, max_kbps=3000, rung_count=6, saturation_quality=95)
    assert {r.resolution for r in rungs} == {(320, 180)}
