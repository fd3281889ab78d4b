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

from abrpipe import (  # noqa: F401  (protect and text_stage register their stages)
    __version__,
    layout,
    package,
    protect,
    publish,
    stages,
    storage,
    text_stage,
    workunits,
)
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
    endpoint: str | None = None  # object-store endpoint for s3:// inputs and outputs (credentials: boto3's chain)
    subtitles: tuple = ()  # subtitles.SubtitleSpec: sidecar files to publish
    source_subtitles: bool = True  # also publish the source's text tracks
    # Content protection (abrpipe.protect): scheme, key file paths, signalling options. Never a
    # key: keys travel by a 0600 file or the environment, so a Job can be logged or pickled.
    protection: Any = None
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
    published: dict[str, Any] = field(default_factory=dict)  # what the publish target reports (objects uploaded...)


EventCallback = Callable[[Event], None]


def default_output(input_path: str) -> str:
    """input.mp4 -> input-abr/ beside it; s3://b/in.mp4 -> s3://b/in-abr/; another URL -> in-abr/ here."""
    if input_path.lower().startswith("s3://"):
        return os.path.splitext(input_path.rstrip("/"))[0] + "-abr/"
    if storage.is_url(input_path):
        stem = os.path.splitext(os.path.basename(input_path.split("?", 1)[0].rstrip("/")))[0] or "input"
        return os.path.abspath(stem + "-abr")
    base, _ = os.path.splitext(os.path.abspath(input_path))
    return base + "-abr"


def local_input(job: Job, on_event: EventCallback | None = None) -> str:
    """The path ffmpeg reads: the input itself, or for s3:// the verified copy in scratch space."""
    url = storage.parse_input(job.input)
    if url is None:
        return job.input
    emit = on_event or (lambda e: None)
    return storage.fetch_input(url, endpoint=job.endpoint, say=lambda m: emit(Event("download", m)), owner=job.output)


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


def profile_fingerprint(
    profile: Profile, preset: str | None, audio_tracks: str | tuple | None = None, text: list | None = None
) -> str:
    """Identifies what a job asks for (the resolved profile plus the job's overrides): a batch skips
    a job whose published record carries the same fingerprint, input digest and abrpipe version."""
    data = {k: v for k, v in profile.to_dict().items() if k not in ("origin", "path")}
    if preset:
        data["preset"] = preset
    if audio_tracks is not None:
        data["audio_tracks"] = audio_tracks if isinstance(audio_tracks, str) else list(audio_tracks)
    if text is not None:
        data["text"] = text
    return "sha256:" + hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def text_fingerprint(job: Job) -> list | None:
    """What a job asks for in subtitles (None for the default: the source's tracks, no sidecar), with
    each sidecar's content digest, so that a changed subtitle file is encoded again."""
    if not job.subtitles and job.source_subtitles:
        return None
    sidecars = [
        {"language": s.language, "forced": s.forced, "sdh": s.sdh, "default": s.default,
         "digest": file_digest(s.path) if s.path and os.path.isfile(s.path) else None}
        for s in job.subtitles
    ]
    return [{"source_subtitles": job.source_subtitles}, *sidecars]


def prepare_job(job: Job, on_event: EventCallback | None = None) -> tuple[SourceMedia, LadderPlan]:
    emit = on_event or (lambda e: None)
    path = local_input(job, on_event)
    emit(Event("probe", job.input))
    source = probe(path, allow_references=job.allow_references)
    emit(Event("plan", job.effective_profile().name))
    return source, plan_ladder(source, job.effective_profile(), audio_tracks=job.audio_tracks)


def run_job(
    job: Job,
    on_event: EventCallback | None = None,
    *,
    before_publish: Callable[[str, JobResult], None] | None = None,
) -> JobResult:
    """Run one job. `before_publish(work_dir, result)` may add files (reports) to the validated work
    area, which already holds the record, so that they appear in OUT together with everything else,
    in the one rename."""
    emit = on_event or (lambda e: None)
    result = JobResult(job)
    clock = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.monotonic()
        result.timings_s[stage] = round(now - clock, 3)
        clock = now

    target = publish.target_for(job.output, endpoint=job.endpoint)
    target.check()  # a destination that cannot be written fails before the input is read
    result.source, result.plan = prepare_job(job, on_event)
    lap("probe_plan")
    work = target.prepare()
    # Finished work units live beside the work area, so that a crashed run's are found again.
    units_root = layout.units_dir(work.removesuffix(layout.PARTIAL_SUFFIX))
    log_dir = os.path.join(work, LOG_DIR)
    os.makedirs(log_dir)
    ok = False
    try:
        emit(Event("encode", f"{len(result.plan.video)} video + {len(result.plan.audio)} audio renditions"))
        try:
            result.encode = workunits.encode_title(
                result.source, result.plan, work,
                units_root=units_root,
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
        result.record = _record(job, result, published_as=target.display)
        with open(os.path.join(work, RECORD_NAME), "w", encoding="utf-8") as fh:
            json.dump(result.record, fh, indent=2, default=str)
        if before_publish:  # sees the record in the work area (the HTML report reads it)
            before_publish(work, result)
        if not job.keep_logs:
            publish.discard(log_dir)
        emit(Event("publish", job.output))
        result.published = target.publish(work, lambda m: emit(Event("publish", m)))
        target.discard(work)  # a local target renamed it away; an object store leaves the uploaded copy
        workunits.discard_units(units_root)  # published: nothing left to resume
        lap("publish")
        ok = True
    except OSError as exc:
        raise OutputError(f"{job.output}: {exc.strerror or exc} while writing the output", hint="check free space and permissions") from None
    except BaseException as exc:
        # Finished work units are kept for the next run when the encode was stopped or an ffmpeg
        # failed (resume); a bad input, a full disk or an invalid result would only repeat.
        if not isinstance(exc, Interrupted | EncodeError | KeyboardInterrupt):
            workunits.discard_units(units_root)
        raise
    finally:
        if not ok:
            target.discard(work)
    url = storage.parse_input(job.input)
    if url is not None:
        storage.forget_input(url, job.output)  # the downloaded copy in scratch space
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

    allow_clear = bool(getattr(job.protection, "allow_clear", False))
    report = validate.validate_output(work, dash_schema=job.dash_schema, allow_clear=allow_clear)
    if report.errors:
        first = report.errors[0]
        raise ValidationFailed(
            f"{job.input}: the encoded output failed validation: {len(report.errors)} error(s), first: {first.rule}: {first.message}",
            hint="nothing was published; --no-validate publishes anyway",
        )
    return report


def _record(job: Job, result: JobResult, *, published_as: str) -> dict[str, Any]:
    """The job record (OUT/abrpipe.json). It is written in the work area but describes OUT, where it is
    published: the validation's `path` names OUT (`published_as`), not the work area it checked."""
    assert result.title is not None and result.plan is not None and result.source is not None
    validation = result.validation.summary() if result.validation else None
    if validation is not None:
        validation["path"] = published_as
    return {
        "abrpipe_version": __version__,
        "input": job.input if storage.is_url(job.input) else result.source.path,
        "input_digest": None if result.source.is_url else file_digest(result.source.path),  # an http(s) URL: nothing to hash
        "profile": job.effective_profile().name,
        "profile_fingerprint": profile_fingerprint(job.profile, job.preset, job.audio_tracks, text_fingerprint(job)),
        "validated": job.validate,
        "created_unix": int(time.time()),
        "duration_s": round(result.title.duration_s, 3),
        "renditions": [rendition_summary(r) for r in result.title.renditions],
        "dropped_rungs": [{"rung": d.label, "reason": d.reason} for d in result.plan.dropped],
        "notes": list(result.plan.notes) + list(result.title.notes),
        "subtitles": [
            {"id": t.id, "language": t.language, "name": t.name, "forced": t.forced, "sdh": t.sdh,
             "default": t.default, "cues": t.cue_count}
            for t in result.title.text
        ],
        "closed_captions": sorted({v.closed_captions for v in result.title.video if v.closed_captions}),
        "validation": validation,
        "timings_s": dict(result.timings_s),  # probe_plan, encode, each optional stage, package, validate
        **delivery_summary(result.title),
    }


def delivery_summary(title: Title) -> dict[str, Any]:
    """Thumbnails and the MPEG-TS set, when the job made them (absent otherwise)."""
    out: dict[str, Any] = {}
    if title.images:
        out["thumbnails"] = [{"directory": t.id, "spec": str(t.spec), "count": t.count, "sheets": len(t.sheets)} for t in title.images]
    if title.ts:
        out["hls_ts"] = [{"id": v.id, "directory": v.directory, "segments": len(v.segments), "average_bps": v.average_bps,
                          "peak_bps": v.peak_bps} for v in title.ts]
    return out


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
        "protection": r.protection.summary() if r.protection else None,
    }


__all__ = ["AbrpipeError", "Event", "Job", "JobResult", "run_job", "prepare_job", "default_output"]
