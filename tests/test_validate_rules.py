"""Every validation rule fires: for each rule id, an output damaged or crafted so that this rule, and
no other, is added to what the clean output reports, with the severity docs/VALIDATION.md gives it.

Most cases damage a private copy of the shared tiny encode (`encoded_tiny`: three H.264 rungs and an
AAC rendition, 2-s segments). Rules about the media itself (codec profile, frame rate, GOP) compare
two small outputs made the same way but for that one property. `RULE_TESTS` names the test that
covers each rule; a test keeps it complete, and another keeps the rule count in README.md,
docs/VALIDATION.md and the code equal.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from media import ROOT, ffmpeg, requires_ffmpeg
from test_validate import edit, video_dirs

from abrpipe import mp4
from abrpipe.validate import RULES, validate_output

pytestmark = requires_ffmpeg


def audio_dir(out: Path) -> Path:
    return next(p.parent for p in out.glob("*/init.mp4") if p.parent not in video_dirs(out))


# -- damage, one function per rule -------------------------------------------------------------------


def file_empty(out: Path, tmp: Path) -> None:
    (video_dirs(out)[0] / "seg_00002.m4s").write_bytes(b"")


def file_outside(out: Path, tmp: Path) -> None:
    """The HLS playlist names a copy of its segment that lives outside OUT."""
    rdir = video_dirs(out)[-1]
    outside = tmp / "elsewhere"
    outside.mkdir()
    shutil.copy(rdir / "seg_00003.m4s", outside / "seg_00003.m4s")
    edit(rdir / "playlist.m3u8", r"\nseg_00003\.m4s", f"\n{Path('../../elsewhere/seg_00003.m4s')}")


def remote_uri(out: Path, tmp: Path) -> None:
    """One more variant, on a CDN: named, not fetched."""
    edit(out / "master.m3u8", r"(#EXT-X-STREAM-INF:[^\n]*\n)([^\n]*playlist\.m3u8)\n",
         lambda m: f"{m[1]}{m[2]}\n{m[1]}https://cdn.example/{m[2]}\n")  # fmt: skip


def hls_parse(out: Path, tmp: Path) -> None:
    playlist = video_dirs(out)[-1] / "playlist.m3u8"
    playlist.write_text(playlist.read_text().replace("#EXTM3U\n", "", 1))


def hls_required_tag(out: Path, tmp: Path) -> None:
    edit(video_dirs(out)[-1] / "playlist.m3u8", r"#EXT-X-TARGETDURATION:\d+\n", "")


def hls_attribute(out: Path, tmp: Path) -> None:
    edit(out / "master.m3u8", r',NAME="[^"]*"', "")


def hls_group(out: Path, tmp: Path) -> None:
    """A variant names a SUBTITLES group that nothing defines (its audio stays as it was)."""
    edit(out / "master.m3u8", r"(#EXT-X-STREAM-INF:[^\n]*)", r'\1,SUBTITLES="nowhere"')


def hls_map(out: Path, tmp: Path) -> None:
    edit(video_dirs(out)[-1] / "playlist.m3u8", r"#EXT-X-MAP:[^\n]*\n", "")


def hls_endlist(out: Path, tmp: Path) -> None:
    edit(video_dirs(out)[-1] / "playlist.m3u8", r"#EXT-X-ENDLIST\n?", "")


def hls_extinf_mismatch(out: Path, tmp: Path) -> None:
    """Two EXTINF values moved by 0.3 s, in opposite directions: the total stays right."""
    playlist = video_dirs(out)[-1] / "playlist.m3u8"
    values = iter(["2.3", "1.7"])
    edit(playlist, r"#EXTINF:2(\.0+)?,", lambda m: f"#EXTINF:{next(values)},", count=2)


def dash_parse(out: Path, tmp: Path) -> None:
    mpd = out / "manifest.mpd"
    mpd.write_text(mpd.read_text()[:200])


def dash_attribute(out: Path, tmp: Path) -> None:
    edit(out / "manifest.mpd", r'(<Representation [^>]*) bandwidth="\d+"', r"\1")


def dash_addressing(out: Path, tmp: Path) -> None:
    """The audio Representation's segments live on a CDN (a remote BaseURL): not checked."""
    edit(out / "manifest.mpd", r'(<Representation [^>]*id="audio[^"]*"[^>]*>)', r"\1<BaseURL>https://cdn.example/</BaseURL>")


def _first_timeline(out: Path, replace) -> None:
    edit(out / "manifest.mpd", r'<S t="0" d="(\d+)" r="2"/>', replace)


def dash_timeline_overlap(out: Path, tmp: Path) -> None:
    """The last S starts half a segment early (and lasts longer, so the end is right). What the
    timeline says of that segment then differs from its boxes too: an overlap cannot be otherwise."""
    _first_timeline(out, lambda m: f'<S t="0" d="{m[1]}" r="1"/><S t="{2 * int(m[1]) - int(m[1]) // 2}" d="{int(m[1]) * 3 // 2}"/>')


def dash_timeline_mismatch(out: Path, tmp: Path) -> None:
    """Continuous, same end: but the first segment is said to be 0.2 s longer, the second shorter."""
    def split(m: re.Match) -> str:
        d = int(m[1])
        x = d // 10
        return f'<S t="0" d="{d + x}"/><S t="{d + x}" d="{d - x}"/><S t="{2 * d}" d="{d}"/>'

    _first_timeline(out, split)


def dash_timeline_offset(out: Path, tmp: Path) -> None:
    """The whole first timeline starts 0.2 s late: consistent with itself, shifted from the media
    (and still within the Period's end tolerance)."""
    _first_timeline(out, lambda m: f'<S t="{int(m[1]) // 10}" d="{m[1]}" r="2"/>')


def dash_period_duration(out: Path, tmp: Path) -> None:
    edit(out / "manifest.mpd", r'mediaPresentationDuration="[^"]*"', 'mediaPresentationDuration="PT60S"')


def dash_max_segment_duration(out: Path, tmp: Path) -> None:
    edit(out / "manifest.mpd", r'maxSegmentDuration="[^"]*"', 'maxSegmentDuration="PT1S"')


def dash_bandwidth(out: Path, tmp: Path) -> None:
    edit(out / "manifest.mpd", r'(<Representation [^>]*id="360p[^"]*" bandwidth=")(\d+)"', lambda m: f'{m[1]}{int(m[2]) // 10}"')


def init_invalid(out: Path, tmp: Path) -> None:
    """The init segment loses its moov: only the ftyp is left."""
    init = video_dirs(out)[-1] / "init.mp4"
    data = init.read_bytes()
    init.write_bytes(data[: int.from_bytes(data[:4], "big")])


def seg_continuity(out: Path, tmp: Path) -> None:
    """Every video rendition's second segment says (tfdt) it starts half a second late: a gap, then
    an overlap, the same on every rung (so they stay aligned). HLS only: the MPD's timeline would
    say it too (DASH-TIMELINE-MISMATCH)."""
    for rdir in video_dirs(out):
        track = mp4.read_init(rdir / "init.mp4")
        seg = rdir / "seg_00002.m4s"
        data = bytearray(seg.read_bytes())
        at = data.index(b"tfdt") + 4
        size = 8 if data[at] == 1 else 4
        value = int.from_bytes(data[at + 4 : at + 4 + size], "big") + track.timescale // 2
        data[at + 4 : at + 4 + size] = value.to_bytes(size, "big")
        seg.write_bytes(bytes(data))
    (out / "manifest.mpd").unlink()


def align_segments(out: Path, tmp: Path) -> None:
    """One rendition cut at 1 s and 3 s instead of 2 s: same media, other segment boundaries."""
    rdir = video_dirs(out)[-1]
    joined = tmp / "joined.mp4"
    joined.write_bytes(b"".join(p.read_bytes() for p in [rdir / "init.mp4", *sorted(rdir.glob("seg_*.m4s"))]))
    work = tmp / "recut"
    work.mkdir()
    # fmt: off
    ffmpeg(
        "-i", str(joined), "-c", "copy", "-f", "hls", "-start_number", "1", "-hls_segment_type", "fmp4",
        "-hls_time", "1", "-hls_playlist_type", "vod", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_filename", "seg_%05d.m4s", "-hls_segment_options", "movflags=+cmaf", "x.m3u8",
        cwd=str(work),
    )
    # fmt: on
    for old in rdir.glob("seg_*.m4s"):
        old.unlink()
    for f in [work / "init.mp4", *work.glob("seg_*.m4s")]:
        shutil.copy(f, rdir / f.name)
    text = (work / "x.m3u8").read_text()
    target = rdir / "playlist.m3u8"
    head = target.read_text().split("#EXTINF", 1)[0]
    target.write_text(head + "#EXTINF" + text.split("#EXTINF", 1)[1])
    # BANDWIDTH follows the new (1-s) segments' peak, the rest of the variant unchanged.
    old_peak = int(re.search(rf'id="{rdir.name}" bandwidth="(\d+)"', (out / "manifest.mpd").read_text())[1])
    extinf = [float(x) for x in re.findall(r"#EXTINF:([\d.]+)", text)]
    sizes = [p.stat().st_size for p in sorted(rdir.glob("seg_*.m4s"))]
    new_peak = max(8 * size / d for size, d in zip(sizes[:-1], extinf[:-1], strict=True))
    edit(out / "master.m3u8", rf"(?<!-)BANDWIDTH=(\d+)(,[^\n]*\n{rdir.name}/playlist)",
         lambda m: f"BANDWIDTH={int(m[1]) - old_peak + int(new_peak)}{m[2]}")  # fmt: skip
    (rdir / "iframes.m3u8").unlink()
    edit(out / "master.m3u8", rf"#EXT-X-I-FRAME-STREAM-INF:[^\n]*{rdir.name}/iframes.m3u8[^\n]*\n", "")
    (out / "manifest.mpd").unlink()


def channels_mismatch(out: Path, tmp: Path) -> None:
    edit(out / "master.m3u8", r'CHANNELS="2"', 'CHANNELS="6"')


def samplerate_mismatch(out: Path, tmp: Path) -> None:
    edit(out / "manifest.mpd", r'audioSamplingRate="48000"', 'audioSamplingRate="44100"')


def av_duration(out: Path, tmp: Path) -> None:
    """The audio loses its last two segments: 2 s shorter than the video it plays with."""
    adir = audio_dir(out)
    playlist = adir / "playlist.m3u8"
    text = playlist.read_text()
    entries = re.findall(r"#EXTINF:[^\n]*\n[^\n]*\n", text)
    for entry in entries[-2:]:
        text = text.replace(entry, "")
    playlist.write_text(text)
    (out / "manifest.mpd").unlink()


def _scale_bandwidth(attr: str, factor: float) -> Callable[[Path, Path], None]:
    def damage(out: Path, tmp: Path) -> None:
        edit(out / "master.m3u8", rf"(#EXT-X-STREAM-INF:(?:[^\n]*,)?{attr}=)(\d+)", lambda m: f"{m[1]}{int(int(m[2]) * factor)}")

    damage.__name__ = f"{attr.lower().replace('-', '_')}_times_{factor:g}"
    return damage


def bw_peak_2x_avg(out: Path, tmp: Path) -> None:
    """One segment padded to 12 times its size (a `free` box after it), the declared rates raised to
    match what was measured: only the peak-to-average ratio is then wrong."""
    rdir = video_dirs(out)[-1]
    seg = rdir / "seg_00002.m4s"
    data = seg.read_bytes()
    pad = 11 * len(data)
    seg.write_bytes(data + pad.to_bytes(4, "big") + b"free" + bytes(pad - 8))
    sizes = [p.stat().st_size for p in sorted(rdir.glob("seg_*.m4s"))]
    peak, avg = 8 * max(sizes) / 2, 8 * sum(sizes) / 6
    adir = audio_dir(out)
    audio_sizes = [p.stat().st_size for p in sorted(adir.glob("seg_*.m4s"))]
    audio_peak, audio_avg = max(8 * s / 2 for s in audio_sizes[:3]), 8 * sum(audio_sizes) / 6
    edit(out / "master.m3u8", rf"(?<!-)BANDWIDTH=\d+,AVERAGE-BANDWIDTH=\d+(,[^\n]*\n{rdir.name}/playlist\.m3u8)",
         lambda m: f"BANDWIDTH={int(peak + audio_peak)},AVERAGE-BANDWIDTH={int(avg + audio_avg)}{m[1]}")  # fmt: skip
    edit(out / "manifest.mpd", rf'(id="{rdir.name}" bandwidth=")\d+"', lambda m: f'{m[1]}{int(peak)}"')


def iframe_tag(out: Path, tmp: Path) -> None:
    edit(video_dirs(out)[-1] / "iframes.m3u8", r"#EXT-X-I-FRAMES-ONLY\n", "")


def iframe_duration(out: Path, tmp: Path) -> None:
    """The I-frame playlist loses its last entry: its durations add up to 5 s of a 6-s rendition."""
    edit(video_dirs(out)[-1] / "iframes.m3u8", r"#EXTINF:[^\n]*\n#EXT-X-BYTERANGE:[^\n]*\n[^\n]*\n(#EXT-X-ENDLIST)", r"\1")


def apple_1_10(out: Path, tmp: Path) -> None:
    """Every H.264 sample entry renamed avc1 -> avc3 (parameter sets may then be in-band), and
    CODECS / @codecs to match."""
    for rdir in video_dirs(out):
        init = rdir / "init.mp4"
        init.write_bytes(init.read_bytes().replace(b"avc1", b"avc3"))
    for manifest in (out / "master.m3u8", out / "manifest.mpd"):
        manifest.write_text(manifest.read_text().replace("avc1.", "avc3."))


def apple_9_1(out: Path, tmp: Path) -> None:
    edit(out / "master.m3u8", r'(#EXT-X-STREAM-INF:[^\n]*),CODECS="[^"]*"', r"\1")


def apple_9_2(out: Path, tmp: Path) -> None:
    edit(out / "master.m3u8", r"(#EXT-X-STREAM-INF:[^\n]*),RESOLUTION=\d+x\d+", r"\1")


def apple_9_3(out: Path, tmp: Path) -> None:
    edit(out / "master.m3u8", r"(#EXT-X-I-FRAME-STREAM-INF:[^\n]*),RESOLUTION=\d+x\d+", r"\1")


def apple_9_14(out: Path, tmp: Path) -> None:
    edit(out / "master.m3u8", r"(#EXT-X-STREAM-INF:[^\n]*),AVERAGE-BANDWIDTH=\d+", r"\1")


@dataclass(frozen=True)
class Case:
    rule: str
    damage: Callable[[Path, Path], None]
    also: frozenset[str] = frozenset()  # rules the damage cannot help firing too (said why, above)


DAMAGE = [
    Case("FILE-EMPTY", file_empty),
    Case("FILE-OUTSIDE", file_outside),
    Case("REMOTE-URI", remote_uri),
    Case("HLS-PARSE", hls_parse),
    Case("HLS-REQUIRED-TAG", hls_required_tag),
    Case("HLS-ATTRIBUTE", hls_attribute),
    Case("HLS-GROUP", hls_group),
    Case("HLS-MAP", hls_map),
    Case("HLS-ENDLIST", hls_endlist),
    Case("HLS-EXTINF-MISMATCH", hls_extinf_mismatch),
    Case("DASH-PARSE", dash_parse),
    Case("DASH-ATTRIBUTE", dash_attribute),
    Case("DASH-ADDRESSING", dash_addressing),
    Case("DASH-TIMELINE-OVERLAP", dash_timeline_overlap, frozenset({"DASH-TIMELINE-MISMATCH"})),
    Case("DASH-TIMELINE-MISMATCH", dash_timeline_mismatch),
    Case("DASH-TIMELINE-OFFSET", dash_timeline_offset),
    Case("DASH-PERIOD-DURATION", dash_period_duration),
    Case("DASH-MAX-SEGMENT-DURATION", dash_max_segment_duration),
    Case("DASH-BANDWIDTH", dash_bandwidth),
    Case("INIT-INVALID", init_invalid),
    Case("SEG-CONTINUITY", seg_continuity),
    Case("ALIGN-SEGMENTS", align_segments),
    Case("CHANNELS-MISMATCH", channels_mismatch),
    Case("SAMPLERATE-MISMATCH", samplerate_mismatch),
    Case("AV-DURATION", av_duration),
    Case("BW-PEAK-HIGH", _scale_bandwidth("BANDWIDTH", 1.5)),
    Case("BW-AVERAGE", _scale_bandwidth("AVERAGE-BANDWIDTH", 0.5)),
    Case("BW-PEAK-2X-AVG", bw_peak_2x_avg),
    Case("IFRAME-TAG", iframe_tag),
    Case("IFRAME-DURATION", iframe_duration),
    Case("APPLE-1.10-SAMPLE-ENTRY", apple_1_10),
    Case("APPLE-9.1-CODECS", apple_9_1),
    Case("APPLE-9.2-RESOLUTION", apple_9_2),
    Case("APPLE-9.3-IFRAME-ATTRIBUTES", apple_9_3),
    Case("APPLE-9.14-AVERAGE-BANDWIDTH", apple_9_14),
]


@pytest.fixture(scope="module")
def baseline(encoded_tiny) -> set[str]:
    report = validate_output(str(encoded_tiny))
    assert not report.errors and not report.warnings, [f.to_dict() for f in report.findings]
    return report.rules()


def _fires_alone(out: Path, rule: str, baseline: set[str], also: frozenset[str] = frozenset(), **kwargs) -> None:
    report = validate_output(str(out), **kwargs)
    added = report.rules() - baseline
    assert added == {rule} | also, f"expected only {rule}; got {sorted(added)}: {[f.to_dict() for f in report.findings if f.rule in added]}"
    severities = {f.severity for f in report.findings if f.rule == rule}
    assert severities == {RULES[rule].severity}


@pytest.mark.parametrize("case", DAMAGE, ids=lambda c: c.rule)
def test_damage_fires_exactly_its_rule(case, encoded_tiny, baseline, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(encoded_tiny, out)
    case.damage(out, tmp_path)
    _fires_alone(out, case.rule, baseline, case.also)


# -- the schema rules: a small schema of our own (the real one may not be on the machine) -------------

MINI_XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:mpeg:dash:schema:mpd:2011"
           elementFormDefault="qualified">
  <xs:element name="MPD">
    <xs:complexType>
      <xs:sequence><xs:any processContents="skip" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
      <xs:attribute name="type">
        <xs:simpleType><xs:restriction base="xs:string">
          <xs:enumeration value="static"/><xs:enumeration value="dynamic"/>
        </xs:restriction></xs:simpleType>
      </xs:attribute>
      <xs:anyAttribute processContents="skip"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


@pytest.fixture
def mini_schema(tmp_path) -> str:
    d = tmp_path / "schema"
    d.mkdir()
    (d / "DASH-MPD.xsd").write_text(MINI_XSD)
    return str(d)


def test_dash_xsd_fires_alone_and_skipped_goes_with_a_schema(encoded_tiny, baseline, mini_schema, tmp_path):
    assert "DASH-XSD-SKIPPED" in baseline and RULES["DASH-XSD-SKIPPED"].severity == "info"
    clean = validate_output(str(encoded_tiny), dash_schema=mini_schema)
    assert clean.rules() == baseline - {"DASH-XSD-SKIPPED"}, "with a schema, the check runs and passes"
    out = tmp_path / "out"
    shutil.copytree(encoded_tiny, out)
    edit(out / "manifest.mpd", r'type="static"', 'type="vod"')
    _fires_alone(out, "DASH-XSD", clean.rules(), dash_schema=mini_schema)


# -- rules about the media: two outputs made the same way but for one property ---------------------


def hls_output(out: Path, *, video: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast", "-level", "3.0"),
               sizes: tuple[str, ...] = ("160x90",), rate: int = 30, gop_s: float = 1, hls_time: float = 6,
               audio: tuple[str, ...] = ("-c:a", "aac", "-ac", "2", "-b:a", "64k")) -> Path:  # fmt: skip
    """FFmpeg's own HLS muxer (fMP4 segments): 8 s of video in the given sizes plus an audio group."""
    out.mkdir(parents=True)
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={rate}:duration=8",
              "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=8"]  # fmt: skip
    maps, per_stream = [], []
    for n, size in enumerate(sizes):
        maps += ["-map", "0:v"]
        per_stream += [f"-s:v:{n}", size]
    streams = " ".join(f"v:{n},agroup:aud" for n in range(len(sizes))) + " a:0,agroup:aud"
    # fmt: off
    ffmpeg(
        *inputs, *maps, "-map", "1:a", *video, *per_stream, "-pix_fmt", "yuv420p",
        "-force_key_frames", f"expr:gte(t,n_forced*{gop_s})", "-g", "100000", "-sc_threshold", "0", *audio,
        "-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", str(hls_time), "-hls_playlist_type", "vod",
        "-master_pl_name", "master.m3u8", "-var_stream_map", streams,
        "-hls_segment_filename", "stream_%v_%03d.m4s", "-hls_fmp4_init_filename", "init.mp4", "stream_%v.m3u8",
        cwd=str(out),
    )
    # fmt: on
    return out


def _media_rules(out: Path) -> set[str]:
    """What a report says, without the BW-* rules: FFmpeg's BANDWIDTH estimates are its own and not
    what these pairs compare."""
    return {r for r in validate_output(str(out)).rules() if not r.startswith("BW-")}


@pytest.fixture(scope="module")
def reference_hls(tmp_path_factory) -> tuple[Path, set[str]]:
    """8 s of H.264 160x90 @ 30 fps, level 3.0, 1-s GOPs, 6-s segments, stereo AAC."""
    out = hls_output(tmp_path_factory.mktemp("reference") / "hls")
    return out, _media_rules(out)


PAIRS = {
    # rule: how the second output differs from the reference
    "APPLE-1.3-H264-PROFILE": {"video": ("-c:v", "libx264", "-preset", "ultrafast", "-level", "6.0")},
    "APPLE-1.12-H264": {"video": ("-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1", "-x265-params", "log-level=error")},
    "APPLE-1.13-IDR-INTERVAL": {"gop_s": 3},
    "APPLE-1.19-FRAME-RATE-MAX": {"rate": 120},
    "APPLE-1.33-ASPECT": {"sizes": ("160x90", "120x90")},
    "APPLE-2.3-STEREO-AAC": {"audio": ("-c:a", "aac", "-ac", "1", "-b:a", "64k")},
    "APPLE-7.5-TARGET-DURATION": {"hls_time": 2},
}


@pytest.mark.parametrize("rule", sorted(PAIRS))
def test_media_property_fires_exactly_its_rule(rule, reference_hls, tmp_path):
    if rule == "APPLE-1.33-ASPECT":  # the reference for two variants has two 16:9 ones
        reference = _media_rules(hls_output(tmp_path / "reference", sizes=("160x90", "96x54")))
    else:
        reference = reference_hls[1]
    assert rule not in reference
    out = hls_output(tmp_path / "out", **PAIRS[rule])
    if rule == "APPLE-1.12-H264":  # FFmpeg 5.1's hls muxer writes a wrong HEVC CODECS: put the real one
        real = next(t.codec for t in map(mp4.read_init, out.rglob("init*.mp4")) if t.handler == "vide")
        edit(out / "master.m3u8", r"hvc1\.[^,\"]+", real, count=0)
    report = validate_output(str(out))
    added = _media_rules(out) - reference
    assert added == {rule}, f"{rule}: {sorted(added)}: {[f.to_dict() for f in report.findings if f.rule in added]}"
    assert {f.severity for f in report.findings if f.rule == rule} == {RULES[rule].severity}


def test_segment_over_the_nominal_target_fires_alone(tmp_path):
    """7-s segments against 5-s ones: both have a target other than 6 s (APPLE-7.5 in both)."""
    reference = _media_rules(hls_output(tmp_path / "five", hls_time=5))
    out = hls_output(tmp_path / "seven", hls_time=7)
    added = _media_rules(out) - reference
    assert added == {"APPLE-7.7-SEG-OVER-TARGET"}, added
    report = validate_output(str(out))
    assert {f.severity for f in report.findings if f.rule == "APPLE-7.7-SEG-OVER-TARGET"} == {"warning"}


def test_mpegts_segment_without_sync_byte(tmp_path):
    """MPEG-TS segments get the TS checks; one loses its sync byte and is no MPEG-TS any more."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30:duration=4", "-c:v", "libx264", "-preset", "ultrafast",
           "-g", "30", "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", "index.m3u8", cwd=str(tmp_path))  # fmt: skip
    clean = validate_output(str(tmp_path)).rules()
    assert not validate_output(str(tmp_path)).errors
    seg = tmp_path / "index1.ts"
    seg.write_bytes(b"\x00" + seg.read_bytes()[1:])
    report = validate_output(str(tmp_path))
    assert report.rules() - clean == {"SEG-INVALID"}, report.rules()
    assert {f.severity for f in report.findings if f.rule == "SEG-INVALID"} == {"error"}


def test_segments_neither_fmp4_nor_mpegts(tmp_path):
    """Packed ADTS audio segments (FFmpeg's segment muxer): only files, sizes and durations are checked."""
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6", "-c:a", "aac", "-f", "segment",
           "-segment_time", "2", "-segment_list", "index.m3u8", "-segment_list_type", "m3u8", "-segment_format", "adts",
           "seg%d.aac", cwd=str(tmp_path))  # fmt: skip
    report = validate_output(str(tmp_path))
    assert "SEG-FORMAT" in report.rules() and not report.errors, report.rules()
    assert {f.severity for f in report.findings if f.rule == "SEG-FORMAT"} == {"info"}


# -- every rule is covered, and counted the same everywhere -------------------------------------------

# Rules made to fire by other tests (tests/test_validate.py unless said otherwise).
ELSEWHERE = {
    "NO-MANIFEST": "test_empty_directory_has_no_manifest",
    "FILE-MISSING": "test_broken_output_fails_naming_the_rule",
    "BW-PEAK": "test_broken_output_fails_naming_the_rule",
    "SEG-TRUNCATED": "test_broken_output_fails_naming_the_rule",
    "CODECS-MISMATCH": "test_broken_output_fails_naming_the_rule",
    "DASH-TIMELINE-GAP": "test_broken_output_fails_naming_the_rule",
    "ALIGN-KEYFRAMES": "test_rendition_with_a_different_gop",
    "SEG-KEYFRAME": "test_segment_not_starting_with_a_sync_sample",
    "SEG-IDR": "test_sync_sample_that_is_not_an_idr_picture",
    "IFRAME-RANGE": "test_iframe_range_off_its_moof",
    "HLS-TARGETDURATION": "test_segment_longer_than_the_target_duration",
    "APPLE-8.2-SAME-TARGETDURATION": "test_segment_longer_than_the_target_duration",
    "RESOLUTION-MISMATCH": "test_wrong_resolution_and_frame_rate",
    "FRAMERATE-MISMATCH": "test_wrong_resolution_and_frame_rate",
    "APPLE-9.11-INDEPENDENT-SEGMENTS": "test_apple_lint_is_warnings_and_fails_only_with_strict",
    "APPLE-8.6-PLAYLIST-TYPE": "test_apple_lint_is_warnings_and_fails_only_with_strict",
    "APPLE-8.10-LANGUAGE": "test_apple_lint_is_warnings_and_fails_only_with_strict",
    "APPLE-6.1-IFRAME-PLAYLISTS": "test_apple_lint_is_warnings_and_fails_only_with_strict",
    "APPLE-9.15-FRAME-RATE": "test_ffmpeg_hls_fmp4_output",
}
# Rules of the optional outputs, made to fire alone by the tests of the feature: (module, test).
FEATURES = {
    **{rule: ("test_delivery", f"test_rule_{rule.lower().replace('-', '_')}")
       for rule in ("TS-PSI", "TS-IDR", "TS-CONTINUITY", "TS-CC", "THUMB-PARSE", "THUMB-SHEET", "THUMB-TILE", "THUMB-COVERAGE")},
    **{rule: ("test_subtitles", "test_vtt_rule_fires_alone")
       for rule in ("VTT-PARSE", "VTT-TIMESTAMP-MAP", "VTT-CUE-OUTSIDE", "VTT-COVERAGE-GAP")},
    **{rule: ("test_validate_protection", "test_rule_fires")
       for rule in ("PROT-TENC", "PROT-IV-PATTERN", "PROT-SENC", "PROT-SCHEME", "PROT-KID", "PROT-SIGNALLING")},
    "PROT-HALF": ("test_validate_protection", "test_half_protected_is_an_error_unless_allowed"),
    "PROT-FRAGMENT-KID": ("test_protect_rotation", "test_undeclared_fragment_kid_fires_alone"),
}
HERE = {c.rule for c in DAMAGE} | set(PAIRS) | {"DASH-XSD", "DASH-XSD-SKIPPED", "APPLE-7.7-SEG-OVER-TARGET", "SEG-INVALID", "SEG-FORMAT"}


def test_every_rule_is_made_to_fire_by_some_test():
    import importlib

    elsewhere = {rule: ("test_validate", test) for rule, test in ELSEWHERE.items()} | FEATURES
    assert not (HERE & set(elsewhere)) and not (set(ELSEWHERE) & set(FEATURES)), "each rule is listed once"
    assert HERE | set(elsewhere) == set(RULES), sorted(set(RULES) ^ (HERE | set(elsewhere)))
    for rule, (module_name, test) in elsewhere.items():
        module = importlib.import_module(module_name)
        assert callable(getattr(module, test, None)), f"{rule}: {test} is not in tests/{module_name}.py"
        assert rule in Path(module.__file__).read_text(), f"{rule} is not named in tests/{module_name}.py"


def test_rule_count_is_the_same_in_readme_docs_and_code():
    n = len(RULES)
    readme = (ROOT / "README.md").read_text()
    docs = (ROOT / "docs" / "VALIDATION.md").read_text()
    table = readme.split("<!-- rules:begin -->")[1].split("<!-- rules:end -->")[0]
    assert sum(1 for line in table.splitlines() if line.startswith("| `")) == n
    assert len(re.findall(r"^\| `[A-Z0-9.-]+` \| (?:error|warning|info) \|", docs, re.M)) == n
    stated = re.findall(r"\b(\d+) (?:validation )?rules\b", readme) + re.findall(r"\b(\d+) (?:validation )?rules\b", docs)
    assert stated and set(stated) == {str(n)}, f"the docs state {stated} rules; the code has {n}"
