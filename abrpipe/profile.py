"""Encoding profiles: one schema (TOML or YAML), validated once at load with errors that name the
file and the field path, e.g. `profiles/x.toml: rungs[2].bitrate: expected a bitrate like 800k or 2.5M`.

A profile file is a table of settings, a list of video `rungs` and a list of `audio` rungs. It may
`extends = "NAME"` another profile: its keys override the parent's, `[[rung_overrides]]` edits single
parent rungs by index and `remove_rungs` drops some, so a team tweaks one rung without copying a file.
Codec-specific knowledge (profiles, levels, containers) lives in the encoder plug-ins (codecs.py).
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from abrpipe.errors import ProfileError
from abrpipe.units import format_kbps, parse_bitrate_kbps, parse_duration_s, parse_size

SCHEMA_VERSION = 1
RATE_CONTROLS = ("vbr", "crf", "2pass")
OUTPUTS = ("hls", "dash")


@dataclass(frozen=True)
class VideoRungSpec:
    height: int
    width: int | None  # None: from the source's aspect ratio
    bitrate_kbps: int
    maxrate_kbps: int
    bufsize_kbps: int
    codec: str
    crf: int | None = None
    max_fps: float | None = None
    codec_profile: str | None = None
    level: str | None = None

    @property
    def label(self) -> str:
        size = f"{self.width}x{self.height}" if self.width else f"{self.height}p"
        return f"{self.codec} {size} @ {format_kbps(self.bitrate_kbps)}"


@dataclass(frozen=True)
class AudioRungSpec:
    codec: str
    bitrate_kbps: int
    channels: int
    sample_rate: int = 48000


@dataclass(frozen=True)
class Profile:
    name: str
    origin: str  # where it came from: "builtin", "user dir", "file", or a plug-in distribution
    path: str | None
    description: str
    preset: str
    rate_control: str
    gop_s: float
    segment_s: float
    max_fps: float
    rungs: tuple[VideoRungSpec, ...]
    audio: tuple[AudioRungSpec, ...]
    audio_tracks: str | tuple[int | str, ...]  # "all", "first", or indices / languages
    outputs: tuple[str, ...]
    encoder_options: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = field(default=())

    @property
    def segment_gops(self) -> int:
        return round(self.segment_s / self.gop_s)

    def options_for(self, codec: str) -> dict[str, str]:
        return dict(dict(self.encoder_options).get(codec, ()))

    def to_dict(self) -> dict[str, Any]:
        """The resolved profile as data (for `profiles show`, job records and fingerprints)."""
        data = asdict(self)
        data["encoder_options"] = {codec: dict(opts) for codec, opts in self.encoder_options}
        data["audio_tracks"] = self.audio_tracks if isinstance(self.audio_tracks, str) else list(self.audio_tracks)
        return data


# ---------------------------------------------------------------------------------------------
# The schema: every key, its meaning (for `abrpipe profiles schema`) and its parser.

TOP_FIELDS: dict[str, str] = {
    "schema": "schema version of the file; must be 1",
    "description": "one line saying what the profile is for",
    "extends": "name (or path) of a profile whose settings this one inherits and overrides",
    "codec": "default video codec of the rungs: h264, hevc, vp9, av1, av1-aom, or a hardware/plug-in encoder",
    "preset": "encoder speed/quality preset (x264/x265: ultrafast..veryslow; svt-av1: 0-13; vp9: cpu-used 0-8)",
    "rate_control": "vbr (target bitrate + maxrate/bufsize), crf (capped CRF: crf + maxrate/bufsize) or 2pass",
    "gop": "keyframe interval in seconds (every rung, closed GOPs, aligned): default 2",
    "segment": "segment duration in seconds, a whole multiple of gop: default 6",
    "max_fps": "highest output frame rate; faster sources are halved (or divided) until under it: default 60",
    "maxrate_ratio": "maxrate = bitrate x this, for rungs that give no maxrate: default 1.1",
    "bufsize_ratio": "bufsize = bitrate x this, for rungs that give no bufsize: default 2.0",
    "crf": "default CRF of every rung with rate_control = crf",
    "outputs": 'manifests to write: ["hls", "dash"] (default both)',
    "audio_tracks": 'which source audio tracks to keep: "all" (default), "first", or a list of indices/languages',
    "encoder_options": "extra encoder options per codec, e.g. [encoder_options.h264] x264-params = \"aq-mode=3\"",
    "rungs": "the video rungs, highest first ([[rungs]] tables, see below)",
    "rung_overrides": "with extends: [[rung_overrides]] index = N plus the rung keys to change in the parent's rung N",
    "remove_rungs": "with extends: indices of the parent's rungs to drop",
    "audio": "the audio rungs ([[audio]] tables, see below); [] for a video-only ladder",
}
RUNG_FIELDS: dict[str, str] = {
    "size": "bounding box WxH, e.g. 1920x1080 (portrait sources use it rotated); or give height",
    "height": "rung height in pixels; the width follows the source's aspect ratio",
    "bitrate": "target (average) bitrate, e.g. 800k or 2.5M",
    "maxrate": "VBV peak rate (default bitrate x maxrate_ratio)",
    "bufsize": "VBV buffer size (default bitrate x bufsize_ratio)",
    "crf": "CRF for rate_control = crf (default: the profile's crf)",
    "max_fps": "frame-rate cap for this rung, e.g. 30",
    "codec": "video codec of this rung (multi-codec ladders)",
    "profile": "codec profile, e.g. high / main / main10",
    "level": "codec level, e.g. 4.1",
}
AUDIO_FIELDS: dict[str, str] = {
    "codec": "aac, he-aac, opus, ac3, eac3",
    "bitrate": "e.g. 128k",
    "channels": "1, 2 or 6 (surround is downmixed, mono upmixed to this)",
    "sample_rate": "Hz, default 48000",
}

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
    "outputs": ["hls", "dash"],
    "audio_tracks": "all",
    "encoder_options": {},
    "audio": [{"codec": "aac", "bitrate": "128k", "channels": 2}],
}


class _Errors:
    """Collects every problem of one file, so a user fixes them in one go."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{self.where}: {path}: {message}" if path else f"{self.where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            error = ProfileError(self.items[0] if len(self.items) == 1 else "\n".join(self.items))
            error.problems = list(self.items)  # type: ignore[attr-defined]
            raise error


def read_profile_file(path: str) -> dict[str, Any]:
    """Read a TOML or YAML profile file into raw data (no validation yet)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(raw.decode("utf-8")) or {}
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except Exception as exc:  # tomllib / yaml syntax errors
        detail = str(exc).splitlines()[0]
        raise ProfileError(f"{path}: not valid {'YAML' if path.endswith(('.yaml', '.yml')) else 'TOML'} ({detail})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a table of settings at the top level")
    return data


def merge_extends(parent: dict[str, Any], child: dict[str, Any], where: str) -> dict[str, Any]:
    """Child keys override the parent's; rung_overrides / remove_rungs edit the parent's rungs."""
    errors = _Errors(where)
    merged = copy.deepcopy(parent)
    merged.pop("rung_overrides", None)
    merged.pop("remove_rungs", None)
    for key, value in child.items():
        if key in ("extends", "rung_overrides", "remove_rungs"):
            continue
        if key == "encoder_options" and isinstance(value, dict):
            options = merged.setdefault("encoder_options", {})
            for codec, opts in value.items():
                options[codec] = {**options.get(codec, {}), **(opts if isinstance(opts, dict) else {})}
        else:
            merged[key] = copy.deepcopy(value)
    rungs = list(merged.get("rungs", []))
    for n, override in enumerate(child.get("rung_overrides", []) or []):
        path = f"rung_overrides[{n}]"
        if not isinstance(override, dict) or not isinstance(override.get("index"), int):
            errors.add(path, "expected a table with an integer index and the rung keys to change")
            continue
        index = override["index"]
        if not -len(rungs) <= index < len(rungs):
            errors.add(f"{path}.index", f"no rung {index} in the parent (it has {len(rungs)})")
            continue
        changes = {k: v for k, v in override.items() if k != "index"}
        if "size" in changes:
            rungs[index] = {k: v for k, v in rungs[index].items() if k != "height"}
        if "height" in changes:
            rungs[index] = {k: v for k, v in rungs[index].items() if k != "size"}
        rungs[index] = {**rungs[index], **changes}
    remove = child.get("remove_rungs", []) or []
    if not isinstance(remove, list) or not all(isinstance(i, int) for i in remove):
        errors.add("remove_rungs", "expected a list of rung indices")
        remove = []
    for index in remove:
        if not -len(rungs) <= index < len(rungs):
            errors.add("remove_rungs", f"no rung {index} in the parent (it has {len(rungs)})")
    keep = {i % len(rungs) for i in remove if -len(rungs) <= i < len(rungs)} if rungs else set()
    merged["rungs"] = [r for i, r in enumerate(rungs) if i not in keep]
    errors.raise_if_any()
    return merged


def build_profile(
    data: dict[str, Any],
    *,
    name: str,
    origin: str,
    path: str | None,
    where: str,
    known_codec: Callable[[str], str | None] | None = None,
) -> Profile:
    """Validate merged profile data and build the frozen Profile. `known_codec(name)` returns None
    when the codec is known, else a message; it also runs each encoder's own rung checks."""
    errors = _Errors(where)
    for key in data:
        if key not in TOP_FIELDS:
            errors.add(key, f"unknown key (expected one of: {', '.join(sorted(TOP_FIELDS))})")
    if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        errors.add("schema", f"unsupported schema version {data.get('schema')!r} (this abrpipe reads {SCHEMA_VERSION})")
    d = {**DEFAULTS, **{k: v for k, v in data.items() if k in TOP_FIELDS}}

    def get(key: str, parse: Callable[[Any], Any], expected: str) -> Any:
        try:
            return parse(d[key])
        except (ValueError, TypeError, KeyError):
            errors.add(key, expected)
            return parse(DEFAULTS[key]) if key in DEFAULTS else None

    description = get("description", _str, "expected a string")
    default_codec = get("codec", _name, "expected a codec name like h264")
    preset = get("preset", lambda v: str(v) if isinstance(v, str | int) and not isinstance(v, bool) else _fail(), "expected a preset name like veryfast (or a number)")
    rate_control = get("rate_control", lambda v: v if v in RATE_CONTROLS else _fail(), f"expected one of {', '.join(RATE_CONTROLS)}")
    gop_s = get("gop", parse_duration_s, "expected a positive duration in seconds like 2")
    segment_s = get("segment", parse_duration_s, "expected a positive duration in seconds like 6")
    max_fps = get("max_fps", _positive_number, "expected a frame rate like 60")
    maxrate_ratio = get("maxrate_ratio", _ratio, "expected a number >= 1, like 1.1")
    bufsize_ratio = get("bufsize_ratio", _positive_number, "expected a positive number like 2.0")
    default_crf = get("crf", _crf, "expected an integer CRF from 0 to 63")
    outputs = get("outputs", _outputs, 'expected a non-empty list from ["hls", "dash"]')
    audio_tracks = get("audio_tracks", _audio_tracks, 'expected "all", "first", or a list of track indices / languages')
    encoder_options = get("encoder_options", _encoder_options, "expected tables of option = value per codec")

    if gop_s and segment_s:
        ratio = segment_s / gop_s
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            errors.add("segment", f"must be a whole multiple of gop ({segment_s:g} s is not a multiple of {gop_s:g} s)")

    rungs = _rungs(d.get("rungs"), errors, default_codec, rate_control, default_crf, maxrate_ratio, bufsize_ratio)
    audio = _audio(d.get("audio"), errors)
    if not rungs and not audio:
        errors.add("rungs", "a profile needs at least one video rung or one audio rung")
    if known_codec:
        for i, rung in enumerate(rungs):
            problem = known_codec(rung.codec)
            if problem:
                errors.add(f"rungs[{i}].codec", problem)
        for i, a in enumerate(audio):
            problem = known_codec(a.codec)
            if problem:
                errors.add(f"audio[{i}].codec", problem)
    _check_descending(rungs, errors)
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
    )


def _fail() -> Any:
    raise ValueError


def _str(v: Any) -> str:
    return v if isinstance(v, str) else _fail()


def _name(v: Any) -> str:
    return v.strip().lower() if isinstance(v, str) and v.strip() else _fail()


def _positive_number(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else _fail()


def _ratio(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v >= 1 else _fail()


def _crf(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 63 else _fail()


def _outputs(v: Any) -> tuple[str, ...]:
    if isinstance(v, list) and v and all(o in OUTPUTS for o in v):
        return tuple(dict.fromkeys(v))
    return _fail()


def _audio_tracks(v: Any) -> str | tuple[int | str, ...]:
    if v in ("all", "first"):
        return v
    if isinstance(v, list) and v and all(isinstance(x, str) or (isinstance(x, int) and x >= 0) for x in v):
        return tuple(v)
    return _fail()


def _encoder_options(v: Any) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    if not isinstance(v, dict):
        return _fail()
    out = []
    for codec, opts in v.items():
        if not isinstance(opts, dict) or not all(isinstance(x, str | int | float) for x in opts.values()):
            return _fail()
        out.append((str(codec), tuple((str(k).lstrip("-"), str(x)) for k, x in opts.items())))
    return tuple(out)


def _rungs(raw, errors: _Errors, codec, rate_control, default_crf, maxrate_ratio, bufsize_ratio) -> list[VideoRungSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add("rungs", "expected a list of [[rungs]] tables")
        return []
    rungs = []
    for i, r in enumerate(raw):
        path = f"rungs[{i}]"
        if not isinstance(r, dict):
            errors.add(path, "expected a table with size/height and bitrate")
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
            if isinstance(r["height"], int) and not isinstance(r["height"], bool) and r["height"] >= 16:
                height = r["height"]
            else:
                errors.add(f"{path}.height", "expected a height in pixels like 720")
        else:
            errors.add(path, "needs size (like 1280x720) or height (like 720)")
        if width is not None and width % 2 or height is not None and height % 2:
            errors.add(f"{path}.size" if "size" in r else f"{path}.height", "dimensions must be even (4:2:0 video)")

        def rate(key: str, default: int | None) -> int | None:
            if key not in r:
                return default
            try:
                return parse_bitrate_kbps(r[key])
            except ValueError as exc:
                errors.add(f"{path}.{key}", str(exc))
                return default

        bitrate = rate("bitrate", None)
        if bitrate is None and "bitrate" not in r:
            errors.add(f"{path}.bitrate", "missing: expected a bitrate like 800k or 2.5M")
        bitrate = bitrate or 1
        maxrate = rate("maxrate", round(bitrate * maxrate_ratio))
        bufsize = rate("bufsize", round(bitrate * bufsize_ratio))
        if maxrate is not None and maxrate < bitrate:
            errors.add(f"{path}.maxrate", f"must be >= bitrate ({format_kbps(maxrate)} < {format_kbps(bitrate)})")
        crf = r.get("crf", default_crf if rate_control == "crf" else None)
        if crf is not None and not (isinstance(crf, int) and not isinstance(crf, bool) and 0 <= crf <= 63):
            errors.add(f"{path}.crf", "expected an integer CRF from 0 to 63")
        max_fps = r.get("max_fps")
        if max_fps is not None and not (isinstance(max_fps, int | float) and not isinstance(max_fps, bool) and max_fps > 0):
            errors.add(f"{path}.max_fps", "expected a frame rate like 30")
        rung_codec = r.get("codec", codec)
        if not isinstance(rung_codec, str) or not rung_codec:
            errors.add(f"{path}.codec", "expected a codec name like h264")
            rung_codec = codec
        level = r.get("level")
        if level is not None and not isinstance(level, str | int | float):
            errors.add(f"{path}.level", "expected a level like 4.1")
        profile = r.get("profile")
        if profile is not None and not isinstance(profile, str):
            errors.add(f"{path}.profile", "expected a codec profile name like high")
        if height is None:
            continue
        rungs.append(
            VideoRungSpec(
                height=height,
                width=width,
                bitrate_kbps=bitrate,
                maxrate_kbps=maxrate or bitrate,
                bufsize_kbps=bufsize or bitrate * 2,
                codec=rung_codec.lower(),
                crf=crf if isinstance(crf, int) else None,
                max_fps=float(max_fps) if isinstance(max_fps, int | float) else None,
                codec_profile=profile.lower() if isinstance(profile, str) else None,
                level=str(level) if level is not None else None,
            )
        )
    return rungs


def _audio(raw, errors: _Errors) -> list[AudioRungSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add("audio", "expected a list of [[audio]] tables")
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
        if not isinstance(codec, str):
            errors.add(f"{path}.codec", "expected a codec name like aac")
            codec = "aac"
        try:
            bitrate = parse_bitrate_kbps(a.get("bitrate", "128k"))
        except ValueError as exc:
            errors.add(f"{path}.bitrate", str(exc))
            bitrate = 128
        channels = a.get("channels", 2)
        if channels not in (1, 2, 6, 8):
            errors.add(f"{path}.channels", "expected 1, 2, 6 (5.1) or 8 (7.1)")
            channels = 2
        sample_rate = a.get("sample_rate", 48000)
        if sample_rate not in (16000, 22050, 24000, 32000, 44100, 48000, 96000):
            errors.add(f"{path}.sample_rate", "expected a sample rate like 48000")
            sample_rate = 48000
        out.append(AudioRungSpec(codec=codec.lower(), bitrate_kbps=bitrate, channels=channels, sample_rate=sample_rate))
    return out


def _check_descending(rungs: list[VideoRungSpec], errors: _Errors) -> None:
    """Within each codec, rungs go from the highest to the lowest (height, then bitrate)."""
    last: dict[str, tuple[int, int, int]] = {}
    for i, rung in enumerate(rungs):
        key = (rung.height, rung.bitrate_kbps, i)
        previous = last.get(rung.codec)
        if previous and (rung.height > previous[0] or (rung.height == previous[0] and rung.bitrate_kbps >= previous[1])):
            errors.add(
                f"rungs[{i}]",
                f"rungs must descend (highest first): {rung.label} comes after rungs[{previous[2]}] "
                f"{previous[0]}p @ {format_kbps(previous[1])}",
            )
        last[rung.codec] = key


def profile_name_from_path(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
