"""Subtitles and closed captions: sidecar and source text tracks become WebVTT segments on the video's
grid, signalled in HLS and DASH; CEA-608 captions in the H.264 SEI survive the encode; bad input is
refused with one line; every VTT-* validation rule fires on its own defect."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import m3u8
import pytest
from lxml import etree
from media import ROOT, SHARED_SCHEMA, joined_rendition, make_clip, require_ffmpeg_tools, requires_ffmpeg
from text_media import CAPTIONS, SIDECAR_CUES, SIDECAR_VTT, SOURCE_CUES, caption_events, make_text_source

from abrpipe import mp4, registry, subtitles
from abrpipe.errors import InputError
from abrpipe.pipeline import Job, run_job
from abrpipe.probe import SourceMedia, SubtitleTrack
from abrpipe.validate import validate_output

TEXT_PROFILE = str(ROOT / "tests" / "data" / "text.toml")
MPD_NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
SDH = "public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound"


def schema_dir() -> str | None:
    return str(SHARED_SCHEMA) if (SHARED_SCHEMA / "DASH-MPD.xsd").exists() else os.environ.get("ABRPIPE_DASH_SCHEMA")


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("text")


@pytest.fixture(scope="module")
def text_source(text_dir) -> Path:
    require_ffmpeg_tools()
    return make_text_source(text_dir)


@pytest.fixture(scope="module")
def sidecar(text_dir) -> Path:
    path = text_dir / "movie.fr.vtt"
    path.write_text(SIDECAR_VTT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def encoded(text_source, sidecar, text_dir) -> Path:
    """The source's SDH mov_text track (eng) plus a French forced, default sidecar, 2-s segments."""
    out = text_dir / "out"
    spec = subtitles.parse_spec(f"fr,forced,default={sidecar}")
    run_job(Job(input=str(text_source), output=str(out), profile=registry.load(TEXT_PROFILE),
                dash_schema=schema_dir(), subtitles=(spec,)))
    return out


# -- unit: parsing and segmenting --------------------------------------------------------------------

def test_spec_flags_and_language_tags():
    spec = subtitles.parse_spec("pt-br,sdh,forced=a.srt")
    assert (spec.language, spec.sdh, spec.forced, spec.default, spec.path) == ("pt-BR", True, True, False, "a.srt")
    assert subtitles.parse_spec("eng=a.srt").language == "en"  # ISO 639-2 -> the shortest BCP 47 form
    assert subtitles.parse_spec("en-sdh=a.srt").sdh is True  # the shorthand for en,sdh
    for bad in ("english=a.srt", "en_US=a.srt", "12=a.srt"):
        with pytest.raises(InputError, match="is not a BCP 47 language tag"):
            subtitles.parse_spec(bad)
    with pytest.raises(InputError, match="unknown flag 'loud'"):
        subtitles.parse_spec("en,loud=a.srt")
    with pytest.raises(InputError, match="expected LANG"):
        subtitles.parse_spec("a.srt")


def test_cues_sorted_overlaps_kept_zero_length_dropped():
    cues = subtitles.parse_text(
        "WEBVTT\n\n00:05.000 --> 00:06.000 align:start\nb\n\n00:01.000 --> 00:07.000\na\n\n00:02.000 --> 00:02.000\nzero\n",
        "x.vtt",
    )
    assert [(c.start_ms, c.end_ms, c.text, c.settings) for c in cues] == [
        (1000, 7000, "a", ""), (5000, 6000, "b", "align:start")
    ]


def test_srt_markup_becomes_webvtt_and_utf16_is_read(tmp_path):
    path = tmp_path / "a.srt"
    path.write_bytes("1\r\n00:00:01,000 --> 00:00:02,500\r\n<font color=red>Tom & <i>Jerry</i></font>\r\n".encode("utf-16"))
    (cue,) = subtitles.read_cues(str(path))
    assert (cue.start_ms, cue.end_ms, cue.text) == (1000, 2500, "Tom &amp; <i>Jerry</i>")


def test_segment_cues_repeats_a_cue_across_boundaries():
    cue = subtitles.Cue(1500, 4500, "long")
    assert subtitles.segment_cues([cue], [(0, 2000), (2000, 4000), (4000, 6000), (6000, 8000)]) == [[cue], [cue], [cue], []]


def test_bitmap_source_tracks_are_listed_and_left_out_with_a_reason():
    from abrpipe.text_stage import source_specs

    pgs = SubtitleTrack(3, 0, "hdmv_pgs_subtitle", "eng", None, False, False, False)
    text = SubtitleTrack(4, 1, "subrip", "fre", "Français", True, False, True)
    source = SourceMedia("/x.mkv", "matroska", 6.0, 1, None, None, (), (pgs, text))
    specs, notes = source_specs(source)
    assert [(s.stream_index, s.language, s.default, s.sdh, s.name) for s in specs] == [(4, "fr", True, True, "Français")]
    assert notes and "subtitles #3 (hdmv_pgs_subtitle, eng) not published: bitmap subtitles" in notes[0]


# -- bad input: one line, exit 3, nothing published -------------------------------------------------

BAD_SIDECARS = {
    "not_subtitles": (b"just some words\nand more\n", "is neither SRT nor WebVTT"),
    "end_before_start": (b"1\n00:00:05,000 --> 00:00:04,000\nbackwards\n", "cue 1 ends before it starts"),
    "latin1": ("1\n00:00:01,000 --> 00:00:02,000\ncaf\u00e9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9"),
    "binary": (b"\x00\x01\x02\x03" * 64, "is a binary file, not SRT or WebVTT"),
}


@requires_ffmpeg
@pytest.mark.parametrize("case", [*BAD_SIDECARS, "bad_language"])
def test_bad_subtitles_fail_with_one_line_and_publish_nothing(case, tmp_path):
    clip = make_clip(tmp_path / "in.mp4", size="160x90", seconds=1, audio=None)
    sub = tmp_path / "sub.srt"
    data, expected = BAD_SIDECARS.get(case, (SIDECAR_VTT.encode(), "'english' is not a BCP 47 language tag"))
    sub.write_bytes(data)
    lang = "english" if case == "bad_language" else "en"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "abrpipe", "encode", str(clip), "-o", str(out), "--profile", TEXT_PROFILE,
         "--subtitles", f"{lang}={sub}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not Path(str(out) + ".partial").exists()


# -- the encoded title ----------------------------------------------------------------------------------

def _vtt_cues(path: Path) -> tuple[int, list[tuple[float, float, str]]]:
    text = path.read_text(encoding="utf-8")
    mpegts = int(re.search(r"^X-TIMESTAMP-MAP=MPEGTS:(\d+),LOCAL:00:00:00\.000$", text, re.M).group(1))
    cues = [(round(c.start_ms / 1000, 3), round(c.end_ms / 1000, 3), c.text) for c in subtitles.parse_text(text, str(path))]
    return mpegts, cues


@requires_ffmpeg
def test_every_cue_is_in_the_segments_it_overlaps_with_its_own_times(encoded):
    video = encoded / "180p-200k"
    track = mp4.read_init(str(video / "init.mp4"))
    segs = [mp4.read_segment(str(p), track) for p in sorted(video.glob("seg_*.m4s"))]
    origin = segs[0].base_decode_time
    bounds = [((s.base_decode_time - origin) / track.timescale, (s.base_decode_time + s.duration - origin) / track.timescale)
              for s in segs]
    assert len(bounds) == 4 and [b[0] for b in bounds] == pytest.approx([0.0, 2.0, 4.0, 6.0])
    for track_dir, expected in (("subs-en-sdh", SOURCE_CUES), ("subs-fr-forced", SIDECAR_CUES)):
        files = sorted((encoded / track_dir).glob("seg_*.vtt"))
        assert len(files) == len(bounds), "one WebVTT segment per video segment"
        for f, (start, end) in zip(files, bounds, strict=True):
            mpegts, cues = _vtt_cues(f)
            assert mpegts == origin * 90000 // track.timescale  # LOCAL 0 is the video's first sample
            assert cues == [c for c in expected if c[0] < end and c[1] > start], f"{track_dir}/{f.name}"
        # The cue that crosses the 4-s boundary (source) / every boundary (sidecar) is in both.
    assert sum("Across the boundary" in f.read_text() for f in (encoded / "subs-en-sdh").glob("seg_*.vtt")) == 2
    assert sum("Longue" in f.read_text() for f in (encoded / "subs-fr-forced").glob("seg_*.vtt")) == 3
    whole = subtitles.parse_text((encoded / "subs-fr-forced" / "subtitles.vtt").read_text(), "x")
    assert [(c.start_ms / 1000, c.end_ms / 1000, c.text) for c in whole] == SIDECAR_CUES


@requires_ffmpeg
def test_hls_signals_subtitles_and_closed_captions(encoded):
    master = m3u8.load(str(encoded / "master.m3u8"))
    subs = {m.language: m for m in master.media if m.type == "SUBTITLES"}
    assert set(subs) == {"en", "fr"}
    en, fr = subs["en"], subs["fr"]
    assert (en.group_id, en.default, en.autoselect, en.forced, en.characteristics) == ("subs", "NO", "YES", "NO", SDH)
    assert (fr.group_id, fr.default, fr.forced, fr.characteristics) == ("subs", "YES", "YES", None)
    assert en.name == "English SDH" and fr.name == "Français (forced)"
    (cc,) = [m for m in master.media if m.type == "CLOSED-CAPTIONS"]
    assert (cc.group_id, cc.instream_id) == ("cc", "CC1")
    assert len(master.playlists) == 2
    for variant in master.playlists:
        assert variant.stream_info.subtitles == "subs" and variant.stream_info.closed_captions == '"cc"'
    text = (encoded / "master.m3u8").read_text()
    assert text.count('SUBTITLES="subs"') == 2 and text.count('CLOSED-CAPTIONS="cc"') == 2
    media = m3u8.load(str(encoded / "subs-en-sdh" / "playlist.m3u8"))
    assert [s.uri for s in media.segments] == ["seg_00001.vtt", "seg_00002.vtt", "seg_00003.vtt", "seg_00004.vtt"]
    assert media.segment_map in (None, []) and media.is_endlist


@requires_ffmpeg
def test_dash_text_adaptation_sets_and_cea608_accessibility(encoded):
    mpd = etree.parse(str(encoded / "manifest.mpd"))
    text_sets = {a.get("lang"): a for a in mpd.findall(".//d:AdaptationSet[@contentType='text']", MPD_NS)}
    assert set(text_sets) == {"en", "fr"}
    for lang, aset in text_sets.items():
        assert aset.get("mimeType") == "text/vtt"
        (base,) = aset.findall(".//d:BaseURL", MPD_NS)
        assert (encoded / base.text).is_file() and base.text.endswith("/subtitles.vtt")
        roles = [r.get("value") for r in aset.findall("d:Role", MPD_NS)]
        assert roles == (["main", "forced-subtitle"] if lang == "fr" else ["caption"])
    (acc,) = text_sets["en"].findall("d:Accessibility", MPD_NS)
    assert (acc.get("schemeIdUri"), acc.get("value")) == ("urn:tva:metadata:cs:AudioPurposeCS:2007", "2")
    assert not text_sets["fr"].findall("d:Accessibility", MPD_NS)
    (video,) = mpd.findall(".//d:AdaptationSet[@contentType='video']", MPD_NS)
    (cc,) = video.findall("d:Accessibility", MPD_NS)
    assert (cc.get("schemeIdUri"), cc.get("value")) == ("urn:scte:dash:cc:cea-608:2015", "CC1=und")
    report = validate_output(str(encoded), dash_schema=schema_dir())
    assert not report.errors, [f.message for f in report.errors]
    if schema_dir():
        assert "DASH-XSD-SKIPPED" not in {f.rule for f in report.findings}


@requires_ffmpeg
def test_closed_captions_survive_in_every_h264_rung(encoded, text_source, tmp_path):
    source_events = caption_events(text_source)
    assert [text for _, text in source_events] == [text for _, text in CAPTIONS]
    rungs = [p for p in encoded.iterdir() if (p / "init.mp4").exists() and not p.name.startswith("audio")]
    assert len(rungs) == 2
    for rung in rungs:
        assert caption_events(joined_rendition(rung, tmp_path)) == source_events, rung.name


@requires_ffmpeg
def test_no_subtitles_drops_source_tracks_and_no_captions_means_none(text_dir):
    source = make_text_source(text_dir, captions=False)
    out = text_dir / "plain"
    proc = subprocess.run(
        [sys.executable, "-m", "abrpipe", "encode", str(source), "-o", str(out), "--profile", TEXT_PROFILE, "--no-subtitles", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert not list(out.glob("subs-*"))
    text = (out / "master.m3u8").read_text()
    assert "TYPE=SUBTITLES" not in text and "CLOSED-CAPTIONS" in text
    assert all("CLOSED-CAPTIONS=NONE" in line for line in text.splitlines() if line.startswith("#EXT-X-STREAM-INF"))
    assert "cea-608" not in (out / "manifest.mpd").read_text()


# -- validation rules: each fires on its own defect ------------------------------------------------------

def _broken_copy(encoded: Path, tmp_path: Path, name: str, edit) -> Path:
    out = tmp_path / "broken"
    shutil.copytree(encoded, out)
    path = out / "subs-en-sdh" / name
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return out


VTT_DEFECTS = {
    "VTT-PARSE": ("seg_00002.vtt", lambda t: t.replace("00:00:03.500 --> 00:00:04.500", "00:00:03.500 -> 00:00:04.500")),
    "VTT-TIMESTAMP-MAP": ("seg_00001.vtt", lambda t: re.sub(r"X-TIMESTAMP-MAP=[^\n]*\n", "", t)),
    "VTT-CUE-OUTSIDE": ("seg_00003.vtt", lambda t: t + "\n00:00:00.000 --> 00:00:01.000\nearly\n"),
    "VTT-COVERAGE-GAP": ("seg_00003.vtt", lambda t: t.replace("Across the boundary", "Something else")),
}


@requires_ffmpeg
@pytest.mark.parametrize("rule", VTT_DEFECTS)
def test_vtt_rule_fires_alone(rule, encoded, tmp_path):
    name, edit = VTT_DEFECTS[rule]
    report = validate_output(str(_broken_copy(encoded, tmp_path, name, edit)))
    fired = {f.rule for f in report.errors}
    assert fired == {rule}, [(f.rule, f.message) for f in report.errors]


@requires_ffmpeg
def test_dash_whole_track_file_is_checked_too(encoded, tmp_path):
    out = tmp_path / "broken"
    shutil.copytree(encoded, out)
    (out / "subs-fr-forced" / "subtitles.vtt").write_text("NOT A WEBVTT FILE\n", encoding="utf-8")
    report = validate_output(str(out / "manifest.mpd"))
    assert [(f.rule, f.rendition) for f in report.errors] == [("VTT-PARSE", "subs-fr-forced")]
    assert not validate_output(str(encoded / "manifest.mpd")).errors


@requires_ffmpeg
def test_probe_lists_text_tracks(text_source):
    proc = subprocess.run([sys.executable, "-m", "abrpipe", "probe", str(text_source)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert re.search(r"subtitles #2 \(s:0\): mov_text, language eng, text default SDH", proc.stderr), proc.stderr


def test_ffmpeg_extracts_source_tracks_with_one_process(tmp_path):
    from abrpipe.text_stage import extract_command

    source = SourceMedia(str(tmp_path / "a.mkv"), "matroska", 6.0, 1, None, None, ())
    specs = [subtitles.SubtitleSpec("en", stream_index=2), subtitles.SubtitleSpec("fr", stream_index=3)]
    argv = extract_command(source, specs, str(tmp_path))
    assert argv.count("-i") == 1 and argv.count("-map") == 2 and argv.count("webvtt") == 4



def test_jobs_file_takes_subtitles_and_checks_them_before_encoding(tmp_path):
    from abrpipe import jobsfile

    (tmp_path / "in.mp4").write_bytes(b"not read here")
    (tmp_path / "fr.vtt").write_text(SIDECAR_VTT, encoding="utf-8")
    (tmp_path / "bad.srt").write_text("1\n00:00:05,000 --> 00:00:04,000\nbackwards\n", encoding="utf-8")
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'schema = 1\n[[jobs]]\ninput = "in.mp4"\nprofile = "{TEXT_PROFILE}"\n'
                    'subtitles = ["fr,forced=fr.vtt"]\nsource_subtitles = false\n')
    (bj,) = jobsfile.load_jobs_file(str(jobs))
    (spec,) = bj.job.subtitles
    assert (spec.language, spec.forced, spec.path) == ("fr", True, str(tmp_path / "fr.vtt"))
    assert bj.job.source_subtitles is False
    jobs.write_text(f'schema = 1\n[[jobs]]\ninput = "in.mp4"\nprofile = "{TEXT_PROFILE}"\nsubtitles = ["en=bad.srt"]\n')
    with pytest.raises(jobsfile.JobsFileError, match=r"jobs\[0\]\.subtitles.*cue 1 ends before it starts"):
        jobsfile.load_jobs_file(str(jobs))
    jobs.write_text(f'schema = 1\n[[jobs]]\ninput = "in.mp4"\nprofile = "{TEXT_PROFILE}"\nsubtitles = ["english=fr.vtt"]\n')
    with pytest.raises(jobsfile.JobsFileError, match=r"jobs\[0\]\.subtitles.*not a BCP 47 language tag"):
        jobsfile.load_jobs_file(str(jobs))


def test_subtitles_change_the_job_fingerprint(tmp_path):
    from abrpipe.pipeline import profile_fingerprint, text_fingerprint

    profile = registry.load(TEXT_PROFILE)
    sub = tmp_path / "fr.vtt"
    sub.write_text(SIDECAR_VTT, encoding="utf-8")
    plain = Job(input="a.mp4", output="out", profile=profile)
    assert text_fingerprint(plain) is None  # unchanged fingerprints for jobs without subtitle options
    with_sub = Job(input="a.mp4", output="out", profile=profile, subtitles=(subtitles.parse_spec(f"fr={sub}"),))
    first = profile_fingerprint(profile, None, None, text_fingerprint(with_sub))
    assert first != profile_fingerprint(profile, None, None, text_fingerprint(plain))
    sub.write_text(SIDECAR_VTT.replace("Bonjour", "Salut"), encoding="utf-8")
    assert profile_fingerprint(profile, None, None, text_fingerprint(with_sub)) != first


@requires_ffmpeg
def test_dry_run_prints_the_subtitle_extraction(text_source, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "abrpipe", "encode", str(text_source), "-o", str(tmp_path / "o"), "--profile", TEXT_PROFILE, "--dry-run"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.strip().splitlines() if not line.startswith("#")]
    assert len(commands) == 2 and "-map 0:2 -c:s webvtt -f webvtt" in commands[1]
    assert "# the source's text tracks, after the encode" in proc.stdout
    assert not (tmp_path / "o").exists()


def test_profile_can_drop_the_source_text_tracks(tmp_path):
    from abrpipe.errors import ProfileError
    from abrpipe.text_stage import SubtitlesStage

    path = tmp_path / "nosubs.toml"
    path.write_text(f'schema = 1\nextends = "{TEXT_PROFILE}"\nsource_subtitles = false\n')
    profile = registry.load(str(path))
    assert profile.source_subtitles is False and registry.load(TEXT_PROFILE).source_subtitles is True
    assert not SubtitlesStage().wanted(Job(input="a.mp4", output="o", profile=profile))
    sidecar = subtitles.SubtitleSpec("fr", path="fr.vtt")
    assert SubtitlesStage().wanted(Job(input="a.mp4", output="o", profile=profile, subtitles=(sidecar,)))
    path.write_text(f'schema = 1\nextends = "{TEXT_PROFILE}"\nsource_subtitles = "no"\n')
    with pytest.raises(ProfileError, match="source_subtitles: expected true or false"):
        registry.load(str(path))


@requires_ffmpeg
def test_rungs_at_a_reduced_frame_rate_carry_no_captions(text_source, tmp_path):
    profile = tmp_path / "half.toml"
    profile.write_text(f'schema = 1\nextends = "{TEXT_PROFILE}"\n[[rung_overrides]]\nindex = 1\nmax_fps = 15\n')
    proc = subprocess.run(
        [sys.executable, "-m", "abrpipe", "encode", str(text_source), "-o", str(tmp_path / "o"), "--profile", str(profile),
         "--dry-run", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    argv = json.loads(proc.stdout)["commands"][0]["argv"]
    assert argv[argv.index("-a53cc:v:1") + 1] == "0"  # 12.5 fps: the dropped frames took caption bytes with them
    assert "-a53cc:v:0" not in argv  # full rate: libx264 passes the captions through (a53cc on by default)


@requires_ffmpeg
@pytest.mark.parametrize(("container", "codec"), [("mkv", "ass"), ("mkv", "srt"), ("webm", "webvtt")])
def test_source_text_tracks_of_every_kind_become_cues(container, codec, tmp_path):
    from abrpipe import runner
    from abrpipe.probe import probe
    from abrpipe.text_stage import extract_command, source_specs

    srt = tmp_path / "in.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:01,250\nFirst\n\n2\n00:00:01,500 --> 00:00:02,000\nSecond line\n")
    src = tmp_path / f"in.{container}"
    video = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"] if container == "webm" else ["-c:v", "libx264", "-preset", "ultrafast"]
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10", "-i", str(srt),
                    "-t", "3", *video, "-c:s", codec, "-metadata:s:s:0", "language=fre", str(src)], check=True)
    source = probe(str(src))
    assert [t.codec for t in source.subtitles] == [{"srt": "subrip"}.get(codec, codec)]
    specs, notes = source_specs(source)
    assert not notes and [s.language for s in specs] == ["fr"]
    runner.run(extract_command(source, specs, str(tmp_path)))
    cues = subtitles.parse_text((tmp_path / f"text-{specs[0].stream_index}.vtt").read_text(), "x")
    assert [(c.start_ms, c.end_ms, c.text) for c in cues] == [(500, 1250, "First"), (1500, 2000, "Second line")]


@requires_ffmpeg
def test_bitmap_subtitles_are_listed_and_left_out_with_a_reason(tmp_path):
    import json

    from text_media import make_pgs_source

    source = make_pgs_source(tmp_path)
    probe_out = subprocess.run([sys.executable, "-m", "abrpipe", "probe", str(source)], capture_output=True, text=True, timeout=60)
    assert "subtitles #1 (s:0): hdmv_pgs_subtitle, language deu, bitmap: not published (WebVTT needs text)" in probe_out.stderr
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "abrpipe", "encode", str(source), "-o", str(out), "--profile", TEXT_PROFILE, "--json", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["subtitles"] == [] and not list(out.glob("subs-*"))
    assert any("subtitles #1 (hdmv_pgs_subtitle, deu) not published: bitmap subtitles cannot become WebVTT" in n
               for n in record["notes"]), record["notes"]
