"""package: read the encoded segments' own boxes into a model of the title, then write the HLS
playlists and the DASH MPD from that one model, over the same CMAF files.

Durations come from tfdt/trun (exact, in the media timescale), bitrates are measured from the
segment sizes, CODECS from the init segments' codec configuration boxes: nothing is copied from
what the encoder was asked to do.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from abrpipe import mp4
from abrpipe.encode import INIT_NAME
from abrpipe.errors import OutputError
from abrpipe.hls_ts import TsVariant
from abrpipe.plan import LadderPlan
from abrpipe.thumbnails import ImageTrack

if TYPE_CHECKING:
    from abrpipe.protect.model import Protection

MASTER_NAME = "master.m3u8"
MPD_NAME = "manifest.mpd"
MEDIA_PLAYLIST = "playlist.m3u8"
IFRAME_PLAYLIST = "iframes.m3u8"


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


def read_rendition(directory: str, rendition_id: str, kind: str, *, codec_string=None, **attrs) -> Rendition:
    """Parse one rendition directory (init.mp4 + seg_*.m4s) into the model."""
    rdir = os.path.join(directory, rendition_id)
    try:
        track = mp4.read_init(os.path.join(rdir, INIT_NAME))
        names = sorted(n for n in os.listdir(rdir) if n.startswith("seg_") and n.endswith(".m4s"))
        segments = []
        for name in names:
            seg = mp4.read_segment(os.path.join(rdir, name), track)
            iframes = tuple(
                IFrame(f.offset, f.first_sample_data_offset + f.first_sample_size - f.offset, f.earliest_presentation_time)
                for f in seg.fragments
                if f.first_sample_is_sync
            )
            segments.append(Segment(name, seg.base_decode_time, seg.duration, seg.size_bytes, seg.starts_with_sync, iframes))
    except (OSError, mp4.Mp4Error) as exc:
        raise OutputError(f"{rdir}: the encoder's output cannot be read ({exc})") from None
    if not segments:
        raise OutputError(f"{rdir}: the encoder wrote no segments")
    return Rendition(
        id=rendition_id,
        kind=kind,
        codec=codec_string(track) if codec_string else track.codec,  # the encoder plug-in's hook
        timescale=track.timescale,
        segments=tuple(segments),
        width=track.width if kind == "video" else None,
        height=track.height if kind == "video" else None,
        channels=track.channels if kind == "audio" else None,
        sample_rate=track.sample_rate if kind == "audio" else None,
        **attrs,
    )


def read_title(work_dir: str, plan: LadderPlan) -> Title:
    from abrpipe import codecs

    video = tuple(
        read_rendition(work_dir, r.id, "video", frame_rate=r.fps, codec_family=_family(codecs, r.codec),
                       codec_string=codecs.get(r.codec).codec_string) for r in plan.video
    )
    audio = tuple(
        read_rendition(work_dir, a.id, "audio", language=a.language, name=a.name, default=a.default, group=audio_group(a),
                       codec_string=codecs.get(a.codec).codec_string)
        for a in plan.audio
    )
    return Title(video=video, audio=audio)


def audio_group(a) -> str:
    layout = {1: "-mono", 2: "", 6: "-5.1", 8: "-7.1"}.get(a.channels, f"-{a.channels}ch")
    return f"audio-{a.codec}-{a.bitrate_kbps}k{layout}"


def _family(codecs_module, codec: str) -> str:
    encoder = codecs_module.get(codec)
    return getattr(encoder, "family", codec)


def target_duration(renditions) -> int:
    """EXT-X-TARGETDURATION: every EXTINF, rounded to the nearest integer, must not exceed it."""
    longest = max((r.max_segment_s for r in renditions), default=1.0)
    return max(1, math.floor(longest + 0.5))


def write_manifests(work_dir: str, title: Title, plan: LadderPlan) -> list[str]:
    """Write every playlist and the MPD into work_dir; return the names written (manifests last)."""
    from abrpipe import dash, hls

    written = []
    if "hls" in plan.outputs:
        written += hls.write_hls(work_dir, title)
    if "dash" in plan.outputs:
        written.append(dash.write_mpd(work_dir, title))
    return written
