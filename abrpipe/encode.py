"""encode: one FFmpeg process decodes the source once and fans out to every rung.

    [0:v] -> (deinterlace) -> (tone-map) -> fps (constant grid) -> format yuv420p -> split=N
           -> per rung: (fps /d) -> scale WxH -> setsar 1 -> encoder -> fMP4 segments
    [0:a:K] -> aresample -> encoder (once per audio rung, shared by every video variant)

Every output uses FFmpeg's hls muxer in fMP4 mode only as a CMAF segmenter: its own playlists are
thrown away, and the manifests are written later from the segments' boxes (package.py).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace

import ffmpeg

from abrpipe import codecs, runner, tools
from abrpipe.plan import LadderPlan, PlannedAudio, PlannedRung
from abrpipe.probe import SAFE_PROTOCOLS, SourceMedia
from abrpipe.runner import Progress

INIT_NAME = "init.mp4"
SEGMENT_PATTERN = "seg_%05d.m4s"
MUXER_PLAYLIST = "ffmpeg.m3u8"  # the segmenter's own playlist: discarded after the encode


@dataclass(frozen=True)
class EncodeCommand:
    argv: list[str]
    label: str  # "encode", "analysis pass", ...
    weight: float  # share of the total work, for one progress bar over several passes
    cwd: str

    def shell(self) -> str:
        return f"cd {shlex.quote(self.cwd)} && {shlex.join(self.argv)}"


def _video_graph(source: SourceMedia, plan: LadderPlan):
    """The decoded video, once, as one stream per rung."""
    assert source.video is not None and plan.base_fps is not None
    inp = ffmpeg.input(source.ffmpeg_url, protocol_whitelist=SAFE_PROTOCOLS)
    v = inp[str(source.video.index)]
    if plan.deinterlace:
        # One output frame per field (30i -> 60p), motion-adaptive.
        v = v.filter("bwdif", mode="send_field", deint="all")
    if plan.tonemap:
        v = _tonemap(v)
    # A constant frame grid: VFR sources become CFR, and frame numbers map to exact timestamps.
    v = v.filter("fps", fps=str(plan.base_fps))
    v = v.filter("format", "yuv420p")  # 8-bit 4:2:0, converted once for all rungs
    branches = [v] if len(plan.video) == 1 else [v.filter_multi_output("split", len(plan.video)).stream(i) for i in range(len(plan.video))]
    streams = []
    for rung, branch in zip(plan.video, branches, strict=True):
        if rung.fps_divisor > 1:
            branch = branch.filter("fps", fps=str(rung.fps))  # keeps every d-th frame of the grid
        branch = branch.filter("scale", rung.width, rung.height, flags="bicubic")
        streams.append(branch.filter("setsar", "1"))  # square pixels (Apple 1.33 aspect rules)
    return inp, streams


def _tonemap(v):
    if "zscale" in tools.ffmpeg_filters() and "tonemap" in tools.ffmpeg_filters():
        # PQ/HLG -> linear light -> Hable tone curve -> BT.709 SDR.
        v = v.filter("zscale", t="linear", npl=100).filter("format", "gbrpf32le").filter("zscale", p="bt709")
        v = v.filter("tonemap", tonemap="hable", desat=0)
        return v.filter("zscale", t="bt709", m="bt709", r="tv")
    # Without zimg, at least tag the output as BT.709 after conversion.
    return v.filter("colorspace", all="bt709", iall="bt2020", fast=1)


def segmenter_options(directory: str, segment_s: float, *, video: bool) -> dict[str, str]:
    opts = {
        "format": "hls",
        "hls_segment_type": "fmp4",
        "hls_time": f"{segment_s:.6f}",
        "hls_playlist_type": "vod",
        "hls_list_size": "0",
        "hls_fmp4_init_filename": INIT_NAME,
        "hls_segment_filename": f"{directory}/{SEGMENT_PATTERN}",
        "start_number": "1",
    }
    if video:
        # No edit list, negative composition offsets instead: the first frame presents at tfdt 0,
        # so DASH's SegmentTimeline and the boxes agree exactly (CMAF style).
        opts["hls_segment_options"] = "movflags=+cmaf+negative_cts_offsets:use_editlist=0"
    return opts


def _video_options(rung: PlannedRung, plan: LadderPlan, pass_no: int | None, passlog: str) -> dict[str, str]:
    encoder = codecs.get(rung.codec)
    assert isinstance(encoder, codecs.VideoEncoder)
    opts = encoder.output_options(rung, plan)
    opts.update(plan.options_for(rung.codec))
    if pass_no:
        opts["pass"] = str(pass_no)
        opts["passlogfile"] = passlog
        opts.pop("crf", None)
        opts.setdefault("b:v", f"{rung.bitrate_kbps}k")
    return opts


def _audio_options(audio: PlannedAudio, plan: LadderPlan) -> dict[str, str]:
    encoder = codecs.get(audio.codec)
    assert isinstance(encoder, codecs.AudioEncoder)
    opts = encoder.output_options(audio)
    opts.update(plan.options_for(audio.codec))
    return opts


GLOBAL_ARGS = [
    "-hide_banner",
    "-nostdin",  # never read the terminal: ffmpeg runs unattended
    "-v", "error",
    "-progress", "pipe:1",  # key=value progress blocks on stdout, read by the runner
    "-nostats",
]


def build_commands(source: SourceMedia, plan: LadderPlan, work_dir: str) -> list[EncodeCommand]:
    """The exact ffmpeg command(s) of a job; run in `work_dir` with relative output names."""
    outputs = []
    first_pass = None
    if plan.video:
        inp, streams = _video_graph(source, plan)
        segment_s = plan.segment_s
        # Cut on the keyframe that closes each segment: half a frame of slack absorbs rounding.
        cut_s = segment_s - 0.5 / float(plan.base_fps)
        for rung, stream in zip(plan.video, streams, strict=True):
            opts = {**_video_options(rung, plan, 2 if plan.rate_control == "2pass" else None, f"{rung.id}.passlog"),
                    **segmenter_options(rung.id, cut_s, video=True)}
            outputs.append(ffmpeg.output(stream, f"{rung.id}/{MUXER_PLAYLIST}", **opts))
        if plan.rate_control == "2pass":
            first = []
            _, streams1 = _video_graph(source, plan)
            for rung, stream in zip(plan.video, streams1, strict=True):
                opts = {**_video_options(rung, plan, 1, f"{rung.id}.passlog"), "format": "null"}
                first.append(ffmpeg.output(stream, os.devnull, **opts))
            first_pass = ffmpeg.merge_outputs(*first)
    else:
        inp = ffmpeg.input(source.ffmpeg_url, protocol_whitelist=SAFE_PROTOCOLS)
    segment_s = plan.segment_s or 6.0
    for audio in plan.audio:
        # Fill timestamp gaps with silence so audio stays continuous and in sync.
        stream = inp[f"a:{audio.source_position}"].filter("aresample", **{"async": 1})
        opts = {**_audio_options(audio, plan), **segmenter_options(audio.id, segment_s, video=False)}
        outputs.append(ffmpeg.output(stream, f"{audio.id}/{MUXER_PLAYLIST}", **opts))
    main = ffmpeg.merge_outputs(*outputs)
    commands = []
    if first_pass is not None:
        argv = first_pass.global_args(*GLOBAL_ARGS).overwrite_output().compile(cmd=tools.ffmpeg_path())
        commands.append(EncodeCommand(argv, "analysis pass", 0.4, work_dir))
    argv = main.global_args(*GLOBAL_ARGS).overwrite_output().compile(cmd=tools.ffmpeg_path())
    commands.append(EncodeCommand(argv, "encode", 0.6 if first_pass is not None else 1.0, work_dir))
    return commands


def run_encode(
    source: SourceMedia,
    plan: LadderPlan,
    work_dir: str,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    log_dir: str | None = None,
) -> None:
    """Encode every rendition into `work_dir/<rendition id>/` (init.mp4 + seg_NNNNN.m4s)."""
    codecs.require_available({r.codec for r in plan.video} | {a.codec for a in plan.audio})
    for rendition in [r.id for r in plan.video] + [a.id for a in plan.audio]:
        os.makedirs(os.path.join(work_dir, rendition), exist_ok=True)
    commands = build_commands(source, plan, work_dir)
    done = 0.0
    for command in commands:
        def scaled(p: Progress, base=done, weight=command.weight) -> None:
            if on_progress:
                fraction = p.fraction or 0.0
                on_progress(replace(p, out_time_s=(base + weight * fraction) * source.duration_s, done=p.done and base + weight >= 0.999))

        log_path = os.path.join(log_dir, f"ffmpeg-{command.label.replace(' ', '-')}.log") if log_dir else None
        _run_in(command, source.duration_s, scaled, log_path)
        done += command.weight
    for rendition in [r.id for r in plan.video] + [a.id for a in plan.audio]:
        playlist = os.path.join(work_dir, rendition, MUXER_PLAYLIST)
        if os.path.exists(playlist):
            os.remove(playlist)
    for name in os.listdir(work_dir):
        if ".passlog" in name:
            os.remove(os.path.join(work_dir, name))


def _run_in(command: EncodeCommand, duration_s: float, on_progress, log_path: str | None) -> None:
    runner.run(command.argv, duration_s=duration_s, on_progress=on_progress, log_path=log_path, cwd=command.cwd)
