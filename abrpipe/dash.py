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
    BaseURL,
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
from abrpipe.model import Rendition, TextTrack, Title
from abrpipe.thumbnails import SHEET_TEMPLATE, ImageTrack
from abrpipe.units import format_rate

DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
PROFILES = "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019"
CHANNEL_SCHEME = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
ROLE_SCHEME = "urn:mpeg:dash:role:2011"
CEA608_SCHEME = "urn:scte:dash:cc:cea-608:2015"
# DASH-IF IOP: subtitles for the hard of hearing carry this Accessibility (TV-Anytime purpose 2).
HARD_OF_HEARING_SCHEME = "urn:tva:metadata:cs:AudioPurposeCS:2007"
CENC_NS = "urn:mpeg:cenc:2013"


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
    channels = sorted({r.closed_captions for r in renditions if r.closed_captions})
    if channels and all(r.closed_captions for r in renditions):
        # CEA-608 in the video's SEI: the channel and its (unknown) language, DASH-IF IOP 6.4.3.
        aset.accessibilities = [_descriptor(CEA608_SCHEME, ";".join(f"{c}=und" for c in channels))]
    _protect(aset, renditions)
    return aset


def _text_set(set_id: int, t: TextTrack) -> AdaptationSet:
    """One WebVTT file for the whole track (the sidecar form): dash.js and Shaka both read it,
    where dash.js cannot read segmented text/vtt (it asks for an init segment)."""
    aset = AdaptationSet()
    aset.id = set_id
    aset.content_type = "text"
    aset.mime_type = "text/vtt"
    aset.lang = t.language
    roles = ["main"] if t.default else []
    roles.append("forced-subtitle" if t.forced else "caption" if t.sdh else "subtitle")
    aset.roles = [_descriptor(ROLE_SCHEME, r) for r in roles]
    if t.sdh:
        aset.accessibilities = [_descriptor(HARD_OF_HEARING_SCHEME, "2")]
    rep = Representation()
    rep.id = t.id
    rep.bandwidth = max(1, round(t.sidecar_size_bytes * 8 / t.duration_s)) if t.duration_s else 1
    url = BaseURL()
    url.base_url_value = f"{t.id}/{t.sidecar}"
    rep.base_urls = [url]
    aset.representations = [rep]
    return aset


def _protect(aset: AdaptationSet, renditions: list[Rendition]) -> None:
    """ContentProtection on the AdaptationSet when its renditions share one key, else on each one."""
    if not any(r.protection for r in renditions):
        return
    from abrpipe.protect.signalling import dash_content_protections

    by_id = {r.id: r for r in renditions}
    if len({r.protection for r in renditions}) == 1 and renditions[0].protection:
        aset.content_protections = dash_content_protections(renditions[0].protection)
        return
    for rep in aset.representations:
        protection = by_id[rep.id].protection
        if protection is not None:
            rep.content_protections = dash_content_protections(protection)


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
    _protect(aset, renditions)
    return aset


def build_mpd(title: Title) -> MPEGDASH:
    mpd = MPEGDASH()
    mpd.xmlns = DASH_NS
    if any(r.protection for r in title.renditions):
        mpd.cenc = CENC_NS  # declares the cenc: prefix of default_KID and pssh (else the XML is invalid)
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
    for t in title.text:
        sets.append(_text_set(len(sets), t))
    for track in title.images:
        sets.append(_image_set(len(sets), track))
    period.adaptation_sets = sets
    mpd.periods = [period]
    return mpd


THUMBNAIL_SCHEME = "http://dashif.org/thumbnail_tile"  # DASH-IF IOP 4.3, 6.2.6 (tiled thumbnails)


def _image_set(set_id: int, track: ImageTrack) -> AdaptationSet:
    """DASH-IF thumbnails: one image Representation whose segments are the sprite sheets.

    Sheets follow a number-based template at the full sheet duration, so a player divides each sheet's
    duration by its tile count (Shaka, dash.js) and finds the same tile times on the last, partly
    filled sheet; the Period's end cuts that last sheet short."""
    aset = AdaptationSet()
    aset.id = set_id
    aset.content_type = "image"
    aset.mime_type = "image/jpeg"
    template = SegmentTemplate()
    template.timescale = 1000
    template.duration = round(track.sheet_duration_s * 1000)
    template.start_number = 1
    template.media = f"{track.id}/{SHEET_TEMPLATE}"
    rep = Representation()
    rep.id = f"thumbnails_{track.spec.tile_width}x{track.spec.tile_height}"
    rep.bandwidth = max(track.peak_bps, 1)
    rep.width, rep.height = track.sheet_width, track.sheet_height
    rep.essential_properties = [_descriptor(THUMBNAIL_SCHEME, track.spec.layout)]
    rep.segment_templates = [template]
    aset.representations = [rep]
    return aset


def write_mpd(out_dir: str, title: Title) -> str:
    MPEGDASHParser.write(build_mpd(title), os.path.join(out_dir, MPD_NAME))
    return MPD_NAME
