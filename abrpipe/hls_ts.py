"""Legacy HLS with MPEG-TS segments, from the same encoded frames as the CMAF set.

Older set-top boxes and TVs play HLS only as MPEG-TS. Nothing is encoded again: each H.264 rendition's
CMAF segments (init + seg_*.m4s, read as one fragmented MP4 through FFmpeg's concatf protocol) are
remuxed with `-c copy` by FFmpeg's segment muxer, cut at the CMAF segment starts, so the TS set has the
same frames on the same grid. A remux after the encode (rather than a tee muxer inside it) leaves the
encode untouched, cuts exactly where the CMAF boundaries were measured, and can be checked segment by
segment against them.

Audio is muxed into each video variant (the default AAC rendition): the oldest HLS clients (HLS version
3 devices, many TVs) do not play alternate audio renditions, while every HLS client plays a variant
that carries its own audio. Only the default audio language is offered in the TS set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from fractions import Fraction

from abrpipe import runner, stages, tools, ts
from abrpipe.errors import OutputError

TS_DIR = "ts"  # ts/<video rendition id>/seg_NNNNN.ts + playlist.m3u8
TS_MASTER = "master-ts.m3u8"
SEGMENT_PATTERN = "seg_%05d.ts"
TS_VIDEO_FAMILY = "avc"
TS_AUDIO_CODEC_PREFIX = "mp4a.40.2"  # AAC-LC


@dataclass(frozen=True)
class TsSegmentInfo:
    uri: str  # relative to the variant's directory
    duration_s: float
    size_bytes: int


@dataclass(frozen=True)
class TsVariant:
    id: str  # the video rendition it carries; its directory is ts/<id>/
    video_id: str
    audio_id: str | None
    codecs: str
    width: int | None
    height: int | None
    frame_rate: Fraction | None
    segments: tuple[TsSegmentInfo, ...]

    @property
    def directory(self) -> str:
        return f"{TS_DIR}/{self.id}"

    @property
    def peak_bps(self) -> int:
        return max((round(s.size_bytes * 8 / s.duration_s) for s in self.segments if s.duration_s), default=0)

    @property
    def average_bps(self) -> int:
        total = sum(s.duration_s for s in self.segments)
        return round(sum(s.size_bytes for s in self.segments) * 8 / total) if total else 0

    @property
    def max_segment_s(self) -> float:
        return max((s.duration_s for s in self.segments), default=0.0)


def _segment_list(rendition, list_dir: str) -> str:
    """Writes the list of one rendition's init + segments (paths relative to the work area) for
    FFmpeg's concatf protocol, which reads them as one fragmented MP4; a file, not the command line,
    so that a long title's thousands of segments never hit the argument length limit."""
    from abrpipe.layout import INIT_NAME

    path = os.path.join(list_dir, f"ts-{rendition.id}.list")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{rendition.id}/{name}\n" for name in [INIT_NAME] + [s.uri for s in rendition.segments])
    return path


def _audio_for_ts(title):
    """The default AAC-LC audio rendition (stereo first), or None."""
    aac = [a for a in title.audio if a.codec.startswith(TS_AUDIO_CODEC_PREFIX)]
    return min(aac, key=lambda a: (not a.default, (a.channels or 2) != 2, -(a.peak_bps or 0)), default=None)


def _demuxed_start_ticks(work_dir: str, video) -> int:
    """The first video timestamp FFmpeg's mp4 demuxer gives this rendition, in its timescale.

    With B-frames and negative composition offsets (no edit list), the demuxer shifts presentation
    times by the largest negative offset; the audio is delayed by the same amount in the remux, so
    that audio and video keep the sync the CMAF segments have."""
    from abrpipe.layout import INIT_NAME

    argv = [
        tools.ffprobe_path(), "-v", "error",
        "-protocol_whitelist", "file,concat",  # the concat protocol reads local files only
        "-select_streams", "v:0", "-show_entries", "packet=pts",
        "-read_intervals", "%+#1",  # the first packet only
        "-of", "csv=p=0",
        f"concat:{video.id}/{INIT_NAME}|{video.id}/{video.segments[0].uri}",
    ]
    result = runner.capture_result(argv, timeout_s=60, cwd=work_dir)
    try:
        return int(result.stdout.split()[0].strip(","))
    except (ValueError, IndexError):
        raise OutputError(f"{work_dir}/{video.id}: cannot read the first video timestamp for the MPEG-TS remux "
                          f"({result.stderr.strip()[-200:]})") from None


def remux_command(video, audio, shift_s: float, frame_s: float, list_dir: str) -> list[str]:
    """ffmpeg argv (run in the work area) that remuxes one video rendition (+ audio) into TS segments."""
    boundaries = [(s.start / video.timescale) + shift_s for s in video.segments[1:]]
    argv = [
        tools.ffmpeg_path(), "-hide_banner", "-nostdin", "-v", "error", "-progress", "pipe:1", "-nostats",
        "-protocol_whitelist", "file,concatf",  # local files, listed in a file
        "-i", f"concatf:{_segment_list(video, list_dir)}",
    ]
    if audio is not None:
        # The demuxer moved the video by shift_s (see _demuxed_start_ticks): move the audio with it.
        argv += ["-itsoffset", f"{shift_s:.6f}", "-protocol_whitelist", "file,concatf",
                 "-i", f"concatf:{_segment_list(audio, list_dir)}"]
    argv += ["-map", "0:v:0"] + (["-map", "1:a:0"] if audio is not None else [])
    argv += [
        "-c", "copy",  # the same encoded frames: no second encode
        "-copyts",  # keep the CMAF media timeline: timestamps run on across segments, never reset
        "-muxdelay", "0", "-muxpreload", "0",  # no 0.7 s mux delay added on top of that timeline
        "-f", "segment",
        "-segment_format", "mpegts",  # each segment is a complete TS: PAT and PMT first
        # Cut at the CMAF segment starts (each a key frame); half a frame of slack for rounding.
        "-segment_times", ",".join(f"{t:.6f}" for t in boundaries) or "1e9",
        "-segment_time_delta", f"{frame_s / 2:.6f}",
        "-segment_start_number", "1",
        "-reset_timestamps", "0",  # continuous timestamps across segments (the default, said aloud)
        f"{TS_DIR}/{video.id}/{SEGMENT_PATTERN}",
    ]
    return argv


class HlsTsStage:
    """Remuxes the H.264 renditions to MPEG-TS, checks every segment, adds the TS set to the Title."""

    name = "hls-ts"

    def wanted(self, job) -> bool:
        return bool(job.effective_profile().hls_ts)

    def run(self, ctx: stages.StageContext):
        title = ctx.title
        videos = [v for v in title.video if v.codec_family == TS_VIDEO_FAMILY]
        if not videos:
            return title
        audio = _audio_for_ts(title)
        variants = []
        for video in videos:
            os.makedirs(os.path.join(ctx.work_dir, TS_DIR, video.id), exist_ok=True)
            start = _demuxed_start_ticks(ctx.work_dir, video)
            shift_s = (start - video.segments[0].start) / video.timescale
            frame_s = float(1 / video.frame_rate) if video.frame_rate else 0.04
            argv = remux_command(video, audio, shift_s, frame_s, ctx.log_dir)
            log_path = os.path.join(ctx.log_dir, f"ffmpeg-ts-{video.id}.log")
            runner.run(argv, duration_s=video.duration_s, log_path=log_path, cwd=ctx.work_dir)
            segments = _check_segments(ctx.work_dir, video)
            codecs = video.codec + (f",{audio.codec}" if audio is not None else "")
            variants.append(TsVariant(video.id, video.id, audio.id if audio else None, codecs, video.width,
                                      video.height, video.frame_rate, segments))
        return replace(title, ts=tuple(variants))


def _check_segments(work_dir: str, video) -> tuple[TsSegmentInfo, ...]:
    """One TS segment per CMAF segment, each starting with PAT/PMT and an IDR at its CMAF segment's
    start time (on the TS clock: the muxer may move the whole timeline by a constant, never per segment)."""
    directory = os.path.join(work_dir, TS_DIR, video.id)
    names = sorted(n for n in os.listdir(directory) if n.endswith(".ts"))
    if len(names) != len(video.segments):
        raise OutputError(f"{directory}: the MPEG-TS remux wrote {len(names)} segment(s) for {len(video.segments)} CMAF segment(s)")
    out = []
    origin = None
    for name, cmaf in zip(names, video.segments, strict=True):
        path = os.path.join(directory, name)
        try:
            seg = ts.read_file(path)
        except (OSError, ts.TsError) as exc:
            raise OutputError(f"{path}: the MPEG-TS remux wrote an unreadable segment ({exc})") from None
        offset = round((cmaf.start - video.segments[0].start) * ts.PTS_HZ / video.timescale)
        if origin is None and seg.first_video_pts is not None:
            origin = seg.first_video_pts
        expected = ((origin or 0) + offset) % ts.PTS_WRAP
        if not seg.psi_first or not seg.starts_with_idr or seg.first_video_pts is None or abs(seg.first_video_pts - expected) > 1:
            raise OutputError(
                f"{path}: the MPEG-TS segment does not match CMAF segment {cmaf.uri} (PAT/PMT first: {seg.psi_first}, "
                f"IDR first: {seg.starts_with_idr}, first PTS {seg.first_video_pts} where {expected} was expected)"
            )
        out.append(TsSegmentInfo(name, cmaf.duration / video.timescale, os.path.getsize(path)))
    return tuple(out)


stages.register(HlsTsStage, order=stages.ORDER_REMUX)
