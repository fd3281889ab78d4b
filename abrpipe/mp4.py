"""A small ISO-BMFF reader for fragmented MP4 / CMAF (stdlib only).

The manifests and the validator are written from the segments' own boxes
(``tfdt``/``trun``), not from the rounded figures in ffmpeg's playlists, so this
module reads exactly what a player will read:

* :func:`read_init` / :func:`read_tracks` read an init segment (``ftyp`` +
  ``moov`` with ``mvex``) into :class:`TrackInfo` records, including the exact
  RFC 6381 ``CODECS`` string for the track.
* :func:`read_segment` reads a media segment (optionally ``styp``/``sidx``/
  ``prft``, then one or more ``moof`` + ``mdat`` pairs) into a
  :class:`MediaSegment`.

Clause numbers refer to ISO/IEC 14496-12:2015 (ISO base media file format)
unless another spec is named; 14496-15 is the NAL-unit file format (AVC, HEVC).

Every structural problem (truncated file, a box whose declared size runs past
its container or past end of file, a missing mandatory box, field reads past the
end of a box) raises :class:`Mp4Error`, whose message starts with the file name.
Files are read whole into memory: init and media segments are small.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "Fragment",
    "MediaSegment",
    "Mp4Error",
    "TrackInfo",
    "read_init",
    "read_segment",
    "read_tracks",
]

Source = str | os.PathLike[str] | bytes | bytearray | memoryview

# sample_flags (8.8.3.1): bit 16 is sample_is_non_sync_sample.
SAMPLE_IS_NON_SYNC = 0x00010000


class Mp4Error(ValueError):
    """The file is not a readable fMP4 init/media segment; the message names the file."""


@dataclass(frozen=True)
class TrackInfo:
    """One track of an init segment (``ftyp`` + ``moov``)."""

    track_id: int
    handler: str  # hdlr handler_type: 'vide' | 'soun' | 'subt' | ...
    timescale: int  # mdhd timescale (ticks per second)
    codec: str  # RFC 6381 CODECS value, e.g. 'avc1.64001f', 'mp4a.40.2'
    sample_entry: str  # fourcc of the (original, if encrypted) sample entry
    width: int | None  # visual sample entry width/height (pixels)
    height: int | None
    channels: int | None  # from the codec config when authoritative, else the sample entry
    sample_rate: int | None  # Hz
    language: str | None  # mdhd ISO-639-2/T code; None for 'und'
    default_sample_duration: int | None  # mvex/trex defaults (8.8.3)
    default_sample_size: int | None
    default_sample_flags: int | None


@dataclass(frozen=True)
class Fragment:
    """One ``moof`` (for the requested track) and its ``mdat``."""

    offset: int  # byte offset of the moof in the file
    size: int  # bytes from moof start to end of its mdat
    sequence_number: int  # mfhd
    base_decode_time: int  # tfdt, in timescale units
    duration: int  # sum of sample durations
    sample_count: int
    earliest_presentation_time: int  # min(decode time + composition offset)
    sync_sample_pts: tuple[int, ...]  # presentation times of sync samples
    first_sample_is_sync: bool
    first_sample_data_offset: int  # absolute byte offset of first sample's data
    first_sample_size: int
    sample_bytes: int = 0  # the track's sample data in this fragment (sum of trun sample sizes)


@dataclass(frozen=True)
class MediaSegment:
    """A media segment file: one or more fragments of one track."""

    path: str
    size_bytes: int
    fragments: tuple[Fragment, ...]

    @property
    def base_decode_time(self) -> int:
        return self.fragments[0].base_decode_time

    @property
    def duration(self) -> int:
        return sum(f.duration for f in self.fragments)

    @property
    def starts_with_sync(self) -> bool:
        return self.fragments[0].first_sample_is_sync

    @property
    def earliest_presentation_time(self) -> int:
        return min(f.earliest_presentation_time for f in self.fragments)

    @property
    def sync_sample_pts(self) -> tuple[int, ...]:
        return tuple(p for f in self.fragments for p in f.sync_sample_pts)


# --------------------------------------------------------------------------
# Box walking


class _Box(NamedTuple):
    type: str
    start: int  # offset of the box header
    payload: int  # offset of the first byte after the header
    end: int  # offset one past the last byte


_STRUCTS: dict[str, struct.Struct] = {}


def _struct(fmt: str) -> struct.Struct:
    s = _STRUCTS.get(fmt)
    if s is None:
        s = _STRUCTS[fmt] = struct.Struct(fmt)
    return s


class _Buf:
    """The bytes of one file plus its name, for error messages."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    @classmethod
    def load(cls, source: Source) -> _Buf:
        if isinstance(source, bytes | bytearray | memoryview):
            return cls("<bytes>", bytes(source))
        name = os.fspath(source)
        with open(name, "rb") as f:
            return cls(str(name), f.read())

    def error(self, message: str) -> Mp4Error:
        return Mp4Error(f"{self.name}: {message}")

    def boxes(
        self, start: int, end: int, parent: _Box | None = None, lenient: bool = False
    ) -> Iterator[_Box]:
        """Iterate over the boxes in ``data[start:end]`` (4.2)."""
        data = self.data
        pos = start
        while pos < end:
            avail = end - pos
            if avail < 8:
                if lenient:  # a 4-byte zero terminator ends some QuickTime entries
                    return
                raise self._overrun("box header", pos, 8, avail, parent, "needs")
            size, raw = struct.unpack_from(">I4s", data, pos)
            btype = raw.decode("latin-1")
            if parent is None and not all(0x20 <= c < 0x7F for c in raw):
                raise self.error(
                    f"invalid box type {raw!r} at byte {pos} (not an ISO-BMFF file?)"
                )
            header = 8
            if size == 1:  # 64-bit largesize follows the type
                if avail < 16:
                    raise self._overrun(f"box {btype!r} header", pos, 16, avail, parent, "needs")
                (size,) = struct.unpack_from(">Q", data, pos + 8)
                header = 16
            elif size == 0:  # box extends to the end of its container (file)
                if lenient:  # ... except in a sample entry, where it is a terminator
                    return
                size = avail
            if btype == "uuid":  # 16-byte extended type
                header += 16
            if size < header:
                raise self.error(f"invalid size {size} for box {btype!r} at byte {pos}")
            if size > avail:
                raise self._overrun(f"box {btype!r}", pos, size, avail, parent)
            yield _Box(btype, pos, pos + header, pos + size)
            pos += size

    def _overrun(
        self,
        what: str,
        pos: int,
        size: int,
        avail: int,
        parent: _Box | None,
        verb: str = "declares",
    ) -> Mp4Error:
        if parent is None:
            return self.error(
                f"truncated {what} at byte {pos} ({verb} {size} bytes, {avail} present)"
            )
        return self.error(
            f"{what} at byte {pos} {verb} {size} bytes but only {avail} remain "
            f"in {parent.type!r} at byte {parent.start}"
        )

    def children(self, box: _Box, start: int | None = None) -> Iterator[_Box]:
        return self.boxes(box.payload if start is None else start, box.end, box)

    def child(self, box: _Box, btype: str) -> _Box | None:
        return next((b for b in self.children(box) if b.type == btype), None)

    def require(self, box: _Box, btype: str) -> _Box:
        found = self.child(box, btype)
        if found is None:
            raise self.error(f"{box.type!r} at byte {box.start} has no {btype!r} box")
        return found

    def unpack(self, fmt: str, box: _Box, pos: int) -> tuple:
        s = _struct(fmt)
        if pos + s.size > box.end:
            raise self.error(
                f"box {box.type!r} at byte {box.start} is too short "
                f"({box.end - box.start} bytes; field at byte {pos} needs {s.size})"
            )
        return s.unpack_from(self.data, pos)

    def full_box(self, box: _Box) -> tuple[int, int, int]:
        """FullBox header (4.2): returns (version, flags, offset after it)."""
        (word,) = self.unpack(">I", box, box.payload)
        return word >> 24, word & 0xFFFFFF, box.payload + 4

    def top_level(self) -> list[_Box]:
        if not self.data:
            raise self.error("empty file")
        return list(self.boxes(0, len(self.data)))


# --------------------------------------------------------------------------
# Init segment


def read_init(source: Source) -> TrackInfo:
    """Read the first track of an init segment (see :func:`read_tracks`)."""
    return read_tracks(source)[0]


def read_tracks(source: Source) -> list[TrackInfo]:
    """Read every track (``trak``) of an init segment, in file order.

    The file must have a ``moov`` with an ``mvex`` (a fragmented-MP4 init
    segment, possibly followed by fragments); anything after the moov is only
    walked to check that no box is truncated.
    """
    buf = _Buf.load(source)
    top = buf.top_level()
    moov = next((b for b in top if b.type == "moov"), None)
    if moov is None:
        raise buf.error("no 'moov' box: not an init segment")
    ftyp = next((b for b in top if b.type == "ftyp"), None)
    quicktime = ftyp is not None and buf.data[ftyp.payload : ftyp.payload + 4] == b"qt  "

    mvex = buf.child(moov, "mvex")
    if mvex is None:
        raise buf.error("'moov' has no 'mvex': not a fragmented MP4 init segment")
    trex: dict[int, tuple[int, int, int]] = {}
    for box in buf.children(mvex):
        if box.type == "trex":  # 8.8.3
            _, _, pos = buf.full_box(box)
            track_id, _sdi, dur, size, flags = buf.unpack(">5I", box, pos)
            trex[track_id] = (dur, size, flags)

    tracks = [
        _read_trak(buf, trak, trex, quicktime)
        for trak in buf.children(moov)
        if trak.type == "trak"
    ]
    if not tracks:
        raise buf.error("'moov' has no 'trak' box")
    return tracks


def _read_trak(
    buf: _Buf, trak: _Box, trex: dict[int, tuple[int, int, int]], quicktime: bool
) -> TrackInfo:
    tkhd = buf.require(trak, "tkhd")  # 8.3.2
    version, _, pos = buf.full_box(tkhd)
    (track_id,) = buf.unpack(">I", tkhd, pos + (16 if version == 1 else 8))

    mdia = buf.require(trak, "mdia")
    mdhd = buf.require(mdia, "mdhd")  # 8.4.2
    version, _, pos = buf.full_box(mdhd)
    if version == 1:  # 64-bit creation/modification times and duration
        (timescale,) = buf.unpack(">I", mdhd, pos + 16)
        (lang,) = buf.unpack(">H", mdhd, pos + 28)
    else:
        (timescale,) = buf.unpack(">I", mdhd, pos + 8)
        (lang,) = buf.unpack(">H", mdhd, pos + 16)
    if timescale == 0:
        raise buf.error(f"track {track_id}: mdhd timescale is 0")

    hdlr = buf.require(mdia, "hdlr")  # 8.4.3: pre_defined, then handler_type
    _, _, pos = buf.full_box(hdlr)
    (handler_raw,) = buf.unpack(">4s", hdlr, pos + 4)
    handler = handler_raw.decode("latin-1")

    stsd = buf.require(buf.require(buf.require(mdia, "minf"), "stbl"), "stsd")
    _, _, pos = buf.full_box(stsd)  # 8.5.2: entry_count, then SampleEntry boxes
    entry = next(buf.children(stsd, pos + 4), None)  # the first entry describes the track
    if entry is None:
        raise buf.error(f"track {track_id}: 'stsd' has no sample entry")

    defaults = trex.get(track_id, (None, None, None))
    return TrackInfo(
        track_id=track_id,
        handler=handler,
        timescale=timescale,
        language=_language(lang),
        default_sample_duration=defaults[0],
        default_sample_size=defaults[1],
        default_sample_flags=defaults[2],
        **_sample_entry(buf, entry, handler, quicktime),
    )


def _language(packed: int) -> str | None:
    """mdhd language (8.4.2.3): pad bit + three 5-bit letters, each minus 0x60."""
    code = "".join(chr(((packed >> shift) & 0x1F) + 0x60) for shift in (10, 5, 0))
    if code == "und" or not all("a" <= c <= "z" for c in code):
        return None  # 'und', zero, or a QuickTime Macintosh language code
    return code


# The decoder configuration box each CODECS string is built from.
_CONFIG_BOX = {
    "avc1": "avcC", "avc3": "avcC", "hvc1": "hvcC", "hev1": "hvcC",
    "vp09": "vpcC", "av01": "av1C", "mp4a": "esds",
}
_VISUAL = {"avc1", "avc3", "hvc1", "hev1", "vp09", "av01", "encv", "mp4v", "dvh1", "dvhe"}
_AUDIO = {"mp4a", "Opus", "ac-3", "ec-3", "fLaC", "enca", "ac-4", "mha1", "mhm1"}


def _sample_entry(buf: _Buf, entry: _Box, handler: str, quicktime: bool) -> dict:
    """Decode the first SampleEntry of stsd (8.5.2) into TrackInfo fields."""
    fourcc = entry.type
    base = entry.payload + 8  # SampleEntry: reserved[6], data_reference_index
    width = height = channels = sample_rate = None
    if handler == "vide" or fourcc in _VISUAL:
        # VisualSampleEntry (12.1.3): pre_defined, reserved, pre_defined[3], then
        # width, height ... compressorname[32], depth, pre_defined: 70 bytes.
        width, height = buf.unpack(">HH", entry, base + 16)
        children_start = base + 70
    elif handler == "soun" or fourcc in _AUDIO:
        # AudioSampleEntry (12.2.3): reserved[2] (QuickTime: version, revision,
        # vendor), channelcount, samplesize, pre_defined, reserved, samplerate 16.16.
        version, channels, _bits, _, _, rate = buf.unpack(">H6xHHHHI", entry, base)
        sample_rate = rate >> 16
        children_start = base + 20
        if quicktime and version == 1:  # QTFF sound description v1: 4 more u32
            children_start += 16
        elif quicktime and version == 2:  # QTFF v2: the real values follow
            _, rate_f, channels = buf.unpack(">IdI", entry, base + 20)
            sample_rate = round(rate_f)
            children_start += 36
    else:
        children_start = None

    boxes: dict[str, _Box] = {}
    if children_start is not None:
        for b in buf.boxes(children_start, entry.end, entry, lenient=True):
            boxes.setdefault(b.type, b)

    # Protected entries (8.12): the original format is in sinf/frma.
    if fourcc in ("encv", "enca") and "sinf" in boxes:
        frma = buf.child(boxes["sinf"], "frma")
        if frma is not None:
            fourcc = buf.unpack(">4s", frma, frma.payload)[0].decode("latin-1")

    required = _CONFIG_BOX.get(fourcc)
    if required is not None and required not in boxes:
        raise buf.error(
            f"{fourcc!r} sample entry at byte {entry.start} has no {required!r} box"
        )
    codec = fourcc  # e.g. 'ac-3', 'ec-3', 'fLaC'; also unknown entries ('wvtt', ...)
    if fourcc in ("avc1", "avc3"):
        codec = _avc_codec(buf, fourcc, boxes["avcC"])
    elif fourcc in ("hvc1", "hev1"):
        codec = _hevc_codec(buf, fourcc, boxes["hvcC"])
    elif fourcc == "vp09":
        codec = _vp9_codec(buf, boxes["vpcC"])
    elif fourcc == "av01":
        codec = _av1_codec(buf, boxes["av1C"])
    elif fourcc == "mp4a":
        codec, ch, rate = _esds(buf, boxes["esds"])
        channels = ch or channels
        sample_rate = rate or sample_rate
    elif fourcc == "Opus":
        codec = "opus"
        if "dOps" in boxes:  # Opus in ISOBMFF 4.3.2: Version, OutputChannelCount
            (ch,) = buf.unpack(">B", boxes["dOps"], boxes["dOps"].payload + 1)
            channels = ch or channels
        # sample_rate stays the entry's (48000 by that spec); InputSampleRate in
        # dOps is informational only.
    elif fourcc == "ac-3" and "dac3" in boxes:
        channels, sample_rate = _dac3(buf, boxes["dac3"])
    elif fourcc == "ec-3" and "dec3" in boxes:
        channels, sample_rate = _dec3(buf, boxes["dec3"])
    elif fourcc == "fLaC" and "dfLa" in boxes:
        ch, rate = _dfla(buf, boxes["dfLa"])
        channels, sample_rate = ch or channels, rate or sample_rate
    return {
        "codec": codec,
        "sample_entry": fourcc,
        "width": width,
        "height": height,
        "channels": channels,
        "sample_rate": sample_rate,
    }


# --------------------------------------------------------------------------
# CODECS strings


def _avc_codec(buf: _Buf, fourcc: str, avcc: _Box) -> str:
    # AVCDecoderConfigurationRecord (14496-15 5.3.3.1): configurationVersion,
    # AVCProfileIndication, profile_compatibility, AVCLevelIndication.
    _, profile, compat, level = buf.unpack(">4B", avcc, avcc.payload)
    return f"{fourcc}.{profile:02x}{compat:02x}{level:02x}"


def _hevc_codec(buf: _Buf, fourcc: str, hvcc: _Box) -> str:
    # HEVCDecoderConfigurationRecord (14496-15 8.3.3.1): configurationVersion,
    # profile_space(2) tier(1) profile_idc(5), profile_compatibility_flags(32),
    # constraint_indicator_flags(48), level_idc(8).
    _, ptl, compat, constraints, level = buf.unpack(">BBI6sB", hvcc, hvcc.payload)
    space = ("", "A", "B", "C")[ptl >> 6]
    tier = "H" if ptl & 0x20 else "L"
    profile = ptl & 0x1F
    # 14496-15 Annex E.3: compatibility flags "in reverse bit order", hex, no
    # leading zeros; constraint bytes hex, '.'-separated, trailing zero bytes
    # omitted.
    reversed_compat = int(f"{compat:032b}"[::-1], 2)
    parts = [f"{fourcc}", f"{space}{profile}", f"{reversed_compat:X}", f"{tier}{level}"]
    cbytes = constraints.rstrip(b"\x00")
    parts += [f"{b:X}" for b in cbytes]
    return ".".join(parts)


def _vp9_codec(buf: _Buf, vpcc: _Box) -> str:
    # VP Codec ISO Media File Format Binding, VPCodecConfigurationBox (FullBox):
    # profile, level, bitDepth(4) | chromaSubsampling(3) | fullRange(1) (v1; in v0
    # bitDepth is also the top nibble). Short form of the codec string (sec. 4).
    _, _, pos = buf.full_box(vpcc)
    profile, level, packed = buf.unpack(">3B", vpcc, pos)
    return f"vp09.{profile:02d}.{level:02d}.{packed >> 4:02d}"


def _av1_codec(buf: _Buf, av1c: _Box) -> str:
    # AV1 Codec ISO Media File Format Binding 2.3.3: marker|version,
    # seq_profile(3) seq_level_idx_0(5), seq_tier_0 high_bitdepth twelve_bit ...
    _, b1, b2 = buf.unpack(">3B", av1c, av1c.payload)
    profile, level = b1 >> 5, b1 & 0x1F
    tier = "H" if b2 & 0x80 else "M"
    high_bitdepth, twelve_bit = bool(b2 & 0x40), bool(b2 & 0x20)
    depth = (12 if twelve_bit else 10) if high_bitdepth else 8
    # Codecs Parameter String (binding sec. 5), short form.
    return f"av01.{profile}.{level:02d}{tier}.{depth:02d}"


# AudioSpecificConfig (14496-3 1.6.3.4 / 1.6.3.3 tables)
_AAC_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)
_AAC_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def read(self, n: int) -> int:
        if n > self.left:
            raise ValueError("bit read past end")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)


def _esds(buf: _Buf, esds: _Box) -> tuple[str, int | None, int | None]:
    """Decode an esds box (14496-14 / 14496-1 7.2.6) into (codec, channels, rate)."""
    _, _, pos = buf.full_box(esds)
    end = esds.end
    data = buf.data

    def bad(what: str) -> Mp4Error:
        return buf.error(f"'esds' at byte {esds.start}: {what}")

    def descriptor(pos: int) -> tuple[int, int, int]:
        # BaseDescriptor (14496-1 8.3.3): tag, then a size in 1-4 bytes of 7 bits
        # each with a continuation bit.
        if pos >= end:
            raise bad("descriptor past end of box")
        tag = data[pos]
        pos += 1
        size = 0
        for _ in range(4):
            if pos >= end:
                raise bad("descriptor size past end of box")
            b = data[pos]
            pos += 1
            size = (size << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        return tag, pos, min(pos + size, end)

    tag, pos, es_end = descriptor(pos)
    if tag != 0x03:
        raise bad(f"expected ES_Descriptor (tag 3), found tag {tag}")
    if pos + 3 > es_end:
        raise bad("ES_Descriptor too short")
    flags = data[pos + 2]  # after ES_ID(16): streamDependence, URL, OCRstream, priority
    pos += 3
    if flags & 0x80:
        pos += 2
    if flags & 0x40:
        pos += 1 + (data[pos] if pos < es_end else 0)
    if flags & 0x20:
        pos += 2
    tag, pos, dc_end = descriptor(pos)
    if tag != 0x04:
        raise bad(f"expected DecoderConfigDescriptor (tag 4), found tag {tag}")
    if pos + 13 > dc_end:
        raise bad("DecoderConfigDescriptor too short")
    oti = data[pos]
    if oti != 0x40:  # not MPEG-4 Audio: RFC 6381 3.3 uses the OTI alone
        return f"mp4a.{oti:02X}", None, None
    pos += 13  # oti, streamType, bufferSizeDB(24), maxBitrate, avgBitrate
    if pos >= dc_end:
        return "mp4a.40", None, None
    tag, pos, dsi_end = descriptor(pos)
    if tag != 0x05:
        return "mp4a.40", None, None
    try:
        bits = _Bits(data[pos:dsi_end])

        def object_type() -> int:
            aot = bits.read(5)
            return 32 + bits.read(6) if aot == 31 else aot  # escape (1.6.2.1)

        def sampling_rate() -> int:
            index = bits.read(4)
            if index == 0xF:
                return bits.read(24)
            return _AAC_RATES[index] if index < len(_AAC_RATES) else 0

        aot = object_type()
        rate = sampling_rate()
        channel_config = bits.read(4)
        if aot in (5, 29):  # explicit hierarchical SBR/PS signalling: output rate
            rate = sampling_rate()
    except (ValueError, IndexError):
        raise bad("truncated AudioSpecificConfig") from None
    channels = _AAC_CHANNELS.get(channel_config)  # 0: defined by a PCE
    if aot == 29 and channels == 1:  # Parametric Stereo decodes mono to stereo
        channels = 2
    return f"mp4a.40.{aot}", channels, rate or None


_AC3_RATES = (48000, 44100, 32000)
_AC3_FRONT = (2, 1, 2, 3, 3, 4, 4, 5)  # channels per acmod (ETSI TS 102 366 Table 4.3)


def _dac3(buf: _Buf, box: _Box) -> tuple[int, int | None]:
    # AC3SpecificBox (ETSI TS 102 366 F.4): fscod(2) bsid(5) bsmod(3) acmod(3) lfeon(1)
    (b0, b1, _) = buf.unpack(">3B", box, box.payload)
    fscod = b0 >> 6
    acmod = (b1 >> 3) & 0x7
    lfe = (b1 >> 2) & 0x1
    return _AC3_FRONT[acmod] + lfe, _AC3_RATES[fscod] if fscod < 3 else None


# chan_loc bits of a dependent substream (ETSI TS 102 366 Table F.6.1), bit 0 first:
# Lc/Rc, Lrs/Rrs, Cs, Ts, Lsd/Rsd, Lw/Rw, Vhl/Vhr, Vhc, Lfe2.
_EC3_CHAN_LOC = (2, 2, 1, 1, 2, 2, 2, 1, 1)


def _dec3(buf: _Buf, box: _Box) -> tuple[int, int | None]:
    # EC3SpecificBox (ETSI TS 102 366 F.6): data_rate(13) num_ind_sub(3), then per
    # independent substream: fscod(2) bsid(5) reserved(1) asvc(1) bsmod(3) acmod(3)
    # lfeon(1) reserved(3) num_dep_sub(4) chan_loc(9)|reserved(1).
    payload = buf.data[box.payload : box.end]
    try:
        bits = _Bits(payload)
        bits.read(13)
        bits.read(3)  # only the first independent substream is described here
        fscod = bits.read(2)
        bits.read(5 + 1 + 1 + 3)
        acmod = bits.read(3)
        lfe = bits.read(1)
        bits.read(3)
        num_dep_sub = bits.read(4)
        chan_loc = bits.read(9) if num_dep_sub else 0
    except ValueError:
        raise buf.error(f"'dec3' at byte {box.start} is too short") from None
    channels = _AC3_FRONT[acmod] + lfe
    channels += sum(n for i, n in enumerate(_EC3_CHAN_LOC) if chan_loc >> i & 1)
    return channels, _AC3_RATES[fscod] if fscod < 3 else None


def _dfla(buf: _Buf, box: _Box) -> tuple[int | None, int | None]:
    # FLAC in ISOBMFF 3.3.2: FullBox, then FLAC metadata blocks; STREAMINFO (type 0)
    # comes first: block header(4), min/max blocksize(2+2), min/max framesize(3+3),
    # sample rate(20) channels-1(3) bits-1(5) ...
    _, _, pos = buf.full_box(box)
    header, = buf.unpack(">I", box, pos)
    if (header >> 24) & 0x7F != 0:
        return None, None
    (packed,) = buf.unpack(">Q", box, pos + 4 + 10)
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    return channels, rate or None


# --------------------------------------------------------------------------
# Media segments


def read_segment(source: Source, track: TrackInfo) -> MediaSegment:
    """Read the fragments of ``track`` in a media segment.

    Boxes other than moof/mdat (styp, sidx, prft, emsg, free, even a moov) are
    skipped. Fields missing from tfhd/trun fall back to the trex defaults carried
    in ``track``.
    """
    buf = _Buf.load(source)
    top = buf.top_level()
    fragments: list[Fragment] = []
    next_decode_time: int | None = None
    moofs = 0
    pending: _Box | None = None  # a moof waiting for its mdat
    for box in top:
        if box.type == "moof":
            if pending is not None:
                break  # reported below
            pending = box
            moofs += 1
        elif box.type == "mdat" and pending is not None:
            fragment = _read_moof(buf, pending, box, track, next_decode_time)
            pending = None
            if fragment is not None:
                fragments.append(fragment)
                next_decode_time = fragment.base_decode_time + fragment.duration
    if pending is not None:
        raise buf.error(f"'moof' at byte {pending.start} is not followed by an 'mdat'")
    if not moofs:
        raise buf.error("no 'moof' box: not a media segment")
    if not fragments:
        raise buf.error(f"no fragment of track {track.track_id}")
    return MediaSegment(
        path=buf.name, size_bytes=len(buf.data), fragments=tuple(fragments)
    )


# tfhd flags (8.8.7.1)
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
# trun flags (8.8.8.1)
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_SAMPLE_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTO = 0x000800
_MAX_TRUN_SAMPLES = 1 << 24  # sanity bound for runs whose samples take no bytes in the trun


def _read_moof(
    buf: _Buf, moof: _Box, mdat: _Box, track: TrackInfo, next_decode_time: int | None
) -> Fragment | None:
    mfhd = buf.require(moof, "mfhd")  # 8.8.5
    _, _, pos = buf.full_box(mfhd)
    (sequence_number,) = buf.unpack(">I", mfhd, pos)

    durations: list[int] = []
    ctos: list[int] = []
    flags_list: list[int] = []
    base_decode_time: int | None = None
    first_offset = first_size = None
    sample_bytes = 0
    # 8.8.7.1: with neither base-data-offset-present nor default-base-is-moof, the
    # first traf's base is the moof and each later traf's is the end of the
    # previous traf's data.
    implicit_base: int | None = moof.start
    for traf in buf.children(moof):
        if traf.type != "traf":
            continue
        tfhd = buf.require(traf, "tfhd")
        _, tf_flags, pos = buf.full_box(tfhd)
        (track_id,) = buf.unpack(">I", tfhd, pos)
        pos += 4
        ours = track_id == track.track_id
        if tf_flags & _TFHD_BASE_DATA_OFFSET:
            (base,) = buf.unpack(">Q", tfhd, pos)
            pos += 8
        elif tf_flags & _TFHD_DEFAULT_BASE_IS_MOOF:
            base = moof.start
        elif implicit_base is not None:
            base = implicit_base
        else:
            raise buf.error(
                f"cannot locate the data of track {track_id} in 'moof' at byte {moof.start}"
            )
        if tf_flags & _TFHD_SAMPLE_DESCRIPTION_INDEX:
            pos += 4
        default_duration = track.default_sample_duration if ours else None
        default_size = track.default_sample_size if ours else None
        default_flags = (track.default_sample_flags if ours else None) or 0
        if tf_flags & _TFHD_DEFAULT_DURATION:
            (default_duration,) = buf.unpack(">I", tfhd, pos)
            pos += 4
        if tf_flags & _TFHD_DEFAULT_SIZE:
            (default_size,) = buf.unpack(">I", tfhd, pos)
            pos += 4
        if tf_flags & _TFHD_DEFAULT_FLAGS:
            (default_flags,) = buf.unpack(">I", tfhd, pos)

        if ours and base_decode_time is None:
            tfdt = buf.child(traf, "tfdt")  # 8.8.12
            if tfdt is not None:
                version, _, pos = buf.full_box(tfdt)
                (base_decode_time,) = buf.unpack(">Q" if version == 1 else ">I", tfdt, pos)

        data_pos: int | None = base
        for trun in buf.children(traf):
            if trun.type != "trun":
                continue
            rel, first_flags, rows = _read_trun(buf, trun)
            if rel is not None:  # data_offset is relative to the base data offset
                data_pos = base + rel
            count = len(rows)
            sizes = [row.get(_TRUN_SIZE, default_size) for row in rows]
            if None in sizes or data_pos is None:
                if ours:
                    raise buf.error(
                        f"track {track_id}: sample size unknown in 'trun' at byte "
                        f"{trun.start} (no trun, tfhd or trex value)"
                    )
                data_pos = None  # a later traf cannot locate its data implicitly
                continue
            run_start, run_end = data_pos, data_pos + sum(s or 0 for s in sizes)  # no None left here
            data_pos = run_end  # the next run without data-offset starts here
            if not ours or not count:
                continue
            if not (mdat.payload <= run_start and run_end <= mdat.end):
                raise buf.error(
                    f"track {track_id}: sample data at bytes {run_start}-{run_end} lies "
                    f"outside the 'mdat' at bytes {mdat.payload}-{mdat.end} "
                    f"(moof at byte {moof.start})"
                )
            if first_offset is None:
                first_offset, first_size = run_start, sizes[0]
            sample_bytes += run_end - run_start
            for index, row in enumerate(rows):
                duration = row.get(_TRUN_DURATION, default_duration)
                if duration is None:
                    raise buf.error(
                        f"track {track_id}: sample duration unknown in 'trun' at byte "
                        f"{trun.start} (no trun, tfhd or trex value)"
                    )
                durations.append(duration)
                ctos.append(row.get(_TRUN_CTO, 0))
                if index == 0 and first_flags is not None:
                    flags_list.append(first_flags)
                else:
                    flags_list.append(row.get(_TRUN_FLAGS, default_flags))
        implicit_base = data_pos

    if not durations:
        return None
    if base_decode_time is None:
        if next_decode_time is None:
            raise buf.error(
                f"track {track.track_id}: no 'tfdt' in 'moof' at byte {moof.start}"
            )
        base_decode_time = next_decode_time  # continues the previous fragment

    sync_pts: list[int] = []
    earliest: int | None = None
    decode_time = base_decode_time
    for duration, cto, sample_flags in zip(durations, ctos, flags_list, strict=True):
        pts = decode_time + cto
        if earliest is None or pts < earliest:
            earliest = pts
        if not sample_flags & SAMPLE_IS_NON_SYNC:
            sync_pts.append(pts)
        decode_time += duration
    assert first_offset is not None and first_size is not None and earliest is not None  # for mypy
    return Fragment(
        offset=moof.start,
        size=mdat.end - moof.start,
        sequence_number=sequence_number,
        base_decode_time=base_decode_time,
        duration=decode_time - base_decode_time,
        sample_count=len(durations),
        earliest_presentation_time=earliest,
        sync_sample_pts=tuple(sync_pts),
        first_sample_is_sync=not flags_list[0] & SAMPLE_IS_NON_SYNC,
        first_sample_data_offset=first_offset,
        first_sample_size=first_size,
        sample_bytes=sample_bytes,
    )


def _read_trun(buf: _Buf, trun: _Box) -> tuple[int | None, int | None, list[dict[int, int]]]:
    """TrackRunBox (8.8.8): (data_offset, first_sample_flags, per-sample fields by flag)."""
    version, flags, pos = buf.full_box(trun)
    (count,) = buf.unpack(">I", trun, pos)
    pos += 4
    data_offset = first_flags = None
    if flags & _TRUN_DATA_OFFSET:
        (data_offset,) = buf.unpack(">i", trun, pos)  # signed
        pos += 4
    if flags & _TRUN_FIRST_SAMPLE_FLAGS:
        (first_flags,) = buf.unpack(">I", trun, pos)
        pos += 4
    fields = [
        (_TRUN_DURATION, "I"),
        (_TRUN_SIZE, "I"),
        (_TRUN_FLAGS, "I"),
        # v0 composition offsets are unsigned, v1 signed (8.8.8.2)
        (_TRUN_CTO, "i" if version == 1 else "I"),
    ]
    present = [(bit, code) for bit, code in fields if flags & bit]
    record = _struct(">" + "".join(code for _, code in present))
    if pos + record.size * count > trun.end:
        raise buf.error(
            f"'trun' at byte {trun.start} declares {count} samples but is only "
            f"{trun.end - trun.start} bytes"
        )
    if count > _MAX_TRUN_SAMPLES:  # only reachable with no per-sample fields
        raise buf.error(f"'trun' at byte {trun.start} declares an implausible {count} samples")
    if not present:
        return data_offset, first_flags, [{} for _ in range(count)]
    bits = [bit for bit, _ in present]
    rows = [
        dict(zip(bits, record.unpack_from(buf.data, at), strict=True))
        for at in range(pos, pos + record.size * count, record.size)
    ]
    return data_offset, first_flags, rows
