"""DASH: one static MPD, written with the mpegdash library from the package model.

SegmentTemplate + SegmentTimeline per Representation, with the exact tfdt/durations of the segment
boxes in the media timescale, over the same init.mp4 / seg_NNNNN.m4s files the HLS playlists use.
One video AdaptationSet per codec family, one audio AdaptationSet per (language, codec).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

from mpegdash.nodes import (
    MPEGDASH,
    AdaptationSet,
    Descriptor,
    Period,
    Representation,
    S,
    SegmentTemplate,
    SegmentTimeline,
)
from mpegdash.parser import MPEGDASHParser

from abrpipe import layout
from abrpipe.layout import INIT_NAME, MPD_NAME
from abrpipe.model import Rendition, Title
from abrpipe.units import format_rate

DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
PROFILES = "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019"
CHANNEL_SCHEME = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
ROLE_SCHEME = "urn:mpeg:dash:role:2011"


def iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _timeline(r: Rendition) -> SegmentTimeline:
    """S elements with run-length repeats (r) for consecutive equal durations."""
    runs: list[S] = []
    expected_t = None
    for seg in r.segments:
        last = runs[-1] if runs else None
        if last is not None and seg.duration == last.d and seg.start == expected_t:
            last.r = (last.r or 0) + 1
        else:
            s = S()
            s.t, s.d = seg.start, seg.duration
            runs.append(s)
        expected_t = seg.start + seg.duration
    timeline = SegmentTimeline()
    timeline.Ss = runs
    return timeline


def _template(r: Rendition) -> SegmentTemplate:
    t = SegmentTemplate()
    t.timescale = r.timescale
    t.initialization = f"{r.id}/{INIT_NAME}"
    t.media = f"{r.id}/{layout.SEGMENT_PREFIX}$Number%0{layout.SEGMENT_DIGITS}d${layout.SEGMENT_SUFFIX}"
    t.start_number = 1
    t.segment_timelines = [_timeline(r)]
    return t


def _ratio(w: int, h: int) -> str:
    g = math.gcd(w, h)
    return f"{w // g}:{h // g}"


def _adaptation_set(set_id: int, kind: str) -> AdaptationSet:
    aset = AdaptationSet()
    aset.id = set_id
    aset.content_type = kind
    aset.mime_type = f"{kind}/mp4"
    aset.segment_alignment = "true"  # shared segment grid: players switch at any boundary
    aset.start_with_sap = 1  # every segment starts with a random access point (an IDR for video)
    return aset


def _representation(r: Rendition) -> Representation:
    rep = Representation()
    rep.id = r.id
    rep.bandwidth = r.peak_bps
    rep.codecs = r.codec
    rep.segment_templates = [_template(r)]
    return rep


def _descriptor(scheme: str, value: str) -> Descriptor:
    d = Descriptor()
    d.scheme_id_uri, d.value = scheme, value
    return d


def _video_set(set_id: int, renditions: list[Rendition]) -> AdaptationSet:
    aset = _adaptation_set(set_id, "video")
    aset.max_width = max(r.width or 0 for r in renditions)
    aset.max_height = max(r.height or 0 for r in renditions)
    rates = [r.frame_rate for r in renditions if r.frame_rate]
    if rates:
        aset.max_frame_rate = format_rate(max(rates))
    top = max(renditions, key=lambda r: (r.width or 0) * (r.height or 0))
    aset.par = _ratio(top.width or 16, top.height or 9)
    reps = []
    for r in sorted(renditions, key=lambda r: r.peak_bps):
        rep = _representation(r)
        rep.width, rep.height = r.width, r.height
        rep.sar = "1:1"
        if r.frame_rate:
            rep.frame_rate = format_rate(Fraction(r.frame_rate))
        reps.append(rep)
    aset.representations = reps
    return aset


def _audio_set(set_id: int, renditions: list[Rendition]) -> AdaptationSet:
    aset = _adaptation_set(set_id, "audio")
    if renditions[0].language:
        aset.lang = renditions[0].language
    aset.roles = [_descriptor(ROLE_SCHEME, "main" if any(r.default for r in renditions) else "alternate")]
    reps = []
    for r in sorted(renditions, key=lambda r: r.peak_bps):
        rep = _representation(r)
        rep.audio_sampling_rate = str(r.sample_rate) if r.sample_rate else None
        rep.audio_channel_configurations = [_descriptor(CHANNEL_SCHEME, str(r.channels or 2))]
        reps.append(rep)
    aset.representations = reps
    return aset


def build_mpd(title: Title) -> MPEGDASH:
    mpd = MPEGDASH()
    mpd.xmlns = DASH_NS
    mpd.profiles = PROFILES
    mpd.type = "static"
    mpd.media_presentation_duration = iso_duration(title.duration_s)
    segment_s = max((r.max_segment_s for r in title.renditions), default=2.0)
    mpd.min_buffer_time = iso_duration(min(segment_s, 2.0) if segment_s else 2.0)
    mpd.max_segment_duration = iso_duration(segment_s)
    period = Period()
    period.id = "0"
    period.start = "PT0S"
    sets: list[AdaptationSet] = []
    families: dict[str, list[Rendition]] = {}
    for v in title.video:
        families.setdefault(v.codec_family or v.codec.split(".")[0], []).append(v)
    for renditions in families.values():
        sets.append(_video_set(len(sets), renditions))
    languages: dict[tuple[str | None, str], list[Rendition]] = {}
    for a in title.audio:
        languages.setdefault((a.language, a.codec.split(".")[0]), []).append(a)
    for renditions in languages.values():
        sets.append(_audio_set(len(sets), renditions))
    period.adaptation_sets = sets
    mpd.periods = [period]
    return mpd


def write_mpd(out_dir: str, title: Title) -> str:
    MPEGDASHParser.write(build_mpd(title), os.path.join(out_dir, MPD_NAME))
    return MPD_NAME
