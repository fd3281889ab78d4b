"""Encoder plug-ins: what each codec needs to encode one rung of an aligned ladder.

An encoder knows its FFmpeg encoder name, how to express GOP alignment, rate control, profile and
level for that encoder, and its container constraints. The CODECS string of what it produced is
read back from the output's own boxes (mp4.py), so it is exact whatever the encoder chose.
Third-party encoders are registered through the `abrpipe.encoders` entry-point group: the entry
point is a callable returning a list of VideoEncoder/AudioEncoder instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from abrpipe import tools
from abrpipe.errors import DependencyError

if TYPE_CHECKING:
    from abrpipe.plan import LadderPlan, PlannedAudio, PlannedRung
    from abrpipe.profile import VideoRungSpec

Options = dict[str, str]


def keyframe_options(rung: PlannedRung) -> Options:
    """Fixed, closed, aligned GOPs that any encoder honours."""
    return {
        # Force a keyframe on every GOP boundary by frame number: exact on the CFR grid the filter
        # graph makes, so every rung (and every codec) has keyframes at the same timestamps.
        "force_key_frames": f"expr:eq(mod(n,{rung.gop_frames}),0)",
        "g": str(rung.gop_frames),
    }


def vbv_options(rung: PlannedRung) -> Options:
    """Capped VBR (target + maxrate/bufsize) or capped CRF (crf + maxrate/bufsize)."""
    opts: Options = {}
    if rung.crf is not None:
        opts["crf"] = str(rung.crf)
    else:
        opts["b:v"] = f"{rung.bitrate_kbps}k"
    # The VBV cap keeps each segment's peak near the declared BANDWIDTH.
    opts["maxrate"] = f"{rung.maxrate_kbps}k"
    opts["bufsize"] = f"{rung.bufsize_kbps}k"
    return opts


@dataclass(frozen=True)
class VideoEncoder:
    name: str  # the profile's codec name
    ffmpeg_encoder: str
    family: str  # avc, hevc, vp9, av1
    description: str
    profiles: tuple[str, ...] = ()
    hardware: bool = False
    needs_fmp4: bool = True  # every abrpipe rendition is CMAF fMP4 anyway
    supports_two_pass: bool = True

    def check_rung(self, rung: VideoRungSpec) -> str | None:
        if rung.codec_profile and self.profiles and rung.codec_profile not in self.profiles:
            return f"{self.name} has no profile {rung.codec_profile!r} (expected one of: {', '.join(self.profiles)})"
        return None

    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        raise NotImplementedError


class X264(VideoEncoder):
    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts: Options = {"c:v": "libx264", "preset": plan.preset}
        # Apple: High profile for HD; Main keeps the small rungs playable on old devices.
        opts["profile:v"] = rung.codec_profile or ("high" if rung.height >= 720 else "main")
        if rung.level:
            opts["level:v"] = rung.level
        opts.update(vbv_options(rung))
        opts.update(keyframe_options(rung))
        # No keyframe may start earlier than the grid: every GOP is exactly gop_frames long.
        opts["keyint_min"] = str(rung.gop_frames)
        # No scene-cut keyframes: they would break the shared keyframe grid.
        opts["sc_threshold"] = "0"
        # Closed GOPs: a segment decodes without the previous one (EXT-X-INDEPENDENT-SEGMENTS).
        opts["flags"] = "+cgop"
        return opts


class X265(VideoEncoder):
    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts: Options = {"c:v": "libx265", "preset": plan.preset}
        opts["profile:v"] = rung.codec_profile or "main"
        opts.update(vbv_options(rung))
        opts.update(keyframe_options(rung))
        params = [
            f"keyint={rung.gop_frames}",
            f"min-keyint={rung.gop_frames}",
            "scenecut=0",  # keep keyframes on the shared grid
            "open-gop=0",  # closed GOPs: independent segments
            "log-level=error",
        ]
        if rung.level:
            params.append(f"level-idc={rung.level}")
        opts["x265-params"] = ":".join(params)
        # Apple devices require the hvc1 sample entry (parameter sets in the init, not in-band).
        opts["tag:v"] = "hvc1"
        return opts


class LibvpxVp9(VideoEncoder):
    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts: Options = {"c:v": "libvpx-vp9"}
        opts.update(vbv_options(rung))
        if rung.crf is not None:  # libvpx needs a bitrate ceiling alongside crf for constrained quality
            opts["b:v"] = f"{rung.maxrate_kbps}k"
        opts.update(keyframe_options(rung))
        opts["keyint_min"] = str(rung.gop_frames)
        # Realtime-ish speed setting; the profile's preset is a number 0..8 for VP9.
        opts["deadline"] = "good"
        opts["cpu-used"] = plan.preset if plan.preset.isdigit() else "4"
        opts["row-mt"] = "1"  # row multithreading: use both cores
        # No alt-ref frames across segment boundaries would be needed for lag; auto-alt-ref is fine
        # inside closed GOPs, which libvpx makes at every forced keyframe.
        return opts


class SvtAv1(VideoEncoder):
    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts: Options = {"c:v": "libsvtav1"}
        if rung.crf is not None:
            opts["crf"] = str(rung.crf)
        else:
            opts["b:v"] = f"{rung.bitrate_kbps}k"
        opts.update(keyframe_options(rung))
        opts["preset"] = plan.preset if plan.preset.isdigit() else "10"
        # Closed GOPs (irefresh-type=2 is a key frame, not an intra-only refresh) and no scene keyframes.
        params = ["irefresh-type=2", "scd=0"]
        if rung.crf is not None:
            params.append(f"mbr={rung.maxrate_kbps}")  # capped CRF
        opts["svtav1-params"] = ":".join(params)
        return opts


class LibaomAv1(VideoEncoder):
    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts: Options = {"c:v": "libaom-av1"}
        opts.update(vbv_options(rung))
        opts.update(keyframe_options(rung))
        opts["keyint_min"] = str(rung.gop_frames)
        opts["cpu-used"] = plan.preset if plan.preset.isdigit() else "8"
        opts["row-mt"] = "1"
        opts["usage"] = "good"
        return opts


class Hardware(VideoEncoder):
    """NVENC / QSV / VAAPI / VideoToolbox: selected by profile, checked against `ffmpeg -encoders`."""

    def output_options(self, rung: PlannedRung, plan: LadderPlan) -> Options:
        opts: Options = {"c:v": self.ffmpeg_encoder}
        opts.update(vbv_options(rung))
        opts.update(keyframe_options(rung))
        if rung.codec_profile:
            opts["profile:v"] = rung.codec_profile
        if self.ffmpeg_encoder.endswith("_nvenc"):
            opts["no-scenecut"] = "1"  # keep keyframes on the grid
            opts["forced-idr"] = "1"  # forced keyframes are IDR: segments start decodable
        return opts


@dataclass(frozen=True)
class AudioEncoder:
    name: str
    ffmpeg_encoder: str
    description: str
    extra: tuple[tuple[str, str], ...] = ()

    def output_options(self, audio: PlannedAudio) -> Options:
        opts: Options = {"c:a": self.ffmpeg_encoder, "b:a": f"{audio.bitrate_kbps}k"}
        # Down- or up-mix to the rung's channel count (5.1 -> stereo, mono -> stereo).
        opts["ac"] = str(audio.channels)
        opts["ar"] = str(audio.sample_rate)
        opts.update(dict(self.extra))
        return opts


def builtin_encoders() -> list[VideoEncoder | AudioEncoder]:
    hw = []
    for family, codec in (("avc", "h264"), ("hevc", "hevc")):
        for api in ("nvenc", "qsv", "vaapi", "videotoolbox"):
            hw.append(Hardware(f"{codec}-{api}", f"{codec}_{api}", family, f"{codec.upper()} on {api}", hardware=True))
    return [
        X264("h264", "libx264", "avc", "H.264/AVC (x264)", profiles=("baseline", "main", "high")),
        X265("hevc", "libx265", "hevc", "HEVC (x265, hvc1 for Apple)", profiles=("main", "main10")),
        LibvpxVp9("vp9", "libvpx-vp9", "vp9", "VP9 (libvpx) in fMP4", profiles=("0",)),
        SvtAv1("av1", "libsvtav1", "av1", "AV1 (SVT-AV1) in fMP4", profiles=("main",)),
        LibaomAv1("av1-aom", "libaom-av1", "av1", "AV1 (libaom) in fMP4", profiles=("main",)),
        *hw,
        AudioEncoder("aac", "aac", "AAC-LC (FFmpeg's native encoder)"),
        AudioEncoder("he-aac", "libfdk_aac", "HE-AAC v1 (needs an FFmpeg built with libfdk_aac)", (("profile:a", "aac_he"),)),
        AudioEncoder("opus", "libopus", "Opus in fMP4"),
        AudioEncoder("ac3", "ac3", "Dolby Digital (AC-3)"),
        AudioEncoder("eac3", "eac3", "Dolby Digital Plus (E-AC-3)"),
    ]


_registry: dict[str, VideoEncoder | AudioEncoder] | None = None
warnings: list[str] = []


def registry() -> dict[str, VideoEncoder | AudioEncoder]:
    global _registry
    if _registry is None:
        from abrpipe.plugins import load_entry_points

        found: dict[str, VideoEncoder | AudioEncoder] = {}
        for dist, factory in load_entry_points("abrpipe.encoders", fallback={"builtin": builtin_encoders}):
            try:
                encoders = list(factory())
            except Exception as exc:  # a broken plug-in must not break the CLI
                warnings.append(f"encoder plug-in from {dist} failed to load: {exc}")
                continue
            for encoder in encoders:
                if not isinstance(encoder, VideoEncoder | AudioEncoder):
                    warnings.append(f"encoder plug-in from {dist} returned {encoder!r}, not an encoder")
                    continue
                found.setdefault(encoder.name, encoder)
        _registry = found
    return _registry


def get(name: str) -> VideoEncoder | AudioEncoder:
    encoder = registry().get(name)
    if encoder is None:
        raise KeyError(name)
    return encoder


def problem_with(name: str) -> str | None:
    """For profile validation: None if `name` is a known codec, else what is wrong."""
    if name in registry():
        return None
    return f"unknown codec {name!r} (known: {', '.join(sorted(registry()))})"


def require_available(names: set[str]) -> None:
    """Before any work starts: every encoder the plan needs must be in this ffmpeg build."""
    have = tools.ffmpeg_encoders()
    missing = sorted({get(n).ffmpeg_encoder for n in names} - have)
    if missing:
        raise DependencyError(
            f"this FFmpeg build ({tools.ffmpeg_path()}) lacks the encoder(s) {', '.join(missing)}",
            hint="install an FFmpeg with them, or choose a profile with other codecs ('ffmpeg -encoders' lists what it has)",
        )
