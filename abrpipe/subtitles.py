"""Subtitles: read SRT / WebVTT (sidecar files or the source's own text tracks), check them, and cut
them into WebVTT segments on the video's segment grid.

Pure functions over text: reading files, extracting the source's tracks (through the runner) and
writing the segments happen in the subtitles stage (text_stage.py).

Cue policy: cues out of order or overlapping are accepted (WebVTT shows overlapping cues together)
and sorted by start time; a cue that ends before it starts is refused; a cue of zero duration is
dropped (nothing would be shown).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import langcodes

from abrpipe.errors import InputError

# Text codecs FFmpeg turns into WebVTT (the source's tracks we keep), and bitmap ones it cannot.
TEXT_CODECS = frozenset({"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"})
BITMAP_CODECS = frozenset({"hdmv_pgs_subtitle", "dvb_subtitle", "dvd_subtitle", "xsub", "dvb_teletext"})

_BCP47 = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_FLAGS = ("forced", "sdh", "default")


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str
    settings: str = ""  # WebVTT cue settings (position, align...), kept as written


@dataclass(frozen=True)
class SubtitleSpec:
    """One subtitle track to publish: a sidecar file, or the source's text track `stream_index`."""

    language: str  # BCP 47, canonical form (eng -> en)
    path: str | None = None  # sidecar file
    stream_index: int | None = None  # or: the source's stream
    forced: bool = False
    sdh: bool = False
    default: bool = False
    name: str | None = None

    @property
    def label(self) -> str:
        return self.path if self.path else f"source stream #{self.stream_index}"


def language_tag(value: str, where: str) -> str:
    """A BCP 47 tag in its canonical form (`eng` -> `en`, `pt-br` -> `pt-BR`), or InputError."""
    if not _BCP47.match(value) or not langcodes.tag_is_valid(value):
        raise InputError(
            f"{where}: {value!r} is not a BCP 47 language tag",
            hint="use a tag such as en, fr, pt-BR or zh-Hant",
        )
    return langcodes.standardize_tag(value)


def language_name(tag: str) -> str:
    """'fr' -> 'Français' (the name in its own language, as players list it)."""
    try:
        name = langcodes.Language.get(tag).autonym()
    except (LookupError, ValueError, ImportError):  # no language_data package: the tag is the name
        return tag
    return name[:1].upper() + name[1:] if name and not name.startswith("Unknown") else tag


def parse_spec(value: str, *, base_dir: str | None = None) -> SubtitleSpec:
    """`LANG[,forced][,sdh][,default]=FILE` -> SubtitleSpec (`en-sdh` is read as `en,sdh`)."""
    head, sep, path = value.partition("=")
    if not sep or not head or not path:
        raise InputError(
            f"--subtitles {value!r}: expected LANG[,forced][,sdh][,default]=FILE",
            hint="for example --subtitles en=movie.en.srt or --subtitles fr,forced=movie.fr.vtt",
        )
    parts = [p.strip() for p in head.split(",")]
    lang, flags = parts[0], [p.lower() for p in parts[1:]]
    unknown = [f for f in flags if f not in _FLAGS]
    if unknown:
        raise InputError(f"--subtitles {value!r}: unknown flag {unknown[0]!r}", hint="flags are forced, sdh and default")
    if lang.lower().endswith("-sdh"):
        lang, flags = lang[:-4], flags + ["sdh"]
    path = os.path.join(base_dir, path) if base_dir and not os.path.isabs(path) else path
    return SubtitleSpec(
        language=language_tag(lang, f"--subtitles {value!r}"),
        path=path,
        forced="forced" in flags,
        sdh="sdh" in flags,
        default="default" in flags,
    )


def check_specs(specs: tuple[SubtitleSpec, ...]) -> tuple[SubtitleSpec, ...]:
    """Read every sidecar once, so that a bad one is refused before anything is encoded."""
    for spec in specs:
        if spec.path:
            read_cues(spec.path)
    return specs


# -- reading ------------------------------------------------------------------------------------

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(.*)$")


def _ms(h: str | None, m: str, s: str, frac: str) -> int:
    return ((int(h or 0) * 60 + int(m)) * 60 + int(s)) * 1000 + int(frac.ljust(3, "0")[:3])


def decode_text(data: bytes, path: str) -> str:
    """UTF-8 (with or without BOM) and UTF-16 with a BOM; anything else is refused with the offending byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            hint="convert it to UTF-8 first, e.g. iconv -f windows-1252 -t utf-8",
        ) from None


def read_cues(path: str) -> list[Cue]:
    """Read a sidecar SRT or WebVTT file into sorted cues (InputError with one clear line otherwise)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint="check the --subtitles path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a subtitle file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path}: is a binary file, not SRT or WebVTT subtitles")
    return parse_text(decode_text(data, path), path)


def parse_text(text: str, path: str) -> list[Cue]:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = [b for b in re.split(r"\n[ \t]*\n", text.strip("\n")) if b.strip()]
    first = text.lstrip().split("\n", 1)[0]
    if re.match(r"^WEBVTT(?:[ \t].*)?$", first):
        kind, blocks = "WebVTT", blocks[1:]
    elif blocks and any(_TIMING.match(line) for line in blocks[0].split("\n")[:2]):
        kind = "SRT"
    else:
        raise InputError(
            f"{path}: is neither SRT nor WebVTT (no WEBVTT header and no 'start --> end' cue timing at the start)",
            hint="--subtitles takes .srt or .vtt files",
        )
    cues = []
    for number, block in enumerate(blocks, 1):
        lines = block.split("\n")
        if kind == "WebVTT" and re.match(r"^(NOTE|STYLE|REGION)(\s|$)", lines[0]):
            continue
        timing_at = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
        match = _TIMING.match(lines[timing_at]) if timing_at is not None else None
        if match is None or timing_at is None:
            raise InputError(f"{path}: cue {number}: no valid 'start --> end' timing line ({lines[0][:60]!r})")
        g = match.groups()
        start, end = _ms(*g[0:4]), _ms(*g[4:8])
        if end < start:
            raise InputError(
                f"{path}: cue {number} ends before it starts ({format_time(start)} --> {format_time(end)})",
                hint="fix the cue's timing",
            )
        body = "\n".join(line for line in lines[timing_at + 1 :]).strip("\n")
        if end == start or not body.strip():
            continue  # nothing would be shown
        settings = g[8].strip() if kind == "WebVTT" else ""
        cues.append(Cue(start, end, _to_vtt_text(body) if kind == "SRT" else body, settings))
    cues.sort(key=lambda c: (c.start_ms, c.end_ms))
    return cues


_SRT_TAG = re.compile(r"</?font[^>]*>|\{\\[^}]*\}")


def _to_vtt_text(body: str) -> str:
    """SRT text -> WebVTT cue text: <i>/<b>/<u> kept, <font> and {\\an8} overrides dropped, & escaped."""
    body = _SRT_TAG.sub("", body)
    body = body.replace("&", "&amp;")
    return re.sub(r"<(?!/?[ibu]>)", "&lt;", body)


# -- writing ------------------------------------------------------------------------------------

def format_time(ms: int) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{milli:03d}"


def vtt_document(cues: list[Cue], *, mpegts: int | None = None) -> str:
    """A WebVTT file; with `mpegts`, an X-TIMESTAMP-MAP header maps LOCAL 0 to that 90 kHz time."""
    lines = ["WEBVTT"]
    if mpegts is not None:
        lines.append(f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000")
    lines.append("")
    for cue in cues:
        timing = f"{format_time(cue.start_ms)} --> {format_time(cue.end_ms)}"
        lines += [timing + (f" {cue.settings}" if cue.settings else ""), cue.text.replace("-->", "->"), ""]
    return "\n".join(lines)


def segment_cues(cues: list[Cue], bounds_ms: list[tuple[int, int]]) -> list[list[Cue]]:
    """The cues of each segment [start, end): every cue that overlaps it, with its own times (a cue
    across a boundary is in both segments). A cue that starts after the title's end is in none."""
    out: list[list[Cue]] = [[] for _ in bounds_ms]
    for cue in cues:
        for i, (start, end) in enumerate(bounds_ms):
            if cue.start_ms < end and cue.end_ms > start:
                out[i].append(cue)
    return out
