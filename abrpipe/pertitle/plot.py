"""Rate/quality plot of a per-title analysis (PNG or SVG, chosen by the file extension).

matplotlib is imported only inside :func:`plot_ladder`, and through its object-oriented API with the
Agg canvas (no pyplot, no global backend switch), so the rest of abrpipe works without matplotlib.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .hull import ChosenRung, TrialPoint, envelope, group_by_resolution, pareto, upper_convex_hull

FORMATS = {".png": "png", ".svg": "svg"}
METRIC_LABELS = {"vmaf": "VMAF", "psnr": "PSNR-Y (dB)", "ssim": "SSIM-Y", "xpsnr": "XPSNR-Y (dB)"}


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _quality_of(p: Any) -> float:
    q = getattr(p, "quality", None)
    if q is None:
        q = p.predicted_quality
    return float(q)


def plot_ladder(
    output_path: str | os.PathLike[str],
    points: Iterable[TrialPoint],
    *,
    rungs: Sequence[ChosenRung] = (),
    fixed_ladder: Sequence[Any] = (),
    per_title_ladder: Sequence[Any] = (),
    metric: str = "vmaf",
    title: str | None = None,
) -> Path:
    """Plot every resolution's trial points and PCHIP curve, the upper convex hull, optional fixed-ladder
    points (anything with ``width``, ``height``, ``kbps`` and ``quality`` or ``predicted_quality``) and
    the chosen rungs, on a log bitrate axis. ``per_title_ladder`` (same duck type as ``fixed_ladder``)
    adds the per-title ladder as encoded and measured. Writes PNG or SVG according to the extension.
    """
    out = Path(output_path)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported plot format {out.suffix!r}: use .png or .svg")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailableError(f"plotting needs matplotlib: pip install matplotlib  [{exc}]") from exc

    pts = list(points)
    env = envelope(pts)  # validates the points (raises ValueError if too few)
    kept = set(pareto(pts))
    hull = upper_convex_hull(pts)

    fig = Figure(figsize=(9, 6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    palette = [
        "tab:blue",
        "tab:orange",
        "tab:green",
        "tab:red",
        "tab:purple",
        "tab:brown",
        "tab:pink",
        "tab:olive",
    ]

    lo = min(p.kbps for p in pts)
    hi = max(p.kbps for p in pts)
    for extra in (*(r.kbps for r in rungs), *(f.kbps for f in fixed_ladder), *(m.kbps for m in per_title_ladder)):
        lo, hi = min(lo, extra), max(hi, extra)
    grid = np.exp(np.linspace(math.log(lo), math.log(hi), 400))

    for i, (res, group) in enumerate(group_by_resolution(pts).items()):
        color = palette[i % len(palette)]
        label = f"{res[0]}x{res[1]}"
        good = [p for p in group if p in kept]
        bad = [p for p in group if p not in kept]
        curve = env.curve(res)
        vals = curve.values(grid)
        ax.plot(grid, vals, "-", color=color, lw=1.4, label=label)
        ax.plot([p.kbps for p in good], [p.quality for p in good], "o", color=color, ms=5)
        if bad:
            ax.plot([p.kbps for p in bad], [p.quality for p in bad], "x", color=color, ms=6, alpha=0.6)
        for p in group:
            if p.crf is not None:
                ax.annotate(f"{p.crf:g}", (p.kbps, p.quality), textcoords="offset points", xytext=(3, -9),
                            fontsize=6, color=color, alpha=0.8)  # fmt: skip

    env_vals = [env.quality_at(k) for k in grid if k >= env.min_kbps]
    ax.plot([k for k in grid if k >= env.min_kbps], env_vals, "-", color="0.2", lw=3.0, alpha=0.18,
            label="envelope (max over resolutions)")  # fmt: skip
    ax.plot([p.kbps for p in hull], [p.quality for p in hull], "--", color="black", lw=1.0,
            label="upper convex hull")  # fmt: skip

    if fixed_ladder:
        ax.plot([f.kbps for f in fixed_ladder], [_quality_of(f) for f in fixed_ladder], "s", mfc="none",
                mec="0.3", ms=8, label="fixed ladder")  # fmt: skip
        for f in fixed_ladder:
            ax.annotate(f"{f.height}p@{f.kbps:.0f}", (f.kbps, _quality_of(f)), textcoords="offset points",
                        xytext=(6, -12), fontsize=7, color="0.3")  # fmt: skip
    if fixed_ladder:
        ordered = sorted(fixed_ladder, key=lambda f: f.kbps)
        ax.plot([f.kbps for f in ordered], [_quality_of(f) for f in ordered], "-", color="0.3", lw=0.8, alpha=0.6)
    if per_title_ladder:
        ordered = sorted(per_title_ladder, key=lambda m: m.kbps)
        ax.plot([m.kbps for m in ordered], [_quality_of(m) for m in ordered], "D-", color="crimson", ms=6,
                lw=1.0, mec="black", mew=0.5, label="per-title ladder (encoded)", zorder=4)  # fmt: skip
        for m in ordered:
            ax.annotate(f"{m.height}p@{m.kbps:.0f}", (m.kbps, _quality_of(m)), textcoords="offset points",
                        xytext=(6, 6), fontsize=7, color="crimson")  # fmt: skip
    if rungs:
        ax.plot([r.kbps for r in rungs], [r.predicted_quality for r in rungs], "*", color="crimson", ms=13,
                mec="black", mew=0.6, label="chosen rungs", zorder=5)  # fmt: skip
        for r in rungs:
            ax.annotate(f"{r.height}p@{r.kbps:.0f}", (r.kbps, r.predicted_quality), textcoords="offset points",
                        xytext=(6, 6), fontsize=8, color="crimson")  # fmt: skip

    for c in env.crossovers():
        ax.axvline(c.kbps, color="0.6", lw=0.6, ls=":")

    ax.set_xscale("log")
    ax.set_xlabel("bitrate (kbps, log scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title or f"per-title rate/quality ({METRIC_LABELS.get(metric, metric)})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format=fmt)
    return out
