"""run_job(): probe -> plan -> encode -> package -> validate -> publish, for one title.

A Job is self-contained and picklable (input path, resolved profile, output, options), so that a
batch can run it in another process or on another machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from abrpipe import __version__, layout, package, publish, stages, workunits
from abrpipe.errors import AbrpipeError, EncodeError, InputError, Interrupted, OutputError, ValidationFailed
from abrpipe.layout import LOG_DIR, RECORD_NAME
from abrpipe.model import LadderPlan, Rendition, Title
from abrpipe.plan import plan_ladder
from abrpipe.probe import SourceMedia, probe
from abrpipe.profile import Profile
from abrpipe.runner import Progress


@dataclass(frozen=True)
class Job:
    input: str
    output: str
    profile: Profile
    preset: str | None = None  # overrides the profile's preset
    audio_tracks: str | tuple | None = None  # overrides the profile's audio_tracks
    validate: bool = True
    dash_schema: str | None = None
    allow_references: bool = False
    keep_logs: bool = False
    chunk_s: float | None = None  # work-unit length; None: automatic (short titles are one unit), 0: one unit
    workers: int = 1  # local units at a time (without a scheduler)
    scheduler: str | None = None  # dask.distributed scheduler address: units run on its workers

    def effective_profile(self) -> Profile:
        return replace(self.profile, preset=self.preset) if self.preset else self.profile


@dataclass(frozen=True)
class Event:
    stage: str  # probe, plan, encode, package, validate, publish, done
    message: str = ""
    progress: Progress | None = None


@dataclass
class JobResult:
    job: Job
    source: SourceMedia | None = None
    plan: LadderPlan | None = None
    title: Title | None = None
    encode: workunits.EncodeResult | None = None
    validation: Any = None
    timings_s: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


EventCallback = Callable[[Event], None]


def default_output(input_path: str) -> str:
    """input.mp4 -> input-abr/ beside it."""
    base, _ = os.path.splitext(os.path.abspath(input_path))
    return base + "-abr"


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


def profile_fingerprint(profile: Profile, preset: str | None, audio_tracks: str | tuple | None = None) -> str:
    """Identifies what a job asks for (the resolved profile plus the job's overrides): a batch skips
    a job whose published record carries the same fingerprint, input digest and abrpipe version."""
    data = {k: v for k, v in profile.to_dict().items() if k not in ("origin", "path")}
    if preset:
        data["preset"] = preset
    if audio_tracks is not None:
        data["audio_tracks"] = audio_tracks if isinstance(audio_tracks, str) else list(audio_tracks)
    return "sha256:" + hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def prepare_job(job: Job, on_event: EventCallback | None = None) -> tuple[SourceMedia, LadderPlan]:
    emit = on_event or (lambda e: None)
    emit(Event("probe", job.input))
    source = probe(job.input, allow_references=job.allow_references)
    emit(Event("plan", job.effective_profile().name))
    return source, plan_ladder(source, job.effective_profile(), audio_tracks=job.audio_tracks)


def run_job(
    job: Job,
    on_event: EventCallback | None = None,
    *,
    before_publish: Callable[[str, JobResult], None] | None = None,
) -> JobResult:
    """Run one job. `before_publish(work_dir, result)` may add files (reports) to the validated work
    area, so that they appear in OUT together with everything else, in the one rename."""
    emit = on_event or (lambda e: None)
    result = JobResult(job)
    clock = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.monotonic()
        result.timings_s[stage] = round(now - clock, 3)
        clock = now

    result.source, result.plan = prepare_job(job, on_event)
    lap("probe_plan")
    work = publish.prepare(job.output)
    log_dir = os.path.join(work, LOG_DIR)
    os.makedirs(log_dir)
    ok = False
    try:
        emit(Event("encode", f"{len(result.plan.video)} video + {len(result.plan.audio)} audio renditions"))
        try:
            result.encode = workunits.encode_title(
                result.source, result.plan, work,
                units_root=layout.units_dir(job.output),
                chunking=workunits.resolve_chunking(job.chunk_s, result.source.duration_s),
                workers=job.workers, scheduler=job.scheduler,
                on_progress=lambda p: emit(Event("encode", progress=p)),
                on_status=lambda line: emit(Event("encode", line)),
                log_dir=log_dir,
            )
            lap("encode")
            emit(Event("package"))
            result.title = result.encode.title
            _check_complete(job, result.source, result.title)
            for stage in stages.enabled(job):
                emit(Event(stage.name))
                ctx = stages.StageContext(job, result.source, result.plan, work, log_dir, result.title)
                result.title = stage.run(ctx)
                lap(stage.name)
            package.write_manifests(work, result.title, result.plan)
            lap("package")
            if job.validate:
                emit(Event("validate"))
                result.validation = _validate(work, job)
                lap("validate")
        except (AbrpipeError, OSError) as exc:
            # FFmpeg's segmenter can exit 0 on a full disk, leaving short or missing segments: whatever
            # went wrong, a full disk is the reason to report.
            if isinstance(exc, Interrupted):
                raise
            if "No space left on device" in getattr(exc, "stderr_tail", "") or _disk_full(work):
                raise OutputError(
                    f"{job.output}: no space left on device while encoding", hint="free some space, or choose another -o"
                ) from None
            raise
        if before_publish:
            before_publish(work, result)
        result.record = _record(job, result)
        with open(os.path.join(work, RECORD_NAME), "w", encoding="utf-8") as fh:
            json.dump(result.record, fh, indent=2, default=str)
        if not job.keep_logs:
            publish.discard(log_dir)
        emit(Event("publish", job.output))
        publish.publish(work, job.output)
        workunits.discard_units(layout.units_dir(job.output))  # published: nothing left to resume
        lap("publish")
        ok = True
    except OSError as exc:
        raise OutputError(f"{job.output}: {exc.strerror or exc} while writing the output", hint="check free space and permissions") from None
    except BaseException as exc:
        # Finished work units are kept for the next run when the encode was stopped or an ffmpeg
        # failed (resume); a bad input, a full disk or an invalid result would only repeat.
        if not isinstance(exc, Interrupted | EncodeError | KeyboardInterrupt):
            workunits.discard_units(layout.units_dir(job.output))
        raise
    finally:
        if not ok:
            publish.discard(work)
    emit(Event("done", job.output))
    return result


# Less free space than this where the work area is, after a failure: the disk is full.
_DISK_FULL_BYTES = 1 << 20


def _disk_full(path: str) -> bool:
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _DISK_FULL_BYTES


# A decoded title shorter than its container declares by more than this ended early: the file is
# truncated or damaged (ffmpeg decodes what is there and still exits 0).
_SHORTFALL_RATIO = 0.2
_SHORTFALL_MIN_S = 1.0


def _check_complete(job: Job, source: SourceMedia, title: Title) -> None:
    shortfall = source.duration_s - title.duration_s
    if shortfall > max(_SHORTFALL_MIN_S, _SHORTFALL_RATIO * source.duration_s):
        raise InputError(
            f"{job.input}: the source ends early: {title.duration_s:.1f} s decoded of the {source.duration_s:.1f} s "
            "its header declares (truncated or damaged file)",
            hint="nothing was published; re-copy or re-export the source",
        )


def _validate(work: str, job: Job):
    from abrpipe import validate

    report = validate.validate_output(work, dash_schema=job.dash_schema)
    if report.errors:
        first = report.errors[0]
        raise ValidationFailed(
            f"{job.input}: the encoded output failed validation: {len(report.errors)} error(s), first: {first.rule}: {first.message}",
            hint="nothing was published; --no-validate publishes anyway",
        )
    return report


def _record(job: Job, result: JobResult) -> dict[str, Any]:
    assert result.title is not None and result.plan is not None and result.source is not None
    return {
        "abrpipe_version": __version__,
        "input": result.source.path,
        "input_digest": file_digest(result.source.path),
        "profile": job.effective_profile().name,
        "profile_fingerprint": profile_fingerprint(job.profile, job.preset, job.audio_tracks),
        "validated": job.validate,
        "created_unix": int(time.time()),
        "duration_s": round(result.title.duration_s, 3),
        "renditions": [rendition_summary(r) for r in result.title.renditions],
        "dropped_rungs": [{"rung": d.label, "reason": d.reason} for d in result.plan.dropped],
        "notes": list(result.plan.notes),
        "validation": getattr(result.validation, "summary", lambda: None)() if result.validation else None,
    }


def rendition_summary(r: Rendition) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": r.kind,
        "codec": r.codec,
        "width": r.width,
        "height": r.height,
        "frame_rate": float(r.frame_rate) if r.frame_rate else None,
        "channels": r.channels,
        "language": r.language,
        "segments": len(r.segments),
        "duration_s": round(r.duration_s, 3),
        "average_bps": r.average_bps,
        "peak_bps": r.peak_bps,
        "size_bytes": r.size_bytes,
    }


__all__ = ["AbrpipeError", "Event", "Job", "JobResult", "run_job", "prepare_job", "default_output"]
