"""A small MPEG-TS reader: what HLS needs to know about one .ts segment.

It reads the 188-byte packets, the PAT and PMT (and whether they come before the first media
packet, as HLS requires of every segment), the PES timestamps of each elementary stream, the NAL
unit types of the first video access unit (is it an IDR?), and the continuity counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PACKET = 188
SYNC = 0x47
PTS_HZ = 90000
PTS_WRAP = 1 << 33

# PMT stream_type values (ISO/IEC 13818-1 table 2-34, and the HLS ones).
STREAM_TYPES = {0x1B: "h264", 0x24: "hevc", 0x0F: "aac", 0x11: "aac-latm", 0x81: "ac3", 0x87: "eac3", 0x03: "mp3", 0x04: "mp3"}
VIDEO_TYPES = {0x1B, 0x24}


class TsError(ValueError):
    pass


@dataclass
class TsSegment:
    packets: int = 0
    psi_first: bool = False  # a PAT and a PMT before the first packet of any elementary stream
    has_pat: bool = False
    has_pmt: bool = False
    streams: dict[int, int] = field(default_factory=dict)  # pid -> stream_type
    pts: dict[int, list[int]] = field(default_factory=dict)  # pid -> PTS of each PES, in file order
    dts: dict[int, list[int]] = field(default_factory=dict)
    first_video_nal_types: list[int] = field(default_factory=list)  # of the first video PES
    cc_errors: list[tuple[int, int]] = field(default_factory=list)  # (pid, packet index)

    @property
    def video_pid(self) -> int | None:
        return next((pid for pid, t in self.streams.items() if t in VIDEO_TYPES), None)

    @property
    def video_codec(self) -> str | None:
        pid = self.video_pid
        return STREAM_TYPES.get(self.streams[pid]) if pid is not None else None

    def video_pts(self) -> list[int]:
        pid = self.video_pid
        return self.pts.get(pid, []) if pid is not None else []

    @property
    def first_video_pts(self) -> int | None:
        pts = self.video_pts()
        return pts[0] if pts else None

    def frame_ticks(self) -> int | None:
        """The video frame duration (90 kHz), from the smallest step between sorted PTS."""
        ordered = sorted(self.video_pts())
        steps = [b - a for a, b in zip(ordered, ordered[1:], strict=False) if b > a]
        return min(steps) if steps else None

    def video_end_pts(self) -> int | None:
        """Where the last video frame ends (90 kHz)."""
        pts, frame = self.video_pts(), self.frame_ticks()
        return max(pts) + frame if pts and frame else None

    @property
    def starts_with_idr(self) -> bool | None:
        """The first video access unit holds an IDR (H.264 type 5; HEVC IRAP 16-21) before any other
        picture; None when there is no video or it could not be read."""
        codec = self.video_codec
        if codec is None or not self.first_video_nal_types:
            return None
        for t in self.first_video_nal_types:
            if codec == "h264":
                if t == 5:
                    return True
                if t == 1:
                    return False
            elif 16 <= t <= 21:
                return True
            elif t < 16:
                return False
        return False


def _timestamp(b: bytes) -> int:
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def _nal_types(es: bytes, codec: str) -> list[int]:
    """NAL unit types of an Annex B byte stream, in order."""
    types = []
    i = es.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(es):
        header = es[i + 3]
        types.append(header & 0x1F if codec == "h264" else (header >> 1) & 0x3F)
        i = es.find(b"\x00\x00\x01", i + 3)
    return types


def _packets(data: bytes):
    """(index, payload_unit_start, pid, continuity counter, has payload, payload) of every packet."""
    for n in range(len(data) // PACKET):
        p = data[n * PACKET : (n + 1) * PACKET]
        if p[0] != SYNC:
            raise TsError(f"packet {n} has no sync byte")
        afc = (p[3] >> 4) & 0x3
        start = 4 + (1 + p[4] if afc & 2 else 0)
        has_payload = bool(afc & 1) and start < PACKET
        yield n, bool(p[1] & 0x40), (p[1] & 0x1F) << 8 | p[2], p[3] & 0x0F, bool(afc & 1), p[start:] if has_payload else b""


def _section(payload: bytes) -> tuple[bytes, int]:
    section = payload[1 + payload[0] :]
    return section, (section[1] & 0x0F) << 8 | section[2]


def read(data: bytes) -> TsSegment:
    """Parse one segment. Raises TsError when it is not MPEG-TS (no sync bytes, a partial packet)."""
    if len(data) % PACKET:
        raise TsError(f"{len(data)} bytes is not a whole number of {PACKET}-byte packets")
    seg = TsSegment(packets=len(data) // PACKET)
    packets = list(_packets(data))
    # Pass 1: the program tables, wherever they are, so that a segment with late tables is still read.
    pmt_pids: set[int] = set()
    first_pat = first_pmt = None
    try:
        for n, pusi, pid, _, _, payload in packets:
            if pid == 0 and pusi and payload and first_pat is None:
                first_pat = n
                section, length = _section(payload)
                for i in range(8, 3 + length - 4, 4):
                    if section[i] << 8 | section[i + 1]:  # program 0 is the network PID
                        pmt_pids.add((section[i + 2] & 0x1F) << 8 | section[i + 3])
            elif pid in pmt_pids and pusi and payload and first_pmt is None:
                first_pmt = n
                section, length = _section(payload)
                i = 12 + ((section[10] & 0x0F) << 8 | section[11])
                while i + 5 <= 3 + length - 4:
                    seg.streams[(section[i + 1] & 0x1F) << 8 | section[i + 2]] = section[i]
                    i += 5 + ((section[i + 3] & 0x0F) << 8 | section[i + 4])
    except IndexError:
        raise TsError("a PAT or PMT section is cut short") from None
    seg.has_pat, seg.has_pmt = first_pat is not None, first_pmt is not None
    first_media = next((n for n, _, pid, _, _, _ in packets if pid in seg.streams), None)
    seg.psi_first = (
        first_pat is not None and first_pmt is not None and first_pat < first_pmt and (first_media is None or first_pmt < first_media)
    )
    # Pass 2: continuity counters and the elementary streams' PES headers.
    last_cc: dict[int, int] = {}
    video_pid = seg.video_pid
    first_video: bytearray | None = None
    first_video_done = False
    for n, pusi, pid, cc, counted, payload in packets:
        if pid == 0x1FFF:
            continue
        if counted:  # a packet with payload: the counter moves on by one (a repeat is allowed once)
            previous = last_cc.get(pid)
            if previous is not None and cc not in ((previous + 1) & 0x0F, previous):
                seg.cc_errors.append((pid, n))
            last_cc[pid] = cc
        if pid not in seg.streams or not payload:
            continue
        if pusi and payload[:3] == b"\x00\x00\x01" and len(payload) >= 9:
            flags = payload[7] >> 6
            if flags & 2 and len(payload) >= 14:
                pts = _timestamp(payload[9:14])
                seg.pts.setdefault(pid, []).append(pts)
                seg.dts.setdefault(pid, []).append(_timestamp(payload[14:19]) if flags == 3 and len(payload) >= 19 else pts)
            if pid == video_pid:
                if first_video is None:
                    first_video = bytearray(payload[9 + payload[8] :])
                else:
                    first_video_done = True
                continue
        if pid == video_pid and first_video is not None and not first_video_done:
            first_video += payload
    if first_video is not None:
        seg.first_video_nal_types = _nal_types(bytes(first_video), seg.video_codec or "h264")
    return seg


def read_file(path: str) -> TsSegment:
    with open(path, "rb") as fh:
        return read(fh.read())
