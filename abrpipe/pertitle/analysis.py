"""Per-title analysis: trial encodes on sampled segments -> rate/quality curves -> a per-title ladder.

For a source and a (single-codec) profile:

1. **Candidates.** The trial resolutions are the sizes of the profile's rungs as planned for this
   source (so never above it), each with the frame rate and codec settings of its profile rung.
2. **Sample.** ``K = clamp(ceil(duration / 20 s), 2, 8)`` windows of 2 s spread evenly over the title;
   a title shorter than 10 s is analysed whole (in pieces of at most 5 s, to bound the temporary
   reference files).
3. **Trial encodes.** For each window ONE ffmpeg process decodes the window once (input ``-ss``/``-t``)
   and fans out, like the real encode: the same deinterlace/tone-map/frame-rate steps, ``split``, one
   ``scale`` per resolution, then one encoder per CRF, with the options of the project's encoder
   plug-in (same preset, GOP and profile as the final encode; CRF capped at the ladder's highest
   maxrate). The same process writes the lossless reference of the window at the measuring size, so
   trial and reference hold exactly the same frames whatever the container's seeking precision.
   **Bracketing.** The diagonal CRF search (:func:`crf_plan`) measures small sizes only at high CRFs,
   so the profile's own small-size rungs often lie above every trial of their size, where the guard
   could only assume the best any size reaches there (and so never saw the saving). When the first
   pass does not already predict a confident saving, :func:`bracket_crfs` adds one CRF per such size,
   aimed just above its highest rung, and a second pass measures them on every window. The bracketing
   CRF goes at most :data:`BRACKET_MAX_STEP` below the size's lowest first-pass CRF
   (:func:`lowest_allowed_crfs`); a size measured there has saturated (:func:`saturated_sizes`), and a
   rung still above its trials is predicted by the guard from that size's own curve
   (:func:`abrpipe.pertitle.guard.saturated_bound`) instead of the best any size reaches there.
   **Budget.** The first pass measures what it costs: CPU-s per encoded pixel-frame (the trials use the
   final encode's own preset, so no preset calibration is needed) and per scored trial. From those,
   :class:`CostModel` estimates one fixed-ladder encode of the whole title (every planned rung's pixels
   x frames) and the second pass; :func:`budget_second_pass` runs the pass whole, on fewer sizes (the
   cheapest first), or not at all, so that the analysis, as estimated, stays within ``max_cost`` (2x)
   fixed-ladder encodes, ``max_cost_short`` (3x) for titles under 30 s, planning within
   ``budget_margin`` (85 %) of it since the fixed-ladder encode is an estimate. Skipped or shrunk passes
   are noted; the guard then decides on what it has (an unmeasured rung of a size not measured at its
   lowest allowed CRF still counts at the best any size reaches there). The first pass itself always
   runs; a title under ``long_title_s`` is scored more sparsely (``short_every_nth``) to keep it affordable.
   **Calibration.** The per-title ladder is encoded capped-CRF (its rungs are trial points); the
   profile's ladder targets bitrates. The first pass also encodes one profile rung exactly as the fixed
   ladder does (:func:`calibration_rung`) on every window, which says what a bitrate target is worth in
   CRF bits (:func:`fixed_rate_efficiency`); the guard predicts the fixed ladder with it.
4. **Measure.** Every trial is scored against that reference at the measuring size (the ladder's top
   rung size: the trial is upscaled first) on every Nth frame (6th; 10th for a title under 30 s), with VMAF when an ffmpeg with libvmaf is
   available, else PSNR-Y. Bitrate = bytes of the trial's fragments / their duration.
5. **Ladder.** Per-resolution curves and their envelope (:mod:`.hull`); rungs up to the profile's
   highest rung bitrate, the top where quality saturates (VMAF 95 / PSNR-Y 45 dB), the bottom where the
   envelope reaches the quality predicted for the profile's lowest rung (:func:`ladder_floor`: never
   above the profile's lowest bitrate, never below ``floor_kbps`` / ``floor_fraction`` of it), at most
   as many rungs as the profile gives this source, each at the resolution the envelope picks, then
   moved to the whole CRF its size's trials measured nearest its bitrate (``rate_control = "crf"``:
   capped CRF, so the final encode repeats a measured trial; ``"vbr"`` keeps bitrate targets); the
   result is a :class:`~abrpipe.profile.Profile` (:mod:`.ladder`) that ``pipeline.run_job`` encodes
   directly.

Per-title needs one software codec with a CRF mode: a multi-codec profile is refused (run it once per
codec with a single-codec profile), and so are hardware encoders.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import resource
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import ffmpeg

from abrpipe import codecs, encode, mp4, runner, tools
from abrpipe.errors import DependencyError, EncodeError, InputError, ProfileError
from abrpipe.pertitle import guard, hull, ladder, metrics
from abrpipe.plan import LadderPlan, PlannedRung, plan_ladder
from abrpipe.probe import SourceMedia
from abrpipe.profile import Profile, VideoRungSpec

#: Trial CRFs per codec family: five steps spanning "visually lossless" to "very coarse".
CRF_GRIDS: dict[str, tuple[int, ...]] = {
    "avc": (18, 24, 30, 36, 42),
    "hevc": (20, 26, 32, 38, 44),
    "vp9": (24, 32, 40, 48, 56),
    "av1": (24, 32, 40, 48, 56),
}
#: Quality at which a curve counts as saturated: the top rung goes no higher.
SATURATION: dict[str, float] = {"vmaf": 95.0, "psnr": 45.0, "xpsnr": 45.0, "ssim": 0.99}
METRIC_LABELS: dict[str, str] = {"vmaf": "VMAF", "psnr": "PSNR-Y", "xpsnr": "XPSNR-Y", "ssim": "SSIM-Y"}

#: Demuxers that seek through a keyframe index: input -ss lands on the keyframe before the target and
#: decodes forward, frame-exact. Anything else (MPEG-TS/PS, raw streams) may land on the next keyframe
#: or nowhere, so such a source is first remuxed (stream copy, no decode) into Matroska, which has one.
INDEXED_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "nut", "mxf", "yuv4mpegpipe"})

#: The most CRF steps one bracketing CRF goes below a size's lowest first-pass CRF (:func:`bracket_crfs`).
BRACKET_MAX_STEP = 12

#: Trial VBV cap: this many times the ladder's highest maxrate (bufsize twice that).
TRIAL_CAP_FACTOR = 2

# Trial outputs are fragmented MP4 (one fragment per GOP) so their bytes and duration are read from
# the boxes exactly as the final renditions' are.
_TRIAL_MOVFLAGS = "+frag_keyframe+empty_moov+default_base_moof"
_CALIBRATION_NAME = "calibration_vbr.mp4"


@dataclass(frozen=True)
class AnalysisOptions:
    metric: str | None = None  # None: VMAF if an ffmpeg with libvmaf is available, else PSNR-Y
    crfs: tuple[int, ...] | None = None  # None: CRF_GRIDS[codec family], on a diagonal (crf_plan)
    diagonal_sizes: int = 5  # the diagonal slides from the grid's low end to its high end over this many sizes
    segment_s: float = 2.0  # length of each sampled window
    seconds_per_segment: float = 8.0  # one window per this many seconds of title ...
    min_segments: int = 3  # ... at least this many ...
    max_segments: int = 8  # ... and at most this many
    whole_below_s: float = 10.0  # titles shorter than this are analysed whole
    whole_piece_s: float = 5.0  # ... in pieces of at most this length
    scene_aware: bool = True  # sampled titles: find the shot cuts first and keep each window inside one shot
    scene_threshold: float = 0.3  # ffmpeg's scene score above which a frame starts a new shot
    every_nth: int = 6  # score frames 0, N, 2N, ... of each window (VMAF is most of the analysis' cost) ...
    # ... and of each window of a title under long_title_s this sparser grid: the windows (or the pieces of a
    # title analysed whole) then cover a fifth of the title to all of it, so at the long titles' density a short
    # clip scores more frames per trial than a long title does, and its analysis would cost more than the
    # 3 fixed-ladder encodes it is allowed (VMAF costs about twice a veryfast encode per pixel).
    short_every_nth: int = 10
    max_ratio: float = 2.0  # largest bitrate ratio between neighbouring rungs
    saturation: float | None = None  # None: SATURATION[metric]
    # The lowest per-title rung follows quality: it sits where the hull reaches the quality predicted for
    # the profile's lowest rung, never above the profile's lowest bitrate and never below
    # max(floor_kbps, floor_fraction x the profile's lowest bitrate). A quarter is two max_ratio steps
    # below the rendition the profile's author chose as the least a player should get, so the ladder
    # reaches down without leaving the range the trials measure well; 32 kbps bounds it for any profile:
    # the lower the target, the more of it the keyframe that starts every segment and the container's boxes
    # take, and the harder it is for rate control to hold a rendition to its declared bitrate.
    floor_kbps: float = 32.0
    floor_fraction: float = 0.25
    rate_control: str = "crf"  # how the per-title rungs are encoded: ladder.RATE_CONTROLS
    bracket_fixed: bool = True  # measure the profile's rungs the first trials only extrapolate, when it can matter
    # The analysis' CPU budget, in estimated fixed-ladder encodes of the same title: the second (bracketing)
    # pass runs, or runs on fewer sizes, only while the whole analysis stays within it.
    max_cost: float = 2.0  # titles of long_title_s and more ...
    max_cost_short: float = 3.0  # ... shorter ones (fixed costs weigh more on a short clip)
    long_title_s: float = 30.0
    # The second pass plans within this share of the budget: the budget is checked against an estimate of
    # the fixed-ladder encode, which has come out up to 18 % above the encode as measured.
    budget_margin: float = 0.85
    guard_options: guard.GuardOptions = field(default_factory=guard.GuardOptions)  # when to keep the profile's ladder


@dataclass(frozen=True)
class Window:
    """One sampled piece of the title; ``duration_s`` None means "to the end"."""

    start_s: float
    duration_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": round(self.start_s, 3), "duration_s": None if self.duration_s is None else round(self.duration_s, 3)}


@dataclass(frozen=True)
class Candidate:
    """A trial resolution and the profile rung whose settings (fps cap, codec profile, level) it uses."""

    width: int
    height: int
    fps_divisor: int
    spec: VideoRungSpec

    @property
    def resolution(self) -> hull.Resolution:
        return (self.width, self.height)


@dataclass(frozen=True)
class Trial:
    """One (resolution, CRF) trial, pooled over every sampled window."""

    width: int
    height: int
    crf: int
    kbps: float
    quality: float
    frames: int  # frames scored
    duration_s: float  # encoded duration summed over windows

    @property
    def resolution(self) -> hull.Resolution:
        return (self.width, self.height)

    def point(self) -> hull.TrialPoint:
        return hull.TrialPoint(self.width, self.height, self.crf, self.kbps, self.quality)


@dataclass(frozen=True)
class FixedRung:
    """A rung of the profile's own ladder for this source, with the quality the trial curves predict."""

    id: str
    width: int
    height: int
    kbps: float
    predicted_quality: float
    extrapolated: bool


@dataclass(frozen=True)
class Cost:
    cpu_s: float  # CPU time of every child process of the analysis (trial encodes + metric runs)
    encode_cpu_s: float
    metric_cpu_s: float
    wall_s: float
    fixed_encode_estimate_cpu_s: float = math.nan  # one fixed-ladder encode, estimated from the first pass
    budget_cpu_s: float = math.nan  # the analysis budget: max_cost (or max_cost_short) x the estimate


@dataclass(frozen=True)
class Analysis:
    input: str
    source_size: tuple[int, int]  # display size
    base_profile: str
    codec: str
    preset: str
    metric: str
    metric_ffmpeg: str
    measure_size: tuple[int, int]  # trials are upscaled to this size and scored against the source at it
    every_nth: int
    windows: tuple[Window, ...]
    crfs: tuple[int, ...]  # every CRF trialled at some size
    candidates: tuple[Candidate, ...]
    trials: tuple[Trial, ...]
    crossovers: tuple[hull.Crossover, ...]
    hull_points: tuple[hull.TrialPoint, ...]
    saturation: float
    min_kbps: int  # the profile's lowest rung bitrate for this source
    max_kbps: int
    rung_count: int
    rungs: tuple[hull.ChosenRung, ...]  # the per-title ladder, top first (rounded bitrates)
    fixed: tuple[FixedRung, ...]  # the profile's ladder for this source
    profile: Profile  # the per-title ladder as a profile run_job can encode
    predicted_bd: dict[str, Any] | None
    cost: Cost
    notes: tuple[str, ...] = field(default=())
    decision: guard.Decision = field(default_factory=lambda: guard.Decision(True, ()))
    base: Profile | None = None  # the profile the analysis started from (its ladder is the fallback)
    window_trials: tuple[tuple[Trial, ...], ...] = field(default=())  # each window's own trials
    shot_cuts: tuple[float, ...] = ()  # where new shots start (sampled titles), the windows avoid them
    floor_kbps: float | None = None  # the per-title ladder's lowest bitrate (None: the profile's lowest)

    @property
    def chosen_profile(self) -> Profile:
        """What ``encode --per-title`` encodes: the per-title ladder, or the profile's own when the
        guard keeps it."""
        if self.decision.per_title or self.base is None:
            return self.profile
        return self.base

    @property
    def points(self) -> list[hull.TrialPoint]:
        return [t.point() for t in self.trials]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "source_size": f"{self.source_size[0]}x{self.source_size[1]}",
            "base_profile": self.base_profile,
            "codec": self.codec,
            "preset": self.preset,
            "metric": self.metric,
            "metric_label": METRIC_LABELS.get(self.metric, self.metric),
            "metric_ffmpeg": self.metric_ffmpeg,
            "measure_size": f"{self.measure_size[0]}x{self.measure_size[1]}",
            "every_nth_frame": self.every_nth,
            "windows": [w.to_dict() for w in self.windows],
            "shot_cuts_s": [round(c, 3) for c in self.shot_cuts],
            "crfs": list(self.crfs),
            "crfs_by_size": {f"{c.width}x{c.height}": sorted({t.crf for t in self.trials if t.resolution == c.resolution})
                             for c in self.candidates},
            "resolutions": [f"{c.width}x{c.height}" for c in self.candidates],
            "trials": [
                {"width": t.width, "height": t.height, "crf": t.crf, "kbps": round(t.kbps, 1),
                 "quality": round(t.quality, 3), "frames": t.frames}
                for t in self.trials
            ],  # fmt: skip
            "crossovers": [
                {"kbps": round(c.kbps, 1), "below": f"{c.below[0]}x{c.below[1]}", "above": f"{c.above[0]}x{c.above[1]}"}
                for c in self.crossovers
            ],
            "hull": [{"width": p.width, "height": p.height, "crf": p.crf, "kbps": round(p.kbps, 1),
                      "quality": round(p.quality, 3)} for p in self.hull_points],  # fmt: skip
            "saturation": self.saturation,
            "bitrate_range_kbps": [self.min_kbps, self.max_kbps],
            "floor_kbps": round(self.floor_kbps if self.floor_kbps is not None else self.min_kbps, 1),
            "max_rungs": self.rung_count,
            "ladder": ladder.rung_rows(self.profile, self.rungs),
            "fixed_ladder": [
                {"id": f.id, "width": f.width, "height": f.height, "kbps": f.kbps,
                 "predicted_quality": round(f.predicted_quality, 3), "extrapolated": f.extrapolated}
                for f in self.fixed
            ],  # fmt: skip
            "predicted_bd_rate": self.predicted_bd,
            "decision": self.decision.to_dict(),
            "used_ladder": "per-title" if self.decision.per_title else "profile",
            "cost": {k: round(v, 2) for k, v in self.cost.__dict__.items() if math.isfinite(v)},
            "notes": list(self.notes),
        }


EventCallback = Callable[[str], None]


# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------


def sample_windows(duration_s: float, options: AnalysisOptions | None = None) -> tuple[Window, ...]:
    """The windows to analyse: K evenly spread windows, or the whole (short) title in pieces (the last
    piece runs to the end: its ``duration_s`` is None)."""
    options = options or AnalysisOptions()
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration must be positive, got {duration_s!r}")
    k = max(options.min_segments, min(options.max_segments, math.ceil(duration_s / options.seconds_per_segment)))
    if duration_s < options.whole_below_s or k * options.segment_s >= duration_s:
        pieces = max(1, math.ceil(duration_s / options.whole_piece_s - 1e-9))
        if pieces == 1:
            return (Window(0.0, None),)
        step = duration_s / pieces
        return tuple(Window(round(i * step, 3), None if i == pieces - 1 else round(step, 3)) for i in range(pieces))
    out = []
    for i in range(k):
        centre = (i + 0.5) * duration_s / k
        start = min(max(0.0, centre - options.segment_s / 2), duration_s - options.segment_s)
        out.append(Window(round(start, 3), options.segment_s))
    return tuple(out)


def crf_grid(codec: str) -> tuple[int, ...]:
    """The trial CRFs for ``codec``: its family's grid, within the encoder's CRF range."""
    encoder = codecs.get(codec)
    grid = CRF_GRIDS.get(getattr(encoder, "family", ""), CRF_GRIDS["avc"])
    lo, hi = getattr(encoder, "crf_range", (0, 63))
    return tuple(sorted({min(max(c, lo), hi) for c in grid}))


def place_in_shots(windows: Sequence[Window], cuts: Sequence[float], duration_s: float) -> tuple[Window, ...]:
    """Move each sampled window into one shot: the longest shot that overlaps its share of the title.

    ``windows`` are the evenly spread windows (:func:`sample_windows`), ``cuts`` the times at which a
    new shot starts. The title is split into as many equal parts as there are windows; each window is
    centred on the longest shot overlapping its part (clipped to the part), so no window straddles a cut
    when a long enough shot exists there, and a window never sits on a cut and the frames around it
    (which code differently from the shot's own frames). Whole-title windows are returned unchanged.
    """
    if not windows or any(w.duration_s is None for w in windows) or not cuts:
        return tuple(windows)
    bounds = [0.0, *sorted(c for c in cuts if 0 < c < duration_s), duration_s]
    shots = list(zip(bounds, bounds[1:], strict=False))
    k = len(windows)
    out = []
    for i, w in enumerate(windows):
        length = w.duration_s or 0.0
        lo, hi = i * duration_s / k, (i + 1) * duration_s / k
        overlapping = [(max(a, lo), min(b, hi)) for a, b in shots if b > lo and a < hi]
        a, b = max(overlapping, key=lambda s: s[1] - s[0])
        start = (a + b) / 2 - length / 2
        start = min(max(start, a if b - a >= length else lo), (b if b - a >= length else hi) - length)
        start = min(max(0.0, start), duration_s - length)
        out.append(Window(round(start, 3), length))
    return tuple(out)


def scene_cuts(source: SourceMedia, threshold: float) -> list[float]:
    """Times (s) at which a new shot starts, from ffmpeg's scene score on a small copy of every frame."""
    assert source.video is not None
    argv = [
        tools.ffmpeg_path(), "-hide_banner", "-nostdin", "-nostats", "-protocol_whitelist", source.protocol_whitelist,
        "-i", source.ffmpeg_url, "-map", f"0:{source.video.index}", "-an", "-sn",
        # The scene score compares consecutive frames; 160 pixels wide is plenty and cheap. showinfo logs
        # each selected frame's time on stderr.
        "-vf", f"scale=160:-2,select='gt(scene\\,{threshold:g})',showinfo",
        "-f", "null", "-",
    ]  # fmt: skip
    res = runner.capture_result(argv, timeout_s=max(120.0, 4 * source.duration_s))
    if res.returncode != 0:
        return []  # no cuts known: the evenly spread windows stay
    return [float(m) for m in re.findall(r"pts_time:\s*([0-9.]+)", res.stderr)]


def crf_plan(
    codec: str, sizes: Sequence[hull.Resolution], per_size: int = 3, diagonal_sizes: int = 5
) -> dict[hull.Resolution, tuple[int, ...]]:
    """The CRFs to trial at each size: a diagonal through the CRF x size grid.

    A size is only worth measuring where it can be on the rate/quality hull: the largest size wins at
    high bitrates (low CRFs), the smallest at low bitrates (high CRFs). So the largest size gets the
    ``per_size`` lowest CRFs of the family's grid and each smaller size slides towards the highest, evenly
    over ``diagonal_sizes`` sizes or more (a half step is rounded to a whole CRF). A ladder with fewer
    sizes (a small source) slides as far per size as a five-size one, not across the whole grid: its
    smallest size holds the profile's lowest rungs, which sit in the middle of the grid (a 640x272 film's
    416x176 at 145 kbps is near CRF 25), not at its coarse end. Three points per size instead of five
    (15 trials instead of 25 for five sizes) and no high-CRF encodes of the big sizes, whose points
    fall far below any rung's quality. A single size gets the whole grid.
    """
    grid = crf_grid(codec)
    ordered = sorted(sizes, key=lambda r: (r[0] * r[1], r[1]), reverse=True)
    if len(ordered) <= 1 or len(grid) <= per_size:
        return {r: grid for r in ordered}
    lo, step = grid[0], (grid[-1] - grid[0]) / (len(grid) - 1)
    span = (grid[-1] - grid[0]) - (per_size - 1) * step  # how far the 3-CRF window slides
    encoder = codecs.get(codec)
    c_lo, c_hi = getattr(encoder, "crf_range", (0, 63))
    slide = span / max(len(ordered) - 1, diagonal_sizes - 1)  # per size
    out = {}
    for i, res in enumerate(ordered):
        first = lo + slide * i
        out[res] = tuple(sorted({min(max(int(round(first + k * step)), c_lo), c_hi) for k in range(per_size)}))
    return out


def saturation_for(metric: str) -> float:
    return SATURATION[metric]


def single_codec(profile: Profile) -> str:
    """The profile's only video codec; per-title refuses multi-codec and hardware-encoder profiles."""
    names = sorted({r.codec for r in profile.rungs})
    where = profile.path or profile.name
    if not names:
        raise ProfileError(f"{where}: has no video rungs; per-title ladders are for video")
    if len(names) > 1:
        raise ProfileError(
            f"{where}: per-title analysis takes a single-codec profile, this one has {', '.join(names)}",
            hint="run it once per codec with a profile holding only that codec's rungs",
        )
    encoder = codecs.get(names[0])
    if not isinstance(encoder, codecs.VideoEncoder) or encoder.hardware:
        raise ProfileError(
            f"{where}: per-title trials need a software encoder with a CRF mode; {names[0]} is not one",
            hint="use a profile with h264, hevc, vp9 or av1",
        )
    return names[0]


def candidates(source: SourceMedia, profile: Profile, plan: LadderPlan) -> tuple[Candidate, ...]:
    """Distinct rung sizes of the profile as planned for ``source``, largest first.

    Each size keeps the settings of the first (highest-bitrate) profile rung that has it.
    """
    found: dict[tuple[int, int], Candidate] = {}
    for spec in profile.rungs:
        single = plan_ladder(source, replace(profile, rungs=(spec,), audio=()))
        if single.dropped or not single.video:
            continue  # above the source (plan_ladder would substitute a source-size rung)
        r = single.video[0]
        found.setdefault((r.width, r.height), Candidate(r.width, r.height, r.fps_divisor, spec))
    if not found:  # a source smaller than every rung: the plan's single source-size rung
        r = plan.video[0]
        found[(r.width, r.height)] = Candidate(r.width, r.height, r.fps_divisor, profile.rungs[-1])
    return tuple(sorted(found.values(), key=lambda c: (c.width * c.height, c.height), reverse=True))


def children_cpu_s() -> float:
    """CPU seconds (user + system) of every child process this process has waited for."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def trial_bytes_and_duration(path: str) -> tuple[int, float]:
    """Bytes of the media fragments (moof + mdat) and their duration in seconds."""
    track = mp4.read_init(path)
    seg = mp4.read_segment(path, track)
    size = sum(f.size for f in seg.fragments)
    return size, seg.duration / track.timescale


def needs_index(source: SourceMedia, windows: Sequence[Window]) -> bool:
    """True when some window starts inside the title and the container has no keyframe index."""
    return any(w.start_s > 0 for w in windows) and not set(source.format_name.split(",")) & INDEXED_FORMATS


def indexed_copy(source: SourceMedia, directory: str) -> SourceMedia:
    """The source's video stream copied (not re-encoded) into Matroska, whose cues make -ss exact."""
    assert source.video is not None
    path = os.path.join(directory, "source-indexed.mkv")
    argv = [
        tools.ffmpeg_path(), "-hide_banner", "-nostdin", "-v", "error", "-y",
        "-protocol_whitelist", source.protocol_whitelist, "-i", source.ffmpeg_url,
        "-map", f"0:{source.video.index}", "-c", "copy",
        "-f", "matroska", path,
    ]  # fmt: skip
    try:
        runner.run(argv)
    except EncodeError as exc:
        raise EncodeError(
            f"{source.path}: cannot copy the video into an indexed container for sampling ({exc.message})",
            argv=exc.argv, returncode=exc.returncode, stderr_tail=exc.stderr_tail,
        ) from None  # fmt: skip
    return replace(source, path=path, format_name="matroska,webm", video=replace(source.video, index=0), audio=())


# --------------------------------------------------------------------------------------------------
# The trial process
# --------------------------------------------------------------------------------------------------


def _trial_name(c: Candidate, crf: int) -> str:
    return f"trial_{c.width}x{c.height}_crf{crf}.mp4"


def _reference_name(divisor: int) -> str:
    return f"reference_fps{divisor}.y4m"


def trial_rung(c: Candidate, crf: int, plan: LadderPlan, cap: tuple[int, int]) -> PlannedRung:
    """The planned rung of one trial: the candidate's settings, CRF instead of a target bitrate."""
    assert plan.base_fps is not None
    maxrate, bufsize = cap
    return PlannedRung(
        id=f"trial-{c.width}x{c.height}-crf{crf}",
        codec=c.spec.codec,
        width=c.width,
        height=c.height,
        fps=plan.base_fps / c.fps_divisor,
        fps_divisor=c.fps_divisor,
        bitrate_kbps=maxrate,
        maxrate_kbps=maxrate,
        bufsize_kbps=bufsize,
        crf=crf,
        codec_profile=c.spec.codec_profile,
        level=c.spec.level,
        gop_frames=plan.gop_frames // c.fps_divisor,
        rate_control="crf",
    )


def build_trial_command(
    source: SourceMedia,
    plan: LadderPlan,
    cands: Sequence[Candidate],
    crfs: Mapping[hull.Resolution, Sequence[int]],
    window: Window,
    measure_size: tuple[int, int],
    cap: tuple[int, int],
    calibration: PlannedRung | None = None,
) -> tuple[list[str], dict[tuple[tuple[int, int], int | None], str], dict[int, str]]:
    """One ffmpeg command: decode ``window`` once, encode every (candidate x CRF) trial and write the
    reference(s). Returns (argv, trial file per (resolution, crf), reference file per fps divisor);
    the files are relative to the directory the command runs in. ``calibration``: one profile rung also
    encoded exactly as the fixed ladder encodes it, keyed (its resolution, None)."""
    assert source.video is not None and plan.base_fps is not None
    opts: dict[str, str] = {"protocol_whitelist": source.protocol_whitelist}
    if window.start_s > 0:
        # Input seek: demuxer seek plus decode-and-drop to the exact time (accurate seek).
        opts["ss"] = f"{window.start_s:.6f}"
    if window.duration_s is not None:
        opts["t"] = f"{window.duration_s:.6f}"  # read only the window
    inp = ffmpeg.input(source.ffmpeg_url, **opts)
    # The same steps, in the same order, as the real encode.
    v = encode.apply_filters(inp[str(source.video.index)], encode.source_filters(plan))
    divisors = sorted({c.fps_divisor for c in cands})
    split = v.filter_multi_output("split", len(cands) + len(divisors))
    outputs = []
    trials: dict[tuple[tuple[int, int], int | None], str] = {}
    refs: dict[int, str] = {}
    for i, c in enumerate(cands):
        branch = split.stream(i)
        if c.fps_divisor > 1:
            branch = branch.filter("fps", fps=str(plan.base_fps / c.fps_divisor))
        branch = branch.filter("scale", c.width, c.height, flags="bicubic").filter("setsar", "1")
        mine = list(crfs[c.resolution])
        calibrate = calibration if calibration is not None and (calibration.width, calibration.height) == c.resolution else None
        count = len(mine) + (calibrate is not None)
        per_crf = [branch] if count == 1 else [
            branch.filter_multi_output("split", count).stream(j) for j in range(count)
        ]  # fmt: skip
        if calibrate is not None:
            # The profile's rung exactly as the fixed ladder encodes it (bitrate target and VBV): what its
            # bitrate is worth against the CRF trials of the same size (guard.rate_efficiency).
            cal_opts = encode.video_options(calibrate, plan, None)
            cal_opts.setdefault("threads", "1")
            trials[(c.resolution, None)] = _CALIBRATION_NAME
            outputs.append(ffmpeg.output(per_crf.pop(), _CALIBRATION_NAME, format="mp4", movflags=_TRIAL_MOVFLAGS, **cal_opts))
        for crf, stream in zip(mine, per_crf, strict=True):
            # Exactly the options the real encode gives this rung (plug-in options + the profile's own).
            enc_opts = encode.video_options(trial_rung(c, crf, plan, cap), plan, None)
            # One thread per trial encoder: a window's trial encoders already run side by side, and frame
            # threading costs CPU for the same bits (x264 veryfast, 720p: 11 % fewer CPU-s, bytes within 0.01 %).
            enc_opts.setdefault("threads", "1")
            name = _trial_name(c, crf)
            trials[(c.resolution, crf)] = name
            outputs.append(ffmpeg.output(stream, name, format="mp4", movflags=_TRIAL_MOVFLAGS, **enc_opts))
    for k, divisor in enumerate(divisors):
        branch = split.stream(len(cands) + k)
        if divisor > 1:
            branch = branch.filter("fps", fps=str(plan.base_fps / divisor))
        branch = branch.filter("scale", measure_size[0], measure_size[1], flags="bicubic").filter("setsar", "1")
        refs[divisor] = _reference_name(divisor)
        # Uncompressed reference: no generation loss and nothing to decode when scoring.
        outputs.append(ffmpeg.output(branch, refs[divisor], format="yuv4mpegpipe"))
    argv = ffmpeg.merge_outputs(*outputs).global_args(*encode.GLOBAL_ARGS).overwrite_output().compile(cmd=tools.ffmpeg_path())
    return argv, trials, refs


# --------------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------------


def metric_engine(metric: str | None) -> metrics.MetricEngine:
    try:
        return metrics.find_metric_engine(metric)
    except metrics.MetricEngineError as exc:
        raise DependencyError(
            f"no quality metric available: {exc}",
            hint="pip install 'abrpipe[vmaf]' for VMAF, or choose --metric psnr (any ffmpeg has it)",
        ) from None


def analyse(
    source: SourceMedia,
    profile: Profile,
    options: AnalysisOptions | None = None,
    *,
    work_dir: str | None = None,
    on_event: EventCallback | None = None,
) -> Analysis:
    """Trial-encode sampled windows of ``source`` with ``profile``'s encoder and build its per-title ladder.

    ``profile`` is the fixed ladder as the user would run it (with any preset override applied): its
    codec, preset, GOP and rung settings are used for the trials, its rungs planned for this source
    bound the per-title ladder (lowest/highest bitrate, rung count). ``work_dir`` keeps the trial files
    (default: a temporary directory, removed afterwards).
    """
    options = options or AnalysisOptions()
    if options.rate_control not in ladder.RATE_CONTROLS:
        raise ValueError(f"AnalysisOptions.rate_control must be one of {ladder.RATE_CONTROLS}, not {options.rate_control!r}")
    emit = on_event or (lambda message: None)
    wall0, cpu0 = time.monotonic(), children_cpu_s()
    if source.video is None:
        raise InputError(f"{source.path}: has no video stream; per-title ladders are for video")
    codec = single_codec(profile)
    codecs.require_available({codec})
    plan = plan_ladder(source, replace(profile, audio=()))
    cands = candidates(source, profile, plan)
    measure_size = cands[0].resolution
    engine = metric_engine(options.metric)
    crf_by_size = {c.resolution: tuple(options.crfs) for c in cands} if options.crfs else crf_plan(codec, [c.resolution for c in cands], diagonal_sizes=options.diagonal_sizes)
    crfs = tuple(sorted({crf for v in crf_by_size.values() for crf in v}))
    windows = sample_windows(source.duration_s, options)
    cut_times: list[float] = []
    # Shots matter only to sampled windows: pieces of a title analysed whole cover every frame anyway.
    if options.scene_aware and windows and windows[-1].duration_s is not None:
        emit("finding shot cuts (scene score) to keep each window inside one shot")
        cut_times = scene_cuts(source, options.scene_threshold)
        windows = place_in_shots(windows, cut_times, source.duration_s)
    # CRF trials are capped only loosely (the encoder plug-ins always set a VBV): a cap near the ladder's
    # own maxrate makes low-CRF trials hit the VBV, which distorts them (more bits, *less* quality than
    # a higher CRF), while no cap at all makes CRF 18 on noisy content cost tens of Mbps for a point far
    # above any rung.
    top_maxrate = max(r.maxrate_kbps for r in plan.video)
    cap = (TRIAL_CAP_FACTOR * top_maxrate, 2 * TRIAL_CAP_FACTOR * top_maxrate)
    notes: list[str] = []

    encode_cpu = metric_cpu = 0.0
    fps_of = {c.resolution: float(plan.base_fps) / c.fps_divisor if plan.base_fps else 0.0 for c in cands}
    empty_windows: set[int] = set()
    bytes_: dict[tuple[tuple[int, int], int], int] = {}
    seconds: dict[tuple[tuple[int, int], int], float] = {}
    scores: dict[tuple[tuple[int, int], int], list[metrics.QualityScore]] = {}
    window_trials: list[list[Trial]] = [[] for _ in windows]
    label = METRIC_LABELS.get(engine.metric, engine.metric)
    tmp = tempfile.mkdtemp(prefix="abrpipe-pertitle-", dir=work_dir) if work_dir else tempfile.mkdtemp(prefix="abrpipe-pertitle-")

    # The fixed ladder targets bitrates; a per-title ladder encoded capped-CRF is made of trial points. One
    # profile rung encoded the fixed ladder's way on the same windows says what its bitrates are worth.
    calibration = calibration_rung(plan, measure_size) if options.rate_control == "crf" else None
    calibration_parts: list[tuple[int, int, float, metrics.QualityScore]] = []  # (window, bytes, seconds, score)
    every_nth = options.short_every_nth if source.duration_s < options.long_title_s else options.every_nth

    def run_pass(trial_source: SourceMedia, pass_crfs: Mapping[hull.Resolution, Sequence[int]], suffix: str,
                 calibrate: PlannedRung | None = None) -> None:  # fmt: skip
        """Trial-encode and score ``pass_crfs`` (and ``calibrate``) on every window; the results join the
        pooled and the per-window trials."""
        nonlocal encode_cpu, metric_cpu
        pass_cands = [c for c in cands if c.resolution in pass_crfs]
        pass_all = sorted({crf for v in pass_crfs.values() for crf in v})
        for n, window in enumerate(windows, 1):
            wdir = os.path.join(tmp, f"window{n:02d}{suffix}")
            os.makedirs(wdir, exist_ok=True)
            argv, trials, refs = build_trial_command(trial_source, plan, pass_cands, pass_crfs, window, measure_size, cap, calibrate)
            emit(f"window {n}/{len(windows)} at {window.start_s:.1f} s: {len(trials)} trial encodes ({len(pass_cands)} sizes, "
                 f"CRFs {pass_all[0]}-{pass_all[-1]})")  # fmt: skip
            c0 = children_cpu_s()
            try:
                runner.run(argv, duration_s=window.duration_s or source.duration_s, cwd=wdir)
            except EncodeError as exc:
                raise EncodeError(
                    f"{source.path}: per-title trial encodes failed ({exc.message})",
                    argv=exc.argv, returncode=exc.returncode, stderr_tail=exc.stderr_tail,
                ) from None  # fmt: skip
            c1 = children_cpu_s()
            encode_cpu += c1 - c0
            emit(f"window {n}/{len(windows)}: scoring {len(trials)} trials with {label} at {measure_size[0]}x{measure_size[1]}")
            sized: dict[int, list[tuple[tuple[hull.Resolution, int | None], str, int, float]]] = {}
            for (res, crf), name in trials.items():
                path = os.path.join(wdir, name)
                try:
                    size, dur = trial_bytes_and_duration(path)
                except (OSError, mp4.Mp4Error):
                    # No frame in this window (it lies past the end the container declared): skip it.
                    empty_windows.add(n)
                    continue
                divisor = next(c.fps_divisor for c in cands if c.resolution == res)
                sized.setdefault(divisor, []).append(((res, crf), path, size, dur))
            for divisor, batch in sized.items():
                try:
                    # One metric process per reference: the reference is read once for all its trials.
                    batch_scores = metrics.measure_batch(
                        engine, os.path.join(wdir, refs[divisor]), [path for _, path, _, _ in batch],
                        width=measure_size[0], height=measure_size[1], every_nth=every_nth,
                    )  # fmt: skip
                except metrics.MetricError as exc:
                    raise EncodeError(f"{source.path}: scoring the trials of window {n} failed: {exc}") from None
                for ((res, crf), _, size, dur), score in zip(batch, batch_scores, strict=True):
                    if crf is None:
                        calibration_parts.append((n, size, dur, score))
                        continue
                    if dur > 0 and size > 0 and math.isfinite(score.mean):
                        window_trials[n - 1].append(Trial(res[0], res[1], crf, size * 8 / dur / 1000, score.mean, score.frames, dur))
                    bytes_[(res, crf)] = bytes_.get((res, crf), 0) + size
                    seconds[(res, crf)] = seconds.get((res, crf), 0.0) + dur
                    scores.setdefault((res, crf), []).append(score)
            metric_cpu += children_cpu_s() - c1
            if not work_dir:
                shutil.rmtree(wdir, ignore_errors=True)
            else:
                for ref in refs.values():  # the references are large; the trials are kept
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(wdir, ref))

    saturation = options.saturation if options.saturation is not None else saturation_for(engine.metric)
    bracketed: dict[hull.Resolution, tuple[int, ...]] = {}
    model: CostModel | None = None
    try:
        trial_source = source
        if needs_index(source, windows):
            emit(f"{source.format_name} has no keyframe index: copying the video into Matroska for exact seeking")
            trial_source = indexed_copy(source, tmp)
        run_pass(trial_source, crf_by_size, "", calibration)
        # What the first pass cost, per encoded pixel-frame and per scored trial: the basis of the budget.
        window_s = sum(seconds.values()) / max(1, len(seconds))  # seconds of title each trial covered
        model = CostModel.measured(
            encode_cpu_s=encode_cpu, metric_cpu_s=metric_cpu,
            trial_pixel_frames=sum(w * h * fps_of[(w, h)] * s for ((w, h), _), s in seconds.items()),
            trials=len(seconds), reference_pixels_per_s=measure_size[0] * measure_size[1] * float(plan.base_fps or 0), window_s=window_s,
        )  # fmt: skip
        if options.bracket_fixed:
            # The diagonal CRF search measures the small sizes only at low bitrates, so the profile's
            # rungs there (432p at 1.1 Mbps...) lie above their size's curve, where the guard can only
            # assume the best any size reaches: an assumption that hides real savings. One more CRF per
            # such size, aimed just above its highest rung, measures them instead (only when it can
            # change the decision).
            first = _pooled_trials(scores, bytes_, seconds)
            bracketed = bracket_crfs(first, plan.video, crf_by_size, codec, saturation=saturation)
            first_saturated = saturated_sizes(first, lowest_allowed_crfs(crf_by_size, codec))
            first_efficiency, _ = fixed_rate_efficiency(window_trials, calibration, calibration_parts)
            if bracketed and not _first_pass_decision(first, plan, window_trials, options, label, saturation, codec,
                                                      first_saturated, first_efficiency).per_title:  # fmt: skip
                bracketed, budget_note = budget_second_pass(
                    bracketed, {(w, h): w * h * fps_of[(w, h)] * window_s for (w, h) in bracketed}, model,
                    spent_cpu_s=children_cpu_s() - cpu0, fixed_cpu_s=model.fixed_encode_cpu_s(plan, source.duration_s),
                    max_ratio=cost_budget(source.duration_s, options), margin=options.budget_margin,
                )  # fmt: skip
                if budget_note:
                    notes.append(budget_note)
                    emit(budget_note)
            else:
                bracketed = {}
            if bracketed:
                emit("measuring the profile's rungs that the trials only extrapolate: "
                     + ", ".join(f"{w}x{h} CRF {'/'.join(map(str, c))}" for (w, h), c in bracketed.items()))  # fmt: skip
                run_pass(trial_source, bracketed, "b")
    finally:
        if not work_dir:
            shutil.rmtree(tmp, ignore_errors=True)

    for n in sorted(empty_windows):
        notes.append(f"window {n} at {windows[n - 1].start_s:g} s gave no frames (past the end of the decodable video); skipped")
    trials_out = _pooled_trials(scores, bytes_, seconds)
    if bracketed:
        notes.append("profile rungs above their size's trials measured with one more CRF at "
                     + ", ".join(f"{w}x{h} (CRF {'/'.join(map(str, c))})" for (w, h), c in bracketed.items()))  # fmt: skip
    points = [t.point() for t in trials_out]
    try:
        env = hull.envelope(points)
    except ValueError as exc:
        raise EncodeError(f"{source.path}: the trial encodes give no usable rate/quality curve ({exc})") from None

    min_kbps = min(r.bitrate_kbps for r in plan.video)
    max_kbps = max(r.bitrate_kbps for r in plan.video)
    floor = ladder_floor(env, plan, options, saturation)
    chosen, rung_notes = _choose(env, plan, options, saturation, floor)
    notes.extend(rung_notes)
    rungs = _final_rungs(env, chosen, floor, plan, options, codec)
    sat_kbps = env.kbps_for_quality(saturation)
    if sat_kbps is None:
        notes.append(f"quality never reaches {label} {saturation:g} in the trials: the top rung is the profile's highest bitrate")
    elif sat_kbps < max_kbps:
        notes.append(f"{label} {saturation:g} is reached at {sat_kbps:.0f} kbps: the top rung stops there, below the profile's {max_kbps} kbps")
    if any(r.extrapolated for r in rungs):
        notes.append("the lowest rung lies below every trial's bitrate: its quality is extrapolated")
    if options.rate_control == "crf":
        notes.append("each per-title rung is encoded capped-CRF at the CRF its size's trials measured at its bitrate "
                      "(the rung's maxrate caps it)")
    by_res = {c.resolution: c for c in cands}
    per_title = ladder.per_title_profile(
        profile, rungs, {res: c.spec for res, c in by_res.items()},
        description=f"per-title ladder for {os.path.basename(source.path)} from profile {profile.name} "
        f"({label} hull of {len(trials_out)} trials)",
    )  # fmt: skip
    efficiency, efficiency_note = fixed_rate_efficiency(window_trials, calibration, calibration_parts)
    if efficiency_note:
        notes.append(efficiency_note)
    fixed = tuple(_predict_fixed(env, r, efficiency) for r in plan.video)
    predicted = _predicted_bd(fixed, rungs)
    saturated = saturated_sizes(trials_out, lowest_allowed_crfs(crf_by_size, codec))
    decision = _decide(env, rungs, plan, window_trials, len(hull.pareto(points)), options, label, saturated, efficiency)
    notes.extend(guard.coverage_notes(
        [(r.kbps, r.predicted_quality) for r in rungs], [(f.kbps, f.predicted_quality) for f in fixed],
        saturation=saturation, min_kbps=min_kbps, metric_label=label, floor_kbps=floor.kbps, floor_bound=floor.bound,
    ))  # fmt: skip
    fixed_est = model.fixed_encode_cpu_s(plan, source.duration_s) if model else math.nan
    cost = Cost(
        cpu_s=children_cpu_s() - cpu0, encode_cpu_s=encode_cpu, metric_cpu_s=metric_cpu, wall_s=time.monotonic() - wall0,
        fixed_encode_estimate_cpu_s=fixed_est, budget_cpu_s=cost_budget(source.duration_s, options) * fixed_est,
    )  # fmt: skip
    return Analysis(
        input=source.path,
        source_size=(source.video.display_width, source.video.display_height),
        base_profile=profile.name,
        codec=codec,
        preset=profile.preset,
        metric=engine.metric,
        metric_ffmpeg=engine.ffmpeg_path,
        measure_size=measure_size,
        every_nth=every_nth,
        windows=windows,
        crfs=tuple(sorted({*crfs, *(c for v in bracketed.values() for c in v)})),
        candidates=cands,
        trials=tuple(trials_out),
        crossovers=tuple(env.crossovers()),
        hull_points=tuple(hull.upper_convex_hull(points)),
        saturation=saturation,
        min_kbps=min_kbps,
        max_kbps=max_kbps,
        rung_count=len(plan.video),
        rungs=tuple(rungs),
        fixed=fixed,
        profile=per_title,
        predicted_bd=predicted,
        cost=cost,
        notes=tuple(notes),
        decision=decision,
        base=profile,
        window_trials=tuple(tuple(w) for w in window_trials),
        shot_cuts=tuple(cut_times),
        floor_kbps=floor.kbps,
    )


def _pooled_trials(
    scores: Mapping[tuple[hull.Resolution, int], Sequence[metrics.QualityScore]],
    bytes_: Mapping[tuple[hull.Resolution, int], int],
    seconds: Mapping[tuple[hull.Resolution, int], float],
) -> list[Trial]:
    """One trial per (size, CRF): bytes and seconds summed over the windows, scores frame-weighted."""
    out = []
    for key, parts in scores.items():
        (w, h), crf = key
        pooled = metrics.combine_scores(parts)
        kbps = bytes_[key] * 8 / seconds[key] / 1000 if seconds[key] > 0 else 0.0
        if kbps <= 0 or not math.isfinite(pooled.mean):
            continue
        out.append(Trial(w, h, crf, kbps, pooled.mean, pooled.frames, seconds[key]))
    out.sort(key=lambda t: (-(t.width * t.height), t.crf))
    return out


@dataclass(frozen=True)
class Floor:
    """The per-title ladder's lowest bitrate and what set it: ``"quality"`` (where the hull reaches the
    quality predicted for the profile's lowest rung), ``"profile"`` (the profile's lowest bitrate: the
    hull gets there no cheaper), ``"absolute"`` (:attr:`AnalysisOptions.floor_kbps` /
    ``floor_fraction``) or ``"spacing"`` (lower would need more rungs than the profile gives, or rungs
    further apart than ``max_ratio``)."""

    kbps: float
    bound: str
    quality: float  # the quality the profile's lowest rung is predicted to have


def absolute_floor(plan: LadderPlan, options: AnalysisOptions) -> float:
    """The least bitrate any per-title rung may have: ``max(floor_kbps, floor_fraction x the profile's lowest)``."""
    return max(options.floor_kbps, options.floor_fraction * min(r.bitrate_kbps for r in plan.video))


def ladder_floor(env: hull.Envelope, plan: LadderPlan, options: AnalysisOptions, saturation: float) -> Floor:
    """Where the per-title ladder's lowest rung sits on ``env`` (see :class:`Floor`).

    Target: the lowest bitrate at which the hull reaches the quality the trials predict for the profile's
    lowest-quality rung, so the per-title ladder covers the fixed ladder's quality range at the low end
    too. Never above the profile's lowest bitrate (the floor only moves down, where the content is
    easy), never below the absolute floor, and never so low that the rungs the profile gives could not
    span the range from the floor to the top at ``max_ratio`` spacing.
    """
    profile_min = float(min(r.bitrate_kbps for r in plan.video))
    max_kbps = float(max(r.bitrate_kbps for r in plan.video))
    target = min(_predict_fixed(env, r).predicted_quality for r in plan.video)
    reach = env.kbps_for_quality(target)
    if reach is None or reach >= profile_min * (1 - 1e-6):
        return Floor(profile_min, "profile", target)
    bounds = [(reach, "quality"), (absolute_floor(plan, options), "absolute")]
    if len(plan.video) > 1:
        sat = env.kbps_for_quality(saturation)
        top = max_kbps if sat is None else min(max_kbps, sat)
        bounds.append((top / options.max_ratio ** (len(plan.video) - 1), "spacing"))
    kbps, bound = max(bounds, key=lambda b: b[0])
    if kbps >= profile_min:
        return Floor(profile_min, "profile", target)
    return Floor(kbps, bound, target)


def _choose(
    env: hull.Envelope, plan: LadderPlan, options: AnalysisOptions, saturation: float, floor: Floor | None = None
) -> tuple[list[hull.ChosenRung], list[str]]:
    """The per-title rungs on ``env`` between the floor (:func:`ladder_floor`) and the plan's highest
    bitrate, and notes on how they were spaced."""
    floor = floor or ladder_floor(env, plan, options, saturation)
    min_kbps = floor.kbps
    max_kbps = max(r.bitrate_kbps for r in plan.video)
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", hull.LadderSpacingWarning)
        chosen = hull.choose_rungs(
            env, min_kbps=min_kbps, max_kbps=max_kbps, rung_count=len(plan.video),
            saturation_quality=saturation, max_ratio=options.max_ratio,
        )  # fmt: skip
    if len(chosen) < 2 <= len(plan.video):
        # Quality saturates at or below the lowest rung: keep a two-rung ladder (the floor and one step
        # above it) rather than a single rendition, so players still have a lower rung to fall back to.
        chosen = hull.choose_rungs(
            env, min_kbps=min_kbps, max_kbps=min(max_kbps, min_kbps * options.max_ratio), rung_count=2,
            saturation_quality=math.inf, max_ratio=options.max_ratio,
        )  # fmt: skip
        notes.append(f"quality saturates at or below the lowest rung ({min_kbps:.0f} kbps): two rungs kept")
    notes.extend(str(w.message) for w in caught if issubclass(w.category, hull.LadderSpacingWarning))
    return chosen, notes


def _decide(
    env: hull.Envelope,
    rungs: Sequence[hull.ChosenRung],
    plan: LadderPlan,
    window_trials: Sequence[Sequence[Trial]],
    usable_points: int,
    options: AnalysisOptions,
    label: str,
    saturated: frozenset[hull.Resolution] = frozenset(),
    efficiency: float = 1.0,
) -> guard.Decision:
    window_envs = [_window_envelope(w) for w in window_trials if w]  # a window past the end gave no trials
    return guard.decide(
        pooled=env,
        per_title=[(r.resolution, r.kbps) for r in rungs],
        fixed=[((r.width, r.height), float(r.bitrate_kbps)) for r in plan.video],
        windows=window_envs,
        usable_points=usable_points,
        bd=_bd_pair,
        metric_label=label,
        options=options.guard_options,
        saturated=saturated,
        fixed_rate_efficiency=efficiency,
    )  # fmt: skip


def _final_rungs(
    env: hull.Envelope, chosen: Sequence[hull.ChosenRung], floor: Floor, plan: LadderPlan, options: AnalysisOptions, codec: str
) -> list[hull.ChosenRung]:
    """The chosen rungs as they are encoded: bitrates rounded, then (capped CRF) each moved to the whole
    CRF its size's trials measured nearest to it: the lowest may then land a little below the floor (the
    nearest CRF, not the next one up, so the ladder keeps reaching as low in quality), never below the
    absolute floor."""
    max_kbps = max(r.bitrate_kbps for r in plan.video)
    rungs = ladder.round_rungs(env, chosen, min_kbps=floor.kbps, max_kbps=max_kbps)
    if options.rate_control != "crf":
        return rungs
    crf_range = getattr(codecs.get(codec), "crf_range", (0, 63))
    return ladder.capped_crf_rungs(env, rungs, crf_range=crf_range, min_kbps=absolute_floor(plan, options), max_kbps=max_kbps)


def _first_pass_decision(
    trials: Sequence[Trial], plan: LadderPlan, window_trials: Sequence[Sequence[Trial]], options: AnalysisOptions, label: str,
    saturation: float, codec: str,
    saturated: frozenset[hull.Resolution] = frozenset(),
    efficiency: float = 1.0,
) -> guard.Decision:
    """What the guard decides from the first pass of trials alone."""
    points = [t.point() for t in trials]
    try:
        env = hull.envelope(points)
    except ValueError:
        return guard.Decision(False, ("no usable rate/quality curve",))
    floor = ladder_floor(env, plan, options, saturation)
    chosen, _ = _choose(env, plan, options, saturation, floor)
    rungs = _final_rungs(env, chosen, floor, plan, options, codec)
    return _decide(env, rungs, plan, window_trials, len(hull.pareto(points)), options, label, saturated, efficiency)


def calibration_rung(plan: LadderPlan, size: hull.Resolution) -> PlannedRung | None:
    """The profile rung the rate-control calibration encodes: the lowest-bitrate bitrate-targeted (vbr)
    rung at ``size`` (the measuring size, whose CRF trials span the highest bitrates), if any."""
    mine = [r for r in plan.video if (r.width, r.height) == size and r.crf is None and r.rate_control == "vbr"]
    return min(mine, key=lambda r: r.bitrate_kbps) if mine else None


def fixed_rate_efficiency(
    window_trials: Sequence[Sequence[Trial]],
    rung: PlannedRung | None,
    parts: Sequence[tuple[int, int, float, metrics.QualityScore]],
) -> tuple[float, str | None]:
    """What the fixed ladder's bitrate targets are worth in CRF bits (:func:`guard.rate_efficiency`), with
    a note saying so: the calibration encode of ``rung`` on each window (``parts``: window number, bytes,
    seconds, score) against that window's own CRF trials of the same size. The guard takes the window
    where the target wastes least, as it asks every window to show a saving, and credits half of that
    waste (:func:`guard.credited_efficiency`); 1.0 when no window can say (no calibration, or its
    quality outside its window's trials)."""
    if rung is None:
        return 1.0, None
    size = (rung.width, rung.height)
    measured: list[tuple[float, float, float]] = []  # (efficiency, kbps, quality) per window
    for n, nbytes, seconds, score in parts:
        mine = [t.point() for t in window_trials[n - 1] if t.resolution == size]
        if seconds <= 0 or nbytes <= 0 or not math.isfinite(score.mean) or not mine:
            continue
        kbps = nbytes * 8 / seconds / 1000
        efficiency = guard.rate_efficiency(hull.ResolutionCurve.from_points(mine), kbps, score.mean)
        if efficiency is not None:
            measured.append((efficiency, kbps, score.mean))
    where = f"the profile's {rung.width}x{rung.height} rung encoded as the fixed ladder encodes it ({rung.bitrate_kbps} kbps target)"
    if not measured:
        return 1.0, (f"{where} measured outside its size's CRF trials on every window: the fixed rungs are predicted "
                     "from the CRF curves as they are") if parts else None  # fmt: skip
    best = max(measured)
    credited = guard.credited_efficiency(best[0])
    each = ", ".join(f"{e:.2f}" for e, _, _ in measured)
    return credited, (f"{where} is worth {each} of its bits in CRF bits on the {len(measured)} window(s) that could say "
                      f"(where it wastes least: {best[2]:.2f} at {best[1]:.0f} kbps, which the CRF trials reach at "
                      f"{best[1] * best[0]:.0f} kbps); crediting half the waste, the fixed rungs are predicted at "
                      f"{credited:.2f}x their bitrate")  # fmt: skip


def bracket_crfs(
    trials: Sequence[Trial],
    fixed: Sequence[PlannedRung],
    crfs: Mapping[hull.Resolution, Sequence[int]],
    codec: str,
    *,
    saturation: float,
    headroom: float = 1.15,
    max_step: int = BRACKET_MAX_STEP,
) -> dict[hull.Resolution, tuple[int, ...]]:
    """One more CRF per size whose profile rungs lie above the size's highest trial bitrate.

    Only rungs whose quality matters are bracketed: those the pooled curves put below ``saturation`` + 3
    (above it, the per-title ladder stops anyway). The CRF is aimed at ``headroom`` times the size's
    highest such rung, from the size's own rate/CRF slope (ln kbps linear in CRF between its two lowest
    CRFs), at most ``max_step`` below its lowest CRF, within the encoder's CRF range. Sizes measured at
    one CRF only, or aimed at a CRF already trialled, are left out.
    """
    lo, _hi = getattr(codecs.get(codec), "crf_range", (0, 63))
    points = [t.point() for t in trials]
    try:
        env = hull.envelope(points)
    except ValueError:
        return {}
    by_size: dict[hull.Resolution, list[Trial]] = {}
    for t in trials:
        by_size.setdefault(t.resolution, []).append(t)
    out: dict[hull.Resolution, tuple[int, ...]] = {}
    for res, mine in by_size.items():
        pts = sorted(mine, key=lambda t: t.crf)
        if len(pts) < 2:
            continue
        top_kbps = max(t.kbps for t in pts)
        above = [r.bitrate_kbps for r in fixed if (r.width, r.height) == res and r.bitrate_kbps > top_kbps]
        if not above:
            continue
        guess = guard.predict(env, [(res, float(k)) for k in above], generous=True) or []
        if guess and min(q for _, q in guess) >= saturation + 3.0:
            continue
        a, b = pts[0], pts[1]
        if b.kbps >= a.kbps or b.crf <= a.crf:
            continue
        slope = (math.log(a.kbps) - math.log(b.kbps)) / (b.crf - a.crf)  # ln kbps per CRF step
        need = math.log(headroom * max(above) / a.kbps) / slope
        crf = max(lo, a.crf - min(max_step, math.ceil(need)))
        if crf < a.crf and crf not in crfs.get(res, ()):
            out[res] = (crf,)
    return out


def lowest_allowed_crfs(
    crfs: Mapping[hull.Resolution, Sequence[int]], codec: str, max_step: int = BRACKET_MAX_STEP
) -> dict[hull.Resolution, int]:
    """The lowest CRF the search allows at each size: ``max_step`` below its lowest first-pass CRF
    (:func:`bracket_crfs` goes no further), within the encoder's CRF range."""
    lo, _hi = getattr(codecs.get(codec), "crf_range", (0, 63))
    return {res: max(lo, min(c) - max_step) for res, c in crfs.items() if c}


def saturated_sizes(trials: Sequence[Trial], lowest: Mapping[hull.Resolution, int]) -> frozenset[hull.Resolution]:
    """The sizes some trial measured at the lowest CRF the search allows (``lowest``): their quality has
    saturated, so the guard predicts their rungs above the trials from their own curve."""
    return frozenset(t.resolution for t in trials if t.resolution in lowest and t.crf <= lowest[t.resolution])


@dataclass(frozen=True)
class CostModel:
    """What trial work costs, measured on the first pass (CPU-s of the child processes).

    Encoding is priced per encoded pixel-frame. A pass also decodes its windows and writes the reference
    at the measuring size: that counts as ``reference_pixels_per_s`` more pixel-frames per second of
    windows (the final encode decodes the title too). Scoring is priced per trial (every trial is scored
    at the same measuring size on every window).
    """

    encode_cpu_per_pixel_frame: float
    metric_cpu_per_trial: float
    reference_pixels_per_s: float
    window_s: float  # seconds of title one pass covers (all windows)

    @classmethod
    def measured(
        cls, *, encode_cpu_s: float, metric_cpu_s: float, trial_pixel_frames: float, trials: int,
        reference_pixels_per_s: float, window_s: float,
    ) -> CostModel:  # fmt: skip
        px = trial_pixel_frames + reference_pixels_per_s * window_s
        return cls(encode_cpu_s / px if px > 0 else 0.0, metric_cpu_s / trials if trials else 0.0, reference_pixels_per_s, window_s)

    def pass_cpu_s(self, trial_pixel_frames: float, trials: int) -> float:
        """One more pass over every window: ``trials`` trial encodes of ``trial_pixel_frames`` in all."""
        px = trial_pixel_frames + self.reference_pixels_per_s * self.window_s
        return self.encode_cpu_per_pixel_frame * px + self.metric_cpu_per_trial * trials

    def fixed_encode_cpu_s(self, plan: LadderPlan, duration_s: float) -> float:
        """One encode of the plan's video rungs over the whole title, at the trials' cost per pixel-frame.

        An estimate: it leaves out the final encode's frame threading, audio and packaging, and prices
        decoding as the trials' passes do. On the benchmark's real clips it came to 0.72x-1.19x the
        measured fixed-ladder encode (docs/BENCHMARKS.md).
        """
        px_per_s = sum(r.width * r.height * float(r.fps) for r in plan.video) + self.reference_pixels_per_s
        return self.encode_cpu_per_pixel_frame * px_per_s * duration_s


def cost_budget(duration_s: float, options: AnalysisOptions) -> float:
    """The analysis' budget in fixed-ladder encodes: ``max_cost`` for long titles, ``max_cost_short`` below."""
    return options.max_cost if duration_s >= options.long_title_s else options.max_cost_short


def budget_second_pass(
    bracketed: Mapping[hull.Resolution, tuple[int, ...]],
    pixel_frames: Mapping[hull.Resolution, float],
    model: CostModel,
    *,
    spent_cpu_s: float,
    fixed_cpu_s: float,
    max_ratio: float,
    margin: float = 1.0,
) -> tuple[dict[hull.Resolution, tuple[int, ...]], str | None]:
    """The part of the second pass the budget allows, and a note when that is not all of it.

    ``pixel_frames`` is what one trial at each size encodes over all windows. The analysis may spend
    ``max_ratio`` x ``fixed_cpu_s`` in all, and plans within ``margin`` of that (``fixed_cpu_s`` is an
    estimate); ``spent_cpu_s`` is gone. The whole pass runs when it fits; otherwise the sizes are added
    cheapest first while the pass still fits (a smaller pass measures fewer rungs, each on every window);
    when not even one fits, the pass is skipped.
    """
    budget = max_ratio * fixed_cpu_s * margin
    left = budget - spent_cpu_s

    def cost(sizes: Sequence[hull.Resolution]) -> float:
        return model.pass_cpu_s(sum(pixel_frames[r] * len(bracketed[r]) for r in sizes), sum(len(bracketed[r]) for r in sizes))

    def names(sizes: Sequence[hull.Resolution]) -> str:
        return ", ".join(f"{w}x{h}" for w, h in sizes)

    everything = list(bracketed)
    whole = cost(everything)
    if not everything or whole <= left:
        return dict(bracketed), None
    over = f"the {max_ratio:g}x analysis budget"
    share = "" if margin >= 1 else f"{margin:.0%} of "
    sums = (f"about {whole:.1f} CPU-s on top of the {spent_cpu_s:.1f} spent; budget {budget:.1f} CPU-s = {share}{max_ratio:g} x one "
            f"fixed-ladder encode, estimated at {fixed_cpu_s:.1f} CPU-s")  # fmt: skip
    kept: list[hull.Resolution] = []
    for res in sorted(everything, key=lambda r: pixel_frames[r] * len(bracketed[r])):
        if cost([*kept, res]) <= left:
            kept.append(res)
    if not kept:
        return {}, (f"second pass skipped: measuring the rungs above the trials of {names(everything)} would exceed {over} "
                    f"({sums}); the guard decides on the first pass")  # fmt: skip
    return {r: bracketed[r] for r in kept}, (
        f"second pass shrunk to {names(kept)} ({cost(kept):.1f} CPU-s): all of {names(everything)} would exceed {over} ({sums})"
    )


def _window_envelope(trials: Sequence[Trial]) -> hull.Envelope | None:
    try:
        return hull.envelope([t.point() for t in trials])
    except ValueError:
        return None


def _bd_pair(anchor: guard.Ladder, test: guard.Ladder) -> tuple[float, float]:
    """(BD-rate %, overlap) of two predicted ladders; NaN when it cannot be computed."""
    from abrpipe.pertitle import bdrate

    a, _ = monotone(anchor)
    t, _ = monotone(test)
    if len(a) < 2 or len(t) < 2:
        return math.nan, 0.0
    try:
        res = bdrate.bd_rate([k for k, _ in a], [q for _, q in a], [k for k, _ in t], [q for _, q in t], strict=False)
    except (bdrate.BdRateError, bdrate.BdRateUnavailableError):
        return math.nan, 0.0
    return res.percent, res.overlap


def _predict_fixed(env: hull.Envelope, r: PlannedRung, efficiency: float = 1.0) -> FixedRung:
    """A profile rung's predicted quality: what its size's CRF curve gives at its bitrate x ``efficiency``
    (what the bitrate target is worth in CRF bits, :func:`fixed_rate_efficiency`)."""
    worth = r.bitrate_kbps * efficiency
    try:
        env.curve((r.width, r.height))
    except KeyError:  # a size no trial measured (cannot happen with candidates from the same plan)
        _, best, extrapolated = env.best_at(worth, max_resolution=(r.width, r.height))
        return FixedRung(r.id, r.width, r.height, r.bitrate_kbps, best, extrapolated)
    q, extrapolated = predict_on_curve(env, (r.width, r.height), worth)
    return FixedRung(r.id, r.width, r.height, r.bitrate_kbps, q, extrapolated)


def predict_on_curve(env: hull.Envelope, resolution: hull.Resolution, kbps: float) -> tuple[float, bool]:
    """Quality of ``resolution`` at ``kbps``: interpolated on its curve, or extrapolated (flag True).

    Below the curve's lowest trial: linear in ln(kbps) along the first segment. Above its highest trial
    (the diagonal CRF search measures small sizes only at high CRFs): linear in ln(kbps) along the last
    segment, but never above the best any size reaches at that bitrate and never below the highest trial.
    """
    curve = env.curve(resolution)
    q = curve.quality_at(kbps)
    if q is not None and kbps <= curve.max_kbps:
        return q, False
    if kbps < curve.min_kbps:
        return curve.extrapolate_below(kbps), True
    last = curve.points[-1]
    if len(curve.points) < 2:
        return last.quality, True
    prev = curve.points[-2]
    slope = (last.quality - prev.quality) / (math.log(last.kbps) - math.log(prev.kbps))
    ext = last.quality + slope * (math.log(kbps) - math.log(last.kbps))
    return max(last.quality, min(ext, env.quality_at(kbps))), True


def monotone(points: Sequence[tuple[float, float]]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Split (kbps, quality) points into a strictly rising curve and the points it had to drop
    (a rung that costs more bits than another but scores no better)."""
    kept: list[tuple[float, float]] = []
    dropped: list[tuple[float, float]] = []
    for k, q in sorted(points, key=lambda p: (p[0], -p[1])):
        if not kept or (q > kept[-1][1] and k > kept[-1][0]):
            kept.append((k, q))
        else:
            dropped.append((k, q))
    return kept, dropped


def _predicted_bd(fixed: Sequence[FixedRung], rungs: Sequence[hull.ChosenRung]) -> dict[str, Any] | None:
    """BD-rate of the per-title ladder vs the fixed one, both as predicted by the trial curves."""
    from abrpipe.pertitle import bdrate

    a, _ = monotone([(f.kbps, f.predicted_quality) for f in fixed])
    t, _ = monotone([(r.kbps, r.predicted_quality) for r in rungs])
    if len(a) < 2 or len(t) < 2:
        return None
    try:
        res = bdrate.bd_rate([k for k, _ in a], [q for _, q in a], [k for k, _ in t], [q for _, q in t], strict=False)
    except (bdrate.BdRateError, bdrate.BdRateUnavailableError):
        return None
    return bd_dict(res)


def bd_dict(res: Any) -> dict[str, Any]:
    return {
        "percent": None if math.isnan(res.percent) else round(res.percent, 2),
        "overlap": round(res.overlap, 3),
        "method": res.method,
        "valid": res.valid,
    }
