"""HLS: media playlists, I-frame playlists and the multivariant playlist, written with the m3u8
library from the package model (never from templates)."""

from __future__ import annotations

import os

import m3u8

from abrpipe.layout import IFRAME_PLAYLIST, INIT_NAME, MASTER_NAME, MEDIA_PLAYLIST
from abrpipe.model import Rendition, Title, target_duration

HLS_VERSION = 7  # fMP4 segments with EXT-X-MAP in media playlists (RFC 8216 section 7)
PREFERRED_START_KBPS = 2000  # Apple 1.32: the first listed variant should be about 2 Mb/s


def _media_playlist(r: Rendition, target: int) -> m3u8.M3U8:
    pl = m3u8.M3U8()
    pl.version = HLS_VERSION
    pl.target_duration = target
    pl.media_sequence = None
    pl.playlist_type = "vod"
    pl.is_independent_segments = r.kind == "video"
    pl.is_endlist = True
    init = {"uri": INIT_NAME}
    for seg in r.segments:
        pl.segments.append(m3u8.Segment(uri=seg.uri, duration=seg.duration / r.timescale, init_section=init))
    return pl


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
    variants = []
    audio_choices = list(groups.items()) or [(None, [])]
    for v in title.video:
        for group_id, renditions in audio_choices:
            # BANDWIDTH: the worst case of this variant with any rendition of its audio group.
            audio_peak = max((a.peak_bps for a in renditions), default=0)
            audio_avg = max((a.average_bps for a in renditions), default=0)
            codecs = ",".join(dict.fromkeys([v.codec] + [a.codec for a in renditions]))
            info = {
                "bandwidth": v.peak_bps + audio_peak,
                "average_bandwidth": v.average_bps + audio_avg,
                "codecs": codecs,
                "resolution": f"{v.width}x{v.height}",
                "frame_rate": float(v.frame_rate) if v.frame_rate else None,
                "video_range": "SDR",
            }
            if group_id:
                info["audio"] = group_id
            variants.append((v, m3u8.Playlist(uri=f"{v.id}/{MEDIA_PLAYLIST}", stream_info=info, media=master.media, base_uri=None)))
    if not title.video:
        # Audio-only: one variant per audio rung, playing its default language and naming its group,
        # so the other languages stay selectable.
        for group_id, renditions in audio_choices:
            main = _group_main(renditions)
            info = {
                "bandwidth": max(a.peak_bps for a in renditions),
                "average_bandwidth": max(a.average_bps for a in renditions),
                "codecs": main.codec,
                "audio": group_id,
            }
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
    master.dump(os.path.join(out_dir, MASTER_NAME))
    written.append(MASTER_NAME)
    return written
