"""Per-title benchmark: the per-title ladder against the `default` ladder on three kinds of content.

Three generated 1280x720 @ 30 fps sources (10 s by default, mezzanine-quality H.264 MP4):
  flat     flat-colour, animation-like: a slowly moving gradient sky and two solid shapes crossing it
  talking  talking-head-like, low motion: a static detailed background (a Mandelbrot frame), a small
           busy "face" region swaying slightly, light camera noise
  noisy    high motion and noise: the zooming Mandelbrot with strong temporal noise
For each, `abrpipe.pertitle.compare.compare` runs the per-title analysis (same preset as the final
encode), encodes the fixed `default` ladder and the per-title ladder (video only), scores every rendition
against the source, and computes the BD-rate (bjontegaard, PCHIP) of the per-title ladder against the
fixed one. CPU time is the children's user+system time (getrusage RUSAGE_CHILDREN deltas), so the ratio
"analysis / one full fixed-ladder encode" holds on a loaded machine too. Results are printed and written
to docs/BENCHMARKS.md (section "## Per-title").

Usage: python bench/pertitle_bench.py [--seconds 10] [--preset veryfast] [--metric vmaf|psnr|...]
                                      [--sources flat,talking,noisy] [--repeat N] [--no-write] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import cpu_model, write_section  # noqa: E402  (bench/common.py)

from abrpipe import registry, runner, tools  # noqa: E402
from abrpipe.pertitle.analysis import METRIC_LABELS, AnalysisOptions, analyse, children_cpu_s  # noqa: E402
from abrpipe.pertitle.compare import compare  # noqa: E402
from abrpipe.pipeline import Job, run_job  # noqa: E402
from abrpipe.probe import probe  # noqa: E402

W, H, FPS = 1280, 720, 30

SOURCES = {
    "flat": (
        "flat animation-like (gradient sky + 2 moving solid shapes)",
        [
            "-f", "lavfi", "-i", f"gradients=s={W}x{H}:r={FPS}:c0=0x1a3a7a:c1=0x6fa8dc:x0=0:y0=0:x1={W}:y1={H}:speed=0.005:seed=1",
            "-f", "lavfi", "-i", f"color=c=0xf0c020:s=220x220:r={FPS}",
            "-f", "lavfi", "-i", f"color=c=0xe04040:s=140x320:r={FPS}",
            "-filter_complex",
            "[0][1]overlay=x='mod(t*180,1060)':y='200+120*sin(t)'[a];[a][2]overlay=x='900-mod(t*120,800)':y=300,format=yuv420p",
        ],
    ),
    "talking": (
        "talking-head-like, low motion (static detailed background, small swaying busy region, light noise)",
        [
            "-f", "lavfi", "-i", f"mandelbrot=s={W}x{H}:r={FPS},trim=end_frame=1,loop=loop=-1:size=1,setpts=N/{FPS}/TB",
            "-f", "lavfi", "-i", f"testsrc2=s=360x420:r={FPS}",
            "-filter_complex",
            "[0][1]overlay=x='460+24*sin(t*1.3)':y='150+8*sin(t*0.7)',noise=alls=3:allf=t,format=yuv420p",
        ],
    ),
    "noisy": (
        "high motion + noise (zooming Mandelbrot, temporal noise 12)",
        ["-f", "lavfi", "-i", f"mandelbrot=s={W}x{H}:r={FPS}", "-vf", "noise=alls=12:allf=t+u,format=yuv420p"],
    ),
}  # fmt: skip
SIMPLE = ("flat", "talking")  # aim: >= 20 % saved; "noisy": >= 5 % saved
AIM_COST = 3.0


def make_source(kind: str, path: Path, seconds: float) -> None:
    _, args = SOURCES[kind]
    argv = [tools.ffmpeg_path(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args, "-t", f"{seconds:g}",
            # Mezzanine quality: the source itself must not limit what the ladders can reach.
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "10", "-g", str(2 * FPS), str(path)]  # fmt: skip
    runner.run(argv)


def ffmpeg_version(path: str) -> str:
    out = runner.capture([path, "-hide_banner", "-version"])
    words = out.split()
    return words[2] if len(words) > 2 else "?"


def ladder_text(rungs) -> str:
    return ", ".join(f"{r.height}p@{r.kbps:.0f}k ({r.quality:.1f})" for r in sorted(rungs, key=lambda r: -r.kbps))


def cost_ratio(src: str, profile, metric: str | None, work: Path) -> float:
    """One more measurement of analysis CPU-s / fixed-ladder encode CPU-s on the same source."""
    c0 = children_cpu_s()
    analyse(probe(src), profile, AnalysisOptions(metric=metric))
    c1 = children_cpu_s()
    out = work / "cost-fixed"
    run_job(Job(input=src, output=str(out), profile=replace(profile, audio=()), validate=False))
    c2 = children_cpu_s()
    shutil.rmtree(out, ignore_errors=True)
    return (c1 - c0) / (c2 - c1)


def miss_reason(rep) -> str:
    """Why a source missed its saving aim, from what the run measured."""
    cmp, a = rep.comparison, rep.analysis
    label = METRIC_LABELS.get(a.metric, a.metric)
    if cmp.bd is None or math.isnan(cmp.bd.percent):
        return cmp.verdict()
    reasons = []
    if not cmp.bd.valid:
        lo = min(r.quality for r in cmp.per_title)
        reasons.append(
            f"the per-title ladder is already at {label} {lo:.1f} at its lowest rung, so the two ladders share only "
            f"{cmp.bd.overlap:.0%} of their quality range and the BD-rate is indicative only"
        )
        return "; ".join(reasons)
    shared = {(r.width, r.height, r.target_kbps) for r in cmp.fixed} & {(r.width, r.height, r.target_kbps) for r in cmp.per_title}
    if len(shared) >= 2:
        reasons.append(
            f"{len(shared)} rungs are identical in both ladders ({', '.join(f'{h}p@{k}k' for _, h, k in sorted(shared, reverse=True))}: "
            "the profile's bitrate limits, where the hull picks the same size), so only the middle rungs can gain"
        )
    if a.crossovers:
        reasons.append(
            "the fixed ladder's sizes already sit near this content's hull (crossovers "
            + ", ".join(f"{c.below[1]}p->{c.above[1]}p at {c.kbps:.0f}k" for c in a.crossovers)
            + ")"
        )
    return "; ".join(reasons) or "see the ladders above"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each generated source (default 10)")
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--metric", default=None, help="vmaf, psnr, ssim or xpsnr (default: VMAF if available)")
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated subset of: " + ", ".join(SOURCES))
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    ap.add_argument("--json", help="also write the full reports to this JSON file")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure the cost (analysis + fixed-ladder encode) this many times per source and report "
                    "the median ratio (CPU-seconds vary on a loaded machine); the comparison itself runs once")
    args, _unknown = ap.parse_known_args()  # bench/run.py passes the same options to every benchmark

    kinds = [k.strip() for k in args.sources.split(",") if k.strip()]
    profile = replace(registry.load(args.profile), preset=args.preset)
    load_before = os.getloadavg()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="abrpipe-pertitle-bench-"))
    results = []
    cost_runs: dict[str, list[float]] = {}
    try:
        for kind in kinds:
            src = work / f"{kind}.mp4"
            make_source(kind, src, args.seconds)
            print(f"== {kind}: {SOURCES[kind][0]}", flush=True)
            rep = compare(str(src), profile, AnalysisOptions(metric=args.metric),
                          on_event=lambda m, k=kind: print(f"  [{k}] {m}", flush=True))  # fmt: skip
            cmp = rep.comparison
            print(f"  {cmp.verdict()}", flush=True)
            print(f"  analysis {rep.cpu_s['analysis']:.1f} CPU-s, fixed-ladder encode {rep.cpu_s['fixed_encode']:.1f} CPU-s "
                  f"-> {rep.analysis_vs_encode:.2f}x", flush=True)  # fmt: skip
            ratios = [rep.analysis_vs_encode or float("nan")]
            for _ in range(max(0, args.repeat - 1)):
                ratios.append(cost_ratio(str(src), profile, args.metric, work))
                print(f"  cost again: {ratios[-1]:.2f}x", flush=True)
            results.append((kind, rep))
            cost_runs[kind] = ratios
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()

    if args.json:
        Path(args.json).write_text(json.dumps({k: r.to_dict() for k, r in results}, indent=2, default=str))

    metric = results[0][1].analysis.metric if results else "?"
    label = METRIC_LABELS.get(metric, metric)
    rows, details, misses = [], [], []
    for kind, rep in results:
        cmp, a = rep.comparison, rep.analysis
        bd = cmp.bd
        pct = None if bd is None else bd.percent
        aim = 20.0 if kind in SIMPLE else 5.0
        ratio = statistics.median(cost_runs[kind])
        spread = "" if len(cost_runs[kind]) < 2 else f" (median of {len(cost_runs[kind])}: {min(cost_runs[kind]):.2f}-{max(cost_runs[kind]):.2f})"
        saved_ok = pct is not None and pct <= -aim
        cost_ok = ratio <= AIM_COST
        bd_text = "n/a" if pct is None else f"{pct:+.1f}%"
        ov_text = "n/a" if bd is None else f"{bd.overlap:.2f}" + ("" if bd.valid else " (low)")
        rows.append(
            f"| {kind} | {bd_text} | {ov_text} | {('met' if bd.valid else 'met, low overlap') if saved_ok else 'MISSED'} (<= -{aim:g}%) | "
            f"{rep.cpu_s['analysis']:.1f} | {rep.cpu_s['fixed_encode']:.1f} | **{ratio:.2f}x**{spread} | {'met' if cost_ok else 'MISSED'} |"
        )
        windows = ", ".join(f"{w.start_s:g}s" for w in a.windows)
        details.append(
            f"- **{kind}** ({SOURCES[kind][0]}): {len(a.trials)} trials ({len(a.candidates)} sizes x {len(a.crfs)} CRFs "
            f"{'/'.join(map(str, a.crfs))}) on {len(a.windows)} window(s) of 2 s at {windows}, every {a.every_nth}th frame "
            f"scored at {a.measure_size[0]}x{a.measure_size[1]}; analysis CPU-s {a.cost.encode_cpu_s:.1f} encoding + "
            f"{a.cost.metric_cpu_s:.1f} scoring.\n"
            f"  - fixed ({a.base_profile}), measured kbps ({label}): {ladder_text(cmp.fixed)}\n"
            f"  - per-title, measured: {ladder_text(cmp.per_title)}\n"
            + (f"  - crossovers: {', '.join(f'{c.below[1]}p->{c.above[1]}p at {c.kbps:.0f} kbps' for c in a.crossovers)}\n"
               if a.crossovers else "")
            + "".join(f"  - note: {n}\n" for n in a.notes)
            + "".join(f"  - left out of the BD-rate: {x}\n" for x in cmp.left_out)
        )  # fmt: skip
        if not saved_ok:
            misses.append(f"{kind}: BD-rate {bd_text} (aim <= -{aim:g}%): {miss_reason(rep)}")
        elif bd is not None and not bd.valid:
            misses.append(f"{kind}: the aim is met only on a small overlap: {miss_reason(rep)}")
        if not cost_ok:
            misses.append(f"{kind}: analysis cost {ratio:.2f}x (aim <= {AIM_COST:g}x): the metric runs dominate "
                          f"({a.cost.metric_cpu_s:.0f} of {a.cost.cpu_s:.0f} CPU-s)")

    targets = sorted({r.target_kbps for r in results[0][1].comparison.fixed}, reverse=True) if results else []
    fixed_text = f"{len(results[0][1].comparison.fixed)} rungs, {targets[0]}k down to {targets[-1]}k" if targets else "no rungs"
    section = f"""## Per-title

`bench/pertitle_bench.py` (`make bench`), {date.today().isoformat()}, {os.cpu_count()} cores ({cpu_model()}),
{platform.system()} {platform.release()}; encoder ffmpeg {ffmpeg_version(tools.ffmpeg_path())} (libx264, preset `{args.preset}`),
metric **{label}** ({"imageio-ffmpeg's libvmaf build" if metric == "vmaf" else "ffmpeg filter"}).
Load average {load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end (shared machine), {elapsed / 60:.1f} min in all:
wall times are inflated, so costs are CPU-seconds of the child processes (getrusage).

Sources: {args.seconds:g} s, {W}x{H} @ {FPS} fps, generated with lavfi. Fixed ladder: profile `{args.profile}` as planned
for a 720p source ({fixed_text}). Both ladders are encoded the same way (`pipeline.run_job`, capped
VBR, aligned GOPs) and every rendition is scored against the source at 1280x720, every 5th frame. BD-rate is the per-title
ladder's against the fixed one (`bjontegaard`, PCHIP; negative = per-title needs fewer bits for the same quality), over
the overlap of the two ladders' quality ranges (shown beside it).

| source | BD-rate ({label}) | overlap | saving aim | analysis CPU-s | fixed-ladder encode CPU-s | analysis / encode | cost aim (<= {AIM_COST:g}x) |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{chr(10).join(details)}
"""
    if misses:
        section += "\nAims missed or only partly met in this run (reasons derived from the measurements above):\n\n"
        section += "".join(f"- {m}\n" for m in misses)
    print(section)
    if not args.no_write:
        write_section(section)
        print("written to docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
