"""Bjøntegaard-delta rate between two rate/quality curves.

Thin, validated wrapper around the ``bjontegaard`` package (FAU-LMS, BSD-3). The default method is
PCHIP, as in the JCT-VC common test conditions (JCTVC-L1100) Excel sheet: quality is the integration
variable, log10(rate) is interpolated with PCHIP over the quality range both curves cover, and the mean
log-rate gap is turned into a percentage. Negative = the test curve needs fewer bits for the same quality.

Every result carries the *overlap*: the share of the combined quality range that both curves cover
(the same definition ``bjontegaard`` warns on). BD-rate over a small overlap describes only a sliver of
the curves, so by default an overlap below ``min_overlap`` (0.5) raises :class:`InsufficientOverlapError`;
pass ``strict=False`` to get the number anyway, flagged with ``valid=False``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

METHODS = ("pchip", "akima", "cubic")
DEFAULT_MIN_OVERLAP = 0.5


class BdRateError(ValueError):
    """Invalid input for a BD-rate computation."""


class InsufficientOverlapError(BdRateError):
    """The two curves share too little of their quality range for a meaningful BD-rate."""


class BdRateUnavailableError(RuntimeError):
    """The optional ``bjontegaard`` package (or one of its imports) is missing."""


@dataclass(frozen=True)
class BdResult:
    """``percent``: BD-rate in % (negative = test saves bits); NaN when the curves do not overlap.
    ``overlap``: fraction (0..1) of the combined quality range covered by both curves.
    ``method``: interpolation used. ``valid``: overlap >= the ``min_overlap`` the caller asked for."""

    percent: float
    overlap: float
    method: str
    valid: bool = True


def _load_bjontegaard():
    try:
        import bjontegaard  # imports numpy, scipy and matplotlib.pyplot eagerly
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching in tests
        raise BdRateUnavailableError(
            "BD-rate needs the 'bjontegaard' package (and its dependencies numpy, scipy, matplotlib): "
            f"pip install bjontegaard  [import failed: {exc}]"
        ) from exc
    return bjontegaard


def _curve(kbps: Sequence[float], quality: Sequence[float], name: str) -> tuple[list[float], list[float]]:
    """Validate one curve; return it sorted by quality (the integration variable)."""
    if len(kbps) != len(quality):
        raise BdRateError(f"{name}: {len(kbps)} rates but {len(quality)} quality values")
    if len(kbps) < 2:
        raise BdRateError(f"{name}: need at least 2 rate/quality points, got {len(kbps)}")
    pts = sorted(zip(map(float, kbps), map(float, quality), strict=True), key=lambda p: p[1])
    for k, q in pts:
        if not (math.isfinite(k) and k > 0):
            raise BdRateError(f"{name}: rates must be finite and > 0, got {k!r}")
        if not math.isfinite(q):
            raise BdRateError(
                f"{name}: quality values must be finite, got {q!r} (cap PSNR of identical frames)"
            )
    for (k0, q0), (k1, q1) in pairwise(pts):
        if q1 == q0:
            raise BdRateError(f"{name}: two points share quality {q0}; BD-rate integrates over quality")
        if k1 <= k0:
            raise BdRateError(
                f"{name}: not monotone: {k1:g} kbps gives quality {q1:g} but {k0:g} kbps gives {q0:g}; "
                "drop dominated points first"
            )
    return [p[0] for p in pts], [p[1] for p in pts]


def quality_overlap(anchor_q: Sequence[float], test_q: Sequence[float]) -> float:
    """Share of the combined quality range [min, max] that both curves cover (0..1)."""
    lo_a, hi_a = min(anchor_q), max(anchor_q)
    lo_t, hi_t = min(test_q), max(test_q)
    total = max(hi_a, hi_t) - min(lo_a, lo_t)
    if total <= 0:
        return 0.0
    return max(0.0, min(hi_a, hi_t) - max(lo_a, lo_t)) / total


def bd_rate(
    anchor_kbps: Sequence[float],
    anchor_q: Sequence[float],
    test_kbps: Sequence[float],
    test_q: Sequence[float],
    *,
    method: str = "pchip",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    strict: bool = True,
) -> BdResult:
    """BD-rate (%) of the test curve against the anchor curve.

    Points may come in any order and the two curves may have different numbers of points (>= 2 each).
    Each curve must be strictly monotone (more bits, more quality). With ``strict`` (default) an overlap
    below ``min_overlap`` raises :class:`InsufficientOverlapError`; otherwise the result is returned with
    ``valid=False`` (and ``percent`` NaN if the curves do not overlap at all).
    """
    if method not in METHODS:
        raise BdRateError(f"unknown BD method {method!r}; use one of {', '.join(METHODS)}")
    ak, aq = _curve(anchor_kbps, anchor_q, "anchor")
    tk, tq = _curve(test_kbps, test_q, "test")
    overlap = quality_overlap(aq, tq)
    if overlap < min_overlap:
        if strict:
            raise InsufficientOverlapError(
                f"anchor quality {aq[0]:g}..{aq[-1]:g} and test quality {tq[0]:g}..{tq[-1]:g} overlap by "
                f"{overlap:.2f} of their combined range (< {min_overlap:g}); BD-rate would not be meaningful"
            )
        if overlap == 0.0:
            return BdResult(math.nan, 0.0, method, valid=False)
    bd = _load_bjontegaard()
    percent = bd.bd_rate(
        ak,
        aq,
        tk,
        tq,
        method=method,
        require_matching_points=False,  # ladders may differ in rung count
        interpolators=False,
        min_overlap=0.0,  # we judge the overlap ourselves (and report it); silence the package's warning
    )
    return BdResult(float(percent), overlap, method, valid=overlap >= min_overlap)
