"""Encoding profiles: one schema (TOML or YAML), validated once at load with errors that name the
file and the field path, e.g. `profiles/x.toml: rungs[2].bitrate: expected a bitrate like 800k or 2.5M`.

A profile file is a table of settings, a list of video `rungs` and a list of `audio` rungs. It may
`extends = "NAME"` another profile: its keys override the parent's, `[[rung_overrides]]` edits single
parent rungs by index and `remove_rungs` drops some, so a team tweaks one rung without copying a file.

Every rule is checked here, at load: the types and units of each field, unknown keys, and the
cross-field rules (segment a whole multiple of the GOP, rungs descending per codec, crf only with
capped CRF, each codec's own profiles, levels, presets, channel counts and rate-control modes, the
segment container each codec needs). Codec-specific knowledge lives in the encoder plug-ins
(codecs.py); whether this machine can run an encoder is checked later, before an encode starts.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from abrpipe.errors import ProfileError
from abrpipe.model import AudioRungSpec, VideoRungSpec  # re-exported: the rung specs belong to the model
from abrpipe.thumbnails import ThumbnailSpec, parse_spec
from abrpipe.units import format_kbps, parse_bitrate_kbps, parse_duration_s, parse_size

SCHEMA_VERSION = 1
RATE_CONTROLS = ("vbr", "crf", "2pass")
OUTPUTS = ("hls", "dash")
CONTAINERS = ("fmp4", "ts")  # "ts" is recognised only to explain why it cannot be used
WRITTEN_CONTAINER = "fmp4"  # every rendition is CMAF fMP4, shared by the HLS and DASH manifests
CHANNELS = (1, 2, 6, 8)
SAMPLE_RATES = (16000, 22050, 24000, 32000, 44100, 48000, 96000)


@dataclass(frozen=True)
class Profile:
    name: str
    origin: str  # where it came from: "builtin", "user (DIR)", "file", or "plug-in DISTRIBUTION"
    path: str | None
    description: str
    preset: str
    rate_control: str  # the default of the rungs
    gop_s: float
    segment_s: float
    max_fps: float
    rungs: tuple[VideoRungSpec, ...]
    audio: tuple[AudioRungSpec, ...]
    audio_tracks: str | tuple[int | str, ...]  # "all", "first", or indices / languages
    outputs: tuple[str, ...]
    encoder_options: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = field(default=())
    container: str = WRITTEN_CONTAINER
    warnings: tuple[str, ...] = ()  # allowed but against a recommendation: `profiles validate` shows them
    crf: int = 23  # the CRF of capped-CRF rungs that give none
    thumbnails: ThumbnailSpec | None = None  # seek-bar sprite sheets, made from the encode's decode
    hls_ts: bool = False  # also HLS with MPEG-TS segments (master-ts.m3u8), remuxed from the same frames
    source_subtitles: bool = True  # publish the source's text tracks as WebVTT
    encryption: str | None = None  # default --encrypt scheme (cenc | cbcs); the keys never come from a profile
    key_classes: tuple[tuple[str, int], ...] = ()  # ("SD", max height), ("HD", max height): video key classes

    def rate_control_of(self, rung: VideoRungSpec) -> str:
        """The rung's own rate control, or the profile's."""
        return rung.rate_control or self.rate_control

    def crf_of(self, rung: VideoRungSpec) -> int | None:
        """The CRF a rung is encoded with: only for capped-CRF rungs."""
        if self.rate_control_of(rung) != "crf":
            return None
        return rung.crf if rung.crf is not None else self.crf

    @property
    def segment_gops(self) -> int:
        return round(self.segment_s / self.gop_s)

    @property
    def codecs(self) -> tuple[str, ...]:
        """Video codecs in ladder order, each once."""
        return tuple(dict.fromkeys(r.codec for r in self.rungs))

    def options_for(self, codec: str) -> dict[str, str]:
        return dict(dict(self.encoder_options).get(codec, ()))

    def to_dict(self) -> dict[str, Any]:
        """The resolved profile as data (for `profiles show`, job records and fingerprints)."""
        data = asdict(self)
        data["encoder_options"] = {codec: dict(opts) for codec, opts in self.encoder_options}
        data["audio_tracks"] = self.audio_tracks if isinstance(self.audio_tracks, str) else list(self.audio_tracks)
        data["warnings"] = list(self.warnings)
        # Unset options are left out, so that fingerprints of profiles that do not use them stay as they were.
        for key in ("thumbnails", "hls_ts"):
            if not data[key]:
                del data[key]
        if self.thumbnails:
            data["thumbnails"] = str(self.thumbnails)
        return data


# ---------------------------------------------------------------------------------------------
# The schema: every key, its meaning (for `abrpipe profiles schema` and docs/PROFILES.md).

TOP_FIELDS: dict[str, str] = {
    "schema": "schema version of the file; 1 (the only version so far)",
    "description": "one line saying what the profile is for (shown by `profiles list`)",
    "extends": "name (or path, relative to this file) of a profile whose settings this one inherits and overrides",
    "codec": "video codec of every rung that names none: h264 (default), hevc, vp9, av1, av1-aom, h264-nvenc ... or a plug-in encoder",
    "preset": "speed/quality preset: ultrafast .. placebo (mapped onto each encoder's scale), or a number for svt-av1 (0-13), vp9/av1-aom (cpu-used); default veryfast",
    "rate_control": 'default rate control of the rungs: "vbr" (target bitrate + maxrate/bufsize, default), "crf" (capped CRF: crf + maxrate/bufsize) or "2pass"',
    "gop": "keyframe interval in seconds, the same on every rung (closed GOPs, aligned): default 2",
    "segment": "segment duration in seconds, a whole multiple of gop: default 6",
    "max_fps": "highest output frame rate; faster sources are divided by a whole number until under it: default 60",
    "maxrate_ratio": "maxrate = bitrate x this, for rungs that give no maxrate: default 1.1",
    "bufsize_ratio": "bufsize = bitrate x this, for rungs that give no bufsize: default 2.0",
    "crf": 'CRF of every rung with rate_control = "crf" that gives none: default 23',
    "container": 'segment container: "fmp4" (CMAF, the only one written; HEVC, AV1, VP9, Opus and Dolby audio need it)',
    "outputs": 'manifests to write: ["hls", "dash"] (default both), ["hls"] or ["dash"]',
    "audio_tracks": 'which source audio tracks to keep, each as its own rendition: "all" (default), "first", or a list of indices / ISO 639-2 languages',
    "encoder_options": 'extra FFmpeg options per codec, e.g. [encoder_options.h264] x264-params = "aq-mode=3"',
    "thumbnails": 'seek-bar thumbnails "INTERVAL,WxH,CxR", e.g. "10s,320x180,5x5": a WxH JPEG tile every INTERVAL, CxR tiles per sprite sheet (default: none)',
    "hls_ts": "also write HLS with MPEG-TS segments (master-ts.m3u8) from the same encoded frames, for older devices: true or false (default)",
    "source_subtitles": "publish the source's text tracks (mov_text, SubRip, ASS, WebVTT) as WebVTT subtitles: default true",
    "rungs": "the video rungs, highest first within each codec ([[rungs]] tables)",
    "rung_overrides": "with extends: [[rung_overrides]] index = N plus the rung keys to change in the parent's rung N",
    "remove_rungs": "with extends: indices of the parent's rungs to drop, e.g. [0, 1]",
    "audio": "the audio rungs ([[audio]] tables); audio = [] for a video-only ladder",
    "encryption": 'encrypt by default with this Common Encryption scheme: "cenc" or "cbcs" (keys come from --key, --keys, --cpix or ABRPIPE_KEYS, never from a profile)',
    "key_classes": "video track classes for per-class keys, as highest heights: [key_classes] SD = 576, HD = 1080 (default); taller is UHD",
}
RUNG_FIELDS: dict[str, str] = {
    "size": "bounding box WxH, e.g. 1920x1080 (portrait sources use it rotated); or give height",
    "height": "rung height in pixels (the short side of portrait video); the width follows the source's aspect ratio",
    "bitrate": "target (average) bitrate, e.g. 800k or 2.5M; with crf, the nominal rate used for ids and defaults",
    "maxrate": "VBV peak rate, >= bitrate (default bitrate x maxrate_ratio)",
    "bufsize": "VBV buffer size (default bitrate x bufsize_ratio)",
    "rate_control": 'this rung\'s rate control: "vbr", "crf" or "2pass" (default: the profile\'s)',
    "crf": 'CRF, for rate_control = "crf" only (default: the profile\'s crf); the range is the codec\'s',
    "max_fps": "frame-rate cap for this rung, e.g. 30 (the source rate divided by a whole number)",
    "codec": "video codec of this rung (multi-codec ladders; default: the profile's codec)",
    "profile": 'codec profile: h264 baseline/main/high, hevc main, vp9 "0", av1 main',
    "level": 'codec level, e.g. "4.1" (h264, hevc); checked against the rung size',
}
AUDIO_FIELDS: dict[str, str] = {
    "codec": "aac (AAC-LC), he-aac, he-aac-v2 (need libfdk_aac), opus, ac3, eac3, or a plug-in encoder",
    "bitrate": "e.g. 128k",
    "channels": "1, 2, 6 (5.1) or 8 (7.1); sources are down/up-mixed to it, but surround rungs only take surround tracks",
    "sample_rate": "Hz, default 48000 (Opus: 48000 only)",
}
OVERRIDE_FIELDS = {"index": "the parent rung to change (0 = first)", **RUNG_FIELDS}

DEFAULTS: dict[str, Any] = {
    "description": "",
    "codec": "h264",
    "preset": "veryfast",
    "rate_control": "vbr",
    "gop": 2.0,
    "segment": 6.0,
    "max_fps": 60,
    "maxrate_ratio": 1.1,
    "bufsize_ratio": 2.0,
    "crf": 23,
    "container": WRITTEN_CONTAINER,
    "outputs": ["hls", "dash"],
    "audio_tracks": "all",
    "source_subtitles": True,
    "encoder_options": {},
    "audio": [{"codec": "aac", "bitrate": "128k", "channels": 2}],
    "thumbnails": None,
    "hls_ts": False,
}


class _Errors:
    """Collects every problem of one file, so a user fixes them in one go."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []
        self.warnings: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{self.where}: {path}: {message}" if path else f"{self.where}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{self.where}: {path}: {message}" if path else f"{self.where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise profile_error(self.items)


def profile_error(problems: list[str]) -> ProfileError:
    """One ProfileError carrying every problem (one per line); `.problems` keeps them apart."""
    error = ProfileError("\n".join(problems))
    error.problems = list(problems)  # type: ignore[attr-defined]
    return error


def read_profile_file(path: str, where: str | None = None) -> dict[str, Any]:
    """Read a TOML or YAML profile file into raw data (no validation yet)."""
    where = where or path
    is_yaml = path.endswith((".yaml", ".yml"))
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ProfileError(f"{where}: cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
        if is_yaml:
            import yaml

            data = yaml.safe_load(text)
            data = {} if data is None else data
        else:
            data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ProfileError(f"{where}: not UTF-8 text") from None
    except Exception as exc:  # tomllib / yaml syntax errors carry the line and column
        detail = " ".join(str(exc).split())
        raise ProfileError(f"{where}: not valid {'YAML' if is_yaml else 'TOML'} ({detail})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a table of settings at the top level, not {type(data).__name__}")
    return data


def merge_extends(parent: dict[str, Any], child: dict[str, Any], where: str) -> dict[str, Any]:
    """Child keys override the parent's; rung_overrides / remove_rungs edit the parent's rungs."""
    errors = _Errors(where)
    merged = copy.deepcopy(parent)
    for key in ("rung_overrides", "remove_rungs", "extends"):
        merged.pop(key, None)
    if "rungs" in child and ("rung_overrides" in child or "remove_rungs" in child):
        errors.add("rungs", "give rungs (replacing the parent's) or rung_overrides/remove_rungs (editing them), not both")
    for key, value in child.items():
        if key in ("extends", "rung_overrides", "remove_rungs"):
            continue
        if key == "encoder_options" and isinstance(value, dict) and isinstance(merged.get("encoder_options"), dict):
            options = merged["encoder_options"]
            for codec, opts in value.items():
                parent_opts = options.get(codec)
                both = isinstance(opts, dict) and isinstance(parent_opts, dict)
                options[codec] = {**parent_opts, **opts} if both else copy.deepcopy(opts)
        else:
            merged[key] = copy.deepcopy(value)
    rungs = list(merged.get("rungs") or [])
    overrides = child.get("rung_overrides", [])
    if not isinstance(overrides, list):
        errors.add("rung_overrides", "expected a list of [[rung_overrides]] tables")
        overrides = []
    for n, override in enumerate(overrides):
        path = f"rung_overrides[{n}]"
        if not isinstance(override, dict):
            errors.add(path, "expected a table with an index and the rung keys to change")
            continue
        index = override.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            errors.add(f"{path}.index", "expected the integer index of a parent rung (0 = first)")
            continue
        for key in override:
            if key not in OVERRIDE_FIELDS:
                errors.add(f"{path}.{key}", f"unknown key (expected one of: {', '.join(OVERRIDE_FIELDS)})")
        if not -len(rungs) <= index < len(rungs):
            errors.add(f"{path}.index", f"no rung {index} in the parent (it has {len(rungs)})")
            continue
        changes = {k: copy.deepcopy(v) for k, v in override.items() if k != "index" and k in RUNG_FIELDS}
        base = rungs[index] if isinstance(rungs[index], dict) else {}
        if "size" in changes:
            base = {k: v for k, v in base.items() if k != "height"}
        if "height" in changes:
            base = {k: v for k, v in base.items() if k != "size"}
        rungs[index] = {**base, **changes}
    remove = child.get("remove_rungs", [])
    if not isinstance(remove, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in remove):
        errors.add("remove_rungs", "expected a list of parent rung indices, like [0, 1]")
        remove = []
    for index in remove:
        if not -len(rungs) <= index < len(rungs):
            errors.add("remove_rungs", f"no rung {index} in the parent (it has {len(rungs)})")
    drop = {i % len(rungs) for i in remove if -len(rungs) <= i < len(rungs)} if rungs else set()
    if "rungs" not in child:
        merged["rungs"] = [r for i, r in enumerate(rungs) if i not in drop]
    errors.raise_if_any()
    return merged


# ---------------------------------------------------------------------------------------------
# Building and checking


def build_profile(
    data: dict[str, Any],
    *,
    name: str,
    origin: str,
    path: str | None,
    where: str,
    check_codecs: bool = True,
) -> Profile:
    """Validate merged profile data (every rule, cross-field ones included) and build the Profile.

    With check_codecs, codec names are looked up among the registered encoders, which check their
    own rung settings; without, only the schema is checked (for tools that lack the plug-ins).
    """
    errors = _Errors(where)
    for key in data:
        if key not in TOP_FIELDS:
            errors.add(key, f"unknown key (expected one of: {', '.join(sorted(TOP_FIELDS))})")
    if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        errors.add("schema", f"unsupported schema version {data.get('schema')!r} (this abrpipe reads version {SCHEMA_VERSION})")
    if "rung_overrides" in data or "remove_rungs" in data:
        key = "rung_overrides" if "rung_overrides" in data else "remove_rungs"
        errors.add(key, "only allowed with extends (it edits the parent's rungs)")
    d = {**DEFAULTS, **{k: v for k, v in data.items() if k in TOP_FIELDS}}

    def get(key: str, parse: Callable[[Any], Any], expected: str) -> Any:
        try:
            return parse(d[key])
        except (ValueError, TypeError, KeyError):
            errors.add(key, expected)
            return parse(DEFAULTS[key]) if key in DEFAULTS else None

    description = get("description", _str, "expected a string")
    default_codec = get("codec", _name, "expected a codec name like h264")
    preset = get("preset", _preset, "expected a preset name like veryfast (or a number)")
    rate_control = get("rate_control", _choice(RATE_CONTROLS), f"expected one of: {', '.join(RATE_CONTROLS)}")
    gop_s = get("gop", parse_duration_s, "expected a positive duration in seconds like 2")
    segment_s = get("segment", parse_duration_s, "expected a positive duration in seconds like 6")
    max_fps = get("max_fps", _positive_number, "expected a frame rate like 60")
    maxrate_ratio = get("maxrate_ratio", _ratio, "expected a number >= 1, like 1.1")
    bufsize_ratio = get("bufsize_ratio", _positive_number, "expected a positive number like 2.0")
    default_crf = get("crf", _crf, "expected an integer CRF like 23")
    container = get("container", _choice(CONTAINERS), f'expected "{WRITTEN_CONTAINER}"')
    outputs = get("outputs", _outputs, 'expected a non-empty list from ["hls", "dash"]')
    audio_tracks = get("audio_tracks", _audio_tracks, 'expected "all", "first", or a list of track indices / languages like ["eng", 1]')
    thumbnails = get("thumbnails", _thumbnails, 'expected "INTERVAL,WxH,CxR" like "10s,320x180,5x5"')
    hls_ts = get("hls_ts", _bool, "expected true or false")
    source_subtitles = get("source_subtitles", _bool, "expected true or false")
    encoder_options = get("encoder_options", _encoder_options, "expected tables of option = value per codec, like [encoder_options.h264]")
    encryption = get("encryption", _choice(("cenc", "cbcs")), 'expected "cenc" or "cbcs"') if "encryption" in d else None
    key_classes = (get("key_classes", _key_classes, "expected a table of SD / HD highest heights, like { SD = 576, HD = 1080 }")
                   if "key_classes" in d else ())

    if gop_s and segment_s:
        ratio = segment_s / gop_s
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            errors.add("segment", f"must be a whole multiple of gop ({segment_s:g} s is not a multiple of {gop_s:g} s)")

    indexed = _rungs(d.get("rungs"), errors, default_codec, rate_control, maxrate_ratio, bufsize_ratio)
    rungs = [spec for _, spec, _ in indexed]
    audio = _audio(d.get("audio"), errors)
    if not rungs and not audio and not d.get("rungs"):
        errors.add("rungs", "a profile needs at least one video rung or one audio rung")
    _check_descending(indexed, errors)
    _check_duplicate_audio(audio, errors)
    if check_codecs:
        # The encoders check each rung as it will be encoded: its rate control and CRF resolved.
        effective = [(i, replace(r, rate_control=r.rate_control or rate_control,
                                 crf=(r.crf if r.crf is not None else default_crf) if (r.rate_control or rate_control) == "crf" else None), inh)
                     for i, r, inh in indexed]
        _check_codecs(effective, audio, preset, container, encoder_options, errors)
    if container != WRITTEN_CONTAINER:
        errors.add("container", f'"{container}" is not written: every rendition is CMAF fMP4, shared by HLS and DASH (use "{WRITTEN_CONTAINER}")')
    errors.raise_if_any()
    return Profile(
        name=name,
        origin=origin,
        path=path,
        description=description,
        preset=preset,
        rate_control=rate_control,
        gop_s=gop_s,
        segment_s=segment_s,
        max_fps=max_fps,
        rungs=tuple(rungs),
        audio=tuple(audio),
        audio_tracks=audio_tracks,
        outputs=outputs,
        encoder_options=encoder_options,
        container=container,
        warnings=tuple(errors.warnings),
        crf=default_crf,
        thumbnails=thumbnails,
        hls_ts=hls_ts,
        source_subtitles=source_subtitles,
        encryption=encryption,
        key_classes=key_classes or (),
    )


def _fail() -> Any:
    raise ValueError


def _bool(v: Any) -> bool:
    return v if isinstance(v, bool) else _fail()


def _str(v: Any) -> str:
    return v if isinstance(v, str) else _fail()


def _name(v: Any) -> str:
    return v.strip().lower() if isinstance(v, str) and v.strip() else _fail()


def _preset(v: Any) -> str:
    if isinstance(v, bool):
        return _fail()
    if isinstance(v, int) and v >= 0:
        return str(v)
    return v.strip().lower() if isinstance(v, str) and v.strip() else _fail()


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        return v if isinstance(v, str) and v in choices else _fail()

    return parse


def _positive_number(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else _fail()


def _ratio(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v >= 1 else _fail()


def _crf(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 63 else _fail()


def _thumbnails(v: Any) -> ThumbnailSpec | None:
    return None if v is None else parse_spec(v)


def _key_classes(v: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(v, dict) or not v or set(v) - {"SD", "HD"}:
        return _fail()
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in v.values()):
        return _fail()
    if "SD" in v and "HD" in v and v["SD"] >= v["HD"]:
        return _fail()
    return tuple(sorted(v.items()))


def _outputs(v: Any) -> tuple[str, ...]:
    if isinstance(v, list) and v and all(isinstance(o, str) and o in OUTPUTS for o in v):
        return tuple(dict.fromkeys(v))
    return _fail()


def _audio_tracks(v: Any) -> str | tuple[int | str, ...]:
    if v in ("all", "first"):
        return v
    if isinstance(v, list) and v and all(
        (isinstance(x, str) and x.strip()) or (isinstance(x, int) and not isinstance(x, bool) and x >= 0) for x in v
    ):
        return tuple(v)
    return _fail()


def _encoder_options(v: Any) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    if not isinstance(v, dict):
        return _fail()
    out = []
    for codec, opts in v.items():
        if not isinstance(opts, dict) or not all(isinstance(x, str | int | float) and not isinstance(x, bool) for x in opts.values()):
            return _fail()
        out.append((str(codec).lower(), tuple((str(k).lstrip("-"), str(x)) for k, x in opts.items())))
    return tuple(out)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _rungs(raw, errors: _Errors, codec, rate_control, maxrate_ratio, bufsize_ratio) -> list[tuple[int, VideoRungSpec, bool]]:
    """The valid rungs as (index in the file, spec, whether its codec is the profile's default)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add("rungs", "expected a list of [[rungs]] tables")
        return []
    rungs = []
    for i, r in enumerate(raw):
        path = f"rungs[{i}]"
        if not isinstance(r, dict):
            errors.add(path, "expected a table with size (or height) and bitrate")
            continue
        for key in r:
            if key not in RUNG_FIELDS:
                errors.add(f"{path}.{key}", f"unknown key (expected one of: {', '.join(RUNG_FIELDS)})")
        width = height = None
        if "size" in r and "height" in r:
            errors.add(path, "give size or height, not both")
        elif "size" in r:
            try:
                width, height = parse_size(r["size"])
            except ValueError as exc:
                errors.add(f"{path}.size", str(exc))
        elif "height" in r:
            if _int(r["height"]) and r["height"] >= 16:
                height = r["height"]
            else:
                errors.add(f"{path}.height", "expected a height in pixels like 720")
        else:
            errors.add(path, "needs size (like 1280x720) or height (like 720)")
        if (width is not None and width % 2) or (height is not None and height % 2):
            errors.add(f"{path}.size" if "size" in r else f"{path}.height", "dimensions must be even (4:2:0 video)")
            height = None
        bitrate = _rate(r, "bitrate", None, path, errors)
        if "bitrate" not in r:
            errors.add(f"{path}.bitrate", "missing: expected a bitrate like 800k or 2.5M")
        bitrate = bitrate or 1
        maxrate = _rate(r, "maxrate", round(bitrate * maxrate_ratio), path, errors) or bitrate
        bufsize = _rate(r, "bufsize", round(bitrate * bufsize_ratio), path, errors) or bitrate
        if "maxrate" in r and maxrate < bitrate:
            errors.add(f"{path}.maxrate", f"must be >= bitrate ({format_kbps(maxrate)} < {format_kbps(bitrate)})")
        own_rc = r.get("rate_control")
        if own_rc is not None and own_rc not in RATE_CONTROLS:
            errors.add(f"{path}.rate_control", f"expected one of: {', '.join(RATE_CONTROLS)}")
            own_rc = None
        rung_rc = own_rc or rate_control
        crf = r.get("crf")
        if crf is not None and not (_int(crf) and 0 <= crf <= 63):
            errors.add(f"{path}.crf", "expected an integer CRF like 23")
            crf = None
        elif crf is not None and rung_rc != "crf":
            why = "two-pass encodes to a bitrate, not a quality" if rung_rc == "2pass" else "vbr encodes to a bitrate"
            errors.add(f"{path}.crf", f'only with rate_control = "crf" (this rung is "{rung_rc}": {why})')
            crf = None
        max_fps = r.get("max_fps")
        if max_fps is not None and not (isinstance(max_fps, int | float) and not isinstance(max_fps, bool) and max_fps > 0):
            errors.add(f"{path}.max_fps", "expected a frame rate like 30")
            max_fps = None
        rung_codec = r.get("codec", codec)
        if not isinstance(rung_codec, str) or not rung_codec.strip():
            errors.add(f"{path}.codec", "expected a codec name like h264")
            rung_codec = codec
        level = r.get("level")
        if level is not None and (isinstance(level, bool) or not isinstance(level, str | int | float)):
            errors.add(f"{path}.level", 'expected a level like "4.1"')
            level = None
        profile = r.get("profile")
        if profile is not None and (isinstance(profile, bool) or not isinstance(profile, str | int)):
            errors.add(f"{path}.profile", "expected a codec profile name like high")
            profile = None
        if height is None:
            continue
        rungs.append((i, VideoRungSpec(
                height=height,
                width=width,
                bitrate_kbps=bitrate,
                maxrate_kbps=maxrate,
                bufsize_kbps=bufsize,
                codec=rung_codec.strip().lower(),
                rate_control=own_rc,
                crf=crf,
                max_fps=float(max_fps) if max_fps is not None else None,
                codec_profile=str(profile).lower() if profile is not None else None,
                level=str(level) if level is not None else None,
            ), "codec" not in r))
    return rungs


def _rate(r: dict, key: str, default: int | None, path: str, errors: _Errors) -> int | None:
    if key not in r:
        return default
    try:
        return parse_bitrate_kbps(r[key])
    except ValueError as exc:
        errors.add(f"{path}.{key}", str(exc))
        return default


def _audio(raw, errors: _Errors) -> list[AudioRungSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add("audio", "expected a list of [[audio]] tables (or [] for no audio)")
        return []
    out = []
    for i, a in enumerate(raw):
        path = f"audio[{i}]"
        if not isinstance(a, dict):
            errors.add(path, "expected a table with codec, bitrate and channels")
            continue
        for key in a:
            if key not in AUDIO_FIELDS:
                errors.add(f"{path}.{key}", f"unknown key (expected one of: {', '.join(AUDIO_FIELDS)})")
        codec = a.get("codec", "aac")
        if not isinstance(codec, str) or not codec.strip():
            errors.add(f"{path}.codec", "expected a codec name like aac")
            codec = "aac"
        try:
            bitrate = parse_bitrate_kbps(a.get("bitrate", "128k"))
        except ValueError as exc:
            errors.add(f"{path}.bitrate", str(exc))
            bitrate = 128
        channels = a.get("channels", 2)
        if not _int(channels) or channels not in CHANNELS:
            errors.add(f"{path}.channels", "expected 1, 2, 6 (5.1) or 8 (7.1)")
            channels = 2
        sample_rate = a.get("sample_rate", 48000)
        if not _int(sample_rate) or sample_rate not in SAMPLE_RATES:
            errors.add(f"{path}.sample_rate", f"expected a sample rate in Hz, one of: {', '.join(map(str, SAMPLE_RATES))}")
            sample_rate = 48000
        out.append(AudioRungSpec(codec=codec.strip().lower(), bitrate_kbps=bitrate, channels=channels, sample_rate=sample_rate))
    return out


def _check_descending(rungs: list[tuple[int, VideoRungSpec, bool]], errors: _Errors) -> None:
    """Within each codec, rungs go from the highest to the lowest (height, then bitrate)."""
    last: dict[str, tuple[int, int, int]] = {}
    for i, rung, _ in rungs:
        previous = last.get(rung.codec)
        if previous and (rung.height > previous[0] or (rung.height == previous[0] and rung.bitrate_kbps >= previous[1])):
            errors.add(
                f"rungs[{i}]",
                f"rungs must descend within each codec (highest first): {rung.label} comes after rungs[{previous[2]}] "
                f"{previous[0]}p @ {format_kbps(previous[1])}",
            )
        last[rung.codec] = (rung.height, rung.bitrate_kbps, i)


def _check_duplicate_audio(audio: list[AudioRungSpec], errors: _Errors) -> None:
    seen: dict[tuple[str, int, int], int] = {}
    for i, a in enumerate(audio):
        key = (a.codec, a.bitrate_kbps, a.channels)
        if key in seen:
            errors.add(f"audio[{i}]", f"the same codec, bitrate and channels as audio[{seen[key]}] ({a.label})")
        seen.setdefault(key, i)


def _check_codecs(
    rungs: list[tuple[int, VideoRungSpec, bool]],
    audio: list[AudioRungSpec],
    preset: str,
    container: str,
    encoder_options,
    errors: _Errors,
) -> None:
    """The cross-field rules that need each encoder's own knowledge (codecs.py)."""
    from abrpipe import codecs

    reported: set[str] = set()
    checked_presets: set[str] = set()
    for i, rung, inherited in rungs:
        path = f"rungs[{i}]"
        codec_path = "codec" if inherited else f"{path}.codec"  # a wrong default is reported once, where it is set
        encoder = codecs.video(rung.codec)
        if encoder is None:
            if codec_path not in reported:
                errors.add(codec_path, codecs.unknown_codec(rung.codec, "video"))
                reported.add(codec_path)
            continue
        if container not in encoder.containers and codec_path not in reported:
            errors.add(codec_path, f'{rung.codec} needs container = "{encoder.containers[0]}" (it cannot be carried in "{container}")')
            reported.add(codec_path)
        if encoder.name not in checked_presets:
            checked_presets.add(encoder.name)
            problem = encoder.check_preset(preset)
            if problem:
                errors.add("preset", problem)
        for p in encoder.check_rung(rung):
            errors.add(f"{path}.{p.field}", p.message)
        for p in encoder.warnings_for(rung):
            errors.warn(f"{path}.{p.field}", p.message)
    for i, a in enumerate(audio):
        path = f"audio[{i}]"
        audio_encoder = codecs.audio(a.codec)
        if audio_encoder is None:
            errors.add(f"{path}.codec", codecs.unknown_codec(a.codec, "audio"))
            continue
        if container not in audio_encoder.containers:
            errors.add(f"{path}.codec", f'{a.codec} needs container = "{audio_encoder.containers[0]}" (it cannot be carried in "{container}")')
        for p in audio_encoder.check_rung(a):
            errors.add(f"{path}.{p.field}", p.message)
        for p in audio_encoder.warnings_for(a):
            errors.warn(f"{path}.{p.field}", p.message)
    for codec, _ in encoder_options:
        if codec not in codecs.registry():
            errors.add(f"encoder_options.{codec}", codecs.problem_with(codec) or "unknown codec")


def profile_name_from_path(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def to_schema(profile: Profile) -> dict[str, Any]:
    """The resolved profile in the file schema (extends applied, defaults filled in): written out as
    TOML or YAML it loads back to the same profile."""
    default_codec = profile.rungs[0].codec if profile.rungs else DEFAULTS["codec"]
    data: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "description": profile.description,
        "codec": default_codec,
        "preset": profile.preset,
        "rate_control": profile.rate_control,
        "crf": profile.crf,
        "gop": _number(profile.gop_s),
        "segment": _number(profile.segment_s),
        "max_fps": _number(profile.max_fps),
        "container": profile.container,
        "outputs": list(profile.outputs),
        "audio_tracks": profile.audio_tracks if isinstance(profile.audio_tracks, str) else list(profile.audio_tracks),
        "source_subtitles": profile.source_subtitles,
    }
    if profile.thumbnails:
        data["thumbnails"] = str(profile.thumbnails)
    if profile.hls_ts:
        data["hls_ts"] = True
    if profile.encoder_options:
        data["encoder_options"] = {codec: dict(opts) for codec, opts in profile.encoder_options}
    if profile.encryption:
        data["encryption"] = profile.encryption
    if profile.key_classes:
        data["key_classes"] = dict(profile.key_classes)
    rungs = []
    for r in profile.rungs:
        rung: dict[str, Any] = {"size": f"{r.width}x{r.height}"} if r.width else {"height": r.height}
        rung["bitrate"] = format_kbps(r.bitrate_kbps)
        rung["maxrate"] = format_kbps(r.maxrate_kbps)
        rung["bufsize"] = format_kbps(r.bufsize_kbps)
        if r.rate_control is not None and r.rate_control != profile.rate_control:
            rung["rate_control"] = r.rate_control
        for key, value in (("crf", r.crf), ("max_fps", _number(r.max_fps) if r.max_fps else None),
                           ("codec", r.codec if r.codec != default_codec else None),
                           ("profile", r.codec_profile), ("level", r.level)):
            if value is not None:
                rung[key] = value
        rungs.append(rung)
    data["rungs"] = rungs
    data["audio"] = [
        {"codec": a.codec, "bitrate": format_kbps(a.bitrate_kbps), "channels": a.channels, "sample_rate": a.sample_rate}
        for a in profile.audio
    ]
    return data


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def dump_toml(data: dict[str, Any]) -> str:
    """Write schema data (as made by to_schema) as TOML: scalars, then option tables, then rungs."""
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
    for key, value in data.items():
        if key not in tables and key not in arrays:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables.items():
        for sub, options in table.items():
            lines += ["", f"[{key}.{_toml_key(sub)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in options.items()]
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{key}]]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
