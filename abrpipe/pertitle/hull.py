"""Rate/quality hull maths for per-title ladders (pure: no I/O, no subprocesses).

Data flow (see /work/shared/reference/per-title-research.md, section 5):

1. The analysis stage produces one :class:`TrialPoint` per trial encode (resolution x CRF), with the
   bitrate in kbps and the quality measured at the display resolution (VMAF, or PSNR-Y in dB).
2. :func:`pareto` drops dominated points per resolution (e.g. x264 CRF 42 giving *more* bits than
   CRF 36 on noisy content, or a higher CRF with equal quality on a saturated curve).
3. :func:`envelope` fits one PCHIP of quality vs ln(kbps) per resolution and takes the maximum across
   resolutions; it reports the best resolution at any bitrate and the crossovers between resolutions.
   :func:`upper_convex_hull` gives the classic convex hull of all points (for reports and plots).
4. :func:`choose_rungs` turns the envelope into ladder rungs: top = min(max_kbps, rate at which the
   envelope reaches the saturation quality), bottom = min_kbps, geometric spacing in between, each
   rung at the envelope's best resolution, with the resolution never increasing going down.

Conventions used throughout:

* A resolution is ``(width, height)``. Resolutions are ordered by pixel count (then height); "lower"
  means fewer pixels.
* A resolution's curve is only defined from its lowest measured bitrate upwards. Above its highest
  measured bitrate it is held flat at its best measured quality (spending more bits does not make an
  encode worse, but we have no data on how much better it gets). Below its lowest measured bitrate the
  resolution is "not available" -- unless *no* resolution is measured that low, in which case the curve
  with the lowest measured bitrate is extrapolated linearly in ln(kbps) and the result is flagged
  ``extrapolated``.
* On (near) ties the lower resolution wins: same quality, cheaper to decode.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator

Resolution = tuple[int, int]

#: Qualities closer than this are treated as equal when picking the best resolution.
_TIE_EPS = 1e-9
#: Number of log-spaced samples used to locate crossovers before refining them by bisection.
_CROSSOVER_GRID = 2000


class LadderSpacingWarning(UserWarning):
    """``choose_rungs`` could not keep the rung-to-rung ratio within ``max_ratio`` with ``rung_count`` rungs."""


# --------------------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialPoint:
    """One measured encode: resolution, rate-control setting, bitrate and quality.

    ``crf`` is informational (it labels the point in reports); it may be ``None`` for points that did
    not come from a CRF encode, e.g. the rungs of a fixed bitrate ladder.
    ``quality`` must be finite: cap PSNR of identical frames (``inf``) before building points.
    """

    width: int
    height: int
    crf: float | None
    kbps: float
    quality: float

    def __post_init__(self) -> None:
        if (
            int(self.width) != self.width
            or int(self.height) != self.height
            or self.width <= 0
            or self.height <= 0
        ):
            raise ValueError(
                f"TrialPoint needs positive integer width/height, got {self.width}x{self.height}"
            )
        if not (math.isfinite(self.kbps) and self.kbps > 0):
            raise ValueError(f"TrialPoint kbps must be finite and > 0, got {self.kbps!r}")
        if not math.isfinite(self.quality):
            raise ValueError(
                f"TrialPoint quality must be finite, got {self.quality!r} "
                "(cap the PSNR of identical frames before building points)"
            )

    @property
    def resolution(self) -> Resolution:
        return (self.width, self.height)

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class ChosenRung:
    """A ladder rung picked from the envelope.

    ``kbps`` is the exact (unrounded) target bitrate; round it when building encoder arguments.
    ``predicted_quality`` is the envelope's quality for this resolution at ``kbps``.
    ``extrapolated`` is True when ``kbps`` lies below every measured point of the allowed resolutions,
    so the prediction is a linear extrapolation rather than an interpolation.
    ``crf``: the CRF that gives ``kbps`` at this resolution on the trials, for a rung encoded capped-CRF;
    None for a rung that targets ``kbps`` (VBR).
    """

    width: int
    height: int
    kbps: float
    predicted_quality: float
    extrapolated: bool = False
    crf: int | None = None

    @property
    def resolution(self) -> Resolution:
        return (self.width, self.height)


@dataclass(frozen=True)
class Crossover:
    """The envelope's best resolution changes from ``below`` to ``above`` at ``kbps``."""

    kbps: float
    below: Resolution
    above: Resolution


def _res_key(res: Resolution) -> tuple[int, int]:
    """Sort key for resolutions: pixel count, then height."""
    return (res[0] * res[1], res[1])


# --------------------------------------------------------------------------------------------------
# Pareto filtering and the convex hull
# --------------------------------------------------------------------------------------------------


def _pareto_front(points: Iterable[TrialPoint]) -> list[TrialPoint]:
    """Non-dominated points (fewer-or-equal bits *and* strictly better quality than all cheaper points).

    The result is strictly increasing in both kbps and quality.
    """
    ordered = sorted(points, key=lambda p: (p.kbps, -p.quality))
    front: list[TrialPoint] = []
    best = -math.inf
    for p in ordered:
        if p.quality > best:
            front.append(p)
            best = p.quality
    return front


def group_by_resolution(points: Iterable[TrialPoint]) -> dict[Resolution, list[TrialPoint]]:
    """Points grouped by resolution (lowest resolution first), each group sorted by kbps."""
    groups: dict[Resolution, list[TrialPoint]] = {}
    for p in points:
        groups.setdefault(p.resolution, []).append(p)
    return {res: sorted(groups[res], key=lambda p: p.kbps) for res in sorted(groups, key=_res_key)}


def pareto(points: Iterable[TrialPoint]) -> list[TrialPoint]:
    """Drop dominated / non-monotone points, separately for each resolution.

    Within a resolution a point is kept only if its quality is strictly higher than that of every point
    with fewer or equal bits. This removes e.g. a CRF 42 encode that produced more bits than CRF 36 at
    lower quality, duplicates, and the flat tail of a saturated curve (more bits, no more quality).

    Returns the surviving points sorted by resolution (lowest first), then kbps.
    """
    out: list[TrialPoint] = []
    for pts in group_by_resolution(points).values():
        out.extend(_pareto_front(pts))
    return out


def upper_convex_hull(points: Iterable[TrialPoint]) -> list[TrialPoint]:
    """Upper convex hull of all points, across resolutions, in (ln kbps, quality); ascending kbps.

    Andrew's monotone chain on the globally non-dominated points: only the rising part of the hull is
    returned (points beyond the best quality are dominated). Collinear middle points are dropped.
    """
    front = _pareto_front(points)
    if not front:
        raise ValueError("upper_convex_hull needs at least one point")
    hull: list[TrialPoint] = []
    for p in front:
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            ox, ax, px = math.log(o.kbps), math.log(a.kbps), math.log(p.kbps)
            cross = (ax - ox) * (p.quality - o.quality) - (a.quality - o.quality) * (px - ox)
            if cross >= 0:  # a is on or below the segment o->p: not on the upper hull
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


# --------------------------------------------------------------------------------------------------
# Per-resolution curves and the envelope
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolutionCurve:
    """Quality vs bitrate for one resolution: PCHIP of quality over ln(kbps) through Pareto points."""

    width: int
    height: int
    points: tuple[TrialPoint, ...]
    _pchip: PchipInterpolator | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_points(cls, points: Iterable[TrialPoint]) -> ResolutionCurve:
        pts = list(points)
        if not pts:
            raise ValueError("a resolution curve needs at least one point")
        if len({p.resolution for p in pts}) != 1:
            raise ValueError("all points of a resolution curve must have the same resolution")
        front = tuple(_pareto_front(pts))
        pchip = None
        if len(front) >= 2:
            pchip = PchipInterpolator(
                np.log([p.kbps for p in front]), np.array([p.quality for p in front]), extrapolate=False
            )
        return cls(front[0].width, front[0].height, front, pchip)

    @property
    def resolution(self) -> Resolution:
        return (self.width, self.height)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def min_kbps(self) -> float:
        return self.points[0].kbps

    @property
    def max_kbps(self) -> float:
        return self.points[-1].kbps

    @property
    def max_quality(self) -> float:
        return self.points[-1].quality

    def values(self, kbps: np.ndarray) -> np.ndarray:
        """Quality at each bitrate; NaN below this curve's lowest measured bitrate (not available)."""
        k = np.asarray(kbps, dtype=float)
        out = np.full(k.shape, np.nan)
        out[k >= self.max_kbps] = self.max_quality  # flat above the highest measured point
        inside = (k >= self.min_kbps) & (k < self.max_kbps)
        if self._pchip is not None and inside.any():
            out[inside] = self._pchip(np.log(k[inside]))
        return out

    def quality_at(self, kbps: float) -> float | None:
        """Quality at ``kbps`` or None below the lowest measured bitrate."""
        v = float(self.values(np.array([kbps]))[0])
        return None if math.isnan(v) else v

    def extrapolate_below(self, kbps: float) -> float:
        """Quality below ``min_kbps``: linear in ln(kbps) along the first segment, floored at 0."""
        if kbps >= self.min_kbps:
            q = self.quality_at(kbps)
            assert q is not None
            return q
        p0 = self.points[0]
        if len(self.points) < 2:
            return p0.quality
        p1 = self.points[1]
        slope = (p1.quality - p0.quality) / (math.log(p1.kbps) - math.log(p0.kbps))
        return max(0.0, p0.quality + slope * (math.log(kbps) - math.log(p0.kbps)))


class Envelope:
    """Maximum over resolutions of the per-resolution PCHIP curves.

    Build it with :func:`envelope`. Curves are held lowest resolution first.
    """

    def __init__(self, curves: Sequence[ResolutionCurve]):
        if not curves:
            raise ValueError("an envelope needs at least one resolution curve")
        self.curves: tuple[ResolutionCurve, ...] = tuple(sorted(curves, key=lambda c: _res_key(c.resolution)))
        if len({c.resolution for c in self.curves}) != len(self.curves):
            raise ValueError("duplicate resolution in envelope curves")

    # -- basic properties ------------------------------------------------------------------------
    @property
    def resolutions(self) -> list[Resolution]:
        return [c.resolution for c in self.curves]

    @property
    def min_kbps(self) -> float:
        """Lowest measured bitrate of any resolution (below it, values are extrapolated)."""
        return min(c.min_kbps for c in self.curves)

    @property
    def max_kbps(self) -> float:
        """Highest measured bitrate of any resolution (above it, the envelope is flat)."""
        return max(c.max_kbps for c in self.curves)

    @property
    def max_quality(self) -> float:
        return max(c.max_quality for c in self.curves)

    def curve(self, resolution: Resolution) -> ResolutionCurve:
        for c in self.curves:
            if c.resolution == tuple(resolution):
                return c
        raise KeyError(resolution)

    # -- evaluation --------------------------------------------------------------------------------
    def _allowed(self, max_resolution: Resolution | None) -> list[ResolutionCurve]:
        if max_resolution is None:
            return list(self.curves)
        cap = _res_key(tuple(max_resolution))  # type: ignore[arg-type]
        allowed = [c for c in self.curves if _res_key(c.resolution) <= cap]
        if not allowed:
            raise ValueError(f"no measured resolution is at or below {max_resolution[0]}x{max_resolution[1]}")
        return allowed

    def best_at(
        self, kbps: float, *, max_resolution: Resolution | None = None
    ) -> tuple[ResolutionCurve, float, bool]:
        """Best curve at ``kbps`` among resolutions not larger than ``max_resolution``.

        Returns ``(curve, quality, extrapolated)``. On near-ties the lower resolution wins. If no allowed
        curve is measured this low, the allowed curve with the lowest measured bitrate is extrapolated.
        """
        if not (math.isfinite(kbps) and kbps > 0):
            raise ValueError(f"kbps must be finite and > 0, got {kbps!r}")
        allowed = self._allowed(max_resolution)
        vals = [c.quality_at(kbps) for c in allowed]
        avail = [(c, v) for c, v in zip(allowed, vals, strict=True) if v is not None]
        if not avail:
            c = min(allowed, key=lambda c: (c.min_kbps, _res_key(c.resolution)))
            return c, c.extrapolate_below(kbps), True
        best = max(v for _, v in avail)
        for c, v in avail:  # lowest resolution first: first near-best wins
            if v >= best - _TIE_EPS:
                return c, v, False
        raise AssertionError("unreachable")

    def quality_at(self, kbps: float) -> float:
        """Envelope quality at ``kbps`` (extrapolated below :attr:`min_kbps`)."""
        return self.best_at(kbps)[1]

    def best_resolution_at(self, kbps: float) -> Resolution:
        """Resolution with the highest quality at ``kbps`` (lower resolution on ties)."""
        return self.best_at(kbps)[0].resolution

    def _winners(self, kbps: np.ndarray) -> np.ndarray:
        """Index (into self.curves) of the best curve at each bitrate of ``kbps`` (all within the domain)."""
        mat = np.vstack([c.values(kbps) for c in self.curves])  # (n_curves, n_rates), NaN = unavailable
        filled = np.where(np.isnan(mat), -np.inf, mat)
        best = filled.max(axis=0)
        return np.argmax(filled >= best - _TIE_EPS, axis=0)

    def crossovers(self) -> list[Crossover]:
        """Bitrates at which the best resolution changes, ascending (within the measured range)."""
        lo, hi = math.log(self.min_kbps), math.log(self.max_kbps)
        if len(self.curves) < 2 or hi <= lo:
            return []
        grid = np.linspace(lo, hi, _CROSSOVER_GRID)
        win = self._winners(np.exp(grid))
        out: list[Crossover] = []
        for i in np.nonzero(win[1:] != win[:-1])[0]:
            a, b = float(grid[i]), float(grid[i + 1])
            wa, wb = int(win[i]), int(win[i + 1])
            for _ in range(60):  # bisection on the winner; 60 halvings is far below float resolution
                m = 0.5 * (a + b)
                wm = int(self._winners(np.array([math.exp(m)]))[0])
                if wm == wa:
                    a = m
                else:
                    b = m
            out.append(Crossover(math.exp(b), self.curves[wa].resolution, self.curves[wb].resolution))
        return out

    def kbps_for_quality(self, quality: float) -> float | None:
        """Lowest bitrate at which the envelope reaches ``quality``; None if it never does.

        If even the lowest measured point already reaches ``quality``, :attr:`min_kbps` is returned
        (an upper bound: nothing is known below it).
        """
        if quality > self.max_quality:
            return None
        lo, hi = math.log(self.min_kbps), math.log(self.max_kbps)
        if self.quality_at(self.min_kbps) >= quality:
            return self.min_kbps
        # The envelope is non-decreasing (max of non-decreasing curves whose availability only grows),
        # so bisection finds the first rate that reaches the quality.
        for _ in range(100):
            m = 0.5 * (lo + hi)
            if self.quality_at(math.exp(m)) >= quality:
                hi = m
            else:
                lo = m
        return math.exp(hi)


def envelope(curves: Iterable[TrialPoint] | Mapping[Resolution, Iterable[TrialPoint]]) -> Envelope:
    """Build the :class:`Envelope` from trial points (any resolutions) or a resolution -> points map.

    Dominated points are dropped per resolution first (:func:`pareto`). Raises ValueError when no
    resolution has at least two non-dominated points with different bitrates: one point per resolution
    says nothing about the slope of the rate/quality curve. Resolutions with a single point still take
    part, as a flat step starting at their bitrate.
    """
    if isinstance(curves, Mapping):
        pts = [p for group in curves.values() for p in group]
    else:
        pts = list(curves)
    if not pts:
        raise ValueError("envelope needs trial points; got none")
    groups = group_by_resolution(pts)
    built = [ResolutionCurve.from_points(g) for g in groups.values()]
    if not any(len(c.points) >= 2 for c in built):
        detail = ", ".join(f"{c.width}x{c.height}: {len(groups[c.resolution])}" for c in built)
        raise ValueError(
            "too few trial points to build a rate/quality curve: need at least two non-dominated points "
            f"(different bitrates, increasing quality) at one resolution; points per resolution: {detail}"
        )
    return Envelope(built)


# --------------------------------------------------------------------------------------------------
# Rung selection
# --------------------------------------------------------------------------------------------------


def choose_rungs(
    env: Envelope,
    *,
    min_kbps: float,
    max_kbps: float,
    rung_count: int,
    saturation_quality: float,
    max_ratio: float = 2.0,
) -> list[ChosenRung]:
    """Pick ladder rungs from the envelope. Returns the rungs top (highest bitrate) first.

    * top = min(max_kbps, the lowest rate at which the envelope reaches ``saturation_quality``, e.g.
      VMAF 95 or PSNR-Y 45 dB); max_kbps if the envelope never gets there. If the envelope saturates
      below ``min_kbps`` the ladder collapses to one rung at ``min_kbps``.
    * bottom = ``min_kbps``.
    * ``rung_count`` is the maximum number of rungs. The ladder uses the fewest rungs (at least 2) whose
      geometric spacing keeps the ratio between neighbouring rungs <= ``max_ratio``. If even
      ``rung_count`` rungs cannot, it uses ``rung_count`` rungs and emits :class:`LadderSpacingWarning`.
      With ``rung_count == 1`` the single rung sits at the top rate.
    * Each rung takes the envelope's best resolution at its bitrate, restricted to resolutions not larger
      than the rung above it, so the resolution never increases going down the ladder.
    """
    if not (math.isfinite(min_kbps) and min_kbps > 0):
        raise ValueError(f"min_kbps must be finite and > 0, got {min_kbps!r}")
    if not (math.isfinite(max_kbps) and max_kbps >= min_kbps):
        raise ValueError(f"max_kbps must be finite and >= min_kbps ({min_kbps}), got {max_kbps!r}")
    if int(rung_count) != rung_count or rung_count < 1:
        raise ValueError(f"rung_count must be a positive integer, got {rung_count!r}")
    if not max_ratio > 1:
        raise ValueError(f"max_ratio must be > 1, got {max_ratio!r}")

    sat = env.kbps_for_quality(saturation_quality)
    top = max_kbps if sat is None else min(max_kbps, sat)
    top = max(top, min_kbps)

    if rung_count == 1:
        rates = [top]
    elif top <= min_kbps * (1 + 1e-12):
        rates = [min_kbps]
    else:
        span = top / min_kbps
        n = 2
        while n < rung_count and span ** (1.0 / (n - 1)) > max_ratio * (1 + 1e-9):
            n += 1
        ratio = span ** (1.0 / (n - 1))
        if ratio > max_ratio * (1 + 1e-9):
            warnings.warn(
                f"{n} rungs between {min_kbps:g} and {top:g} kbps are spaced {ratio:.2f}x apart, "
                f"more than max_ratio={max_ratio:g}; raise rung_count or narrow the bitrate range",
                LadderSpacingWarning,
                stacklevel=2,
            )
        rates = [min_kbps * ratio**i for i in range(n)]
        rates[-1] = top  # exact endpoints, no float drift

    rungs: list[ChosenRung] = []
    cap: Resolution | None = None
    for kbps in sorted(rates, reverse=True):
        curve, q, extrapolated = env.best_at(kbps, max_resolution=cap)
        rungs.append(ChosenRung(curve.width, curve.height, kbps, q, extrapolated))
        cap = curve.resolution
    return rungs


# --------------------------------------------------------------------------------------------------
# Candidate resolutions
# --------------------------------------------------------------------------------------------------

#: Heights of the candidate ladder sizes (16:9 widths 1920, 1280, 960, 768, 640, 416).
DEFAULT_CANDIDATE_HEIGHTS: tuple[int, ...] = (1080, 720, 540, 432, 360, 234)


def _even(x: float) -> int:
    """Nearest even integer >= 2 (codecs with 4:2:0 chroma need even sizes)."""
    return max(2, int(round(x / 2.0)) * 2)


def _even_floor(x: int) -> int:
    return max(2, int(x) - int(x) % 2)


def candidate_resolutions(
    source_width: int, source_height: int, heights: Sequence[int] = DEFAULT_CANDIDATE_HEIGHTS
) -> list[Resolution]:
    """Trial resolutions for a source: candidate heights up to the source's, widths at the source's
    aspect ratio (even numbers, never wider than the source), highest first.

    A source smaller than every candidate gets a single candidate, its own size (rounded down to even),
    so the analysis still has one curve to work with; upscaling a source for the ladder is never useful.
    """
    if source_width <= 0 or source_height <= 0:
        raise ValueError(f"source size must be positive, got {source_width}x{source_height}")
    aspect = source_width / source_height
    max_w = _even_floor(source_width)
    out: list[Resolution] = []
    for h in sorted(set(heights), reverse=True):
        if h <= 0 or h > source_height:
            continue
        res = (min(_even(h * aspect), max_w), _even_floor(h))
        if res not in out:
            out.append(res)
    if not out:
        out.append((max_w, _even_floor(source_height)))
    return out
