"""End-to-end: encode a generated clip with real ffmpeg, then check the published output with
tools other than abrpipe's own parsers (ffprobe, the m3u8 and mpegdash libraries, the DASH XSD)."""

from __future__ import annotations

import math
import re
import shutil
from fractions import Fraction
from pathlib import Path

import m3u8
import pytest
from media import SHARED_SCHEMA, ffprobe_json, joined_rendition, keyframe_times, requires_ffmpeg
from mpegdash.parser import MPEGDASHParser

pytestmark = requires_ffmpeg


def master(out: Path) -> m3u8.M3U8:
    return m3u8.load(str(out / "master.m3u8"))


def video_dirs(out: Path) -> list[Path]:
    return sorted(out / p.uri.split("/")[0] for p in master(out).playlists)


def test_layout_and_no_leftovers(encoded_tiny: Path):
    names = sorted(p.name for p in encoded_tiny.iterdir())
    assert {"master.m3u8", "manifest.mpd", "abrpipe.json"} <= set(names)
    assert not Path(str(encoded_tiny) + ".partial").exists()
    for d in video_dirs(encoded_tiny):
        assert (d / "init.mp4").stat().st_size > 0
        assert (d / "playlist.m3u8").exists() and (d / "iframes.m3u8").exists()
        assert sorted(p.name for p in d.glob("seg_*.m4s"))[0] == "seg_00001.m4s"
    assert not list(encoded_tiny.rglob("*.passlog*")) and not list(encoded_tiny.rglob("segmenter.mpd"))


def test_keyframes_identical_across_renditions(encoded_tiny: Path, tmp_path: Path):
    times = {d.name: keyframe_times(d, tmp_path) for d in video_dirs(encoded_tiny)}
    reference = next(iter(times.values()))
    assert len(reference) >= 6, "1-s GOPs over a 6-s clip"
    # Every rung, the 15 fps one included, has key frames at the same instants, one per second.
    for name, t in times.items():
        assert t == reference, f"{name} key frames differ"
    steps = {round(b - a, 3) for a, b in zip(reference, reference[1:])}
    assert steps == {1.0}


def test_every_segment_starts_with_a_keyframe(encoded_tiny: Path, tmp_path: Path):
    for d in video_dirs(encoded_tiny):
        for seg in sorted(d.glob("seg_*.m4s")):
            single = tmp_path / f"{d.name}-{seg.stem}.mp4"
            single.write_bytes((d / "init.mp4").read_bytes() + seg.read_bytes())
            packets = ffprobe_json("-select_streams", "v:0", "-show_entries", "packet=flags", "-read_intervals", "%+#1", str(single))["packets"]
            assert packets and "K" in packets[0]["flags"], f"{d.name}/{seg.name} does not start with a key frame"


def test_segment_durations_within_target_and_aligned(encoded_tiny: Path):
    durations = {}
    for playlist in master(encoded_tiny).playlists:
        media = m3u8.load(str(encoded_tiny / playlist.uri))
        assert media.version >= 7 and media.playlist_type == "vod" and media.is_endlist
        assert media.target_duration == 2
        assert all(round(s.duration) <= media.target_duration for s in media.segments)
        assert media.segment_map and media.segment_map[0].uri == "init.mp4"
        durations[playlist.uri] = [round(s.duration, 3) for s in media.segments]
    # Segment boundaries are shared: every rendition has the same list of durations.
    assert len({tuple(d) for d in durations.values()}) == 1
    assert next(iter(durations.values())) == [2.0, 2.0, 2.0]


def test_variant_attributes_match_the_real_streams(encoded_tiny: Path, tmp_path: Path):
    pl = master(encoded_tiny)
    assert pl.is_independent_segments and pl.version >= 7
    seen = set()
    for variant in pl.playlists:
        info = variant.stream_info
        rdir = encoded_tiny / variant.uri.split("/")[0]
        stream = ffprobe_json("-select_streams", "v:0", "-show_streams", str(joined_rendition(rdir, tmp_path)))["streams"][0]
        assert info.resolution == (stream["width"], stream["height"])
        assert info.frame_rate == pytest.approx(float(Fraction(stream["avg_frame_rate"])), abs=0.01)
        video_codec, audio_codec = info.codecs.split(",")
        profile_idc = {"High": 100, "Main": 77, "Constrained Baseline": 66, "Baseline": 66}[stream["profile"]]
        assert re.fullmatch(r"avc1\.[0-9a-f]{6}", video_codec)
        assert int(video_codec[5:7], 16) == profile_idc and int(video_codec[9:11], 16) == stream["level"]
        assert audio_codec == "mp4a.40.2"
        assert info.audio and info.average_bandwidth and info.bandwidth >= info.average_bandwidth
        seen.add(info.resolution)
    assert seen == {(640, 360), (480, 270), (320, 180)}
    low = next(v for v in pl.playlists if v.stream_info.resolution == (320, 180))
    assert low.stream_info.frame_rate == 15  # the rung's max_fps cap
    audio = pl.media[0]
    assert audio.type == "AUDIO" and audio.channels == "2" and audio.default == "YES" and audio.language


def _segment_durations_by_ffprobe(rdir: Path, names: list[str], tmp: Path) -> list[float]:
    """Each segment's duration from its own packets (init + segment, read by ffprobe): the span from
    the first packet's start to the last packet's end. Nothing of abrpipe's is read."""
    out: list[float] = []
    frame = 0.0
    for name in names:
        joined = tmp / f"{rdir.name}-{name}.mp4"
        joined.write_bytes((rdir / "init.mp4").read_bytes() + (rdir / name).read_bytes())
        packets = ffprobe_json("-show_entries", "packet=pts_time,duration_time", str(joined))["packets"]
        known = sorted(float(p["duration_time"]) for p in packets if "duration_time" in p)
        frame = known[len(known) // 2] if known else frame  # a packet without a duration lasts a typical frame
        start = min(float(p["pts_time"]) for p in packets)
        end = max(float(p["pts_time"]) + float(p.get("duration_time", frame)) for p in packets)
        out.append(end - start)
        joined.unlink()
    return out


def _peak_bps(sizes: list[int], durations: list[float], target_s: float) -> float:
    """RFC 8216 / Apple: the largest bit rate of any contiguous set of segments whose total duration
    is between 0.5 and 1.5 times the target duration (sum of sizes over sum of durations)."""
    best = 0.0
    for i in range(len(sizes)):
        for j in range(i, len(sizes)):
            d = sum(durations[i : j + 1])
            if 0.5 * target_s <= d <= 1.5 * target_s:
                best = max(best, 8 * sum(sizes[i : j + 1]) / d)
    assert best > 0, "no run of segments within 0.5-1.5 x the target duration"
    return best


def check_declared_bandwidth(out: Path, tmp: Path) -> None:
    """BANDWIDTH, AVERAGE-BANDWIDTH and DASH @bandwidth against rates measured independently:
    segment file sizes, durations read with ffprobe, the peak per Apple's definition."""
    pl = master(out)
    measured: dict[str, tuple[float, float]] = {}  # rendition dir -> (peak, average) bit/s

    def rates(rdir: Path) -> tuple[float, float]:
        if rdir.name not in measured:
            media = m3u8.load(str(rdir / "playlist.m3u8"))
            names = [s.uri for s in media.segments]  # which files, in which order; not their durations
            sizes = [(rdir / n).stat().st_size for n in names]
            durations = _segment_durations_by_ffprobe(rdir, names, tmp)
            measured[rdir.name] = (_peak_bps(sizes, durations, media.target_duration), 8 * sum(sizes) / sum(durations))
        return measured[rdir.name]

    audio_peak, audio_avg = rates(out / pl.media[0].uri.split("/")[0])
    for variant in pl.playlists:
        peak, avg = rates(out / variant.uri.split("/")[0])
        assert variant.stream_info.bandwidth == pytest.approx(peak + audio_peak, rel=0.10), variant.uri
        assert variant.stream_info.average_bandwidth == pytest.approx(avg + audio_avg, rel=0.10), variant.uri
    mpd = MPEGDASHParser.parse(str(out / "manifest.mpd"))
    for aset in mpd.periods[0].adaptation_sets:
        for rep in aset.representations:
            assert rep.bandwidth == pytest.approx(rates(out / rep.id)[0], rel=0.10), rep.id


def test_declared_bandwidth_matches_independently_measured_bitrates(encoded_tiny: Path, tmp_path: Path):
    check_declared_bandwidth(encoded_tiny, tmp_path)


def test_the_bandwidth_check_catches_self_consistent_but_wrong_durations(encoded_tiny: Path, tmp_path: Path):
    """Halve every EXTINF and double every declared rate: consistent with itself (a check that
    recomputes the rates from the EXTINF values passes), wrong about the media. It must fail."""
    out = tmp_path / "out"
    shutil.copytree(encoded_tiny, out)
    for playlist in out.glob("*/playlist.m3u8"):
        text = playlist.read_text()
        playlist.write_text(re.sub(r"#EXTINF:([\d.]+)", lambda m: f"#EXTINF:{float(m[1]) / 2:.5f}", text))
    master_path = out / "master.m3u8"
    master_path.write_text(re.sub(r"((?:AVERAGE-)?BANDWIDTH=)(\d+)", lambda m: f"{m[1]}{int(m[2]) * 2}", master_path.read_text()))
    (tmp_path / "m").mkdir()
    with pytest.raises(AssertionError):
        check_declared_bandwidth(out, tmp_path / "m")


def test_mpd_matches_hls_and_shares_the_same_files(encoded_tiny: Path):
    mpd = MPEGDASHParser.parse(str(encoded_tiny / "manifest.mpd"))
    assert mpd.type == "static"
    sets = mpd.periods[0].adaptation_sets
    video = [s for s in sets if s.content_type == "video"]
    audio = [s for s in sets if s.content_type == "audio"]
    assert len(video) == 1 and len(audio) == 1 and video[0].segment_alignment
    dash_files, hls_files = set(), set()
    for aset in sets:
        for rep in aset.representations:
            tpl = rep.segment_templates[0]
            dash_files.add(tpl.initialization)
            number = tpl.start_number
            t = None
            for s in tpl.segment_timelines[0].Ss:
                t = s.t if s.t is not None else t
                for _ in range((s.r or 0) + 1):
                    dash_files.add(tpl.media.replace("$Number%05d$", f"{number:05d}"))
                    number += 1
                    t += s.d
            assert t / tpl.timescale == pytest.approx(6.0, abs=0.1)
    for variant in master(encoded_tiny).playlists + master(encoded_tiny).media:
        rdir = variant.uri.split("/")[0]
        media = m3u8.load(str(encoded_tiny / variant.uri))
        hls_files.add(f"{rdir}/init.mp4")
        hls_files.update(f"{rdir}/{s.uri}" for s in media.segments)
    assert dash_files == hls_files, "one CMAF segment set, referenced by both manifests"
    assert all((encoded_tiny / f).is_file() for f in dash_files)
    reps = {r.id: r for r in video[0].representations}
    for variant in master(encoded_tiny).playlists:
        rep = reps[variant.uri.split("/")[0]]
        assert (rep.width, rep.height) == variant.stream_info.resolution
        assert rep.codecs == variant.stream_info.codecs.split(",")[0]


@pytest.mark.skipif(not (SHARED_SCHEMA / "DASH-MPD.xsd").exists(), reason="../shared/conformance/dash-schema not present")
def test_mpd_is_valid_against_the_dash_xsd(encoded_tiny: Path):
    from lxml import etree

    from abrpipe.validate.dash_checks import _schema

    schema = _schema(str(SHARED_SCHEMA))  # the validator's loader: xs:imports resolved from the schema dir
    doc = etree.parse(str(encoded_tiny / "manifest.mpd"))
    assert schema.validate(doc), schema.error_log


def test_iframe_playlists_address_key_frames(encoded_tiny: Path, tmp_path: Path):
    pl = master(encoded_tiny)
    assert len(pl.iframe_playlists) == 3
    for ip in pl.iframe_playlists:
        info = ip.iframe_stream_info
        assert info.codecs.startswith("avc1.") and info.resolution and info.bandwidth
        media = m3u8.load(str(encoded_tiny / ip.uri))
        assert media.is_i_frames_only
        assert sum(s.duration for s in media.segments) == pytest.approx(6.0, abs=0.05)
        assert len(media.segments) == 6  # one per 1-s GOP
        rdir = encoded_tiny / ip.uri.split("/")[0]
        init = (rdir / "init.mp4").read_bytes()
        for n, seg in enumerate(media.segments[:3]):
            length, offset = (int(x) for x in seg.byterange.split("@"))
            data = (rdir / seg.uri).read_bytes()[offset : offset + length]
            assert data[4:8] == b"moof"
            frame = tmp_path / f"iframe{n}.mp4"
            frame.write_bytes(init + data)
            packets = ffprobe_json("-show_entries", "packet=flags", str(frame))["packets"]
            assert "K" in packets[0]["flags"]


def test_job_record(encoded_tiny: Path):
    import json

    record = json.loads((encoded_tiny / "abrpipe.json").read_text())
    assert record["input_digest"].startswith("sha256:") and record["profile"] == "tiny"
    assert len(record["renditions"]) == 4
    assert math.isclose(record["duration_s"], 6.0, abs_tol=0.1)
    # The validation ran in the work area (OUT.partial), but the record describes the published OUT.
    assert record["validation"]["ok"] is True and record["validation"]["path"] == str(encoded_tiny)


@pytest.mark.slow
def test_ntsc_rate_keeps_keyframes_on_the_grid(tmp_path: Path):
    """29.97 fps: GOPs of whole frames (2.002 s) stay aligned over many segments."""
    from media import make_clip

    from abrpipe import registry
    from abrpipe.pipeline import Job, run_job

    src = make_clip(tmp_path / "ntsc.mp4", size="320x180", rate="30000/1001", seconds=40, audio=None)
    out = tmp_path / "out"
    profile = registry.load(str(Path(__file__).parent / "data" / "tiny.toml"))
    run_job(Job(input=str(src), output=str(out), profile=profile))
    times = {d.name: keyframe_times(d, tmp_path) for d in sorted(out.iterdir()) if d.is_dir()}
    reference = next(iter(times.values()))
    assert all(t == reference for t in times.values())
    assert len(reference) >= 39
    media = m3u8.load(str(next(out.glob("*/playlist.m3u8"))))
    assert all(s.duration == pytest.approx(2.002, abs=0.001) for s in media.segments[:-1])
