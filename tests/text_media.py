"""Test media with text: a source whose H.264 SEI carries CEA-608 captions (CC1), with a mov_text
subtitle track, and the sidecar files the tests publish.

FFmpeg 5.1 decodes CEA-608 but has no encoder for it, so the captions are written here: libx264
encodes the picture (one access unit per frame, each opened by an AUD), and an SEI NAL unit
(user_data_registered_itu_t_t35, ATSC A/53 "GA94" cc_data) is inserted after each AUD, carrying
the pop-on caption commands and characters, two bytes per frame, on field 1 (CC1).
"""

from __future__ import annotations

import re
from pathlib import Path

from media import ffmpeg

FPS = 25
SECONDS = 8
# (time in s, text): pop-on captions, each shown at its End Of Caption command.
CAPTIONS = ((0.0, "HELLO"), (3.0, "WORLD"))
# The source's own subtitle track (mov_text): one cue at 0, one across the 4-s segment boundary.
SOURCE_SRT = "1\n00:00:00,000 --> 00:00:01,500\nHello <i>world</i>\n\n2\n00:00:03,500 --> 00:00:04,500\nAcross the boundary\n"
SOURCE_CUES = [(0.0, 1.5, "Hello <i>world</i>"), (3.5, 4.5, "Across the boundary")]
# A sidecar WebVTT, cues out of order and overlapping on purpose (accepted and sorted).
SIDECAR_VTT = (
    "WEBVTT\n\n"
    "00:00:01.900 --> 00:00:02.100\nBonjour la limite\n\n"
    "00:00:00.000 --> 00:00:01.000\nBonjour\n\n"
    "00:00:00.500 --> 00:00:05.500\nLongue\n"
)
SIDECAR_CUES = [(0.0, 1.0, "Bonjour"), (0.5, 5.5, "Longue"), (1.9, 2.1, "Bonjour la limite")]


def _parity(b: int) -> int:
    b &= 0x7F
    return b | (0x80 if bin(b).count("1") % 2 == 0 else 0)


def _caption_pairs(text: str) -> list[tuple[int, int]]:
    # ENM (erase the hidden buffer) and RCL (pop-on), sent twice as 608 control codes are,
    # the characters, then EOC (show it).
    pairs = [(0x14, 0x2E), (0x14, 0x2E), (0x14, 0x20), (0x14, 0x20)]
    data = text.encode("ascii") + (b"\x00" if len(text) % 2 else b"")
    pairs += [(data[i], data[i + 1]) for i in range(0, len(data), 2)]
    return pairs + [(0x14, 0x2F), (0x14, 0x2F)]


def _sei(pairs: list[tuple[int, int]]) -> bytes:
    cc = b"".join(bytes([0xFC, _parity(a), _parity(b)]) for a, b in pairs)  # marker, valid, field 1
    payload = b"\xb5\x00\x31GA94\x03" + bytes([0x40 | len(pairs), 0xFF]) + cc + b"\xff"
    body = bytes([4, len(payload)]) + payload + b"\x80"  # payload type 4, size, rbsp trailing bits
    out, zeros = bytearray(), 0
    for x in body:  # emulation prevention
        if zeros >= 2 and x <= 3:
            out.append(3)
            zeros = 0
        out.append(x)
        zeros = zeros + 1 if x == 0 else 0
    return b"\x00\x00\x00\x01\x06" + bytes(out)


def make_text_source(directory: Path, *, captions: bool = True) -> Path:
    """SECONDS s of 320x180 @ 25 fps, a tone, the mov_text track (eng, SDH) and CEA-608 captions:
    four 2-s segments with the test profile (tests/data/text.toml)."""
    raw = directory / "raw.h264"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={FPS}", "-t", str(SECONDS), "-c:v", "libx264",
           "-preset", "ultrafast", "-bf", "0", "-x264-params", "aud=1", "-f", "h264", str(raw))
    data = raw.read_bytes()
    if captions:
        starts = [m.start() for m in re.finditer(b"\x00\x00\x00\x01\x09", data)]
        schedule: dict[int, list[tuple[int, int]]] = {}
        for t, text in CAPTIONS:
            for i, pair in enumerate(_caption_pairs(text)):
                schedule[round(t * FPS) + i] = [pair]
        out = bytearray()
        for n, (s, e) in enumerate(zip(starts, starts[1:] + [len(data)], strict=True)):
            frame = data[s:e]
            out += frame[:6] + _sei(schedule.get(n, [(0x80, 0x80)])) + frame[6:]  # after the 6-byte AUD
        data = bytes(out)
    raw.write_bytes(data)
    srt = directory / "source.srt"
    srt.write_text(SOURCE_SRT)
    path = directory / ("text-source.mp4" if captions else "text-source-nocc.mp4")
    ffmpeg("-r", str(FPS), "-f", "h264", "-i", str(raw), "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-i", str(srt), "-map", "0:v", "-map", "1:a", "-map", "2:s", "-t", str(SECONDS), "-c:v", "copy",
           "-c:a", "aac", "-c:s", "mov_text", "-metadata:s:s:0", "language=eng", "-disposition:s:0", "hearing_impaired",
           str(path))
    return path


def caption_events(path: Path) -> list[tuple[float, str]]:
    """(start s, text) of the CEA-608 captions FFmpeg decodes from a file's video SEI."""
    import subprocess

    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", f"movie={path}[out+subcc]", "-map", "0:s", "-f", "srt", "-"],
        check=True, capture_output=True, text=True,
    ).stdout
    events = []
    for block in out.strip().split("\n\n"):
        lines = block.splitlines()
        if len(lines) >= 3:
            h, m, rest = lines[1].split(" --> ")[0].split(":")
            start = int(h) * 3600 + int(m) * 60 + float(rest.replace(",", "."))
            events.append((round(start, 2), re.sub(r"<[^>]*>|\{[^}]*\}", "", " ".join(lines[2:]))))
    return events


def make_pgs_source(directory: Path) -> Path:
    """3 s of video with a (German) PGS bitmap subtitle track: FFmpeg cannot encode bitmap subtitles
    from text, so the .sup stream is written here: two display sets, each a presentation
    composition segment (no objects) and an end segment."""
    import struct

    def segment(pts: int, kind: int, data: bytes) -> bytes:
        return b"PG" + struct.pack(">II", pts, 0) + bytes([kind]) + struct.pack(">H", len(data)) + data

    composition = struct.pack(">HHBHBBBB", 320, 180, 0x10, 0, 0x80, 0, 0, 0)
    sup = directory / "bitmap.sup"
    sup.write_bytes(b"".join(segment(pts, kind, data) for pts in (90000, 180000)
                             for kind, data in ((0x16, composition), (0x80, b""))))
    path = directory / "pgs.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-i", str(sup), "-t", "3", "-map", "0", "-map", "1",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:s", "copy", "-metadata:s:s:0", "language=deu", str(path))
    return path
