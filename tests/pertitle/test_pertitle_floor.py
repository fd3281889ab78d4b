"""The per-title ladder's low end follows quality (no encoding).

The lowest per-title rung sits where the hull reaches the quality the profile's lowest rung is predicted
to have: below the profile's lowest bitrate on easy content (a screen recording: a big size is already
sharp at a few tens of kbps), at the absolute floor when the hull gets there even cheaper, and at the
profile's lowest bitrate on hard content (the smallest size is the best there is at that bitrate).
Curves as in test_pertitle_guard: per size, quality rises with ln(kbps) and saturates, bigger sizes
cost more bits at low rates and reach higher quality; ``scale`` multiplies every bitrate.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from media import require_modules

from abrpipe.pertitle import guard, hull, ladder
from abrpipe.plan import PlannedRung

require_modules("scipy", "bjontegaard")

from abrpipe.pertitle.analysis import AnalysisOptions, Floor, _bd_pair, _choose, _predict_fixed, ladder_floor  # noqa: E402

SIZES = {720: (1280, 720), 540: (960, 540), 360: (640, 360)}
CAP = {720: 99.0, 540: 93.0, 360: 85.0}
KNEE = {720: 900.0, 540: 450.0, 360: 200.0}
#: Every size at every CRF, so the profile's rungs are measured, not extrapolated.
CRFS = (6, 12, 18, 24, 30, 36, 42)
#: The profile's ladder (as in test_pertitle_guard): lowest rung 360p at 300 kbps.
FIXED = [(720, 4000), (720, 2500), (540, 1500), (360, 800), (360, 300)]


def env(scale: float) -> hull.Envelope:
    pts = []
    for height, (w, h) in SIZES.items():
        knee = KNEE[height] * scale
        for crf in CRFS:
            kbps = knee * 2 ** ((30 - crf) / 6)  # x264: about 2x the bits per 6 CRF steps
            pts.append(hull.TrialPoint(w, h, crf, kbps, CAP[height] * (1 - math.exp(-1.3 * kbps / knee))))
    return hull.envelope(pts)


def plan() -> SimpleNamespace:
    rungs = []
    for height, kbps in FIXED:
        w, h = SIZES[height]
        rungs.append(PlannedRung(id=f"{h}p-{kbps}k", codec="h264", width=w, height=h, fps=30.0, fps_divisor=1,
                                 bitrate_kbps=kbps, maxrate_kbps=kbps, bufsize_kbps=2 * kbps, crf=None,
                                 codec_profile=None, level=None, gop_frames=60, rate_control="vbr"))  # fmt: skip
    return SimpleNamespace(video=rungs)


def per_title(scale: float, options: AnalysisOptions | None = None):
    """(floor, rounded per-title rungs top first, predicted fixed ladder) as the analysis builds them."""
    options = options or AnalysisOptions()
    e, p = env(scale), plan()
    floor = ladder_floor(e, p, options, 95.0)
    chosen, _ = _choose(e, p, options, 95.0, floor)
    rungs = ladder.round_rungs(e, chosen, min_kbps=floor.kbps, max_kbps=4000)
    fixed = [_predict_fixed(e, r) for r in p.video]
    return floor, rungs, fixed


def test_easy_content_the_floor_drops_below_the_profiles_lowest_bitrate_to_its_quality():
    floor, rungs, fixed = per_title(0.1)
    fx_lo = min(f.predicted_quality for f in fixed)  # 360p at 300 kbps: near its cap, VMAF 85
    assert floor.bound == "quality" and floor.quality == pytest.approx(fx_lo)
    # The hull reaches VMAF 85 at about 85 kbps (540p), well under 300 and above the 75-kbps absolute floor.
    assert 75 < floor.kbps < 150
    assert e_quality(0.1, floor.kbps) == pytest.approx(fx_lo, abs=0.05)
    low = rungs[-1]
    assert low.kbps == round(floor.kbps) + (1 if round(floor.kbps) < floor.kbps else 0)
    assert low.predicted_quality == pytest.approx(fx_lo, abs=0.3) and not low.extrapolated
    # The spacing rules hold: no more rungs than the profile, neighbours at most max_ratio apart.
    assert 2 <= len(rungs) <= len(FIXED)
    assert all(a.kbps / b.kbps <= 2.0 + 1e-6 for a, b in zip(rungs, rungs[1:]))
    # The per-title ladder now covers the fixed ladder's low end: the coverage note says it reaches down.
    notes = guard.coverage_notes([(r.kbps, r.predicted_quality) for r in rungs], [(f.kbps, f.predicted_quality) for f in fixed],
                                 saturation=95.0, min_kbps=300, metric_label="VMAF", floor_kbps=floor.kbps,
                                 floor_bound=floor.bound)  # fmt: skip
    assert any(n.startswith("coverage: the per-title ladder goes below the profile's lowest bitrate (300 kbps)") for n in notes)
    assert not any("does not go below" in n for n in notes)
    # ... and the predicted ladders overlap enough for the guard's verdict (it stops at VMAF 95, the fixed
    # ladder's top is at 99), where a floor at the profile's 300 kbps would leave a sliver.
    fx = [(f.kbps, f.predicted_quality) for f in fixed]
    pct, overlap = _bd_pair(fx, [(r.kbps, r.predicted_quality) for r in rungs])
    assert pct < -50 and overlap >= 0.6
    e = env(0.1)
    old, _ = _choose(e, plan(), AnalysisOptions(), 95.0, Floor(300.0, "profile", floor.quality))
    _, old_overlap = _bd_pair(fx, [(r.kbps, r.predicted_quality) for r in ladder.round_rungs(e, old, min_kbps=300, max_kbps=4000)])
    assert old_overlap < 0.5


def e_quality(scale: float, kbps: float) -> float:
    return env(scale).quality_at(kbps)


def test_the_floor_is_clamped_by_the_absolute_floor():
    # Even easier content: the hull reaches VMAF 85 near 42 kbps, under a quarter of 300 kbps.
    floor, rungs, fixed = per_title(0.05)
    assert env(0.05).kbps_for_quality(min(f.predicted_quality for f in fixed)) < 75
    assert floor.bound == "absolute" and floor.kbps == pytest.approx(75.0)
    assert rungs[-1].kbps == 75
    # A fixed floor above the fraction clamps instead (floor_kbps wins over floor_fraction x 300).
    floor, rungs, _ = per_title(0.05, AnalysisOptions(floor_kbps=100.0))
    assert floor.bound == "absolute" and floor.kbps == 100.0 and rungs[-1].kbps == 100
    notes = guard.coverage_notes([(r.kbps, r.predicted_quality) for r in rungs], [(f.kbps, f.predicted_quality) for f in fixed],
                                 saturation=95.0, min_kbps=300, metric_label="VMAF", floor_kbps=floor.kbps,
                                 floor_bound=floor.bound)  # fmt: skip
    assert any("deliberately does not go below its absolute floor of 100 kbps" in n for n in notes)


def test_hard_content_the_floor_stays_at_the_profiles_lowest_bitrate():
    # At 300 kbps the smallest size is the best there is: the hull reaches the fixed rung's quality no cheaper.
    floor, rungs, fixed = per_title(1.0)
    assert floor.bound == "profile" and floor.kbps == 300.0
    assert rungs[-1].kbps == 300 and rungs[-1].resolution == SIZES[360]
    assert rungs[-1].predicted_quality == pytest.approx(min(f.predicted_quality for f in fixed), abs=0.01)
    # Harder still: the same.
    floor, rungs, _ = per_title(3.0)
    assert floor.bound == "profile" and rungs[-1].kbps == 300


def test_the_floor_never_needs_more_rungs_than_the_profile_gives():
    # Two rungs only: the span from the floor to the top must fit one max_ratio step.
    e, p = env(0.1), plan()
    p.video = [p.video[2], p.video[-1]]  # 540p at 1500, 360p at 300
    floor = ladder_floor(e, p, AnalysisOptions(), 95.0)
    top = e.kbps_for_quality(95.0)
    assert floor.bound == "spacing" and floor.kbps == pytest.approx(top / 2.0)


def test_coverage_note_when_the_hull_jumps_past_the_fixed_ladders_lowest_quality_at_the_floor():
    # The floor sits where the hull first reaches VMAF 76.4, but a larger size's curve starts there at 78.7.
    notes = guard.coverage_notes([(154.0, 95.0), (92.0, 86.4), (56.0, 78.7)], [(4500.0, 97.5), (145.0, 76.4)],
                                 saturation=95.0, min_kbps=145, metric_label="VMAF", floor_kbps=55.5,
                                 floor_bound="quality")  # fmt: skip
    low = [n for n in notes if "lowest" in n]
    assert low == ["coverage: the per-title ladder goes below the profile's lowest bitrate (145 kbps) to 56 kbps (the hull "
                   "first reaches the profile's lowest rung's VMAF 76.4 at 55.5 kbps); its lowest rung is predicted at "
                   "78.7 there"]  # fmt: skip
    # At the profile's own floor the old wording stays.
    notes = guard.coverage_notes([(154.0, 95.0), (145.0, 94.7)], [(4500.0, 97.5), (145.0, 76.4)],
                                 saturation=95.0, min_kbps=145, metric_label="VMAF", floor_kbps=145, floor_bound="profile")  # fmt: skip
    assert any("deliberately does not go below the profile's lowest bitrate (145 kbps)" in n for n in notes)
