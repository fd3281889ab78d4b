"""Example abrpipe plug-in.

`profile_dirs` is the `abrpipe.profiles` entry point: it returns the directories (or files) that hold
the plug-in's profiles. `encoders` is the `abrpipe.encoders` entry point: it returns encoder
objects; here one, "h264-fast", which wraps libx264 tuned for fast decoding on weak devices.
"""

from __future__ import annotations

from pathlib import Path

from abrpipe import codecs


class H264Fast(codecs.X264):
    """libx264 with the fastdecode tuning (no CABAC, no deblocking) on top of the usual ladder rules."""

    def output_options(self, rung, plan):
        opts = super().output_options(rung, plan)
        opts["tune"] = "fastdecode"  # cheap to decode: no CABAC, no deblocking filter
        return opts


def profile_dirs() -> list[Path]:
    return [Path(__file__).resolve().parent / "profiles"]


def encoders() -> list[codecs.VideoEncoder]:
    return [
        H264Fast("h264-fast", "libx264", "avc", "H.264 (x264, fastdecode tuning) from abrpipe-demo-plugin",
                 profiles=("baseline", "main", "high"), levels=tuple(codecs.H264_MAX_FRAME_MBS),
                 containers=("fmp4", "ts"), sample_entries=("avc1",)),
    ]
