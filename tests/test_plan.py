"""Planning, units and argv building: pure logic, no media needed."""

from __future__ import annotations

import shlex
from fractions import Fraction

import pytest
from media import TINY_PROFILE

from abrpipe import registry
from abrpipe.encode import build_commands
from abrpipe.errors import InputError
from abrpipe.plan import plan_ladder
from abrpipe.probe import AudioTrack, SourceMedia, VideoTrack
from abrpipe.units import format_rate, parse_bitrate_kbps, parse_duration_s, parse_size


def source(w=1920, h=1080, fps=Fraction(30), *, rotation=0, audio=1, interlaced=False, vfr=False, depth=8, transfer=None, sar=Fraction(1)):
    video = VideoTrack(
        index=0, codec="h264", width=w, height=h, sample_aspect=sar, rotation_deg=rotation, frame_rate=fps,
        variable_frame_rate=vfr, interlaced=interlaced, pix_fmt="yuv420p", bit_depth=depth, color_transfer=transfer, frame_count=600,
    )
    tracks = tuple(
        AudioTrack(index=1 + i, position=i, codec="aac", channels=2, channel_layout="stereo", sample_rate=48000,
                   language=["eng", "fra"][i % 2], title=None, default=i == 0)
        for i in range(audio)
    )
    return SourceMedia(path="/x/in.mp4", format_name="mov,mp4", duration_s=20, size_bytes=1, bit_rate=None, video=video, audio=tracks)


@pytest.mark.parametrize(
    ("text", "kbps"), [("800k", 800), ("2.5M", 2500), ("7800k", 7800), ("1m", 1000), ("64kbps", 64)]
)
def test_parse_bitrate(text, kbps):
    assert parse_bitrate_kbps(text) == kbps


@pytest.mark.parametrize("bad", ["800", 800, "fast", "", "-5k", "0k", None])
def test_parse_bitrate_rejects(bad):
    with pytest.raises(ValueError, match="expected a bitrate like 800k or 2.5M"):
        parse_bitrate_kbps(bad)


def test_units():
    assert parse_size("1280x720") == (1280, 720)
    assert parse_duration_s("500ms") == 0.5 and parse_duration_s(2) == 2.0 and parse_duration_s("6s") == 6.0
    assert format_rate(Fraction(30000, 1001)) == "30000/1001" and format_rate(Fraction(25)) == "25"


def test_default_ladder_on_1080p_keeps_every_rung_with_aligned_gops():
    plan = plan_ladder(source(), registry.load("default"))
    assert [(r.width, r.height, r.bitrate_kbps) for r in plan.video] == [
        (1920, 1080, 7800), (1920, 1080, 6000), (1280, 720, 4500), (1280, 720, 3000), (960, 540, 2000),
        (768, 432, 1100), (768, 432, 730), (640, 360, 365), (416, 234, 145),
    ]
    assert not plan.dropped
    assert plan.gop_frames == 60 and plan.segment_gops == 3 and plan.segment_s == pytest.approx(6.0)
    assert all(r.gop_frames * r.fps_divisor == 60 for r in plan.video)


def test_60fps_source_caps_low_rungs_at_30_with_the_same_keyframe_times():
    plan = plan_ladder(source(fps=Fraction(60)), registry.load("default"))
    top, low = plan.video[0], plan.video[-1]
    assert top.fps == 60 and top.gop_frames == 120
    assert low.fps == 30 and low.gop_frames == 60 and low.fps_divisor == 2
    # Same keyframe interval in seconds on every rung.
    assert {r.gop_frames / r.fps for r in plan.video} == {Fraction(2)}


def test_rungs_above_the_source_are_dropped_with_a_reason():
    plan = plan_ladder(source(1280, 720), registry.load("default"))
    assert plan.video[0].height == 720
    assert len(plan.dropped) == 2
    assert all("never upscales" in d.reason for d in plan.dropped)


def test_odd_sized_source_clamps_the_nearest_rung_instead_of_dropping_it():
    plan = plan_ladder(source(853, 479), registry.load("480p"))
    assert (plan.video[0].width, plan.video[0].height) == (852, 478)
    assert all(r.width % 2 == 0 and r.height % 2 == 0 for r in plan.video)


def test_aspect_ratio_of_a_4_3_source_is_kept():
    plan = plan_ladder(source(1440, 1080), registry.load("720p"))
    assert [(r.width, r.height) for r in plan.video[:2]] == [(960, 720), (720, 540)]


def test_portrait_and_rotated_sources_use_the_short_side():
    portrait = plan_ladder(source(1080, 1920), registry.load("720p")).video[0]
    rotated = plan_ladder(source(1920, 1080, rotation=90), registry.load("720p")).video[0]
    assert (portrait.width, portrait.height) == (720, 1280)
    assert (rotated.width, rotated.height) == (720, 1280)


def test_anamorphic_source_uses_display_aspect():
    plan = plan_ladder(source(720, 576, Fraction(25), sar=Fraction(64, 45)), registry.load("480p"))
    w, h = plan.video[0].width, plan.video[0].height
    assert abs(w / h - 1024 / 576) < 0.02


def test_high_frame_rate_source_is_capped_at_60():
    plan = plan_ladder(source(fps=Fraction(120)), registry.load("720p"))
    assert plan.base_fps == 60 and any("120 fps" in n for n in plan.notes)


def test_interlaced_source_is_deinterlaced_to_double_rate():
    plan = plan_ladder(source(fps=Fraction(30000, 1001), interlaced=True), registry.load("720p"))
    assert plan.deinterlace and plan.base_fps == Fraction(60000, 1001)


def test_tiny_source_still_gets_one_rendition_at_source_size():
    plan = plan_ladder(source(200, 112), registry.load("default"))
    assert [(r.width, r.height) for r in plan.video] == [(200, 112)]
    assert len(plan.dropped) == 9


def test_audio_only_source_with_a_video_profile_fails_clearly():
    audio_only = SourceMedia(path="/x/a.m4a", format_name="mov", duration_s=5, size_bytes=1, bit_rate=None, video=None,
                             audio=source().audio)
    with pytest.raises(InputError, match="no video stream"):
        plan_ladder(audio_only, registry.load("default"))


def test_every_audio_track_becomes_a_rendition_with_its_language():
    plan = plan_ladder(source(audio=2), registry.load("720p"))
    assert [(a.language, a.source_position, a.default) for a in plan.audio] == [("eng", 0, True), ("fra", 1, False)]
    assert len({a.id for a in plan.audio}) == 2
    only_fra = plan_ladder(source(audio=2), registry.load("720p"), audio_tracks=("fra",))
    assert [a.language for a in only_fra.audio] == ["fra"]


def test_no_audio_gives_a_video_only_plan():
    plan = plan_ladder(source(audio=0), registry.load("720p"))
    assert plan.audio == () and any("no audio" in n for n in plan.notes)


def test_single_command_decodes_once_and_maps_every_rung(tmp_path):
    src = source()
    plan = plan_ladder(src, registry.load("default"))
    commands = build_commands(src, plan, str(tmp_path))
    assert len(commands) == 1
    argv = commands[0].argv
    assert argv.count("-i") == 1, "the source is opened (and decoded) once"
    graph = argv[argv.index("-filter_complex") + 1]
    assert "split=9" in graph and graph.count("scale=") == 9
    assert argv.count("-map") == 10  # 9 video rungs + 1 audio
    for n in range(9):
        assert argv[argv.index(f"-sc_threshold:v:{n}") + 1] == "0"
        assert argv[argv.index(f"-force_key_frames:v:{n}") + 1].startswith("expr:eq(mod(n,")
    assert "file:/x/in.mp4" in argv and argv[argv.index("-protocol_whitelist") + 1] == "file,pipe"
    assert shlex.split(commands[0].shell().split(" && ", 2)[2]) == argv


def test_two_pass_adds_an_analysis_pass(tmp_path):
    two_pass = tmp_path / "two-pass.toml"
    two_pass.write_text(f'extends = "{TINY_PROFILE}"\nrate_control = "2pass"\n')
    profile = registry.load(str(two_pass))
    plan = plan_ladder(source(640, 360), profile)
    commands = build_commands(source(640, 360), plan, str(tmp_path))
    assert [c.label for c in commands] == ["analysis pass", "encode"]
    assert "-pass:v:0" in commands[0].argv and commands[0].argv[commands[0].argv.index("-pass:v:0") + 1] == "1"
    assert commands[1].argv[commands[1].argv.index("-pass:v:0") + 1] == "2"
