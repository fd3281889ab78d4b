"""WebVTT checks: the segments of an HLS subtitle playlist (and DASH's whole-track text/vtt files).

Every segment must parse, carry an X-TIMESTAMP-MAP (HLS), and hold only cues that overlap its own
time range; a cue that runs past the end of its segment must be repeated in the next one, or the
player shows nothing after the boundary. Times on the presentation timeline: the cue's local time
minus LOCAL, plus the MPEGTS offset from the first segment's (all in seconds); segments start where
the previous EXTINF ended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from abrpipe.validate.report import Report

TOLERANCE_S = 0.01  # EXTINF and cue times are written to the millisecond
MPEGTS_HZ = 90_000
_TIME = r"(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})"
_TIMING = re.compile(rf"^{_TIME}[ \t]+-->[ \t]+{_TIME}(?:[ \t].*)?$")
_MAP = re.compile(rf"^X-TIMESTAMP-MAP=(?=.*MPEGTS:(\d+))(?=.*LOCAL:{_TIME})")


@dataclass(frozen=True)
class VttCue:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class VttFile:
    cues: tuple[VttCue, ...]
    offset_s: float | None  # X-TIMESTAMP-MAP: MPEGTS - LOCAL, in seconds; None without a map


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_vtt(text: str) -> tuple[VttFile | None, str | None]:
    """(the file, None) or (None, why it does not parse)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = re.split(r"\n[ \t]*\n", text)
    header = blocks[0].split("\n")
    if not re.match(r"^WEBVTT([ \t].*)?$", header[0]):
        return None, "does not start with a WEBVTT line"
    offset = None
    for line in header[1:]:
        if line.startswith("X-TIMESTAMP-MAP="):
            m = _MAP.match(line)
            if not m:
                return None, f"malformed {line!r}"
            offset = int(m.group(1)) / MPEGTS_HZ - _seconds(*m.groups()[1:5])
    cues = []
    for block in blocks[1:]:
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines or re.match(r"^(NOTE|STYLE|REGION)(\s|$)", lines[0]):
            continue
        timing = next((line for line in lines[:2] if "-->" in line), None)
        m = _TIMING.match(timing.strip()) if timing else None
        if not m:
            return None, f"bad cue timing line {(timing or lines[0])[:60]!r}"
        start, end = _seconds(*m.groups()[0:4]), _seconds(*m.groups()[4:8])
        if end < start:
            return None, f"cue {timing!r} ends before it starts"
        cues.append(VttCue(start, end, "\n".join(lines[lines.index(timing) + 1 :])))
    return VttFile(tuple(cues), offset), None


def check_segments(
    report: Report, segments: list[tuple[str, str, float]], *, name: str, need_map: bool = True
) -> None:
    """segments: (path relative to the output, absolute path, EXTINF) in playlist order."""
    parsed: list[tuple[str, float, float, VttFile]] = []
    start = 0.0
    base: float | None = None
    for number, (rel, path, duration) in enumerate(segments, 1):
        seg_start, seg_end = start, start + duration
        start = seg_end
        try:
            with open(path, encoding="utf-8") as fh:
                vtt, problem = parse_vtt(fh.read())
        except (OSError, UnicodeDecodeError) as exc:
            vtt, problem = None, f"cannot be read as UTF-8 text ({exc})"
        if vtt is None:
            report.add("VTT-PARSE", f"not a valid WebVTT file: {problem}", file=rel, rendition=name, segment=number)
            continue
        if vtt.offset_s is None and need_map:
            report.add(
                "VTT-TIMESTAMP-MAP",
                "no X-TIMESTAMP-MAP header: players cannot place its cues on the media timeline",
                file=rel,
                rendition=name,
                segment=number,
            )
        offset = vtt.offset_s or 0.0
        base = offset if base is None else base
        shift = offset - base  # on the timeline of the first segment
        for cue in vtt.cues:
            cue_start, cue_end = cue.start_s + shift, cue.end_s + shift
            if cue_end <= seg_start + TOLERANCE_S or cue_start >= seg_end - TOLERANCE_S:
                report.add(
                    "VTT-CUE-OUTSIDE",
                    f"cue {cue_start:.3f}-{cue_end:.3f} s lies outside its segment ({seg_start:.3f}-{seg_end:.3f} s)",
                    file=rel,
                    rendition=name,
                    segment=number,
                )
        parsed.append((rel, seg_start, seg_end, VttFile(tuple(VttCue(c.start_s + shift, c.end_s + shift, c.text)
                                                                for c in vtt.cues), vtt.offset_s)))
    for (rel, _, seg_end, vtt), (next_rel, next_start, next_end, following) in zip(parsed, parsed[1:], strict=False):
        if abs(next_start - seg_end) > TOLERANCE_S:
            continue  # an unreadable segment in between: already reported
        have = {(round(c.start_s, 3), round(c.end_s, 3), c.text) for c in following.cues}
        for cue in vtt.cues:
            if cue.end_s > seg_end + TOLERANCE_S and cue.start_s < next_end and (
                round(cue.start_s, 3), round(cue.end_s, 3), cue.text
            ) not in have:
                report.add(
                    "VTT-COVERAGE-GAP",
                    f"cue {cue.start_s:.3f}-{cue.end_s:.3f} s runs past the end of {rel} ({seg_end:.3f} s) "
                    f"but is not repeated in {next_rel}",
                    file=next_rel,
                    rendition=name,
                )
