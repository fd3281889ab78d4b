"""Thumbnail (trick-play) checks: the three ways a player finds seek-bar tiles.

- a WebVTT thumbnails track (cues whose text is `sheet.jpg#xywh=x,y,w,h`), found beside the manifests;
- a DASH-IF image AdaptationSet (`http://dashif.org/thumbnail_tile`, checked from dash_checks);
- an HLS image media playlist (EXT-X-IMAGE-STREAM-INF -> EXT-X-TILES + sheets).

Every sheet must exist and be a readable image (FILE-MISSING, THUMB-SHEET), every tile must lie inside
its sheet (THUMB-TILE), and the tiles' times must cover the title without gaps (THUMB-COVERAGE).
"""

from __future__ import annotations

import os
import re
import struct

from abrpipe.thumbnails import jpeg_size
from abrpipe.validate.media import Context

THUMBNAIL_SCHEME = "http://dashif.org/thumbnail_tile"
COVERAGE_TOLERANCE_S = 0.25  # as AV-DURATION: a title's streams may end this far apart
GAP_TOLERANCE_S = 0.002

_TIMING = re.compile(r"^\s*((?:\d+:)?\d{2}:\d{2}\.\d{3})\s+-->\s+((?:\d+:)?\d{2}:\d{2}\.\d{3})(?:\s.*)?$")
_XYWH = re.compile(r"^(?P<uri>[^#\s]+)#xywh=(?P<x>\d+),(?P<y>\d+),(?P<w>\d+),(?P<h>\d+)\s*$")
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) of a JPEG or PNG file, or None."""
    size = jpeg_size(path)
    if size is not None:
        return size
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    return None


def _seconds(stamp: str) -> float:
    parts = stamp.split(":")
    value = float(parts[-1]) + 60 * int(parts[-2])
    return value + (3600 * int(parts[0]) if len(parts) == 3 else 0)


def title_duration_s(ctx: Context) -> float | None:
    """The longest video rendition the manifests play (the title the thumbnails must cover)."""
    durations = [r.total_s for r in ctx.all_renditions() if r.kind == "video" and r.analysed]
    return max(durations) if durations else None


class ThumbChecker:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.report = ctx.report
        self._sizes: dict[str, tuple[int, int] | None] = {}

    def sheet_size(self, path: str, *, referrer: str, name: str) -> tuple[int, int] | None:
        """Checks the sheet exists and is an image; returns its size."""
        if path in self._sizes:
            return self._sizes[path]
        size = None
        if self.ctx.check_file(path, referrer=referrer, rendition=name):
            size = image_size(path)
            if size is None:
                self.report.add("THUMB-SHEET", "not a readable JPEG or PNG image", file=self.ctx.rel(path), rendition=name)
        self._sizes[path] = size
        return size

    # -- DASH-IF image AdaptationSet -----------------------------------------------------------

    def dash_image_set(self, mpd_path: str, name: str, sheets: list[str], rep, aset) -> None:
        rel = self.ctx.rel(mpd_path)
        layout = None
        for d in (rep.essential_properties or []) + (aset.essential_properties or []):
            if d.scheme_id_uri == THUMBNAIL_SCHEME:
                layout = d.value
        width, height = rep.width or aset.width, rep.height or aset.height
        if not layout or not _SIZE.match(str(layout)) or not width or not height:
            self.report.add(
                "THUMB-PARSE",
                f"image Representation without a {THUMBNAIL_SCHEME} EssentialProperty (CxR) and @width/@height",
                file=rel,
                rendition=name,
            )
            return
        for path in sheets:
            size = self.sheet_size(path, referrer=mpd_path, name=name)
            if size is not None and (size[0] < int(width) or size[1] < int(height)):
                self.report.add(
                    "THUMB-TILE",
                    f"the sheet is {size[0]}x{size[1]} but the Representation declares {width}x{height} of {layout} "
                    "tiles: tiles lie outside it",
                    file=self.ctx.rel(path),
                    rendition=name,
                )

    # -- HLS image media playlists ---------------------------------------------------------------

    def hls_image_playlist(self, path: str, title_s: float | None) -> None:
        rel = self.ctx.rel(path)
        name = rel or path
        if not self.ctx.check_file(path, rendition=name):
            return
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            lines = [line.strip() for line in fh]
        if not lines or lines[0] != "#EXTM3U":
            self.report.add("THUMB-PARSE", "an image playlist must start with #EXTM3U", file=rel, rendition=name)
            return
        total = 0.0
        duration = tiles = None
        count = 0
        for line in lines[1:]:
            if line.startswith("#EXTINF:"):
                duration = float(line[8:].split(",")[0])
            elif line.startswith("#EXT-X-TILES:"):
                tiles = dict(re.findall(r"([A-Z-]+)=([^,]+)", line[13:]))
            elif line and not line.startswith("#"):
                count += 1
                if duration is None or tiles is None or not all(k in tiles for k in ("RESOLUTION", "LAYOUT", "DURATION")):
                    self.report.add(
                        "THUMB-PARSE",
                        f"sheet {line} lacks EXTINF or EXT-X-TILES with RESOLUTION, LAYOUT and DURATION",
                        file=rel,
                        rendition=name,
                        segment=count,
                    )
                    total += duration or 0.0  # the time is there, only its tiles are not described
                    duration = tiles = None
                    continue
                res, lay = _SIZE.match(tiles["RESOLUTION"]), _SIZE.match(tiles["LAYOUT"])
                if not res or not lay:
                    self.report.add("THUMB-PARSE", f"EXT-X-TILES {tiles}: RESOLUTION and LAYOUT are WxH", file=rel,
                                    rendition=name, segment=count)
                    continue
                need_w, need_h = int(res[1]) * int(lay[1]), int(res[2]) * int(lay[2])
                sheet = self.ctx.resolve(os.path.dirname(path), line, referrer=path, rendition=name)
                size = self.sheet_size(sheet, referrer=path, name=name) if sheet else None
                if size is not None and (size[0] < need_w or size[1] < need_h):
                    self.report.add(
                        "THUMB-TILE",
                        f"the sheet is {size[0]}x{size[1]}, smaller than {tiles['LAYOUT']} tiles of {tiles['RESOLUTION']}",
                        file=self.ctx.rel(sheet),
                        rendition=name,
                        segment=count,
                    )
                capacity = float(tiles["DURATION"]) * int(lay[1]) * int(lay[2])
                if duration > capacity + GAP_TOLERANCE_S:
                    self.report.add(
                        "THUMB-COVERAGE",
                        f"sheet {line} lasts {duration:.3f} s but its tiles cover only {capacity:.3f} s",
                        file=rel,
                        rendition=name,
                        segment=count,
                    )
                total += duration
                duration = tiles = None
        if count == 0:
            self.report.add("THUMB-PARSE", "the image playlist lists no sheets", file=rel, rendition=name)
        elif title_s is not None and total < title_s - COVERAGE_TOLERANCE_S:
            self.report.add(
                "THUMB-COVERAGE", f"the sheets cover {total:.3f} s of the {title_s:.3f} s title", file=rel, rendition=name
            )

    # -- WebVTT thumbnails tracks ----------------------------------------------------------------

    def vtt(self, path: str, title_s: float | None) -> None:
        rel = self.ctx.rel(path)
        name = rel or path
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            lines = fh.read().splitlines()
        if not lines or not lines[0].startswith("WEBVTT"):
            self.report.add("THUMB-PARSE", "a WebVTT file must start with WEBVTT", file=rel, rendition=name)
            return
        cues: list[tuple[float, float]] = []
        for i, line in enumerate(lines):
            m = _TIMING.match(line)
            if not m:
                if "-->" in line:
                    self.report.add("THUMB-PARSE", f"line {i + 1}: bad cue timing {line.strip()!r}", file=rel, rendition=name)
                continue
            start, end = _seconds(m.group(1)), _seconds(m.group(2))
            payload = lines[i + 1].strip() if i + 1 < len(lines) else ""
            ref = _XYWH.match(payload)
            if end <= start or not ref:
                problem = "ends before it starts" if end <= start else f"text {payload!r} is not SHEET#xywh=x,y,w,h"
                self.report.add("THUMB-PARSE", f"line {i + 1}: the cue {problem}", file=rel, rendition=name)
                continue
            cues.append((start, end))
            sheet = self.ctx.resolve(os.path.dirname(path), ref["uri"], referrer=path, rendition=name)
            size = self.sheet_size(sheet, referrer=path, name=name) if sheet else None
            x, y, w, h = (int(ref[k]) for k in "xywh")
            if size is not None and (x + w > size[0] or y + h > size[1] or w == 0 or h == 0):
                self.report.add(
                    "THUMB-TILE",
                    f"line {i + 2}: tile {x},{y} {w}x{h} lies outside {ref['uri']} ({size[0]}x{size[1]})",
                    file=rel,
                    rendition=name,
                )
        self._coverage(cues, title_s, rel, name)

    def _coverage(self, cues: list[tuple[float, float]], title_s: float | None, rel: str | None, name: str) -> None:
        if not cues:
            return
        cues.sort()
        problems = []
        if cues[0][0] > GAP_TOLERANCE_S:
            problems.append(f"nothing before {cues[0][0]:.3f} s")
        end = cues[0][1]
        for start, stop in cues[1:]:
            if start > end + GAP_TOLERANCE_S:
                problems.append(f"a gap from {end:.3f} to {start:.3f} s")
            end = max(end, stop)
        if title_s is not None and end < title_s - COVERAGE_TOLERANCE_S:
            problems.append(f"they end at {end:.3f} s, the title at {title_s:.3f} s")
        if problems:
            shown = "; ".join(problems[:3]) + (f" ({len(problems)} in all)" if len(problems) > 3 else "")
            self.report.add("THUMB-COVERAGE", f"the thumbnails leave the title uncovered: {shown}", file=rel, rendition=name)


def is_thumbnail_vtt(path: str) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return head.startswith("WEBVTT") and "#xywh=" in head


def check_thumbnails(ctx: Context, checker: ThumbChecker, image_playlists: list[str]) -> None:
    """The HLS image playlists named by the multivariant playlists, and every WebVTT thumbnails track
    under the output root, against the title the manifests play."""
    title_s = title_duration_s(ctx)
    for path in dict.fromkeys(image_playlists):
        checker.hls_image_playlist(path, title_s)
    for directory, _, names in sorted(os.walk(ctx.root)):
        for n in sorted(names):
            if n.lower().endswith(".vtt") and is_thumbnail_vtt(os.path.join(directory, n)):
                checker.vtt(os.path.join(directory, n), title_s)
