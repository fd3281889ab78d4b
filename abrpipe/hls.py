"""HLS: media playlists, I-frame playlists and the multivariant playlist, written with the m3u8
library from the package model (never from templates)."""

from __future__ import annotations

import math
import os
from typing import Any

import m3u8

from abrpipe.hls_ts import TS_MASTER
from abrpipe.layout import IFRAME_PLAYLIST, INIT_NAME, MASTER_NAME, MEDIA_PLAYLIST
from abrpipe.model import Rendition, TextTrack, Title, target_duration
from abrpipe.thumbnails import IMAGE_PLAYLIST, ImageTrack

HLS_VERSION = 7  # fMP4 segments with EXT-X-MAP in media playlists (RFC 8216 section 7)
PREFERRED_START_KBPS = 2000  # Apple 1.32: the first listed variant should be about 2 Mb/s
SUBTITLES_GROUP = "subs"
CC_GROUP = "cc"
SDH_CHARACTERISTICS = "public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound"


def _vod_playlist(target: int, version: int = HLS_VERSION) -> m3u8.M3U8:
    pl = m3u8.M3U8()
    pl.version = version
    pl.target_duration = target
    pl.media_sequence = None
    pl.playlist_type = "vod"
    pl.is_endlist = True
    return pl


def _media_playlist(r: Rendition, target: int) -> m3u8.M3U8:
    pl = _vod_playlist(target)
    pl.is_independent_segments = r.kind == "video"
    init = {"uri": INIT_NAME}
    for seg in r.segments:
        pl.segments.append(m3u8.Segment(uri=seg.uri, duration=seg.duration / r.timescale, init_section=init))
    if r.protection is not None:
        from abrpipe.protect.hls_keys import add_keys

        add_keys(pl, r.protection, init)
    return pl


def _text_playlist(t: TextTrack, target: int) -> m3u8.M3U8:
    """WebVTT segments on the video's grid: no EXT-X-MAP (plain text, not fMP4)."""
    pl = _vod_playlist(target)
    for seg in t.segments:
        pl.segments.append(m3u8.Segment(uri=seg.uri, duration=seg.duration / t.timescale))
    return pl


def _text_media(title: Title) -> list[m3u8.Media]:
    """EXT-X-MEDIA for every subtitle track, and for the closed captions the video carries."""
    media = []
    for t in title.text:
        media.append(
            m3u8.Media(
                uri=f"{t.id}/{MEDIA_PLAYLIST}",
                type="SUBTITLES",
                group_id=SUBTITLES_GROUP,
                language=t.language,
                name=t.name,
                default="YES" if t.default else "NO",
                # Forced tracks are chosen by the player (they translate foreign dialogue), the
                # others when they match the viewer's language preferences.
                autoselect="YES",
                forced="YES" if t.forced else "NO",
                characteristics=SDH_CHARACTERISTICS if t.sdh else None,
            )
        )
    for channel in sorted({v.closed_captions for v in title.video if v.closed_captions}):
        media.append(
            m3u8.Media(type="CLOSED-CAPTIONS", group_id=CC_GROUP, language="und", name=channel, default="NO",
                       autoselect="YES", instream_id=channel)
        )
    return media


def _closed_captions(title: Title, v: Rendition) -> str | None:
    """CLOSED-CAPTIONS of a variant: the group when its video carries captions; NONE on every variant
    when no video does (RFC 8216 4.3.4.2: NONE on one variant means NONE on all of them)."""
    if v.closed_captions:
        return f'"{CC_GROUP}"'
    return None if any(r.closed_captions for r in title.video) else "NONE"


def iframe_entries(r: Rendition) -> list[tuple[str, float, int, int]]:
    """(uri, duration to the next I-frame, length, offset) for every key frame with its own moof."""
    frames = [(seg.uri, f) for seg in r.segments for f in seg.iframes]
    end = r.segments[-1].start + r.segments[-1].duration
    entries = []
    for i, (uri, frame) in enumerate(frames):
        next_pts = frames[i + 1][1].pts if i + 1 < len(frames) else end
        entries.append((uri, max(next_pts - frame.pts, 1) / r.timescale, frame.length, frame.offset))
    return entries


def _iframe_playlist(r: Rendition, target: int) -> tuple[m3u8.M3U8, int, int]:
    pl = m3u8.M3U8()
    pl.version = HLS_VERSION
    pl.playlist_type = "vod"
    pl.is_i_frames_only = True
    pl.is_independent_segments = True
    pl.is_endlist = True
    init = {"uri": INIT_NAME}
    entries = iframe_entries(r)
    pl.target_duration = max(1, max((round(d) for _, d, _, _ in entries), default=1), target)
    peak = total_bits = 0
    total_s = 0.0
    for uri, duration, length, offset in entries:
        pl.segments.append(m3u8.Segment(uri=uri, duration=duration, byterange=f"{length}@{offset}", init_section=init))
        peak = max(peak, round(length * 8 / duration))
        total_bits += length * 8
        total_s += duration
    if r.protection is not None and pl.segments:
        from abrpipe.protect.hls_keys import add_keys

        add_keys(pl, r.protection, init)
    return pl, peak, round(total_bits / total_s) if total_s else 0


def _channels(r: Rendition) -> str:
    return str(r.channels or 2)


def _audio_groups(title: Title) -> dict[str, list[Rendition]]:
    """One group per audio rung (codec, bitrate, channels); its renditions are the languages."""
    groups: dict[str, list[Rendition]] = {}
    for a in title.audio:
        groups.setdefault(a.group or a.id, []).append(a)
    return groups


def _group_main(renditions: list[Rendition]) -> Rendition:
    return next((a for a in renditions if a.default), renditions[0])


def write_hls(out_dir: str, title: Title) -> list[str]:
    target = target_duration(title.renditions)
    written = []
    for r in title.renditions:
        _media_playlist(r, target).dump(os.path.join(out_dir, r.id, MEDIA_PLAYLIST))
        written.append(f"{r.id}/{MEDIA_PLAYLIST}")
    for t in title.text:
        _text_playlist(t, target).dump(os.path.join(out_dir, t.id, MEDIA_PLAYLIST))
        written.append(f"{t.id}/{MEDIA_PLAYLIST}")

    master = m3u8.M3U8()
    master.is_variant = True
    master.version = HLS_VERSION
    master.is_independent_segments = True
    groups = _audio_groups(title)
    in_variant = {_group_main(r).id for r in groups.values()} if not title.video else set()
    for group_id, renditions in groups.items():
        for a in renditions:
            master.add_media(
                m3u8.Media(
                    # Audio-only ladders: the variant itself plays the group's main rendition, which
                    # is then declared without a URI (RFC 8216 4.3.4.1), so it is not counted twice.
                    uri=None if a.id in in_variant else f"{a.id}/{MEDIA_PLAYLIST}",
                    type="AUDIO",
                    group_id=group_id,
                    language=a.language or "und",
                    name=a.name or a.id,
                    default="YES" if a.default else "NO",
                    autoselect="YES",
                    channels=_channels(a),
                )
            )
    for m in _text_media(title):
        master.add_media(m)
    variants = []
    audio_choices: list[tuple[str | None, list[Rendition]]] = list(groups.items()) or [(None, [])]
    for v in title.video:
        for choice_id, renditions in audio_choices:
            # BANDWIDTH: the worst case of this variant with any rendition of its audio group.
            audio_peak = max((a.peak_bps for a in renditions), default=0)
            audio_avg = max((a.average_bps for a in renditions), default=0)
            codecs = ",".join(dict.fromkeys([v.codec] + [a.codec for a in renditions]))
            info: dict[str, Any] = {
                "bandwidth": v.peak_bps + audio_peak,
                "average_bandwidth": v.average_bps + audio_avg,
                "codecs": codecs,
                "resolution": f"{v.width}x{v.height}",
                "frame_rate": float(v.frame_rate) if v.frame_rate else None,
                "video_range": "SDR",
            }
            if choice_id:
                info["audio"] = choice_id
            if title.text:
                info["subtitles"] = SUBTITLES_GROUP
            info["closed_captions"] = _closed_captions(title, v)
            variants.append((v, m3u8.Playlist(uri=f"{v.id}/{MEDIA_PLAYLIST}", stream_info=info, media=master.media, base_uri=None)))
    if not title.video:
        # Audio-only: one variant per audio rung, playing its default language and naming its group,
        # so the other languages stay selectable.
        for choice_id, renditions in audio_choices:
            main = _group_main(renditions)
            info = {
                "bandwidth": max(a.peak_bps for a in renditions),
                "average_bandwidth": max(a.average_bps for a in renditions),
                "codecs": main.codec,
                "audio": choice_id,
            }
            if title.text:
                info["subtitles"] = SUBTITLES_GROUP
            variants.append((main, m3u8.Playlist(uri=f"{main.id}/{MEDIA_PLAYLIST}", stream_info=info, media=master.media, base_uri=None)))
    # Apple 1.32: list first the variant closest to 2 Mb/s; the rest follow in ascending bandwidth.
    variants.sort(key=lambda item: item[1].stream_info.bandwidth)
    if title.video:
        first = min(variants, key=lambda item: abs(item[0].average_bps / 1000 - PREFERRED_START_KBPS))
        variants.remove(first)
        variants.insert(0, first)
    for _, playlist in variants:
        master.add_playlist(playlist)

    for v in title.video:
        pl, peak, average = _iframe_playlist(v, target)
        if not pl.segments:
            continue
        pl.dump(os.path.join(out_dir, v.id, IFRAME_PLAYLIST))
        written.append(f"{v.id}/{IFRAME_PLAYLIST}")
        master.add_iframe_playlist(
            m3u8.IFramePlaylist(
                base_uri=None,
                uri=f"{v.id}/{IFRAME_PLAYLIST}",
                iframe_stream_info={
                    "bandwidth": peak,
                    "average_bandwidth": average,
                    "codecs": v.codec,
                    "resolution": f"{v.width}x{v.height}",
                    "video_range": "SDR",
                },
            )
        )
    for track in title.images:
        written.append(_write_image_playlist(out_dir, track))
        master.add_image_playlist(
            m3u8.ImagePlaylist(
                base_uri=None,
                uri=f"{track.id}/{IMAGE_PLAYLIST}",
                image_stream_info={
                    "bandwidth": track.peak_bps,
                    # One tile's size, as EXT-X-TILES says (image-media-playlist spec; Shaka multiplies it by LAYOUT).
                    "resolution": f"{track.spec.tile_width}x{track.spec.tile_height}",
                    "codecs": "jpeg",
                },
            )
        )
    if any(r.protection for r in title.renditions):
        from abrpipe.protect.hls_keys import session_keys

        master.session_keys = session_keys(title.renditions)
    master.dump(os.path.join(out_dir, MASTER_NAME))
    written.append(MASTER_NAME)
    if title.ts:
        written += write_ts(out_dir, title)
    return written


# -- thumbnails: the image media playlist (Roku / image-media-playlist spec v0.4) ------------------


class _TiledSegment(m3u8.Segment):
    """A sheet of an image playlist: EXT-X-TILES between its EXTINF and its URI."""

    def __init__(self, tiles: m3u8.Tiles, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tiles = tiles

    def dumps(self, last_segment, timespec="milliseconds", infspec="auto"):
        text = super().dumps(last_segment, timespec, infspec)
        head, _, uri = text.rpartition("\n")
        return f"{head}\n{self.tiles.dumps()}\n{uri}"


def image_playlist(track: ImageTrack) -> m3u8.M3U8:
    pl = m3u8.M3U8()
    pl.version = HLS_VERSION
    pl.media_sequence = 1
    pl.playlist_type = "vod"
    pl.is_images_only = True
    pl.is_endlist = True
    spans = [track.sheet_span(k) for k in range(len(track.sheets))]
    pl.target_duration = max(1, max(math.ceil(d) for _, d in spans))
    tiles = m3u8.Tiles(f"{track.spec.tile_width}x{track.spec.tile_height}", track.spec.layout, f"{track.spec.interval_s:g}")
    for name, (_, duration) in zip(track.sheets, spans, strict=True):
        pl.segments.append(_TiledSegment(tiles, uri=name, duration=round(duration, 3)))
    return pl


def _write_image_playlist(out_dir: str, track: ImageTrack) -> str:
    image_playlist(track).dump(os.path.join(out_dir, track.id, IMAGE_PLAYLIST))
    return f"{track.id}/{IMAGE_PLAYLIST}"


# -- the MPEG-TS set ---------------------------------------------------------------------------------

# Version 3: decimal EXTINF durations are the newest feature the TS playlists use (RFC 8216 section 7);
# no EXT-X-MAP, byte ranges or I-frame playlists, so the oldest clients accept them.
TS_HLS_VERSION = 3


def write_ts(out_dir: str, title: Title) -> list[str]:
    """ts/<id>/playlist.m3u8 for each TS variant (audio muxed in), and master-ts.m3u8."""
    target = max(1, max(math.floor(v.max_segment_s + 0.5) for v in title.ts))
    written = []
    master = m3u8.M3U8()
    master.is_variant = True
    master.version = TS_HLS_VERSION
    master.is_independent_segments = True
    variants = []
    for v in title.ts:
        pl = _vod_playlist(target, TS_HLS_VERSION)
        pl.is_independent_segments = True
        for seg in v.segments:
            pl.segments.append(m3u8.Segment(uri=seg.uri, duration=seg.duration_s))
        pl.dump(os.path.join(out_dir, v.directory, MEDIA_PLAYLIST))
        written.append(f"{v.directory}/{MEDIA_PLAYLIST}")
        info = {
            "bandwidth": v.peak_bps,
            "average_bandwidth": v.average_bps,
            "codecs": v.codecs,
            "resolution": f"{v.width}x{v.height}",
            "frame_rate": float(v.frame_rate) if v.frame_rate else None,
            "video_range": "SDR",
        }
        variants.append((v, m3u8.Playlist(uri=f"{v.directory}/{MEDIA_PLAYLIST}", stream_info=info, media=[], base_uri=None)))
    # As in master.m3u8: first the variant closest to 2 Mb/s, then ascending bandwidth.
    variants.sort(key=lambda item: item[1].stream_info.bandwidth)
    first = min(variants, key=lambda item: abs(item[0].average_bps / 1000 - PREFERRED_START_KBPS))
    variants.remove(first)
    for _, playlist in [first, *variants]:
        master.add_playlist(playlist)
    master.dump(os.path.join(out_dir, TS_MASTER))
    written.append(TS_MASTER)
    return written
