"""probe: what is the input? ffprobe JSON -> a frozen SourceMedia.

It refuses, with one clear line, what is not a media file, and what FFmpeg would treat as a list of
other files or addresses (HLS/DASH playlists, concat lists, SDP, URLs) unless the caller opts in.
"""

from __future__ import annotations

import codecs
import json
import os
import stat
from dataclasses import dataclass
from fractions import Fraction

from abrpipe import runner, tools
from abrpipe.errors import EncodeError, InputError
from abrpipe.units import parse_rate

# Demuxers that open further files or network addresses named inside the input.
REFERENCING_FORMATS = frozenset(
    {"hls", "applehttp", "dash", "concat", "sdp", "rtp", "rtsp", "ffmetadata", "tee", "mpd", "smil"}
)
# Single-picture demuxers: a still image is not a video.
IMAGE_FORMATS_SUFFIX = "_pipe"
IMAGE_FORMATS = frozenset({"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "gif", "tiff_pipe"})
# Leading bytes of text files that FFmpeg would follow to other resources.
_REFERENCING_MAGIC = (b"#EXTM3U", b"ffconcat", b"<?xml", b"<MPD", b"v=0", b"#EXT-X", b"[Playlist]", b"<smil")
# Demuxers that turn plain text into "video" (ANSI art): a text file is never a media source.
TEXT_FORMATS = frozenset({"tty"})
# Only local files: a crafted input cannot make ffmpeg open a network address. (The runner gives
# every ffmpeg/ffprobe input the whitelist for its kind: runner.input_protocols.)
SAFE_PROTOCOLS = runner.LOCAL_PROTOCOLS
# The only URLs --allow-references opens.
URL_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class VideoTrack:
    index: int  # absolute stream index in the file
    codec: str
    width: int  # coded size
    height: int
    sample_aspect: Fraction
    rotation_deg: int  # display rotation ffmpeg applies when decoding (autorotate)
    frame_rate: Fraction  # average rate; the output is made constant at this rate
    variable_frame_rate: bool
    interlaced: bool
    pix_fmt: str
    bit_depth: int
    color_transfer: str | None
    frame_count: int | None

    @property
    def display_width(self) -> int:
        w = round(self.width * self.sample_aspect)
        return self.height if self.rotation_deg % 180 else w

    @property
    def display_height(self) -> int:
        w = round(self.width * self.sample_aspect)
        return w if self.rotation_deg % 180 else self.height

    @property
    def is_hdr(self) -> bool:
        return self.color_transfer in ("smpte2084", "arib-std-b67")


@dataclass(frozen=True)
class AudioTrack:
    index: int  # absolute stream index
    position: int  # nth audio stream (ffmpeg's a:N)
    codec: str
    channels: int
    channel_layout: str | None
    sample_rate: int
    language: str | None  # ISO 639-2 as tagged; None when untagged/und
    title: str | None
    default: bool


@dataclass(frozen=True)
class SubtitleTrack:
    index: int  # absolute stream index
    position: int  # nth subtitle stream (ffmpeg's s:N)
    codec: str
    language: str | None  # as tagged (ISO 639-2 or BCP 47); None when untagged/und
    title: str | None
    default: bool
    forced: bool
    hearing_impaired: bool

    @property
    def bitmap(self) -> bool:
        """Pictures (PGS, DVB, VobSub), not text: they cannot become WebVTT."""
        from abrpipe.subtitles import BITMAP_CODECS

        return self.codec in BITMAP_CODECS


@dataclass(frozen=True)
class SourceMedia:
    path: str  # absolute
    format_name: str
    duration_s: float
    size_bytes: int
    bit_rate: int | None
    video: VideoTrack | None
    audio: tuple[AudioTrack, ...]
    subtitles: tuple[SubtitleTrack, ...] = ()

    @property
    def is_url(self) -> bool:
        return is_url(self.path)

    @property
    def ffmpeg_url(self) -> str:
        """The input as ffmpeg opens it: an http(s) URL as is; a path behind 'file:', which keeps names
        like 'http:x' or '-y' from being misread."""
        return self.path if self.is_url else "file:" + self.path

    @property
    def protocol_whitelist(self) -> str:
        """What ffmpeg may open for this input (the runner enforces the same)."""
        return runner.input_protocols(self.ffmpeg_url)


def is_url(path: str) -> bool:
    """An http(s) URL (the only kind abrpipe opens, with --allow-references)."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in URL_SCHEMES


def check_input_path(path: str, *, allow_references: bool = False) -> str:
    """Refuse before any ffmpeg process sees the path. Returns the absolute path."""
    if "://" in path or path.split(":", 1)[0] in ("http", "https", "rtmp", "rtsp", "udp", "tcp", "srt", "ftp"):
        if not allow_references:
            raise InputError(
                f"{path}: is a URL, not a local file",
                hint="download it first, or pass --allow-references to let ffmpeg open it",
            )
        if not is_url(path):
            raise InputError(
                f"{path}: only http:// and https:// URLs can be opened",
                hint="download it first and pass the local file",
            )
        return path
    abspath = os.path.abspath(path)
    try:
        st = os.stat(abspath)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint="check the path") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory, not a media file", hint="give the path of a video file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: is not a regular file")
    if st.st_size == 0:
        raise InputError(f"{path}: is empty (0 bytes)")
    if not os.access(abspath, os.R_OK):
        raise InputError(f"{path}: permission denied", hint="check the file's permissions")
    if not allow_references:
        try:
            with open(abspath, "rb") as fh:
                raw = fh.read(4096)
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
        head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(_REFERENCING_MAGIC) or head[:64].lower().startswith((b"#extm3u", b"ffconcat")):
            raise InputError(
                f"{path}: is a playlist or list of other files, not a media file",
                hint="pass the media file itself, or --allow-references to let ffmpeg follow it",
            )
        if _is_text(raw):
            # Playlists, concat lists, SDP and manifests are text; so is every other list of
            # names FFmpeg could follow. No audio/video container is plain text.
            raise InputError(f"{path}: is a text file, not a media file")
    return abspath


def _is_text(data: bytes) -> bool:
    """True when the bytes decode as UTF-8 made only of printable characters and whitespace."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return bool(text.strip()) and all(c.isprintable() or c in "\t\r\n\f\v" for c in text)


def probe(path: str, *, allow_references: bool = False) -> SourceMedia:
    abspath = check_input_path(path, allow_references=allow_references)
    url = abspath if is_url(abspath) else "file:" + abspath
    argv = [tools.ffprobe_path(), "-v", "error", "-hide_banner", "-protocol_whitelist", runner.input_protocols(url)]
    argv += ["-show_format", "-show_streams", "-of", "json", url]
    try:
        data = json.loads(runner.capture(argv))
    except EncodeError as exc:
        if exc.returncode is not None and exc.returncode < 0:
            # Killed from outside (OOM killer, an operator): not the input's fault, worth a retry.
            raise EncodeError(f"{path}: ffprobe was killed by signal {-exc.returncode} while reading it", argv=argv,
                              returncode=exc.returncode) from None
        reason = exc.stderr_tail.splitlines()[-1] if exc.stderr_tail else "ffprobe could not read it"
        reason = reason.replace(url + ": ", "").replace(abspath + ": ", "")
        raise InputError(f"{path}: not a readable media file ({reason})") from None
    except json.JSONDecodeError:
        raise InputError(f"{path}: ffprobe returned no usable description") from None
    return _to_source(path, abspath, data, allow_references)


def _to_source(path: str, abspath: str, data: dict, allow_references: bool) -> SourceMedia:
    fmt = data.get("format") or {}
    format_name = fmt.get("format_name", "")
    if not allow_references and set(format_name.split(",")) & REFERENCING_FORMATS:
        raise InputError(
            f"{path}: is a {format_name} playlist/list that references other files, not a media file",
            hint="pass --allow-references to let ffmpeg follow it",
        )
    if set(format_name.split(",")) & TEXT_FORMATS:
        raise InputError(f"{path}: is a text file ({format_name}), not a media file")
    streams = data.get("streams") or []
    video_streams = [
        s for s in streams if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audio_streams = [s for s in streams if s.get("codec_type") == "audio"]
    if not video_streams and not audio_streams:
        raise InputError(f"{path}: has no video or audio stream")
    if set(format_name.split(",")) & IMAGE_FORMATS or format_name.endswith(IMAGE_FORMATS_SUFFIX):
        raise InputError(f"{path}: is a still image ({format_name}), not a video")

    video = _video_track(video_streams[0]) if video_streams else None
    duration = _float(fmt.get("duration"))
    if duration is None:
        durations = [_float(s.get("duration")) for s in streams]
        duration = max((d for d in durations if d), default=None)
    if video and (duration is None or duration <= 0 or (video.frame_count is not None and video.frame_count <= 1)):
        raise InputError(f"{path}: is a still image or a video without duration, not a playable video")
    if duration is None or duration <= 0:
        raise InputError(f"{path}: has no duration")
    audio = tuple(_audio_track(s, n) for n, s in enumerate(audio_streams))
    subtitle_streams = [s for s in streams if s.get("codec_type") == "subtitle"]
    return SourceMedia(
        path=abspath,
        format_name=format_name,
        duration_s=duration,
        size_bytes=int(fmt.get("size") or (0 if is_url(abspath) else os.path.getsize(abspath))),
        bit_rate=int(fmt["bit_rate"]) if str(fmt.get("bit_rate", "")).isdigit() else None,
        video=video,
        audio=audio,
        subtitles=tuple(_subtitle_track(s, n) for n, s in enumerate(subtitle_streams)),
    )


def _subtitle_track(s: dict, position: int) -> SubtitleTrack:
    tags = {k.lower(): v for k, v in (s.get("tags") or {}).items()}
    disposition = s.get("disposition") or {}
    language = tags.get("language")
    return SubtitleTrack(
        index=int(s["index"]),
        position=position,
        codec=s.get("codec_name", "unknown"),
        language=None if not language or language == "und" else language,
        title=tags.get("title"),
        default=bool(disposition.get("default")),
        forced=bool(disposition.get("forced")),
        hearing_impaired=bool(disposition.get("hearing_impaired")),
    )


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _video_track(s: dict) -> VideoTrack:
    avg = parse_rate(s.get("avg_frame_rate", "0/0"))
    real = parse_rate(s.get("r_frame_rate", "0/0"))
    rate = avg or real or Fraction(25)
    if real and avg and real > 0 and abs(float(real) - float(avg)) / float(real) > 0.01 and float(real) < 1000:
        vfr = True
    else:
        vfr = False
    if real and avg and float(avg) < 1:  # nonsense average (e.g. one frame over a long duration)
        rate = real
    sar = parse_rate(s.get("sample_aspect_ratio", "1:1").replace(":", "/")) or Fraction(1)
    rotation = 0
    for side in s.get("side_data_list") or []:
        if "rotation" in side:
            rotation = int(round(float(side["rotation"])))
    if not rotation and "rotate" in (s.get("tags") or {}):
        rotation = -int(s["tags"]["rotate"])
    pix_fmt = s.get("pix_fmt") or "yuv420p"
    depth = int(s.get("bits_per_raw_sample") or 0) or (10 if "10" in pix_fmt else 12 if "12" in pix_fmt else 8)
    field_order = s.get("field_order") or "progressive"
    nb_frames = s.get("nb_frames")
    return VideoTrack(
        index=int(s["index"]),
        codec=s.get("codec_name", "unknown"),
        width=int(s.get("width") or 0),
        height=int(s.get("height") or 0),
        sample_aspect=sar,
        rotation_deg=rotation % 360,
        frame_rate=rate,
        variable_frame_rate=vfr,
        interlaced=field_order in ("tt", "bb", "tb", "bt"),
        pix_fmt=pix_fmt,
        bit_depth=depth,
        color_transfer=s.get("color_transfer"),
        frame_count=int(str(nb_frames)) if str(nb_frames or "").isdigit() else None,
    )


def _audio_track(s: dict, position: int) -> AudioTrack:
    tags = {k.lower(): v for k, v in (s.get("tags") or {}).items()}
    language = tags.get("language")
    return AudioTrack(
        index=int(s["index"]),
        position=position,
        codec=s.get("codec_name", "unknown"),
        channels=int(s.get("channels") or 2),
        channel_layout=s.get("channel_layout"),
        sample_rate=int(s.get("sample_rate") or 48000),
        language=None if not language or language == "und" else language,
        title=tags.get("title"),
        default=bool((s.get("disposition") or {}).get("default")),
    )


def source_to_dict(source: SourceMedia) -> dict:
    """JSON-ready description (for `abrpipe probe --json`)."""

    def clean(obj):
        if isinstance(obj, Fraction):
            return float(obj)
        return obj

    out = {k: clean(v) for k, v in source.__dict__.items() if k not in ("video", "audio", "subtitles")}
    if source.video:
        out["video"] = {k: clean(v) for k, v in source.video.__dict__.items()}
        out["video"]["display_width"] = source.video.display_width
        out["video"]["display_height"] = source.video.display_height
        out["video"]["frame_rate"] = str(source.video.frame_rate)
    else:
        out["video"] = None
    out["audio"] = [dict(a.__dict__) for a in source.audio]
    out["subtitles"] = [dict(t.__dict__, bitmap=t.bitmap) for t in source.subtitles]
    return out
