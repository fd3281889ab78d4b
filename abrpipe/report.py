"""`abrpipe report OUT`: one self-contained HTML file about an output.

    data = collect("out/")                       # validates, and keeps what the validator read
    write_report("out/", "out/report.html")

The file needs nothing else: no script, no style sheet, font or image from anywhere, charts as
inline SVG drawn here. Its figures are the validator's own (abrpipe.validate reads every segment's
boxes once; the report draws from that reading): the ladder with declared vs measured bandwidth,
each rendition's bit rate segment by segment (from the sample sizes in the segments' trun boxes),
the keyframe/segment grid, the validation result, the encode timings from the job record
(abrpipe.json), and, when the output was encoded --per-title, the rate/quality hull with the chosen
rungs (pertitle.json).

Every figure a test or a script may want to read is an element with ``data-key`` and an exact
``data-value`` beside the text written for people.
"""

from __future__ import annotations

import html
import json
import math
import os
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from abrpipe import __version__
from abrpipe.errors import OutputError
from abrpipe.validate import Report, find_manifests, inspect_output
from abrpipe.validate.media import Rendition

REPORT_NAME = "report.html"
RECORD_NAME = "abrpipe.json"  # pipeline.RECORD_NAME, read here without importing the pipeline
PERTITLE_NAME = "pertitle.json"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


# ---------------------------------------------------------------------------------------- model


@dataclass
class SegmentRow:
    number: int
    start_s: float
    duration_s: float
    size_bytes: int  # the segment file (or byte range)
    sample_bytes: int  # the samples of the track in it
    keyframes_s: list[float]

    @property
    def sample_bps(self) -> float:
        return self.sample_bytes * 8 / self.duration_s if self.duration_s else 0.0


@dataclass
class RenditionRow:
    name: str
    kind: str
    codecs: str
    width: int | None
    height: int | None
    frame_rate: float | None
    channels: int | None
    segments: list[SegmentRow]
    average_bps: float | None  # the validator's measure: segment bytes over their durations
    peak_bps: float | None
    declared_dash_bps: int | None = None

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.segments)

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.segments)


@dataclass
class VariantRow:
    uri: str
    resolution: str
    codecs: str
    bandwidth: int | None
    average_bandwidth: int | None
    measured_peak_bps: float | None  # video + the largest audio of its group
    measured_average_bps: float | None


@dataclass
class ReportData:
    root: str
    validation: Report
    renditions: list[RenditionRow]
    variants: list[VariantRow]
    record: dict[str, Any] | None
    pertitle: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What `abrpipe report --json` prints."""
        return {
            "root": self.root,
            "validation": {k: v for k, v in self.validation.summary().items() if k != "findings"},
            "renditions": [
                {"name": r.name, "kind": r.kind, "codecs": r.codecs, "segments": len(r.segments), "size_bytes": r.size_bytes,
                 "average_bps": _round(r.average_bps), "peak_bps": _round(r.peak_bps), "declared_dash_bps": r.declared_dash_bps}
                for r in self.renditions
            ],  # fmt: skip
            "per_title": self.pertitle is not None,
            "timings_s": (self.record or {}).get("timings_s"),
        }


def _round(x: float | None) -> int | None:
    return None if x is None else round(x)


# -------------------------------------------------------------------------------------- collect


def collect(out: str, *, dash_schema: str | None = None, shown_as: str | None = None) -> ReportData:
    """Validate ``out`` and gather everything the report shows; ``shown_as`` is the name the
    report gives the output (its published path, when ``out`` is still the work area)."""
    report, ctx = inspect_output(out, dash_schema=dash_schema)
    root = ctx.root
    pairs = [(r, _rendition_row(ctx.rel(r.init_path) or r.name, r)) for r in ctx.all_renditions()]
    order = {"video": 0, "audio": 1}
    pairs.sort(key=lambda p: (order.get(p[1].kind, 2), -(p[1].height or 0), -(p[1].average_bps or 0)))
    rows = [row for _, row in pairs]
    by_init = {r.init_path: row for r, row in pairs if r.init_path}
    _, playlists, mpds = find_manifests(out)
    notes: list[str] = []
    for mpd in mpds:
        for init, bandwidth in _dash_bandwidths(mpd, notes).items():
            if init in by_init:
                by_init[init].declared_dash_bps = bandwidth
    variants = [v for p in playlists for v in _hls_variants(p, by_init, notes)]
    record = _read_json(os.path.join(root, RECORD_NAME), notes)
    pertitle = _read_json(os.path.join(root, PERTITLE_NAME), notes)
    return ReportData(shown_as or root, report, rows, variants, record, pertitle, notes)


def _rendition_row(init_rel: str, r: Rendition) -> RenditionRow:
    name = init_rel.rsplit("/", 1)[0] if "/" in init_rel else r.name
    track = r.track
    segments = []
    start = 0.0
    for i, seg in enumerate(r.segments):
        d = r.duration_s(i) or 0.0
        parsed = seg.parsed
        if r.analysed and seg.readable:
            start = parsed.start / r.timescale
        segments.append(SegmentRow(
            number=seg.ref.number,
            start_s=start,
            duration_s=d,
            size_bytes=parsed.size_bytes,
            sample_bytes=sum(f.sample_bytes for f in parsed.fragments) if parsed.fragments else parsed.size_bytes,
            keyframes_s=[p / r.timescale for p in parsed.sync_pts] if r.kind == "video" else [],
        ))  # fmt: skip
        start += d
    rates = r.bitrates()
    fps = r.frame_rate
    return RenditionRow(
        name=name,
        kind=r.kind,
        codecs=",".join(r.codecs),
        width=track.width if track and r.kind == "video" else None,
        height=track.height if track and r.kind == "video" else None,
        frame_rate=float(fps) if fps and r.kind == "video" else None,
        channels=track.channels if track and r.kind == "audio" else None,
        segments=segments,
        average_bps=rates.average_bps if rates else None,
        peak_bps=rates.full_peak_bps if rates else None,  # a short last segment left out, as BANDWIDTH is
    )


def _read_json(path: str, notes: list[str]) -> dict[str, Any] | None:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        notes.append(f"{os.path.basename(path)} could not be read ({exc})")
        return None
    return data if isinstance(data, dict) else None


def _local(base_dir: str, uri: str) -> str | None:
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme and len(parsed.scheme) > 1:
        return None
    return os.path.normpath(os.path.join(base_dir, urllib.parse.unquote(parsed.path)))


def _dash_bandwidths(mpd: str, notes: list[str]) -> dict[str, int]:
    """init segment path -> declared @bandwidth, for SegmentTemplate representations."""
    try:
        tree = ET.parse(mpd)
    except (OSError, ET.ParseError) as exc:
        notes.append(f"{os.path.basename(mpd)}: not read ({exc})")
        return {}
    ns = "{urn:mpeg:dash:schema:mpd:2011}"
    found: dict[str, int] = {}
    base_dir = os.path.dirname(mpd)
    for aset in tree.getroot().iter(f"{ns}AdaptationSet"):
        set_template = aset.find(f"{ns}SegmentTemplate")
        for rep in aset.findall(f"{ns}Representation"):
            template = rep.find(f"{ns}SegmentTemplate")
            init = (template if template is not None else set_template)
            init_uri = init.get("initialization") if init is not None else None
            rep_id, bandwidth = rep.get("id", ""), rep.get("bandwidth")
            if not init_uri or not bandwidth or not bandwidth.isdigit():
                continue
            init_uri = init_uri.replace("$RepresentationID$", rep_id).replace("$Bandwidth$", bandwidth)
            path = _local(base_dir, init_uri)
            if path:
                found[path] = int(bandwidth)
    return found


def _hls_variants(playlist: str, by_init: dict[str, RenditionRow], notes: list[str]) -> list[VariantRow]:
    import m3u8

    try:
        master = m3u8.load(playlist)
    except Exception as exc:  # m3u8 raises many kinds; validation reports the details
        notes.append(f"{os.path.basename(playlist)}: not read ({exc})")
        return []
    base_dir = os.path.dirname(playlist)

    def init_of(uri: str | None) -> RenditionRow | None:
        path = _local(base_dir, uri) if uri else None
        if not path or not os.path.isfile(path):
            return None
        try:
            media = m3u8.load(path)
        except Exception:
            return None
        maps = media.segment_map or []
        if not maps or not maps[0].uri:
            return None
        init = _local(os.path.dirname(path), maps[0].uri)
        return by_init.get(init) if init else None

    groups: dict[str, list[RenditionRow]] = {}
    for m in master.media:
        row = init_of(m.uri) if m.type == "AUDIO" else None
        if row is not None and m.group_id:
            groups.setdefault(m.group_id, []).append(row)
    rows = []
    for p in master.playlists:
        info = p.stream_info
        video = init_of(p.uri)
        audio = groups.get(info.audio or "", [])
        peak = avg = None
        if video is not None and video.peak_bps is not None and video.average_bps is not None:
            loudest = max((a for a in audio if a.peak_bps is not None), key=lambda a: a.peak_bps or 0, default=None)
            peak = video.peak_bps + (loudest.peak_bps or 0 if loudest else 0)
            avg = video.average_bps + (loudest.average_bps or 0 if loudest else 0)
        resolution = f"{info.resolution[0]}x{info.resolution[1]}" if info.resolution else ""
        rows.append(VariantRow(p.uri, resolution, info.codecs or "", info.bandwidth, info.average_bandwidth, peak, avg))
    return rows


# ---------------------------------------------------------------------------------------- write


def write_report(out: str, target: str, *, dash_schema: str | None = None, shown_as: str | None = None) -> ReportData:
    """Collect and write the HTML file to ``target`` (written beside, then renamed into place)."""
    data = collect(out, dash_schema=dash_schema, shown_as=shown_as)
    page = render_html(data)
    tmp = f"{target}.partial"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.replace(tmp, target)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise OutputError(f"{target}: cannot write the report ({exc.strerror or exc})", hint="choose another -o") from None
    return data


# --------------------------------------------------------------------------------------- render

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 4px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#18794e;font-weight:600}.bad{color:#c62828;font-weight:600}.warn{color:#a15c00}.muted{color:#777}
svg{display:block;margin:6px 0;font:11px system-ui,sans-serif}svg text{fill:#333}
.error td:first-child{color:#c62828}.warning td:first-child{color:#a15c00}.info td:first-child{color:#777}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt_bps(bps: float | None) -> str:
    if bps is None:
        return "–"
    if bps >= 1e6:
        return f"{bps / 1e6:.2f} Mb/s"
    return f"{bps / 1e3:.0f} kb/s"


def fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def num(key: str, value: Any, text: str | None = None, cls: str = "n") -> str:
    """A table cell that carries its exact value for machines."""
    shown = text if text is not None else ("–" if value is None else str(value))
    data = "" if value is None else str(value)
    return f'<td class="{cls}" data-key="{esc(key)}" data-value="{esc(data)}">{esc(shown)}</td>'


def render_html(data: ReportData) -> str:
    rec = data.record or {}
    title = os.path.basename(data.root.rstrip("/")) or data.root
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched: no script, no remote style, font or image; not even a favicon.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        '<link rel="icon" href="data:,">',
        f"<title>abrpipe report: {esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>abrpipe report: {esc(title)}</h1>",
        _header(data, rec),
        _ladder(data),
        _segment_charts(data),
        _grid(data),
        _validation(data.validation),
        _timings(rec),
        _pertitle(data.pertitle),
        "".join(f'<p class="muted">note: {esc(n)}</p>' for n in data.notes),
        f'<p class="muted">written by abrpipe {esc(__version__)}</p>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _header(data: ReportData, rec: dict[str, Any]) -> str:
    items = [("output", data.root)]
    for key, label in (("input", "input"), ("profile", "profile"), ("duration_s", "duration (s)"),
                       ("abrpipe_version", "encoded by abrpipe")):  # fmt: skip
        if rec.get(key) is not None:
            items.append((label, rec[key]))
    if not rec:
        items.append(("job record", f"no {RECORD_NAME}: not an abrpipe output, or an old one"))
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    return f"<table>{rows}</table>"


def _ladder(data: ReportData) -> str:
    head = ("rendition", "kind", "resolution", "fps", "codecs", "segments", "duration", "size", "measured avg",
            "measured peak", "declared (DASH)", "declared / peak")  # fmt: skip
    out = ["<h2>Ladder</h2>", "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in data.renditions:
        k = f"rendition.{r.name}"
        res = f"{r.width}x{r.height}" if r.width else (f"{r.channels} ch" if r.channels else "")
        ratio = (r.declared_dash_bps / r.peak_bps) if r.declared_dash_bps and r.peak_bps else None
        out.append(
            "<tr>"
            f'<td data-key="{esc(k)}.name" data-value="{esc(r.name)}">{esc(r.name)}</td><td>{esc(r.kind)}</td>'
            f"<td>{esc(res)}</td><td class=n>{'' if r.frame_rate is None else f'{r.frame_rate:g}'}</td><td>{esc(r.codecs)}</td>"
            + num(f"{k}.segments", len(r.segments))
            + num(f"{k}.duration_s", round(r.duration_s, 3), f"{r.duration_s:.2f} s")
            + num(f"{k}.size_bytes", r.size_bytes, fmt_bytes(r.size_bytes))
            + num(f"{k}.average_bps", _round(r.average_bps), fmt_bps(r.average_bps))
            + num(f"{k}.peak_bps", _round(r.peak_bps), fmt_bps(r.peak_bps))
            + num(f"{k}.declared_dash_bps", r.declared_dash_bps, fmt_bps(r.declared_dash_bps) if r.declared_dash_bps else "–")
            + num(f"{k}.declared_over_peak", None if ratio is None else round(ratio, 3), "–" if ratio is None else f"{ratio:.2f}")
            + "</tr>"
        )
    out.append("</table>")
    if data.variants:
        out.append("<h3>HLS variants (video + the largest audio of its group)</h3><table><tr>")
        for h in ("variant", "resolution", "codecs", "BANDWIDTH", "measured peak", "AVERAGE-BANDWIDTH", "measured avg"):
            out.append(f"<th>{h}</th>")
        out.append("</tr>")
        for v in data.variants:
            k = f"variant.{v.uri}"
            out.append(
                f"<tr><td>{esc(v.uri)}</td><td>{esc(v.resolution)}</td><td>{esc(v.codecs)}</td>"
                + num(f"{k}.bandwidth", v.bandwidth, fmt_bps(v.bandwidth))
                + num(f"{k}.measured_peak_bps", _round(v.measured_peak_bps), fmt_bps(v.measured_peak_bps))
                + num(f"{k}.average_bandwidth", v.average_bandwidth, fmt_bps(v.average_bandwidth))
                + num(f"{k}.measured_average_bps", _round(v.measured_average_bps), fmt_bps(v.measured_average_bps))
                + "</tr>"
            )
        out.append("</table>")
    out.append('<p class="muted">Measured: segment bytes over segment durations from the boxes (tfdt/trun), '
               "as the validator measures them; the peak is the highest segment bit rate, a short last segment left "
               "out (its few frames, mostly a key frame, say little about what a player must sustain).</p>")  # fmt: skip
    return "".join(out)


# ------------------------------------------------------------------------------------------ SVG


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * exp >= value:
            return m * exp
    return 10 * exp


def _segment_charts(data: ReportData) -> str:
    out = ["<h2>Bit rate per segment</h2>",
           '<p class="muted">Bars: the samples of each segment (sum of the trun sample sizes) over its duration. '
           "Lines: declared @bandwidth (dashed) and the measured average (dotted).</p>"]  # fmt: skip
    for i, r in enumerate(data.renditions):
        if not r.segments:
            continue
        out.append(f"<h3>{esc(r.name)}</h3>")
        out.append(_bar_chart(r, PALETTE[i % len(PALETTE)]))
    return "".join(out)


def _bar_chart(r: RenditionRow, color: str) -> str:
    w, h, left, bottom, top = 900, 180, 64, 24, 10
    total = r.duration_s or 1.0
    rates = [s.sample_bps for s in r.segments]
    ymax = _nice_max(max([*rates, r.declared_dash_bps or 0, r.average_bps or 0]))
    plot_w, plot_h = w - left - 10, h - bottom - top

    def y(v: float) -> float:
        return top + plot_h * (1 - v / ymax)

    parts = [f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="bit rate per segment of {esc(r.name)}">']
    for frac in (0, 0.25, 0.5, 0.75, 1):
        yy = y(ymax * frac)
        parts.append(f'<line x1="{left}" x2="{w - 10}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{left - 4}" y="{yy + 4:.1f}" text-anchor="end">{esc(fmt_bps(ymax * frac))}</text>')
    t0 = r.segments[0].start_s
    for s in r.segments:
        x = left + plot_w * (s.start_s - t0) / total
        bw = max(1.0, plot_w * s.duration_s / total - 1)
        parts.append(
            f'<rect x="{x:.1f}" y="{y(s.sample_bps):.1f}" width="{bw:.1f}" height="{top + plot_h - y(s.sample_bps):.1f}" '
            f'fill="{color}" data-key="segment.{esc(r.name)}.{s.number}" data-value="{round(s.sample_bps)}">'
            f"<title>segment {s.number}: {esc(fmt_bps(s.sample_bps))} ({s.sample_bytes} sample bytes, "
            f"{s.size_bytes} bytes in the file, {s.duration_s:.3f} s)</title></rect>"
        )
    if r.declared_dash_bps:
        yy = y(r.declared_dash_bps)
        parts.append(f'<line x1="{left}" x2="{w - 10}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#c62828" stroke-dasharray="6 4"/>')
    if r.average_bps:
        yy = y(r.average_bps)
        parts.append(f'<line x1="{left}" x2="{w - 10}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#333" stroke-dasharray="2 3"/>')
    parts.append(f'<text x="{left}" y="{h - 6}">0 s</text><text x="{w - 10}" y="{h - 6}" text-anchor="end">{total:.2f} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def _grid(data: ReportData) -> str:
    rows = [r for r in data.renditions if r.segments]
    if not rows:
        return ""
    end = max(r.segments[-1].start_s + r.segments[-1].duration_s for r in rows)
    start = min(r.segments[0].start_s for r in rows)
    span = (end - start) or 1.0
    left, row_h, w = 150, 26, 900
    h = row_h * len(rows) + 30
    plot_w = w - left - 10
    parts = ["<h2>Keyframes and segments</h2>",
             '<p class="muted">One row per rendition: segments as alternating blocks, key frames as black ticks. '
             "Aligned renditions have their boundaries and ticks on the same vertical lines.</p>",
             f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="keyframe and segment grid">']  # fmt: skip
    for i, r in enumerate(rows):
        y0 = i * row_h + 4
        parts.append(f'<text x="{left - 6}" y="{y0 + 15}" text-anchor="end">{esc(r.name)}</text>')
        for j, s in enumerate(r.segments):
            x = left + plot_w * (s.start_s - start) / span
            sw = plot_w * s.duration_s / span
            fill = "#dce9f7" if j % 2 == 0 else "#b7d1ee"
            parts.append(f'<rect x="{x:.2f}" y="{y0}" width="{sw:.2f}" height="20" fill="{fill}" stroke="#5b8bc5" stroke-width="0.5">'
                         f"<title>{esc(r.name)} segment {s.number}: {s.start_s:.3f}–{s.start_s + s.duration_s:.3f} s</title></rect>")  # fmt: skip
            for k in s.keyframes_s:
                kx = left + plot_w * (k - start) / span
                parts.append(f'<line x1="{kx:.2f}" x2="{kx:.2f}" y1="{y0 + 2}" y2="{y0 + 18}" stroke="#000" stroke-width="1.5"/>')
        parts.append(f'<text x="{w - 8}" y="{y0 + 15}" text-anchor="end" data-key="grid.{esc(r.name)}.keyframes" '
                     f'data-value="{sum(len(s.keyframes_s) for s in r.segments)}"></text>')  # fmt: skip
    parts.append(f'<text x="{left}" y="{h - 4}">{start:.2f} s</text>'
                 f'<text x="{w - 10}" y="{h - 4}" text-anchor="end">{end:.2f} s</text></svg>')  # fmt: skip
    return "".join(parts)


def _validation(report: Report) -> str:
    s = report.summary()
    verdict = '<span class="ok">valid</span>' if s["ok"] else '<span class="bad">invalid</span>'
    out = [
        "<h2>Validation</h2>",
        f'<p data-key="validation.ok" data-value="{str(s["ok"]).lower()}">{verdict}: '
        f'<span data-key="validation.errors" data-value="{s["errors"]}">{s["errors"]} error(s)</span>, '
        f'<span data-key="validation.warnings" data-value="{s["warnings"]}">{s["warnings"]} warning(s)</span>, '
        f'<span data-key="validation.info" data-value="{s["info"]}">{s["info"]} note(s)</span>; '
        f'<span data-key="validation.renditions" data-value="{s["renditions"]}">{s["renditions"]} renditions</span>, '
        f'<span data-key="validation.segments" data-value="{s["segments"]}">{s["segments"]} segments</span> checked '
        f'({esc(", ".join(os.path.basename(m) for m in s["manifests"]) or "no manifest")}). '
        "Each rule is explained in docs/VALIDATION.md.</p>",
    ]
    rules = ",".join(f["rule"] for f in s["findings"])
    out.append(f'<span hidden data-key="validation.rules" data-value="{esc(rules)}"></span>')
    if s["findings"]:
        out.append("<table><tr><th>severity</th><th>rule</th><th>file</th><th>rendition</th><th>seg</th><th>message</th></tr>")
        for f in s["findings"]:
            out.append(
                f'<tr class="{esc(f["severity"])}"><td>{esc(f["severity"])}</td><td>{esc(f["rule"])}</td>'
                f'<td>{esc(f["file"] or "")}</td><td>{esc(f["rendition"] or "")}</td>'
                f'<td class=n>{esc("" if f["segment"] is None else f["segment"])}</td><td>{esc(f["message"])}</td></tr>'
            )
        out.append("</table>")
    return "".join(out)


def _timings(rec: dict[str, Any]) -> str:
    timings = rec.get("timings_s")
    if not isinstance(timings, dict) or not timings:
        return "<h2>Encode timings</h2><p class=muted>No timings: the output has no job record with timings.</p>"
    total = sum(float(v) for v in timings.values()) or 1.0
    out = ["<h2>Encode timings</h2><table><tr><th>stage</th><th class=n>seconds</th><th>share</th></tr>"]
    for stage, seconds in timings.items():
        share = float(seconds) / total
        bar = f'<svg width="300" height="12" role="img" aria-label="{esc(stage)}"><rect width="{300 * share:.1f}" height="12" fill="#1f77b4"/></svg>'
        out.append(f"<tr><td>{esc(stage)}</td>" + num(f"timing.{stage}", seconds, f"{float(seconds):.2f}") + f"<td>{bar}</td></tr>")
    out.append(f"<tr><th>total</th>{num('timing.total', round(total, 3), f'{total:.2f}')}<td></td></tr></table>")
    return "".join(out)


def _pertitle(pt: dict[str, Any] | None) -> str:
    if not pt:
        return ""
    trials = [t for t in pt.get("trials", []) if t.get("kbps") and t.get("quality") is not None]
    hull = [h for h in pt.get("hull", []) if h.get("kbps")]
    ladder = [r for r in pt.get("ladder", []) if r.get("bitrate_kbps")]
    fixed = [f for f in pt.get("fixed_ladder", []) if f.get("kbps")]
    label = pt.get("metric_label") or pt.get("metric", "quality")
    out = [f"<h2>Per-title ladder ({esc(label)})</h2>"]
    if not trials:
        return out[0] + "<p class=muted>pertitle.json holds no trial points.</p>"
    kbps = [t["kbps"] for t in trials] + [r["bitrate_kbps"] for r in ladder] + [f["kbps"] for f in fixed]
    qual = [t["quality"] for t in trials] + [r["predicted_quality"] for r in ladder if r.get("predicted_quality") is not None]
    x_lo, x_hi = math.log10(min(kbps) * 0.9), math.log10(max(kbps) * 1.1)
    y_lo, y_hi = min(qual), max(qual)
    pad = (y_hi - y_lo) * 0.08 or 1.0
    y_lo, y_hi = y_lo - pad, y_hi + pad
    w, h, left, bottom, top, right = 900, 460, 60, 40, 12, 150
    pw, ph = w - left - right, h - top - bottom

    def px(k: float) -> float:
        return left + pw * (math.log10(k) - x_lo) / (x_hi - x_lo)

    def py(q: float) -> float:
        return top + ph * (1 - (q - y_lo) / (y_hi - y_lo))

    svg = [f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="rate/quality hull">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>']  # fmt: skip
    decade = 10 ** math.floor(x_lo)
    while decade <= 10**x_hi:
        for m in (1, 2, 5):
            k = decade * m
            if x_lo <= math.log10(k) <= x_hi:
                svg.append(f'<line x1="{px(k):.1f}" x2="{px(k):.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>'
                           f'<text x="{px(k):.1f}" y="{h - bottom + 14}" text-anchor="middle">{k:g}k</text>')  # fmt: skip
        decade *= 10
    for i in range(5):
        q = y_lo + (y_hi - y_lo) * i / 4
        svg.append(f'<text x="{left - 4}" y="{py(q) + 4:.1f}" text-anchor="end">{q:.1f}</text>')
    svg.append(f'<text x="{left + pw / 2}" y="{h - 6}" text-anchor="middle">bit rate (kb/s, log scale)</text>')
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for t in trials:
        groups.setdefault((t["width"], t["height"]), []).append(t)
    for i, ((width, height), pts) in enumerate(sorted(groups.items(), key=lambda g: -g[0][1])):
        color = PALETTE[i % len(PALETTE)]
        pts = sorted(pts, key=lambda t: t["kbps"])
        path = " ".join(f"{px(t['kbps']):.1f},{py(t['quality']):.1f}" for t in pts)
        svg.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.3"/>')
        for t in pts:
            svg.append(f'<circle cx="{px(t["kbps"]):.1f}" cy="{py(t["quality"]):.1f}" r="3" fill="{color}">'
                       f"<title>{width}x{height} crf {t.get('crf')}: {t['kbps']} kb/s, {t['quality']}</title></circle>")  # fmt: skip
        ly = top + 14 + 16 * i
        svg.append(f'<rect x="{w - right + 10}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{w - right + 24}" y="{ly}">{width}x{height}</text>')  # fmt: skip
    if hull:
        path = " ".join(f"{px(p['kbps']):.1f},{py(p['quality']):.1f}" for p in sorted(hull, key=lambda p: p["kbps"]))
        svg.append(f'<polyline points="{path}" fill="none" stroke="#000" stroke-dasharray="5 3" stroke-width="1.2" '
                   f'data-key="pertitle.hull_points" data-value="{len(hull)}"/>')  # fmt: skip
    for f in fixed:
        if f.get("predicted_quality") is None:
            continue
        svg.append(f'<rect x="{px(f["kbps"]) - 4:.1f}" y="{py(f["predicted_quality"]) - 4:.1f}" width="8" height="8" '
                   f'fill="none" stroke="#555"><title>fixed {esc(f.get("id"))}: {f["kbps"]} kb/s</title></rect>')  # fmt: skip
    for i, r in enumerate(ladder):
        if r.get("predicted_quality") is None:
            continue
        cx, cy = px(r["bitrate_kbps"]), py(r["predicted_quality"])
        star = " ".join(
            f"{cx + (7 if k % 2 == 0 else 3) * math.sin(k * math.pi / 5):.1f},{cy - (7 if k % 2 == 0 else 3) * math.cos(k * math.pi / 5):.1f}"
            for k in range(10)
        )
        svg.append(f'<polygon points="{star}" fill="crimson" stroke="#000" stroke-width="0.5" data-key="pertitle.rung.{i}" '
                   f'data-value="{r["width"]}x{r["height"]}@{r["bitrate_kbps"]:g}"><title>chosen {r["width"]}x{r["height"]} @ {r["bitrate_kbps"]} kb/s</title></polygon>'
                   f'<text x="{cx + 8:.1f}" y="{cy - 6:.1f}" fill="crimson">{r["height"]}p@{r["bitrate_kbps"]:g}k</text>')  # fmt: skip
    base = len(groups)
    for j, (sym, text) in enumerate((("dash", "upper convex hull"), ("star", "chosen rungs"), ("square", "fixed ladder"))):
        ly = top + 14 + 16 * (base + j + 1)
        mark = {"dash": f'<line x1="{w - right + 8}" x2="{w - right + 22}" y1="{ly - 4}" y2="{ly - 4}" stroke="#000" stroke-dasharray="4 2"/>',
                "star": f'<circle cx="{w - right + 15}" cy="{ly - 4}" r="4" fill="crimson"/>',
                "square": f'<rect x="{w - right + 11}" y="{ly - 8}" width="8" height="8" fill="none" stroke="#555"/>'}[sym]  # fmt: skip
        svg.append(f'{mark}<text x="{w - right + 26}" y="{ly}">{text}</text>')
    svg.append("</svg>")
    out.append("".join(svg))
    out.append("<table><tr><th>rung</th><th class=n>bitrate</th><th class=n>predicted quality</th></tr>")
    for r in ladder:
        out.append(f"<tr><td>{r['width']}x{r['height']}</td><td class=n>{r['bitrate_kbps']:g}k</td>"
                   f"<td class=n>{r.get('predicted_quality')}</td></tr>")  # fmt: skip
    out.append("</table>")
    return "".join(out)
