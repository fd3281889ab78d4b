"""The domain types the stages share: what the plan asks for, how encode cuts it into work units,
and what the encoded title is. Stages import this module, never each other for their types.

Frozen dataclasses, units in field names; nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from abrpipe.units import format_kbps

if TYPE_CHECKING:  # what optional stages add to a Title (their modules import this one)
    from abrpipe.hls_ts import TsVariant
    from abrpipe.protect.model import Protection
    from abrpipe.thumbnails import ImageTrack, ThumbnailSpec

# What a profile asks for, one rung at a time (parsed and checked by profile.py).


@dataclass(frozen=True)
class VideoRungSpec:
    height: int
    width: int | None  # None: from the source's aspect ratio
    bitrate_kbps: int
    maxrate_kbps: int
    bufsize_kbps: int
    codec: str
    rate_control: str | None = None  # vbr, crf (capped CRF) or 2pass; None: the profile's
    crf: int | None = None  # for capped CRF; None: the profile's crf
    max_fps: float | None = None
    codec_profile: str | None = None
    level: str | None = None

    @property
    def label(self) -> str:
        size = f"{self.width}x{self.height}" if self.width else f"{self.height}p"
        return f"{self.codec} {size} @ {format_kbps(self.bitrate_kbps)}"


@dataclass(frozen=True)
class AudioRungSpec:
    codec: str
    bitrate_kbps: int
    channels: int
    sample_rate: int = 48000

    @property
    def label(self) -> str:
        return f"{self.codec} {format_kbps(self.bitrate_kbps)} {self.channels}ch"


@dataclass(frozen=True)
class PlannedRung:
    id: str  # also the rendition's directory name
    codec: str
    width: int
    height: int
    fps: Fraction
    fps_divisor: int  # 1, or the factor by which this rung drops frames of the base rate
    bitrate_kbps: int
    maxrate_kbps: int
    bufsize_kbps: int
    crf: int | None
    codec_profile: str | None
    level: str | None
    gop_frames: int
    rate_control: str = "vbr"  # vbr, crf (capped CRF) or 2pass


@dataclass(frozen=True)
class PlannedAudio:
    id: str
    codec: str
    bitrate_kbps: int
    channels: int
    sample_rate: int
    source_position: int  # ffmpeg's a:N
    language: str | None
    name: str
    default: bool


@dataclass(frozen=True)
class DroppedRung:
    label: str
    reason: str


@dataclass(frozen=True)
class LadderPlan:
    profile_name: str
    preset: str
    rate_control: str
    base_fps: Fraction | None  # the constant frame rate every rung derives from
    gop_frames: int  # at base_fps
    segment_gops: int
    video: tuple[PlannedRung, ...]
    audio: tuple[PlannedAudio, ...]
    dropped: tuple[DroppedRung, ...]
    deinterlace: bool
    tonemap: bool
    notes: tuple[str, ...]
    outputs: tuple[str, ...]
    encoder_options: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    audio_segment_s: float = 6.0  # segment duration of an audio-only ladder (no GOP grid to follow)
    thumbnails: ThumbnailSpec | None = None  # sprite sheets from one more branch of the video split
    hls_ts: bool = False  # also an MPEG-TS HLS set, remuxed from the CMAF segments

    @property
    def gop_s(self) -> float:
        return float(self.gop_frames / self.base_fps) if self.base_fps else 0.0

    @property
    def segment_s(self) -> float:
        return self.gop_s * self.segment_gops if self.base_fps else self.audio_segment_s

    def options_for(self, codec: str) -> dict[str, str]:
        return dict(dict(self.encoder_options).get(codec, ()))


@dataclass(frozen=True)
class IFrame:
    offset: int  # byte range of the moof through the end of the key frame's data
    length: int
    pts: int


@dataclass(frozen=True)
class Segment:
    uri: str  # relative to the rendition directory
    start: int  # tfdt, timescale units
    duration: int
    size_bytes: int
    starts_with_sync: bool
    iframes: tuple[IFrame, ...]


@dataclass(frozen=True)
class Rendition:
    id: str
    kind: str  # "video" | "audio"
    codec: str  # RFC 6381, from the init segment
    timescale: int
    segments: tuple[Segment, ...]
    width: int | None = None
    height: int | None = None
    frame_rate: Fraction | None = None
    channels: int | None = None
    sample_rate: int | None = None
    language: str | None = None
    name: str | None = None
    default: bool = False
    codec_family: str | None = None  # groups video renditions into DASH AdaptationSets
    group: str | None = None  # audio: the HLS group (one per audio rung; its members are languages)
    closed_captions: str | None = None  # video: the CEA-608 channel its SEI carries ("CC1"), if any
    protection: Protection | None = None  # set by the protection stage, read from the encrypted init

    @property
    def duration_s(self) -> float:
        return sum(s.duration for s in self.segments) / self.timescale

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.segments)

    @property
    def average_bps(self) -> int:
        return round(self.size_bytes * 8 / self.duration_s) if self.duration_s else 0

    @property
    def peak_bps(self) -> int:
        """The peak segment bit rate as RFC 8216 and Apple define it: the highest bit rate of any run
        of consecutive segments lasting 0.5 to 1.5 target durations (a short last segment alone does
        not count: its few frames, mostly a key frame, say little about what a player must sustain)."""
        target = max(1, math.floor(self.max_segment_s + 0.5)) * self.timescale  # this rendition's EXT-X-TARGETDURATION
        best = 0
        for i in range(len(self.segments)):
            size = duration = 0
            for seg in self.segments[i:]:
                size, duration = size + seg.size_bytes, duration + seg.duration
                if duration > 1.5 * target:
                    break
                if duration >= 0.5 * target:
                    best = max(best, round(size * 8 * self.timescale / duration))
        return best or self.average_bps  # no such run (a title shorter than half a target): the average

    @property
    def max_segment_s(self) -> float:
        return max((s.duration / self.timescale for s in self.segments), default=0.0)


@dataclass(frozen=True)
class TextSegment:
    uri: str  # relative to the track directory
    start: int  # on the video's segment grid, timescale units
    duration: int


@dataclass(frozen=True)
class TextTrack:
    """A subtitle track: WebVTT segments on the video's segment grid (HLS) and the whole track as
    one WebVTT file (DASH), in the directory `id`."""

    id: str
    language: str  # BCP 47
    name: str
    timescale: int
    segments: tuple[TextSegment, ...]
    sidecar: str  # the whole track in one file, relative to the track directory
    forced: bool = False
    sdh: bool = False  # subtitles for the deaf and hard of hearing
    default: bool = False
    cue_count: int = 0
    sidecar_size_bytes: int = 0

    @property
    def duration_s(self) -> float:
        return sum(s.duration for s in self.segments) / self.timescale


@dataclass(frozen=True)
class Title:
    video: tuple[Rendition, ...]
    audio: tuple[Rendition, ...]
    images: tuple[ImageTrack, ...] = ()  # thumbnail sprite sheets (thumbnails stage)
    ts: tuple[TsVariant, ...] = ()  # the MPEG-TS HLS set (hls-ts stage)
    text: tuple[TextTrack, ...] = ()
    notes: tuple[str, ...] = ()  # what optional stages want the user to know (a track left out...)

    @property
    def duration_s(self) -> float:
        return max((r.duration_s for r in self.video + self.audio), default=0.0)

    @property
    def renditions(self) -> tuple[Rendition, ...]:
        return self.video + self.audio


def target_duration(renditions) -> int:
    """EXT-X-TARGETDURATION: every EXTINF, rounded to the nearest integer, must not exceed it."""
    longest = max((r.max_segment_s for r in renditions), default=1.0)
    return max(1, math.floor(longest + 0.5))


@dataclass(frozen=True)
class WorkUnit:
    """One ffmpeg process of the encode: a range of the title on the GOP grid, every rung at once.

    A video unit encodes frames [start_frame - preroll_frames, end_frame + tail_frames) of the base
    frame grid and keeps only the segments of [start_frame, end_frame): the pre-roll and the tail
    give the encoder's rate control and look-ahead the context a one-pass encode has. The audio
    unit encodes the whole title's audio once. A "title" unit is the whole title, video and audio,
    in one process (the one-unit case, and the default for short titles).
    """

    index: int
    kind: str  # "title" | "video" | "audio"
    start_frame: int = 0  # first kept frame, on the base frame grid
    end_frame: int | None = None  # one past the last kept frame; None = to the end of the source
    preroll_frames: int = 0  # encoded before start_frame and thrown away (whole segments)
    tail_frames: int = 0  # encoded after end_frame and thrown away (whole GOPs)
    first_segment: int = 1  # global number of the first kept segment
    segment_count: int | None = None  # kept segments; None = up to the end of the source
    fps: Fraction | None = None  # the base frame rate (None: audio only)

    @property
    def name(self) -> str:
        return f"unit-{self.index:04d}" if self.kind != "audio" else "unit-audio"

    @property
    def start_s(self) -> float:
        return float(self.start_frame / self.fps) if self.fps else 0.0

    @property
    def end_s(self) -> float | None:
        return float(self.end_frame / self.fps) if self.fps and self.end_frame is not None else None

    def describe(self) -> str:
        """'unit 3 (120.0-180.0 s)', for progress and error lines."""
        end = f"{self.end_s:.3f}".rstrip("0").rstrip(".") + " s" if self.end_s is not None else "end"
        start = f"{self.start_s:.3f}".rstrip("0").rstrip(".")
        if self.kind == "audio":
            return "audio unit (whole title)"
        return f"unit {self.index} ({start}-{end})"


@dataclass(frozen=True)
class Chunking:
    """How the encode is cut into work units. chunk_s None: the whole title is one unit."""

    chunk_s: float | None = None
    preroll_segments: int = 1
    tail_gops: int = 1
