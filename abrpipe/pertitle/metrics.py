"""Quality-metric engine discovery and measurement with ffmpeg.

Which ffmpeg measures what (see shared/reference/per-title-research.md, section 1):

* ``imageio-ffmpeg`` (optional extra) ships a static ffmpeg built with ``--enable-libvmaf`` and the VMAF
  models compiled in, plus ``psnr``, ``ssim`` and ``xpsnr``. It has no ffprobe, so abrpipe uses it **only
  for metrics**. ``IMAGEIO_FFMPEG_EXE`` overrides the binary it returns.
* Debian 12's system ffmpeg 5.1 has no ``libvmaf`` and no ``xpsnr``: only ``psnr`` and ``ssim`` (and
  ``vmafmotion``, which is not a quality metric).

:func:`find_metric_engine` picks VMAF when a libvmaf ffmpeg is available, else PSNR-Y.
:func:`measure` runs one ffmpeg pass per (reference, distorted) pair::

    [0:v] reference -> setpts=PTS-STARTPTS -> select every Nth -> renumber -> scale to WxH -> format --.
    [1:v] distorted -> setpts=PTS-STARTPTS -> select every Nth -> renumber -> bicubic to WxH -> format -> metric

All subprocesses go through :func:`_run`, which uses :mod:`abrpipe.runner`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from abrpipe import runner

Metric = Literal["vmaf", "psnr", "ssim", "xpsnr"]
METRICS: tuple[str, ...] = ("vmaf", "psnr", "ssim", "xpsnr")

#: ffmpeg filter implementing each metric.
FILTER_FOR_METRIC = {"vmaf": "libvmaf", "psnr": "psnr", "ssim": "ssim", "xpsnr": "xpsnr"}

#: PSNR/XPSNR of identical frames is infinite; reported as this many dB instead (finite for the hull
#: and BD maths; the same cap Netflix's vmaf tools use for BD-rate).
PSNR_CAP_DB = 100.0

DEFAULT_VMAF_MODEL = "vmaf_v0.6.1"
DEFAULT_TIMEOUT_S = 3600.0


class MetricError(RuntimeError):
    """A metric measurement failed (ffmpeg error, timeout, unparsable output)."""


class MetricEngineError(MetricError):
    """No ffmpeg offering the requested metric was found."""


@dataclass(frozen=True)
class MetricEngine:
    """An ffmpeg binary and the metric abrpipe will measure with it."""

    ffmpeg_path: str
    metric: Metric
    has_vmaf: bool


@dataclass(frozen=True)
class QualityScore:
    """Mean quality over the compared frames.

    VMAF: mean of per-frame VMAF (libvmaf's pooled mean). PSNR: ffmpeg's summary ``y`` value, i.e. the
    PSNR of the luma MSE pooled over all frames (capped at :data:`PSNR_CAP_DB`). SSIM: mean per-frame
    luma SSIM. XPSNR: ffmpeg's summary ``y`` value (capped). ``frames``: number of frame pairs compared.
    """

    metric: Metric
    mean: float
    frames: int


# --------------------------------------------------------------------------------------------------
# Process execution
# --------------------------------------------------------------------------------------------------


def _run(
    argv: Sequence[str], timeout: float | None, *, cwd: str | os.PathLike[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a process to completion through :func:`abrpipe.runner.capture_result`.

    The child is never left running: on timeout, Ctrl-C or any other exception it is terminated, then
    killed, and the exception propagates (``subprocess.TimeoutExpired`` for timeouts). A non-zero exit
    status is *not* an exception here; callers check ``returncode``.
    """
    return runner.capture_result(list(argv), timeout_s=timeout, cwd=os.fspath(cwd) if cwd is not None else None)


# --------------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------------


def _imageio_ffmpeg() -> str | None:
    """Path of imageio-ffmpeg's bundled binary (or $IMAGEIO_FFMPEG_EXE), or None if not installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # RuntimeError when the wheel has no binary for this platform
        return None


def _default_candidates() -> list[str]:
    """ffmpeg binaries to consider, in order of preference: imageio-ffmpeg's, then the system one."""
    out: list[str] = []
    for path in (_imageio_ffmpeg(), shutil.which("ffmpeg")):
        if path and path not in out:
            out.append(path)
    return out


_FILTER_LINE = re.compile(r"^\s*[A-Z.|]{2,3}\s+(\S+)\s+\S+->\S+")


@functools.lru_cache(maxsize=16)
def list_filters(ffmpeg_path: str) -> frozenset[str]:
    """Names of the filters ``ffmpeg -filters`` lists.

    The flag column differs between versions (5.1: three flags ``TSC``, 9.0: two ``TS``), so a line is
    taken as a filter if it is flags, name, then an ``in->out`` pad description.
    """
    try:
        res = _run([ffmpeg_path, "-hide_banner", "-nostdin", "-filters"], timeout=60)
    except OSError as exc:
        raise MetricEngineError(f"cannot run {ffmpeg_path}: {exc}") from exc
    if res.returncode != 0:
        raise MetricEngineError(f"{ffmpeg_path} -filters failed: {res.stderr.strip()[-500:]}")
    names = set()
    for line in res.stdout.splitlines():
        m = _FILTER_LINE.match(line)
        if m:
            names.add(m.group(1))
    return frozenset(names)


def find_metric_engine(
    preferred: str | None = None, *, candidates: Sequence[str] | None = None
) -> MetricEngine:
    """Pick an ffmpeg and a metric.

    ``preferred=None``: VMAF if any candidate has ``libvmaf`` (in practice imageio-ffmpeg's binary),
    else PSNR-Y. ``preferred='vmaf'|'psnr'|'ssim'|'xpsnr'``: the first candidate with that filter, or
    :class:`MetricEngineError` explaining what to install. ``candidates`` overrides the binaries searched
    (default: imageio-ffmpeg's, then ``ffmpeg`` on PATH).
    """
    if preferred is not None and preferred not in METRICS:
        raise ValueError(f"unknown metric {preferred!r}; use one of {', '.join(METRICS)}")
    if candidates is None:
        paths = _default_candidates()
    else:  # bare names ("ffmpeg") are resolved on PATH; unresolvable entries are kept and fail below
        paths = [shutil.which(c) or c for c in candidates]
    if not paths:
        raise MetricEngineError("no ffmpeg found: install ffmpeg (and imageio-ffmpeg for VMAF)")
    filters = {}
    errors = []
    for p in paths:
        try:
            filters[p] = list_filters(p)
        except MetricEngineError as exc:
            errors.append(str(exc))
    if not filters:
        raise MetricEngineError("no usable ffmpeg: " + "; ".join(errors))

    order = [preferred] if preferred else ["vmaf", "psnr"]
    for metric in order:
        for p, names in filters.items():
            if FILTER_FOR_METRIC[metric] in names:
                return MetricEngine(p, metric, "libvmaf" in names)  # type: ignore[arg-type]
    have = ", ".join(
        f"{p}: {sorted(n & set(FILTER_FOR_METRIC.values())) or 'none'}" for p, n in filters.items()
    )
    hint = " VMAF needs an ffmpeg built with libvmaf: pip install imageio-ffmpeg." if "vmaf" in order else ""
    raise MetricEngineError(
        f"no ffmpeg offers the {'/'.join(order)} metric (metric filters found: {have}).{hint}"
    )


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------


def _branch(
    label_in: str,
    label_out: str,
    *,
    every_nth: int,
    width: int,
    height: int,
    pix_fmt: str,
    pre: Sequence[str] = (),
) -> str:
    steps = [
        # Caller-supplied filters first (e.g. the encoder's frame-rate conversion applied to the
        # reference, so both inputs hold the same frames).
        *pre,
        # Restart timestamps at 0 on both inputs: the metric filters pair frames by timestamp
        # (framesync), and a container start offset (mp4 edit lists, -ss, MPEG-TS) would otherwise pair
        # the wrong frames. The VMAF docs call this crucial; shared/reference/per-title-research.md measured 61.7 vs 77.0.
        # (The renumbering after `select` below makes the pairing fully index-based.)
        "setpts=PTS-STARTPTS",
        # Keep every Nth frame (n counts frames from the start of this input/window). Cheap temporal
        # subsampling: the research measured <= 1.5 % BD loss with N=5 at ~1/4 of the metric cost.
        # The comma inside the expression is escaped because ',' separates filters in a graph.
        f"select='not(mod(n\\,{every_nth}))'",
        # Renumber the kept frames 0, 1, 2, ... on both inputs so the metric pairs frames by index.
        # PTS-STARTPTS alone is not enough: in Matroska/WebM (1 ms timebase) frame k of a 30 fps clip
        # sits at round(33.33 k) ms, and framesync pairs it with the reference frame at or *before*
        # that time -- often frame k-1. An identical ffv1/mkv (or lossless VP9/WebM) copy then scored
        # PSNR-Y 31 dB instead of inf and VMAF 83.9 instead of 99.7. Trial encodes keep the frame
        # count, so index pairing is exact (an encode that dropped frames would be misaligned from the
        # drop on). Timebase 1/1 puts the frames whole seconds apart, so the timestamps stay distinct
        # after ffmpeg rescales them to the output's 1/fps timebase (1 ms steps collided there and
        # logged "non monotonically increasing dts" lines into the summary we parse).
        "settb=1",
        "setpts=N",
        # Compare at the display resolution: a low-resolution rung is upscaled (bicubic, the usual
        # player-like scaler) *before* scoring, otherwise its upscaling loss is invisible and the hull
        # drifts to low resolutions. A no-op for an input already at width x height.
        f"scale={width}:{height}:flags=bicubic",
        # Square pixels on both, so no filter complains about differing sample aspect ratios.
        "setsar=1",
        # Same pixel format on both inputs (the metric filters require it).
        f"format={pix_fmt}",
    ]
    return f"[{label_in}]" + ",".join(steps) + f"[{label_out}]"


def _metric_filter(metric: str, *, vmaf_model: str, threads: int) -> str:
    # shortest=1 (framesync): stop when either input ends. The default (eof_action=repeat) would keep
    # comparing the rest of the longer input against the shorter one's last frame.
    # Log files are written to relative names: ffmpeg runs with cwd = a private temp dir, so no path
    # needs escaping for the filtergraph syntax.
    if metric == "vmaf":
        # model=version=...: one of libvmaf's built-in models (no model file needed);
        # log_fmt/log_path: per-frame and pooled scores as JSON; n_threads: libvmaf worker threads.
        return f"libvmaf=model=version={vmaf_model}:log_fmt=json:log_path=vmaf.json:n_threads={threads}:shortest=1"
    if metric == "psnr":
        return "psnr=stats_file=psnr.log:shortest=1"
    if metric == "ssim":
        return "ssim=stats_file=ssim.log:shortest=1"
    if metric == "xpsnr":
        return "xpsnr=stats_file=xpsnr.log:shortest=1"
    raise ValueError(f"unknown metric {metric!r}")


def build_argv(
    engine: MetricEngine,
    reference_path: str | os.PathLike[str],
    distorted_path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    every_nth: int = 5,
    start_s: float | None = None,
    duration_s: float | None = None,
    seek_distorted: bool = False,
    vmaf_model: str = DEFAULT_VMAF_MODEL,
    pix_fmt: str = "yuv420p",
    threads: int | None = None,
    reference_filters: Sequence[str] = (),
    reference_stream: int | None = None,
) -> list[str]:
    """The ffmpeg command line :func:`measure` runs (log files land in the working directory)."""
    threads = threads or max(1, os.cpu_count() or 1)

    def window(seek: bool) -> list[str]:
        args: list[str] = []
        if seek and start_s is not None:
            # Input option: seek the demuxer, then decode-and-drop up to the exact time (accurate seek,
            # the default when transcoding) -- the same frames a trial encode cut with -ss starts at.
            args += ["-ss", f"{start_s:.6f}"]
        if duration_s is not None:
            args += ["-t", f"{duration_s:.6f}"]  # input option: read only this much of the input
        return args

    graph = ";".join(
        [
            _branch(
                "0:v" if reference_stream is None else f"0:{int(reference_stream)}",
                "ref",
                every_nth=every_nth,
                width=width,
                height=height,
                pix_fmt=pix_fmt,
                pre=reference_filters,
            ),
            _branch("1:v", "dis", every_nth=every_nth, width=width, height=height, pix_fmt=pix_fmt),
            # The metric filters take the distorted ("main") stream first and the reference second.
            "[dis][ref]" + _metric_filter(engine.metric, vmaf_model=vmaf_model, threads=threads) + "[out]",
        ]
    )
    return [
        engine.ffmpeg_path,
        "-hide_banner",
        "-nostdin",  # never read the terminal (we run unattended)
        "-nostats",  # no progress lines on stderr; the summary lines we parse are still logged
        "-loglevel", "info",  # the psnr/ssim/xpsnr summaries are logged at info level
        *window(True), "-i", _ffmpeg_input(reference_path),
        *window(seek_distorted), "-i", _ffmpeg_input(distorted_path),
        "-filter_complex", graph,
        # Map only the metric output: no audio/subtitle streams are auto-selected into the null muxer.
        "-map", "[out]",
        "-f", "null", "-",  # decode and filter, write nothing
    ]  # fmt: skip


def _is_http(path: str | os.PathLike[str]) -> bool:
    return isinstance(path, str) and re.match(r"^https?://", path, re.IGNORECASE) is not None


def _ffmpeg_input(path: str | os.PathLike[str]) -> str:
    """An http(s) URL as is (a source opened with --allow-references), a path as an absolute file: URL
    (names like 'http:x' or '-y' are never misread). The runner adds the matching protocol whitelist."""
    return str(path) if _is_http(path) else "file:" + str(Path(path).resolve())


def _cap(v: float) -> float:
    return PSNR_CAP_DB if v > PSNR_CAP_DB else v


def _parse_number(s: str) -> float:
    return math.inf if s.lower() in ("inf", "+inf") else float(s)


def _count_frames(path: Path) -> int:
    """Per-frame lines ("n:1 ..." / "n:    1 ...") in a psnr/ssim/xpsnr stats file (xpsnr adds a summary)."""
    with path.open() as fh:
        return sum(1 for line in fh if re.match(r"n:\s*\d+", line))


_NUM = r"(inf|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_SUMMARY = {
    # "[Parsed_psnr_N @ 0x..] PSNR y:33.837975 u:32.006 v:28.458 average:32.088 min:.. max:.."
    "psnr": re.compile(r"PSNR y:\s*" + _NUM),
    # "[Parsed_ssim_N @ 0x..] SSIM Y:0.952956 (13.274918) U:... All:0.952818 (13.262236)"
    "ssim": re.compile(r"SSIM Y:\s*" + _NUM),
    # "[Parsed_xpsnr_N @ 0x..] XPSNR  y: 27.5799  u: 25.3745  v: 20.3427  (minimum: 20.3427)"
    "xpsnr": re.compile(r"XPSNR\s+y:\s*" + _NUM),
}


def _parse_vmaf(path: Path) -> QualityScore:
    if not path.exists():
        return QualityScore("vmaf", math.nan, 0)
    data = json.loads(path.read_text())
    frames = len(data.get("frames", []))
    mean = float(data["pooled_metrics"]["vmaf"]["mean"]) if frames else math.nan
    return QualityScore("vmaf", mean, frames)


def _parse(metric: str, workdir: Path, stderr: str) -> QualityScore:
    """Read the result; ``frames == 0`` (and a NaN mean) when no frame pair was compared."""
    if metric == "vmaf":
        return _parse_vmaf(workdir / "vmaf.json")
    if metric not in _SUMMARY:
        raise ValueError(f"unknown metric {metric!r}")
    stats = workdir / f"{metric}.log"
    frames = _count_frames(stats) if stats.exists() else 0
    if frames == 0:
        return QualityScore(metric, math.nan, 0)  # type: ignore[arg-type]
    m = _SUMMARY[metric].search(stderr)
    if not m:
        raise MetricError(f"no {metric} summary line in ffmpeg's output")
    value = _parse_number(m.group(1))
    if metric in ("psnr", "xpsnr"):
        value = _cap(value)  # identical frames: inf dB
    return QualityScore(metric, value, frames)  # type: ignore[arg-type]


def _run_checked(
    engine: MetricEngine, argv: Sequence[str], timeout_s: float | None, cwd: str
) -> subprocess.CompletedProcess[str]:
    """Run a metric command in ``cwd``; a timeout, a failure to start or a non-zero exit is a MetricError."""
    try:
        res = _run(argv, timeout_s, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise MetricError(f"{engine.metric} measurement timed out after {timeout_s} s") from exc
    except OSError as exc:
        raise MetricError(f"cannot run {engine.ffmpeg_path}: {exc}") from exc
    if res.returncode != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-15:])
        raise MetricError(f"ffmpeg {engine.metric} measurement failed (exit {res.returncode}):\n{tail}")
    return res


def measure(
    engine: MetricEngine,
    reference_path: str | os.PathLike[str],
    distorted_path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    every_nth: int = 5,
    start_s: float | None = None,
    duration_s: float | None = None,
    seek_distorted: bool = False,
    vmaf_model: str = DEFAULT_VMAF_MODEL,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    reference_filters: Sequence[str] = (),
    reference_stream: int | None = None,
) -> QualityScore:
    """Score ``distorted_path`` against ``reference_path`` at ``width`` x ``height`` (the display size).

    ``start_s``/``duration_s`` select a window of the reference (input ``-ss``/``-t``). The distorted
    input is assumed to be an encode *of that window* (a trial encode of a sampled segment): it is read
    from its start, limited to ``duration_s``. Set ``seek_distorted=True`` when the distorted file is a
    full-length encode and must be cut at ``start_s`` too. ``every_nth`` keeps frames 0, N, 2N, ... of
    the window on both inputs. ``reference_filters`` (ffmpeg filter strings) are applied to the
    reference before anything else, e.g. the ``fps`` conversion the encoder applied, so both inputs hold
    the same frames; ``reference_stream`` picks the reference's video stream by absolute index (default:
    the first video stream).
    """
    if int(every_nth) != every_nth or every_nth < 1:
        raise ValueError(f"every_nth must be a positive integer, got {every_nth!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width/height must be positive, got {width}x{height}")
    if start_s is not None and start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    for p in (reference_path, distorted_path):
        if not _is_http(p) and not Path(p).is_file():
            raise MetricError(f"input not found: {p}")

    argv = build_argv(
        engine,
        reference_path,
        distorted_path,
        width=width,
        height=height,
        every_nth=int(every_nth),
        start_s=start_s,
        duration_s=duration_s,
        seek_distorted=seek_distorted,
        vmaf_model=vmaf_model,
        reference_filters=reference_filters,
        reference_stream=reference_stream,
    )
    with tempfile.TemporaryDirectory(prefix="abrpipe-metric-") as tmp:
        res = _run_checked(engine, argv, timeout_s, tmp)
        try:
            score = _parse(engine.metric, Path(tmp), res.stderr)
        except (OSError, KeyError, ValueError) as exc:
            raise MetricError(f"cannot read the {engine.metric} result: {exc}") from exc
    if score.frames == 0 or math.isnan(score.mean):
        raise MetricError(
            "no frames were compared: check that both inputs decode and that the window "
            f"(start_s={start_s}, duration_s={duration_s}) lies inside them"
        )
    return score


def build_batch_argv(
    engine: MetricEngine,
    reference_path: str | os.PathLike[str],
    distorted_paths: Sequence[str | os.PathLike[str]],
    *,
    width: int,
    height: int,
    every_nth: int = 5,
    vmaf_model: str = DEFAULT_VMAF_MODEL,
    pix_fmt: str = "yuv420p",
    threads: int | None = None,
) -> list[str]:
    """One ffmpeg command that scores every distorted input against the same reference (VMAF only).

    The reference is read, subsampled and converted once and ``split`` to one libvmaf per distorted
    input, each writing ``vmaf_<i>.json``: one process and one reference read for a whole batch of
    trials instead of one per trial.
    """
    if engine.metric != "vmaf":
        raise ValueError("batch scoring is implemented for VMAF only")
    threads = threads or max(1, os.cpu_count() or 1)
    n = len(distorted_paths)
    parts = [_branch("0:v", "refall", every_nth=every_nth, width=width, height=height, pix_fmt=pix_fmt)]
    # One copy of the prepared reference per metric filter.
    parts.append("[refall]split=" + str(n) + "".join(f"[ref{i}]" for i in range(n)) if n > 1 else "[refall]null[ref0]")
    maps: list[str] = []
    for i in range(n):
        parts.append(_branch(f"{i + 1}:v", f"dis{i}", every_nth=every_nth, width=width, height=height, pix_fmt=pix_fmt))
        vmaf = _metric_filter("vmaf", vmaf_model=vmaf_model, threads=threads).replace("log_path=vmaf.json", f"log_path=vmaf_{i}.json")
        parts.append(f"[dis{i}][ref{i}]{vmaf}[out{i}]")
        # Each metric output goes to its own null muxer: nothing is written.
        maps += ["-map", f"[out{i}]", "-f", "null", "-"]
    inputs: list[str] = ["-i", str(Path(reference_path).resolve())]
    for d in distorted_paths:
        inputs += ["-i", str(Path(d).resolve())]
    return [
        engine.ffmpeg_path, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        *inputs, "-filter_complex", ";".join(parts), *maps,
    ]  # fmt: skip


def measure_batch(
    engine: MetricEngine,
    reference_path: str | os.PathLike[str],
    distorted_paths: Sequence[str | os.PathLike[str]],
    *,
    width: int,
    height: int,
    every_nth: int = 5,
    vmaf_model: str = DEFAULT_VMAF_MODEL,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> list[QualityScore]:
    """Score several distorted clips against one reference; one process for VMAF (see
    :func:`build_batch_argv`), one :func:`measure` per clip for the other metrics."""
    if engine.metric != "vmaf" or len(distorted_paths) < 2:
        return [measure(engine, reference_path, d, width=width, height=height, every_nth=every_nth,
                        vmaf_model=vmaf_model, timeout_s=timeout_s) for d in distorted_paths]  # fmt: skip
    for p in (reference_path, *distorted_paths):
        if not Path(p).is_file():
            raise MetricError(f"input not found: {p}")
    argv = build_batch_argv(engine, reference_path, distorted_paths, width=width, height=height,
                            every_nth=int(every_nth), vmaf_model=vmaf_model)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="abrpipe-metric-") as tmp:
        _run_checked(engine, argv, timeout_s, tmp)
        scores = []
        for i in range(len(distorted_paths)):
            try:
                score = _parse_vmaf(Path(tmp, f"vmaf_{i}.json"))
            except (OSError, KeyError, ValueError) as exc:
                raise MetricError(f"cannot read the {engine.metric} result: {exc}") from exc
            if score.frames == 0 or math.isnan(score.mean):
                raise MetricError(f"no frames were compared for {distorted_paths[i]}")
            scores.append(score)
    return scores


def combine_scores(scores: Sequence[QualityScore]) -> QualityScore:
    """Pool the scores of several segments of one trial, weighted by their frame counts.

    VMAF and SSIM: frame-weighted arithmetic mean. PSNR and XPSNR: the frame-weighted mean of the
    underlying (normalised) MSE, converted back to dB -- the same pooling ffmpeg's summary uses within
    one run, so one long window and its pieces agree. Mixing metrics is an error.
    """
    if not scores:
        raise ValueError("combine_scores needs at least one score")
    metric = scores[0].metric
    if any(s.metric != metric for s in scores):
        raise ValueError(f"cannot combine different metrics: {sorted({s.metric for s in scores})}")
    total = sum(s.frames for s in scores)
    if total <= 0:
        raise ValueError("combine_scores: no frames")
    if metric in ("psnr", "xpsnr"):
        mse = sum(s.frames * 10.0 ** (-s.mean / 10.0) for s in scores) / total
        return QualityScore(metric, _cap(-10.0 * math.log10(mse)), total)
    return QualityScore(metric, sum(s.frames * s.mean for s in scores) / total, total)


def self_test(engine: MetricEngine, *, timeout_s: float = 120.0) -> tuple[QualityScore, QualityScore]:
    """Check an engine on a known pair: identical clips must score ~perfect, a blurred copy clearly less.

    Generates a 1-s 320x180 test pattern (lossless y4m) and a heavily blurred copy with the engine's own
    ffmpeg (no encoder needed), measures both and raises :class:`MetricError` if the scores are not as
    expected. Returns ``(identical, blurred)``.
    """
    perfect = {"vmaf": 97.0, "psnr": PSNR_CAP_DB, "ssim": 0.999, "xpsnr": PSNR_CAP_DB}[engine.metric]
    with tempfile.TemporaryDirectory(prefix="abrpipe-metric-selftest-") as tmp:
        ref, blur = Path(tmp, "ref.y4m"), Path(tmp, "blur.y4m")
        src = "testsrc2=size=320x180:rate=25:duration=1"
        for out, vf in ((ref, "format=yuv420p"), (blur, "boxblur=luma_radius=6:luma_power=3,format=yuv420p")):
            res = _run(
                [engine.ffmpeg_path, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                 "-f", "lavfi", "-i", src, "-vf", vf, "-f", "yuv4mpegpipe", str(out)],
                timeout_s,
            )  # fmt: skip
            if res.returncode != 0:
                raise MetricError(f"self-test clip generation failed: {res.stderr.strip()[-500:]}")
        same = measure(engine, ref, ref, width=320, height=180, every_nth=1, timeout_s=timeout_s)
        worse = measure(engine, ref, blur, width=320, height=180, every_nth=1, timeout_s=timeout_s)
    if same.mean < perfect:
        raise MetricError(f"self-test: identical clips scored {engine.metric} {same.mean:.3f} (< {perfect})")
    if not worse.mean < same.mean - (0.02 if engine.metric == "ssim" else 5.0):
        raise MetricError(
            f"self-test: blurred clip scored {engine.metric} {worse.mean:.3f}, not clearly below {same.mean:.3f}"
        )
    return same, worse
