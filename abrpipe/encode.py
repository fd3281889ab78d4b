"""encode: one FFmpeg process decodes the source once and fans out to every rung.

    [0:v] -> (deinterlace) -> (tone-map) -> fps (constant grid) -> format yuv420p -> split=N
           -> per rung: (fps /d) -> scale WxH -> setsar 1 -> encoder -> fMP4 segments
    [0:a:K] -> aresample -> encoder (once per audio rung, shared by every video variant)

All streams go to one output: FFmpeg's dash muxer, used only as a CMAF segmenter (one moof per GOP,
no edit lists). Its own MPD is thrown away; the manifests are written later from the segments'
boxes (package.py).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace

import ffmpeg

from abrpipe import codecs, runner, thumbnails, tools
from abrpipe.plan import LadderPlan, PlannedAudio, PlannedRung
from abrpipe.probe import SourceMedia
from abrpipe.runner import Progress

INIT_NAME = "init.mp4"
MUXER_MANIFEST = "segmenter.mpd"  # the segmenter's own MPD: discarded after the encode
STREAM_DIR = "stream"  # ffmpeg writes output stream N into streamN/, renamed to the rendition id


@dataclass(frozen=True)
class EncodeCommand:
    argv: list[str]
    label: str  # "encode", "analysis pass", ...
    weight: float  # share of the total work, for one progress bar over several passes
    cwd: str

    def shell(self) -> str:
        return f"cd {shlex.quote(self.cwd)} && {shlex.join(self.argv)}"


def _video_graph(source: SourceMedia, plan: LadderPlan, *, thumbnails: bool = False):
    """The decoded video, once, as one stream per rung (plus, with `thumbnails`, the thumbnail
    branch, last)."""
    assert source.video is not None and plan.base_fps is not None
    device_options = {k: v for r in plan.video for k, v in _video_encoder(r).input_options().items()}
    inp = ffmpeg.input(source.ffmpeg_url, protocol_whitelist=source.protocol_whitelist, **device_options)
    v = apply_filters(inp[str(source.video.index)], source_filters(plan))
    count = len(plan.video) + (1 if thumbnails else 0)
    branches = [v] if count == 1 else [v.filter_multi_output("split", count).stream(i) for i in range(count)]
    extra = branches[len(plan.video):]
    branches = branches[: len(plan.video)]
    streams = []
    for rung, branch in zip(plan.video, branches, strict=True):
        if rung.fps_divisor > 1:
            branch = branch.filter("fps", fps=str(rung.fps))  # keeps every d-th frame of the grid
        branch = branch.filter("scale", rung.width, rung.height, flags="bicubic")
        branch = branch.filter("setsar", "1")  # square pixels (Apple 1.33 aspect rules)
        for name, args in _video_encoder(rung).filters(rung):  # e.g. the upload to a hardware encoder
            branch = branch.filter(name, **args)
        streams.append(branch)
    return inp, streams + extra


Filter = tuple[str, dict[str, str]]  # (ffmpeg filter name, its options)


def source_filters(plan: LadderPlan) -> list[Filter]:
    """What happens to the decoded source once, before it is split between the rungs."""
    steps: list[Filter] = []
    if plan.deinterlace:
        # One output frame per field (30i -> 60p), motion-adaptive.
        steps.append(("bwdif", {"mode": "send_field", "deint": "all"}))
    if plan.tonemap:
        steps += tonemap_filters()
    # A constant frame grid: VFR sources become CFR, and frame numbers map to exact timestamps.
    steps.append(("fps", {"fps": str(plan.base_fps)}))
    steps.append(("format", {"pix_fmts": "yuv420p"}))  # 8-bit 4:2:0, converted once for all rungs
    return steps


def tonemap_filters() -> list[Filter]:
    if "zscale" in tools.ffmpeg_filters() and "tonemap" in tools.ffmpeg_filters():
        # PQ/HLG -> linear light -> Hable tone curve -> BT.709 SDR.
        return [
            ("zscale", {"t": "linear", "npl": "100"}),
            ("format", {"pix_fmts": "gbrpf32le"}),
            ("zscale", {"p": "bt709"}),
            ("tonemap", {"tonemap": "hable", "desat": "0"}),
            ("zscale", {"t": "bt709", "m": "bt709", "r": "tv"}),
        ]
    # Without zimg, at least convert the primaries and transfer to BT.709.
    return [("colorspace", {"all": "bt709", "iall": "bt2020", "fast": "1"})]


def apply_filters(stream, steps: list[Filter]):
    for name, args in steps:
        stream = stream.filter(name, **args)
    return stream


def filter_string(step: Filter) -> str:
    """('scale', {'w': '640'}) -> 'scale=w=640', for filtergraphs written as text."""
    name, args = step
    return name + ("=" + ":".join(f"{k}={v}" for k, v in args.items()) if args else "")


def segmenter_options(plan: LadderPlan) -> dict[str, str]:
    """FFmpeg's dash muxer used only as a CMAF segmenter (its MPD is discarded)."""
    opts = {
        "format": "dash",
        # fMP4 for every codec: the dash muxer's default ("auto") writes WebM for VP9 and Opus.
        "dash_segment_type": "mp4",
        "seg_duration": f"{plan.segment_s or 6.0:.6f}",
        "use_template": "1",
        "use_timeline": "1",
        # Output stream N goes to streamN/ (renamed to its rendition id afterwards).
        "init_seg_name": f"{STREAM_DIR}$RepresentationID$/{INIT_NAME}",
        "media_seg_name": f"{STREAM_DIR}$RepresentationID$/seg_$Number%05d$.m4s",
        # No edit list, negative composition offsets instead: the first frame presents at tfdt, so
        # the boxes, the HLS playlists and DASH's SegmentTimeline agree exactly (CMAF style).
        "format_options": "movflags=+negative_cts_offsets:use_editlist=0",
    }
    if plan.video and plan.base_fps:
        # One moof per GOP inside each segment: every keyframe gets its own byte range for the
        # I-frame playlists. Half a frame of slack keeps each cut on its keyframe.
        opts["frag_type"] = "duration"
        assert plan.base_fps is not None  # a plan with video has a frame rate
        opts["frag_duration"] = f"{plan.gop_s - 0.5 / float(plan.base_fps):.6f}"
    else:
        opts["frag_type"] = "none"
    return opts


def _per_stream(options: dict[str, str], kind: str, n: int) -> dict[str, str]:
    """`b:v` -> `b:v:3`, `maxrate` -> `maxrate:v:3`: options for the n-th video (or audio) stream."""
    out = {}
    for key, value in options.items():
        name = key.partition(":")[0]
        out[f"{name}:{kind}:{n}"] = value
    return out


def _video_encoder(rung: PlannedRung) -> codecs.VideoEncoder:
    encoder = codecs.get(rung.codec)
    assert isinstance(encoder, codecs.VideoEncoder)
    return encoder


def video_options(rung: PlannedRung, plan: LadderPlan, pass_no: int | None) -> dict[str, str]:
    encoder = _video_encoder(rung)
    opts = encoder.output_options(rung, plan)
    opts.update(plan.options_for(rung.codec))
    if pass_no and rung.rate_control == "2pass":
        # Each encoder says how it takes a pass number and its statistics file (x265 differs).
        opts = encoder.two_pass_options(opts, rung, pass_no, f"{rung.id}.passlog")
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


def _audio_streams(inp, plan: LadderPlan) -> list:
    """One stream per audio rendition; each source track is decoded once and split between its rungs."""
    positions = [a.source_position for a in plan.audio]
    branches: dict[int, list] = {}
    for position in dict.fromkeys(positions):
        # Fill timestamp gaps with silence so audio stays continuous and in sync.
        track = inp[f"a:{position}"].filter("aresample", **{"async": 1})
        count = positions.count(position)
        branches[position] = [track] if count == 1 else [track.filter_multi_output("asplit", count).stream(i) for i in range(count)]
    return [branches[p].pop(0) for p in positions]


def build_commands(source: SourceMedia, plan: LadderPlan, work_dir: str) -> list[EncodeCommand]:
    """The exact ffmpeg command(s) of a job; run in `work_dir` with relative output names."""
    inp = ffmpeg.input(source.ffmpeg_url, protocol_whitelist=source.protocol_whitelist)
    streams, options = [], {}
    two_pass_rungs = tuple(r for r in plan.video if r.rate_control == "2pass")
    two_pass = bool(two_pass_rungs)
    extra_outputs = []
    if plan.video:
        inp, video_streams = _video_graph(source, plan, thumbnails=plan.thumbnails is not None)
        if plan.thumbnails is not None:
            extra_outputs.append(thumbnail_output(video_streams.pop(), plan))
        for n, (rung, stream) in enumerate(zip(plan.video, video_streams, strict=True)):
            streams.append(stream)
            options.update(_per_stream(video_options(rung, plan, 2 if two_pass else None), "v", n))
    for n, (audio, stream) in enumerate(zip(plan.audio, _audio_streams(inp, plan), strict=True)):
        streams.append(stream)
        options.update(_per_stream(_audio_options(audio, plan), "a", n))
    main = ffmpeg.output(*streams, MUXER_MANIFEST, **options, **segmenter_options(plan))
    if extra_outputs:
        main = ffmpeg.merge_outputs(main, *extra_outputs)  # one process, one decode, several outputs
    commands = []
    if two_pass:
        # The analysis pass encodes the two-pass rungs and throws the video away. The other rungs
        # stay as (unencoded) streams so that every rung keeps its stream index, which names
        # FFmpeg's statistics files.
        _, first_streams = _video_graph(source, plan)
        first_options: dict[str, str] = {"format": "null"}
        for n, rung in enumerate(plan.video):
            skip = {"c:v": "wrapped_avframe"}  # hands frames to the null muxer without encoding
            first_options.update(_per_stream(video_options(rung, plan, 1) if rung.rate_control == "2pass" else skip, "v", n))
        first = ffmpeg.output(*first_streams, os.devnull, **first_options)
        argv = first.global_args(*GLOBAL_ARGS).overwrite_output().compile(cmd=tools.ffmpeg_path())
        commands.append(EncodeCommand(argv, "analysis pass", 0.4, work_dir))
    argv = main.global_args(*GLOBAL_ARGS).overwrite_output().compile(cmd=tools.ffmpeg_path())
    commands.append(EncodeCommand(argv, "encode", 0.6 if two_pass else 1.0, work_dir))
    return commands


def thumbnail_output(branch, plan: LadderPlan):
    """The thumbnail branch of the split: sprite sheets as JPEG files (thumbnails.py)."""
    assert plan.thumbnails is not None and plan.base_fps is not None
    sheets = apply_filters(branch, thumbnails.filters(plan.thumbnails, plan.base_fps))
    return ffmpeg.output(sheets, thumbnails.output_path(), **thumbnails.output_options())


def rendition_ids(plan: LadderPlan) -> list[str]:
    """Rendition ids in output stream order (video rungs, then audio)."""
    return [r.id for r in plan.video] + [a.id for a in plan.audio]


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
    ids = rendition_ids(plan)
    for n in range(len(ids)):
        os.makedirs(os.path.join(work_dir, f"{STREAM_DIR}{n}"), exist_ok=True)
    if plan.thumbnails is not None:
        os.makedirs(os.path.join(work_dir, thumbnails.THUMBNAIL_DIR), exist_ok=True)
    commands = build_commands(source, plan, work_dir)
    done = 0.0
    for command in commands:
        def scaled(p: Progress, base=done, weight=command.weight) -> None:
            if on_progress:
                fraction = p.fraction or 0.0
                on_progress(replace(p, out_time_s=(base + weight * fraction) * source.duration_s, done=p.done and base + weight >= 0.999))

        log_path = os.path.join(log_dir, f"ffmpeg-{command.label.replace(' ', '-')}.log") if log_dir else None
        runner.run(command.argv, duration_s=source.duration_s, on_progress=scaled, log_path=log_path, cwd=command.cwd)
        done += command.weight
    for n, rendition in enumerate(ids):
        os.rename(os.path.join(work_dir, f"{STREAM_DIR}{n}"), os.path.join(work_dir, rendition))
    for name in os.listdir(work_dir):  # the segmenter's MPD and two-pass statistics are not published
        if name == MUXER_MANIFEST or ".passlog" in name:
            os.remove(os.path.join(work_dir, name))
