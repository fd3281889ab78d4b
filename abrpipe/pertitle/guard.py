"""The never-worse guard: keep the profile's ladder unless the analysis shows a saving with confidence.

Pure (no I/O, no subprocesses). :func:`decide` looks at what the trial encodes predict and returns a
:class:`Decision`: use the per-title ladder, or keep the profile's fixed ladder and say why. The checks,
all of which must pass for the per-title ladder to be used:

* **enough points**: at least ``min_points`` usable (non-dominated) trial points, and at least two at
  the size of every per-title rung, so every rung's quality is interpolated, not guessed;
* **predicted saving**: the per-title ladder's BD-rate against the fixed ladder, both predicted from
  the pooled trial curves, is at most ``-min_saving_pct`` (a margin for the prediction error). A fixed
  rung above every trial of its size is predicted cautiously (see :func:`predict`): from its size's
  own curve when that size was measured at the lowest CRF the search allows (its quality has
  saturated), else the best quality any size reaches at that bitrate. When the per-title ladder is
  encoded capped-CRF (its rungs are trial points) and the fixed one targets bitrates, the fixed rungs
  are predicted at what their bitrate is worth in CRF bits, as measured by encoding one profile rung
  exactly as the fixed ladder does on the same windows (:func:`rate_efficiency`), of which the guard
  credits half the measured waste (:func:`credited_efficiency`);
* **overlap**: the two predicted ladders share at least ``min_overlap`` of their combined quality range,
  so the BD-rate describes more than a sliver of the ladders;
* **prediction check**: every sampled window on its own must predict a saving too. Each window's
  trials give that window's own curves; the rungs chosen from the pooled curves are re-predicted on
  each window's curves, and a window on which the per-title ladder does not save (or whose prediction
  cannot be made) means the sample does not represent the title well enough to trust the pooled one.

Coverage (:func:`coverage_notes`): the per-title ladder deliberately stops where quality saturates, so
its top can lie below the fixed ladder's. At the low end it reaches down to the quality predicted for
the profile's lowest rung: below the profile's lowest bitrate where the content is easy, but never
below an absolute floor, so there it can still start higher. The notes say where and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from abrpipe.pertitle import hull

#: A predicted ladder: (kbps, quality) per rung.
Ladder = Sequence[tuple[float, float]]
#: BD-rate function: (anchor, test) -> (percent, overlap), percent NaN when it cannot be computed.
BdFunction = Callable[[Ladder, Ladder], tuple[float, float]]


@dataclass(frozen=True)
class GuardOptions:
    min_saving_pct: float = 3.0  # predicted BD-rate must be <= -this (margin for the prediction error)
    min_overlap: float = 0.5  # the predicted ladders must share this much of their quality range
    min_points: int = 5  # usable trial points in all (one size alone is trialled at 5 CRFs)
    window_min_saving_pct: float = 0.0  # every window's own BD-rate must be <= -this


@dataclass(frozen=True)
class Decision:
    """``per_title``: encode the per-title ladder. ``reasons``: why the fixed ladder is kept (empty when
    ``per_title``). ``checks``: the figures behind the decision (for reports)."""

    per_title: bool
    reasons: tuple[str, ...]
    checks: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        if self.per_title:
            return "per-title ladder used: the trials predict a saving on the pooled sample and on every window"
        return "the profile's ladder is kept: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"per_title": self.per_title, "summary": self.summary(), "reasons": list(self.reasons),
                "checks": dict(self.checks)}  # fmt: skip


def rung_quality(env: hull.Envelope, resolution: hull.Resolution, kbps: float) -> tuple[float, bool] | None:
    """Quality of ``resolution`` at ``kbps`` on ``env`` (None if ``env`` has no such curve).
    The flag is True when the value is extrapolated below the curve's lowest point."""
    try:
        curve = env.curve(resolution)
    except KeyError:
        return None
    q = curve.quality_at(kbps)
    if q is None:
        return curve.extrapolate_below(kbps), True
    return q, False


def saturated_bound(curve: hull.ResolutionCurve, kbps: float) -> float | None:
    """A cautious (high) quality for ``curve``'s size at ``kbps`` above its highest trial, when that
    trial is at the lowest CRF the search allows; None with fewer than two points.

    Quality is concave in ln(kbps) where it saturates, so the straight line through the curve's two
    highest points, carried on to ``kbps``, lies above the size's real curve there. The bound is that
    line, and never less than the highest trial plus the gain between the two highest trials (one
    more CRF step's worth), so a rung just above the trials still gets a margin.
    """
    if len(curve.points) < 2:
        return None
    prev, last = curve.points[-2], curve.points[-1]
    gain = max(0.0, last.quality - prev.quality)
    span = math.log(last.kbps) - math.log(prev.kbps)
    along = gain / span * max(0.0, math.log(kbps) - math.log(last.kbps)) if span > 0 else 0.0
    return last.quality + max(gain, along)


def predict(
    env: hull.Envelope,
    rungs: Sequence[tuple[hull.Resolution, float]],
    *,
    generous: bool = False,
    saturated: Collection[hull.Resolution] = (),
    rate_efficiency: float = 1.0,
) -> list[tuple[float, float]] | None:
    """(kbps, quality) of each (resolution, kbps) rung on ``env``; None if a size has no curve there.

    ``generous`` (used for the ladder we compare against): a rung above its size's highest trial
    bitrate, where the curve is only held flat, gets a cautious upper bound instead, so an unmeasured
    stretch never makes the fixed ladder look worse than it may be. For a size in ``saturated``
    (measured at the lowest CRF the search allows: more bits at that size buy little) the bound comes
    from the size's own curve (:func:`saturated_bound`), never from other sizes; for any other size it
    is the best quality any size reaches at that bitrate.

    ``rate_efficiency`` (see :func:`rate_efficiency`): each rung is worth what the CRF trials give at
    ``kbps x rate_efficiency``; its point stays at ``kbps``.
    """
    out = []
    for res, kbps in rungs:
        worth = kbps * rate_efficiency
        got = rung_quality(env, res, worth)
        if got is None:
            return None
        q = got[0]
        if generous and worth > env.curve(res).max_kbps:
            own = saturated_bound(env.curve(res), worth) if res in saturated else None
            q = max(q, env.quality_at(worth) if own is None else own)
        out.append((kbps, q))
    return out


#: The guard credits this share of the waste a calibration measures (and never more than half of a
#: target's bits): one encode of one rung per window is a small sample, measured at the largest size only,
#: on windows where a bitrate target has less of the title to spread its bits over than the final encode.
RATE_CREDIT = 0.5


def credited_efficiency(measured: float) -> float:
    """What the guard takes a bitrate target to be worth, from what a calibration measured: half the waste
    (:data:`RATE_CREDIT`); a target measured better than CRF is taken at its word (that only flatters the
    fixed ladder)."""
    return measured if measured >= 1 else 1.0 - RATE_CREDIT * (1.0 - max(0.0, measured))


def rate_efficiency(curve: hull.ResolutionCurve, kbps: float, quality: float) -> float | None:
    """What a bitrate-targeted (VBR) encode at ``kbps`` that measured ``quality`` is worth in CRF bits:
    the bitrate at which ``curve`` (the CRF trials of the same size) reaches ``quality``, over ``kbps``.
    Below 1: the target spends more bits than CRF for the same quality. None when ``quality`` lies
    outside the curve's measured range."""
    if len(curve.points) < 2 or not curve.points[0].quality <= quality <= curve.max_quality or kbps <= 0:
        return None
    lo, hi = math.log(curve.min_kbps), math.log(curve.max_kbps)
    for _ in range(60):  # quality rises with the bitrate along the curve: bisect in ln(kbps)
        mid = (lo + hi) / 2
        if (curve.quality_at(math.exp(mid)) or 0.0) < quality:
            lo = mid
        else:
            hi = mid
    return math.exp(hi) / kbps


def decide(
    *,
    pooled: hull.Envelope,
    per_title: Sequence[tuple[hull.Resolution, float]],
    fixed: Sequence[tuple[hull.Resolution, float]],
    windows: Sequence[hull.Envelope | None],
    usable_points: int,
    bd: BdFunction,
    metric_label: str = "quality",
    options: GuardOptions | None = None,
    saturated: Collection[hull.Resolution] = (),
    fixed_rate_efficiency: float = 1.0,
) -> Decision:
    """Decide between the per-title ladder ``per_title`` and the fixed ladder ``fixed`` (each a list of
    (resolution, kbps) rungs) from the pooled curves and each window's own curves (None for a window
    whose trials gave no curve). ``saturated``: the sizes measured at the lowest CRF the search allows
    (see :func:`predict`). ``fixed_rate_efficiency``: what the fixed ladder's bitrate targets are worth
    in CRF bits (:func:`rate_efficiency`; 1 when the per-title ladder is encoded the same way)."""
    opts = options or GuardOptions()
    reasons: list[str] = []
    checks: dict[str, Any] = {"usable_points": usable_points, "min_points": opts.min_points,
                              "min_saving_pct": opts.min_saving_pct, "min_overlap": opts.min_overlap}  # fmt: skip
    if usable_points < opts.min_points:
        reasons.append(f"too few usable trial points ({usable_points} < {opts.min_points})")
    thin = sorted({res for res, _ in per_title if _points_at(pooled, res) < 2})
    if thin:
        reasons.append("too few trial points at " + ", ".join(f"{w}x{h}" for w, h in thin) + " to interpolate a rung there")
    checks["fixed_rate_efficiency"] = round(fixed_rate_efficiency, 3)
    pt = predict(pooled, per_title)
    fx = predict(pooled, fixed, generous=True, saturated=saturated, rate_efficiency=fixed_rate_efficiency)
    if pt is None or fx is None:
        reasons.append("a rung's size has no trial curve")
        return Decision(False, tuple(reasons), checks)
    pct, overlap = bd(fx, pt)
    checks["predicted_bd_rate_pct"] = None if math.isnan(pct) else round(pct, 2)
    checks["predicted_overlap"] = round(overlap, 3)
    checks["saturated_sizes"] = [f"{w}x{h}" for w, h in sorted(saturated, key=lambda r: (r[0] * r[1], r[1]))]
    if math.isnan(pct):
        reasons.append("no predicted BD-rate (the predicted ladders do not overlap in quality)")
    elif pct > -opts.min_saving_pct:
        reasons.append(f"predicted BD-rate {pct:+.1f}% is not a saving of at least {opts.min_saving_pct:g}%")
    if not math.isnan(pct) and overlap < opts.min_overlap:
        reasons.append(f"the predicted ladders share only {overlap:.0%} of their {metric_label} range (< {opts.min_overlap:.0%})")
    per_window: list[float | None] = []
    for env in windows:
        w_pt = predict(env, per_title) if env is not None else None
        w_fx = predict(env, fixed, generous=True, saturated=saturated, rate_efficiency=fixed_rate_efficiency) if env is not None else None
        if w_pt is None or w_fx is None:
            per_window.append(None)
            continue
        w_pct, _ = bd(w_fx, w_pt)
        per_window.append(None if math.isnan(w_pct) else round(w_pct, 2))
    checks["window_bd_rate_pct"] = per_window
    if len(windows) > 1:
        bad = [i for i, v in enumerate(per_window, 1) if v is None or v > -opts.window_min_saving_pct]
        if bad:
            detail = ", ".join(f"window {i}: " + ("no prediction" if per_window[i - 1] is None else f"{per_window[i - 1]:+.1f}%")
                               for i in bad)  # fmt: skip
            reasons.append(f"prediction check failed: not every sampled window predicts a saving ({detail})")
    return Decision(not reasons, tuple(reasons), checks)


def _points_at(env: hull.Envelope, res: hull.Resolution) -> int:
    try:
        return len(env.curve(res).points)
    except KeyError:
        return 0


def coverage_notes(
    per_title: Ladder,
    fixed: Ladder,
    *,
    saturation: float,
    min_kbps: float,
    metric_label: str,
    floor_kbps: float | None = None,
    floor_bound: str = "profile",
) -> list[str]:
    """Where the per-title ladder's predicted quality range differs from the fixed one's, and why.

    ``min_kbps`` is the profile's lowest bitrate; ``floor_kbps`` the per-title ladder's lowest (None:
    the same) and ``floor_bound`` what set it (see :class:`abrpipe.pertitle.analysis.Floor`).
    """
    if not per_title or not fixed:
        return []
    notes = []
    pt_lo, pt_hi = min(q for _, q in per_title), max(q for _, q in per_title)
    fx_lo, fx_hi = min(q for _, q in fixed), max(q for _, q in fixed)
    floor = min_kbps if floor_kbps is None else floor_kbps
    lowest = min(k for k, _ in per_title)  # the lowest rung's bitrate (the floor, rounded)
    if pt_hi < fx_hi - 0.5:
        # Below the profile's top bitrate the only reason to stop is saturation (a capped-CRF top rung sits at
        # the CRF nearest to it, a little above or below the target).
        stopped = max(k for k, _ in per_title) < max(k for k, _ in fixed) * 0.99
        why = (f"it stops where {metric_label} reaches the saturation target {saturation:g}"
               if stopped or pt_hi >= saturation - 0.5 else "its top rung is the profile's highest bitrate")  # fmt: skip
        notes.append(f"coverage: the per-title ladder deliberately tops out at {metric_label} {pt_hi:.1f} ({why}); "
                     f"the profile's top rung is predicted at {fx_hi:.1f}")  # fmt: skip
    if pt_lo > fx_lo + 0.5 and floor_bound == "quality" and floor < min_kbps - 0.5:
        # The floor is where the hull first reaches the fixed ladder's lowest quality; the hull can jump past
        # it there (a larger size's curve starts at its lowest trial), so the lowest rung lands a little higher.
        notes.append(f"coverage: the per-title ladder goes below the profile's lowest bitrate ({min_kbps:g} kbps) to "
                     f"{lowest:.0f} kbps (the hull first reaches the profile's lowest rung's {metric_label} {fx_lo:.1f} at "
                     f"{floor:.1f} kbps); its lowest rung is predicted at {pt_lo:.1f} there")  # fmt: skip
    elif pt_lo > fx_lo + 0.5:
        why = {
            "absolute": f"its absolute floor of {floor:.0f} kbps",
            "spacing": f"{floor:.0f} kbps, the lowest the profile's rung count reaches at the allowed rung spacing",
        }.get(floor_bound, f"the profile's lowest bitrate ({min_kbps:g} kbps)")
        notes.append(f"coverage: the per-title ladder deliberately does not go below {why}, where it is predicted at "
                     f"{metric_label} {pt_lo:.1f}; the profile's lowest rung is predicted at {fx_lo:.1f}")  # fmt: skip
    elif floor < min_kbps - 0.5:
        notes.append(f"coverage: the per-title ladder goes below the profile's lowest bitrate ({min_kbps:g} kbps) to "
                     f"{lowest:.0f} kbps, where it is predicted at {metric_label} {pt_lo:.1f}, the quality of the profile's "
                     f"lowest rung ({fx_lo:.1f})")  # fmt: skip
    return notes
