"""plan: source + profile -> LadderPlan. Pure: no I/O, no processes.

It decides each rung's output size (the source's display aspect ratio kept, even dimensions,
never upscaled), frame rate (the source's, made constant, capped), GOP in frames (the same keyframe
timestamps on every rung), and which audio tracks become which renditions. Rungs it cannot use are
returned with the reason, which `abrpipe ladder SOURCE` prints.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from fractions import Fraction

from abrpipe.errors import InputError
from abrpipe.model import DroppedRung, LadderPlan, PlannedAudio, PlannedRung
from abrpipe.probe import AudioTrack, SourceMedia
from abrpipe.profile import AudioRungSpec, Profile, VideoRungSpec
from abrpipe.units import format_kbps

# A rung at most this much above the source is clamped to the source size instead of dropped
# (a 853x479 source still gets its "480p" top rung, at 852x478).
CLAMP_TOLERANCE = 1.10


def plan_ladder(source: SourceMedia, profile: Profile, *, audio_tracks: str | tuple | None = None) -> LadderPlan:
    notes: list[str] = []
    dropped: list[DroppedRung] = []
    video = source.video
    if profile.rungs and video is None:
        raise InputError(
            f"{source.path}: has no video stream (audio only)",
            hint="choose an audio-only profile, e.g. --profile audio-only",
        )
    rungs: list[PlannedRung] = []
    base_fps: Fraction | None = None
    gop_frames = 0
    deinterlace = tonemap = False
    if video is not None and profile.rungs:
        deinterlace = video.interlaced
        source_fps = video.frame_rate * (2 if deinterlace else 1)  # fields become frames (Apple 1.14-1.15)
        if deinterlace:
            notes.append(f"interlaced source: deinterlaced to {float(source_fps):g} fps")
        if video.variable_frame_rate:
            notes.append(f"variable frame rate source: made constant at {float(source_fps):.3f} fps")
        base_fps = _cap_fps(source_fps, profile.max_fps)
        if base_fps != source_fps:
            notes.append(f"{float(source_fps):g} fps source: output at {float(base_fps):g} fps (max_fps {profile.max_fps:g})")
        if video.bit_depth > 8:
            notes.append(f"{video.bit_depth}-bit source: converted to 8-bit 4:2:0")
        if video.is_hdr:
            tonemap = True
            notes.append(f"HDR source ({video.color_transfer}): tone-mapped to SDR BT.709")
        if video.rotation_deg:
            notes.append(f"rotated {video.rotation_deg} degrees: output is upright")
        divisors = [_fps_divisor(base_fps, spec.max_fps) for spec in profile.rungs]
        lcm = math.lcm(*divisors)
        gop_frames = max(lcm, round(profile.gop_s * base_fps / lcm) * lcm)
        rungs, dropped = _plan_video(video.display_width, video.display_height, profile, base_fps, divisors, gop_frames)
    audio = _plan_audio(source.audio, profile.audio, profile.audio_tracks if audio_tracks is None else audio_tracks)
    if profile.audio and not source.audio:
        notes.append("source has no audio: video-only ladder")
    thumbnails = profile.thumbnails if rungs else None
    if profile.thumbnails and not rungs:
        notes.append("no video: no thumbnails")
    if profile.hls_ts:
        _check_hls_ts(source, profile, rungs, audio)
    if not rungs and not audio:
        raise InputError(f"{source.path}: nothing to encode with profile {profile.name!r} (no usable video or audio)")
    return LadderPlan(
        profile_name=profile.name,
        preset=profile.preset,
        rate_control=profile.rate_control,
        base_fps=base_fps,
        gop_frames=gop_frames,
        segment_gops=profile.segment_gops,
        video=tuple(rungs),
        audio=tuple(audio),
        dropped=tuple(dropped),
        deinterlace=deinterlace,
        tonemap=tonemap,
        notes=tuple(notes),
        outputs=profile.outputs,
        encoder_options=profile.encoder_options,
        audio_segment_s=profile.segment_s,
        thumbnails=thumbnails,
        hls_ts=profile.hls_ts,
    )


# What the MPEG-TS set carries: the codecs older HLS devices play in TS (H.264 by any encoder, AAC-LC).
TS_AUDIO_CODECS = ("aac",)


def ts_video(rung: PlannedRung) -> bool:
    from abrpipe import codecs
    from abrpipe.hls_ts import TS_VIDEO_FAMILY

    return getattr(codecs.get(rung.codec), "family", None) == TS_VIDEO_FAMILY


def _check_hls_ts(source: SourceMedia, profile: Profile, rungs: list[PlannedRung], audio: list[PlannedAudio]) -> None:
    if not any(ts_video(r) for r in rungs):
        raise InputError(
            f"{source.path}: hls_ts needs an H.264 video rung (profile {profile.name!r} has none for this source)",
            hint="MPEG-TS HLS is for older devices, which play H.264 only; add an h264 rung or drop --hls-ts",
        )
    if audio and not any(a.codec in TS_AUDIO_CODECS for a in audio):
        raise InputError(
            f"{source.path}: hls_ts needs an AAC audio rung (profile {profile.name!r} has none)",
            hint="the MPEG-TS variants carry AAC-LC audio; add an aac audio rung or drop --hls-ts",
        )


def _cap_fps(fps: Fraction, max_fps: float) -> Fraction:
    return fps / _fps_divisor(fps, max_fps)


def _fps_divisor(fps: Fraction, max_fps: float | None) -> int:
    """Drop whole frames only (60 -> 30, 120 -> 60): keyframe timestamps stay shared."""
    if not max_fps or fps <= Fraction(max_fps).limit_denominator(1001) * Fraction(1001, 1000):
        return 1
    return math.ceil(fps / Fraction(max_fps).limit_denominator(1001) - Fraction(1, 1000))


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def _fit(src_w: int, src_h: int, spec: VideoRungSpec) -> tuple[int, int, float]:
    """Fit the source's display aspect into the rung's box. Returns (w, h, scale vs source)."""
    portrait = src_h > src_w
    if spec.width:
        box_w, box_h = (spec.height, spec.width) if portrait else (spec.width, spec.height)
        scale = min(box_w / src_w, box_h / src_h)
    else:
        # A bare height means the short side for portrait sources ("1080p" phone video is 1080 wide).
        scale = spec.height / (src_w if portrait else src_h)
    return _even(src_w * scale), _even(src_h * scale), scale


def _plan_video(src_w, src_h, profile: Profile, base_fps: Fraction, divisors, gop_frames):
    codecs_used = {spec.codec for spec in profile.rungs}

    def planned(spec: VideoRungSpec, w: int, h: int, divisor: int) -> PlannedRung:
        prefix = f"{spec.codec}-" if len(codecs_used) > 1 or spec.codec != "h264" else ""
        return PlannedRung(
            id=_safe_id(f"{prefix}{min(w, h)}p-{format_kbps(spec.bitrate_kbps)}"),
            codec=spec.codec,
            width=w,
            height=h,
            fps=base_fps / divisor,
            fps_divisor=divisor,
            bitrate_kbps=spec.bitrate_kbps,
            maxrate_kbps=spec.maxrate_kbps,
            bufsize_kbps=spec.bufsize_kbps,
            crf=profile.crf_of(spec),
            codec_profile=spec.codec_profile,
            level=spec.level,
            gop_frames=gop_frames // divisor,
            rate_control=profile.rate_control_of(spec),
        )

    source_w, source_h = max(2, src_w - src_w % 2), max(2, src_h - src_h % 2)  # the source size, made even
    rungs: list[PlannedRung] = []
    dropped: list[DroppedRung] = []
    for spec, divisor in zip(profile.rungs, divisors, strict=True):
        w, h, scale = _fit(src_w, src_h, spec)
        if scale > CLAMP_TOLERANCE:
            dropped.append(DroppedRung(spec.label, f"above the source size ({src_w}x{src_h}): abrpipe never upscales"))
            continue
        size = (source_w, source_h) if scale > 1 else (w, h)
        rung = planned(spec, size[0], size[1], divisor)
        if any(r.id == rung.id for r in rungs):
            dropped.append(DroppedRung(spec.label, f"same size and bitrate as {rung.id} once fitted to the source"))
            continue
        rungs.append(rung)
    if not rungs and profile.rungs:
        # A source smaller than every rung still gets one rendition: the lowest rung at source size.
        rungs.append(planned(profile.rungs[-1], source_w, source_h, divisors[-1]))
        last = dropped[-1]
        dropped[-1] = replace(last, reason=last.reason + "; the lowest rung is kept at source size")
    return rungs, dropped


def _safe_id(text: str) -> str:
    """Rendition ids are directory names and DASH Representation ids: no spaces, no slashes."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).strip("._") or "r"


def select_audio_tracks(tracks: tuple[AudioTrack, ...], which: str | tuple) -> list[AudioTrack]:
    if not tracks:
        return []
    if which == "first":
        return [tracks[0]]
    if which == "all":
        return list(tracks)
    chosen: list[AudioTrack] = []
    for item in which:
        if isinstance(item, int):
            if item >= len(tracks):
                raise InputError(f"audio track {item} requested, but the source has {len(tracks)} audio track(s)")
            chosen.append(tracks[item])
        else:
            matches = [t for t in tracks if t.language == item]
            if not matches:
                languages = ", ".join(sorted({t.language or "und" for t in tracks}))
                raise InputError(f"no audio track in language {item!r} (the source has: {languages})")
            chosen.extend(matches)
    return list(dict.fromkeys(chosen))


def _plan_audio(tracks, rungs: tuple[AudioRungSpec, ...], which) -> list[PlannedAudio]:
    chosen = select_audio_tracks(tracks, which)
    planned: list[PlannedAudio] = []
    many_tracks = len(chosen) > 1
    for rung in rungs:
        for n, track in enumerate(chosen):
            channels = rung.channels
            if channels > 2 and track.channels < channels:
                continue  # no fake surround from a stereo track: that rung is for surround sources only
            suffix = f"-{track.language or f'track{track.position}'}" if many_tracks else ""
            layout = {1: "mono", 2: "", 6: "-5.1", 8: "-7.1"}.get(channels, f"-{channels}ch")
            planned.append(
                PlannedAudio(
                    id=_safe_id(f"audio-{rung.codec}-{rung.bitrate_kbps}k{layout}{suffix}"),
                    codec=rung.codec,
                    bitrate_kbps=rung.bitrate_kbps,
                    channels=channels,
                    sample_rate=rung.sample_rate,
                    source_position=track.position,
                    language=track.language,
                    name=track.title or _language_name(track.language, n),
                    default=(n == 0),
                )
            )
    return planned


_LANGUAGES = {"eng": "English", "fra": "Français", "fre": "Français", "deu": "Deutsch", "ger": "Deutsch",
              "spa": "Español", "ita": "Italiano", "por": "Português", "jpn": "日本語", "zho": "中文", "chi": "中文"}


def _language_name(language: str | None, n: int) -> str:
    if language:
        return _LANGUAGES.get(language, language)
    return "Main" if n == 0 else f"Track {n + 1}"


def describe_rung(r: PlannedRung) -> str:
    return f"{r.codec} {r.width}x{r.height} {float(r.fps):g}fps {format_kbps(r.bitrate_kbps)}"
