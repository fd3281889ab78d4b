"""The media side of validation: what the segment files really contain.

A Rendition is one init segment plus the ordered list of media segments a manifest plays. HLS and
DASH usually point at the same files, so renditions are cached by (init, segments): each file is read
and checked once and its findings are reported once, whichever manifest named it first.

fMP4 segments are read with abrpipe.mp4 (tfdt, trun durations, sync flags, the first sample's
NAL type). MPEG-TS segments are read with abrpipe.ts (PAT/PMT first, IDR first, continuity counters,
timestamps running on from segment to segment); other formats get the file checks and an info finding.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field, replace
from fractions import Fraction

from abrpipe import mp4, ts
from abrpipe.validate.report import Report

# Apple HLS Authoring Specification numbers used by the media checks.
APPLE_MAX_IDR_INTERVAL_S = 2.0  # 1.13
APPLE_MAX_FPS = 60.0  # 1.19
TS_PACKET = 188

# Top-level boxes a fragmented MP4 segment may start with.
_FMP4_FIRST_BOXES = {b"styp", b"moof", b"sidx", b"prft", b"emsg", b"free", b"ftyp", b"moov", b"skip", b"uuid"}


@dataclass(frozen=True)
class SegmentRef:
    path: str  # absolute path of the file
    number: int  # 1-based position in the manifest
    offset: int | None = None  # byte range, when the manifest gives one
    length: int | None = None


@dataclass(frozen=True)
class _Parsed:
    """What one segment file (or byte range) holds for one track."""

    readable: bool
    size_bytes: int
    start: int = 0  # tfdt, track timescale
    duration: int = 0
    earliest_pts: int = 0
    sample_count: int = 0
    first_sync: bool = True
    first_idr: bool | None = None  # None: not an AVC/HEVC track, or the NAL units could not be read
    sync_pts: tuple[int, ...] = ()
    fragments: tuple[mp4.Fragment, ...] = ()  # offsets absolute within the file
    ts_info: ts.TsSegment | None = None  # MPEG-TS segments: what abrpipe.ts read


@dataclass(frozen=True)
class SegmentMedia:
    ref: SegmentRef
    parsed: _Parsed

    @property
    def readable(self) -> bool:
        return self.parsed.readable


@dataclass
class Rendition:
    name: str
    init_path: str | None
    format: str  # "fmp4", "ts", "unknown"
    tracks: list[mp4.TrackInfo]
    segments: list[SegmentMedia]
    declared_s: list[float | None] = field(default_factory=list)  # EXTINF / timeline, by segment
    edit_shift: int = 0  # media time presented at time zero (elst), track timescale

    @property
    def key(self) -> tuple:
        return rendition_key(self.init_path, [s.ref for s in self.segments])

    @property
    def track(self) -> mp4.TrackInfo | None:
        """The primary track: the video one if the segments carry several."""
        return next((t for t in self.tracks if t.handler == "vide"), self.tracks[0] if self.tracks else None)

    @property
    def kind(self) -> str:
        track = self.track
        if track is None:
            return "unknown"
        return {"vide": "video", "soun": "audio"}.get(track.handler, "other")

    @property
    def analysed(self) -> bool:
        """The boxes were read: real durations, sync samples and codecs are known."""
        return self.format == "fmp4" and self.track is not None

    @property
    def codecs(self) -> list[str]:
        return [t.codec for t in self.tracks]

    @property
    def timescale(self) -> int:
        return self.track.timescale if self.track else 1

    def readable(self) -> list[SegmentMedia]:
        return [s for s in self.segments if s.readable]

    def real_s(self, i: int) -> float | None:
        """Duration of segment i from its boxes (MPEG-TS: its video PTS span), or None when it could
        not be read."""
        seg = self.segments[i]
        info = seg.parsed.ts_info
        if self.format == "ts" and info is not None:
            first, end = info.first_video_pts, info.video_end_pts()
            return ((end - first) % ts.PTS_WRAP) / ts.PTS_HZ if first is not None and end is not None else None
        if not self.analysed or not seg.readable:
            return None
        return seg.parsed.duration / self.timescale

    def duration_s(self, i: int) -> float | None:
        """Real duration when known, else the manifest's."""
        real = self.real_s(i)
        if real is not None:
            return real
        return self.declared_s[i] if i < len(self.declared_s) else None

    @property
    def total_s(self) -> float:
        return sum(d for i in range(len(self.segments)) if (d := self.duration_s(i)) is not None)

    @property
    def frame_rate(self) -> Fraction | None:
        """Samples per second over the readable segments (video: the frame rate)."""
        if not self.analysed:
            return None
        count = sum(s.parsed.sample_count for s in self.readable())
        ticks = sum(s.parsed.duration for s in self.readable())
        return Fraction(count * self.timescale, ticks) if count and ticks else None

    @property
    def sample_s(self) -> float:
        """Mean sample duration in seconds (a frame, or an audio frame), 0 when unknown."""
        rate = self.frame_rate
        return float(1 / rate) if rate else 0.0

    def segment_starts_s(self) -> list[float] | None:
        if not self.analysed or not all(s.readable for s in self.segments):
            return None
        return [s.parsed.start / self.timescale for s in self.segments]

    def keyframes_s(self) -> list[float] | None:
        if not self.analysed or not all(s.readable for s in self.segments):
            return None
        return sorted(p / self.timescale for s in self.segments for p in s.parsed.sync_pts)

    def bitrates(self) -> Bitrates | None:
        """Measured bit rates: segment bytes over segment durations (real durations when known).

        None unless every segment could be read: a partial measurement would only add noise to the
        FILE-MISSING / SEG-TRUNCATED findings that explain it."""
        if not self.segments or not all(s.readable for s in self.segments):
            return None
        rates: list[float] = []
        durations: list[float] = []
        total_bits = 0
        total_s = 0.0
        for i, seg in enumerate(self.segments):
            d = self.duration_s(i)
            if not seg.readable or not d or d <= 0:
                continue
            bits = seg.parsed.size_bytes * 8
            rates.append(bits / d)
            durations.append(d)
            total_bits += bits
            total_s += d
        if not rates:
            return None
        return Bitrates.of(rates, durations, total_bits / total_s)


@dataclass(frozen=True)
class Bitrates:
    """Measured bit rates of one rendition, in bit/s.

    peak_bps is the highest segment bit rate over every segment; full_peak_bps leaves out a short
    last segment (under half the longest other one), whose few frames are mostly the key frame that
    starts it and whose rate says little about what a player must sustain.
    """

    peak_bps: float
    full_peak_bps: float
    average_bps: float

    @classmethod
    def of(cls, rates: list[float], durations: list[float], average: float) -> Bitrates:
        full = rates
        if len(rates) >= 2 and durations[-1] < 0.5 * max(durations[:-1]):
            full = rates[:-1]
        return cls(max(rates), max(full), average)

    def __add__(self, other: Bitrates) -> Bitrates:
        return Bitrates(
            self.peak_bps + other.peak_bps,
            self.full_peak_bps + other.full_peak_bps,
            self.average_bps + other.average_bps,
        )


def rendition_key(init_path: str | None, refs: list[SegmentRef]) -> tuple:
    return (init_path, tuple((r.path, r.offset, r.length) for r in refs))


class Context:
    """Shared state of one validation run: the root, the report, the caches."""

    def __init__(self, root: str, report: Report) -> None:
        self.root = os.path.abspath(root)
        self.report = report
        self._files: dict[str, bool] = {}
        self._inits: dict[str, list[mp4.TrackInfo] | None] = {}
        self._nal_length: dict[str, int] = {}
        self.edit_shifts: dict[str, dict[int, int]] = {}  # init path -> track_id -> elst media_time
        self.init_ranges: dict[str, tuple[int, int | None]] = {}  # EXT-X-MAP BYTERANGE of a shared file
        self._parsed: dict[tuple, _Parsed] = {}
        self._renditions: dict[tuple, Rendition] = {}
        self.fragments: dict[tuple[str, int], mp4.Fragment] = {}  # (path, moof offset) -> fragment
        self._fragment_files: set[str] = set()
        # Filled by the manifest checks, used by the cross checks.
        self.align_groups: dict[tuple, tuple[str, list[Rendition]]] = {}
        self.av_pairs: dict[tuple, tuple[Rendition, Rendition]] = {}

    # -- paths and files ----------------------------------------------------------------------

    def rel(self, path: str | None) -> str | None:
        if path is None:
            return None
        rel = os.path.relpath(path, self.root)
        return rel.replace(os.sep, "/")

    def resolve(
        self, base_dir: str, uri: str, *, referrer: str | None = None, rendition: str | None = None
    ) -> str | None:
        """A manifest URI -> an absolute local path; None (with an info finding) for a remote URL."""
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive
            if parsed.scheme != "file":
                self.report.add(
                    "REMOTE-URI",
                    f"{uri}: absolute URL, not checked",
                    file=self.rel(referrer),
                    rendition=rendition,
                )
                return None
            return os.path.normpath(urllib.parse.unquote(parsed.path))
        path = urllib.parse.unquote(parsed.path)
        resolved = os.path.normpath(os.path.join(base_dir, path.replace("/", os.sep)))
        inside = os.path.commonpath([self.root, resolved]) == self.root if os.path.isabs(resolved) else False
        if not inside:
            self.report.add(
                "FILE-OUTSIDE",
                f"{uri} resolves outside the output directory ({resolved})",
                file=self.rel(referrer),
                rendition=rendition,
            )
        return resolved

    def check_file(
        self,
        path: str,
        *,
        referrer: str | None = None,
        rendition: str | None = None,
        segment: int | None = None,
    ) -> bool:
        """True if the file exists and is not empty; reports FILE-MISSING / FILE-EMPTY once per file."""
        known = self._files.get(path)
        if known is not None:
            return known
        ok = False
        by = f" (referenced by {self.rel(referrer)})" if referrer else ""
        if not os.path.isfile(path):
            self.report.add(
                "FILE-MISSING",
                f"{self.rel(path)} does not exist{by}",
                file=self.rel(path),
                rendition=rendition,
                segment=segment,
            )
        elif os.path.getsize(path) == 0:
            self.report.add(
                "FILE-EMPTY",
                f"{self.rel(path)} is empty{by}",
                file=self.rel(path),
                rendition=rendition,
                segment=segment,
            )
        else:
            ok = True
        self._files[path] = ok
        return ok

    # -- renditions ---------------------------------------------------------------------------

    def rendition(
        self,
        name: str,
        init_path: str | None,
        refs: list[SegmentRef],
        declared_s: list[float | None] | None = None,
        *,
        referrer: str | None = None,
    ) -> Rendition:
        """Read (once) the init and media segments of a rendition and run the media checks on it."""
        key = rendition_key(init_path, refs)
        cached = self._renditions.get(key)
        if cached is not None:
            if declared_s and not cached.declared_s:
                cached.declared_s = list(declared_s)
            return cached
        tracks: list[mp4.TrackInfo] = []
        if init_path is not None and self.check_file(init_path, referrer=referrer, rendition=name):
            tracks = self.init_tracks(init_path, name) or []
        fmt = self._sniff(refs, referrer, name)
        segments = []
        for ref in refs:
            parsed = self._segment(ref, tracks, init_path, fmt, name, referrer)
            segments.append(SegmentMedia(ref, parsed))
        rendition = Rendition(name, init_path, fmt, tracks, segments, list(declared_s or []))
        primary = rendition.track
        if primary is not None and init_path is not None:
            rendition.edit_shift = self.edit_shifts.get(init_path, {}).get(primary.track_id, 0)
        self._renditions[key] = rendition
        self.report.renditions += 1
        self.report.segments += len(refs)
        if fmt == "ts":
            check_ts_continuity(self, rendition)
        elif fmt == "unknown" and any(s.readable for s in segments):
            self.report.add(
                "SEG-FORMAT", "segments are neither fMP4 nor MPEG-TS: only files were checked", rendition=name
            )
        if rendition.analysed:
            check_rendition(self, rendition)
        return rendition

    def all_renditions(self) -> list[Rendition]:
        """Every rendition read so far, in the order the manifests named them."""
        return list(self._renditions.values())

    def renditions_with_init(self, init_path: str) -> list[Rendition]:
        return [r for r in self._renditions.values() if r.init_path == init_path]

    def fragment_at(self, path: str, offset: int, track: mp4.TrackInfo) -> mp4.Fragment | None:
        """The fragment whose moof starts at byte `offset` of `path` (reading the whole file if needed)."""
        found = self.fragments.get((path, offset))
        if found is None and path not in self._fragment_files and os.path.isfile(path):
            self._parse_file(path, None, None, track)
            found = self.fragments.get((path, offset))
        return found

    def init_tracks(self, path: str, name: str) -> list[mp4.TrackInfo] | None:
        if path in self._inits:
            return self._inits[path]
        tracks: list[mp4.TrackInfo] | None
        offset, length = self.init_ranges.get(path, (0, None))
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read() if length is None else fh.read(length)
            tracks = mp4.read_tracks(data)
            self._nal_length[path] = _nal_length_size(data)
            self.edit_shifts[path] = edit_shifts(data)
        except (OSError, mp4.Mp4Error) as exc:
            message = _strip_name(_strip_name(str(exc), path), "<bytes>")
            self.report.add("INIT-INVALID", message, file=self.rel(path), rendition=name)
            tracks = None
        self._inits[path] = tracks
        return tracks

    def _sniff(self, refs: list[SegmentRef], referrer: str | None, name: str) -> str:
        for ref in refs[:3]:
            if not os.path.isfile(ref.path) or os.path.getsize(ref.path) == 0:
                continue
            with open(ref.path, "rb") as fh:
                fh.seek(ref.offset or 0)
                head = fh.read(8)
            if len(head) >= 8 and head[4:8] in _FMP4_FIRST_BOXES:
                return "fmp4"
            if head[:1] == b"\x47":
                return "ts"
            return "unknown"
        return "unknown"

    def _segment(
        self,
        ref: SegmentRef,
        tracks: list[mp4.TrackInfo],
        init_path: str | None,
        fmt: str,
        name: str,
        referrer: str | None,
    ) -> _Parsed:
        if not self.check_file(ref.path, referrer=referrer, rendition=name, segment=ref.number):
            return _Parsed(False, 0)
        primary = next((t for t in tracks if t.handler == "vide"), tracks[0] if tracks else None)
        key = (ref.path, ref.offset, ref.length, primary.track_id if primary else None)
        if key in self._parsed:
            return self._parsed[key]
        file_size = os.path.getsize(ref.path)
        if ref.length is not None and (ref.offset or 0) + ref.length > file_size:
            self.report.add(
                "SEG-TRUNCATED",
                f"byte range {ref.length}@{ref.offset or 0} runs past the end of the file ({file_size} bytes)",
                file=self.rel(ref.path),
                rendition=name,
                segment=ref.number,
            )
            parsed = _Parsed(False, 0)
        elif fmt == "fmp4" and primary is not None:
            length_size = self._nal_length.get(init_path or "", 4)
            parsed = self._parse_file(
                ref.path,
                ref.offset,
                ref.length,
                primary,
                length_size=length_size,
                name=name,
                number=ref.number,
            )
        else:
            size = ref.length if ref.length is not None else file_size
            parsed = _Parsed(True, size)
            if fmt == "ts":
                parsed = self._check_ts(ref, size, name)
        self._parsed[key] = parsed
        return parsed

    def _check_ts(self, ref: SegmentRef, size: int, name: str) -> _Parsed:
        with open(ref.path, "rb") as fh:
            fh.seek(ref.offset or 0)
            first = fh.read(1)
        if first != b"\x47":
            self.report.add(
                "SEG-INVALID",
                "does not start with an MPEG-TS sync byte",
                file=self.rel(ref.path),
                rendition=name,
                segment=ref.number,
            )
            return _Parsed(False, size)
        if size % TS_PACKET:
            self.report.add(
                "SEG-TRUNCATED",
                f"{size} bytes is not a whole number of {TS_PACKET}-byte MPEG-TS packets",
                file=self.rel(ref.path),
                rendition=name,
                segment=ref.number,
            )
            return _Parsed(False, size)
        file = self.rel(ref.path)
        with open(ref.path, "rb") as fh:
            fh.seek(ref.offset or 0)
            data = fh.read(size)
        try:
            info = ts.read(data)
        except ts.TsError as exc:
            self.report.add("SEG-INVALID", f"not readable as MPEG-TS: {exc}", file=file, rendition=name, segment=ref.number)
            return _Parsed(False, size)
        if not info.psi_first:
            found = "no PAT" if not info.has_pat else "no PMT" if not info.has_pmt else "media packets before the PAT/PMT"
            self.report.add("TS-PSI", f"does not start with a PAT and a PMT ({found}): a player cannot join here", file=file, rendition=name, segment=ref.number)
        if info.starts_with_idr is False:
            self.report.add(
                "TS-IDR", f"the first video picture is not an IDR (NAL types {info.first_video_nal_types[:6]})",
                file=file, rendition=name, segment=ref.number,
            )
        if info.cc_errors:
            pid, packet = info.cc_errors[0]
            self.report.add(
                "TS-CC",
                f"{len(info.cc_errors)} continuity counter jump(s), first on PID {pid:#x} at packet {packet}: packets were lost",
                file=file,
                rendition=name,
                segment=ref.number,
            )
        return _Parsed(True, size, ts_info=info)

    def _parse_file(
        self,
        path: str,
        offset: int | None,
        length: int | None,
        track: mp4.TrackInfo,
        *,
        length_size: int = 4,
        name: str | None = None,
        number: int | None = None,
    ) -> _Parsed:
        base = offset or 0
        with open(path, "rb") as fh:
            fh.seek(base)
            data = fh.read() if length is None else fh.read(length)
        try:
            seg = mp4.read_segment(data, track)
        except mp4.Mp4Error as exc:
            message = _strip_name(str(exc), "<bytes>")
            rule = "SEG-TRUNCATED" if ("truncated" in message or "remain" in message) else "SEG-INVALID"
            if name is not None:
                self.report.add(rule, message, file=self.rel(path), rendition=name, segment=number)
            return _Parsed(False, len(data))
        fragments = tuple(
            replace(f, offset=f.offset + base, first_sample_data_offset=f.first_sample_data_offset + base)
            for f in seg.fragments
        )
        for f in fragments:
            self.fragments[(path, f.offset)] = f
        self._fragment_files.add(path)
        first = seg.fragments[0]
        first_idr = None
        family = _nal_family(track.sample_entry)
        if family and first.first_sample_is_sync:
            first_idr = first_picture_is_irap(
                data, first.first_sample_data_offset, first.first_sample_size, length_size, family
            )
        return _Parsed(
            readable=True,
            size_bytes=len(data),
            start=seg.base_decode_time,
            duration=seg.duration,
            earliest_pts=seg.earliest_presentation_time,
            sample_count=sum(f.sample_count for f in seg.fragments),
            first_sync=seg.starts_with_sync,
            first_idr=first_idr,
            sync_pts=seg.sync_sample_pts,
            fragments=fragments,
        )


def check_ts_continuity(ctx: Context, r: Rendition) -> None:
    """Each MPEG-TS segment's first video PTS is where the previous segment's last frame ends: no gap,
    no overlap, no timestamp reset per segment."""
    previous: ts.TsSegment | None = None
    for seg in r.segments:
        info = seg.parsed.ts_info
        if info is None or info.first_video_pts is None:
            previous = None
            continue
        end = previous.video_end_pts() if previous is not None else None
        frame = previous.frame_ticks() if previous is not None else None
        if end is not None and frame and previous is not None:
            delta = (info.first_video_pts - end + ts.PTS_WRAP // 2) % ts.PTS_WRAP - ts.PTS_WRAP // 2  # wrap-safe
            if abs(delta) > frame / 2:
                what = "gap" if delta > 0 else "overlap"
                if info.first_video_pts < (previous.first_video_pts or 0) and delta < 0:
                    what = "timestamp reset"
                ctx.report.add(
                    "TS-CONTINUITY",
                    f"starts at {info.first_video_pts / ts.PTS_HZ:.3f} s but the previous segment ends at "
                    f"{end / ts.PTS_HZ:.3f} s ({what} of {abs(delta) / ts.PTS_HZ:.3f} s)",
                    file=ctx.rel(seg.ref.path),
                    rendition=r.name,
                    segment=seg.ref.number,
                )
        previous = info


def _strip_name(message: str, name: str) -> str:
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _nal_family(sample_entry: str) -> str | None:
    if sample_entry in ("avc1", "avc3"):
        return "avc"
    if sample_entry in ("hvc1", "hev1", "dvh1", "dvhe"):
        return "hevc"
    return None


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, end) of the boxes in data[start:end]; stops quietly at anything odd."""
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8].decode("latin-1")
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def edit_shifts(init: bytes) -> dict[int, int]:
    """track_id -> media_time of its first non-empty edit (elst, ISO/IEC 14496-12 8.6.6), in media
    timescale units: the media time that presents at time zero (AAC priming, B-frame delay)."""
    shifts: dict[int, int] = {}
    for kind, start, end in _boxes(init, 0, len(init)):
        if kind != "moov":
            continue
        for trak, tstart, tend in _boxes(init, start, end):
            if trak != "trak":
                continue
            track_id = shift = None
            for box, bstart, bend in _boxes(init, tstart, tend):
                if box == "tkhd" and bend - bstart >= 24:
                    version = init[bstart]
                    at = bstart + 4 + (16 if version == 1 else 8)
                    track_id = int.from_bytes(init[at : at + 4], "big")
                elif box == "edts":
                    for elst, estart, eend in _boxes(init, bstart, bend):
                        if elst == "elst" and eend - estart >= 8:
                            version = init[estart]
                            count = int.from_bytes(init[estart + 4 : estart + 8], "big")
                            width = 8 if version == 1 else 4
                            at = estart + 8
                            for _ in range(count):
                                if at + 2 * width + 4 > eend:
                                    break
                                media_time = int.from_bytes(
                                    init[at + width : at + 2 * width], "big", signed=True
                                )
                                at += 2 * width + 4
                                if media_time >= 0:  # -1: an empty edit (a delay), skipped
                                    shift = media_time
                                    break
            if track_id is not None and shift:
                shifts[track_id] = shift
    return shifts


def _nal_length_size(init: bytes) -> int:
    """NALUnitLength size from avcC (lengthSizeMinusOne in byte 4) or hvcC (byte 21); default 4."""
    for fourcc, at in ((b"avcC", 4), (b"hvcC", 21)):
        i = init.find(fourcc)
        if i >= 4:
            size = int.from_bytes(init[i - 4 : i], "big")
            if 8 + at < size <= len(init) - i + 4:
                return (init[i + 4 + at] & 0x3) + 1
    return 4


def first_picture_is_irap(data: bytes, offset: int, size: int, length_size: int, family: str) -> bool | None:
    """Is the first coded picture of a sample an IDR (AVC, nal_unit_type 5) or IRAP (HEVC, 16..21)?

    The sample is a sequence of length-prefixed NAL units (14496-15); parameter sets, SEI and
    access-unit delimiters before the first slice are skipped. None if no slice is found.
    """
    pos, end = offset, min(offset + size, len(data))
    while pos + length_size <= end:
        n = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if n == 0 or pos + n > end:
            return None
        header = data[pos]
        if family == "avc":
            nal_type = header & 0x1F
            if 1 <= nal_type <= 5:  # coded slice
                return nal_type == 5
        else:
            nal_type = (header >> 1) & 0x3F
            if nal_type <= 31:  # VCL
                return 16 <= nal_type <= 21  # BLA, IDR, CRA
        pos += n
    return None


def codec_family(codec: str) -> str:
    """'avc1.64001f' -> 'avc'; groups renditions whose keyframes must line up."""
    head = codec.split(".")[0].lower()
    return {"avc1": "avc", "avc3": "avc", "hvc1": "hevc", "hev1": "hevc", "dvh1": "hevc", "dvhe": "hevc"}.get(
        head, head
    )


def check_rendition(ctx: Context, r: Rendition) -> None:
    """Checks on one rendition's own media: keyframes, continuity, Apple's per-stream rules."""
    report = ctx.report
    track = r.track
    assert track is not None
    half_sample = max(r.sample_s / 2, 1 / track.timescale)
    previous: SegmentMedia | None = None
    for seg in r.segments:
        p = seg.parsed
        file = ctx.rel(seg.ref.path)
        if not seg.readable:
            previous = None
            continue
        if r.kind == "video":
            if not p.first_sync:
                report.add(
                    "SEG-KEYFRAME",
                    "the first sample is not a sync sample: a player cannot start or switch here",
                    file=file,
                    rendition=r.name,
                    segment=seg.ref.number,
                )
            elif p.first_idr is False:
                report.add(
                    "SEG-IDR",
                    "the first sample is flagged as a sync sample but its first slice is not an IDR picture",
                    file=file,
                    rendition=r.name,
                    segment=seg.ref.number,
                )
        if previous is not None:
            expected = previous.parsed.start + previous.parsed.duration
            delta_s = (p.start - expected) / track.timescale
            if abs(delta_s) > half_sample:
                what = "gap" if delta_s > 0 else "overlap"
                report.add(
                    "SEG-CONTINUITY",
                    f"starts at {p.start / track.timescale:.3f} s but the previous segment ends at "
                    f"{expected / track.timescale:.3f} s ({what} of {abs(delta_s):.3f} s)",
                    file=file,
                    rendition=r.name,
                    segment=seg.ref.number,
                )
        previous = seg

    if r.kind != "video":
        return
    rate = r.frame_rate
    if rate and float(rate) > APPLE_MAX_FPS + 0.5:
        report.add("APPLE-1.19-FRAME-RATE-MAX", f"{float(rate):.3f} fps is above 60 fps", rendition=r.name)
    if track.sample_entry in ("avc3", "hev1"):
        wanted = "avc1" if track.sample_entry == "avc3" else "hvc1"
        report.add(
            "APPLE-1.10-SAMPLE-ENTRY",
            f"sample entry {track.sample_entry}: use {wanted} (parameter sets in the init segment)",
            file=ctx.rel(r.init_path),
            rendition=r.name,
        )
    if track.sample_entry in ("avc1", "avc3"):
        _check_h264_profile(ctx, r, track.codec)
    keyframes = sorted(p / track.timescale for s in r.readable() for p in s.parsed.sync_pts)
    if len(keyframes) >= 2 and all(s.readable for s in r.segments):
        gaps = [(b - a, a) for a, b in zip(keyframes, keyframes[1:], strict=False)]
        widest, at = max(gaps)
        if widest > APPLE_MAX_IDR_INTERVAL_S + half_sample:
            report.add(
                "APPLE-1.13-IDR-INTERVAL",
                f"keyframes {widest:.2f} s apart (from {at:.2f} s); Apple asks for one every 2 s",
                rendition=r.name,
            )


def _check_h264_profile(ctx: Context, r: Rendition, codec: str) -> None:
    try:
        profile_idc = int(codec[5:7], 16)
        level_idc = int(codec[9:11], 16)
    except ValueError:
        return
    names = {66: "Baseline", 77: "Main", 100: "High"}
    if profile_idc not in names or level_idc > 52:
        what = names.get(profile_idc, f"profile_idc {profile_idc}")
        ctx.report.add(
            "APPLE-1.3-H264-PROFILE",
            f"{codec}: {what} level {level_idc / 10:g}; Apple devices need Baseline/Main/High up to level 5.2",
            file=ctx.rel(r.init_path),
            rendition=r.name,
        )
