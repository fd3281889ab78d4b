"""Tests for abrpipe.mp4, the ISO-BMFF (fMP4/CMAF) reader.

Two kinds of tests:

* real media made by ffmpeg from lavfi sources into a temporary directory
  (skipped when ffmpeg/ffprobe are not installed), cross-checked with ffprobe;
* hand-built boxes for layouts ffmpeg does not produce (64-bit sizes, explicit
  base offsets, several trafs/truns, negative composition offsets, HE-AAC ...).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from abrpipe.mp4 import (
    Mp4Error,
    TrackInfo,
    read_init,
    read_segment,
    read_tracks,
)

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")

VIDEO_SRC = ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"]
AUDIO_SRC = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
AUDIO_51_SRC = [
    "-f", "lavfi", "-i", "sine=sample_rate=48000,aformat=channel_layouts=5.1",
]
HLS_FMP4 = [
    "-f", "hls", "-hls_segment_type", "fmp4", "-hls_playlist_type", "vod",
    "-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename", "seg_%05d.m4s",
]


@pytest.fixture(scope="module")
def ffmpeg() -> None:
    if not (FFMPEG and FFPROBE):
        pytest.skip("ffmpeg/ffprobe not installed")


def run_ffmpeg(cwd: Path, *args: str) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        cwd=cwd, check=True, capture_output=True, timeout=120,
    )


def encode_hls(out: Path, *args: str, hls_time: float = 1) -> Path:
    run_ffmpeg(out, *args, *HLS_FMP4, "-hls_time", str(hls_time), "out.m3u8")
    return out


def segments(out: Path) -> list[Path]:
    return sorted(out.glob("seg_*.m4s"))


def ffprobe_json(path: Path, *args: str) -> dict:
    result = subprocess.run(
        [FFPROBE, "-v", "error", "-of", "json", *args, str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    )
    return json.loads(result.stdout)


def concatenated(out: Path, init: str = "init.mp4", pattern: str = "seg_*.m4s") -> Path:
    """init + all segments as one fMP4 file, for ffprobe."""
    whole = out / "whole.mp4"
    whole.write_bytes(
        (out / init).read_bytes() + b"".join(p.read_bytes() for p in sorted(out.glob(pattern)))
    )
    return whole


# --------------------------------------------------------------------------
# CODECS strings from real encoders, cross-checked with ffprobe

H264_PROFILES = {"Constrained Baseline": 66, "Baseline": 66, "Main": 77, "High": 100,
                 "High 10": 110}
HEVC_PROFILES = {"Main": 1, "Main 10": 2}
AV1_PROFILES = {"Main": 0, "High": 1, "Professional": 2}

V1 = [*VIDEO_SRC, "-t", "1"]
A1 = [*AUDIO_SRC, "-t", "1"]
CODEC_CASES = {
    # id: (ffmpeg args, expected CODECS (exact, or regex when the encoder picks))
    "x264-baseline-3.0": ([*V1, "-c:v", "libx264", "-preset", "ultrafast",
                           "-profile:v", "baseline", "-level", "3.0"], "avc1.42c01e"),
    "x264-main-3.1": ([*V1, "-c:v", "libx264", "-preset", "superfast",
                       "-profile:v", "main", "-level", "3.1"], "avc1.4d401f"),
    "x264-high-4.0": ([*V1, "-c:v", "libx264", "-preset", "superfast",
                       "-profile:v", "high", "-level", "4.0"], "avc1.640028"),
    "x264-high10": ([*V1, "-c:v", "libx264", "-preset", "ultrafast",
                     "-profile:v", "high10", "-pix_fmt", "yuv420p10le"], r"avc1\.6e00[0-9a-f]{2}"),
    "x265-hvc1": ([*V1, "-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
                   "-x265-params", "log-level=error"], r"hvc1\.1\.6\.L\d+(\.[0-9A-F]{1,2})*"),
    "x265-main10-hev1": ([*V1, "-c:v", "libx265", "-preset", "ultrafast",
                          "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error"],
                         r"hev1\.2\.4\.L\d+(\.[0-9A-F]{1,2})*"),
    "vp9-profile0": ([*V1, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                      "-b:v", "200k"], r"vp09\.00\.\d\d\.08"),
    "vp9-profile2-10bit": ([*V1, "-c:v", "libvpx-vp9", "-deadline", "realtime",
                            "-cpu-used", "8", "-b:v", "200k", "-pix_fmt", "yuv420p10le"],
                           r"vp09\.02\.\d\d\.10"),
    "av1-svt": ([*V1, "-c:v", "libsvtav1", "-preset", "12"], r"av01\.0\.\d\dM\.08"),
    "av1-svt-10bit": ([*V1, "-c:v", "libsvtav1", "-preset", "12", "-pix_fmt", "yuv420p10le"],
                      r"av01\.0\.\d\dM\.10"),
    "av1-aom": ([*V1, "-c:v", "libaom-av1", "-cpu-used", "8", "-usage", "realtime",
                 "-b:v", "200k"], r"av01\.0\.\d\dM\.08"),
    "aac-stereo": ([*A1, "-c:a", "aac", "-ac", "2"], "mp4a.40.2"),
    "aac-5.1": ([*AUDIO_51_SRC, "-t", "1", "-c:a", "aac"], "mp4a.40.2"),
    # ffmpeg's mp4 muxer writes channelcount 2 in every audio sample entry and
    # MP3 has no codec config box, so use a stereo source here
    "mp3": ([*A1, "-c:a", "libmp3lame", "-ac", "2"], "mp4a.6B"),
    "opus": ([*A1, "-c:a", "libopus", "-ac", "2"], "opus"),
    "ac3-5.1": ([*AUDIO_51_SRC, "-t", "1", "-c:a", "ac3"], "ac-3"),
    "eac3": ([*A1, "-c:a", "eac3", "-ac", "2"], "ec-3"),
    "flac": ([*A1, "-c:a", "flac", "-ac", "2", "-strict", "experimental"], "fLaC"),
}


@pytest.mark.parametrize("case", list(CODEC_CASES))
def test_codec_string_matches_ffprobe(ffmpeg: None, tmp_path: Path, case: str) -> None:
    args, expected = CODEC_CASES[case]
    out = encode_hls(tmp_path, *args)
    track = read_init(out / "init.mp4")
    assert re.fullmatch(expected, track.codec), track.codec
    assert track.codec.split(".")[0] in {track.sample_entry, track.sample_entry.lower()}

    info = ffprobe_json(concatenated(out), "-show_streams")["streams"][0]
    assert track.sample_entry == info["codec_tag_string"]
    assert track.timescale == int(info["time_base"].split("/")[1])
    if info["codec_type"] == "video":
        assert track.handler == "vide"
        assert (track.width, track.height) == (info["width"], info["height"]) == (320, 180)
        assert track.channels is None and track.sample_rate is None
    else:
        assert track.handler == "soun"
        assert track.width is None and track.height is None
        assert track.channels == info["channels"]
        assert track.sample_rate == int(info["sample_rate"]) == 48000

    parts = track.codec.split(".")
    name = info["codec_name"]
    if name == "h264":
        assert int(parts[1][0:2], 16) == H264_PROFILES[info["profile"]]
        assert int(parts[1][4:6], 16) == info["level"]
    elif name == "hevc":
        assert int(parts[1]) == HEVC_PROFILES[info["profile"]]
        assert int(parts[3][1:]) == info["level"]
    elif name == "vp9":
        assert int(parts[1]) == int(info["profile"].removeprefix("Profile "))
    elif name == "av1":
        assert int(parts[1]) == AV1_PROFILES[info["profile"]]
        assert int(parts[2][:2]) == info["level"]
    elif name == "aac":
        assert info["profile"] == "LC"
    if case.endswith("5.1"):
        assert track.channels == 6
    assert track.language is None  # ffmpeg writes 'und'
    assert track.default_sample_duration is not None  # ffmpeg always writes trex


# --------------------------------------------------------------------------
# Timelines of real HLS output


@pytest.fixture(scope="module")
def muxed(ffmpeg: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of 30 fps H.264 (GOP 30, B-frames) + AAC, muxed, 1-s HLS fMP4 segments."""
    out = tmp_path_factory.mktemp("muxed")
    return encode_hls(
        out, *VIDEO_SRC, *AUDIO_SRC, "-t", "4", "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "superfast", "-g", "30", "-keyint_min", "30",
        "-sc_threshold", "0", "-c:a", "aac", "-ac", "2", hls_time=1,
    )


def test_muxed_init_has_both_tracks(muxed: Path) -> None:
    video, audio = read_tracks(muxed / "init.mp4")
    assert (video.handler, audio.handler) == ("vide", "soun")
    assert video.codec.startswith("avc1.64") and audio.codec == "mp4a.40.2"
    assert video.track_id != audio.track_id
    assert read_init(muxed / "init.mp4") == video
    assert (audio.channels, audio.sample_rate) == (2, 48000)


def test_timeline_is_contiguous_and_segments_start_with_sync(muxed: Path) -> None:
    segs = segments(muxed)
    assert len(segs) == 4
    for track in read_tracks(muxed / "init.mp4"):
        parsed = [read_segment(p, track) for p in segs]
        assert parsed[0].base_decode_time == 0
        for prev, nxt in itertools.pairwise(parsed):
            assert prev.base_decode_time + prev.duration == nxt.base_decode_time
        for seg, path in zip(parsed, segs, strict=True):
            assert seg.path == str(path)
            assert seg.size_bytes == path.stat().st_size
            assert seg.starts_with_sync  # GOP == segment for video; audio: all sync
            assert len(seg.fragments) == 1
            frag = seg.fragments[0]
            assert frag.offset + frag.size == seg.size_bytes  # moof..mdat ends the file
            assert frag.offset < frag.first_sample_data_offset < seg.size_bytes
            assert frag.first_sample_size > 0
        assert [s.fragments[0].sequence_number for s in parsed] == [1, 2, 3, 4]
        total = sum(s.duration for s in parsed) / track.timescale
        assert total == pytest.approx(4.0, abs=0.05)
        if track.handler == "vide":
            # one keyframe per segment; B-frames shift presentation by the
            # composition offset of the first sample
            for seg in parsed:
                assert len(seg.sync_sample_pts) == 1
                assert seg.sync_sample_pts[0] == seg.earliest_presentation_time
                assert seg.earliest_presentation_time >= seg.base_decode_time


def test_sync_samples_match_ffprobe_keyframes(muxed: Path) -> None:
    video, audio = read_tracks(muxed / "init.mp4")
    probe = ffprobe_json(concatenated(muxed), "-show_packets")["packets"]
    for track, index in ((video, 0), (audio, 1)):
        packets = [p for p in probe if p["stream_index"] == index]
        key_pts = [int(p["pts"]) for p in packets if "K" in p["flags"]]
        parsed = [read_segment(p, track) for p in segments(muxed)]
        sync = [pts for s in parsed for pts in s.sync_sample_pts]
        assert sum(f.sample_count for s in parsed for f in s.fragments) == len(packets)
        assert len(sync) == len(key_pts)
        # ffprobe applies the edit list, so the times agree up to one constant shift
        assert len({ours - theirs for ours, theirs in zip(sync, key_pts, strict=True)}) == 1
        if track.handler == "vide":
            assert len(sync) == 4  # 4 s, GOP 1 s
        else:
            assert len(sync) == len(packets)  # every AAC frame is a sync sample


def test_segment_without_bframes_pts_equal_ffprobe(ffmpeg: None, tmp_path: Path) -> None:
    out = encode_hls(
        tmp_path, *VIDEO_SRC, "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
        "-g", "10", "-keyint_min", "10", "-sc_threshold", "0", hls_time=1,
    )
    track = read_init(out / "init.mp4")
    ours = [pts for p in segments(out) for pts in read_segment(p, track).sync_sample_pts]
    probe = ffprobe_json(concatenated(out), "-show_packets")["packets"]
    assert ours == [int(p["pts"]) for p in probe if "K" in p["flags"]]
    assert ours == [i * track.timescale // 3 for i in range(6)]  # every 10 frames


# --------------------------------------------------------------------------
# Several fragments per segment


def test_mp4_muxer_frag_keyframe_gives_one_fragment_per_gop(ffmpeg: None, tmp_path: Path) -> None:
    run_ffmpeg(
        tmp_path, *VIDEO_SRC, "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
        "-g", "15", "-keyint_min", "15", "-sc_threshold", "0",
        "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "frag.mp4",
    )
    path = tmp_path / "frag.mp4"
    track = read_init(path)  # the moov at the head of the file
    seg = read_segment(path, track)  # ftyp/moov skipped, then moof+mdat pairs
    assert len(seg.fragments) == 4
    assert [f.sample_count for f in seg.fragments] == [15] * 4
    assert all(f.first_sample_is_sync and len(f.sync_sample_pts) == 1 for f in seg.fragments)
    for prev, nxt in itertools.pairwise(seg.fragments):
        assert prev.base_decode_time + prev.duration == nxt.base_decode_time
        assert prev.offset + prev.size == nxt.offset  # moof+mdat pairs are adjacent
        assert nxt.sequence_number == prev.sequence_number + 1
    assert seg.duration == 2 * track.timescale
    assert seg.sync_sample_pts == tuple(i * track.timescale // 2 for i in range(4))
    data = path.read_bytes()
    first = seg.fragments[0]
    # the first sample is an IDR access unit: a 4-byte length-prefixed NAL stream
    nal_len = int.from_bytes(data[first.first_sample_data_offset:][:4], "big")
    assert 0 < nal_len <= first.first_sample_size


def test_dash_muxer_gives_one_moof_per_gop_in_longer_segments(
    ffmpeg: None, tmp_path: Path
) -> None:
    # The recipe for I-frame byte ranges: segments of 4 GOPs, one moof per GOP.
    run_ffmpeg(
        tmp_path, *VIDEO_SRC, "-t", "3", "-c:v", "libx264", "-preset", "ultrafast",
        "-g", "15", "-keyint_min", "15", "-sc_threshold", "0",
        "-f", "dash", "-seg_duration", "2", "-frag_type", "duration", "-frag_duration", "0.5",
        "-init_seg_name", "init.mp4", "-media_seg_name", "seg_$Number%05d$.m4s", "out.mpd",
    )
    track = read_init(tmp_path / "init.mp4")
    parsed = [read_segment(p, track) for p in segments(tmp_path)]
    assert [len(s.fragments) for s in parsed] == [4, 2]
    frags = [f for s in parsed for f in s.fragments]
    assert all(f.first_sample_is_sync and len(f.sync_sample_pts) == 1 for f in frags)
    assert [f.base_decode_time for f in frags] == [i * track.timescale // 2 for i in range(6)]


# --------------------------------------------------------------------------
# Broken input


def test_truncated_segment_raises_naming_the_file(muxed: Path, tmp_path: Path) -> None:
    track = read_init(muxed / "init.mp4")
    data = segments(muxed)[1].read_bytes()
    for keep in (len(data) - 1, len(data) // 2, 30, 3):
        cut = tmp_path / f"seg_cut_{keep}.m4s"
        cut.write_bytes(data[:keep])
        with pytest.raises(Mp4Error, match=re.escape(str(cut)) + ": truncated") as info:
            read_segment(cut, track)
        if keep == len(data) - 1:
            assert re.search(r"truncated box 'mdat' at byte \d+ \(declares \d+ bytes, \d+ present\)",
                             str(info.value))


def test_truncated_init_raises(muxed: Path, tmp_path: Path) -> None:
    data = (muxed / "init.mp4").read_bytes()
    cut = tmp_path / "init_cut.mp4"
    cut.write_bytes(data[:-10])
    with pytest.raises(Mp4Error, match=r"init_cut\.mp4: truncated box 'moov'"):
        read_init(cut)


def test_init_and_segment_are_not_interchangeable(muxed: Path) -> None:
    track = read_init(muxed / "init.mp4")
    with pytest.raises(Mp4Error, match="no 'moov'"):
        read_init(segments(muxed)[0])
    with pytest.raises(Mp4Error, match="no 'moof'"):
        read_segment(muxed / "init.mp4", track)


def test_random_bytes_raise(tmp_path: Path) -> None:
    rng = random.Random(1234)
    track = _track()
    for n in (0, 5, 64, 4096):
        blob = rng.randbytes(n)
        path = tmp_path / f"random_{n}.bin"
        path.write_bytes(blob)
        for call in (lambda p: read_init(p), lambda p: read_segment(p, track)):
            with pytest.raises(Mp4Error, match=re.escape(str(path))):
                call(path)
            with pytest.raises(Mp4Error, match="<bytes>"):
                call(blob)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_init(tmp_path / "nope.mp4")


# --------------------------------------------------------------------------
# Hand-built boxes


def box(btype: str, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), btype.encode("latin-1")) + body


def full_box(btype: str, version: int, flags: int, *payload: bytes) -> bytes:
    return box(btype, struct.pack(">I", version << 24 | flags), *payload)


def bits(*fields: tuple[int, int]) -> bytes:
    """Pack (width, value) bit fields MSB first, zero-padded to whole bytes."""
    value = nbits = 0
    for width, field in fields:
        value = value << width | field
        nbits += width
    pad = -nbits % 8
    return (value << pad).to_bytes((nbits + pad) // 8, "big")


def visual_entry(fourcc: str, config: bytes, width: int = 640, height: int = 360) -> bytes:
    return box(fourcc, bytes(6), struct.pack(">H", 1), bytes(16),
               struct.pack(">HH", width, height), bytes(50), config)


def audio_entry(fourcc: str, config: bytes, channels: int = 2, rate: int = 48000) -> bytes:
    return box(fourcc, bytes(6), struct.pack(">H", 1), bytes(8),
               struct.pack(">HHHHI", channels, 16, 0, 0, rate << 16), config)


def lang_code(code: str) -> int:
    return sum((ord(c) - 0x60) << shift for c, shift in zip(code, (10, 5, 0), strict=True))


def make_init(entry: bytes, *, handler: str = "vide", track_id: int = 1,
              timescale: int = 90000, language: str = "und", mdhd_version: int = 0,
              trex: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    tkhd = full_box("tkhd", 0, 3, struct.pack(">III", 0, 0, track_id), bytes(72))
    if mdhd_version == 1:
        times = struct.pack(">QQIQ", 0, 0, timescale, 0)
    else:
        times = struct.pack(">IIII", 0, 0, timescale, 0)
    mdhd = full_box("mdhd", mdhd_version, 0, times, struct.pack(">HH", lang_code(language), 0))
    hdlr = full_box("hdlr", 0, 0, struct.pack(">I4s12x", 0, handler.encode()), b"h\0")
    stsd = full_box("stsd", 0, 0, struct.pack(">I", 1), entry)
    trak = box("trak", tkhd, box("mdia", mdhd, hdlr, box("minf", box("stbl", stsd))))
    mvex = box("mvex", full_box("trex", 0, 0, struct.pack(">5I", track_id, 1, *trex)))
    moov = box("moov", full_box("mvhd", 0, 0, bytes(96)), trak, mvex)
    return box("ftyp", b"iso6", bytes(4), b"iso6cmfc") + moov


AVCC = box("avcC", bytes([1, 0x64, 0x00, 0x1F, 0xFF, 0xE0, 0x00]))


def _track(**overrides: object) -> TrackInfo:
    fields: dict[str, object] = dict(
        track_id=1, handler="vide", timescale=90000, codec="avc1.64001f",
        sample_entry="avc1", width=640, height=360, channels=None, sample_rate=None,
        language=None, default_sample_duration=None, default_sample_size=None,
        default_sample_flags=None,
    )
    fields.update(overrides)
    return TrackInfo(**fields)  # type: ignore[arg-type]


def test_synthetic_init_fields() -> None:
    data = make_init(visual_entry("avc3", AVCC), language="eng", mdhd_version=1,
                     timescale=12800, track_id=7, trex=(512, 100, 0x01010000))
    track = read_init(data)
    assert track == TrackInfo(
        track_id=7, handler="vide", timescale=12800, codec="avc3.64001f",
        sample_entry="avc3", width=640, height=360, channels=None, sample_rate=None,
        language="eng", default_sample_duration=512, default_sample_size=100,
        default_sample_flags=0x01010000,
    )


def test_init_without_mvex_is_rejected() -> None:
    data = make_init(visual_entry("avc1", AVCC))
    moov_at = data.index(b"moov") - 4
    mvex_at = data.index(b"mvex") - 4
    mvex_size = struct.unpack_from(">I", data, mvex_at)[0]
    moov = data[moov_at:mvex_at] + data[mvex_at + mvex_size:]
    moov = struct.pack(">I", len(moov)) + moov[4:]
    with pytest.raises(Mp4Error, match="not a fragmented MP4 init segment"):
        read_init(data[:moov_at] + moov)


def test_missing_or_short_codec_config_is_rejected() -> None:
    with pytest.raises(Mp4Error, match=r"'avc1' sample entry at byte \d+ has no 'avcC' box"):
        read_init(make_init(visual_entry("avc1", b"")))
    with pytest.raises(Mp4Error, match=r"box 'hvcC' at byte \d+ is too short"):
        read_init(make_init(visual_entry("hvc1", box("hvcC", bytes(5)))))
    with pytest.raises(Mp4Error, match=r"'mp4a' sample entry .* has no 'esds'"):
        read_init(make_init(audio_entry("mp4a", b""), handler="soun"))
    # a 4-byte zero terminator after the config (QuickTime habit) is tolerated
    assert read_init(make_init(visual_entry("avc1", AVCC + bytes(4)))).codec == "avc1.64001f"


def test_hevc_codec_string_rules() -> None:
    # profile_space 1 ('A'), tier high, profile 4, compatibility flag 4 only
    # (bit 27 -> reversed 0x10), level 120, constraint bytes B0 00 23 00 00 00.
    hvcc = box("hvcC", bytes([1, 0x40 | 0x20 | 4]), struct.pack(">I", 1 << 27),
               bytes([0xB0, 0x00, 0x23, 0, 0, 0]), bytes([120]), bytes(16))
    assert read_init(make_init(visual_entry("hev1", hvcc))).codec == "hev1.A4.10.H120.B0.0.23"
    # Main profile: compatibility flags 1 and 2 -> 0x60000000 reversed = 6
    hvcc = box("hvcC", bytes([1, 1]), struct.pack(">I", 0x60000000), bytes(6), bytes([93]))
    assert read_init(make_init(visual_entry("hvc1", hvcc))).codec == "hvc1.1.6.L93"


def test_av1_and_vp9_codec_strings() -> None:
    av1c = box("av1C", bytes([0x81, 1 << 5 | 13, 0x80 | 0x40 | 0x20 | 0x0C, 0]))
    assert read_init(make_init(visual_entry("av01", av1c))).codec == "av01.1.13H.12"
    vpcc = full_box("vpcC", 1, 0, bytes([2, 41, 10 << 4 | 2 << 1, 9, 16, 9]), bytes(2))
    assert read_init(make_init(visual_entry("vp09", vpcc))).codec == "vp09.02.41.10"


def esds(oti: int, asc: bytes, long_sizes: bool = False) -> bytes:
    def desc(tag: int, body: bytes) -> bytes:
        size = bytes([0x80, 0x80, 0x80, len(body)]) if long_sizes else bytes([len(body)])
        return bytes([tag]) + size + body

    dcd = desc(4, struct.pack(">BB3sII", oti, 0x15, bytes(3), 0, 0) + desc(5, asc))
    return full_box("esds", 0, 0, desc(3, struct.pack(">HB", 1, 0) + dcd + desc(6, b"\x02")))


@pytest.mark.parametrize(
    ("oti", "asc", "codec", "channels", "rate"),
    [
        (0x40, bits((5, 2), (4, 3), (4, 2)), "mp4a.40.2", 2, 48000),
        # HE-AAC explicit: AOT 5, core 24 kHz, extension 48 kHz, then core AOT 2
        (0x40, bits((5, 5), (4, 6), (4, 2), (4, 3), (5, 2)), "mp4a.40.5", 2, 48000),
        # HE-AACv2: AOT 29, mono core decodes to stereo
        (0x40, bits((5, 29), (4, 6), (4, 1), (4, 3), (5, 2)), "mp4a.40.29", 2, 48000),
        # escaped AOT: 31 then 6 bits -> 32 + 10 = 42 (USAC), explicit 44.1 kHz
        (0x40, bits((5, 31), (6, 10), (4, 15), (24, 44100), (4, 1)), "mp4a.40.42", 1, 44100),
        # channelConfiguration 7 is 7.1 (8 channels)
        (0x40, bits((5, 2), (4, 3), (4, 7)), "mp4a.40.2", 8, 48000),
        (0x6B, b"", "mp4a.6B", 2, 48000),  # MP3: entry's channel count stays
    ],
)
def test_mp4a_codec_strings(oti: int, asc: bytes, codec: str, channels: int, rate: int) -> None:
    for long_sizes in (False, True):
        entry = audio_entry("mp4a", esds(oti, asc, long_sizes), channels=2, rate=48000)
        track = read_init(make_init(entry, handler="soun", timescale=48000))
        assert (track.codec, track.channels, track.sample_rate) == (codec, channels, rate)


def test_ac3_family_channels() -> None:
    # dac3: fscod 1 (44.1 kHz), bsid 8, bsmod 0, acmod 7 (3/2), lfeon 1
    dac3 = box("dac3", bits((2, 1), (5, 8), (3, 0), (3, 7), (1, 1), (5, 10), (5, 0)))
    track = read_init(make_init(audio_entry("ac-3", dac3), handler="soun"))
    assert (track.codec, track.channels, track.sample_rate) == ("ac-3", 6, 44100)
    # dec3: one independent substream 3/2+LFE with a dependent substream adding
    # Lrs/Rrs (chan_loc bit 1): 7.1
    dec3 = box("dec3", bits((13, 768), (3, 0), (2, 0), (5, 16), (1, 0), (1, 0), (3, 0),
                            (3, 7), (1, 1), (3, 0), (4, 1), (9, 0b10)))
    track = read_init(make_init(audio_entry("ec-3", dec3), handler="soun"))
    assert (track.codec, track.channels, track.sample_rate) == ("ec-3", 8, 48000)
    dops = box("dOps", bytes([0, 6]), struct.pack(">HIhB", 312, 44100, 0, 1), bytes(8))
    track = read_init(make_init(audio_entry("Opus", dops), handler="soun"))
    assert (track.codec, track.channels, track.sample_rate) == ("opus", 6, 48000)


def tfhd(track_id: int, flags: int, *fields: bytes) -> bytes:
    return full_box("tfhd", 0, flags, struct.pack(">I", track_id), *fields)


def trun(version: int, flags: int, samples: list[tuple[int, ...]], *,
         data_offset: int | None = None, first_flags: int | None = None) -> bytes:
    head = struct.pack(">I", len(samples))
    if data_offset is not None:
        head += struct.pack(">i", data_offset)
    if first_flags is not None:
        head += struct.pack(">I", first_flags)
    width = len(samples[0]) if samples else 0
    fmt = ">" + "I" * (width - 1) + ("i" if version else "I") if width else ""
    rows = b"".join(struct.pack(fmt, *s) for s in samples if s)
    return full_box("trun", version, flags, head, rows)


NON_SYNC = 0x01010000
SYNC = 0x02000000


def test_moof_variants_64bit_sizes_and_explicit_offsets() -> None:
    """tfdt v1, trun v1 (negative CTO), two truns, base-data-offset, largesize/size 0."""
    track = _track(track_id=2, timescale=1000, default_sample_duration=40,
                   default_sample_size=None, default_sample_flags=NON_SYNC)
    payload = bytes(range(256)) * 2  # 512 bytes of sample data
    styp = box("styp", b"msdh", bytes(4), b"msdhmsix")
    sizes = [100, 60, 52, 300]

    def build(base_offset: int) -> bytes:
        traf = box(
            "traf",
            tfhd(2, 0x000001 | 0x000010, struct.pack(">QI", base_offset, 999)),
            full_box("tfdt", 1, 0, struct.pack(">Q", 2**33)),
            # run 1: sizes override the tfhd default 999, v1 signed CTOs
            trun(1, 0x001 | 0x004 | 0x200 | 0x800,
                 [(sizes[0], 80), (sizes[1], -40), (sizes[2], 0)],
                 data_offset=0, first_flags=SYNC),
            # run 2: no data offset -> continues after run 1; flags per sample
            trun(1, 0x200 | 0x400 | 0x100, [(50, sizes[3], SYNC)]),
        )
        return box("moof", full_box("mfhd", 0, 0, struct.pack(">I", 17)), traf)

    moof_len = len(build(0))
    moof_at = len(styp)
    mdat_at = moof_at + moof_len
    # explicit base_data_offset = absolute start of the mdat payload (16-byte header)
    moof = build(mdat_at + 16)
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) + payload
    data = styp + moof + mdat
    seg = read_segment(data, track)
    (frag,) = seg.fragments
    assert frag.offset == moof_at and frag.size == moof_len + len(mdat)
    assert frag.sequence_number == 17
    assert frag.base_decode_time == 2**33 == seg.base_decode_time
    assert frag.sample_count == 4
    assert frag.duration == 40 * 3 + 50 == seg.duration
    # decode times: t, t+40, t+80, t+120; pts: t+80, t, t+80, t+120
    t = 2**33
    assert frag.earliest_presentation_time == t
    assert frag.sync_sample_pts == (t + 80, t + 120)
    assert frag.first_sample_is_sync
    assert frag.first_sample_data_offset == mdat_at + 16 and frag.first_sample_size == 100

    # the same with a trailing size==0 mdat ("extends to end of file")
    mdat0 = struct.pack(">I4s", 0, b"mdat") + payload
    data0 = styp + build(mdat_at + 8) + mdat0
    assert read_segment(data0, track).fragments[0].size == moof_len + len(mdat0)


def test_two_trafs_implicit_base_and_trex_defaults() -> None:
    """Second traf's data follows the first's (8.8.7.1); trex defaults fill gaps."""
    track = _track(track_id=2, default_sample_duration=3000, default_sample_size=10,
                   default_sample_flags=NON_SYNC)

    def build(off1: int, off2: int) -> bytes:
        traf1 = box("traf", tfhd(1, 0x000010, struct.pack(">I", 7)),
                    full_box("tfdt", 0, 0, struct.pack(">I", 5)),
                    trun(0, 0x001, [()] * 3, data_offset=off1))
        traf2 = box("traf", tfhd(2, 0),
                    full_box("tfdt", 0, 0, struct.pack(">I", 90000)),
                    trun(0, 0x001 | 0x004, [()] * 4, data_offset=off2, first_flags=SYNC))
        return box("moof", full_box("mfhd", 0, 0, struct.pack(">I", 1)), traf1, traf2)

    n = len(build(0, 0))
    # traf 1's base is the moof; traf 2's base is the end of traf 1's data (3x7 bytes)
    moof = build(n + 8, 0)
    data = moof + box("mdat", bytes(21 + 40))
    frag = read_segment(data, track).fragments[0]
    assert frag.first_sample_data_offset == n + 8 + 21
    assert (frag.first_sample_size, frag.sample_count, frag.duration) == (10, 4, 12000)
    assert frag.sync_sample_pts == (90000,)
    other = read_segment(data, _track(track_id=1, default_sample_duration=1))
    assert other.fragments[0].first_sample_data_offset == n + 8
    assert other.fragments[0].first_sample_size == 7
    with pytest.raises(Mp4Error, match="no fragment of track 3"):
        read_segment(data, _track(track_id=3))


def _simple_segment(*, tfdt: bool = True, mdat_size: int = 8, data_offset: int | None = None,
                    count: int = 2) -> bytes:
    def moof(off: int, seq: int) -> bytes:
        children = [tfhd(1, 0x020000 | 0x08 | 0x10, struct.pack(">II", 10, 4))]
        if tfdt:
            children.append(full_box("tfdt", 0, 0, struct.pack(">I", 100)))
        children.append(trun(0, 0x001, [()] * count, data_offset=off))
        return box("moof", full_box("mfhd", 0, 0, struct.pack(">I", seq)), box("traf", *children))

    n = len(moof(0, 1))
    return moof(n + 8 if data_offset is None else data_offset, 1) + box("mdat", bytes(mdat_size))


def test_fragments_without_tfdt_continue_previous_one() -> None:
    seg = read_segment(_simple_segment(), _track())
    assert (seg.base_decode_time, seg.duration) == (100, 20)
    with pytest.raises(Mp4Error, match="no 'tfdt'"):
        read_segment(_simple_segment(tfdt=False), _track())
    seg = read_segment(_simple_segment() + _simple_segment(tfdt=False), _track())
    assert [f.base_decode_time for f in seg.fragments] == [100, 120]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 3}, r"sample data at bytes \d+-\d+ lies outside the 'mdat'"),
        ({"data_offset": 0}, "lies outside the 'mdat'"),
        ({"count": 0}, "no fragment of track 1"),
    ],
)
def test_inconsistent_fragments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(Mp4Error, match=message):
        read_segment(_simple_segment(**kwargs), _track())


def test_structural_errors() -> None:
    seg = _simple_segment()
    mdat_at = seg.index(b"mdat") - 4
    with pytest.raises(Mp4Error, match="is not followed by an 'mdat'"):
        read_segment(seg[:mdat_at], _track())
    # a trun declaring more samples than it holds
    bad = seg.replace(struct.pack(">I4sI", 20, b"trun", 1) + struct.pack(">I", 2),
                      struct.pack(">I4sI", 20, b"trun", 0x100) + struct.pack(">I", 2))
    with pytest.raises(Mp4Error, match=r"'trun' at byte \d+ declares 2 samples"):
        read_segment(bad, _track())
    # a child box running past its parent
    moof_size = struct.unpack_from(">I", seg, 0)[0]
    bad = seg[:8] + struct.pack(">I", moof_size) + seg[12:]  # mfhd claims the whole moof
    with pytest.raises(Mp4Error, match=r"box 'mfhd' at byte 8 declares \d+ bytes but only \d+ remain"):
        read_segment(bad, _track())
    with pytest.raises(Mp4Error, match="invalid size 3 for box"):
        read_segment(struct.pack(">I4s", 3, b"free") + seg, _track())
    with pytest.raises(Mp4Error, match="empty file"):
        read_init(b"")
