"""DASH checks: the MPD against the MPEG-DASH schema, its segment addressing against the files, and
its SegmentTimeline against the segments' own boxes.

The MPD is read with the mpegdash library; the XSD check uses lxml with a resolver that keeps every
import local (the schema directory is given by the user; nothing is fetched).
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import Counter
from fractions import Fraction

from mpegdash.parser import MPEGDASHParser

from abrpipe.errors import InputError
from abrpipe.validate import text_checks
from abrpipe.validate.hls_checks import normalize_codec, split_codecs
from abrpipe.validate.media import Context, Rendition, SegmentRef, codec_family
from abrpipe.validate.thumb_checks import ThumbChecker

SCHEMA_FILE = "DASH-MPD.xsd"
CHANNEL_SCHEMES = (
    "urn:mpeg:dash:23003:3:audio_channel_configuration:2011",
    "urn:mpeg:mpegb:cicp:ChannelConfiguration",
)
BANDWIDTH_TOLERANCE = 0.10
PERIOD_DURATION_TOLERANCE_S = 0.5
_TEMPLATE = re.compile(r"\$(RepresentationID|Number|Time|Bandwidth|SubNumber)?(?:%0(\d+)d)?\$")
_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: str | None) -> float | None:
    """xs:duration as MPDs use it (PnDTnHnMnS) -> seconds; None if absent or not understood."""
    if not value:
        return None
    m = _ISO_DURATION.match(value.strip())
    if not m:
        return None
    parts = {k: float(v) for k, v in m.groupdict().items() if v}
    return parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)


def substitute(pattern: str, rep_id: str, number: int, time: int, bandwidth: int | None) -> str:
    """Expand a SegmentTemplate pattern ($RepresentationID$, $Number%05d$, $Time$, $Bandwidth$, $$)."""

    def repl(m: re.Match) -> str:
        ident, width = m.group(1), m.group(2)
        if ident is None:
            return "$"
        if ident == "RepresentationID":
            return rep_id
        value = {"Number": number, "Time": time, "Bandwidth": bandwidth or 0, "SubNumber": 1}[ident]
        return f"{value:0{int(width)}d}" if width else str(value)

    return _TEMPLATE.sub(repl, pattern)


def check_schema_dir(schema_dir: str) -> None:
    if not os.path.isfile(os.path.join(schema_dir, SCHEMA_FILE)):
        raise InputError(
            f"{schema_dir}: no {SCHEMA_FILE} in the DASH schema directory",
            hint="point --dash-schema / ABRPIPE_DASH_SCHEMA at the directory holding DASH-MPD.xsd",
        )


_per_thread = threading.local()


def _schema(schema_dir: str):
    """The compiled MPD schema, one per thread: an lxml validator keeps the state of a validation (its
    error log, connected to libxml2's per-thread error handler) on the object, so threads that validate
    at the same time (a batch's jobs) must not share one. Compiling it takes about 15 ms."""
    cache = _per_thread.__dict__.setdefault("schemas", {})
    if schema_dir not in cache:
        cache[schema_dir] = _compile_schema(schema_dir)
    return cache[schema_dir]


def _compile_schema(schema_dir: str):
    from lxml import etree

    class LocalResolver(etree.Resolver):
        """Serve xs:import locations from the schema directory (or its w3c/ folder), never the network."""

        def resolve(self, url, pubid, context):
            name = os.path.basename(url or "")
            for candidate in (os.path.join(schema_dir, name), os.path.join(schema_dir, "w3c", name)):
                if name and os.path.isfile(candidate):
                    return self.resolve_filename(candidate, context)
            return None

    # The schema defines its regular expressions with internal DTD entities (&URN; ...): resolve them.
    parser = etree.XMLParser(no_network=True, resolve_entities=True, load_dtd=True)
    parser.resolvers.add(LocalResolver())
    doc = etree.parse(os.path.join(schema_dir, SCHEMA_FILE), parser)
    return etree.XMLSchema(doc)


def _first(*values):
    return next((v for v in values if v is not None), None)


def _first_node(*lists):
    return next((lst[0] for lst in lists if lst), None)


class DashChecker:
    def __init__(self, ctx: Context, schema_dir: str | None) -> None:
        self.ctx = ctx
        self.report = ctx.report
        self.schema_dir = schema_dir

    def check(self, path: str) -> None:
        ctx, report = self.ctx, self.report
        rel = ctx.rel(path)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            mpd = MPEGDASHParser.parse(text)
        except Exception as exc:  # minidom's ExpatError, mpegdash's ValueError on a bad attribute, ...
            report.add("DASH-PARSE", f"cannot be parsed: {type(exc).__name__}: {exc}", file=rel)
            return
        report.manifests.append(rel or path)
        self._xsd(path, rel)
        if not mpd.periods:
            report.add("DASH-PARSE", "the MPD has no Period", file=rel)
            return
        mpd_duration = parse_duration(mpd.media_presentation_duration)
        min_buffer_s = parse_duration(mpd.min_buffer_time) or 0.0
        max_segment_s = parse_duration(mpd.max_segment_duration)
        base = self._base(os.path.dirname(path), mpd.base_urls, path)
        starts = [parse_duration(p.start) for p in mpd.periods]
        for index, period in enumerate(mpd.periods):
            start = starts[index] or 0.0
            duration = parse_duration(period.duration)
            if duration is None:
                following = starts[index + 1] if index + 1 < len(starts) else None
                end = following if following is not None else mpd_duration
                duration = end - start if end is not None else None
            period_base = self._base(base, period.base_urls, path) if base else None
            self._period(path, period, index, period_base, duration, min_buffer_s, max_segment_s)

    # -- schema ---------------------------------------------------------------------------------

    def _xsd(self, path: str, rel: str | None) -> None:
        if not self.schema_dir:
            self.report.add(
                "DASH-XSD-SKIPPED",
                "MPD not checked against the MPEG-DASH schema: pass --dash-schema DIR or set ABRPIPE_DASH_SCHEMA "
                "to a directory holding DASH-MPD.xsd",
                file=rel,
            )
            return
        try:
            from lxml import etree
        except ImportError:
            self.report.add(
                "DASH-XSD-SKIPPED", "MPD not checked against the schema: lxml is not installed", file=rel
            )
            return
        schema = _schema(os.path.abspath(self.schema_dir))
        try:
            doc = etree.parse(path, etree.XMLParser(no_network=True, resolve_entities=False))
        except etree.XMLSyntaxError as exc:
            self.report.add("DASH-XSD", f"not well-formed XML: {exc}", file=rel)
            return
        if not schema.validate(doc):
            for error in schema.error_log:
                self.report.add("DASH-XSD", f"line {error.line}: {error.message}", file=rel)

    # -- addressing -----------------------------------------------------------------------------

    def _base(self, parent: str | None, base_urls, referrer: str) -> str | None:
        """Apply the first BaseURL of a level to the parent's base directory; None once remote."""
        if parent is None:
            return None
        node = base_urls[0] if base_urls else None
        value = (node.base_url_value or "").strip() if node is not None else ""
        if not value:
            return parent
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", value):
            self.report.add(
                "DASH-ADDRESSING",
                f"BaseURL {value} is remote: its segments were not checked",
                file=self.ctx.rel(referrer),
            )
            return None
        return os.path.normpath(os.path.join(parent, value.replace("/", os.sep)))

    def _period(self, path, period, index, base, duration_s, min_buffer_s, max_segment_s) -> None:
        video: list[Rendition] = []
        audio: list[Rendition] = []
        for set_index, aset in enumerate(period.adaptation_sets or []):
            set_base = self._base(base, aset.base_urls, path) if base else None
            renditions = []
            for rep in aset.representations or []:
                r = self._representation(
                    path, period, aset, rep, set_base, duration_s, min_buffer_s, max_segment_s
                )
                if r is not None:
                    renditions.append(r)
            set_video = [r for r in renditions if r.kind == "video" and r.analysed]
            video += [r for r in renditions if r.kind == "video"]
            audio += [r for r in renditions if r.kind == "audio"]
            families: dict[str, list[Rendition]] = {}
            for r in set_video:
                families.setdefault(codec_family(r.track.codec if r.track else ""), []).append(r)
            for renditions_of_family in families.values():
                if len(renditions_of_family) >= 2:
                    key = tuple(sorted(r.key for r in renditions_of_family))
                    label = f"DASH AdaptationSet {aset.id if aset.id is not None else set_index} (period {period.id or index})"
                    self.ctx.align_groups.setdefault(key, (label, renditions_of_family))
        for v in video:
            for a in audio:
                self.ctx.av_pairs.setdefault((v.key, a.key), (v, a))

    def _representation(
        self, path, period, aset, rep, base, period_s, min_buffer_s, max_segment_s
    ) -> Rendition | None:
        ctx, report = self.ctx, self.report
        rel = ctx.rel(path)
        rep_id = rep.id
        name = rep_id or f"period {period.id or '?'} set {aset.id or '?'} representation without id"
        if not rep_id:
            report.add("DASH-ATTRIBUTE", "a Representation has no @id", file=rel, rendition=name)
        if rep.bandwidth is None:
            report.add("DASH-ATTRIBUTE", "Representation has no @bandwidth", file=rel, rendition=name)
        rep_base = self._base(base, rep.base_urls, path) if base else None
        if rep_base is None:
            return None
        templates = [
            t
            for t in (
                _first_node(rep.segment_templates),
                _first_node(aset.segment_templates),
                _first_node(period.segment_templates),
            )
            if t is not None
        ]
        seg_list = _first_node(rep.segment_lists, aset.segment_lists, period.segment_lists)
        if not templates and seg_list is None:
            if os.path.normpath(rep_base) != os.path.normpath(os.path.dirname(path)):
                if ctx.check_file(rep_base, referrer=path, rendition=name) and "text/vtt" in (
                    rep.mime_type or aset.mime_type or ""
                ):
                    # A whole WebVTT track in one file (no X-TIMESTAMP-MAP: DASH times are its own).
                    text_checks.check_segments(
                        report, [(ctx.rel(rep_base) or rep_base, rep_base, period_s or 1e9)], name=name, need_map=False
                    )
            report.add(
                "DASH-ADDRESSING",
                "SegmentBase / single-file Representation: segments not checked one by one",
                file=rel,
                rendition=name,
            )
            return None
        nodes = templates or [seg_list]

        def attr(name_: str):
            return _first(*(getattr(n, name_, None) for n in nodes))

        timescale = attr("timescale") or 1
        start_number = attr("start_number")
        start_number = 1 if start_number is None else start_number
        pto = attr("presentation_time_offset") or 0
        timelines = next((n.segment_timelines for n in nodes if n.segment_timelines), None)
        entries = self._entries(
            timelines[0] if timelines else None, attr("duration"), timescale, pto, period_s, rel, name
        )
        if entries is None:
            report.add(
                "DASH-ATTRIBUTE",
                "no SegmentTimeline and no @duration: the segments cannot be listed",
                file=rel,
                rendition=name,
            )
            return None

        init_uri = attr("initialization") if templates else None
        if init_uri is None:
            init_node = next(
                (n.initializations[0] for n in nodes if getattr(n, "initializations", None)), None
            )
            init_uri = init_node.source_url if init_node is not None else None
        init_path = None
        if init_uri:
            init_uri = substitute(init_uri, rep_id or "", start_number, 0, rep.bandwidth)
            init_path = ctx.resolve(rep_base, init_uri, referrer=path, rendition=name)
        refs: list[SegmentRef] = []
        if templates:
            media = attr("media")
            if not media:
                report.add("DASH-ATTRIBUTE", "SegmentTemplate has no @media", file=rel, rendition=name)
                return None
            for k, (t, _d) in enumerate(entries):
                number = start_number + k
                uri = substitute(media, rep_id or "", number, t, rep.bandwidth)
                seg_path = ctx.resolve(rep_base, uri, referrer=path, rendition=name)
                if seg_path is None:
                    return None
                refs.append(SegmentRef(seg_path, k + 1))
        else:
            for k, url in enumerate(seg_list.segment_urls or []):
                seg_path = (
                    ctx.resolve(rep_base, url.media, referrer=path, rendition=name) if url.media else rep_base
                )
                if seg_path is None:
                    return None
                offset = length = None
                if url.media_range:
                    first, _, last = url.media_range.partition("-")
                    offset, length = int(first), int(last) - int(first) + 1
                refs.append(SegmentRef(seg_path, k + 1, offset, length))
            entries = entries[: len(refs)]
        if aset.content_type == "image" or (rep.mime_type or aset.mime_type or "").startswith("image/"):
            # Thumbnail sheets, not media segments.
            ThumbChecker(ctx).dash_image_set(path, name, [ref.path for ref in refs], rep, aset)
            return None
        declared: list[float | None] = [d / timescale for _, d in entries]
        r = ctx.rendition(name, init_path, refs, declared, referrer=path)
        self._timeline_vs_boxes(r, entries, timescale, bool(timelines), rel, name)
        self._attributes(r, rep, aset, rel, name)
        self._bandwidth(r, rep.bandwidth, min_buffer_s, rel, name)
        if r.analysed:
            end_s = (entries[-1][0] + entries[-1][1] - pto) / timescale if entries else 0.0
            if period_s is not None and abs(end_s - period_s) > PERIOD_DURATION_TOLERANCE_S:
                report.add(
                    "DASH-PERIOD-DURATION",
                    f"the segments end at {end_s:.3f} s but the Period lasts {period_s:.3f} s",
                    file=rel,
                    rendition=name,
                )
            if max_segment_s is not None:
                longest = max((r.real_s(i) or 0.0 for i in range(len(r.segments))), default=0.0)
                if longest > max_segment_s + 0.001 + r.sample_s:
                    report.add(
                        "DASH-MAX-SEGMENT-DURATION",
                        f"a segment lasts {longest:.3f} s, above MPD@maxSegmentDuration {max_segment_s:.3f} s",
                        file=rel,
                        rendition=name,
                    )
        return r

    def _entries(
        self, timeline, duration, timescale, pto, period_s, rel, name
    ) -> list[tuple[int, int]] | None:
        """(t, d) of every segment, in timescale units; reports gaps and overlaps of the timeline."""
        if timeline is not None:
            entries: list[tuple[int, int]] = []
            ss = timeline.Ss or []
            tolerance = max(1, timescale // 1000)
            next_t: int | None = None
            for i, s in enumerate(ss):
                if s.d is None or s.d <= 0:
                    self.report.add(
                        "DASH-ATTRIBUTE",
                        f"SegmentTimeline S #{i + 1} has no positive @d",
                        file=rel,
                        rendition=name,
                    )
                    return entries
                t = s.t if s.t is not None else (next_t if next_t is not None else 0)
                if s.t is not None and next_t is not None and abs(s.t - next_t) > tolerance:
                    rule = "DASH-TIMELINE-GAP" if s.t > next_t else "DASH-TIMELINE-OVERLAP"
                    what = "gap" if s.t > next_t else "overlap"
                    self.report.add(
                        rule,
                        f"S@t={s.t} but the previous segment ends at {next_t} ({what} of {abs(s.t - next_t) / timescale:.3f} s)",
                        file=rel,
                        rendition=name,
                        segment=len(entries) + 1,
                    )
                repeat = s.r or 0
                if repeat < 0:  # repeat until the next S or the end of the Period
                    following = ss[i + 1].t if i + 1 < len(ss) and ss[i + 1].t is not None else None
                    end = (
                        following
                        if following is not None
                        else (pto + round(period_s * timescale) if period_s else t + s.d)
                    )
                    repeat = max(0, math.ceil((end - t) / s.d) - 1)
                for _ in range(repeat + 1):
                    entries.append((t, s.d))
                    t += s.d
                next_t = t
            return entries
        if duration:
            if not period_s:
                return None
            count = math.ceil(period_s * timescale / duration - 1e-9)
            return [(pto + k * duration, duration) for k in range(count)]
        return None

    def _timeline_vs_boxes(self, r: Rendition, entries, timescale: int, exact: bool, rel, name) -> None:
        """Each timeline entry against its segment's boxes.

        S@t is a presentation time; the boxes give decode times (tfdt), presentation times (tfdt +
        composition offsets) and the track's edit list (AAC priming, B-frame delay). The reading that
        agrees with most entries is used, so that a correct MPD passes whichever convention its
        packager followed, and a constant shift is reported once rather than on every segment.
        """
        if not r.analysed:
            return
        scale = Fraction(timescale, r.timescale)
        tolerance = max(r.sample_s / 2 * timescale, 1)
        pairs = [
            (k, t, d, r.segments[k].parsed)
            for k, (t, d) in enumerate(entries)
            if k < len(r.segments) and r.segments[k].readable
        ]
        if not pairs:
            return
        if not exact:  # @duration addressing: nominal durations, each segment within 50% of it
            for k, _t, d, p in pairs[:-1]:
                real_d = p.duration * scale
                if abs(d - real_d) > d / 2:
                    self.report.add(
                        "DASH-TIMELINE-MISMATCH",
                        f"@duration says {d / timescale:.3f} s but the segment lasts {float(real_d) / timescale:.3f} s (more than 50% off)",
                        file=self.ctx.rel(r.segments[k].ref.path),
                        rendition=name,
                        segment=k + 1,
                    )
            return
        shift = r.edit_shift

        def by_tfdt(p):
            return p.start, p.start + p.duration

        def by_pts(p):
            return p.earliest_pts, p.earliest_pts + p.duration

        def by_edit(p):
            return max(p.earliest_pts - shift, 0), p.earliest_pts + p.duration - shift

        def evaluate(reading):
            # the most common shift (exact: a consistent timeline has one), the smallest on a tie
            counts = Counter(t - reading(p)[0] * scale for _, t, _, p in pairs)
            offset = max(counts, key=lambda o: (counts[o], -abs(o)))
            bad = []
            for k, t, d, p in pairs:
                start, end = reading(p)
                real_t, real_d = start * scale + offset, (end - start) * scale
                if abs(t - real_t) > tolerance or abs(d - real_d) > tolerance:
                    bad.append((k, t, d, real_t, real_d))
            return offset, bad

        readings = [by_tfdt, by_pts] + ([by_edit] if shift else [])
        offset, bad = min(
            (evaluate(reading) for reading in readings), key=lambda result: (len(result[1]), abs(result[0]))
        )
        if abs(offset) > tolerance:
            self.report.add(
                "DASH-TIMELINE-OFFSET",
                f"the timeline is {float(offset) / timescale:+.3f} s from the media's own timestamps",
                file=rel,
                rendition=name,
            )
        for k, t, d, real_t, real_d in bad:
            self.report.add(
                "DASH-TIMELINE-MISMATCH",
                f"the timeline says t={t} d={d} but the segment's boxes give t={float(real_t):.0f} d={float(real_d):.0f} "
                f"(timescale {timescale})",
                file=self.ctx.rel(r.segments[k].ref.path),
                rendition=name,
                segment=k + 1,
            )

    # -- attributes -----------------------------------------------------------------------------

    def _attributes(self, r: Rendition, rep, aset, rel, name) -> None:
        if not r.analysed:
            return
        report = self.report
        track = r.track
        assert track is not None
        codecs = rep.codecs or aset.codecs
        if codecs:
            declared = {normalize_codec(c) for c in split_codecs(codecs)}
            actual = {normalize_codec(c) for c in r.codecs}
            if declared != actual:
                report.add(
                    "CODECS-MISMATCH",
                    f'@codecs="{codecs}" but the init segment says {",".join(r.codecs)}',
                    file=rel,
                    rendition=name,
                )
        if r.kind == "video":
            width, height = _first(rep.width, aset.width), _first(rep.height, aset.height)
            if width is not None and height is not None and (width, height) != (track.width, track.height):
                report.add(
                    "RESOLUTION-MISMATCH",
                    f"@width x @height = {width}x{height} but the video is {track.width}x{track.height}",
                    file=rel,
                    rendition=name,
                )
            declared_rate = _first(rep.frame_rate, aset.frame_rate)
            measured = r.frame_rate
            if declared_rate and measured:
                try:
                    rate = float(Fraction(str(declared_rate)))
                except (ValueError, ZeroDivisionError):
                    rate = None
                if rate is None or abs(rate - float(measured)) > max(0.01, 0.005 * float(measured)):
                    report.add(
                        "FRAMERATE-MISMATCH",
                        f"@frameRate={declared_rate} but the video runs at {float(measured):.3f} fps",
                        file=rel,
                        rendition=name,
                    )
        elif r.kind == "audio":
            configs = (rep.audio_channel_configurations or []) or (aset.audio_channel_configurations or [])
            for config in configs:
                if (
                    config.scheme_id_uri in CHANNEL_SCHEMES
                    and str(config.value or "").isdigit()
                    and track.channels
                ):
                    value = int(config.value)
                    # CICP ChannelConfiguration is an index, not a count: only its stereo/mono values are compared
                    if config.scheme_id_uri == CHANNEL_SCHEMES[1] and value not in (1, 2):
                        continue
                    if value != track.channels:
                        report.add(
                            "CHANNELS-MISMATCH",
                            f"AudioChannelConfiguration value {value} but the track has {track.channels} channels",
                            file=rel,
                            rendition=name,
                        )
            rate = _first(rep.audio_sampling_rate, aset.audio_sampling_rate)
            if rate and str(rate).isdigit() and track.sample_rate and int(rate) != track.sample_rate:
                report.add(
                    "SAMPLERATE-MISMATCH",
                    f"@audioSamplingRate={rate} but the track is {track.sample_rate} Hz",
                    file=rel,
                    rendition=name,
                )

    def _bandwidth(self, r: Rendition, bandwidth: int | None, min_buffer_s: float, rel, name) -> None:
        """@bandwidth with @minBufferTime is a leaky bucket (ISO/IEC 23009-1 5.3.5.2): delivered at
        @bandwidth, after min_buffer_s of it, every segment must have arrived by the time it has played
        out. Checked on whole segments (a segment's bits are due by its end), with 10% slack."""
        if not bandwidth:
            return
        samples = [
            (s.parsed.size_bytes * 8, d)
            for i, s in enumerate(r.segments)
            if s.readable and (d := r.duration_s(i))
        ]
        if not samples:
            return

        def excess(bps: float) -> float:
            best = current = 0.0
            for bits, d in samples:
                current = max(0.0, current) + bits - bps * d
                best = max(best, current)
            return best - bps * min_buffer_s

        allowed = bandwidth * (1 + BANDWIDTH_TOLERANCE)
        if excess(allowed) <= 0:
            return
        low, high = float(bandwidth), max(float(bandwidth), max(bits / d for bits, d in samples)) * 2
        for _ in range(40):
            mid = (low + high) / 2
            low, high = (low, mid) if excess(mid) <= 0 else (mid, high)
        self.report.add(
            "DASH-BANDWIDTH",
            f"@bandwidth={bandwidth} but the segments need about {high:.0f} bit/s with minBufferTime {min_buffer_s:g} s",
            file=rel,
            rendition=name,
        )
