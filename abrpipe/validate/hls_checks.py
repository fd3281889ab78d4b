"""HLS checks: the multivariant playlist, media and I-frame playlists, and Apple's authoring rules
that can be checked from the files.

Playlists are read back with the m3u8 library; what they declare is compared with what the media
files hold (media.py).
"""

from __future__ import annotations

import math
import os
import posixpath
from dataclasses import dataclass

import m3u8

from abrpipe.validate import text_checks
from abrpipe.validate.media import Bitrates, Context, Rendition, SegmentRef, codec_family

APPLE_TARGET_S = 6  # 7.5: target duration 6 s
APPLE_OVER_TARGET_S = 0.5  # 7.7: no segment more than 0.5 s above it
BANDWIDTH_TOLERANCE = 0.10  # Apple 1.26 / 1.27: within 10%
EXTINF_TOLERANCE_S = 0.1
ASPECT_TOLERANCE = 0.01
STEREO_AAC = ("mp4a.40.2", "mp4a.40.5", "mp4a.40.29")
_PLAYLIST_STEMS = {"playlist", "index", "prog_index", "media", "chunklist", "stream"}
_TEXT_CODECS = ("wvtt", "stpp", "tx3g", "c608", "c708")


@dataclass
class MediaPlaylist:
    path: str
    playlist: m3u8.M3U8
    name: str
    rendition: Rendition | None

    @property
    def target_s(self) -> int | None:
        return self.playlist.target_duration


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def parse_byterange(value: str, previous_end: int | None) -> tuple[int, int | None]:
    """'length[@offset]' -> (length, offset); without @offset the range follows the previous one."""
    length, _, offset = value.partition("@")
    return int(length), int(offset) if offset else previous_end


def normalize_codec(codec: str) -> str:
    codec = codec.strip().lower()
    if codec.startswith("mp4a."):
        parts = codec.split(".")
        try:
            return ".".join(parts[:2] + [str(int(p)) for p in parts[2:]])
        except ValueError:
            return codec
    return codec


def split_codecs(value: str | None) -> list[str]:
    return [c.strip() for c in (value or "").split(",") if c.strip()]


class HlsChecker:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.report = ctx.report
        self.media: dict[str, MediaPlaylist | None] = {}

    # -- helpers --------------------------------------------------------------------------------

    def name_for(self, path: str) -> str:
        rel = self.ctx.rel(path) or path
        stem = rel[:-5] if rel.endswith(".m3u8") else rel
        directory, base = posixpath.split(stem)
        return directory if directory and base in _PLAYLIST_STEMS else stem

    def load(self, path: str, rendition: str | None = None) -> m3u8.M3U8 | None:
        rel = self.ctx.rel(path)
        try:
            with open(path, encoding="utf-8-sig") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            self.report.add("HLS-PARSE", f"cannot be read: {exc}", file=rel, rendition=rendition)
            return None
        if not text.startswith("#EXTM3U"):
            self.report.add("HLS-PARSE", "does not start with #EXTM3U", file=rel, rendition=rendition)
            return None
        try:
            return m3u8.loads(text)
        except Exception as exc:  # the m3u8 library raises ValueError, ParseError, ...
            self.report.add(
                "HLS-PARSE", f"cannot be parsed: {type(exc).__name__}: {exc}", file=rel, rendition=rendition
            )
            return None

    # -- entry point ----------------------------------------------------------------------------

    def check(self, path: str) -> None:
        playlist = self.load(path)
        if playlist is None:
            return
        self.report.manifests.append(self.ctx.rel(path) or path)
        if playlist.is_variant or playlist.iframe_playlists or (playlist.media and not playlist.segments):
            self.check_multivariant(path, playlist)
        else:
            self.media_playlist(path, referrer=None, name=self.name_for(path), loaded=playlist)

    # -- media playlists ------------------------------------------------------------------------

    def media_playlist(
        self, path: str, *, referrer: str | None, name: str, loaded: m3u8.M3U8 | None = None
    ) -> MediaPlaylist | None:
        if path in self.media:
            return self.media[path]
        self.media[path] = None
        if loaded is None:
            if not self.ctx.check_file(path, referrer=referrer, rendition=name):
                return None
            loaded = self.load(path, name)
            if loaded is None:
                return None
        pl = loaded
        rel = self.ctx.rel(path)
        if pl.is_variant:
            self.report.add(
                "HLS-PARSE",
                "expected a media playlist, found a multivariant playlist",
                file=rel,
                rendition=name,
            )
            return None
        self._playlist_tags(pl, rel, name)
        if pl.is_i_frames_only:
            self.report.add(
                "IFRAME-TAG",
                "EXT-X-I-FRAMES-ONLY in a playlist referenced as a normal rendition",
                file=rel,
                rendition=name,
            )
        base_dir = os.path.dirname(path)
        init_path = self._init_path(pl, base_dir, path, name)
        refs: list[SegmentRef] = []
        declared: list[float | None] = []
        previous: tuple[str, int] | None = None
        for number, seg in enumerate(pl.segments, 1):
            seg_path = self.ctx.resolve(base_dir, seg.uri, referrer=path, rendition=name) if seg.uri else None
            if seg_path is None:
                refs = []
                break
            offset = length = None
            if seg.byterange:
                try:
                    length, offset = parse_byterange(
                        seg.byterange, previous[1] if previous and previous[0] == seg_path else None
                    )
                except ValueError:
                    self.report.add(
                        "HLS-PARSE",
                        f"bad EXT-X-BYTERANGE {seg.byterange!r}",
                        file=rel,
                        rendition=name,
                        segment=number,
                    )
                    length = None
                offset = offset or 0
                previous = (seg_path, offset + (length or 0))
            refs.append(SegmentRef(seg_path, number, offset, length))
            declared.append(seg.duration)
        rendition = None
        if refs:
            rendition = self.ctx.rendition(name, init_path, refs, declared, referrer=path)
            if rendition.format == "fmp4" and init_path is None:
                self.report.add(
                    "HLS-MAP",
                    "fMP4 segments but no EXT-X-MAP: players cannot decode them",
                    file=rel,
                    rendition=name,
                )
            self._durations(pl, rendition, rel, name)
        media = MediaPlaylist(path, pl, name, rendition)
        self.media[path] = media
        return media

    def _webvtt(self, media: MediaPlaylist) -> None:
        """WebVTT subtitle segments: parse, X-TIMESTAMP-MAP, cue times, coverage (text_checks.py)."""
        base_dir = os.path.dirname(media.path)
        segments = []
        for seg in media.playlist.segments:
            if not seg.uri or not seg.uri.lower().split("?")[0].endswith((".vtt", ".webvtt")):
                return  # not segmented WebVTT (e.g. fMP4 wvtt): the media checks cover it
            path = self.ctx.resolve(base_dir, seg.uri, referrer=media.path, rendition=media.name)
            if path is None or not os.path.isfile(path):
                return  # remote or missing: already reported
            segments.append((self.ctx.rel(path) or path, path, seg.duration or 0.0))
        text_checks.check_segments(self.report, segments, name=media.name)

    def _playlist_tags(self, pl: m3u8.M3U8, rel: str | None, name: str) -> None:
        if pl.target_duration is None:
            self.report.add("HLS-REQUIRED-TAG", "no EXT-X-TARGETDURATION", file=rel, rendition=name)
        if not pl.segments:
            self.report.add("HLS-PARSE", "the playlist has no segments", file=rel, rendition=name)
        if not pl.is_endlist:
            self.report.add(
                "HLS-ENDLIST",
                "no EXT-X-ENDLIST: players treat the playlist as live",
                file=rel,
                rendition=name,
            )
        elif (pl.playlist_type or "").lower() != "vod":
            self.report.add(
                "APPLE-8.6-PLAYLIST-TYPE",
                "a complete (EXT-X-ENDLIST) playlist without EXT-X-PLAYLIST-TYPE:VOD",
                file=rel,
                rendition=name,
            )

    def _init_path(self, pl: m3u8.M3U8, base_dir: str, path: str, name: str) -> str | None:
        first = pl.segments[0] if pl.segments else None
        section = first.init_section if first is not None else None
        if section is None or not section.uri:
            return None
        init_path = self.ctx.resolve(base_dir, section.uri, referrer=path, rendition=name)
        if init_path is not None and section.byterange:
            try:
                length, offset = parse_byterange(section.byterange, 0)
                self.ctx.init_ranges.setdefault(init_path, (offset or 0, length))
            except ValueError:
                self.report.add(
                    "HLS-PARSE",
                    f"bad EXT-X-MAP BYTERANGE {section.byterange!r}",
                    file=self.ctx.rel(path),
                    rendition=name,
                )
        return init_path

    def _durations(self, pl: m3u8.M3U8, r: Rendition, rel: str | None, name: str) -> None:
        target = pl.target_duration
        for i, seg in enumerate(pl.segments):
            number = i + 1
            extinf = seg.duration or 0.0
            real = r.real_s(i)
            if target is not None:
                if round_half_up(extinf) > target:
                    self.report.add(
                        "HLS-TARGETDURATION",
                        f"EXTINF {extinf:g} s rounds above EXT-X-TARGETDURATION {target}",
                        file=rel,
                        rendition=name,
                        segment=number,
                    )
                elif real is not None and round_half_up(real) > target:
                    self.report.add(
                        "HLS-TARGETDURATION",
                        f"the segment lasts {real:.3f} s, which rounds above EXT-X-TARGETDURATION {target}",
                        file=rel,
                        rendition=name,
                        segment=number,
                    )
            if real is not None and abs(extinf - real) > EXTINF_TOLERANCE_S + r.sample_s:
                self.report.add(
                    "HLS-EXTINF-MISMATCH",
                    f"EXTINF {extinf:g} s but the segment lasts {real:.3f} s",
                    file=rel,
                    rendition=name,
                    segment=number,
                )
            longest = max(extinf, real or 0.0)
            if longest > APPLE_TARGET_S + APPLE_OVER_TARGET_S:
                self.report.add(
                    "APPLE-7.7-SEG-OVER-TARGET",
                    f"{longest:.3f} s is more than {APPLE_OVER_TARGET_S} s above the nominal {APPLE_TARGET_S} s",
                    file=rel,
                    rendition=name,
                    segment=number,
                )

    # -- multivariant playlist -------------------------------------------------------------------

    def check_multivariant(self, path: str, pl: m3u8.M3U8) -> None:
        ctx, report = self.ctx, self.report
        rel = ctx.rel(path)
        base_dir = os.path.dirname(path)
        groups: dict[tuple[str, str], list[MediaPlaylist]] = {}
        defined: set[tuple[str, str]] = set()
        audio_media: list[tuple[m3u8.Media, MediaPlaylist | None]] = []
        for m in pl.media:
            mtype = (m.type or "").upper()
            label = m.name or m.group_id or m.uri or "EXT-X-MEDIA"
            for attr, value in (("TYPE", m.type), ("GROUP-ID", m.group_id), ("NAME", m.name)):
                if not value:
                    report.add("HLS-ATTRIBUTE", f"EXT-X-MEDIA {label!r} has no {attr}", file=rel)
            if mtype == "CLOSED-CAPTIONS" and not m.instream_id:
                report.add(
                    "HLS-ATTRIBUTE", f"EXT-X-MEDIA {label!r} (CLOSED-CAPTIONS) has no INSTREAM-ID", file=rel
                )
            if mtype in ("AUDIO", "SUBTITLES", "CLOSED-CAPTIONS") and not m.language:
                report.add(
                    "APPLE-8.10-LANGUAGE", f"EXT-X-MEDIA {label!r} ({mtype}) has no LANGUAGE", file=rel
                )
            defined.add((mtype, m.group_id or ""))
            media = None
            if m.uri:
                media_path = ctx.resolve(base_dir, m.uri, referrer=path)
                if media_path is not None:
                    media = self.media_playlist(media_path, referrer=path, name=self.name_for(media_path))
                if media is not None:
                    groups.setdefault((mtype, m.group_id or ""), []).append(media)
                if media is not None and mtype == "SUBTITLES":
                    self._webvtt(media)
            if mtype == "AUDIO":
                audio_media.append((m, media))
                self._channels(m, media, rel)

        variants: list[tuple[m3u8.Playlist, MediaPlaylist | None, list[Rendition]]] = []
        for v in pl.playlists:
            si = v.stream_info
            label = v.uri
            if si.bandwidth is None:
                report.add("HLS-ATTRIBUTE", f"EXT-X-STREAM-INF for {label} has no BANDWIDTH", file=rel)
            if not si.codecs:
                report.add("APPLE-9.1-CODECS", f"EXT-X-STREAM-INF for {label} has no CODECS", file=rel)
            if si.average_bandwidth is None:
                report.add(
                    "APPLE-9.14-AVERAGE-BANDWIDTH",
                    f"EXT-X-STREAM-INF for {label} has no AVERAGE-BANDWIDTH",
                    file=rel,
                )
            for gtype, gid in (("AUDIO", si.audio), ("SUBTITLES", si.subtitles), ("VIDEO", si.video)):
                if gid and (gtype, gid) not in defined:
                    report.add(
                        "HLS-GROUP",
                        f"EXT-X-STREAM-INF for {label} names {gtype}={gid!r} but no EXT-X-MEDIA defines it",
                        file=rel,
                    )
            media = None
            if v.uri:
                media_path = ctx.resolve(base_dir, v.uri, referrer=path)
                if media_path is not None:
                    media = self.media_playlist(media_path, referrer=path, name=self.name_for(media_path))
            else:
                report.add("HLS-ATTRIBUTE", "EXT-X-STREAM-INF without a URI line", file=rel)
            audio = [
                mp.rendition for mp in groups.get(("AUDIO", si.audio or ""), []) if si.audio and mp.rendition
            ]
            variants.append((v, media, audio))
            self._variant(v, media, audio, rel)

        video = [
            mp.rendition for _, mp, _ in variants if mp and mp.rendition and mp.rendition.kind == "video"
        ]
        self._iframes(pl, path, base_dir, rel, video)
        self._presentation(pl, rel, variants, audio_media)

    def _channels(self, m: m3u8.Media, media: MediaPlaylist | None, rel: str | None) -> None:
        r = media.rendition if media else None
        track = r.track if r else None
        if not m.channels or track is None or track.channels is None or track.handler != "soun":
            return
        try:
            declared = int(str(m.channels).split("/")[0])
        except ValueError:
            return
        if declared != track.channels:
            self.report.add(
                "CHANNELS-MISMATCH",
                f'CHANNELS="{m.channels}" but the track has {track.channels} channels',
                file=rel,
                rendition=r.name if r else None,
            )

    def _variant(
        self, v: m3u8.Playlist, media: MediaPlaylist | None, audio: list[Rendition], rel: str | None
    ) -> None:
        si = v.stream_info
        r = media.rendition if media else None
        if r is None:
            return
        label = r.name
        if r.kind == "video" or (r.kind == "unknown" and si.resolution):
            if not si.resolution:
                self.report.add(
                    "APPLE-9.2-RESOLUTION",
                    f"EXT-X-STREAM-INF for {v.uri} has no RESOLUTION",
                    file=rel,
                    rendition=label,
                )
            if not si.frame_rate:
                self.report.add(
                    "APPLE-9.15-FRAME-RATE",
                    f"EXT-X-STREAM-INF for {v.uri} has no FRAME-RATE",
                    file=rel,
                    rendition=label,
                )
        # CODECS against the init segments of this variant and of its audio group
        renditions = [r] + audio
        if si.codecs and all(x.analysed for x in renditions):
            actual = {normalize_codec(c): c for x in renditions for c in x.codecs}
            declared = {normalize_codec(c): c for c in split_codecs(si.codecs)}
            missing = [c for k, c in actual.items() if k not in declared]
            extra = [c for k, c in declared.items() if k not in actual and not k.startswith(_TEXT_CODECS)]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"the media have {', '.join(missing)}")
                if extra:
                    parts.append(f"nothing in this variant is {', '.join(extra)}")
                self.report.add(
                    "CODECS-MISMATCH",
                    f'CODECS="{si.codecs}" but {" and ".join(parts)}',
                    file=rel,
                    rendition=label,
                )
        track = r.track
        if r.analysed and r.kind == "video" and track is not None:
            if si.resolution and tuple(si.resolution) != (track.width, track.height):
                w, h = si.resolution
                self.report.add(
                    "RESOLUTION-MISMATCH",
                    f"RESOLUTION={w}x{h} but the video is {track.width}x{track.height}",
                    file=rel,
                    rendition=label,
                )
            rate = r.frame_rate
            if si.frame_rate and rate and not _same_rate(float(si.frame_rate), float(rate)):
                self.report.add(
                    "FRAMERATE-MISMATCH",
                    f"FRAME-RATE={si.frame_rate:g} but the video runs at {float(rate):.3f} fps",
                    file=rel,
                    rendition=label,
                )
        # bandwidth: the variant's video with the most demanding rendition of its audio group
        measured = r.bitrates()
        if measured is None:
            return
        audio_rates = [b for a in audio if a.key != r.key and (b := a.bitrates()) is not None]
        if audio_rates:
            # An audio-only variant plays its own audio or another rendition of its group, not both;
            # a video variant plays its video with the most demanding rendition of its group.
            measured = _largest([measured, *audio_rates]) if r.kind == "audio" else measured + _largest(audio_rates)
        self.check_bandwidth(
            measured, si.bandwidth, si.average_bandwidth, f"EXT-X-STREAM-INF for {v.uri}", rel, label
        )
        for a in audio:
            if r.kind == "video" and a.kind == "audio":
                self.ctx.av_pairs.setdefault((r.key, a.key), (r, a))

    def check_bandwidth(
        self,
        measured: Bitrates,
        bandwidth: int | None,
        average: int | None,
        what: str,
        rel: str | None,
        rendition: str | None,
        *,
        peak_to_average: bool = True,
    ) -> None:
        tol = BANDWIDTH_TOLERANCE
        if bandwidth is not None:
            if bandwidth < (1 - tol) * measured.full_peak_bps:
                self.report.add(
                    "BW-PEAK",
                    f"{what}: BANDWIDTH={bandwidth} is more than 10% below the measured peak {measured.full_peak_bps:.0f} bit/s",
                    file=rel,
                    rendition=rendition,
                )
            elif bandwidth > (1 + tol) * measured.peak_bps:
                self.report.add(
                    "BW-PEAK-HIGH",
                    f"{what}: BANDWIDTH={bandwidth} is more than 10% above the measured peak {measured.peak_bps:.0f} bit/s",
                    file=rel,
                    rendition=rendition,
                )
        if average is not None and abs(average - measured.average_bps) > tol * measured.average_bps:
            self.report.add(
                "BW-AVERAGE",
                f"{what}: AVERAGE-BANDWIDTH={average} is not within 10% of the measured average {measured.average_bps:.0f} bit/s",
                file=rel,
                rendition=rendition,
            )
        if peak_to_average and measured.full_peak_bps > 2 * measured.average_bps:
            self.report.add(
                "BW-PEAK-2X-AVG",
                f"{what}: measured peak {measured.full_peak_bps:.0f} bit/s is more than twice the average {measured.average_bps:.0f} bit/s",
                file=rel,
                rendition=rendition,
            )

    # -- I-frame playlists ---------------------------------------------------------------------

    def _iframes(
        self, pl: m3u8.M3U8, path: str, base_dir: str, rel: str | None, video: list[Rendition]
    ) -> None:
        if video and not pl.iframe_playlists:
            self.report.add(
                "APPLE-6.1-IFRAME-PLAYLISTS",
                "video variants but no EXT-X-I-FRAME-STREAM-INF (no trick play)",
                file=rel,
            )
        for ip in pl.iframe_playlists:
            info = ip.iframe_stream_info
            if not ip.uri:
                self.report.add("HLS-ATTRIBUTE", "EXT-X-I-FRAME-STREAM-INF has no URI", file=rel)
                continue
            if info.bandwidth is None:
                self.report.add(
                    "HLS-ATTRIBUTE", f"EXT-X-I-FRAME-STREAM-INF for {ip.uri} has no BANDWIDTH", file=rel
                )
            missing = [a for a, v in (("CODECS", info.codecs), ("RESOLUTION", info.resolution)) if not v]
            if missing:
                self.report.add(
                    "APPLE-9.3-IFRAME-ATTRIBUTES",
                    f"EXT-X-I-FRAME-STREAM-INF for {ip.uri} has no {' or '.join(missing)}",
                    file=rel,
                )
            ipath = self.ctx.resolve(base_dir, ip.uri, referrer=path)
            if ipath is None:
                continue
            name = self.name_for(ipath)
            if not self.ctx.check_file(ipath, referrer=path, rendition=name):
                continue
            iplaylist = self.load(ipath, name)
            if iplaylist is not None:
                self.iframe_playlist(ipath, iplaylist, name, info, rel)

    def iframe_playlist(self, path: str, pl: m3u8.M3U8, name: str, info, master_rel: str | None) -> None:
        ctx, report = self.ctx, self.report
        rel = ctx.rel(path)
        self._playlist_tags(pl, rel, name)
        if not pl.is_i_frames_only:
            report.add(
                "IFRAME-TAG",
                "referenced by EXT-X-I-FRAME-STREAM-INF but has no EXT-X-I-FRAMES-ONLY",
                file=rel,
                rendition=name,
            )
        base_dir = os.path.dirname(path)
        init_path = self._init_path(pl, base_dir, path, name)
        tracks = []
        if init_path is not None and ctx.check_file(init_path, referrer=path, rendition=name):
            tracks = ctx.init_tracks(init_path, name) or []
        track = next((t for t in tracks if t.handler == "vide"), None)
        rates: list[float] = []
        durations: list[float] = []
        total_bits = 0
        previous: tuple[str, int] | None = None
        target = pl.target_duration
        complete = True  # every entry could be measured
        for number, seg in enumerate(pl.segments, 1):
            seg_path = ctx.resolve(base_dir, seg.uri, referrer=path, rendition=name) if seg.uri else None
            if seg_path is None or not ctx.check_file(
                seg_path, referrer=path, rendition=name, segment=number
            ):
                complete = False
                continue
            size = os.path.getsize(seg_path)
            if seg.byterange:
                try:
                    length, offset = parse_byterange(
                        seg.byterange, previous[1] if previous and previous[0] == seg_path else None
                    )
                except ValueError:
                    report.add(
                        "HLS-PARSE",
                        f"bad EXT-X-BYTERANGE {seg.byterange!r}",
                        file=rel,
                        rendition=name,
                        segment=number,
                    )
                    complete = False
                    continue
                offset = offset or 0
            else:
                length, offset = size, 0
            previous = (seg_path, offset + length)
            duration = seg.duration or 0.0
            if target is not None and round_half_up(duration) > target:
                report.add(
                    "HLS-TARGETDURATION",
                    f"EXTINF {duration:g} s rounds above EXT-X-TARGETDURATION {target}",
                    file=rel,
                    rendition=name,
                    segment=number,
                )
            if duration > 0:
                rates.append(length * 8 / duration)
                durations.append(duration)
                total_bits += length * 8
            where = f"{ctx.rel(seg_path)} bytes {offset}-{offset + length}"
            if offset + length > size:
                report.add(
                    "IFRAME-RANGE",
                    f"{where} runs past the end of the file ({size} bytes)",
                    file=rel,
                    rendition=name,
                    segment=number,
                )
                complete = False
                continue
            if track is None:
                continue
            fragment = ctx.fragment_at(seg_path, offset, track)
            if fragment is None:
                fragment = self._fragment_inside(seg_path, offset, length)
            if fragment is None:
                report.add(
                    "IFRAME-RANGE",
                    f"{where} does not start at a moof",
                    file=rel,
                    rendition=name,
                    segment=number,
                )
            elif not fragment.first_sample_is_sync:
                report.add(
                    "IFRAME-RANGE",
                    f"{where}: the fragment's first sample is not a sync sample",
                    file=rel,
                    rendition=name,
                    segment=number,
                )
            elif fragment.first_sample_data_offset + fragment.first_sample_size > offset + length:
                report.add(
                    "IFRAME-RANGE",
                    f"{where} ends before the key frame's data does "
                    f"(byte {fragment.first_sample_data_offset + fragment.first_sample_size})",
                    file=rel,
                    rendition=name,
                    segment=number,
                )
        # CODECS / RESOLUTION against the init segment
        if track is not None:
            if info.codecs and {normalize_codec(c) for c in split_codecs(info.codecs)} != {
                normalize_codec(track.codec)
            }:
                report.add(
                    "CODECS-MISMATCH",
                    f'EXT-X-I-FRAME-STREAM-INF CODECS="{info.codecs}" but the video is {track.codec}',
                    file=master_rel,
                    rendition=name,
                )
            if info.resolution and tuple(info.resolution) != (track.width, track.height):
                w, h = info.resolution
                report.add(
                    "RESOLUTION-MISMATCH",
                    f"EXT-X-I-FRAME-STREAM-INF RESOLUTION={w}x{h} but the video is {track.width}x{track.height}",
                    file=master_rel,
                    rendition=name,
                )
        # durations add up to the rendition's
        full = ctx.renditions_with_init(init_path) if init_path else []
        if full and full[0].analysed and all(s.readable for s in full[0].segments):
            expected = full[0].total_s
            total = sum(seg.duration or 0.0 for seg in pl.segments)
            if abs(total - expected) > EXTINF_TOLERANCE_S + full[0].sample_s:
                report.add(
                    "IFRAME-DURATION",
                    f"the I-frame durations add up to {total:.3f} s but the rendition lasts {expected:.3f} s",
                    file=rel,
                    rendition=name,
                )
        if rates and complete:
            measured = Bitrates.of(rates, durations, total_bits / sum(durations))
            # Apple 1.30 (peak <= 2x average) is about the variants; I-frame entries vary by nature
            self.check_bandwidth(
                measured,
                info.bandwidth,
                info.average_bandwidth,
                f"EXT-X-I-FRAME-STREAM-INF for {name}",
                master_rel,
                name,
                peak_to_average=False,
            )

    def _fragment_inside(self, path: str, offset: int, length: int):
        """A range may start with styp/sidx before the moof: the first fragment inside it."""
        inside = [
            f for (p, at), f in self.ctx.fragments.items() if p == path and offset <= at < offset + length
        ]
        return min(inside, key=lambda f: f.offset) if inside else None

    # -- presentation-wide Apple rules -------------------------------------------------------------

    def _presentation(self, pl: m3u8.M3U8, rel: str | None, variants, audio_media) -> None:
        report = self.report
        video_media = [mp for _, mp, _ in variants if mp and mp.rendition and mp.rendition.kind == "video"]
        video_media = list({mp.path: mp for mp in video_media}.values())
        if not pl.is_independent_segments:
            for mp in video_media:
                if not mp.playlist.is_independent_segments:
                    report.add(
                        "APPLE-9.11-INDEPENDENT-SEGMENTS",
                        "EXT-X-INDEPENDENT-SEGMENTS is in neither the multivariant playlist nor this video playlist",
                        file=self.ctx.rel(mp.path),
                        rendition=mp.name,
                    )
        # alignment: video renditions of one codec family
        families: dict[str, list[Rendition]] = {}
        for mp in video_media:
            r = mp.rendition
            assert r is not None
            if r.analysed:
                families.setdefault(codec_family(r.track.codec if r.track else ""), []).append(r)
        for family, renditions in families.items():
            if len(renditions) >= 2:
                key = tuple(sorted(r.key for r in renditions))
                self.ctx.align_groups.setdefault(key, (f"HLS {family} variants", renditions))
        if video_media and not any(
            codec_family(mp.rendition.track.codec) == "avc"
            for mp in video_media
            if mp.rendition and mp.rendition.track
        ):
            report.add(
                "APPLE-1.12-H264",
                "no H.264 variant: older Apple devices cannot play this presentation",
                file=rel,
            )
        # aspect ratio
        sizes = set()
        for v, mp, _ in variants:
            r = mp.rendition if mp else None
            if v.stream_info.resolution:
                sizes.add(tuple(v.stream_info.resolution))
            elif r and r.kind == "video" and r.track and r.track.width and r.track.height:
                sizes.add((r.track.width, r.track.height))
        ratios = sorted((w / h, f"{w}x{h}") for w, h in sizes if w and h)
        if len(ratios) >= 2 and ratios[-1][0] > ratios[0][0] * (1 + ASPECT_TOLERANCE):
            report.add(
                "APPLE-1.33-ASPECT",
                f"aspect ratios differ: {ratios[0][1]} ({ratios[0][0]:.3f}) vs {ratios[-1][1]} ({ratios[-1][0]:.3f})",
                file=rel,
            )
        # stereo AAC among the audio on offer
        audio_tracks = []
        for _, mp, audio in variants:
            if mp and mp.rendition and mp.rendition.analysed:
                audio_tracks += [t for t in mp.rendition.tracks if t.handler == "soun"]
            audio_tracks += [t for a in audio if a.analysed for t in a.tracks if t.handler == "soun"]
        audio_tracks += [
            t
            for _, mp in audio_media
            if mp and mp.rendition and mp.rendition.analysed
            for t in mp.rendition.tracks
            if t.handler == "soun"
        ]
        if audio_tracks and not any(
            normalize_codec(t.codec) in STEREO_AAC and t.channels == 2 for t in audio_tracks
        ):
            codecs = sorted({f"{t.codec} {t.channels}ch" for t in audio_tracks})
            report.add(
                "APPLE-2.3-STEREO-AAC", f"no stereo AAC rendition (audio: {', '.join(codecs)})", file=rel
            )
        # target durations
        media = [mp for mp in self.media.values() if mp is not None and not mp.playlist.is_i_frames_only]
        targets = {mp.target_s for mp in media if mp.target_s is not None}
        if len(targets) > 1:
            report.add(
                "APPLE-8.2-SAME-TARGETDURATION",
                f"media playlists use different EXT-X-TARGETDURATION values: {sorted(targets)}",
                file=rel,
            )
        for target in sorted(targets):
            if target != APPLE_TARGET_S:
                report.add(
                    "APPLE-7.5-TARGET-DURATION",
                    f"EXT-X-TARGETDURATION is {target} s; Apple recommends {APPLE_TARGET_S} s",
                    file=rel,
                )


def _same_rate(declared: float, measured: float) -> bool:
    return abs(declared - measured) <= max(0.01, 0.005 * measured)


def _largest(rates: list[Bitrates]) -> Bitrates:
    return Bitrates(
        max(b.peak_bps for b in rates), max(b.full_peak_bps for b in rates), max(b.average_bps for b in rates)
    )
