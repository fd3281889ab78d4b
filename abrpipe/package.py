"""package: read the encoded segments' own boxes into a model of the title, then write the HLS
playlists and the DASH MPD from that one model, over the same CMAF files.

Durations come from tfdt/trun (exact, in the media timescale), bitrates are measured from the
segment sizes, CODECS from the init segments' codec configuration boxes: nothing is copied from
what the encoder was asked to do.
"""

from __future__ import annotations

import os

from abrpipe import mp4
from abrpipe.errors import OutputError
from abrpipe.layout import IFRAME_PLAYLIST, INIT_NAME, MASTER_NAME, MEDIA_PLAYLIST, MPD_NAME, is_segment
from abrpipe.model import IFrame, LadderPlan, Rendition, Segment, Title, target_duration

# Re-exported for code that imported them from here.
__all__ = ["IFRAME_PLAYLIST", "INIT_NAME", "MASTER_NAME", "MEDIA_PLAYLIST", "MPD_NAME", "IFrame", "LadderPlan",
           "Rendition", "Segment", "Title", "read_rendition", "read_title", "write_manifests", "target_duration"]


def read_rendition(directory: str, rendition_id: str, kind: str, *, codec_string=None, **attrs) -> Rendition:
    """Parse one rendition directory (init.mp4 + seg_*.m4s) into the model."""
    rdir = os.path.join(directory, rendition_id)
    try:
        track = mp4.read_init(os.path.join(rdir, INIT_NAME))
        names = sorted(n for n in os.listdir(rdir) if is_segment(n))
        segments = []
        for name in names:
            seg = mp4.read_segment(os.path.join(rdir, name), track)
            iframes = tuple(
                IFrame(f.offset, f.first_sample_data_offset + f.first_sample_size - f.offset, f.earliest_presentation_time)
                for f in seg.fragments
                if f.first_sample_is_sync
            )
            segments.append(Segment(name, seg.base_decode_time, seg.duration, seg.size_bytes, seg.starts_with_sync, iframes))
    except (OSError, mp4.Mp4Error) as exc:
        raise OutputError(f"{rdir}: the encoder's output cannot be read ({exc})") from None
    if not segments:
        raise OutputError(f"{rdir}: the encoder wrote no segments")
    return Rendition(
        id=rendition_id,
        kind=kind,
        codec=codec_string(track) if codec_string else track.codec,  # the encoder plug-in's hook
        timescale=track.timescale,
        segments=tuple(segments),
        width=track.width if kind == "video" else None,
        height=track.height if kind == "video" else None,
        channels=track.channels if kind == "audio" else None,
        sample_rate=track.sample_rate if kind == "audio" else None,
        **attrs,
    )


def read_title(work_dir: str, plan: LadderPlan) -> Title:
    from abrpipe import codecs

    video = tuple(
        read_rendition(work_dir, r.id, "video", frame_rate=r.fps, codec_family=_family(codecs, r.codec),
                       codec_string=codecs.get(r.codec).codec_string) for r in plan.video
    )
    audio = tuple(
        read_rendition(work_dir, a.id, "audio", language=a.language, name=a.name, default=a.default, group=audio_group(a),
                       codec_string=codecs.get(a.codec).codec_string)
        for a in plan.audio
    )
    return Title(video=video, audio=audio)


def audio_group(a) -> str:
    layout = {1: "-mono", 2: "", 6: "-5.1", 8: "-7.1"}.get(a.channels, f"-{a.channels}ch")
    return f"audio-{a.codec}-{a.bitrate_kbps}k{layout}"


def _family(codecs_module, codec: str) -> str:
    encoder = codecs_module.get(codec)
    return getattr(encoder, "family", codec)


def write_manifests(work_dir: str, title: Title, plan: LadderPlan) -> list[str]:
    """Write every playlist and the MPD into work_dir; return the names written (manifests last)."""
    from abrpipe import dash, hls  # the writers import the model, not this module

    written = []
    if "hls" in plan.outputs:
        written += hls.write_hls(work_dir, title)
    if "dash" in plan.outputs:
        written.append(dash.write_mpd(work_dir, title))
    return written
