"""Thumbnails (sprite sheets from the encode's own decode) and the MPEG-TS HLS set.

One tiny title is encoded once with both; the tests read it back with independent tools (ffprobe,
ffmpeg decodes, raw TS bytes), then break copies of it to make each validation rule fire alone.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import m3u8
import pytest
from media import SHARED_SCHEMA, TINY_PROFILE, ffprobe_json, joined_rendition, make_clip, requires_ffmpeg
from mpegdash.parser import MPEGDASHParser

from abrpipe.errors import ExitCode
from abrpipe.thumbnails import parse_spec
from abrpipe.validate import validate_output

pytestmark = requires_ffmpeg

SPEC = "1s,64x36,2x2"  # 5 s title -> 5 thumbnails -> 2 sheets, the last with 1 of 4 tiles
SECONDS = 5
FPS = 25


def schema_dir() -> str | None:
    env = os.environ.get("ABRPIPE_DASH_SCHEMA")
    if env:
        return env
    return str(SHARED_SCHEMA) if (SHARED_SCHEMA / "DASH-MPD.xsd").exists() else None


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    # B-frames (the x264 default) so that the remux must keep audio and video in sync across
    # negative composition offsets.
    path = tmp_path_factory.mktemp("delivery-src") / "src.mp4"
    return make_clip(path, size="480x270", rate=str(FPS), seconds=SECONDS)  # two of the tiny ladder's rungs


@pytest.fixture(scope="module")
def delivered(source, tmp_path_factory) -> Path:
    from abrpipe import registry
    from abrpipe.pipeline import Job, run_job

    profile = replace(registry.load(TINY_PROFILE), preset="veryfast", thumbnails=parse_spec(SPEC), hls_ts=True)
    out = tmp_path_factory.mktemp("delivery") / "out"
    run_job(Job(input=str(source), output=str(out), profile=profile, dash_schema=schema_dir()))
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abrpipe", *args], capture_output=True, text=True, timeout=300)


# -- the spec and its errors ----------------------------------------------------------------------


def test_spec_parses():
    spec = parse_spec("10s,320x180,5x5")
    assert (spec.interval_s, spec.tile_width, spec.tile_height, spec.columns, spec.rows) == (10.0, 320, 180, 5, 5)
    assert str(spec) == "10s,320x180,5x5"
    assert parse_spec("500ms,160x90,10x1").interval_s == 0.5


@pytest.mark.parametrize("bad", ["10s,320x180", "10s,320x180,5", "0s,320x180,5x5", "10s,321x180,5x5", "ten,320x180,5x5",
                                 "10s,320x180,5x5,1", "10s,320x180,30x30"])
def test_bad_spec_is_refused(bad):
    with pytest.raises(ValueError, match="10s,320x180,5x5|even sides|at most"):
        parse_spec(bad)


def test_bad_spec_on_the_command_line_is_one_line_and_publishes_nothing(source, tmp_path):
    out = tmp_path / "out"
    result = run_cli("encode", str(source), "-o", str(out), "--profile", TINY_PROFILE, "--thumbnails", "10s,320x180")
    assert result.returncode == ExitCode.USAGE
    errors = [line for line in result.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert len(errors) == 1 and "--thumbnails" in errors[0] and "INTERVAL,WxH,CxR" in errors[0]
    assert "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_bad_spec_in_a_profile_names_the_field(source, tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text('thumbnails = "every 10 s"\nhls_ts = "yes"\n' + Path(TINY_PROFILE).read_text())
    result = run_cli("encode", str(source), "-o", str(tmp_path / "out"), "--profile", str(profile))
    assert result.returncode == ExitCode.PROFILE
    assert "thumbnails: expected" in result.stderr and "hls_ts: expected true or false" in result.stderr
    assert not (tmp_path / "out").exists()


def test_profile_keys_round_trip(tmp_path):
    from abrpipe import registry
    from abrpipe.profile import dump_toml, to_schema

    profile = tmp_path / "p.toml"
    profile.write_text('thumbnails = "2s,160x90,4x4"\nhls_ts = true\n' + Path(TINY_PROFILE).read_text())
    loaded = registry.load(str(profile))
    assert loaded.thumbnails == parse_spec("2s,160x90,4x4") and loaded.hls_ts
    again = tmp_path / "again.toml"
    again.write_text(dump_toml(to_schema(loaded)))
    assert registry.load(str(again)).thumbnails == loaded.thumbnails and registry.load(str(again)).hls_ts


def test_hls_ts_needs_h264(source, tmp_path):
    profile = tmp_path / "vp9.toml"
    profile.write_text('schema = 1\ncodec = "vp9"\npreset = "ultrafast"\nhls_ts = true\n[[rungs]]\nheight = 180\nbitrate = "150k"\n')
    result = run_cli("encode", str(source), "-o", str(tmp_path / "out"), "--profile", str(profile))
    assert result.returncode == ExitCode.INPUT and "hls_ts needs an H.264 video rung" in result.stderr
    assert not (tmp_path / "out").exists()


def test_one_process_one_decode(source, tmp_path):
    """--dry-run: the thumbnails are one more branch of the encode's split, in the same command."""
    result = run_cli("encode", str(source), "-o", str(tmp_path / "o"), "--profile", TINY_PROFILE, "--thumbnails", SPEC,
                     "--dry-run", "--json")
    import json

    commands = json.loads(result.stdout)["commands"]
    assert len(commands) == 1
    argv = commands[0]["argv"]
    graph = argv[argv.index("-filter_complex") + 1]
    assert argv.count("-i") == 1 and "split=3" in graph and "tile=layout=2x2" in graph  # 2 rungs + thumbnails
    assert "thumbnails/sheet_%05d.jpg" in argv


# -- thumbnails, read back ------------------------------------------------------------------------


def _gray(path: Path, size: str | None = None) -> tuple[bytes, int, int]:
    """A picture as 8-bit luma, decoded by ffmpeg."""
    probe = ffprobe_json("-show_streams", str(path))["streams"][0]
    w, h = probe["width"], probe["height"]
    args = ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    data = subprocess.run(args, capture_output=True, check=True).stdout
    return data, w, h


def _region(data: bytes, width: int, x: int, y: int, w: int, h: int) -> list[int]:
    return [data[(y + j) * width + x + i] for j in range(h) for i in range(w)]


def _source_frame(source: Path, t: float, tmp: Path) -> list[int]:
    """The source's frame at t, letterboxed to a 64x36 tile the way the encode does it."""
    out = tmp / f"frame-{t}.pgm"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{t}", "-i", str(source), "-frames:v", "1",
                    "-vf", "scale=64:36", "-pix_fmt", "gray", str(out)], check=True)
    return list(out.read_bytes()[-64 * 36 :])


def _distance(a: list[int], b: list[int]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def test_sprite_sheets(delivered, source, tmp_path):
    sheets = sorted((delivered / "thumbnails").glob("sheet_*.jpg"))
    count = math.ceil(SECONDS * FPS / FPS)  # one per second
    assert [s.name for s in sheets] == ["sheet_00001.jpg", "sheet_00002.jpg"] and count == 5
    for sheet in sheets:
        stream = ffprobe_json("-show_streams", str(sheet))["streams"][0]
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 128, 72)
    # Each tile shows the source at its own time: closer to that frame than to its neighbours'.
    for index in range(count):
        sheet, pos = divmod(index, 4)
        data, width, _ = _gray(sheets[sheet])
        tile = _region(data, width, (pos % 2) * 64, (pos // 2) * 36, 64, 36)
        own = _distance(tile, _source_frame(source, index, tmp_path))
        others = [_distance(tile, _source_frame(source, t, tmp_path)) for t in (index - 1, index + 1) if 0 <= t < SECONDS]
        assert own < min(others), (index, own, others)
    # The last sheet holds one tile: the other three places are empty (black).
    data, width, _ = _gray(sheets[1])
    for pos in (1, 2, 3):
        empty = _region(data, width, (pos % 2) * 64, (pos // 2) * 36, 64, 36)
        assert sum(empty) / len(empty) < 20


def test_webvtt_track(delivered):
    text = (delivered / "thumbnails" / "thumbnails.vtt").read_text()
    assert text.startswith("WEBVTT")
    cues = [block.splitlines() for block in text.split("\n\n")[1:] if block.strip()]
    assert [c[1] for c in cues] == [
        "sheet_00001.jpg#xywh=0,0,64,36",
        "sheet_00001.jpg#xywh=64,0,64,36",
        "sheet_00001.jpg#xywh=0,36,64,36",
        "sheet_00001.jpg#xywh=64,36,64,36",
        "sheet_00002.jpg#xywh=0,0,64,36",
    ]
    assert cues[0][0] == "00:00:00.000 --> 00:00:01.000" and cues[3][0] == "00:00:03.000 --> 00:00:04.000"
    assert cues[4][0].startswith("00:00:04.000 --> 00:00:05.0")


def test_dash_image_adaptation_set(delivered):
    mpd = MPEGDASHParser.parse(str(delivered / "manifest.mpd"))
    images = [a for a in mpd.periods[0].adaptation_sets if a.content_type == "image"]
    assert len(images) == 1
    aset = images[0]
    rep = aset.representations[0]
    assert aset.mime_type == "image/jpeg" and (rep.width, rep.height) == (128, 72)
    assert [(d.scheme_id_uri, d.value) for d in rep.essential_properties] == [("http://dashif.org/thumbnail_tile", "2x2")]
    template = rep.segment_templates[0]
    assert template.media == "thumbnails/sheet_$Number%05d$.jpg" and template.duration / template.timescale == 4.0
    assert template.start_number == 1


def test_hls_image_playlist_and_iframes_unchanged(delivered):
    master = m3u8.load(str(delivered / "master.m3u8"))
    assert len(master.image_playlists) == 1
    image = master.image_playlists[0]
    assert image.uri == "thumbnails/images.m3u8" and image.image_stream_info.resolution == (64, 36)  # one tile
    assert image.image_stream_info.codecs == "jpeg"
    text = (delivered / "thumbnails" / "images.m3u8").read_text()
    assert "#EXT-X-IMAGES-ONLY" in text and text.count("#EXT-X-TILES:RESOLUTION=64x36,LAYOUT=2x2,DURATION=1") == 2
    pl = m3u8.load(str(delivered / "thumbnails" / "images.m3u8"))
    assert [s.uri for s in pl.segments] == ["sheet_00001.jpg", "sheet_00002.jpg"]
    assert pl.segments[0].duration == 4 and abs(pl.segments[1].duration - 1) < 0.05
    # Trick play for Apple players stays the I-frame playlists, one per video rendition.
    assert len(master.iframe_playlists) == len(master.playlists) == 2
    assert "thumbnails" not in (delivered / "master.m3u8").read_text().split("#EXT-X-IMAGE-STREAM-INF")[0]


# -- the MPEG-TS set ------------------------------------------------------------------------------


def _ts_variants(delivered: Path) -> list[Path]:
    master = m3u8.load(str(delivered / "master-ts.m3u8"))
    return [delivered / p.uri for p in master.playlists]


def test_ts_playlists(delivered):
    text = (delivered / "master-ts.m3u8").read_text()
    assert "#EXT-X-VERSION:3" in text and "EXT-X-MEDIA" not in text  # audio is muxed in
    master = m3u8.load(str(delivered / "master-ts.m3u8"))
    assert len(master.playlists) == 2
    for p in master.playlists:
        assert p.stream_info.codecs.endswith(",mp4a.40.2") and p.uri.startswith("ts/")
        media_text = (delivered / p.uri).read_text()
        assert "#EXT-X-VERSION:3" in media_text and "EXT-X-MAP" not in media_text
        media = m3u8.load(str(delivered / p.uri))
        assert [s.uri for s in media.segments] == ["seg_00001.ts", "seg_00002.ts", "seg_00003.ts"]
        cmaf = m3u8.load(str(delivered / p.uri.split("/")[1] / "playlist.m3u8"))  # the same grid as the CMAF set
        assert [round(s.duration, 3) for s in media.segments] == [round(s.duration, 3) for s in cmaf.segments]


def _packets(path: Path, stream: str) -> list[dict]:
    return ffprobe_json("-show_packets", "-select_streams", stream, "-show_entries", "packet=pts,dts,flags,duration",
                        str(path))["packets"]


def test_ts_segments_psi_idr_and_continuous_timestamps(delivered):
    for playlist in _ts_variants(delivered):
        segments = sorted(playlist.parent.glob("seg_*.ts"))
        previous_end = None
        for seg in segments:
            data = seg.read_bytes()
            pids = [((data[i + 1] & 0x1F) << 8) | data[i + 2] for i in range(0, 188 * 8, 188)]
            media = min(pids.index(pid) for pid in (256, 257) if pid in pids)
            assert pids.index(0) < pids.index(4096) < media, pids  # PAT, then PMT, before any media packet
            video = _packets(seg, "v:0")
            assert "K" in video[0]["flags"]
            first_pts = min(p["pts"] for p in video)
            assert first_pts == video[0]["pts"]  # the key frame presents first: nothing leads it
            if previous_end is not None:
                assert first_pts == previous_end, (seg, first_pts, previous_end)  # no gap, no reset
            frame = 90000 * (2 if playlist.parent.name.startswith("180p") else 1) // FPS  # that rung: 12.5 fps
            previous_end = max(p["pts"] for p in video) + frame
            # ffprobe decodes the first picture as an IDR (nal type 5 via its key flag + slice type I)
            first = ffprobe_json("-select_streams", "v:0", "-show_frames", "-read_intervals", "%+#1",
                                 "-show_entries", "frame=pict_type,key_frame", str(seg))["frames"][0]
            assert first["key_frame"] == 1 and first["pict_type"] == "I"


def test_ts_carries_the_same_frames_in_sync(delivered, tmp_path):
    """The TS set is a remux: the decoded video is identical to the CMAF rendition's, and audio keeps
    its place relative to video."""
    top = _ts_variants(delivered)[0].parent
    cmaf = delivered / top.name
    joined_ts = tmp_path / "all.ts"
    joined_ts.write_bytes(b"".join(s.read_bytes() for s in sorted(top.glob("seg_*.ts"))))

    def frame_hashes(path: Path) -> list[str]:
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "framemd5", "-"],
                             capture_output=True, text=True, check=True).stdout
        return [line.split(",")[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]

    assert frame_hashes(joined_ts) == frame_hashes(joined_rendition(cmaf, tmp_path))
    first = sorted(top.glob("seg_*.ts"))[0]
    video_pts = min(p["pts"] for p in _packets(first, "v:0"))
    audio_pts = _packets(first, "a:0")[0]["pts"]
    assert abs(audio_pts - video_pts) <= 90000 * 1024 // 48000, (audio_pts, video_pts)


def test_job_record(delivered):
    import json

    record = json.loads((delivered / "abrpipe.json").read_text())
    assert record["thumbnails"] == [{"directory": "thumbnails", "spec": SPEC, "count": 5, "sheets": 2}]
    assert [(v["directory"], v["segments"]) for v in record["hls_ts"]] == [("ts/270p-350k", 3), ("ts/180p-150k", 3)]


def test_output_validates_strictly(delivered):
    report = validate_output(str(delivered), dash_schema=schema_dir(), strict=True)
    assert report.ok(strict=True), [f"{f.rule}: {f.message}" for f in report.findings if f.severity != "info"]
    assert "SEG-FORMAT" not in report.rules()
    if schema_dir():
        assert "DASH-XSD-SKIPPED" not in report.rules()  # the MPD, image set included, is XSD-valid
    assert {"master.m3u8", "master-ts.m3u8", "manifest.mpd"} <= {os.path.basename(m) for m in report.summary()["manifests"]}


# -- each rule fires alone ------------------------------------------------------------------------


@pytest.fixture
def copy(delivered, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(delivered, out)
    return out


def _new_rules(path: Path, delivered: Path) -> set[str]:
    baseline = validate_output(str(delivered)).rules()
    return validate_output(str(path)).rules() - baseline


def _first_ts(copy: Path) -> Path:
    return sorted(_ts_variants(copy)[0].parent.glob("seg_*.ts"))[1]


def _packets_of(data: bytes):
    for i in range(0, len(data), 188):
        yield i, ((data[i + 1] & 0x1F) << 8) | data[i + 2]


def test_rule_ts_psi(copy, delivered):
    seg = _first_ts(copy)
    data = seg.read_bytes()
    seg.write_bytes(b"".join(data[i : i + 188] for i, pid in _packets_of(data) if i >= 376 or pid not in (0, 4096)))
    assert _new_rules(copy, delivered) == {"TS-PSI"}


def test_rule_ts_idr(copy, delivered):
    seg = _first_ts(copy)
    data = bytearray(seg.read_bytes())
    at = data.find(b"\x00\x00\x01\x65")  # the IDR slice's NAL header, in the first video PES
    assert 0 < at < 4000
    data[at + 3] = 0x41  # a non-IDR slice
    seg.write_bytes(bytes(data))
    assert _new_rules(copy, delivered) == {"TS-IDR"}


def test_rule_ts_continuity(copy, delivered):
    playlist = _ts_variants(copy)[0]
    lines = playlist.read_text().splitlines()
    at = lines.index("seg_00002.ts")
    playlist.write_text("\n".join(lines[: at - 1] + lines[at + 1 :]) + "\n")  # segment 2 and its EXTINF left out
    assert _new_rules(copy, delivered) == {"TS-CONTINUITY"}


def test_rule_ts_cc(copy, delivered):
    seg = _first_ts(copy)
    data = bytearray(seg.read_bytes())
    video = [i for i, pid in _packets_of(bytes(data)) if pid == 256]
    i = video[len(video) // 2]
    data[i + 3] = (data[i + 3] & 0xF0) | ((data[i + 3] + 5) & 0x0F)
    seg.write_bytes(bytes(data))
    assert _new_rules(copy, delivered) == {"TS-CC"}


def test_rule_thumb_tile(copy, delivered):
    vtt = copy / "thumbnails" / "thumbnails.vtt"
    vtt.write_text(vtt.read_text().replace("xywh=64,36,64,36", "xywh=70,36,64,36"))
    assert _new_rules(copy, delivered) == {"THUMB-TILE"}


def test_rule_thumb_coverage(copy, delivered):
    vtt = copy / "thumbnails" / "thumbnails.vtt"
    vtt.write_text(vtt.read_text().replace("00:00:02.000 --> 00:00:03.000", "00:00:02.500 --> 00:00:03.000"))
    assert _new_rules(copy, delivered) == {"THUMB-COVERAGE"}


def test_rule_thumb_parse(copy, delivered):
    playlist = copy / "thumbnails" / "images.m3u8"
    lines = playlist.read_text().splitlines()
    lines.remove(next(line for line in lines if line.startswith("#EXT-X-TILES")))
    playlist.write_text("\n".join(lines) + "\n")
    assert _new_rules(copy, delivered) == {"THUMB-PARSE"}


def test_rule_thumb_sheet(copy, delivered):
    (copy / "thumbnails" / "sheet_00002.jpg").write_bytes(b"not an image at all")
    assert _new_rules(copy, delivered) == {"THUMB-SHEET"}


def test_missing_sheet_is_file_missing(copy, delivered):
    (copy / "thumbnails" / "sheet_00002.jpg").unlink()
    assert _new_rules(copy, delivered) == {"FILE-MISSING"}


def test_ts_extinf_is_checked_against_the_segments(copy, delivered):
    playlist = _ts_variants(copy)[0]
    lines = playlist.read_text().splitlines()
    at = lines.index("seg_00001.ts") - 1
    lines[at] = f"#EXTINF:{float(lines[at][8:].rstrip(',')) - 0.5:.3f},"  # half a second short
    playlist.write_text("\n".join(lines) + "\n")
    assert _new_rules(copy, delivered) == {"HLS-EXTINF-MISMATCH"}
