"""batch: run many jobs with bounded concurrency, retries, skip-if-done and machine reports.

The unit of work is a `Task`: a job's input, its fully resolved `Profile`, its output and options,
plus the attempt number. It is a frozen, picklable value, and `run_task(task)` is a module-level
function that needs nothing else: the same task could run in this process, in another process, or
on another machine that sees the same paths. Executors only move tasks and outcomes:

- `LocalExecutor` (the default) runs tasks on a pool of threads in this process. Each task spends
  its time in ffmpeg, which is already a separate process: that is where the CPU goes, and where a
  crash or a kill stays contained (a killed ffmpeg fails one job, nothing else). Threads keep every
  child process known to the one runner module, so Ctrl-C or SIGTERM stops every ffmpeg of the
  batch, and each ffmpeg dies with abrpipe even on SIGKILL (PR_SET_PDEATHSIG). A process pool
  would add a layer of workers that outlive a killed parent and whose ffmpeg children the main
  process cannot reach, for isolation of the short Python stages only. The local executor still
  pickles every task it runs, so the boundary a remote executor needs is exercised by every run.
- `DaskExecutor` drives the same tasks from this process but sends every job's work units (the
  ffmpeg work, see workunits.py) to a dask.distributed scheduler (`--scheduler ADDRESS` or
  ABRPIPE_DASK_SCHEDULER), so the jobs of a batch share the cluster unit by unit. Workers need
  abrpipe and the same ffmpeg build, and must see the inputs and outputs at the same paths (shared
  storage). dask is the optional `distributed` extra, imported only when asked for.

Idempotency and resume: a job whose published record (OUT/abrpipe.json) has the same input digest,
profile fingerprint and abrpipe version is skipped (`force` redoes it), and its report entry says
why. A job interrupted in any way leaves at most its `OUT.partial/` work area, never a half-built
OUT: the next run clears that area and redoes the job, reusing the job's finished work units
(`OUT.units/`, kept when a job is stopped or an ffmpeg fails) whose fingerprints still match.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import pickle
import socket
import tempfile
import textwrap
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import IO, Any, Protocol

from abrpipe import __version__, layout, publish, runner
from abrpipe.errors import (
    AbrpipeError,
    DependencyError,
    ExitCode,
    InputError,
    Interrupted,
    OutputError,
    ProfileError,
)
from abrpipe.jobsfile import BatchJob
from abrpipe.package import MASTER_NAME, MPD_NAME
from abrpipe.pipeline import (
    RECORD_NAME,
    Event,
    Job,
    file_digest,
    profile_fingerprint,
    run_job,
    text_fingerprint,
)

STATUSES = ("succeeded", "skipped", "failed", "interrupted", "cancelled")
# Errors that would repeat identically on a retry: the input, the profile or the tools are wrong.
PERMANENT_ERRORS = (InputError, ProfileError, DependencyError)
MAX_BACKOFF_S = 300.0
STOPPED = "stopped while running: the batch is stopping"


class BatchFailed(AbrpipeError):
    exit_code = ExitCode.BATCH_FAILED


class BatchInterrupted(AbrpipeError):
    exit_code: int = ExitCode.INTERRUPTED

    def __init__(self, message: str, *, code: int = int(ExitCode.INTERRUPTED), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = code  # 130 for Ctrl-C, 143 for SIGTERM (not an ExitCode member)


# ---------------------------------------------------------------------------------------------
# The task boundary: values only.


@dataclass(frozen=True)
class Task:
    name: str
    job: Job
    attempt: int = 1
    force: bool = False


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    exit_code: int
    hint: str | None = None
    stderr_tail: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, AbrpipeError):
            return cls(
                type=type(exc).__name__,
                message=exc.message,
                exit_code=int(exc.exit_code),
                hint=exc.hint,
                stderr_tail=getattr(exc, "stderr_tail", "") or "",
            )
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return cls(type=type(exc).__name__, message=f"internal error: {detail}", exit_code=int(ExitCode.ERROR))

    def line(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


@dataclass(frozen=True)
class TaskOutcome:
    name: str
    attempt: int
    status: str  # succeeded, skipped, failed, interrupted, cancelled
    started_unix: float
    duration_s: float
    reason: str = ""  # why it was skipped, or why it was redone
    error: ErrorInfo | None = None
    retriable: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)  # of the job record (OUT/abrpipe.json): renditions, validation

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "status": self.status,
            "started_unix": round(self.started_unix, 3),
            "duration_s": round(self.duration_s, 3),
            "reason": self.reason or None,
            "error": None if self.error is None else {
                "type": self.error.type,
                "message": self.error.message,
                "hint": self.error.hint,
                "exit_code": self.error.exit_code,
                "stderr_tail": self.error.stderr_tail or None,
            },
        }


def check_up_to_date(job: Job) -> tuple[bool, str]:
    """(True, why) when OUT already holds this job's result; (False, why not) otherwise."""
    record_path = os.path.join(job.output, RECORD_NAME)
    if not os.path.exists(record_path):
        return False, "no previous output"
    try:
        with open(record_path, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError) as exc:
        return False, f"the previous record cannot be read ({exc})"
    if not isinstance(record, dict):
        return False, "the previous record is not a job record"
    if record.get("abrpipe_version") != __version__:
        return False, f"the previous output was made by abrpipe {record.get('abrpipe_version')}, this is {__version__}"
    if record.get("profile_fingerprint") != profile_fingerprint(job.profile, job.preset, job.audio_tracks, text_fingerprint(job)):
        return False, "the profile or the job's overrides changed"
    if job.validate and not record.get("validated"):
        return False, "the previous output was not validated"
    missing = _missing_files(job, record)
    if missing:
        return False, f"the previous output is incomplete ({missing} is missing)"
    if "://" in job.input:
        return False, "the input is a URL (no digest to compare)"
    try:
        digest = file_digest(job.input)
    except OSError:
        return False, "the input cannot be read"
    if record.get("input_digest") != digest:
        return False, "the input changed"
    return True, (
        f"up to date: {os.path.join(job.output, RECORD_NAME)} records the same input ({digest[:19]}...), "
        f"profile and abrpipe {__version__} (--force redoes it)"
    )


def _missing_files(job: Job, record: dict[str, Any]) -> str | None:
    outputs = job.effective_profile().outputs
    names = ([MASTER_NAME] if "hls" in outputs else []) + ([MPD_NAME] if "dash" in outputs else [])
    for name in names:
        if not os.path.isfile(os.path.join(job.output, name)):
            return name
    for r in record.get("renditions") or []:
        rdir = os.path.join(job.output, str(r.get("id", "")))
        try:
            segments = [n for n in os.listdir(rdir) if n.startswith("seg_") and n.endswith(".m4s")]
        except OSError:
            return f"{r.get('id')}/"
        if len(segments) != r.get("segments") or not os.path.isfile(os.path.join(rdir, "init.mp4")):
            return f"part of {r.get('id')}/"
    return None


def run_task(task: Task, on_event: Callable[[Event], None] | None = None) -> TaskOutcome:
    """Run one task to an outcome. Expected failures are outcomes, not exceptions."""
    started = time.time()
    clock = time.monotonic()

    def outcome(status: str, **kwargs) -> TaskOutcome:
        return TaskOutcome(task.name, task.attempt, status, started, time.monotonic() - clock, **kwargs)

    reason = ""
    try:
        if not task.force:
            done, reason = check_up_to_date(task.job)
            if done:
                publish.discard(publish.partial_dir(task.job.output))  # a stale work area from a stopped run
                publish.discard(layout.units_dir(task.job.output))  # and its finished units: already published
                with open(os.path.join(task.job.output, RECORD_NAME), encoding="utf-8") as fh:
                    return outcome("skipped", reason=reason, record=_for_report(json.load(fh)))
            reason = f"redone: {reason}" if reason != "no previous output" else ""
        else:
            reason = "redone: --force"
        result = run_job(task.job, on_event)
        return outcome("succeeded", reason=reason,
                       timings_s=dict(result.timings_s), record=_for_report(result.record))
    except (Interrupted, KeyboardInterrupt) as exc:
        return outcome("interrupted", error=ErrorInfo.from_exception(exc if isinstance(exc, Interrupted) else Interrupted("interrupted")))
    except AbrpipeError as exc:
        return outcome("failed", error=ErrorInfo.from_exception(exc), retriable=not isinstance(exc, PERMANENT_ERRORS))
    except Exception as exc:  # a bug: keep the batch going, report it like any failure
        return outcome("failed", error=ErrorInfo.from_exception(exc), retriable=False)


# ---------------------------------------------------------------------------------------------
# Executors.


class TaskFuture(Protocol):
    def done(self) -> bool: ...
    def result(self, timeout: float | None = None) -> TaskOutcome: ...


class Executor(Protocol):
    """Moves tasks to where they run and outcomes back. `submit` must not block."""

    description: str
    streams_events: bool  # whether on_event callbacks arrive (progress display)

    def submit(self, task: Task, on_event: Callable[[Event], None] | None = None) -> TaskFuture: ...
    def cancel_all(self) -> None: ...  # stop running tasks now; they end as "interrupted"
    def shutdown(self, wait: bool = True) -> None: ...


class LocalExecutor:
    """Tasks on a pool of threads in this process; the work itself runs in ffmpeg child processes."""

    streams_events = True

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.description = f"local ({self.workers} at a time)"
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="abrpipe-job")
        self._cancel = threading.Event()

    def submit(self, task: Task, on_event: Callable[[Event], None] | None = None) -> TaskFuture:
        # The same boundary a remote executor crosses: a task that does not pickle fails here, locally.
        return self._pool.submit(self._run, pickle.dumps(task), on_event)

    def _run(self, payload: bytes, on_event: Callable[[Event], None] | None) -> TaskOutcome:
        task: Task = pickle.loads(payload)
        if self._cancel.is_set():
            return TaskOutcome(task.name, task.attempt, "cancelled", time.time(), 0.0)

        def guarded(event: Event) -> None:
            # Stops a task between stages and at every progress report once the batch is stopping;
            # never after publishing ("done"), which has already happened by then.
            if self._cancel.is_set() and event.stage != "done":
                raise Interrupted(STOPPED)
            if on_event is not None:
                on_event(event)

        outcome = run_task(task, guarded)
        if self._cancel.is_set() and outcome.status == "failed":
            # ffmpeg was stopped by cancel_all(): that is an interruption, not the job's failure.
            return TaskOutcome(task.name, task.attempt, "interrupted", outcome.started_unix, outcome.duration_s,
                               error=ErrorInfo("Interrupted", STOPPED, int(ExitCode.INTERRUPTED)))
        return outcome

    def cancel_all(self) -> None:
        self._cancel.set()
        runner.stop_all()

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


class DaskExecutor(LocalExecutor):
    """Jobs driven from this process, their work units encoded on a dask.distributed cluster:
    every job's units share the cluster's workers (see workunits.DaskPool). Probe, plan, stitching,
    packaging, validation and publishing stay here; only ffmpeg work travels."""

    def __init__(self, address: str, workers: int = 1) -> None:
        from abrpipe import workunits

        workunits.dask_client(address)  # an unreachable scheduler or a missing dask fails now, once
        super().__init__(workers)
        self.address = address
        self.description = f"dask ({address}), {self.workers} job(s) at a time"

    def submit(self, task: Task, on_event: Callable[[Event], None] | None = None) -> TaskFuture:
        return super().submit(replace(task, job=replace(task.job, scheduler=self.address)), on_event)

    def shutdown(self, wait: bool = True) -> None:
        from abrpipe import workunits

        super().shutdown(wait)
        workunits.close_dask_clients()


def make_executor(workers: int, scheduler: str | None = None) -> Executor:
    if scheduler:
        return DaskExecutor(scheduler, workers)
    return LocalExecutor(workers)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def job_threads(job: Job) -> int:
    """CPU threads one job keeps busy: x264-class encoders run frame threads per rung, so count two
    per video rung; an audio-only job is one thread."""
    return max(2, 2 * len(job.profile.rungs)) if job.profile.rungs else 1


def default_concurrency(jobs: list[BatchJob], cpus: int | None = None) -> int:
    """Jobs at a time when -j is not given: the CPUs divided by the busiest job's threads, at least 1."""
    if not jobs:
        return 1
    cpus = cpus or cpu_count()
    threads = max(job_threads(b.job) for b in jobs)
    return max(1, min(len(jobs), cpus // threads))


# ---------------------------------------------------------------------------------------------
# The coordinator.


@dataclass
class JobState:
    name: str
    job: Job
    where: str
    weight: float  # the input's size: a job's share of the batch, for the overall ETA
    status: str = "pending"  # pending, running, retry-wait, then one of STATUSES
    stage: str = ""
    fraction: float = 0.0  # of the current attempt's encode
    attempts: list[TaskOutcome] = field(default_factory=list)  # emptied once written to a ReportSpool
    ready_at: float = 0.0
    started: float | None = None  # monotonic, first attempt
    finished: float | None = None
    index: int = 0  # position in the batch: the order of the reports
    # What the summary table needs, kept when the job's outcomes have gone to a ReportSpool.
    tries: int = 0
    took_s: float = 0.0
    renditions: int = 0
    error_line: str = ""  # the last attempt's error, for a failed or interrupted job

    def on_event(self, event: Event) -> None:
        # Called on worker threads: single attribute stores only.
        if event.progress is not None:
            self.stage = "encode"
            if event.progress.fraction is not None:
                self.fraction = event.progress.fraction
        else:
            self.stage = event.stage

    @property
    def last(self) -> TaskOutcome | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def final(self) -> bool:
        return self.status in STATUSES

    def settle(self) -> None:
        """Fill in the summary fields from the attempts (once the job has its final status)."""
        last = self.last
        self.tries = len(self.attempts)
        self.took_s = sum(a.duration_s for a in self.attempts)
        self.renditions = len(last.record.get("renditions") or []) if last and self.status in ("succeeded", "skipped") else 0
        self.error_line = last.error.line() if last and last.error and self.status in ("failed", "interrupted") else ""


@dataclass
class BatchResult:
    jobs: list[JobState]
    started_unix: float
    finished_unix: float
    executor: str
    concurrency: int
    interrupted_code: int | None = None  # 130 / 143 when the batch was interrupted
    spool: ReportSpool | None = None  # where finished jobs' report entries went

    def count(self, status: str) -> int:
        return sum(1 for j in self.jobs if j.status == status)

    @property
    def exit_code(self) -> int:
        if self.interrupted_code:
            return self.interrupted_code
        if any(j.status in ("failed", "cancelled", "interrupted") for j in self.jobs):
            return int(ExitCode.BATCH_FAILED)
        return int(ExitCode.OK)


class BatchObserver:
    """What the UI gets; every call happens on the coordinating (main) thread."""

    def job_started(self, js: JobState) -> None: ...
    def job_retry(self, js: JobState, delay_s: float) -> None: ...
    def job_finished(self, js: JobState) -> None: ...
    def tick(self, states: list[JobState], elapsed_s: float) -> None: ...


def backoff_s(attempt: int, base_s: float) -> float:
    """Delay before attempt `attempt + 1`: base, 2 x base, 4 x base... capped."""
    return min(MAX_BACKOFF_S, base_s * 2 ** (attempt - 1))


def eta_s(states: list[JobState], elapsed_s: float) -> float | None:
    """Remaining time at the rate of the work done so far: encoded input bytes per second (jobs that
    were skipped or failed did no encoding work to measure)."""
    done = remaining = 0.0
    for js in states:
        if js.final and js.status != "succeeded":
            continue
        if js.status == "succeeded":
            done += js.weight
        elif js.status == "running":
            done += js.weight * js.fraction
            remaining += js.weight * (1 - js.fraction)
        else:
            remaining += js.weight
    if done <= 0 or elapsed_s <= 0:
        return None
    return elapsed_s * remaining / done


def _weight(job: Job) -> float:
    try:
        return float(max(1, os.path.getsize(job.input)))
    except OSError:
        return 1.0


def run_batch(
    jobs: list[BatchJob],
    executor: Executor,
    *,
    concurrency: int,
    retries: int = 0,
    retry_delay_s: float = 2.0,
    fail_fast: bool = False,
    force: bool = False,
    observer: BatchObserver | None = None,
    poll_s: float = 0.1,
    stop_grace_s: float = 20.0,
    spool: ReportSpool | None = None,
) -> BatchResult:
    """Run every job; one failure never stops the others unless fail_fast. Ctrl-C / SIGTERM (raised
    as KeyboardInterrupt in this thread) stops the running tasks and returns what happened.

    With a `spool`, each job's report entry is written to it as the job finishes and the job's
    outcomes are dropped: what stays in memory per finished job is its summary fields. Without one, the outcomes stay on each JobState."""
    obs = observer or BatchObserver()
    states = [JobState(b.name, b.job, b.where, _weight(b.job), index=i) for i, b in enumerate(jobs)]
    if spool is not None:
        spool.begin(len(states))
    queue: deque[JobState] = deque(states)
    waiting: list[JobState] = []  # failed, waiting for their retry
    running: dict[Any, JobState] = {}
    started_unix = time.time()
    t0 = time.monotonic()
    stopping = False
    interrupted_code: int | None = None

    def finish(js: JobState, status: str) -> None:
        js.status = status
        js.finished = time.monotonic()
        js.settle()
        obs.job_finished(js)
        if spool is not None and spool.add(js.index, job_entry(js)):
            js.attempts.clear()  # in the spool now; the summary fields stay

    def collect(future: Any, js: JobState) -> None:
        nonlocal stopping
        try:
            outcome: TaskOutcome = future.result()
        except BaseException as exc:  # the executor lost the task (worker died, cancelled, a bug)
            if isinstance(exc, KeyboardInterrupt):
                raise
            if stopping:  # cancelled by cancel_all()
                outcome = TaskOutcome(js.name, len(js.attempts) + 1, "interrupted", time.time(), 0.0,
                                      error=ErrorInfo("Interrupted", STOPPED, int(ExitCode.INTERRUPTED)))
            else:
                outcome = TaskOutcome(js.name, len(js.attempts) + 1, "failed", time.time(), 0.0,
                                      error=ErrorInfo.from_exception(exc), retriable=True)
        js.attempts.append(outcome)
        js.fraction = 0.0
        js.stage = ""
        if outcome.status != "failed":
            finish(js, outcome.status)
            return
        if outcome.retriable and len(js.attempts) <= retries and not stopping:
            delay = backoff_s(len(js.attempts), retry_delay_s)
            js.status = "retry-wait"
            js.ready_at = time.monotonic() + delay
            waiting.append(js)
            obs.job_retry(js, delay)
            return
        finish(js, "failed")
        if fail_fast and not stopping:
            stopping = True
            executor.cancel_all()

    def next_ready() -> JobState | None:
        now = time.monotonic()
        ready = [js for js in waiting if js.ready_at <= now]
        if ready:
            js = min(ready, key=lambda j: j.ready_at)
            waiting.remove(js)
            return js
        return queue.popleft() if queue else None

    # The garbage each attempt leaves in reference cycles (the DOM trees of the MPDs it read back,
    # ffmpeg-python's filter graphs, indented JSON encoders: ~750 objects per job) is collected as the
    # attempt ends. Left to CPython's thresholds it waits for a full collection, which comes only when a
    # quarter of the long-lived heap is pending: in a long batch, about every 480 jobs, the Python heap
    # swinging by 24,000 blocks (docs/BENCHMARKS.md). What exists now (modules, the jobs) lives for the
    # whole batch and is frozen out of the collections, so each one walks only what the jobs made.
    gc.collect()
    gc.freeze()
    try:
        while queue or waiting or running:
            if not stopping:
                while len(running) < concurrency:
                    js = next_ready()
                    if js is None:
                        break
                    task = Task(js.name, js.job, attempt=len(js.attempts) + 1, force=force)
                    js.status, js.stage, js.fraction = "running", "queued", 0.0
                    js.started = js.started or time.monotonic()
                    running[executor.submit(task, js.on_event if executor.streams_events else None)] = js
                    obs.job_started(js)
            ended = [f for f in running if f.done()]
            for future in ended:
                collect(future, running.pop(future))
            if ended:
                gc.collect()
            if stopping and not running:
                break
            obs.tick(states, time.monotonic() - t0)
            time.sleep(poll_s)
    except KeyboardInterrupt as exc:
        interrupted_code = getattr(exc, "code", int(ExitCode.INTERRUPTED))
        stopping = True
        executor.cancel_all()
        deadline = time.monotonic() + stop_grace_s
        try:
            while running and time.monotonic() < deadline:
                for future in [f for f in running if f.done()]:
                    collect(future, running.pop(future))
                time.sleep(poll_s)
        except KeyboardInterrupt:
            pass  # a second signal: stop waiting
        for js in running.values():
            js.attempts.append(TaskOutcome(js.name, len(js.attempts) + 1, "interrupted", time.time(), 0.0,
                                           error=ErrorInfo("Interrupted", "interrupted", interrupted_code)))
            finish(js, "interrupted")
        running.clear()
    finally:
        gc.unfreeze()
        for js in list(queue) + waiting:
            finish(js, "cancelled")
        queue.clear()
        waiting.clear()
        if interrupted_code is None:
            executor.shutdown()
        else:
            with contextlib.suppress(KeyboardInterrupt):
                executor.shutdown(wait=False)
    obs.tick(states, time.monotonic() - t0)
    return BatchResult(states, started_unix, time.time(), executor.description, concurrency, interrupted_code, spool)


# ---------------------------------------------------------------------------------------------
# Reports.


def _for_report(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of a job record the report and the summary use (a job's outcomes are held until the
    job finishes, for every job in flight), so nothing more (digests, versions, the profile) is kept."""
    return {k: record[k] for k in ("renditions", "validation") if k in record}


class ReportSpool:
    """Finished jobs' report entries, one JSON line each, written as each job finishes to an unnamed
    temporary file (in `directory`: beside the report, on its file system rather than in a tmpfs).
    report.json and junit.xml are then streamed from it, in the batch's order, one entry at a time,
    so the reports never hold the batch's outcomes in memory. The file disappears when the spool is closed,
    and with the process whatever ends it. Held here per job: one 8-byte offset."""

    def __init__(self, directory: str | None = None) -> None:
        directory = directory if directory and os.path.isdir(directory) else None
        try:
            self._fh: IO[bytes] = tempfile.TemporaryFile(prefix="abrpipe-batch-", suffix=".jsonl", dir=directory)
        except OSError as exc:  # before the first job, rather than when the reports are due
            raise OutputError(f"{directory or tempfile.gettempdir()}: cannot write the batch's reports there ({exc.strerror or exc})",
                              hint="choose a writable place for --report / --junit") from exc
        self._offsets = array("q")

    def begin(self, jobs: int) -> None:
        self._fh.seek(0)
        self._fh.truncate()
        self._offsets = array("q", [-1]) * jobs

    def add(self, index: int, entry: dict[str, Any]) -> bool:
        """Write one job's entry; False when it cannot be written (the caller keeps it in memory)."""
        line = (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            self._fh.seek(0, os.SEEK_END)
            offset = self._fh.tell()
            self._fh.write(line)
        except OSError:
            return False
        self._offsets[index] = offset
        return True

    def entry(self, index: int) -> dict[str, Any] | None:
        offset = self._offsets[index] if index < len(self._offsets) else -1
        if offset < 0:
            return None
        self._fh.flush()
        if self._fh.tell() != offset:
            self._fh.seek(offset)
        return json.loads(self._fh.readline())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ReportSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def job_entry(js: JobState) -> dict[str, Any]:
    last = js.last
    record = last.record if last else {}
    error = last.error if last and last.status != "succeeded" and last.status != "skipped" else None
    return {
        "name": js.name,
        "input": js.job.input,
        "output": js.job.output,
        "profile": js.job.effective_profile().name,
        "status": js.status,
        "reason": (last.reason or None) if last else ("not started" if js.status == "cancelled" else None),
        "attempts": [a.to_dict() for a in js.attempts],
        "duration_s": round(sum(a.duration_s for a in js.attempts), 3),
        "timings_s": dict(last.timings_s) if last else {},
        "renditions": list(record.get("renditions") or []),
        "validation": record.get("validation"),
        "error": error.line() if error else None,
        "exit_code": error.exit_code if error else (0 if js.status in ("succeeded", "skipped") else None),
    }


def job_entries(result: BatchResult) -> Iterator[dict[str, Any]]:
    """Every job's report entry in the batch's order: from the spool, or from the job's outcomes."""
    for js in result.jobs:
        entry = result.spool.entry(js.index) if result.spool is not None else None
        yield entry if entry is not None else job_entry(js)


def _report_head(result: BatchResult) -> dict[str, Any]:
    return {
        "abrpipe_version": __version__,
        "started_unix": round(result.started_unix, 3),
        "finished_unix": round(result.finished_unix, 3),
        "duration_s": round(result.finished_unix - result.started_unix, 3),
        "executor": result.executor,
        "concurrency": result.concurrency,
        "exit_code": result.exit_code,
        "interrupted": result.interrupted_code is not None,
        "counts": {"total": len(result.jobs), **{s: result.count(s) for s in STATUSES}},
    }


def report_dict(result: BatchResult) -> dict[str, Any]:
    """The whole report as one value (every entry in memory: for a short batch or a library caller)."""
    return {**_report_head(result), "jobs": list(job_entries(result))}


def dump_report(result: BatchResult, write: Callable[[str], object]) -> None:
    """The report as `json.dumps(report_dict(result), indent=2) + "\\n"` writes it, text for text, but
    one job entry at a time."""
    head = json.dumps({**_report_head(result), "jobs": []}, indent=2, default=str)
    assert head.endswith("[]\n}")  # "jobs" is the last key
    write(head[: -len("[]\n}")])
    first = True
    for entry in job_entries(result):
        write(("[\n" if first else ",\n") + textwrap.indent(json.dumps(entry, indent=2, default=str), " " * 4))
        first = False
    write("[]\n}\n" if first else "\n  ]\n}\n")


@contextlib.contextmanager
def _atomic(path: str) -> Iterator[IO[bytes]]:
    """A file that appears at `path` complete or not at all (written beside it, then renamed)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_report(result: BatchResult, path: str) -> None:
    with _atomic(path) as fh:
        dump_report(result, lambda text: fh.write(text.encode("utf-8")))


CASES_MARK = "abrpipe-testcases"


def dump_junit(result: BatchResult, fh: IO[bytes]) -> None:
    """One test case per job: failed -> <failure>, interrupted -> <error>, skipped/cancelled -> <skipped>.
    The document ET.indent + ET.tostring make of the whole tree, byte for byte, one case at a time."""
    failures = result.count("failed")
    errors = result.count("interrupted")
    skipped = result.count("skipped") + result.count("cancelled")
    total_s = f"{result.finished_unix - result.started_unix:.3f}"
    counts = {"tests": str(len(result.jobs)), "failures": str(failures), "errors": str(errors), "skipped": str(skipped), "time": total_s}
    suites = ET.Element("testsuites", {"name": "abrpipe batch", **counts})
    suite = ET.SubElement(
        suites, "testsuite", {"name": "abrpipe batch", "hostname": socket.gethostname(),
                              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(result.started_unix)), **counts},
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="abrpipe_version", value=__version__)
    ET.SubElement(props, "property", name="executor", value=result.executor)
    if result.jobs:
        ET.SubElement(suite, CASES_MARK)  # where the cases go, indented as the last children of the suite
    ET.indent(suites)
    skeleton = ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"
    if not result.jobs:
        fh.write(skeleton)
        return
    head, tail = skeleton.split(f"<{CASES_MARK} />".encode())
    fh.write(head)
    for i, e in enumerate(job_entries(result)):
        case = _testcase(e)
        ET.indent(case, level=2)
        fh.write((b"\n    " if i else b"") + ET.tostring(case, encoding="utf-8", xml_declaration=False))
    fh.write(tail)


def _testcase(e: dict[str, Any]) -> ET.Element:
    case = ET.Element(
        "testcase", classname=f"abrpipe.batch.{e['profile']}", name=e["name"],
        time=f"{e['duration_s']:.3f}", file=e["input"],
    )
    history = "\n".join(
        f"attempt {a['attempt']}: {a['status']}"
        + (f": {a['error']['message']}" if a["error"] else "")
        + (f"\n{a['error']['stderr_tail']}" if a["error"] and a["error"]["stderr_tail"] else "")
        for a in e["attempts"]
    )
    if e["status"] == "failed":
        last_error = e["attempts"][-1]["error"] if e["attempts"] else None
        node = ET.SubElement(case, "failure", message=_xml_safe(e["error"] or "failed"),
                             type=last_error["type"] if last_error else "Failed")
        node.text = _xml_safe(history)
    elif e["status"] == "interrupted":
        node = ET.SubElement(case, "error", message="interrupted", type="Interrupted")
        node.text = _xml_safe(history)
    elif e["status"] in ("skipped", "cancelled"):
        ET.SubElement(case, "skipped", message=_xml_safe(e["reason"] or e["status"]))
    out = [f"input: {e['input']}", f"output: {e['output']}", f"status: {e['status']}"]
    out += [f"rendition {r.get('id')}: " + (f"{r.get('width')}x{r.get('height')} " if r.get("width") else "")
            + f"{r.get('codec')} {r.get('average_bps')} bps" for r in e["renditions"]]
    ET.SubElement(case, "system-out").text = _xml_safe("\n".join(out))
    return case


def junit_xml(result: BatchResult) -> bytes:
    buf = io.BytesIO()
    dump_junit(result, buf)
    return buf.getvalue()


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot carry most control characters (ffmpeg's stderr can)."""
    return "".join(c if c in "\t\n\r" or ord(c) >= 0x20 else "?" for c in text)


def write_junit(result: BatchResult, path: str) -> None:
    with _atomic(path) as fh:
        dump_junit(result, fh)


def summary_line(result: BatchResult) -> str:
    parts = [f"{result.count(s)} {s}" for s in STATUSES if result.count(s)]
    return f"{len(result.jobs)} job(s): " + ", ".join(parts)


__all__ = [
    "BatchFailed", "BatchInterrupted", "BatchObserver", "BatchResult", "DaskExecutor", "Executor", "JobState",
    "LocalExecutor", "ReportSpool", "Task", "TaskOutcome", "check_up_to_date", "default_concurrency", "dump_junit",
    "dump_report", "job_entries", "make_executor", "report_dict", "run_batch", "run_task", "write_junit", "write_report",
]
