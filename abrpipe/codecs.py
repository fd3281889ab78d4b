"""Encoder plug-ins: what each codec needs to encode one rung of an aligned ladder.

An encoder knows its FFmpeg encoder name, how to express GOP alignment, rate control, preset,
profile and level for that encoder, which containers can carry its output, which rung settings it
accepts (checked once, when a profile is loaded), and how to name what it produced as an RFC 6381
CODECS string (by default read back from the output's own boxes by mp4.py, so it is exact whatever
the encoder chose).

Third-party encoders are registered through the `abrpipe.encoders` entry-point group: the entry
point is a callable returning a list of VideoEncoder/AudioEncoder instances (subclass them to
change how options are expressed). Built-ins are registered through that same group.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from abrpipe import plugins, runner, tools
from abrpipe.errors import DependencyError, EncodeError, OutputError

if TYPE_CHECKING:
    from abrpipe.model import AudioRungSpec, LadderPlan, PlannedAudio, PlannedRung, VideoRungSpec
    from abrpipe.mp4 import TrackInfo

Options = dict[str, str]
ENTRY_POINT_GROUP = "abrpipe.encoders"
RATE_CONTROLS = ("vbr", "crf", "2pass")

# The x264/x265 preset names; other encoders map them onto their own speed scales.
PRESET_NAMES = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")

# Largest frame (in 16x16 macroblocks) per H.264 level (ITU-T H.264 Table A-1, MaxFS).
H264_MAX_FRAME_MBS = {
    "1": 99, "1b": 99, "1.1": 396, "1.2": 396, "1.3": 396, "2": 396, "2.1": 792, "2.2": 1620,
    "3": 1620, "3.1": 3600, "3.2": 5120, "4": 8192, "4.1": 8192, "4.2": 8704,
    "5": 22080, "5.1": 36864, "5.2": 36864, "6": 139264, "6.1": 139264, "6.2": 139264,
}
# Largest picture (in luma samples) per HEVC level (ITU-T H.265 Table A.8, MaxLumaPs).
HEVC_MAX_LUMA_PS = {
    "1": 36864, "2": 122880, "2.1": 245760, "3": 552960, "3.1": 983040, "4": 2228224, "4.1": 2228224,
    "5": 8912896, "5.1": 8912896, "5.2": 8912896, "6": 35651584, "6.1": 35651584, "6.2": 35651584,
}


def normalize_level(level: str) -> str:
    """'4.0' -> '4', '41' -> '4.1', '3.1' -> '3.1' (x264 and x265 accept both spellings)."""
    text = str(level).strip().lower()
    if text.isdigit() and len(text) == 2:
        text = f"{text[0]}.{text[1]}"
    if text.endswith(".0"):
        text = text[:-2]
    return text


def rung_size(rung: VideoRungSpec) -> tuple[int, int] | None:
    """The rung's largest possible frame, when the profile gives it (WxH); a bare height is sized later."""
    return (rung.width, rung.height) if rung.width else None


@dataclass(frozen=True)
class Problem:
    """A rung setting an encoder refuses: `field` is the rung key (e.g. 'level'), `message` says why."""

    field: str
    message: str


# ---------------------------------------------------------------------------------------------
# Video


@dataclass(frozen=True)
class VideoEncoder:
    name: str  # the profile's codec name
    ffmpeg_encoder: str
    family: str  # avc, hevc, vp9, av1: one DASH AdaptationSet per family
    description: str
    profiles: tuple[str, ...] = ()  # accepted `profile` values; () = the encoder takes none
    levels: tuple[str, ...] = ()  # accepted `level` values; () = the encoder takes none
    crf_range: tuple[int, int] = (0, 51)
    rate_controls: tuple[str, ...] = RATE_CONTROLS
    containers: tuple[str, ...] = ("fmp4",)  # segment formats that can carry this codec
    sample_entries: tuple[str, ...] = ()  # CODECS prefixes its output must have (hvc1, not hev1)
    hardware: bool = False

    # --- load-time checks ------------------------------------------------------------------

    def check_preset(self, preset: str) -> str | None:
        if preset in PRESET_NAMES or preset.isdigit():
            return None
        return f"{self.name} does not know preset {preset!r} (expected one of: {', '.join(PRESET_NAMES)})"

    def check_rung(self, rung: VideoRungSpec) -> list[Problem]:
        """Everything about one rung this encoder cannot do, found when the profile is loaded."""
        problems: list[Problem] = []
        if rung.rate_control not in self.rate_controls:
            hint = "two-pass through FFmpeg" if rung.rate_control == "2pass" else f"rate_control = {rung.rate_control!r}"
            problems.append(Problem("rate_control", f"{self.name} ({self.ffmpeg_encoder}) cannot do {hint} "
                                                    f"(expected one of: {', '.join(self.rate_controls)})"))
        if rung.crf is not None and not self.crf_range[0] <= rung.crf <= self.crf_range[1]:
            problems.append(Problem("crf", f"{self.name} takes a CRF from {self.crf_range[0]} to {self.crf_range[1]}, not {rung.crf}"))
        if rung.codec_profile is not None:
            if not self.profiles:
                problems.append(Problem("profile", f"{self.name} takes no codec profile"))
            elif rung.codec_profile not in self.profiles:
                problems.append(Problem("profile", f"{self.name} has no profile {rung.codec_profile!r} "
                                                   f"(expected one of: {', '.join(self.profiles)})"))
        if rung.level is not None:
            if not self.levels:
                problems.append(Problem("level", f"{self.name} takes no level"))
            elif normalize_level(rung.level) not in self.levels:
                problems.append(Problem("level", f"{self.name} has no level {rung.level!r} (expected one of: {', '.join(self.levels)})"))
            else:
                too_big = self.level_too_small(normalize_level(rung.level), rung)
                if too_big:
                    problems.append(Problem("level", too_big))
        return problems

    def level_too_small(self, level: str, rung: VideoRungSpec) -> str | None:
        return None

    def warnings_for(self, rung: VideoRungSpec) -> list[Problem]:
        """Allowed but against a recommendation (e.g. Apple's HLS authoring rules)."""
        return []

    # --- encode time -----------------------------------------------------------------------

    def availability_problem(self) -> str | None:
        """None when this FFmpeg build (and machine) can run the encoder, else why not."""
        if self.ffmpeg_encoder not in tools.ffmpeg_encoders():
            return f"this FFmpeg build ({tools.ffmpeg_path()}) has no {self.ffmpeg_encoder} encoder (needed by codec {self.name!r})"
        return None

    def preset_options(self, preset: str) -> Options:
        return {"preset": preset}

    def keyframe_options(self, rung: PlannedRung) -> Options:
        """Fixed, closed, aligned GOPs: a keyframe exactly every gop_frames, none elsewhere."""
        return {
            # Force a keyframe on every GOP boundary by frame number: exact on the CFR grid the filter
            # graph makes, so every rung (and every codec) has keyframes at the same timestamps.
            "force_key_frames": f"expr:eq(mod(n,{rung.gop_frames}),0)",
            "g": str(rung.gop_frames),
            # No keyframe may start earlier than the grid: every GOP is exactly gop_frames long.
            "keyint_min": str(rung.gop_frames),
        }

    def rate_options(self, rung: PlannedRung) -> Options:
        """vbr: target + maxrate/bufsize; crf: capped CRF (crf + maxrate/bufsize); 2pass: as vbr."""
        opts: Options = {}
        if rung.crf is not None:
            opts["crf"] = str(rung.crf)
        else:
            opts["b:v"] = f"{rung.bitrate_kbps}k"
        # The VBV cap keeps each segment's peak near the declared BANDWIDTH.
        opts["maxrate"] = f"{rung.maxrate_kbps}k"
        opts["bufsize"] = f"{rung.bufsize_kbps}k"
        return opts

    def profile_options(self, rung: PlannedRung) -> Options:
        opts: Options = {}
        if rung.codec_profile:
            opts["profile:v"] = rung.codec_profile
        if rung.level:
            opts["level:v"] = normalize_level(rung.level)
        return opts

    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        """Every encoder option of one rung (FFmpeg output options, without the leading dash)."""
        opts: Options = {"c:v": self.ffmpeg_encoder}
        opts.update(self.preset_options(plan.preset))
        opts.update(self.profile_options(rung))
        opts.update(self.rate_options(rung))
        opts.update(self.keyframe_options(rung))
        return opts

    def two_pass_options(self, options: Options, rung: PlannedRung, pass_no: int, stats_prefix: str) -> Options:
        """`options` for pass 1 (analysis) or pass 2 of a two-pass rung. FFmpeg's generic
        -pass/-passlogfile serve x264, libvpx and libaom; files start with `stats_prefix`."""
        return {**options, "pass": str(pass_no), "passlogfile": stats_prefix}

    def filters(self, rung: PlannedRung) -> list[tuple[str, dict[str, str]]]:
        """Filters after the rung's scale (e.g. an upload to the GPU): (name, arguments)."""
        return []

    def input_options(self) -> Options:
        """FFmpeg options placed before the input (e.g. a hardware device to upload to)."""
        return {}

    # --- after the encode ------------------------------------------------------------------

    def codec_string(self, track: TrackInfo) -> str:
        """RFC 6381 CODECS of what was produced, from the init segment's configuration box.

        An output whose sample entry is not one this encoder promises (hev1 instead of hvc1: Apple
        devices refuse it) is an error before anything is published."""
        if self.sample_entries and track.sample_entry not in self.sample_entries:
            raise OutputError(f"codec {self.name!r} ({self.ffmpeg_encoder}) wrote a {track.sample_entry!r} sample entry, "
                              f"not {' or '.join(map(repr, self.sample_entries))}")
        return track.codec


def _named_preset(encoder: VideoEncoder, preset: str) -> str | None:
    if preset in PRESET_NAMES:
        return None
    return f"{encoder.name} presets are names, not {preset!r} (expected one of: {', '.join(PRESET_NAMES)})"


class X264(VideoEncoder):
    def check_preset(self, preset: str) -> str | None:
        return _named_preset(self, preset)

    def level_too_small(self, level: str, rung: VideoRungSpec) -> str | None:
        size = rung_size(rung)
        if size:
            mbs = -(-size[0] // 16) * -(-size[1] // 16)
            if mbs > H264_MAX_FRAME_MBS[level]:
                return f"H.264 level {level} allows frames up to {H264_MAX_FRAME_MBS[level]} macroblocks; {size[0]}x{size[1]} has {mbs}"
        return None

    def warnings_for(self, rung: VideoRungSpec) -> list[Problem]:
        if rung.level and float(normalize_level(rung.level).rstrip("b")) > 5.2:
            return [Problem("level", "Apple devices play H.264 up to High profile level 5.2 (HLS authoring 1.3)")]
        return []

    def profile_options(self, rung: PlannedRung) -> Options:
        # Apple: High profile for HD; Main keeps the small rungs playable on old devices.
        opts: Options = {"profile:v": rung.codec_profile or ("high" if rung.height >= 720 else "main")}
        if rung.level:
            opts["level:v"] = normalize_level(rung.level)
        return opts

    def keyframe_options(self, rung: PlannedRung) -> Options:
        opts = super().keyframe_options(rung)
        # No scene-cut keyframes: they would break the shared keyframe grid.
        opts["sc_threshold"] = "0"
        # Closed GOPs: a segment decodes without the previous one (EXT-X-INDEPENDENT-SEGMENTS).
        opts["flags"] = "+cgop"
        return opts

    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts = super().output_options(rung, plan)
        if rung.fps_divisor > 1:
            # A rung at a fraction of the frame rate drops frames and the CEA-608 bytes they carry:
            # what would remain of the captions is garbled, so this rung carries none (a53cc is on
            # by default and passes the source's captions through).
            opts["a53cc"] = "0"
        return opts


class X265(VideoEncoder):
    def check_preset(self, preset: str) -> str | None:
        return _named_preset(self, preset)

    def level_too_small(self, level: str, rung: VideoRungSpec) -> str | None:
        size = rung_size(rung)
        if size and size[0] * size[1] > HEVC_MAX_LUMA_PS[level]:
            return f"HEVC level {level} allows pictures up to {HEVC_MAX_LUMA_PS[level]} luma samples; {size[0]}x{size[1]} has {size[0] * size[1]}"
        return None

    def warnings_for(self, rung: VideoRungSpec) -> list[Problem]:
        if rung.level and float(normalize_level(rung.level)) > 5.1:
            return [Problem("level", "Apple devices play HEVC up to Main10 level 5.1 (HLS authoring 1.6)")]
        return []

    def profile_options(self, rung: PlannedRung) -> Options:
        return {"profile:v": rung.codec_profile or "main"}

    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts = super().output_options(rung, plan)
        # libx265 ignores FFmpeg's GOP flags except -g: the same rules go in its own parameters.
        params = [
            f"keyint={rung.gop_frames}",
            f"min-keyint={rung.gop_frames}",
            "scenecut=0",  # keep keyframes on the shared grid
            "open-gop=0",  # closed GOPs: independent segments
            "log-level=error",
        ]
        if rung.level:
            params.append(f"level-idc={normalize_level(rung.level)}")
        opts["x265-params"] = ":".join(params)
        # Apple devices require the hvc1 sample entry (parameter sets in the init, not in-band).
        opts["tag:v"] = "hvc1"
        return opts

    def two_pass_options(self, options: Options, rung: PlannedRung, pass_no: int, stats_prefix: str) -> Options:
        # libx265 ignores -pass/-passlogfile: x265 takes the pass and its statistics file in its
        # own parameters (it also writes STATS.cutree beside it).
        params = f"{options.get('x265-params', '')}:pass={pass_no}:stats={stats_prefix}-x265.log".lstrip(":")
        return {**options, "x265-params": params}


class LibvpxVp9(VideoEncoder):
    # preset -> (deadline, cpu-used): the realtime deadline for the fastest presets (several
    # times faster, no alt-ref frames), good quality otherwise.
    SPEEDS = {"ultrafast": ("realtime", 8), "superfast": ("realtime", 7), "veryfast": ("good", 5), "faster": ("good", 4),
              "fast": ("good", 3), "medium": ("good", 2), "slow": ("good", 1), "slower": ("good", 0),
              "veryslow": ("good", 0), "placebo": ("good", 0)}

    def check_preset(self, preset: str) -> str | None:
        if preset in self.SPEEDS or (preset.isdigit() and int(preset) <= 8):
            return None
        return f"{self.name} presets are cpu-used 0..8 or one of: {', '.join(PRESET_NAMES)} (not {preset!r})"

    def preset_options(self, preset: str) -> Options:
        deadline, speed = ("good", int(preset)) if preset.isdigit() else self.SPEEDS.get(preset, ("good", 4))
        return {
            "deadline": deadline,
            "cpu-used": str(speed),  # libvpx's speed/quality trade-off (0 best .. 8 fastest)
            "row-mt": "1",  # row multithreading: use every core
        }

    def profile_options(self, rung: PlannedRung) -> Options:
        # Profile 0 (8-bit 4:2:0) is what the filter graph delivers; libvpx picks it from the input.
        return {}

    def two_pass_options(self, options: Options, rung: PlannedRung, pass_no: int, stats_prefix: str) -> Options:
        # The realtime deadline writes no first-pass statistics: two-pass needs the good deadline.
        return {**super().two_pass_options(options, rung, pass_no, stats_prefix), "deadline": "good"}

    def rate_options(self, rung: PlannedRung) -> Options:
        opts = super().rate_options(rung)
        if rung.crf is not None:
            # Constrained quality: libvpx needs a bitrate ceiling beside the crf.
            opts["b:v"] = f"{rung.maxrate_kbps}k"
        return opts


class SvtAv1(VideoEncoder):
    SPEEDS = {"ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8, "medium": 6, "slow": 5,
              "slower": 4, "veryslow": 2, "placebo": 0}

    def check_preset(self, preset: str) -> str | None:
        if preset in self.SPEEDS or (preset.isdigit() and int(preset) <= 13):
            return None
        return f"{self.name} presets are 0..13 or one of: {', '.join(PRESET_NAMES)} (not {preset!r})"

    def preset_options(self, preset: str) -> Options:
        return {"preset": preset if preset.isdigit() else str(self.SPEEDS.get(preset, 10))}

    def profile_options(self, rung: PlannedRung) -> Options:
        return {}  # Main profile is the only one for 8-bit 4:2:0

    def rate_options(self, rung: PlannedRung) -> Options:
        if rung.crf is not None:
            return {"crf": str(rung.crf)}
        # SVT-AV1 1.x VBR takes a target only; its maximum bitrate applies to capped CRF (mbr).
        return {"b:v": f"{rung.bitrate_kbps}k"}

    def keyframe_options(self, rung: PlannedRung) -> Options:
        opts = super().keyframe_options(rung)
        opts.pop("keyint_min")  # not an SVT-AV1 option: the intra period is fixed by -g
        return opts

    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts = super().output_options(rung, plan)
        # irefresh-type=2: keyframes are closed (key frames, not forward intra refresh);
        # scd=0: no scene-change keyframes off the shared grid.
        params = ["irefresh-type=2", "scd=0"]
        if rung.crf is not None:
            params.append(f"mbr={rung.maxrate_kbps}")  # capped CRF: the crf's bitrate ceiling, in kb/s
        opts["svtav1-params"] = ":".join(params)
        return opts


class LibaomAv1(VideoEncoder):
    # preset -> (usage, cpu-used): realtime mode for the fastest presets (FFmpeg 5.1 accepts
    # cpu-used 0..8), good quality otherwise.
    SPEEDS = {"ultrafast": ("realtime", 8), "superfast": ("realtime", 7), "veryfast": ("good", 6),
              "faster": ("good", 5), "fast": ("good", 4), "medium": ("good", 3), "slow": ("good", 2),
              "slower": ("good", 1), "veryslow": ("good", 0), "placebo": ("good", 0)}

    def check_preset(self, preset: str) -> str | None:
        if preset in self.SPEEDS or (preset.isdigit() and int(preset) <= 8):
            return None
        return f"{self.name} presets are cpu-used 0..8 or one of: {', '.join(PRESET_NAMES)} (not {preset!r})"

    def preset_options(self, preset: str) -> Options:
        usage, speed = ("good", int(preset)) if preset.isdigit() else self.SPEEDS.get(preset, ("good", 4))
        return {"usage": usage, "cpu-used": str(speed), "row-mt": "1"}

    def profile_options(self, rung: PlannedRung) -> Options:
        return {}  # Main profile is the only one for 8-bit 4:2:0

    def two_pass_options(self, options: Options, rung: PlannedRung, pass_no: int, stats_prefix: str) -> Options:
        # Two-pass is a good-quality mode of libaom; realtime usage is one-pass.
        return {**super().two_pass_options(options, rung, pass_no, stats_prefix), "usage": "good"}

    def keyframe_options(self, rung: PlannedRung) -> Options:
        # libaom turns a forced keyframe into two (the frame after it is also coded as a key
        # frame), so no -force_key_frames: kf-min-dist = kf-max-dist fixes the interval exactly.
        return {"g": str(rung.gop_frames), "keyint_min": str(rung.gop_frames)}

    def rate_options(self, rung: PlannedRung) -> Options:
        opts = super().rate_options(rung)
        if rung.crf is not None:
            opts["b:v"] = f"{rung.maxrate_kbps}k"  # constrained quality: crf under a bitrate ceiling
        return opts


class Hardware(VideoEncoder):
    """NVENC / QSV / VAAPI / VideoToolbox: selected by profile (codec = "h264-nvenc" ...).

    Whether FFmpeg has the encoder is not enough (Debian's build lists NVENC without any GPU), so
    availability is a one-frame trial encode, run once before any work starts.
    """

    NVENC_PRESETS = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3", "fast": "p4",
                     "medium": "p4", "slow": "p5", "slower": "p6", "veryslow": "p7", "placebo": "p7"}
    VAAPI_DEVICE = "/dev/dri/renderD128"

    @property
    def api(self) -> str:
        return self.ffmpeg_encoder.rsplit("_", 1)[-1]

    def check_preset(self, preset: str) -> str | None:
        return _named_preset(self, preset)

    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts = super().output_options(rung, plan)
        if self.family == "hevc":
            opts["tag:v"] = "hvc1"  # Apple devices require the hvc1 sample entry
        return opts

    def preset_options(self, preset: str) -> Options:
        if self.api == "nvenc":
            return {"preset": self.NVENC_PRESETS.get(preset, "p4")}
        if self.api == "qsv":
            return {"preset": preset if preset in PRESET_NAMES[2:-1] else "veryfast"}
        return {}  # VAAPI and VideoToolbox have no presets

    def rate_options(self, rung: PlannedRung) -> Options:
        opts: Options = {"b:v": f"{rung.bitrate_kbps}k", "maxrate": f"{rung.maxrate_kbps}k", "bufsize": f"{rung.bufsize_kbps}k"}
        if rung.crf is not None:  # capped constant quality, in each API's own words
            if self.api == "nvenc":
                opts.update({"rc": "vbr", "cq": str(rung.crf), "b:v": "0"})
            elif self.api == "qsv":
                opts.update({"global_quality": str(rung.crf), "look_ahead": "0"})
            elif self.api == "vaapi":
                opts.update({"rc_mode": "QVBR", "global_quality": str(rung.crf)})
        elif self.api == "nvenc":
            opts["rc"] = "vbr"
        return opts

    def keyframe_options(self, rung: PlannedRung) -> Options:
        opts = super().keyframe_options(rung)
        opts.pop("keyint_min")
        if self.api == "nvenc":
            opts["no-scenecut"] = "1"  # keep keyframes on the grid
            opts["forced-idr"] = "1"  # forced keyframes are IDR: segments start decodable
            opts["strict_gop"] = "1"  # never stretch a GOP past gop_frames
        elif self.api == "qsv":
            opts["idr_interval"] = "0"  # every I-frame of the grid is an IDR
            opts["forced_idr"] = "1"
        elif self.api == "vaapi":
            opts["idr_interval"] = "0"  # every keyframe is an IDR (closed GOP)
        return opts

    def filters(self, rung: PlannedRung) -> list[tuple[str, dict[str, str]]]:
        if self.api == "vaapi":
            # VAAPI encoders take GPU frames: convert to NV12 and upload once per rung.
            return [("format", {"pix_fmts": "nv12"}), ("hwupload", {})]
        return []

    def input_options(self) -> Options:
        if self.api == "vaapi":
            # The render node the frames are uploaded to (hwupload uses the filter device).
            return {"init_hw_device": f"vaapi=va:{self.VAAPI_DEVICE}", "filter_hw_device": "va"}
        return {}

    def availability_problem(self) -> str | None:
        problem = super().availability_problem()
        if problem:
            return problem
        device = tuple(arg for key, value in self.input_options().items() for arg in (f"-{key}", value))
        trial_filters = "format=nv12,hwupload" if self.api == "vaapi" else "format=yuv420p"
        return _hardware_trial(self.ffmpeg_encoder, device, trial_filters)


@functools.cache
def _hardware_trial(encoder: str, device_args: tuple[str, ...], filters: str) -> str | None:
    """Encode one small frame with a hardware encoder: the build may list it without the device."""
    argv = [tools.ffmpeg_path(), "-hide_banner", "-nostdin", "-v", "error", *device_args,
            "-f", "lavfi", "-i", "color=black:size=256x144:rate=30", "-frames:v", "1",
            "-vf", filters, "-c:v", encoder, "-f", "null", "-"]
    try:
        runner.capture(argv, timeout_s=60)
    except EncodeError as exc:
        detail = exc.stderr_tail.strip().splitlines()[-1] if exc.stderr_tail.strip() else exc.message
        return f"{encoder} is in this FFmpeg build but cannot run on this machine ({detail})"
    return None


# ---------------------------------------------------------------------------------------------
# Audio


@dataclass(frozen=True)
class AudioEncoder:
    name: str
    ffmpeg_encoder: str
    description: str
    extra: tuple[tuple[str, str], ...] = ()  # fixed options, e.g. (("profile:a", "aac_he"),)
    max_channels: int = 8
    channels: tuple[int, ...] = ()  # exact channel counts accepted; () = 1..max_channels
    sample_rates: tuple[int, ...] = (16000, 22050, 24000, 32000, 44100, 48000, 96000)
    bitrate_range_kbps: tuple[int, int] = (8, 1024)  # whole rendition
    containers: tuple[str, ...] = ("fmp4",)
    recommended_max_kbps: int | None = None  # above it: a warning (e.g. HE-AAC, Apple 2.4)
    recommendation: str = ""

    def check_rung(self, audio: AudioRungSpec) -> list[Problem]:
        problems: list[Problem] = []
        if audio.channels > self.max_channels or (self.channels and audio.channels not in self.channels):
            allowed = self.channels or tuple(c for c in (1, 2, 6, 8) if c <= self.max_channels)
            problems.append(Problem("channels", f"{self.name} carries {', '.join(map(str, allowed))} channels, not {audio.channels}"))
        if audio.sample_rate not in self.sample_rates:
            problems.append(Problem("sample_rate", f"{self.name} takes sample rates {', '.join(map(str, self.sample_rates))}, not {audio.sample_rate}"))
        low, high = self.bitrate_range_kbps
        if not low <= audio.bitrate_kbps <= high:
            problems.append(Problem("bitrate", f"{self.name} takes {low}k to {high}k, not {audio.bitrate_kbps}k"))
        return problems

    def warnings_for(self, audio: AudioRungSpec) -> list[Problem]:
        if self.recommended_max_kbps and audio.bitrate_kbps > self.recommended_max_kbps:
            return [Problem("bitrate", f"{self.name} above {self.recommended_max_kbps}k: {self.recommendation}")]
        return []

    def availability_problem(self) -> str | None:
        if self.ffmpeg_encoder not in tools.ffmpeg_encoders():
            return f"this FFmpeg build ({tools.ffmpeg_path()}) has no {self.ffmpeg_encoder} encoder (needed by codec {self.name!r})"
        return None

    def output_options(self, audio: PlannedAudio) -> Options:
        opts: Options = {"c:a": self.ffmpeg_encoder, "b:a": f"{audio.bitrate_kbps}k"}
        # Down- or up-mix to the rung's channel count (5.1 -> stereo, mono -> stereo).
        opts["ac"] = str(audio.channels)
        opts["ar"] = str(audio.sample_rate)
        opts.update(dict(self.extra))
        return opts

    def codec_string(self, track: TrackInfo) -> str:
        return track.codec


class OpusEncoder(AudioEncoder):
    def output_options(self, audio: PlannedAudio) -> Options:
        opts = super().output_options(audio)
        if audio.channels > 2:
            # Surround Opus uses channel mapping family 1 (Vorbis order), which Chromium and the
            # CMAF Opus binding (dOps) both carry.
            opts["mapping_family"] = "1"
        return opts


HARDWARE_APIS = {"nvenc": "NVIDIA NVENC", "qsv": "Intel Quick Sync", "vaapi": "VA-API", "videotoolbox": "Apple VideoToolbox"}


def builtin_encoders() -> list[VideoEncoder | AudioEncoder]:
    h264_levels = tuple(H264_MAX_FRAME_MBS)
    hevc_levels = tuple(HEVC_MAX_LUMA_PS)
    hw: list[VideoEncoder | AudioEncoder] = []
    for family, codec, entry, levels in (("avc", "h264", "avc1", h264_levels), ("hevc", "hevc", "hvc1", hevc_levels)):
        for api in ("nvenc", "qsv", "vaapi", "videotoolbox"):
            profiles = ("baseline", "main", "high") if codec == "h264" else ("main",)
            rcs = ("vbr",) if api == "videotoolbox" else ("vbr", "crf")
            label = f"{'H.264' if codec == 'h264' else 'HEVC'} on {HARDWARE_APIS[api]}"
            hw.append(Hardware(f"{codec}-{api}", f"{codec}_{api}", family, label,
                               profiles=profiles, levels=levels, rate_controls=rcs, sample_entries=(entry,),
                               containers=("fmp4", "ts") if codec == "h264" else ("fmp4",), hardware=True))
    return [
        X264("h264", "libx264", "avc", "H.264/AVC (x264)", profiles=("baseline", "main", "high"), levels=h264_levels,
             containers=("fmp4", "ts"), sample_entries=("avc1",)),
        X265("hevc", "libx265", "hevc", "HEVC (x265), tagged hvc1 for Apple, fMP4 only", profiles=("main",),
             levels=hevc_levels, sample_entries=("hvc1",)),
        LibvpxVp9("vp9", "libvpx-vp9", "vp9", "VP9 (libvpx) in fMP4", profiles=("0",), crf_range=(0, 63),
                  sample_entries=("vp09",)),
        SvtAv1("av1", "libsvtav1", "av1", "AV1 (SVT-AV1) in fMP4; capped CRF via mbr, no two-pass",
               profiles=("main",), crf_range=(1, 63), rate_controls=("vbr", "crf"), sample_entries=("av01",)),
        LibaomAv1("av1-aom", "libaom-av1", "av1", "AV1 (libaom) in fMP4", profiles=("main",), crf_range=(0, 63),
                  sample_entries=("av01",)),
        *hw,
        AudioEncoder("aac", "aac", "AAC-LC (FFmpeg's native encoder)", bitrate_range_kbps=(16, 640),
                     containers=("fmp4", "ts")),
        AudioEncoder("he-aac", "libfdk_aac", "HE-AAC v1 (needs an FFmpeg built with libfdk_aac)", (("profile:a", "aac_he"),),
                     bitrate_range_kbps=(16, 256), containers=("fmp4", "ts"), recommended_max_kbps=64,
                     recommendation="Apple's HLS authoring spec (2.4) says not to use HE-AAC above 64 kb/s; use aac"),
        AudioEncoder("he-aac-v2", "libfdk_aac", "HE-AAC v2, stereo only (needs libfdk_aac)", (("profile:a", "aac_he_v2"),),
                     channels=(2,), bitrate_range_kbps=(16, 64), containers=("fmp4", "ts"), recommended_max_kbps=64,
                     recommendation="Apple's HLS authoring spec (2.4) says not to use HE-AAC above 64 kb/s; use aac"),
        OpusEncoder("opus", "libopus", "Opus in fMP4", sample_rates=(48000,), bitrate_range_kbps=(6, 510)),
        AudioEncoder("ac3", "ac3", "Dolby Digital (AC-3), up to 5.1", max_channels=6,
                     sample_rates=(32000, 44100, 48000), bitrate_range_kbps=(32, 640), containers=("fmp4", "ts")),
        AudioEncoder("eac3", "eac3", "Dolby Digital Plus (E-AC-3), up to 5.1", max_channels=6,
                     sample_rates=(32000, 44100, 48000), bitrate_range_kbps=(32, 6144), containers=("fmp4", "ts")),
    ]


# ---------------------------------------------------------------------------------------------
# The registry


_registry: dict[str, VideoEncoder | AudioEncoder] | None = None
_origins: dict[str, str] = {}


def registry() -> dict[str, VideoEncoder | AudioEncoder]:
    """Every encoder by codec name: built-ins first, then plug-ins (which may add names, not replace)."""
    global _registry
    if _registry is None:
        found: dict[str, VideoEncoder | AudioEncoder] = {}
        for dist, factory in plugins.load_entry_points(ENTRY_POINT_GROUP, fallback={"builtin": builtin_encoders}):
            try:
                encoders = list(factory())
            except Exception as exc:  # a broken plug-in must not break the CLI
                plugins.warn(f"encoder plug-in from distribution {dist!r} failed: {type(exc).__name__}: {exc}")
                continue
            for encoder in encoders:
                if not isinstance(encoder, VideoEncoder | AudioEncoder):
                    plugins.warn(f"encoder plug-in from distribution {dist!r} returned {encoder!r}, not an encoder")
                elif encoder.name in found:
                    plugins.warn(f"encoder plug-in from distribution {dist!r}: codec name {encoder.name!r} is taken "
                                 f"(by {_origins[encoder.name]}); ignored")
                else:
                    found[encoder.name] = encoder
                    _origins[encoder.name] = plugins.origin_label(dist)
        _registry = found
    return _registry


def reset() -> None:
    """Forget the loaded encoders (tests, or after installing a plug-in in-process)."""
    global _registry
    _registry = None
    _origins.clear()


def origin(name: str) -> str:
    registry()
    return _origins.get(name, "")


def get(name: str) -> VideoEncoder | AudioEncoder:
    encoder = registry().get(name)
    if encoder is None:
        raise KeyError(name)
    return encoder


def video(name: str) -> VideoEncoder | None:
    encoder = registry().get(name)
    return encoder if isinstance(encoder, VideoEncoder) else None


def audio(name: str) -> AudioEncoder | None:
    encoder = registry().get(name)
    return encoder if isinstance(encoder, AudioEncoder) else None


def unknown_codec(name: str, kind: str) -> str:
    """The message for a codec name that is not a known encoder of this kind ('video' or 'audio')."""
    names = sorted(n for n, e in registry().items() if isinstance(e, VideoEncoder if kind == "video" else AudioEncoder))
    other = registry().get(name)
    if other is not None:
        return f"{name!r} is an {'audio' if kind == 'video' else 'video'} codec, not a {kind} one (expected one of: {', '.join(names)})"
    return f"unknown {kind} codec {name!r} (expected one of: {', '.join(names)})"


def problem_with(name: str) -> str | None:
    """For callers that only need to know whether `name` is a known codec of any kind."""
    if name in registry():
        return None
    return f"unknown codec {name!r} (known: {', '.join(sorted(registry()))})"


def require_available(names: set[str]) -> None:
    """Before any work starts: every encoder the plan needs must run with this ffmpeg build and machine."""
    problems = []
    for name in sorted(names):
        encoder = get(name)
        problem = encoder.availability_problem()
        if problem:
            problems.append(problem)
    if problems:
        raise DependencyError(
            "; ".join(problems),
            hint="install an FFmpeg with them, or choose a profile with other codecs ('ffmpeg -encoders' lists what this build has)",
        )
