"""Seek-bar thumbnails (trick play): JPEG sprite sheets cut from the encode's own decode.

The encode gives the decoded video one more branch of its split (no second pass over the source):

    ... split -> select every Nth frame -> scale + letterbox to the tile size -> tile CxR -> JPEG sheets

Sheet k (1-based) holds thumbnails (k-1)*C*R ... k*C*R-1, left to right then top to bottom; the last
sheet is only partly filled. The thumbnail stage then counts the sheets, checks them and adds an
ImageTrack to the Title, from which three descriptions are written: a WebVTT track with `#xywh=`
fragments (web players' seek-bar plug-ins), a DASH-IF image AdaptationSet (dash.py) and an HLS image
media playlist with EXT-X-TILES (hls.py).
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, replace
from fractions import Fraction

from abrpipe import stages
from abrpipe.errors import OutputError
from abrpipe.units import parse_duration_s, parse_size

THUMBNAIL_DIR = "thumbnails"  # sheets, the WebVTT track and the HLS image playlist
SHEET_PATTERN = "sheet_%05d.jpg"  # ffmpeg's image2 numbering (from 1)
SHEET_TEMPLATE = "sheet_$Number%05d$.jpg"  # the same names as a DASH SegmentTemplate
VTT_NAME = "thumbnails.vtt"
IMAGE_PLAYLIST = "images.m3u8"
JPEG_QUALITY = "5"  # mjpeg -q:v, 2 (best) .. 31: small sheets that still read well at tile size
MAX_TILE_PIXELS = 1920 * 1080
MAX_GRID = 20

_SPEC_HELP = "expected INTERVAL,WxH,CxR like 10s,320x180,5x5 (one thumbnail every INTERVAL, WxH tiles, CxR tiles per sheet)"


@dataclass(frozen=True)
class ThumbnailSpec:
    interval_s: float  # one thumbnail every interval_s
    tile_width: int
    tile_height: int
    columns: int
    rows: int

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows

    @property
    def layout(self) -> str:
        return f"{self.columns}x{self.rows}"

    def __str__(self) -> str:
        return f"{self.interval_s:g}s,{self.tile_width}x{self.tile_height},{self.layout}"


def parse_spec(value: object) -> ThumbnailSpec:
    """'10s,320x180,5x5' -> ThumbnailSpec. Raises ValueError with the expected form."""
    if not isinstance(value, str):
        raise ValueError(_SPEC_HELP)
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3:
        raise ValueError(f"{value!r}: {_SPEC_HELP}")
    try:
        interval = parse_duration_s(parts[0])
        width, height = parse_size(parts[1])
        columns, rows = parse_size(parts[2])
    except ValueError:
        raise ValueError(f"{value!r}: {_SPEC_HELP}") from None
    if width * height > MAX_TILE_PIXELS or width % 2 or height % 2:
        raise ValueError(f"{value!r}: tiles must have even sides and at most 1920x1080 pixels in all")
    if columns > MAX_GRID or rows > MAX_GRID:
        raise ValueError(f"{value!r}: at most {MAX_GRID}x{MAX_GRID} tiles per sheet")
    return ThumbnailSpec(interval, width, height, columns, rows)


def frames_per_thumbnail(spec: ThumbnailSpec, fps: Fraction) -> int:
    """The interval on the encode's constant frame grid (one thumbnail every N frames)."""
    return max(1, round(spec.interval_s * fps))


def filters(spec: ThumbnailSpec, fps: Fraction) -> list[tuple[str, dict[str, str]]]:
    """The thumbnail branch's filters, after the encode's split (frames on the constant grid)."""
    every = frames_per_thumbnail(spec, fps)
    w, h = spec.tile_width, spec.tile_height
    return [
        # Frame n, n+N, ...: exact times on the frame grid, and a count known in advance (ceil(frames/N)).
        ("select", {"expr": f"not(mod(n,{every}))"}),  # ffmpeg-python escapes the comma
        # Square pixels first (anamorphic sources), on the selected frames only.
        ("scale", {"w": "trunc(iw*sar/2)*2", "h": "ih"}),
        ("setsar", {"sar": "1"}),
        # Fit inside the tile, then letterbox: every tile is exactly WxH, whatever the source's aspect.
        ("scale", {"w": str(w), "h": str(h), "force_original_aspect_ratio": "decrease", "force_divisible_by": "2"}),
        ("pad", {"w": str(w), "h": str(h), "x": "(ow-iw)/2", "y": "(oh-ih)/2"}),
        ("format", {"pix_fmts": "yuvj420p"}),  # full-range 4:2:0, what the JPEG encoder takes
        # C x R tiles per sheet; the last, partial sheet is flushed at the end of the stream.
        ("tile", {"layout": spec.layout}),
    ]


def output_options() -> dict[str, str]:
    return {
        "c:v": "mjpeg",
        "q:v": JPEG_QUALITY,
        "fps_mode": "passthrough",  # one file per sheet: no frame duplicated or dropped to fit a rate
        "format": "image2",
        "start_number": "1",
    }


def output_path() -> str:
    return os.path.join(THUMBNAIL_DIR, SHEET_PATTERN)


# -- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageTrack:
    """A thumbnail track: its sheets and the grid they follow."""

    id: str  # its directory, relative to the output root
    spec: ThumbnailSpec
    count: int  # thumbnails in all (the last sheet holds count - (sheets-1)*C*R)
    sheets: tuple[str, ...]  # file names inside the directory, in order
    sheet_bytes: tuple[int, ...]
    duration_s: float  # the title's duration: the last thumbnail lasts until then

    @property
    def sheet_width(self) -> int:
        return self.spec.tile_width * self.spec.columns

    @property
    def sheet_height(self) -> int:
        return self.spec.tile_height * self.spec.rows

    @property
    def sheet_duration_s(self) -> float:
        return self.spec.interval_s * self.spec.per_sheet

    def thumbnail_times(self, i: int) -> tuple[float, float]:
        start = i * self.spec.interval_s
        return start, min(start + self.spec.interval_s, self.duration_s)

    def sheet_span(self, k: int) -> tuple[float, float]:
        """Start and duration of sheet k (0-based): its first tile to its last tile's end."""
        first = k * self.spec.per_sheet
        last = min(first + self.spec.per_sheet, self.count) - 1
        return self.thumbnail_times(first)[0], self.thumbnail_times(last)[1] - self.thumbnail_times(first)[0]

    def tile(self, i: int) -> tuple[int, int, int, int, int]:
        """(sheet index, x, y, w, h) of thumbnail i."""
        sheet, pos = divmod(i, self.spec.per_sheet)
        row, col = divmod(pos, self.spec.columns)
        return sheet, col * self.spec.tile_width, row * self.spec.tile_height, self.spec.tile_width, self.spec.tile_height

    @property
    def peak_bps(self) -> int:
        return max((round(size * 8 / self.sheet_duration_s) for size in self.sheet_bytes), default=0)

    @property
    def average_bps(self) -> int:
        return round(sum(self.sheet_bytes) * 8 / self.duration_s) if self.duration_s else 0


def vtt_text(track: ImageTrack) -> str:
    """The WebVTT thumbnails track: one cue per thumbnail, `sheet.jpg#xywh=x,y,w,h`."""
    lines = ["WEBVTT", ""]
    for i in range(track.count):
        start, end = track.thumbnail_times(i)
        sheet, x, y, w, h = track.tile(i)
        lines += [f"{_vtt_time(start)} --> {_vtt_time(end)}", f"{track.sheets[sheet]}#xywh={x},{y},{w},{h}", ""]
    return "\n".join(lines)


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def jpeg_size(path: str) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF marker, or None when the file is not a readable JPEG."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
    except OSError:
        return None
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


# -- the stage ----------------------------------------------------------------------------------


def _sheet_number(name: str) -> int | None:
    m = re.fullmatch(r"sheet_(\d+)\.jpg", name)
    return int(m.group(1)) if m else None


class ThumbnailStage:
    """Counts and checks the sheets the encode wrote, writes the WebVTT track, adds the ImageTrack."""

    name = "thumbnails"

    def wanted(self, job) -> bool:
        return job.effective_profile().thumbnails is not None

    def run(self, ctx: stages.StageContext):
        spec = ctx.plan.thumbnails
        if spec is None or not ctx.title.video or ctx.plan.base_fps is None:
            return ctx.title
        directory = os.path.join(ctx.work_dir, THUMBNAIL_DIR)
        every = frames_per_thumbnail(spec, ctx.plan.base_fps)
        # The frame count of the decoded title: a rendition at the full frame rate (the thumbnail
        # branch sees every frame of that grid; a rung at half the rate may last one frame longer).
        full = [r for r in ctx.title.video if r.frame_rate == ctx.plan.base_fps] or list(ctx.title.video)
        top = max(full, key=lambda r: r.duration_s)
        frames = round(top.duration_s * ctx.plan.base_fps)
        count = math.ceil(frames / every)
        expected = math.ceil(count / spec.per_sheet)
        numbered = sorted((number, n) for n in os.listdir(directory) if (number := _sheet_number(n)) is not None) if os.path.isdir(directory) else []
        names = [n for _, n in numbered]
        if [number for number, _ in numbered] != list(range(1, expected + 1)):
            raise OutputError(
                f"{directory}: the encoder wrote {len(names)} thumbnail sheet(s), {expected} expected "
                f"({count} thumbnails of {spec.layout} per sheet)"
            )
        for name in names:
            size = jpeg_size(os.path.join(directory, name))
            if size != (spec.tile_width * spec.columns, spec.tile_height * spec.rows):
                raise OutputError(f"{os.path.join(directory, name)}: not a {spec.tile_width * spec.columns}x"
                                  f"{spec.tile_height * spec.rows} JPEG sheet ({size})")
        track = ImageTrack(
            id=THUMBNAIL_DIR,
            spec=spec,
            count=count,
            sheets=tuple(names),
            sheet_bytes=tuple(os.path.getsize(os.path.join(directory, n)) for n in names),
            duration_s=ctx.title.duration_s,
        )
        with open(os.path.join(directory, VTT_NAME), "w", encoding="utf-8") as fh:
            fh.write(vtt_text(track))
        return replace(ctx.title, images=ctx.title.images + (track,))


stages.register(ThumbnailStage, order=stages.ORDER_THUMBNAILS)
