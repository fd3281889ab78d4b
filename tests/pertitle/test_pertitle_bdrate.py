"""BD-rate against published reference values and an independent PCHIP implementation."""

from __future__ import annotations

import math
import random
import sys

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from abrpipe.pertitle.bdrate import (
    BdRateError,
    BdRateUnavailableError,
    InsufficientOverlapError,
    bd_rate,
    quality_overlap,
)

# JCT-VC reference cases from Netflix/vmaf python/test/bd_rate_calculator_test.py
# (class BDrateCalculatorJCTVCTest; Netflix's calculator is "validated against JCTVC-E137").
# Points are (kbps, PSNR); expected values are fractions there, percent here.
JCTVC_1 = (
    [(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)],
    [(108061.2784, 43.6768), (61299.9936, 40.4232), (33928.7472, 37.2761), (18910.912, 34.3147)],
    -0.00465215420752807 * 100,
)
JCTVC_2 = (
    [(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)],
    [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)],
    -0.018779823450567612 * 100,
)

# FAU-LMS/bjontegaard README / example_usage.py "test case 1" (libx265, two presets). The README
# publishes no result; the values below are what bjontegaard 1.3.0 returns, pinned as a regression and
# cross-checked against the independent implementation below.
README_ANCHOR = ([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851])
README_TEST = ([9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987])
README_EXPECTED = {"pchip": -4.417485, "akima": -4.425245, "cubic": -4.420463}


def independent_bd_rate(rate_a, q_a, rate_t, q_t):
    """Independent PCHIP BD-rate (JCT-VC style), written from the method description only."""

    def fit(rate, q):
        order = np.argsort(q)
        return PchipInterpolator(np.asarray(q, float)[order], np.log10(np.asarray(rate, float)[order]))

    fa, ft = fit(rate_a, q_a), fit(rate_t, q_t)
    lo = max(min(q_a), min(q_t))
    hi = min(max(q_a), max(q_t))
    avg_log_diff = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    return (10.0**avg_log_diff - 1.0) * 100.0


def split(points):
    return [p[0] for p in points], [p[1] for p in points]


@pytest.mark.parametrize("case", [JCTVC_1, JCTVC_2], ids=["jctvc1", "jctvc2"])
def test_jctvc_reference_values(case):
    anchor, test, expected = case
    res = bd_rate(*split(anchor), *split(test))
    assert res.method == "pchip"
    assert res.percent == pytest.approx(expected, abs=1e-6)
    assert res.valid and res.overlap > 0.98
    assert independent_bd_rate(*split(anchor), *split(test)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("method", ["pchip", "akima", "cubic"])
def test_readme_example(method):
    res = bd_rate(*README_ANCHOR, *README_TEST, method=method)
    assert res.percent == pytest.approx(README_EXPECTED[method], abs=1e-5)
    assert res.method == method


def test_readme_example_matches_independent_pchip():
    assert bd_rate(*README_ANCHOR, *README_TEST).percent == pytest.approx(
        independent_bd_rate(*README_ANCHOR, *README_TEST), abs=1e-9
    )


def test_random_curves_match_independent_pchip():
    rng = random.Random(1234)
    compared = 0
    for _ in range(40):
        n_a, n_t = rng.randint(3, 7), rng.randint(3, 7)
        q_a = sorted(rng.uniform(30, 95) for _ in range(n_a))
        q_t = sorted(rng.uniform(30, 95) for _ in range(n_t))
        r_a = np.cumsum([rng.uniform(50, 900) for _ in range(n_a)]).tolist()
        r_t = np.cumsum([rng.uniform(50, 900) for _ in range(n_t)]).tolist()
        if quality_overlap(q_a, q_t) < 0.5:
            continue
        got = bd_rate(r_a, q_a, r_t, q_t).percent
        assert got == pytest.approx(independent_bd_rate(r_a, q_a, r_t, q_t), rel=1e-9, abs=1e-9)
        compared += 1
    assert compared >= 10


def test_constant_rate_factor_gives_exact_percentage():
    """Scaling every test rate by 0.8 shifts log-rate by a constant: BD-rate is exactly -20 %."""
    rates, q = README_ANCHOR
    for method in ("pchip", "akima", "cubic"):
        assert bd_rate(rates, q, [r * 0.8 for r in rates], q, method=method).percent == pytest.approx(-20.0)
    assert bd_rate(rates, q, rates, q).percent == pytest.approx(0.0, abs=1e-12)
    # and the sign convention: a test needing more bits is positive
    assert bd_rate(rates, q, [r * 1.25 for r in rates], q).percent == pytest.approx(25.0)


def test_point_order_does_not_matter():
    (ra, qa), (rt, qt) = README_ANCHOR, README_TEST
    a = list(zip(ra, qa, strict=True))
    t = list(zip(rt, qt, strict=True))
    random.Random(7).shuffle(a)
    random.Random(8).shuffle(t)
    assert bd_rate(*split(a), *split(t)).percent == pytest.approx(README_EXPECTED["pchip"], abs=1e-5)


def test_overlap_fraction_and_low_overlap_handling():
    assert quality_overlap([30, 40], [35, 45]) == pytest.approx(5 / 15)
    assert quality_overlap([30, 40], [30, 40]) == 1.0
    anchor = ([500, 1000, 2000], [30, 35, 40])
    low = ([600, 1200, 2400], [36, 40, 44])  # overlap 4/14
    with pytest.raises(InsufficientOverlapError, match="0.29"):
        bd_rate(*anchor, *low)
    res = bd_rate(*anchor, *low, strict=False)
    assert not res.valid and res.overlap == pytest.approx(4 / 14) and math.isfinite(res.percent)
    # threshold is configurable
    assert bd_rate(*anchor, *low, min_overlap=0.25).valid
    none = bd_rate(*anchor, [600, 1200], [50, 60], strict=False)
    assert none.overlap == 0.0 and math.isnan(none.percent) and not none.valid


def test_invalid_curves_are_rejected():
    with pytest.raises(BdRateError, match="not monotone"):
        bd_rate([100, 200, 300], [30, 35, 40], [100, 300, 200], [30, 35, 40])
    with pytest.raises(BdRateError, match="share quality"):
        bd_rate([100, 200, 300], [30, 35, 40], [100, 200, 300], [30, 35, 35])
    with pytest.raises(BdRateError, match="3 rates but 2"):
        bd_rate([100, 200, 300], [30, 35], [100, 200], [30, 35])
    with pytest.raises(BdRateError, match="at least 2"):
        bd_rate([100], [30], [100, 200], [30, 35])
    with pytest.raises(BdRateError, match="finite"):
        bd_rate([100, 200], [30, math.inf], [100, 200], [30, 35])
    with pytest.raises(BdRateError, match="unknown BD method"):
        bd_rate([100, 200], [30, 35], [100, 200], [30, 35], method="linear")


def test_missing_bjontegaard_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "bjontegaard", None)  # makes "import bjontegaard" raise ImportError
    with pytest.raises(BdRateUnavailableError, match="pip install bjontegaard"):
        bd_rate(*README_ANCHOR, *README_TEST)
