"""Encode benchmark: abrpipe vs the naive approach vs a hand-written single ffmpeg command.

On one generated 1080p source (>= 20 s) and the `default` ladder, in the same run:
  (a) `abrpipe encode` (probe, one decode fanned out to every rung, packaging, validation, publish)
  (b) naive: one ffmpeg process per rung, run one after the other (the source decoded 9 times)
  (c) a hand-written single ffmpeg command with the same encoder settings (split -> scale -> x264)
Each is run `--repeat` times (default 2), alternating, and the median wall time is compared. The ratios
are printed and written to docs/BENCHMARKS.md (section "## Encode").

Usage: python bench/encode_bench.py [--seconds 20] [--repeat 2] [--preset veryfast] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import cpu_model, write_section  # noqa: E402  (bench/common.py)

from abrpipe import registry  # noqa: E402
from abrpipe.plan import plan_ladder  # noqa: E402
from abrpipe.probe import probe  # noqa: E402


def make_source(path: Path, seconds: int) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,hue=H=2*PI*t/10",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
        check=True,
    )


def x264_args(rung, preset: str) -> list[str]:
    """The encoder settings abrpipe uses for an H.264 rung, written out by hand."""
    profile = "high" if rung.height >= 720 else "main"
    g = str(rung.gop_frames)
    return ["-c:v", "libx264", "-preset", preset, "-profile:v", profile, "-b:v", f"{rung.bitrate_kbps}k",
            "-maxrate", f"{rung.maxrate_kbps}k", "-bufsize", f"{rung.bufsize_kbps}k", "-g", g, "-keyint_min", g,
            "-sc_threshold", "0", "-force_key_frames", f"expr:eq(mod(n,{g}),0)", "-flags", "+cgop"]


def hls_out(directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    return ["-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
            "-hls_segment_filename", str(directory / "seg_%05d.m4s"), str(directory / "index.m3u8")]


def naive(src: Path, plan, preset: str, work: Path) -> None:
    for rung in plan.video:
        vf = f"fps={plan.base_fps},format=yuv420p" + (f",fps={rung.fps}" if rung.fps_divisor > 1 else "") + f",scale={rung.width}:{rung.height},setsar=1"
        subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-y", "-i", str(src), "-vf", vf, "-an",
                        *x264_args(rung, preset), *hls_out(work / rung.id)], check=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-y", "-i", str(src), "-vn", "-c:a", "aac", "-b:a", "128k",
                    "-ac", "2", *hls_out(work / "audio")], check=True)


def single(src: Path, plan, preset: str, work: Path) -> None:
    n = len(plan.video)
    graph = [f"[0:v]fps={plan.base_fps},format=yuv420p,split={n}" + "".join(f"[b{i}]" for i in range(n))]
    for i, rung in enumerate(plan.video):
        fps = f"fps={rung.fps}," if rung.fps_divisor > 1 else ""
        graph.append(f"[b{i}]{fps}scale={rung.width}:{rung.height},setsar=1[v{i}]")
    argv = ["ffmpeg", "-hide_banner", "-v", "error", "-y", "-i", str(src), "-filter_complex", ";".join(graph)]
    for i, rung in enumerate(plan.video):
        argv += ["-map", f"[v{i}]", *x264_args(rung, preset), *hls_out(work / rung.id)]
    argv += ["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k", "-ac", "2", *hls_out(work / "audio")]
    subprocess.run(argv, check=True)


def abrpipe_encode(src: Path, preset: str, work: Path) -> None:
    subprocess.run([sys.executable, "-m", "abrpipe", "encode", str(src), "-o", str(work / "out"), "--profile", "default",
                    "--preset", preset, "-q"], check=True)


def timed(fn, *args) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    fn(*args)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="abrpipe-bench-"))
    try:
        src = work / "source 1080p.mp4"
        make_source(src, args.seconds)
        plan = plan_ladder(probe(str(src)), registry.load("default"))
        runs: dict[str, list[tuple[float, float]]] = {"abrpipe": [], "naive": [], "single": []}
        for i in range(args.repeat):
            for name, fn in (("abrpipe", lambda w: abrpipe_encode(src, args.preset, w)),
                             ("naive", lambda w: naive(src, plan, args.preset, w)),
                             ("single", lambda w: single(src, plan, args.preset, w))):
                w = work / f"{name}{i}"
                w.mkdir()
                runs[name].append(timed(fn, w))
                shutil.rmtree(w)
                print(f"{name} run {i + 1}: {runs[name][-1][0]:.1f} s wall, {runs[name][-1][1]:.1f} CPU-s", flush=True)
        decode_cpu = timed(lambda: subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-f", "null", "-"], check=True))[1]
        wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
        vs_single = wall["abrpipe"] / wall["single"]
        vs_naive = wall["naive"] / wall["abrpipe"]
        print(f"abrpipe / hand-written single command: {vs_single:.3f}x wall (aim <= 1.10)")
        print(f"naive per-rung / abrpipe:              {vs_naive:.2f}x wall (aim >= 1.4)")
        section = f"""## Encode

`bench/encode_bench.py` (`make bench`), {date.today().isoformat()}, {os.cpu_count()} cores ({cpu_model()}),
{platform.system()} {platform.release()}, ffmpeg {subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split()[2]}.
Source: {args.seconds} s of generated 1920x1080 @ 30 fps with a stereo tone; the `default` ladder (9 H.264 rungs + AAC),
preset `{args.preset}`; median of {args.repeat} alternating runs.

| approach | wall s | CPU s |
|---|---|---|
| (a) `abrpipe encode` (probe + encode + package + validate + publish) | {wall["abrpipe"]:.1f} | {cpu["abrpipe"]:.1f} |
| (b) naive: one ffmpeg per rung, sequential | {wall["naive"]:.1f} | {cpu["naive"]:.1f} |
| (c) hand-written single ffmpeg command, same encoder settings | {wall["single"]:.1f} | {cpu["single"]:.1f} |

- abrpipe / hand-written single command: **{vs_single:.3f}x** (aim: within 1.10x)
- naive / abrpipe: **{vs_naive:.2f}x** faster (aim: at least 1.4x)

Where the difference comes from: one decode of this source costs {decode_cpu:.1f} CPU-s, and the naive
approach decodes it {len(plan.video)} times ({cpu["naive"] - cpu["abrpipe"]:.0f} CPU-s more than abrpipe in all). Encoding the rungs
costs the same in every approach, so with both cores busy in all three the speed-up from decoding once is
about (encode + {len(plan.video)} decodes) / (encode + 1 decode). It grows with the cost of decoding (4K, ProRes or
long-GOP mezzanines, software-decoded HEVC) and shrinks as the encoder preset gets slower.
"""
        if not args.no_write:
            write_section(section)
            print("written to docs/BENCHMARKS.md")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
