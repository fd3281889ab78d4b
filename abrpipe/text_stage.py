"""Optional stages for text: subtitles (segmented WebVTT on the video's segment grid) and closed
captions (CEA-608 carried in the H.264 SEI, checked in the encoded rungs).

    subtitles: sidecar SRT/WebVTT files and the source's text tracks -> OUT/subs-<lang>/
                 seg_NNNNN.vtt  one per video segment, same boundaries, with X-TIMESTAMP-MAP
                 playlist.m3u8  HLS subtitle playlist
                 subtitles.vtt  the whole track (DASH: one text/vtt file per Representation)
    captions:  does every H.264 rung carry the source's closed captions? Mark those that do.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from typing import Any

from abrpipe import runner, stages, subtitles, tools
from abrpipe.errors import EncodeError, InputError
from abrpipe.layout import INIT_NAME, LOG_DIR
from abrpipe.model import Rendition, TextSegment, TextTrack, Title
from abrpipe.probe import SAFE_PROTOCOLS, SourceMedia, SubtitleTrack
from abrpipe.subtitles import Cue, SubtitleSpec

TEXT_PREFIX = "subs-"  # track directories: subs-en, subs-fr-forced, subs-en-sdh
SEGMENT_NAME = "seg_{:05d}.vtt"
SIDECAR_NAME = "subtitles.vtt"
MPEGTS_HZ = 90_000  # X-TIMESTAMP-MAP's MPEGTS clock
A53_SIDE_DATA = "ATSC A53 Part 4 Closed Captions"
CC_PROBE_FRAMES = 60  # captions (or their padding) come with every frame once they start
CC_CODECS = frozenset({"h264", "mpeg2video", "hevc"})  # decoders that export A53 side data


def source_specs(source: SourceMedia) -> tuple[list[SubtitleSpec], list[str]]:
    """The source's text tracks as specs, and a note for each bitmap track left out."""
    specs, notes = [], []
    for t in source.subtitles:
        if t.bitmap:
            notes.append(
                f"subtitles #{t.index} ({t.codec}, {t.language or 'und'}) not published: bitmap subtitles cannot "
                "become WebVTT (OCR them into SRT and pass --subtitles)"
            )
            continue
        if t.codec not in subtitles.TEXT_CODECS:
            notes.append(f"subtitles #{t.index} ({t.codec}) not published: ffmpeg cannot turn it into WebVTT")
            continue
        specs.append(
            SubtitleSpec(
                language=_source_language(t),
                stream_index=t.index,
                forced=t.forced,
                sdh=t.hearing_impaired,
                default=t.default,
                name=t.title,
            )
        )
    return specs, notes


def _source_language(t: SubtitleTrack) -> str:
    try:
        return subtitles.language_tag(t.language or "und", "source")
    except InputError:
        return "und"  # a malformed tag in the source is not the user's fault: publish it as undetermined


def extract_command(source: SourceMedia, specs: list[SubtitleSpec], out_dir: str) -> list[str]:
    """One ffmpeg process that converts the source's text tracks to WebVTT files (text-N.vtt)."""
    argv = [tools.ffmpeg_path(), "-hide_banner", "-nostdin", "-v", "error", "-protocol_whitelist", SAFE_PROTOCOLS,
            "-i", source.ffmpeg_url]
    for spec in specs:
        argv += ["-map", f"0:{spec.stream_index}", "-c:s", "webvtt", "-f", "webvtt", "-y",
                 os.path.join(out_dir, f"text-{spec.stream_index}.vtt")]
    return argv


def dry_run_commands(job: Any, source: SourceMedia, work_dir: str) -> list:
    """The text extraction command a job runs after the encode (for --dry-run)."""
    from abrpipe.encode import EncodeCommand

    specs = source_specs(source)[0] if keeps_source_subtitles(job) else []
    if not specs:
        return []
    log_dir = os.path.join(work_dir, LOG_DIR)
    # The printed command creates the log folder it writes into, so that it runs as printed.
    return [EncodeCommand(extract_command(source, specs, log_dir), "subtitles", 0.0, work_dir, (LOG_DIR,))]


def _track_ids(specs: list[SubtitleSpec]) -> list[str]:
    ids: list[str] = []
    for spec in specs:
        base = TEXT_PREFIX + spec.language + ("-forced" if spec.forced else "") + ("-sdh" if spec.sdh else "")
        name, n = base, 2
        while name in ids:
            name, n = f"{base}-{n}", n + 1
        ids.append(name)
    return ids


def _track_name(spec: SubtitleSpec) -> str:
    if spec.name:
        return spec.name
    name = subtitles.language_name(spec.language)
    return name + (" (forced)" if spec.forced else "") + (" SDH" if spec.sdh else "")


def keeps_source_subtitles(job: Any) -> bool:
    """--no-subtitles (or source_subtitles = false in the jobs file or the profile) drops them."""
    return getattr(job, "source_subtitles", True) and getattr(job.effective_profile(), "source_subtitles", True)


class SubtitlesStage:
    name = "subtitles"

    def wanted(self, job: Any) -> bool:
        return bool(getattr(job, "subtitles", ())) or keeps_source_subtitles(job)

    def run(self, ctx: stages.StageContext) -> Title:
        job, title = ctx.job, ctx.title
        specs: list[SubtitleSpec] = list(getattr(job, "subtitles", ()))
        notes: list[str] = []
        from_source: list[SubtitleSpec] = []
        if keeps_source_subtitles(job):
            from_source, notes = source_specs(ctx.source)
        grid = (title.video or title.audio)[0] if (title.video or title.audio) else None
        if grid is None or not (specs or from_source):
            return replace(title, notes=title.notes + tuple(notes))
        cues_of: dict[int | None, list[Cue]] = {}
        if from_source:
            runner.run(extract_command(ctx.source, from_source, ctx.log_dir),
                       log_path=os.path.join(ctx.log_dir, "ffmpeg-subtitles.log"))
            for spec in from_source:
                path = os.path.join(ctx.log_dir, f"text-{spec.stream_index}.vtt")
                cues_of[spec.stream_index] = subtitles.parse_text(_read(path), f"{ctx.source.path} (stream #{spec.stream_index})")
        # One default track at most (RFC 8216: one DEFAULT=YES per group): the first one asked
        # for, the sidecars before the source's tracks.
        first_default = next((i for i, s in enumerate(specs + from_source) if s.default), None)
        all_specs = [replace(s, default=i == first_default) for i, s in enumerate(specs + from_source)]
        tracks = []
        for spec, track_id in zip(all_specs, _track_ids(all_specs), strict=True):
            cues = subtitles.read_cues(spec.path) if spec.path else cues_of[spec.stream_index]
            track, dropped = write_track(ctx.work_dir, track_id, spec, cues, grid)
            if dropped:
                notes.append(f"{spec.label}: {dropped} cue(s) after the end of the title left out")
            tracks.append(track)
        return replace(title, text=title.text + tuple(tracks), notes=title.notes + tuple(notes))


def _read(path: str) -> str:
    with open(path, "rb") as fh:
        return subtitles.decode_text(fh.read(), path)


def write_track(work_dir: str, track_id: str, spec: SubtitleSpec, cues: list[Cue], grid: Rendition) -> tuple[TextTrack, int]:
    """Write one track's WebVTT segments on `grid`'s segment boundaries, its sidecar file, and
    return it with the number of cues left out (starting after the title's end)."""
    ts = grid.timescale
    origin = grid.segments[0].start
    bounds = [((s.start - origin) * 1000 // ts, (s.start + s.duration - origin) * 1000 // ts) for s in grid.segments]
    # LOCAL 0 (the cue times, counted from the start of the title) is the first segment's time on
    # the fMP4 media timeline, in MPEG-TS ticks: the players put the cues on the video's timeline.
    mpegts = origin * MPEGTS_HZ // ts
    per_segment = subtitles.segment_cues(cues, bounds)
    title_end = bounds[-1][1]
    kept = [c for c in cues if c.start_ms < title_end]
    tdir = os.path.join(work_dir, track_id)
    os.makedirs(tdir)
    segments = []
    for n, (seg, seg_cues) in enumerate(zip(grid.segments, per_segment, strict=True), 1):
        name = SEGMENT_NAME.format(n)
        with open(os.path.join(tdir, name), "w", encoding="utf-8") as fh:
            fh.write(subtitles.vtt_document(seg_cues, mpegts=mpegts))
        segments.append(TextSegment(name, seg.start, seg.duration))
    sidecar = os.path.join(tdir, SIDECAR_NAME)
    with open(sidecar, "w", encoding="utf-8") as fh:
        fh.write(subtitles.vtt_document(kept))
    track = TextTrack(
        id=track_id,
        language=spec.language,
        name=_track_name(spec),
        timescale=ts,
        segments=tuple(segments),
        sidecar=SIDECAR_NAME,
        forced=spec.forced,
        sdh=spec.sdh,
        default=spec.default,
        cue_count=len(kept),
        sidecar_size_bytes=os.path.getsize(sidecar),
    )
    return track, len(cues) - len(kept)


# -- closed captions --------------------------------------------------------------------------------

def has_a53_captions(path: str, frames: int = CC_PROBE_FRAMES) -> bool:
    """True when the first video frames of `path` carry CEA-608/708 captions (A53 side data)."""
    argv = [tools.ffprobe_path(), "-v", "error", "-protocol_whitelist", SAFE_PROTOCOLS, "-select_streams", "v:0",
            "-read_intervals", f"%+#{frames}", "-show_entries", "frame=side_data_list:side_data=side_data_type", "-of", "json",
            "file:" + os.path.abspath(path)]
    try:
        data = json.loads(runner.capture(argv))
    except (EncodeError, json.JSONDecodeError):
        return False
    return any(
        side.get("side_data_type") == A53_SIDE_DATA
        for frame in (data.get("frames") or []) + (data.get("packets_and_frames") or [])
        for side in frame.get("side_data_list") or []
    )


class CaptionsStage:
    name = "captions"

    def wanted(self, job: Any) -> bool:
        return True

    def run(self, ctx: stages.StageContext) -> Title:
        title, source = ctx.title, ctx.source
        avc = [v for v in title.video if v.codec.startswith(("avc1", "avc3"))]
        if not avc or source.video is None or source.video.codec not in CC_CODECS or not has_a53_captions(source.path):
            return title
        marked, notes = {}, []
        for v in avc:
            # The init segment and the first media segment make a playable file to probe.
            sample = os.path.join(ctx.log_dir, f"cc-{v.id}.mp4")
            with open(sample, "wb") as out:
                for name in (INIT_NAME, v.segments[0].uri):
                    with open(os.path.join(ctx.work_dir, v.id, name), "rb") as part:
                        shutil.copyfileobj(part, out)
            if has_a53_captions(sample):
                marked[v.id] = "CC1"
            elif v.frame_rate and ctx.plan.base_fps and v.frame_rate < ctx.plan.base_fps:
                notes.append(f"{v.id}: no closed captions at {float(v.frame_rate):g} fps (a reduced frame rate drops them)")
            else:
                notes.append(f"{v.id}: the source's closed captions did not reach this rendition")
            os.remove(sample)
        video = tuple(replace(v, closed_captions=marked.get(v.id)) for v in title.video)
        return replace(title, video=video, notes=title.notes + tuple(notes))


stages.register(SubtitlesStage, order=stages.ORDER_TEXT)
stages.register(CaptionsStage, order=stages.ORDER_TEXT)
