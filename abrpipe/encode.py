"""encode: the commands of one work unit. One FFmpeg process decodes its range once and fans out:

    [0:v] -> (deinterlace) -> (tone-map) -> fps (constant grid) -> format yuv420p -> split=N
           -> per rung: (fps /d) -> scale WxH -> setsar 1 -> encoder -> fMP4 segments
    [0:a:K] -> aresample -> encoder (once per audio rung, shared by every video variant)

Every stream of a unit goes to one output: FFmpeg's dash muxer, used only as a CMAF segmenter (one
moof per GOP, no edit lists). Its own MPD is thrown away; the manifests are written later from the
segments' boxes (package.py). How the title is cut into units, how units run and how they are
stitched back together is in workunits.py (`encode_title`, the entry point the pipeline calls).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from fractions import Fraction

import ffmpeg

from abrpipe import codecs, layout, runner, thumbnails, tools
from abrpipe.layout import INIT_NAME, MUXER_MANIFEST, STREAM_DIR  # noqa: F401  (re-exported)
from abrpipe.model import LadderPlan, PlannedAudio, PlannedRung, WorkUnit
from abrpipe.probe import SourceMedia


@dataclass(frozen=True)
class EncodeCommand:
    argv: list[str]
    label: str  # "encode", "analysis pass", ...
    weight: float  # share of the unit's work, for one progress figure over several passes
    cwd: str
    dirs: tuple[str, ...] = ()  # folders (relative to cwd) the command writes into

    def shell(self) -> str:
        """A shell line that runs as printed: it creates the folders ffmpeg writes into first."""
        mkdir = shlex.join(["mkdir", "-p", self.cwd, *(f"{self.cwd}/{d}" for d in self.dirs)])
        return f"{mkdir} && cd {shlex.quote(self.cwd)} && {shlex.join(self.argv)}"


def _video_graph(source: SourceMedia, plan: LadderPlan, input_options: dict[str, str] | None = None, *,
                 with_thumbnails: bool = False):
    """The decoded video, once, as one stream per rung (plus, with `with_thumbnails`, the thumbnail
    branch, last)."""
    assert source.video is not None and plan.base_fps is not None
    device_options = {k: v for r in plan.video for k, v in _video_encoder(r).input_options().items()}
    inp = ffmpeg.input(source.ffmpeg_url, protocol_whitelist=source.protocol_whitelist, **(input_options or {}),
                       **device_options)
    v = apply_filters(inp[str(source.video.index)], source_filters(plan))
    count = len(plan.video) + (1 if with_thumbnails else 0)
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
        # Output stream N goes to streamN/ (renamed to its rendition id when the unit is finished).
        "init_seg_name": layout.muxer_init_template("video" if plan.video else "audio"),
        "media_seg_name": layout.muxer_segment_template("video" if plan.video else "audio"),
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
        opts = encoder.two_pass_options(opts, rung, pass_no, layout.pass_log_prefix(rung.id))
    return opts


def _audio_options(audio: PlannedAudio, plan: LadderPlan) -> dict[str, str]:
    encoder = codecs.get(audio.codec)
    assert isinstance(encoder, codecs.AudioEncoder)
    opts = encoder.output_options(audio)
    opts.update(plan.options_for(audio.codec))
    return opts


GLOBAL_ARGS = list(runner.FFMPEG_GLOBAL_ARGS)  # kept for callers that compile their own commands


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



def _seconds(t: Fraction) -> str:
    """A time for ffmpeg's command line, to the microsecond (ffmpeg's own resolution)."""
    return f"{float(t):.6f}"


def unit_commands(source: SourceMedia, plan: LadderPlan, unit: WorkUnit, unit_dir: str) -> list[EncodeCommand]:
    """The exact ffmpeg command(s) of one work unit; they run in `unit_dir` with relative names.

    - "title": the whole title, video and audio, in one process (decode once, fan out).
    - "video": frames [start - preroll, end + tail) of the base grid, every rung; segments come out
      numbered from 1 in this unit and on the title's timeline (tfdt, mfhd), ready to be renumbered.
    - "audio": every audio rendition of the whole title (AAC priming and segment lengths make audio
      joins audible and uneven, so audio is never cut).
    """
    video = plan.video if unit.kind in ("title", "video") else ()
    audio = plan.audio if unit.kind in ("title", "audio") else ()
    input_options: dict[str, str] = {}
    output_options: dict[str, str] = {}
    seg_opts = segmenter_options(plan)
    if unit.kind == "video":
        assert plan.base_fps is not None
        fps = plan.base_fps
        first = unit.start_frame - unit.preroll_frames
        start = Fraction(first) / fps
        # Input seeking on the source's own timeline: exact on indexed (MP4/MOV) sources, and a
        # quarter of a frame early so that rounding never loses the unit's first frame.
        seek = max(Fraction(0), start - Fraction(1, 4) / fps)
        if seek > 0:
            input_options["ss"] = _seconds(seek)
        if unit.end_frame is not None:
            total = unit.end_frame + unit.tail_frames - first
            # Stop decoding just after the last frame of the tail; -frames below cuts exactly.
            input_options["t"] = _seconds(Fraction(total + 1) / fps)
            for n, rung in enumerate(video):
                output_options[f"frames:v:{n}"] = str(total // rung.fps_divisor)  # frame-exact length per rung
        # The unit's timestamps start at 0; put them at their place in the title.
        output_options["output_ts_offset"] = _seconds(start)
        # Keep the first unit on the same timeline as the others (the default shifts only a unit
        # whose B-frame decode times start below 0, which would overlap its successor by 2 frames).
        output_options["avoid_negative_ts"] = "disabled"
        fragments_before = (unit.first_segment - 1 - unit.preroll_frames // (plan.gop_frames * plan.segment_gops)) * plan.segment_gops
        seg_opts["format_options"] = ":".join([
            # frag_discont: the first fragment's tfdt is its absolute time, not 0 (movenc writes
            # tfdt relative to the first packet otherwise); negative_cts_offsets/use_editlist=0:
            # the same box layout on every ffmpeg version; fragment_index: mfhd continues the title's.
            "movflags=+negative_cts_offsets+frag_discont",
            "use_editlist=0",
            f"fragment_index={fragments_before + 1}",
        ])
    inp = ffmpeg.input(source.ffmpeg_url, protocol_whitelist=source.protocol_whitelist, **input_options)
    outputs = []
    two_pass = any(r.rate_control == "2pass" for r in video)
    # Thumbnails are one more branch of the decode of a whole title (a title with thumbnails is one unit).
    sheets = unit.kind == "title" and plan.thumbnails is not None and bool(video)
    if video:
        inp, video_streams = _video_graph(source, plan, input_options, with_thumbnails=sheets)
        thumbnail_branch = video_streams.pop() if sheets else None
        options: dict[str, str] = {}
        for n, rung in enumerate(video):
            options.update(_per_stream(video_options(rung, plan, 2 if two_pass else None), "v", n))
        outputs.append(ffmpeg.output(*video_streams, MUXER_MANIFEST, **options, **output_options, **seg_opts))
        if thumbnail_branch is not None:
            outputs.append(thumbnail_output(thumbnail_branch, plan))
    if audio:
        # Audio has an output (segmenter) of its own, in the same process when the unit also has
        # video: its segments are then the same whether the title is one unit or many.
        audio_options: dict[str, str] = {}
        for n, a in enumerate(audio):
            audio_options.update(_per_stream(_audio_options(a, plan), "a", n))
        outputs.append(ffmpeg.output(*_audio_streams(inp, plan), layout.AUDIO_MUXER_MANIFEST, **audio_options,
                                     **segmenter_options(_audio_only(plan))))
    main = outputs[0] if len(outputs) == 1 else ffmpeg.merge_outputs(*outputs)
    dirs = tuple(layout.stream_dir(n) for n in range(len(video))) + tuple(layout.stream_dir(n, "audio") for n in range(len(audio)))
    if sheets:
        dirs += (thumbnails.THUMBNAIL_DIR,)  # ffmpeg's image2 muxer does not create folders
    commands = []
    if two_pass:
        # The analysis pass encodes the two-pass rungs and throws the video away. The other rungs
        # stay as (unencoded) streams so that every rung keeps its stream index, which names
        # FFmpeg's statistics files.
        _, first_streams = _video_graph(source, plan, input_options)
        first_options: dict[str, str] = {"format": "null"}
        for n, rung in enumerate(video):
            skip = {"c:v": "wrapped_avframe"}  # hands frames to the null muxer without encoding
            first_options.update(_per_stream(video_options(rung, plan, 1) if rung.rate_control == "2pass" else skip, "v", n))
            if f"frames:v:{n}" in output_options:
                first_options[f"frames:v:{n}"] = output_options[f"frames:v:{n}"]
        first = ffmpeg.output(*first_streams, "/dev/null", **first_options)
        commands.append(EncodeCommand(_compile(first), "analysis pass", 0.4, unit_dir))
    commands.append(EncodeCommand(_compile(main), "encode", 0.6 if two_pass else 1.0, unit_dir, dirs))
    return commands


def thumbnail_output(branch, plan: LadderPlan):
    """The thumbnail branch of the split: sprite sheets as JPEG files (thumbnails.py)."""
    assert plan.thumbnails is not None and plan.base_fps is not None
    sheets = apply_filters(branch, thumbnails.filters(plan.thumbnails, plan.base_fps))
    return ffmpeg.output(sheets, thumbnails.output_path(), **thumbnails.output_options())


def _audio_only(plan: LadderPlan) -> LadderPlan:
    from dataclasses import replace

    return replace(plan, video=())


def _compile(node) -> list[str]:
    """ffmpeg-python builds the arguments; the runner adds the executable and its global flags."""
    return runner.ffmpeg_argv(node.get_args())


def unit_rendition_ids(plan: LadderPlan, unit: WorkUnit) -> list[str]:
    """Rendition ids in the unit's output stream order (video rungs, then audio)."""
    return [rid for rid, _ in unit_streams(plan, unit)]


def unit_streams(plan: LadderPlan, unit: WorkUnit) -> list[tuple[str, str]]:
    """(rendition id, the folder ffmpeg writes it into) for every output stream of a unit."""
    video = [(r.id, layout.stream_dir(n)) for n, r in enumerate(plan.video)] if unit.kind in ("title", "video") else []
    audio = [(a.id, layout.stream_dir(n, "audio")) for n, a in enumerate(plan.audio)] if unit.kind in ("title", "audio") else []
    return video + audio


def rendition_ids(plan: LadderPlan) -> list[str]:
    """Rendition ids in output stream order (video rungs, then audio)."""
    return [r.id for r in plan.video] + [a.id for a in plan.audio]


def build_commands(source: SourceMedia, plan: LadderPlan, work_dir: str) -> list[EncodeCommand]:
    """The command(s) of a whole-title, one-unit encode (run in `work_dir`)."""
    return unit_commands(source, plan, WorkUnit(0, "title", fps=plan.base_fps), work_dir)


def require_encoders(plan: LadderPlan) -> None:
    codecs.require_available({r.codec for r in plan.video} | {a.codec for a in plan.audio})


__all__ = ["EncodeCommand", "build_commands", "unit_commands", "source_filters", "tools"]
