"""Encode as work units: plan_work -> execute -> assemble.

- `plan_work(source, plan, chunking)` (pure) cuts the title into units on the segment grid. Each
  video unit covers whole segments, every rung at once, with a pre-roll (whole segments before it)
  and a tail (whole GOPs after it) that are encoded and thrown away: the encoder's rate control
  and look-ahead then see what a one-pass encode sees, and the joins cannot be told from it. The
  last unit runs to the end of the source. Audio is one unit for the whole title. A title that is
  not chunked is one "title" unit (video and audio in one process), the default for short titles.
- `execute(task)` runs one unit (one ffmpeg process, one decode, every rung) into an attempt
  folder, renumbers its segments to their global numbers, drops the pre-roll and tail, checks the
  boxes and frame counts, writes `unit.json` (fingerprint + checksums) and renames the folder into
  place. A unit is finished exactly when its folder exists.
- `assemble(...)` byte-compares every rung's init across units, checks that decode times and
  fragment numbers run on without a gap, links the segments into the work area and returns the
  Title that package/validate/publish consume unchanged.

Finished units are kept beside the output (`OUT.units/`) until the ladder is published, so a run
that is killed resumes: every finished unit whose fingerprint (source identity, the unit's exact
ffmpeg command, which holds the profile and the range, and the ffmpeg build) and checksums still
match is reused; anything else is encoded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

from abrpipe import __version__, layout, mp4, package, runner, thumbnails, tools
from abrpipe.encode import require_encoders, unit_commands, unit_rendition_ids, unit_streams
from abrpipe.errors import AbrpipeError, DependencyError, EncodeError, Interrupted, OutputError
from abrpipe.model import Chunking, LadderPlan, Title, WorkUnit
from abrpipe.probe import SourceMedia
from abrpipe.runner import Progress

# The default chunk length, and the shortest title that is cut into chunks by default. With a
# one-segment pre-roll (6 s with the built-in profiles) and a one-GOP tail (2 s), 180-s chunks
# encode 4.4 % more frames than the title has; titles under 6 minutes stay one unit.
DEFAULT_CHUNK_S = 180.0
AUTO_MIN_DURATION_S = 360.0


# Containers with an index, where input seeking lands on the exact frame (MP4/MOV, Matroska/WebM).
# Elsewhere (MPEG-TS, AVI...) an input seek starts decoding mid-GOP: such a title stays one unit.
SEEKABLE_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm"})


def seekable(source: SourceMedia) -> bool:
    return bool(set(source.format_name.split(",")) & SEEKABLE_FORMATS)


def chunkable(source: SourceMedia, plan: LadderPlan) -> str | None:
    """None when the title can be cut into units, else why it stays one unit."""
    if not plan.video or plan.base_fps is None:
        return "audio-only ladders are one unit"
    if not seekable(source):
        return f"{source.format_name} has no index: seeking into it is not frame-exact"
    if plan.thumbnails is not None:
        return "thumbnails are drawn from the decode of the whole title"
    if any(r.rate_control == "2pass" for r in plan.video):
        # x264 derives the PPS's initial QP from the first pass of each unit: the units' init
        # segments would differ, and one rendition has one init segment.
        return "two-pass rungs give every unit its own init segment"
    return None


def resolve_chunking(chunk_s: float | None, duration_s: float) -> Chunking:
    """chunk_s None: automatic (one unit below AUTO_MIN_DURATION_S); 0: never chunk."""
    if chunk_s is None:
        return Chunking(DEFAULT_CHUNK_S if duration_s >= AUTO_MIN_DURATION_S else None)
    return Chunking(chunk_s if chunk_s > 0 else None)


# ---------------------------------------------------------------------------------------------
# plan_work (pure)


def plan_work(source: SourceMedia, plan: LadderPlan, chunking: Chunking) -> list[WorkUnit]:
    """The units of one title: whole segments per unit, a pre-roll and a tail around each."""
    fps = plan.base_fps
    whole = [WorkUnit(0, "title", fps=fps)]
    if fps is None or not chunking.chunk_s or chunkable(source, plan) is not None:
        return whole
    seg_frames = plan.gop_frames * plan.segment_gops
    total_frames = int(Fraction(source.duration_s).limit_denominator(1_000_000) * fps)
    per_unit = max(1, round(chunking.chunk_s / plan.segment_s))
    tail = chunking.tail_gops * plan.gop_frames
    units: list[WorkUnit] = []
    first_seg = 0  # 0-based
    # A unit is bounded only if the source surely continues past its tail by a whole segment;
    # the last unit runs to the end of the source, whatever its exact length.
    while (first_seg + per_unit + 1) * seg_frames + tail <= total_frames:
        preroll = min(chunking.preroll_segments, first_seg) * seg_frames
        units.append(WorkUnit(len(units), "video", first_seg * seg_frames, (first_seg + per_unit) * seg_frames,
                              preroll, tail, first_seg + 1, per_unit, fps))
        first_seg += per_unit
    if not units:
        return whole
    preroll = min(chunking.preroll_segments, first_seg) * seg_frames
    units.append(WorkUnit(len(units), "video", first_seg * seg_frames, None, preroll, 0, first_seg + 1, None, fps))
    if plan.audio:
        units.append(WorkUnit(len(units), "audio", fps=fps))
    return units


# ---------------------------------------------------------------------------------------------
# Fingerprints


def source_identity(source: SourceMedia) -> str:
    """Size, modification time and the first and last MiB: cheap, and changes when the file does.
    An http(s) input (--allow-references) is named by its URL and what the probe read of it."""
    if source.is_url:
        return hashlib.sha256(f"{source.path}:{source.size_bytes}:{source.duration_s}".encode()).hexdigest()
    path = source.path
    st = os.stat(path)
    digest = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(1 << 20))
        if st.st_size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            digest.update(fh.read())
    return digest.hexdigest()


def unit_fingerprint(source: SourceMedia, plan: LadderPlan, unit: WorkUnit, source_id: str, build: str) -> str:
    """What a finished unit was made from: the source, the unit's exact commands (profile, range,
    options; not the executable's path) and the ffmpeg build."""
    argvs = [c.argv[1:] for c in unit_commands(source, plan, unit, ".")]
    data = {"source": source_id, "argv": argvs, "build": build, "abrpipe": __version__}
    return "sha256:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# execute (runs wherever the executor puts it: this process, a thread, a Dask worker)


@dataclass(frozen=True)
class UnitTask:
    """Everything one unit needs, as values: it crosses process and machine boundaries."""

    source: SourceMedia
    plan: LadderPlan
    unit: WorkUnit
    units_root: str
    fingerprint: str
    ffmpeg_build: str
    token: str  # this run of the job: names attempt folders and the cancel flag
    log_dir: str | None = None


@dataclass(frozen=True)
class UnitResult:
    unit: WorkUnit
    worker: str
    attempts: int
    cpu_s: float
    wall_s: float
    frames: dict[str, int]  # video rendition id -> frames kept
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit.name,
            "kind": self.unit.kind,
            "start_s": round(self.unit.start_s, 6),
            "end_s": None if self.unit.end_s is None else round(self.unit.end_s, 6),
            "first_segment": self.unit.first_segment,
            "worker": self.worker,
            "attempts": self.attempts,
            "cpu_s": round(self.cpu_s, 3),
            "wall_s": round(self.wall_s, 3),
            "frames": self.frames,
            "reused": self.reused,
        }


@dataclass(frozen=True)
class UnitOutcome:
    """What comes back from a worker: a result, or an error as values (exceptions with extra
    fields do not survive pickling intact)."""

    result: UnitResult | None = None
    error_type: str = ""
    message: str = ""
    hint: str | None = None
    stderr_tail: str = ""


def cancel_flag(units_root: str, token: str) -> str:
    return os.path.join(units_root, f"cancel-{token}")


def _worker_name() -> str:
    """The dask worker running this unit, or this host and process. A dask worker has imported
    distributed already: a local unit must not import it (with numpy, tornado...) only to ask."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            return str(distributed.get_worker().address)
        except (AttributeError, ValueError):  # not on a worker
            pass
    return f"{socket.gethostname()}:{os.getpid()}"


def run_unit(task: UnitTask, on_frames: Callable[[int], None] | None = None) -> UnitOutcome:
    """execute() with its failures as values: the function executors ship."""
    if on_frames:
        on_frames(0)  # started
    try:
        return UnitOutcome(execute(task, on_frames))
    except AbrpipeError as exc:
        return UnitOutcome(None, type(exc).__name__, exc.message, exc.hint, getattr(exc, "stderr_tail", "") or "")


def execute(task: UnitTask, on_frames: Callable[[int], None] | None = None) -> UnitResult:
    """Encode one unit into units_root/<unit>/ (see the module docstring)."""
    unit, plan = task.unit, task.plan
    worker = _worker_name()
    build = tools.ffmpeg_build()
    if build != task.ffmpeg_build:
        raise DependencyError(
            f"worker {worker}: its ffmpeg build differs from the one this job started with "
            f"({build} vs {task.ffmpeg_build}); units of different builds are never stitched together",
            hint="install the same ffmpeg build on every worker",
        )
    flag = cancel_flag(task.units_root, task.token)
    os.makedirs(task.units_root, exist_ok=True)
    attempts = _count_attempt(task.units_root, unit)
    attempt = layout.unit_attempt_dir(task.units_root, unit.name, f"{task.token}-{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    cpu_s = 0.0
    try:
        commands = unit_commands(task.source, plan, unit, attempt)
        for d in commands[-1].dirs:
            os.makedirs(os.path.join(attempt, d))
        for command in commands:
            def progress(p: Progress, label: str = command.label) -> None:
                if os.path.exists(flag):
                    raise Interrupted(f"{unit.describe()}: stopped, the job was cancelled")
                with contextlib.suppress(OSError):
                    os.utime(attempt)  # a heartbeat: this attempt is alive (see _cancel)
                if on_frames and p.frame is not None and label == "encode":
                    on_frames(p.frame)

            if os.path.exists(flag):
                raise Interrupted(f"{unit.describe()}: stopped, the job was cancelled")
            log_path = os.path.join(task.log_dir, f"ffmpeg-{unit.name}-{command.label.replace(' ', '-')}.log") if task.log_dir else None
            try:
                cpu_s += runner.run(command.argv, on_progress=progress, log_path=log_path, cwd=command.cwd)
            except EncodeError as exc:
                exc.message = f"{unit.describe()}: {exc.message}"
                raise
        frames = _finish_unit(task, attempt)
        record = {
            "fingerprint": task.fingerprint,
            "unit": asdict(unit) | {"fps": str(unit.fps) if unit.fps else None},
            "frames": frames,
            "files": _checksums(attempt),
            "worker": worker,
            "cpu_s": round(cpu_s, 3),
            "wall_s": round(time.monotonic() - started, 3),
        }
        with open(os.path.join(attempt, layout.UNIT_RECORD), "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=1)
        final = layout.unit_dir(task.units_root, unit.name)
        if os.path.isdir(final):  # a finished copy from an attempt that was thought lost
            shutil.rmtree(final, ignore_errors=True)
        os.rename(attempt, final)
    finally:
        if os.path.isdir(attempt):
            shutil.rmtree(attempt, ignore_errors=True)
    return UnitResult(unit, worker, attempts, cpu_s, time.monotonic() - started, frames)


def _count_attempt(units_root: str, unit: WorkUnit) -> int:
    path = os.path.join(units_root, f"{unit.name}.attempts")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{time.time():.3f} {_worker_name()}\n")
    with open(path, encoding="utf-8") as fh:
        return sum(1 for _ in fh)


def _finish_unit(task: UnitTask, attempt: str) -> dict[str, int]:
    """streamN/ -> <rendition id>/, local segment numbers -> global ones, pre-roll and tail dropped;
    returns the frames kept per video rendition, checked against the plan."""
    unit, plan = task.unit, task.plan
    seg_frames = plan.gop_frames * plan.segment_gops
    preroll_segments = unit.preroll_frames // seg_frames if seg_frames else 0
    for manifest in (layout.MUXER_MANIFEST, layout.AUDIO_MUXER_MANIFEST):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(attempt, manifest))
    for name in os.listdir(attempt):
        if name.startswith(tuple(layout.pass_log_prefix(r.id) for r in plan.video)):
            os.remove(os.path.join(attempt, name))
    frames: dict[str, int] = {}
    for rendition_id, stream in unit_streams(plan, unit):
        src = os.path.join(attempt, stream)
        dst = os.path.join(attempt, rendition_id)
        os.rename(src, dst)
        if unit.kind != "video":
            continue
        numbers = sorted(x for x in (layout.segment_number(f) for f in os.listdir(dst)) if x is not None)
        kept = 0
        for local in numbers:
            number = unit.first_segment - preroll_segments + local - 1
            keep = number >= unit.first_segment and (unit.segment_count is None or number < unit.first_segment + unit.segment_count)
            path = os.path.join(dst, layout.segment_name(local))
            if keep:
                os.rename(path, os.path.join(dst, f"{layout.segment_name(number)}.tmp"))
                kept += 1
            else:
                os.remove(path)
        for name in os.listdir(dst):
            if name.endswith(".tmp"):
                os.rename(os.path.join(dst, name), os.path.join(dst, name[:-4]))
        if unit.segment_count is not None and kept != unit.segment_count:
            raise EncodeError(f"{unit.describe()}: {rendition_id} has {kept} segments, expected {unit.segment_count}",
                              hint="the source may be shorter than its header says")
    for rung in plan.video if unit.kind in ("title", "video") else ():
        try:
            count = _frames(attempt, rung.id)
        except (OSError, mp4.Mp4Error) as exc:
            raise EncodeError(f"{unit.describe()}: {rung.id}: the encoder's output cannot be read ({exc})") from None
        if unit.segment_count is not None:
            expected = unit.segment_count * seg_frames // rung.fps_divisor
            if count != expected:
                raise EncodeError(f"{unit.describe()}: {rung.id} has {count} frames, expected {expected}")
        frames[rung.id] = count
    return frames


def _frames(unit_path: str, rendition_id: str) -> int:
    rdir = os.path.join(unit_path, rendition_id)
    track = mp4.read_init(os.path.join(rdir, layout.INIT_NAME))
    return sum(
        f.sample_count
        for name in sorted(os.listdir(rdir)) if layout.is_segment(name)
        for f in mp4.read_segment(os.path.join(rdir, name), track).fragments
    )


def _checksums(path: str) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            if name == layout.UNIT_RECORD:
                continue
            full = os.path.join(root, name)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = hashlib.file_digest(fh, "sha256").hexdigest()
    return dict(sorted(out.items()))


def check_finished(task: UnitTask) -> tuple[UnitResult | None, str]:
    """A finished unit from an earlier run, if it is intact and made from the same things.
    Returns (result, "") or (None, why it is redone); a bad unit folder is removed."""
    final = layout.unit_dir(task.units_root, task.unit.name)
    record_path = os.path.join(final, layout.UNIT_RECORD)
    if not os.path.isdir(final):
        return None, ""
    why = ""
    try:
        with open(record_path, encoding="utf-8") as fh:
            record = json.load(fh)
        if record.get("fingerprint") != task.fingerprint:
            why = "made from a different source, profile, range or ffmpeg build"
        elif _checksums(final) != record.get("files"):
            why = "its files changed since it was finished (checksum mismatch)"
        else:
            for rendition_id, count in record.get("frames", {}).items():
                if _frames(final, rendition_id) != count:
                    why = f"{rendition_id} frame count differs from its record"
                    break
            for rendition_id in unit_rendition_ids(task.plan, task.unit):
                rdir = os.path.join(final, rendition_id)
                track = mp4.read_init(os.path.join(rdir, layout.INIT_NAME))
                for name in os.listdir(rdir):
                    if layout.is_segment(name):
                        mp4.read_segment(os.path.join(rdir, name), track)
    except (OSError, ValueError, KeyError, mp4.Mp4Error) as exc:
        why = f"unreadable ({exc})"
    if why:
        shutil.rmtree(final, ignore_errors=True)
        return None, why
    return UnitResult(task.unit, record.get("worker", ""), 0, float(record.get("cpu_s", 0.0)),
                      float(record.get("wall_s", 0.0)), dict(record.get("frames", {})), reused=True), ""


# ---------------------------------------------------------------------------------------------
# assemble


def assemble(plan: LadderPlan, units: list[WorkUnit], units_root: str, work_dir: str) -> Title:
    """Verify the finished units and stitch them into work_dir/<rendition id>/; return the Title."""
    for rendition_id in [r.id for r in plan.video] + [a.id for a in plan.audio]:
        owners = [u for u in units if rendition_id in unit_rendition_ids(plan, u)]
        rdir = layout.rendition_dir(work_dir, rendition_id)
        os.makedirs(rdir, exist_ok=True)
        init: bytes | None = None
        for u in owners:
            src = os.path.join(layout.unit_dir(units_root, u.name), rendition_id)
            with open(os.path.join(src, layout.INIT_NAME), "rb") as fh:
                data = fh.read()
            if init is None:
                init = data
                _link(os.path.join(src, layout.INIT_NAME), os.path.join(rdir, layout.INIT_NAME))
            elif data != init:
                raise EncodeError(f"{u.describe()}: the {rendition_id} init segment differs from the first unit's "
                                  "(different encoder settings or ffmpeg build): the units cannot be stitched")
            for name in sorted(os.listdir(src)):
                if layout.is_segment(name):
                    dst = os.path.join(rdir, name)
                    if os.path.exists(dst):
                        raise EncodeError(f"{u.describe()}: segment {rendition_id}/{name} was also written by another unit")
                    _link(os.path.join(src, name), dst)
        _check_continuity(rdir, rendition_id)
    for u in units:  # the thumbnail sheets of a whole-title unit (see chunkable)
        sheets = os.path.join(layout.unit_dir(units_root, u.name), thumbnails.THUMBNAIL_DIR)
        if u.kind == "title" and os.path.isdir(sheets):
            os.makedirs(os.path.join(work_dir, thumbnails.THUMBNAIL_DIR), exist_ok=True)
            for name in sorted(os.listdir(sheets)):
                _link(os.path.join(sheets, name), os.path.join(work_dir, thumbnails.THUMBNAIL_DIR, name))
    title = package.read_title(work_dir, plan)
    _check_aligned(title)
    return title


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _check_continuity(rdir: str, rendition_id: str) -> None:
    """Segments numbered 1..N, each starting where the previous ended (tfdt + durations), with
    fragment sequence numbers (mfhd) increasing across the joins."""
    track = mp4.read_init(os.path.join(rdir, layout.INIT_NAME))
    names = sorted(n for n in os.listdir(rdir) if layout.is_segment(n))
    numbers = [layout.segment_number(n) for n in names]
    if numbers != list(range(1, len(names) + 1)):
        raise EncodeError(f"{rendition_id}: segment numbers are not 1..{len(names)} after stitching: a unit is missing")
    next_time: int | None = None
    last_seq = 0
    for name in names:
        seg = mp4.read_segment(os.path.join(rdir, name), track)
        for f in seg.fragments:
            if next_time is not None and f.base_decode_time != next_time:
                raise EncodeError(f"{rendition_id}/{name}: starts at {f.base_decode_time}, expected {next_time} "
                                  f"(timescale {track.timescale}): a gap or overlap at a unit join")
            if f.sequence_number <= last_seq:
                raise EncodeError(f"{rendition_id}/{name}: fragment number {f.sequence_number} after {last_seq}")
            next_time = f.base_decode_time + f.duration
            last_seq = f.sequence_number


def _check_aligned(title: Title) -> None:
    """Every video rung's segments start at the same times (to the millisecond)."""
    timelines = {r.id: [round(s.start / r.timescale, 3) for s in r.segments] for r in title.video}
    first = next(iter(timelines.values()), None)
    for rid, times in timelines.items():
        if times != first:
            raise EncodeError(f"{rid}: segment times differ from the other rungs after stitching")


# ---------------------------------------------------------------------------------------------
# Executors: where units run


class LocalPool:
    """Units on a pool of threads in this process; each unit's work is its ffmpeg child process,
    which runner stops on Ctrl-C/SIGTERM and which dies with us (PR_SET_PDEATHSIG)."""

    reports_frames = True

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.description = f"local ({self.workers} at a time)"
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="abrpipe-unit")

    def submit(self, task: UnitTask, on_frames: Callable[[int], None] | None = None):
        return self._pool.submit(run_unit, task, on_frames)

    def cancel(self) -> None:
        runner.stop_all()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def dask_client(address: str):
    """One client per scheduler address in this process (a batch's jobs share it)."""
    try:
        from distributed import Client
    except ImportError:
        raise DependencyError(
            "--scheduler needs dask.distributed, which is not installed",
            hint="pip install 'abrpipe[distributed]' (on this machine and every worker), or run without --scheduler",
        ) from None
    with _clients_lock:
        client = _clients.get(address)
        if client is None or client.status not in ("running", "connecting"):
            try:
                client = Client(address, set_as_default=False, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise DependencyError(f"cannot reach the dask scheduler at {address} ({exc})",
                                      hint="start it with `dask scheduler`, or check the address") from None
            _clients[address] = client
        return client


def close_dask_clients(timeout_s: float = 10.0) -> None:
    """Close this process's scheduler connections (bounded: a dead cluster never holds up the exit)."""
    with _clients_lock:
        for client in _clients.values():
            with contextlib.suppress(Exception):
                client.close(timeout=timeout_s)
        _clients.clear()


class DaskPool:
    """Units on a dask.distributed cluster. The scheduler re-runs a unit on another worker when its
    worker dies; a unit that keeps killing workers ends as KilledWorker."""

    reports_frames = False

    def __init__(self, address: str) -> None:
        self.address = address
        self.client = dask_client(address)
        self.description = f"dask ({address})"
        self._futures: list[Any] = []

    def submit(self, task: UnitTask, on_frames: Callable[[int], None] | None = None):
        future = self.client.submit(run_unit, task, pure=False, key=f"abrpipe-{task.token}-{task.unit.name}")
        self._futures.append(future)
        return future

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.client.cancel(self._futures, force=True)

    def close(self) -> None:
        self._futures.clear()


# ---------------------------------------------------------------------------------------------
# The encode stage


@dataclass
class UnitsStatus:
    total: int
    done: int = 0
    running: int = 0
    failed: int = 0
    reused: int = 0

    def line(self) -> str:
        return f"units {self.done}/{self.total} done, {self.running} running, {self.failed} failed" + (
            f" ({self.reused} reused)" if self.reused else "")


@dataclass
class EncodeResult:
    title: Title
    units: list[UnitResult] = field(default_factory=list)
    executor: str = ""
    assemble_s: float = 0.0  # verifying and stitching the units

    def to_dict(self) -> dict[str, Any]:
        return {"executor": self.executor, "assemble_s": round(self.assemble_s, 3), "units": [u.to_dict() for u in self.units]}


def encode_title(
    source: SourceMedia,
    plan: LadderPlan,
    work_dir: str,
    *,
    units_root: str,
    chunking: Chunking | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    log_dir: str | None = None,
) -> EncodeResult:
    """plan_work -> execute (reusing finished units) -> assemble, into work_dir."""
    require_encoders(plan)
    chunking = chunking or Chunking()
    units = plan_work(source, plan, chunking)
    why_whole = chunkable(source, plan)
    if chunking.chunk_s and why_whole and on_status:
        on_status(f"note: encoded as one work unit: {why_whole}")
    build = tools.ffmpeg_build()
    source_id = source_identity(source)
    token = uuid.uuid4().hex[:12]
    os.makedirs(units_root, exist_ok=True)
    _clear_stale(units_root)
    tasks = [UnitTask(source, plan, u, units_root, unit_fingerprint(source, plan, u, source_id, build), build, token, log_dir)
             for u in units]
    status = UnitsStatus(len(tasks))
    results: dict[int, UnitResult] = {}
    todo: list[UnitTask] = []
    for task in tasks:
        reused, why = check_finished(task)
        if reused is not None:
            results[task.unit.index] = reused
            status.done += 1
            status.reused += 1
        else:
            todo.append(task)
            if why and on_status:
                on_status(f"{task.unit.describe()}: redone: {why}")
    fps = float(plan.base_fps) if plan.base_fps else None
    frames_total = max(1, int(source.duration_s * fps)) if fps else 0
    live: dict[int, int] = {}
    lock = threading.Lock()
    started = time.monotonic()

    def frames_done() -> int:
        # Frames of the top rung finished (kept) plus those being encoded now (pre-roll included).
        top = plan.video[0].id if plan.video else None
        done = sum(r.frames.get(top, 0) for r in results.values()) if top else 0
        with lock:  # units' threads add to `live` while this runs
            return done + sum(live.values())

    def report(final: bool = False) -> None:
        if on_status:
            on_status(status.line())
        if on_progress:
            if fps:
                frames = min(frames_done(), frames_total)
                elapsed = max(1e-6, time.monotonic() - started)
                out_s = frames / fps
                on_progress(Progress(out_time_s=out_s, duration_s=source.duration_s, speed=out_s / elapsed,
                                     frame=frames, done=final))
            else:
                on_progress(Progress(out_time_s=source.duration_s * status.done / max(1, status.total),
                                     duration_s=source.duration_s, speed=None, frame=None, done=final))

    executor: LocalPool | DaskPool = DaskPool(scheduler) if scheduler else LocalPool(min(workers, max(1, len(todo))))
    pending: dict[Any, UnitTask] = {}

    def running() -> int:
        # Local units say when they start (their first progress report); on a cluster every
        # submitted unit is counted (queued on the scheduler or running on a worker).
        return len(live) if executor.reports_frames else len(pending)

    try:
        for task in todo:
            def on_frames(n: int, index: int = task.unit.index) -> None:
                with lock:
                    live[index] = n

            pending[executor.submit(task, on_frames)] = task
        status.running = running()
        report()
        last_report = time.monotonic()
        while pending:
            finished = [f for f in pending if f.done()]
            if not finished:
                time.sleep(0.2)
                if time.monotonic() - last_report >= 1.0:
                    status.running = running()
                    report()
                    last_report = time.monotonic()
                continue
            for future in finished:
                task = pending[future]
                outcome = _outcome(future, task)
                if outcome is None:  # its result was lost with its worker: the scheduler runs it again
                    continue
                del pending[future]
                with lock:
                    live.pop(task.unit.index, None)
                if outcome.result is None:
                    status.failed += 1
                    status.running = running()
                    report()
                    raise _unit_error(task, outcome)
                results[task.unit.index] = outcome.result
                status.done += 1
                status.running = running()
            report()
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM (the CLI turns SIGTERM into this)
        _cancel(executor, units_root, token, list(pending))
        raise Interrupted("interrupted; every running work unit was stopped") from exc
    except BaseException:
        _cancel(executor, units_root, token, list(pending))
        raise
    finally:
        executor.close()
    report(final=True)
    assembling = time.monotonic()
    title = assemble(plan, units, units_root, work_dir)
    return EncodeResult(title, [results[u.index] for u in units], executor.description, time.monotonic() - assembling)


def _outcome(future, task: UnitTask) -> UnitOutcome | None:
    """The outcome of a finished future; None when it cannot be fetched now (on a cluster, a result
    held by a worker that has just died is lost, and the scheduler computes it again)."""
    try:
        return future.result(timeout=5)
    except TimeoutError:
        return None
    except Exception as exc:
        name = type(exc).__name__
        if name == "KilledWorker":
            return UnitOutcome(None, name, f"{task.unit.describe()} was running on every worker that died "
                                          f"(dask KilledWorker): the job failed",
                               hint="look at the workers' logs (memory? a crash in ffmpeg?), then run again: finished units are reused")
        if name == "CancelledError":
            return UnitOutcome(None, "Interrupted", f"{task.unit.describe()} was cancelled on the cluster")
        return UnitOutcome(None, name, f"{task.unit.describe()}: {name}: {exc}")


def _unit_error(task: UnitTask, outcome: UnitOutcome) -> AbrpipeError:
    if outcome.error_type == "Interrupted":
        return Interrupted(outcome.message)
    if outcome.error_type == "DependencyError":
        return DependencyError(outcome.message, hint=outcome.hint)
    if outcome.error_type == "OutputError":
        return OutputError(outcome.message, hint=outcome.hint)
    message = outcome.message if task.unit.describe() in outcome.message else f"{task.unit.describe()}: {outcome.message}"
    return EncodeError(message, hint=outcome.hint, stderr_tail=outcome.stderr_tail)


def _cancel(executor: LocalPool | DaskPool, units_root: str, token: str, futures: list[Any]) -> None:
    """Stop every unit of this run, wherever it runs, and wait (bounded) until none is left."""
    flag = cancel_flag(units_root, token)
    with contextlib.suppress(OSError), open(flag, "w", encoding="utf-8"):
        pass
    executor.cancel()
    deadline = time.monotonic() + 30.0
    # Units see the flag at their next progress report (twice a second), stop their ffmpeg and
    # remove their attempt folder. A folder without a heartbeat for a few seconds belongs to an
    # attempt whose worker died (its ffmpeg died with it).
    while time.monotonic() < deadline and _live_attempts(units_root, token):
        time.sleep(0.2)
    with contextlib.suppress(OSError):
        os.remove(flag)


_HEARTBEAT_S = 5.0


def _live_attempts(units_root: str, token: str) -> list[str]:
    live = []
    with contextlib.suppress(OSError):
        for name in os.listdir(units_root):
            if layout.is_unit_attempt(name) and f".run-{token}-" in name:
                with contextlib.suppress(OSError):
                    if time.time() - os.stat(os.path.join(units_root, name)).st_mtime < _HEARTBEAT_S:
                        live.append(name)
    return live


def _clear_stale(units_root: str) -> None:
    """Attempt folders and cancel flags of runs that were killed (their ffmpeg died with them)."""
    for name in os.listdir(units_root):
        path = os.path.join(units_root, name)
        if layout.is_unit_attempt(name):
            shutil.rmtree(path, ignore_errors=True)
        elif name.startswith("cancel-"):
            with contextlib.suppress(OSError):
                os.remove(path)


def discard_units(units_root: str) -> None:
    shutil.rmtree(units_root, ignore_errors=True)


__all__ = ["plan_work", "execute", "assemble", "encode_title", "resolve_chunking", "replace"]
