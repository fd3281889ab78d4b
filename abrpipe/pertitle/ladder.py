"""The per-title ladder as a profile: rounding the chosen rungs, building the Profile, writing it as TOML.

The profile written by :func:`save_profile` is an ordinary abrpipe profile (schema 1): every rung has
an explicit ``size``, ``bitrate``, ``maxrate`` and ``bufsize``, and everything else (codec, preset, GOP,
segment length, audio, encoder options) is copied from the profile the analysis started from. CI can
keep it next to the title and run ``abrpipe encode TITLE --profile that.toml`` without re-analysing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from abrpipe import __version__
from abrpipe.errors import OutputError, ProfileError
from abrpipe.pertitle import hull
from abrpipe.profile import Profile, VideoRungSpec, dump_toml, to_schema


def nice_kbps(kbps: float) -> int:
    """A readable bitrate close to ``kbps``: 10-kbps steps from 1 Mbps, 5-kbps steps from 200 kbps."""
    if kbps >= 1000:
        return int(round(kbps / 10.0)) * 10
    if kbps >= 200:
        return int(round(kbps / 5.0)) * 5
    return max(1, int(round(kbps)))


def round_rungs(
    env: hull.Envelope, rungs: Sequence[hull.ChosenRung], *, min_kbps: float, max_kbps: float
) -> list[hull.ChosenRung]:
    """Round each rung's bitrate (:func:`nice_kbps`, kept within [min_kbps, max_kbps]) and re-predict its
    quality at the rounded rate. Rungs that round onto (or below) the rung above them are dropped."""
    out: list[hull.ChosenRung] = []
    for r in rungs:  # top first
        kbps = float(min(max(nice_kbps(r.kbps), math.ceil(min_kbps)), math.floor(max_kbps)))
        if out and kbps >= out[-1].kbps:
            continue
        curve = env.curve(r.resolution)
        q = curve.quality_at(kbps)
        extrapolated = q is None
        if q is None:
            q = curve.extrapolate_below(kbps)
        out.append(replace(r, kbps=kbps, predicted_quality=q, extrapolated=extrapolated))
    return out


#: How a per-title ladder's rungs are encoded. "crf": each rung at the CRF its size's trials measured at
#: its bitrate, capped at the rung's maxrate, so the final encode repeats the measured trial instead of
#: hoping a bitrate target lands on the curve; "vbr": each rung targets its bitrate (the profile's way).
RATE_CONTROLS = ("crf", "vbr")


def _crf_points(curve: hull.ResolutionCurve) -> tuple[list[float], list[float]]:
    """(ln kbps, CRF) of the curve's measured CRF points, lowest bitrate first, CRF strictly falling
    (a point that does not lower the CRF, e.g. one held back by the trials' VBV, is left out)."""
    xs: list[float] = []
    ys: list[float] = []
    for p in curve.points:  # Pareto front: bitrate ascending
        if p.crf is not None and (not ys or p.crf < ys[-1]):
            xs.append(math.log(p.kbps))
            ys.append(float(p.crf))
    return xs, ys


def _piecewise(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Linear interpolation through (xs, ys) (xs ascending), carried on along the end segments."""
    i = 0
    while i < len(xs) - 2 and x > xs[i + 1]:
        i += 1
    return ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i])


def crf_for_kbps(curve: hull.ResolutionCurve, kbps: float) -> float | None:
    """The (fractional) CRF that gives ``kbps`` at this curve's size: ln(kbps) is close to linear in the
    CRF between neighbouring trials; None with fewer than two CRF points."""
    xs, ys = _crf_points(curve)
    return _piecewise(math.log(kbps), xs, ys) if len(xs) >= 2 else None


def kbps_for_crf(curve: hull.ResolutionCurve, crf: float) -> float:
    """The bitrate a CRF gives at this curve's size (the inverse of :func:`crf_for_kbps`)."""
    xs, ys = _crf_points(curve)
    return round(math.exp(_piecewise(-crf, [-y for y in ys], xs)), 6)  # -CRF rises with the bitrate


def capped_crf_rungs(
    env: hull.Envelope, rungs: Sequence[hull.ChosenRung], *, crf_range: tuple[int, int], min_kbps: float, max_kbps: float
) -> list[hull.ChosenRung]:
    """Give each rung (top first) the whole CRF nearest its bitrate on its size's trials, move the rung to
    the bitrate that CRF gives there (kept within [min_kbps, max_kbps] by one more CRF step where it can)
    and re-predict its quality. A rung that lands on or above the (rounded) bitrate of the rung above it is
    dropped; a size with fewer than two CRF trials keeps its VBR rung."""
    lo, hi = crf_range
    out: list[hull.ChosenRung] = []
    for r in rungs:
        curve = env.curve(r.resolution)
        exact = crf_for_kbps(curve, r.kbps)
        if exact is None:
            out.append(r)
            continue
        crf = min(max(int(round(exact)), lo), hi)
        while crf < hi and kbps_for_crf(curve, crf) > max_kbps:
            crf += 1
        while crf > lo and kbps_for_crf(curve, crf) < min_kbps and kbps_for_crf(curve, crf - 1) <= max_kbps:
            crf -= 1
        kbps = kbps_for_crf(curve, crf)
        if out and nice_kbps(kbps) >= nice_kbps(out[-1].kbps):  # the profile names rungs by these rounded rates
            continue
        q = curve.quality_at(kbps)
        out.append(replace(r, kbps=kbps, predicted_quality=curve.extrapolate_below(kbps) if q is None else q,
                           extrapolated=q is None, crf=crf))  # fmt: skip
    return out


def per_title_profile(
    base: Profile,
    rungs: Sequence[hull.ChosenRung],
    specs: Mapping[hull.Resolution, VideoRungSpec],
    *,
    description: str,
) -> Profile:
    """``base`` with its video rungs replaced by ``rungs`` (top first).

    Each rung gets an explicit size (the resolution the hull picked, written landscape-first as profile
    sizes are: a portrait source fits it rotated), the bitrate, and maxrate/bufsize in the same ratio to
    the bitrate as the ``base`` rung that has that size (``specs``), whose fps cap, codec profile and
    level it also keeps. A rung with a CRF (:func:`capped_crf_rungs`) is capped CRF, its bitrate the
    one the trials predict for that CRF; any other rung targets its bitrate (``vbr``, or ``2pass`` where
    the base rung is two-pass).
    """
    new: list[VideoRungSpec] = []
    for r in rungs:
        spec = specs[r.resolution]
        kbps = int(round(r.kbps)) if r.crf is None else nice_kbps(r.kbps)
        maxrate = max(kbps, int(round(kbps * spec.maxrate_kbps / spec.bitrate_kbps)))
        bufsize = max(1, int(round(kbps * spec.bufsize_kbps / spec.bitrate_kbps)))
        new.append(
            VideoRungSpec(
                height=min(r.width, r.height),
                width=max(r.width, r.height),
                bitrate_kbps=kbps,
                maxrate_kbps=maxrate,
                bufsize_kbps=bufsize,
                codec=spec.codec,
                rate_control="crf" if r.crf is not None else "vbr" if spec.rate_control == "crf" else spec.rate_control,
                crf=r.crf,
                max_fps=spec.max_fps,
                codec_profile=spec.codec_profile,
                level=spec.level,
            )
        )
    return replace(
        base,
        name=f"{base.name}-pertitle",
        origin="per-title",
        path=None,
        description=description,
        rate_control="crf" if any(r.crf is not None for r in rungs) else "vbr" if base.rate_control == "crf" else base.rate_control,
        rungs=tuple(new),
        warnings=(),
    )


def rung_rows(profile: Profile, rungs: Sequence[hull.ChosenRung]) -> list[dict[str, Any]]:
    """The per-title ladder as data (top first): the profile rung plus the predicted quality."""
    rows = []
    for spec, r in zip(profile.rungs, rungs, strict=True):
        rows.append({
            "width": r.width,
            "height": r.height,
            "bitrate_kbps": spec.bitrate_kbps,
            "maxrate_kbps": spec.maxrate_kbps,
            "bufsize_kbps": spec.bufsize_kbps,
            "max_fps": spec.max_fps,
            "crf": spec.crf,
            "predicted_quality": round(r.predicted_quality, 3),
            "extrapolated": r.extrapolated,
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------------------
# TOML
# --------------------------------------------------------------------------------------------------


def profile_toml(profile: Profile, *, comment: str | None = None) -> str:
    """``profile`` as a profile file (TOML, the project's own schema writer) that
    :func:`abrpipe.registry.load` reads back to the same rungs and settings."""
    header = "".join(f"# {line}".rstrip() + "\n" for line in (comment or "").splitlines())
    return header + dump_toml(to_schema(profile))


def save_profile(profile: Profile, path: str, *, comment: str | None = None) -> Profile:
    """Write ``profile`` to ``path`` (TOML) and load it back through the registry, which validates it.

    Returns the profile as loaded from the file (named after it).
    """
    from abrpipe import registry

    if not path.endswith(".toml"):
        raise OutputError(f"{path}: a saved profile is written as TOML; give a path ending in .toml")
    text = profile_toml(profile, comment=comment or f"Per-title ladder written by abrpipe {__version__}.")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = path + ".partial"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the profile ({exc.strerror or exc})") from None
    try:
        return registry.load(os.path.abspath(path))
    except ProfileError as exc:  # a bug in the writer: say so with the file's own complaint
        raise ProfileError(f"{path}: the written per-title profile does not load back: {exc.message}") from None
