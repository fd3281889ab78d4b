"""Every encoder through the real pipeline, checked on its output: keyframes exactly on the GOP grid
(ffprobe's K flags) and nowhere else, segments that decode on their own (closed GOPs), the exact
CODECS string in both manifests; two-pass and capped CRF; multi-codec ladders; audio codecs and
source languages; encoders this FFmpeg or machine lacks; and every built-in profile end to end."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from xml.etree import ElementTree

import m3u8
import pytest
from click.testing import CliRunner
from media import ffmpeg, ffprobe_json, joined_rendition, keyframe_times, requires_ffmpeg

from abrpipe import codecs, encode, mp4, package, registry, tools
from abrpipe.cli import cli
from abrpipe.errors import DependencyError, ExitCode, OutputError
from abrpipe.pipeline import Job, prepare_job, run_job
from abrpipe.plan import PlannedRung

pytestmark = requires_ffmpeg

ROOT = Path(__file__).resolve().parent.parent
MPD_NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
FPS = 30
GOP_S = 1
SECONDS = 4

# codec -> (CODECS prefix, ffprobe codec_name, ffprobe codec_tag_string)
VIDEO = {
    "h264": ("avc1.", "h264", "avc1"),
    "hevc": ("hvc1.", "hevc", "hvc1"),
    "vp9": ("vp09.", "vp9", "vp09"),
    "av1": ("av01.", "av1", "av01"),
    "av1-aom": ("av01.", "av1", "av01"),
}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """320x180 @ 30 fps, 4 s, with two stereo audio tracks tagged eng and fra."""
    path = tmp_path_factory.mktemp("codec-src") / "two languages.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={FPS},hue=H=t",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000",
           "-t", str(SECONDS), "-map", "0:v", "-map", "1:a", "-map", "2:a",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-c:a", "aac", "-ac", "2",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", str(path))
    return path


@pytest.fixture(scope="module")
def surround(tmp_path_factory) -> Path:
    """2 s of 5.1 audio only."""
    path = tmp_path_factory.mktemp("codec-src") / "surround.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=5.1",
           "-t", "2", "-c:a", "aac", "-b:a", "256k", str(path))
    return path


def profile_file(tmp: Path, name: str, text: str) -> str:
    path = tmp / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def ladder(codec: str, *, extra: str = "", rung_extra: str = "", audio: str = "") -> str:
    """Two rungs of `codec` with 1 s GOPs and 2 s segments."""
    audio = audio or '[[audio]]\ncodec = "aac"\nbitrate = "64k"\nchannels = 2\n'
    return (f'schema = 1\ncodec = "{codec}"\npreset = "ultrafast"\ngop = {GOP_S}\nsegment = 2\n{extra}\n'
            f'[[rungs]]\nsize = "320x180"\nbitrate = "300k"\n{rung_extra}\n'
            f'[[rungs]]\nsize = "256x144"\nbitrate = "150k"\n{rung_extra}\n{audio}')


def encode_with(tmp: Path, src: Path, text: str, **job) -> Path:
    out = tmp / "out"
    run_job(Job(input=str(src), output=str(out), profile=registry.load(profile_file(tmp, "p", text)), **job))
    return out


def video_dirs(out: Path) -> list[Path]:
    return [d for d in sorted(out.iterdir()) if d.is_dir() and not d.name.startswith("audio") and (d / "init.mp4").exists()]


def stream_info(path: Path) -> dict:
    return ffprobe_json("-show_streams", str(path))["streams"][0]


def master_variants(out: Path) -> list[m3u8.Playlist]:
    return m3u8.load(str(out / "master.m3u8")).playlists


def mpd_sets(out: Path) -> list[ElementTree.Element]:
    return ElementTree.parse(out / "manifest.mpd").getroot().findall("d:Period/d:AdaptationSet", MPD_NS)


def decoded_frames(path: Path) -> int:
    data = ffprobe_json("-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries", "stream=nb_read_frames", str(path))
    return int(data["streams"][0]["nb_read_frames"])


def assert_aligned_closed_gops(out: Path, tmp: Path, gop_s: float = GOP_S) -> None:
    """Keyframes exactly every gop_s and nowhere else, in every rendition; every segment starts with
    one and decodes without the previous segment (closed GOPs)."""
    grid = [float(t) for t in range(0, SECONDS, int(gop_s))]
    for rendition in video_dirs(out):
        # ffprobe's mov demuxer delays B-frame streams by their reordering depth (it turns negative
        # composition offsets into a positive pts shift): compare keyframes from the first frame.
        times = keyframe_times(rendition, tmp)
        assert [round(t - times[0], 3) for t in times] == grid, rendition.name
        track = mp4.read_init(rendition / "init.mp4")
        segments = sorted(rendition.glob("seg_*.m4s"))
        assert len(segments) == SECONDS // 2
        for seg in segments:
            info = mp4.read_segment(seg, track)
            assert info.starts_with_sync, seg
            assert [pts / track.timescale for pts in info.sync_sample_pts] == [info.base_decode_time / track.timescale + k for k in (0, 1)]
        alone = tmp / f"{rendition.name}-second-segment.mp4"
        alone.write_bytes((rendition / "init.mp4").read_bytes() + segments[1].read_bytes())
        assert decoded_frames(alone) == 2 * FPS, f"{rendition.name}: the second segment alone does not decode fully"


def assert_codecs_everywhere(out: Path, codec: str, tmp: Path) -> None:
    prefix, codec_name, tag = VIDEO[codec]
    declared = {v.uri.split("/")[0]: v.stream_info.codecs.split(",")[0] for v in master_variants(out)}
    mpd_codecs = {rep.get("id"): rep.get("codecs") for s in mpd_sets(out) for rep in s.findall("d:Representation", MPD_NS)}
    for rendition in video_dirs(out):
        exact = mp4.read_init(rendition / "init.mp4").codec
        assert exact.startswith(prefix), exact
        assert declared[rendition.name] == exact and mpd_codecs[rendition.name] == exact
        info = stream_info(joined_rendition(rendition, tmp))
        assert (info["codec_name"], info["codec_tag_string"]) == (codec_name, tag)


# ---------------------------------------------------------------------------------------------
# Each video encoder


@pytest.mark.parametrize("codec", [
    "h264",
    pytest.param("hevc", marks=pytest.mark.slow),
    pytest.param("vp9", marks=pytest.mark.slow),
    pytest.param("av1", marks=pytest.mark.slow),
    pytest.param("av1-aom", marks=pytest.mark.slow),
])
def test_video_encoder_aligned_closed_gops_and_exact_codecs(codec, source, tmp_path):
    out = encode_with(tmp_path, source, ladder(codec))
    assert_aligned_closed_gops(out, tmp_path)
    assert_codecs_everywhere(out, codec, tmp_path)


def test_two_source_languages_become_renditions_in_one_group(source, tmp_path):
    out = encode_with(tmp_path, source, ladder("h264"))
    media = m3u8.load(str(out / "master.m3u8")).media
    assert sorted((m.language, m.group_id) for m in media) == [("eng", "audio-aac-64k"), ("fra", "audio-aac-64k")]
    assert all(v.stream_info.audio == "audio-aac-64k" for v in master_variants(out))
    audio_sets = [s for s in mpd_sets(out) if s.get("contentType") == "audio"]
    assert sorted(s.get("lang") for s in audio_sets) == ["eng", "fra"]
    for m in media:  # each rendition really is its own source track (440 Hz vs 660 Hz tone aside, by language)
        assert mp4.read_init(out / m.uri.split("/")[0] / "init.mp4").codec == "mp4a.40.2"


def test_audio_track_option_selects_a_language(source, tmp_path):
    out = tmp_path / "fra-only"
    result = CliRunner().invoke(cli, ["encode", str(source), "-o", str(out), "-p", profile_file(tmp_path, "p", ladder("h264")),
                                      "--audio-track", "fra", "-q"])
    assert result.exit_code == 0, result.output
    media = m3u8.load(str(out / "master.m3u8")).media
    assert [(m.language, m.name) for m in media] == [("fra", "Français")]
    assert [s.get("lang") for s in mpd_sets(out) if s.get("contentType") == "audio"] == ["fra"]


def test_profile_audio_tracks_selects_too(source, tmp_path):
    _, plan = prepare_job(Job(input=str(source), output=str(tmp_path / "o"),
                              profile=registry.load(profile_file(tmp_path, "p", ladder("h264", extra='audio_tracks = ["eng"]')))))
    assert [(a.language, a.source_position) for a in plan.audio] == [("eng", 0)]


# ---------------------------------------------------------------------------------------------
# Audio encoders


def test_audio_encoders_codecs_and_channels(surround, tmp_path):
    text = """\
schema = 1
rungs = []
segment = 2
[[audio]]
codec = "aac"
bitrate = "96k"
channels = 2
[[audio]]
codec = "opus"
bitrate = "64k"
channels = 2
[[audio]]
codec = "opus"
bitrate = "160k"
channels = 6
[[audio]]
codec = "ac3"
bitrate = "384k"
channels = 6
[[audio]]
codec = "eac3"
bitrate = "192k"
channels = 6
[[audio]]
codec = "aac"
bitrate = "320k"
channels = 6
"""
    out = encode_with(tmp_path, surround, text)
    expected = {
        "audio-aac-96k": ("mp4a.40.2", "aac", 2),
        "audio-opus-64k": ("opus", "opus", 2),
        "audio-opus-160k-5.1": ("opus", "opus", 6),
        "audio-ac3-384k-5.1": ("ac-3", "ac3", 6),
        "audio-eac3-192k-5.1": ("ec-3", "eac3", 6),
        "audio-aac-320k-5.1": ("mp4a.40.2", "aac", 6),
    }
    mpd = {rep.get("id"): rep for s in mpd_sets(out) for rep in s.findall("d:Representation", MPD_NS)}
    master = m3u8.load(str(out / "master.m3u8"))
    # In an audio-only ladder each variant plays its group's main rendition, declared without a URI.
    variant_of_group = {p.stream_info.audio: p.uri for p in master.playlists}
    hls = {(m.uri or variant_of_group[m.group_id]).split("/")[0]: m for m in master.media}
    for rid, (codec, codec_name, channels) in expected.items():
        track = mp4.read_init(out / rid / "init.mp4")
        assert (track.codec, track.channels, track.sample_rate) == (codec, channels, 48000), rid
        info = stream_info(joined_rendition(out / rid, tmp_path))
        assert (info["codec_name"], info["channels"]) == (codec_name, channels), rid
        assert mpd[rid].get("codecs") == codec
        assert mpd[rid].find("d:AudioChannelConfiguration", MPD_NS).get("value") == str(channels)
        assert hls[rid].channels == str(channels)


def test_surround_rungs_skip_stereo_tracks(source, tmp_path):
    text = ladder("h264", audio='[[audio]]\ncodec = "aac"\nbitrate = "64k"\nchannels = 2\n'
                                '[[audio]]\ncodec = "eac3"\nbitrate = "192k"\nchannels = 6\n')
    _, plan = prepare_job(Job(input=str(source), output=str(tmp_path / "o"), profile=registry.load(profile_file(tmp_path, "p", text))))
    assert [a.id for a in plan.audio] == ["audio-aac-64k-eng", "audio-aac-64k-fra"]


def test_two_audio_rungs_from_one_track_share_its_decode(source, tmp_path):
    text = ladder("h264", audio='[[audio]]\ncodec = "aac"\nbitrate = "96k"\nchannels = 2\n'
                                '[[audio]]\ncodec = "aac"\nbitrate = "48k"\nchannels = 1\n', extra='audio_tracks = "first"')
    job = Job(input=str(source), output=str(tmp_path / "o"), profile=registry.load(profile_file(tmp_path, "p", text)))
    source_media, plan = prepare_job(job)
    argv = " ".join(encode.build_commands(source_media, plan, str(tmp_path))[0].argv)
    assert "asplit=2" in argv
    run_job(job)
    assert mp4.read_init(tmp_path / "o" / "audio-aac-48kmono" / "init.mp4").channels == 1


# ---------------------------------------------------------------------------------------------
# Rate control


def commands_for(tmp: Path, src: Path, text: str) -> list[list[str]]:
    source_media, plan = prepare_job(Job(input=str(src), output=str(tmp / "o"), profile=registry.load(profile_file(tmp, "p", text))))
    return [c.argv for c in encode.build_commands(source_media, plan, str(tmp))]


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_two_pass_x264_with_a_vbr_rung_beside_it(source, tmp_path):
    text = ladder("h264").replace('bitrate = "300k"\n', 'bitrate = "300k"\nrate_control = "2pass"\n', 1)
    analysis, main = commands_for(tmp_path, source, text)
    assert option(analysis, "-pass:v:0") == "1" and option(analysis, "-c:v:1") == "wrapped_avframe"
    assert option(analysis, "-f") == "null"
    assert option(main, "-pass:v:0") == "2" and option(main, "-pass:v:1") is None
    assert option(main, "-passlogfile:v:0") == option(analysis, "-passlogfile:v:0")
    out = encode_with(tmp_path, source, text)
    assert not [p for p in out.rglob("*") if "passlog" in p.name]
    assert_aligned_closed_gops(out, tmp_path)
    rendition = package.read_rendition(str(out), "180p-300k", "video")
    assert 0.6 * 300_000 < rendition.average_bps < 1.4 * 300_000


@pytest.mark.slow
def test_two_pass_x265_uses_its_own_parameters(source, tmp_path):
    text = ladder("hevc", extra='rate_control = "2pass"')
    analysis, main = commands_for(tmp_path, source, text)
    assert "pass=1:stats=hevc-180p-300k.passlog-x265.log" in option(analysis, "-x265-params:v:0")
    assert "pass=2:stats=hevc-180p-300k.passlog-x265.log" in option(main, "-x265-params:v:0")
    assert option(main, "-pass:v:0") is None  # libx265 ignores FFmpeg's -pass
    out = encode_with(tmp_path, source, text)
    assert not [p for p in out.rglob("*") if "passlog" in p.name]
    assert_aligned_closed_gops(out, tmp_path)


def test_two_pass_libvpx_and_libaom_use_ffmpeg_passes(source, tmp_path):
    for codec, mode, one_pass_mode in (("vp9", "-deadline:v:1", "realtime"), ("av1-aom", "-usage:v:1", "realtime")):
        analysis, main = commands_for(tmp_path, source, ladder(codec, extra='rate_control = "2pass"'))
        assert option(analysis, "-pass:v:1") == "1" and option(main, "-pass:v:1") == "2"
        # the fastest presets use one-pass realtime modes; a two-pass rung switches to 'good'
        assert option(analysis, mode) == option(main, mode) == "good"
        (one_pass,) = commands_for(tmp_path, source, ladder(codec))
        assert option(one_pass, mode) == one_pass_mode


@pytest.mark.slow
def test_two_pass_libvpx_encodes(source, tmp_path):
    out = encode_with(tmp_path, source, ladder("vp9", extra='rate_control = "2pass"'))
    assert not [p for p in out.rglob("*") if "passlog" in p.name]
    assert_aligned_closed_gops(out, tmp_path)
    rendition = package.read_rendition(str(out), "vp9-180p-300k", "video")
    assert 0.6 * 300_000 < rendition.average_bps < 1.4 * 300_000


def test_capped_crf_per_encoder(source, tmp_path):
    crf = 'rate_control = "crf"\ncrf = 20\nmaxrate_ratio = 1.2'
    (x264,) = commands_for(tmp_path, source, ladder("h264", extra=crf))
    assert option(x264, "-crf:v:0") == "20" and option(x264, "-maxrate:v:0") == "360k" and option(x264, "-b:v:0") is None
    (svt,) = commands_for(tmp_path, source, ladder("av1", extra=crf))
    assert option(svt, "-crf:v:0") == "20" and "mbr=360" in option(svt, "-svtav1-params:v:0")
    (vpx,) = commands_for(tmp_path, source, ladder("vp9", extra=crf))
    assert option(vpx, "-crf:v:0") == "20" and option(vpx, "-b:v:0") == "360k"  # constrained quality ceiling


@pytest.mark.slow
def test_svt_av1_capped_crf_holds_the_cap(source, tmp_path):
    out = encode_with(tmp_path, source, ladder("av1", extra='rate_control = "crf"\ncrf = 15'))
    capped = package.read_rendition(str(out), "av1-180p-300k", "video")
    assert capped.average_bps < 1.5 * 330_000  # maxrate 330k; uncapped crf 15 is several times that
    assert_aligned_closed_gops(out, tmp_path)


def test_libaom_is_not_given_forced_keyframes(source, tmp_path):
    (argv,) = commands_for(tmp_path, source, ladder("av1-aom"))
    # libaom codes the frame after a forced keyframe as a second keyframe: the interval is fixed instead.
    assert option(argv, "-force_key_frames:v:0") is None
    assert option(argv, "-g:v:0") == option(argv, "-keyint_min:v:0") == str(GOP_S * FPS)


# ---------------------------------------------------------------------------------------------
# Multi-codec


@pytest.mark.slow
def test_multi_codec_ladder_one_decode_one_playlist_one_mpd(source, tmp_path):
    text = """\
schema = 1
preset = "ultrafast"
gop = 1
segment = 2
[[rungs]]
codec = "h264"
size = "320x180"
bitrate = "300k"
[[rungs]]
codec = "hevc"
size = "320x180"
bitrate = "200k"
[[rungs]]
codec = "av1"
size = "320x180"
bitrate = "160k"
[[audio]]
codec = "aac"
bitrate = "64k"
channels = 2
"""
    commands = commands_for(tmp_path, source, text)
    assert len(commands) == 1 and " ".join(commands[0]).count("split=3") == 1  # one decode, three encoders
    out = encode_with(tmp_path, source, text)
    assert_aligned_closed_gops(out, tmp_path)
    variants = master_variants(out)
    video_codecs = [v.stream_info.codecs.split(",")[0][:5] for v in variants]
    assert sorted(video_codecs) == ["av01.", "avc1.", "hvc1."]
    assert {v.stream_info.audio for v in variants} == {"audio-aac-64k"}
    video_sets = [s for s in mpd_sets(out) if s.get("contentType") == "video"]
    assert sorted(rep.get("codecs")[:5] for s in video_sets for rep in s.findall("d:Representation", MPD_NS)) == ["av01.", "avc1.", "hvc1."]
    assert len(video_sets) == 3 and all(len(s.findall("d:Representation", MPD_NS)) == 1 for s in video_sets)


# ---------------------------------------------------------------------------------------------
# Encoders this FFmpeg build or machine lacks


def test_encoder_missing_from_the_build_stops_before_any_work(source, tmp_path):
    if "libfdk_aac" in tools.ffmpeg_encoders():
        pytest.skip("this FFmpeg has libfdk_aac")
    text = ladder("h264", audio='[[audio]]\ncodec = "he-aac"\nbitrate = "48k"\nchannels = 2\n')
    path = profile_file(tmp_path, "p", text)
    assert registry.load(path).audio[0].codec == "he-aac"  # the profile itself is fine
    out = tmp_path / "out"
    with pytest.raises(DependencyError) as info:
        run_job(Job(input=str(source), output=str(out), profile=registry.load(path)))
    assert "has no libfdk_aac encoder (needed by codec 'he-aac')" in info.value.message
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_hardware_encoder_without_its_device_is_a_clear_error(source, tmp_path):
    hardware = [e for e in codecs.registry().values() if isinstance(e, codecs.VideoEncoder) and e.hardware]
    missing = next((e for e in hardware if e.ffmpeg_encoder in tools.ffmpeg_encoders() and e.availability_problem()), None)
    if missing is None:
        pytest.skip("every hardware encoder this FFmpeg lists works on this machine")
    problem = missing.availability_problem()
    assert problem.startswith(f"{missing.ffmpeg_encoder} is in this FFmpeg build but cannot run on this machine (")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["encode", str(source), "-o", str(out), "-p",
                                      profile_file(tmp_path, "p", ladder(missing.name).replace('preset = "ultrafast"', 'preset = "fast"'))])
    assert isinstance(result.exception, DependencyError) and result.exception.exit_code == ExitCode.DEPENDENCY
    assert problem in result.exception.message
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_hardware_encoders_express_gop_and_rate_control():
    plan_rung = PlannedRung(id="r", codec="h264-nvenc", width=640, height=360, fps=30, fps_divisor=1, bitrate_kbps=800,
                                   maxrate_kbps=880, bufsize_kbps=1600, crf=None, codec_profile=None, level=None, gop_frames=60)
    nvenc = codecs.get("h264-nvenc").output_options(plan_rung, _plan())
    assert nvenc["c:v"] == "h264_nvenc" and nvenc["preset"] == "p2" and nvenc["g"] == "60" and nvenc["forced-idr"] == "1"
    assert nvenc["force_key_frames"] == "expr:eq(mod(n,60),0)" and nvenc["no-scenecut"] == "1" and nvenc["rc"] == "vbr"
    vaapi = codecs.get("hevc-vaapi")
    assert [name for name, _ in vaapi.filters(plan_rung)] == ["format", "hwupload"]
    assert vaapi.input_options()["init_hw_device"].startswith("vaapi=") and vaapi.output_options(plan_rung, _plan())["tag:v"] == "hvc1"


def _plan():
    from abrpipe.plan import LadderPlan

    return LadderPlan(profile_name="t", preset="veryfast", rate_control="vbr", base_fps=30, gop_frames=60, segment_gops=3,
                      video=(), audio=(), dropped=(), deinterlace=False, tonemap=False, notes=(), outputs=("hls", "dash"))


# ---------------------------------------------------------------------------------------------
# The codec-string hook


def test_codec_string_hook_of_an_encoder_plugin(source, tmp_path, monkeypatch):
    out = encode_with(tmp_path, source, ladder("h264"))
    original = codecs.get("h264")

    class Renamed(codecs.X264):
        def codec_string(self, track):
            return track.codec.replace("avc1.", "avc3.")

    monkeypatch.setitem(codecs.registry(), "h264", Renamed(*[getattr(original, f) for f in ("name", "ffmpeg_encoder", "family", "description")]))
    _, plan = prepare_job(Job(input=str(source), output=str(tmp_path / "x"), profile=registry.load(str(tmp_path / "p.toml"))))
    title = package.read_title(str(out), plan)
    assert all(v.codec.startswith("avc3.") for v in title.video)
    assert all(a.codec == "mp4a.40.2" for a in title.audio)


def test_an_unpromised_sample_entry_is_an_error(source, tmp_path, monkeypatch):
    out = encode_with(tmp_path, source, ladder("h264"))
    _, plan = prepare_job(Job(input=str(source), output=str(tmp_path / "x"), profile=registry.load(str(tmp_path / "p.toml"))))
    assert package.read_title(str(out), plan).video[0].codec.startswith("avc1.")
    original = codecs.get("h264")
    monkeypatch.setitem(codecs.registry(), "h264", dataclasses.replace(original, sample_entries=("avc3",)))
    with pytest.raises(OutputError, match="codec 'h264' \\(libx264\\) wrote a 'avc1' sample entry, not 'avc3'"):
        package.read_title(str(out), plan)


# ---------------------------------------------------------------------------------------------
# Every built-in profile, end to end


BUILTINS = ("default", "1080p", "720p", "480p", "hevc", "av1", "vp9", "multi-codec", "crf", "mobile", "audio-only")
FAMILIES = {"default": {"avc1"}, "1080p": {"avc1"}, "720p": {"avc1"}, "480p": {"avc1"}, "hevc": {"hvc1"}, "av1": {"av01"},
            "vp9": {"vp09"}, "multi-codec": {"avc1", "hvc1", "av01"}, "crf": {"avc1"}, "mobile": {"avc1"}, "audio-only": set()}


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory) -> Path:
    """A short stand-in for the demo source: 640x360, 2 s, two languages."""
    path = tmp_path_factory.mktemp("demo") / "demo.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30,hue=H=t",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000",
           "-t", "2", "-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profile_encodes_and_validates(name, demo_clip, tmp_path):
    out = tmp_path / name
    result = run_job(Job(input=str(demo_clip), output=str(out), profile=registry.load(name), preset="ultrafast"))
    assert result.validation is not None and not result.validation.errors  # run_job publishes only a valid result
    video = {r.codec[:4] for r in result.title.video}
    assert video == FAMILIES[name]
    assert {a.language for a in result.title.audio} == {"eng", "fra"}
    assert (out / "master.m3u8").is_file() and (out / "manifest.mpd").is_file()


# ---------------------------------------------------------------------------------------------
# Real players (headless Chromium plays H.264, VP9, AV1, AAC and Opus; not HEVC or Dolby audio)


def _harness():
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    import harness

    harness.require_browser()
    return harness


@pytest.fixture(scope="module")
def six_seconds(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("play") / "six.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30,hue=H=t", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-metadata:s:a:0", "language=eng", str(path))
    return path


PLAYABLE = {
    "vp9-opus": ('codec = "vp9"', '[[audio]]\ncodec = "opus"\nbitrate = "64k"\nchannels = 2\n'),
    "av1-aac": ('codec = "av1"', '[[audio]]\ncodec = "aac"\nbitrate = "64k"\nchannels = 2\n'),
}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("kind,player,manifest", [
    ("vp9-opus", "dashjs", "manifest.mpd"), ("vp9-opus", "hlsjs", "master.m3u8"), ("av1-aac", "hlsjs", "master.m3u8"),
])
def test_browser_plays_vp9_opus_and_av1(kind, player, manifest, six_seconds, tmp_path):
    harness = _harness()
    codec_line, audio = PLAYABLE[kind]
    text = re.sub(r'codec = "h264"', codec_line, ladder("h264", audio=audio).replace('size = "320x180"', 'size = "640x360"'), count=1)
    out = encode_with(tmp_path, six_seconds, text)
    r = harness.play(out, player, manifest, seconds=60)
    assert r["ok"], harness.summary(r)
    assert sorted(level["height"] for level in r["levels"]) == [144, 360], harness.summary(r)


@pytest.mark.browser
@pytest.mark.slow
def test_browser_plays_the_playable_codecs_of_a_multi_codec_title(six_seconds, tmp_path):
    """hls.js skips the HEVC variants Chromium cannot decode and plays the H.264 and AV1 ones."""
    harness = _harness()
    out = run_job(Job(input=str(six_seconds), output=str(tmp_path / "mc"), profile=registry.load("multi-codec"),
                      preset="ultrafast")).job.output
    variants = {v.stream_info.codecs.split(",")[0][:4]: v.stream_info.bandwidth for v in master_variants(Path(out))}
    assert set(variants) == {"avc1", "hvc1", "av01"}
    r = harness.play(out, "hlsjs", "master.m3u8", seconds=60)
    assert r["ok"], harness.summary(r)
    assert sorted(level["bandwidth"] for level in r["levels"]) == sorted([variants["avc1"], variants["av01"]]), harness.summary(r)
