"""Every name abrpipe writes: the published tree, the work area beside it, and the work-unit cache.

    OUT/                          the published ladder (renamed into place, manifests last)
      master.m3u8, manifest.mpd   multivariant playlist and MPD
      abrpipe.json                the job record
      <rendition id>/             one folder per rendition
        init.mp4, seg_00001.m4s   CMAF init and media segments (numbers are global, from 1)
        playlist.m3u8, iframes.m3u8
    OUT.partial/                  the work area: the same tree while it is being built
    OUT.units/                    finished work units, kept until the ladder is published (resume)
      unit-0003/                  one unit's segments, already with their global numbers
        stream0/, audio-stream0/  ffmpeg's output streams while it runs, then <rendition id>/
        unit.json                 fingerprint + checksums, written last: the unit is finished
      unit-0003.run-<token>/      an attempt in progress (renamed to unit-0003/ when it succeeds)

Nothing else in abrpipe spells a file name.
"""

from __future__ import annotations

import os
import re

INIT_NAME = "init.mp4"
SEGMENT_PREFIX = "seg_"
SEGMENT_SUFFIX = ".m4s"
SEGMENT_DIGITS = 5
MASTER_NAME = "master.m3u8"
MPD_NAME = "manifest.mpd"
MEDIA_PLAYLIST = "playlist.m3u8"
IFRAME_PLAYLIST = "iframes.m3u8"
RECORD_NAME = "abrpipe.json"
LOG_DIR = ".logs"
PARTIAL_SUFFIX = ".partial"
UNITS_SUFFIX = ".units"
UNIT_RECORD = "unit.json"
MUXER_MANIFEST = "segmenter.mpd"  # the segmenters' own MPDs: never published
AUDIO_MUXER_MANIFEST = "segmenter-audio.mpd"
STREAM_DIR = "stream"  # ffmpeg writes video output stream N into streamN/
AUDIO_STREAM_DIR = "audio-stream"  # and audio output stream N into audio-streamN/

_SEGMENT_RE = re.compile(rf"^{SEGMENT_PREFIX}(\d+){re.escape(SEGMENT_SUFFIX)}$")


def segment_name(number: int) -> str:
    return f"{SEGMENT_PREFIX}{number:0{SEGMENT_DIGITS}d}{SEGMENT_SUFFIX}"


def segment_number(name: str) -> int | None:
    m = _SEGMENT_RE.match(name)
    return int(m.group(1)) if m else None


def is_segment(name: str) -> bool:
    return _SEGMENT_RE.match(name) is not None


def _stream_prefix(kind: str) -> str:
    return AUDIO_STREAM_DIR if kind == "audio" else STREAM_DIR


def muxer_init_template(kind: str = "video") -> str:
    """The dash muxer's init name template (output stream N -> streamN/init.mp4)."""
    return f"{_stream_prefix(kind)}$RepresentationID$/{INIT_NAME}"


def muxer_segment_template(kind: str = "video") -> str:
    return f"{_stream_prefix(kind)}$RepresentationID$/{SEGMENT_PREFIX}$Number%0{SEGMENT_DIGITS}d${SEGMENT_SUFFIX}"


def stream_dir(n: int, kind: str = "video") -> str:
    return f"{_stream_prefix(kind)}{n}"


def rendition_dir(work_dir: str, rendition_id: str) -> str:
    return os.path.join(work_dir, rendition_id)


def partial_dir(out_dir: str) -> str:
    return os.path.abspath(out_dir).rstrip(os.sep) + PARTIAL_SUFFIX


def units_dir(out_dir: str) -> str:
    """Finished work units of OUT, beside it: they survive a crash of the run that made them."""
    return os.path.abspath(out_dir).rstrip(os.sep) + UNITS_SUFFIX


def unit_dir(units_root: str, unit_name: str) -> str:
    return os.path.join(units_root, unit_name)


def unit_attempt_dir(units_root: str, unit_name: str, token: str) -> str:
    return os.path.join(units_root, f"{unit_name}.run-{token}")


def is_unit_attempt(name: str) -> bool:
    return ".run-" in name


def pass_log_prefix(rendition_id: str) -> str:
    """Two-pass statistics files of one rung start with this (never published)."""
    return f"{rendition_id}.passlog"
