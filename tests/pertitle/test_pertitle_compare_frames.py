"""`compare` scores each rendition against the frames the encoder really saw.

The trait under test comes from a real phone clip (opencv-doc's box.mp4): audio is stream 0, the video
has B-frames, and its first frames do not decode, so the decodable frames start with a hole in their
timestamps (frame 0 at 0, frame 1 three frame-times later) while the stream still declares a constant
rate (average and declared rate within 1 %). The encoder's `fps` filter fills the hole with a repeated
frame; a reference that skipped that step paired every later frame with its neighbour and scored the
renditions tens of VMAF points too low. Here the hole is one dropped frame of a generated clip.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
from media import ffmpeg, requires_ffmpeg

from abrpipe import registry
from abrpipe.pertitle import compare, metrics
from abrpipe.pipeline import Job, run_job
from abrpipe.probe import probe

pytestmark = requires_ffmpeg

PROFILE = """schema = 1
description = "one small rung"
codec = "h264"
preset = "ultrafast"
gop = 1
segment = 2

[[rungs]]
size = "320x180"
bitrate = "400k"
"""


@pytest.fixture(scope="module")
def holed_source(tmp_path_factory):
    d = tmp_path_factory.mktemp("holed")
    src = d / "holed.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=10",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=10",
        # Drop frame 1 and keep every other frame's timestamp: a hole of one frame-time after frame 0.
        "-vf", "select='not(eq(n\\,1))'",
        "-fps_mode", "passthrough",  # write the frames as they are: no repeated frame fills the hole
        "-map", "1:a", "-map", "0:v",  # audio first, as in the phone clip
        "-c:a", "aac", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-pix_fmt", "yuv420p",
        str(src),
    )  # fmt: skip
    return src, d


def test_a_hole_in_a_constant_rate_source_does_not_shift_the_scoring(holed_source):
    src, d = holed_source
    source = probe(str(src))
    assert source.video is not None and source.video.index == 1
    # The trait: 299 frames over 10 s, a declared rate the probe takes as constant.
    assert source.video.frame_count == 299 and not source.video.variable_frame_rate
    (d / "one.toml").write_text(PROFILE)
    profile = replace(registry.load(str(d / "one.toml")), audio=())
    out = d / "out"
    result = run_job(Job(input=str(src), output=str(out), profile=profile, validate=False))
    engine = metrics.find_metric_engine("psnr", candidates=[shutil.which("ffmpeg") or "ffmpeg"])
    scratch = d / "scratch"
    scratch.mkdir()
    (rung,) = compare.measure_job(result, str(out), engine, (320, 180), every_nth=1, scratch=str(scratch))
    # Paired right, this rendition scores about 40 dB; paired one frame apart from the hole on (the
    # reference without the encoder's frame grid) it scored 28.7 dB.
    assert rung.frames >= 290
    assert rung.quality > 36.0, rung
