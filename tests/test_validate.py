"""abrpipe validate: clean outputs pass; deliberately broken ones fail and name the rule.

The broken outputs are copies of one real encode (the shared `encoded_tiny` fixture), each damaged
in one way: a deleted segment, BANDWIDTH divided by 10, a rendition with a different GOP, a
truncated segment, a wrong CODECS string, a gap in the DASH timeline, and a few more.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from media import ROOT, SHARED_SCHEMA, ffmpeg, make_clip, requires_ffmpeg

from abrpipe import mp4, registry
from abrpipe.validate import RULES, validate_output

SCHEMA = str(SHARED_SCHEMA) if (SHARED_SCHEMA / "DASH-MPD.xsd").exists() else None
needs_schema = pytest.mark.skipif(SCHEMA is None, reason=f"the MPEG-DASH schema is not at {SHARED_SCHEMA}")
DOCS = ROOT / "docs" / "VALIDATION.md"


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real entry point, as CI calls it."""
    return subprocess.run(
        [sys.executable, "-m", "abrpipe", "validate", *args], capture_output=True, text=True, timeout=120
    )


def video_dirs(out: Path) -> list[Path]:
    """Video rendition directories, largest picture first."""
    found = []
    for init in out.glob("*/init.mp4"):
        track = mp4.read_init(init)
        if track.handler == "vide":
            found.append((track.width * track.height, init.parent))
    return [d for _, d in sorted(found, reverse=True)]


def edit(path: Path, pattern: str, replace, count: int = 1) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, replace, text, count=count)
    assert n, f"{pattern!r} not found in {path}"
    path.write_text(new)


@pytest.fixture
def out(encoded_tiny, tmp_path) -> Path:
    """A private copy of the shared encode, free to break."""
    dst = tmp_path / "out"
    shutil.copytree(encoded_tiny, dst)
    return dst


# -- clean outputs ------------------------------------------------------------------------------


@requires_ffmpeg
def test_clean_output_passes_strict(encoded_tiny):
    report = validate_output(str(encoded_tiny), dash_schema=SCHEMA, strict=True)
    assert report.ok(), [f.to_dict() for f in report.errors + report.warnings]
    assert report.manifests == ["master.m3u8", "manifest.mpd"]
    assert report.renditions == 4 and report.segments >= 12  # 3 video + 1 audio, 6 s in 2-s segments
    # 2-s segments on a test profile: the one note is Apple's 6-s recommendation
    assert report.rules() <= {"APPLE-7.5-TARGET-DURATION", "DASH-XSD-SKIPPED"}


@requires_ffmpeg
def test_cli_json_on_clean_output(encoded_tiny):
    result = cli(str(encoded_tiny), "--strict", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["errors"] == 0 and data["warnings"] == 0
    assert data["renditions"] == 4
    assert "valid:" in result.stderr


@requires_ffmpeg
def test_a_single_manifest_can_be_given(encoded_tiny):
    mpd = validate_output(str(encoded_tiny / "manifest.mpd"))
    assert mpd.manifests == ["manifest.mpd"] and not mpd.errors
    hls = validate_output(str(encoded_tiny / "master.m3u8"))
    assert hls.manifests == ["master.m3u8"] and not hls.errors


@requires_ffmpeg
@needs_schema
def test_mpd_validates_against_the_xsd(encoded_tiny):
    report = validate_output(str(encoded_tiny), dash_schema=SCHEMA)
    assert "DASH-XSD" not in report.rules() and "DASH-XSD-SKIPPED" not in report.rules()


@requires_ffmpeg
def test_xsd_skipped_without_a_schema_says_how_to_enable_it(encoded_tiny):
    report = validate_output(str(encoded_tiny))
    skipped = [f for f in report.infos if f.rule == "DASH-XSD-SKIPPED"]
    assert skipped and "--dash-schema" in skipped[0].message and "ABRPIPE_DASH_SCHEMA" in skipped[0].message
    assert report.ok(strict=True)


@requires_ffmpeg
@needs_schema
def test_xsd_rejects_an_invalid_mpd(out):
    edit(out / "manifest.mpd", r'type="static"', 'type="vod"')
    report = validate_output(str(out), dash_schema=SCHEMA)
    assert "DASH-XSD" in report.rules("error")


def test_missing_schema_file_is_an_input_error(tmp_path):
    from abrpipe.errors import InputError

    with pytest.raises(InputError, match="DASH-MPD.xsd"):
        validate_output(str(tmp_path), dash_schema=str(tmp_path))


def test_empty_directory_has_no_manifest(tmp_path):
    report = validate_output(str(tmp_path))
    assert report.rules("error") == {"NO-MANIFEST"}
    assert not report.ok()


# -- the broken outputs of the issue ------------------------------------------------------------


def delete_segment(out: Path) -> None:
    (video_dirs(out)[0] / "seg_00002.m4s").unlink()


def bandwidth_divided_by_10(out: Path) -> None:
    edit(
        out / "master.m3u8",
        r"(#EXT-X-STREAM-INF:(?:CLOSED-CAPTIONS=NONE,)?BANDWIDTH=)(\d+)",
        lambda m: f"{m.group(1)}{int(m.group(2)) // 10}",
    )


def truncated_segment(out: Path) -> None:
    seg = video_dirs(out)[0] / "seg_00002.m4s"
    seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])


def wrong_codecs(out: Path) -> None:
    edit(out / "master.m3u8", r'CODECS="avc1\.[0-9a-fA-F]{6}', 'CODECS="avc1.640033')


def dash_timeline_gap(out: Path) -> None:
    """Start the second segment of the first Representation half a segment late."""

    def split(m: re.Match) -> str:  # <S t d r=N/> -> <S t d r=N-1/><S t=later d/>
        t, d, r = int(m.group(1)), int(m.group(2)), int(m.group(3))
        head = f'<S t="{t}" d="{d}"' + (f' r="{r - 1}"' if r > 1 else "") + "/>"
        return head + f'<S t="{t + d * r + d // 2}" d="{d}"/>'

    mpd = out / "manifest.mpd"
    first = re.search(r'<S t="(\d+)" d="(\d+)"(?: r="(\d+)")?\s*/>', mpd.read_text())
    assert first, "no SegmentTimeline in the MPD"
    if first.group(3):
        edit(mpd, r'<S t="(\d+)" d="(\d+)" r="(\d+)"\s*/>', split)
    else:
        edit(
            mpd,
            r'<S t="([1-9]\d*)" d="(\d+)"',
            lambda m: f'<S t="{int(m.group(1)) + int(m.group(2)) // 2}" d="{m.group(2)}"',
        )


@requires_ffmpeg
@pytest.mark.parametrize(
    ("damage", "rule"),
    [
        (delete_segment, "FILE-MISSING"),
        (bandwidth_divided_by_10, "BW-PEAK"),
        (truncated_segment, "SEG-TRUNCATED"),
        (wrong_codecs, "CODECS-MISMATCH"),
        (dash_timeline_gap, "DASH-TIMELINE-GAP"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_broken_output_fails_naming_the_rule(out, damage, rule):
    damage(out)
    report = validate_output(str(out))
    assert rule in report.rules("error"), [f.to_dict() for f in report.findings]
    assert not report.ok()
    result = cli(str(out), "--json")
    assert result.returncode == 7, result.stderr
    assert rule in {f["rule"] for f in json.loads(result.stdout)["findings"]}
    assert f"{rule}:" in result.stderr  # the human report names it too


@requires_ffmpeg
def test_rendition_with_a_different_gop(out, tmp_path):
    """Re-encode the smallest rendition with keyframes off the shared grid (same segment
    boundaries, other keyframes inside them)."""
    target = video_dirs(out)[-1]
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(
        b"".join(p.read_bytes() for p in [target / "init.mp4", *sorted(target.glob("seg_*.m4s"))])
    )
    work = tmp_path / "regop"
    work.mkdir()
    # fmt: off
    ffmpeg(
        "-i", str(joined), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "150k",
        "-force_key_frames", "0,0.6,2,2.6,4,4.6", "-g", "600", "-sc_threshold", "0",
        "-f", "hls", "-start_number", "1", "-hls_segment_type", "fmp4", "-hls_time", "2", "-hls_playlist_type", "vod",
        "-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename", "seg_%05d.m4s",
        "-hls_segment_options", "movflags=+cmaf+negative_cts_offsets:use_editlist=0", "x.m3u8",
        cwd=str(work),
    )
    # fmt: on
    for f in [work / "init.mp4", *work.glob("seg_*.m4s")]:
        shutil.copy(f, target / f.name)
    report = validate_output(str(out))
    errors = [f for f in report.errors if f.rule == "ALIGN-KEYFRAMES"]
    assert errors and errors[0].rendition == target.name, [f.to_dict() for f in report.findings]


# -- more damage, one rule each -----------------------------------------------------------------


def _trun_first_sample_flags(data: bytearray) -> int:
    """Byte offset of the first sample's flags in the first trun of a segment."""
    at = data.index(b"trun")
    flags = int.from_bytes(data[at + 5 : at + 8], "big")
    pos = at + 8 + 4  # FullBox header, sample_count
    if flags & 0x1:  # data_offset
        pos += 4
    if flags & 0x4:  # first_sample_flags
        return pos
    assert flags & 0x400, "no per-sample flags in this trun"
    return pos + 4 * bool(flags & 0x100) + 4 * bool(flags & 0x200)


@requires_ffmpeg
def test_segment_not_starting_with_a_sync_sample(out):
    seg = video_dirs(out)[0] / "seg_00002.m4s"
    data = bytearray(seg.read_bytes())
    at = _trun_first_sample_flags(data)
    data[at : at + 4] = (int.from_bytes(data[at : at + 4], "big") | 0x00010000).to_bytes(4, "big")  # non-sync
    seg.write_bytes(bytes(data))
    report = validate_output(str(out))
    assert "SEG-KEYFRAME" in report.rules("error")


@requires_ffmpeg
def test_sync_sample_that_is_not_an_idr_picture(out):
    rdir = video_dirs(out)[0]
    seg = rdir / "seg_00002.m4s"
    first = mp4.read_segment(seg, mp4.read_init(rdir / "init.mp4")).fragments[0]
    data = bytearray(seg.read_bytes())
    pos, end = first.first_sample_data_offset, first.first_sample_data_offset + first.first_sample_size
    while pos < end:  # relabel the IDR slice (nal_unit_type 5) as a non-IDR one (1)
        size = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4] & 0x1F == 5:
            data[pos + 4] = (data[pos + 4] & 0xE0) | 1
            break
        pos += 4 + size
    else:
        pytest.fail("no IDR slice in the first sample")
    seg.write_bytes(bytes(data))
    report = validate_output(str(out))
    assert "SEG-IDR" in report.rules("error")


@requires_ffmpeg
def test_iframe_range_off_its_moof(out):
    edit(
        video_dirs(out)[0] / "iframes.m3u8",
        r"#EXT-X-BYTERANGE:(\d+)@(\d+)",
        lambda m: f"#EXT-X-BYTERANGE:{m.group(1)}@{int(m.group(2)) + 8}",
    )
    report = validate_output(str(out))
    assert "IFRAME-RANGE" in report.rules("error")


@requires_ffmpeg
def test_segment_longer_than_the_target_duration(out):
    edit(video_dirs(out)[0] / "playlist.m3u8", r"#EXT-X-TARGETDURATION:\d+", "#EXT-X-TARGETDURATION:1")
    report = validate_output(str(out))
    assert "HLS-TARGETDURATION" in report.rules("error")
    assert "APPLE-8.2-SAME-TARGETDURATION" in report.rules("warning")


@requires_ffmpeg
def test_wrong_resolution_and_frame_rate(out):
    edit(
        out / "master.m3u8", r"RESOLUTION=(\d+)x(\d+),FRAME-RATE=[\d.]+", "RESOLUTION=1280x720,FRAME-RATE=25"
    )
    report = validate_output(str(out))
    assert {"RESOLUTION-MISMATCH", "FRAMERATE-MISMATCH"} <= report.rules("error")


@requires_ffmpeg
def test_apple_lint_is_warnings_and_fails_only_with_strict(out):
    for name in ("#EXT-X-INDEPENDENT-SEGMENTS\n", "#EXT-X-PLAYLIST-TYPE:VOD\n"):
        for playlist in [out / "master.m3u8", *out.glob("*/*.m3u8")]:
            playlist.write_text(playlist.read_text().replace(name, ""))
    edit(out / "master.m3u8", r',LANGUAGE="[^"]*"', "")
    edit(out / "master.m3u8", r"#EXT-X-I-FRAME-STREAM-INF:.*\n", "", count=0)
    report = validate_output(str(out))
    assert not report.errors, [f.to_dict() for f in report.errors]
    assert {
        "APPLE-9.11-INDEPENDENT-SEGMENTS",
        "APPLE-8.6-PLAYLIST-TYPE",
        "APPLE-8.10-LANGUAGE",
        "APPLE-6.1-IFRAME-PLAYLISTS",
    } <= report.rules("warning")
    assert report.ok() and not report.ok(strict=True)
    assert cli(str(out)).returncode == 0
    assert cli(str(out), "--strict").returncode == 7


# -- other tools' output ------------------------------------------------------------------------


@requires_ffmpeg
def test_ffmpeg_hls_fmp4_output(clip_360p, tmp_path):
    """FFmpeg's own hls muxer: two variants plus an audio group, fMP4 segments."""
    # fmt: off
    ffmpeg(
        "-i", str(clip_360p), "-map", "0:v", "-map", "0:v", "-map", "0:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-sc_threshold", "0",
        "-b:v:0", "500k", "-b:v:1", "200k", "-s:v:1", "320x180", "-c:a", "aac", "-b:a", "64k",
        "-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "2", "-hls_playlist_type", "vod",
        "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,agroup:aud v:1,agroup:aud a:0,agroup:aud",
        "-hls_segment_filename", "stream_%v_%03d.m4s", "-hls_fmp4_init_filename", "init.mp4", "stream_%v.m3u8",
        cwd=str(tmp_path),
    )
    # fmt: on
    report = validate_output(str(tmp_path))
    assert report.manifests == ["master.m3u8"] and report.renditions == 3
    structural = {r for r in report.rules("error") if not r.startswith("BW-")}
    assert not structural, [f.to_dict() for f in report.errors]
    # what FFmpeg leaves out of the multivariant playlist
    assert {"APPLE-9.15-FRAME-RATE", "APPLE-6.1-IFRAME-PLAYLISTS"} <= report.rules("warning")


@requires_ffmpeg
def test_ffmpeg_dash_output_with_edit_lists(clip_360p, tmp_path):
    """FFmpeg's dash muxer writes edit lists (AAC priming) and presentation-time timelines."""
    # fmt: off
    ffmpeg(
        "-i", str(clip_360p), "-map", "0:v", "-map", "0:v", "-map", "0:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-sc_threshold", "0",
        "-b:v:0", "500k", "-b:v:1", "200k", "-s:v:1", "320x180", "-c:a", "aac", "-b:a", "64k",
        "-f", "dash", "-seg_duration", "2", "-use_timeline", "1", "-use_template", "1",
        "-adaptation_sets", "id=0,streams=v id=1,streams=a", "out.mpd",
        cwd=str(tmp_path),
    )
    # fmt: on
    report = validate_output(str(tmp_path), dash_schema=SCHEMA)
    assert report.manifests == ["out.mpd"] and report.renditions == 3
    assert not report.errors, [f.to_dict() for f in report.errors]


@requires_ffmpeg
def test_mpegts_segments_get_the_ts_checks(clip_360p, tmp_path):
    ffmpeg(
        "-i",
        str(clip_360p),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-c:a",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_playlist_type",
        "vod",
        "index.m3u8",
        cwd=str(tmp_path),
    )
    report = validate_output(str(tmp_path))
    # MPEG-TS is read packet by packet now: PAT/PMT, IDR, counters and timestamps all pass here.
    assert "SEG-FORMAT" not in report.rules() and not report.errors and not report.warnings
    assert report.segments == 3
    (tmp_path / "index1.ts").unlink()
    assert "FILE-MISSING" in validate_output(str(tmp_path)).rules("error")


# -- every built-in profile -----------------------------------------------------------------------


@requires_ffmpeg
@pytest.mark.parametrize("profile", ["default", "720p", "480p", "1080p"])
def test_builtin_profiles_pass(profile, tmp_path_factory, media_dir):
    """Each built-in ladder, encoded from an 8-s 640x360 clip (rungs above it are dropped), passes
    validation inside `encode` (which refuses to publish otherwise) and again with --strict."""
    from abrpipe.pipeline import Job, run_job

    clip = media_dir / "validate 8s.mp4"
    if not clip.exists():
        make_clip(clip, seconds=8)
    out = tmp_path_factory.mktemp("profiles") / profile
    result = run_job(
        Job(
            input=str(clip),
            output=str(out),
            profile=registry.load(profile),
            preset="ultrafast",
            dash_schema=SCHEMA,
        )
    )
    assert result.validation is not None and not result.validation.errors
    report = validate_output(str(out), dash_schema=SCHEMA, strict=True)
    assert report.ok(), [f.to_dict() for f in report.errors + report.warnings]
    record = json.loads((out / "abrpipe.json").read_text())
    assert record["validation"]["ok"] is True


@requires_ffmpeg
def test_encode_refuses_to_publish_an_invalid_result(clip_360p, tmp_path, monkeypatch):
    """The same validation runs inside encode: a damaged work directory is never published,
    unless validation is turned off."""
    from media import TINY_PROFILE

    from abrpipe import package
    from abrpipe.errors import ValidationFailed
    from abrpipe.pipeline import Job, run_job

    write_manifests = package.write_manifests

    def write_and_lose_a_segment(work_dir, title, plan):
        written = write_manifests(work_dir, title, plan)
        (Path(work_dir) / title.video[0].id / "seg_00002.m4s").unlink()
        return written

    monkeypatch.setattr(package, "write_manifests", write_and_lose_a_segment)
    out = tmp_path / "out"
    job = Job(input=str(clip_360p), output=str(out), profile=registry.load(TINY_PROFILE))
    with pytest.raises(ValidationFailed, match="FILE-MISSING"):
        run_job(job)
    assert not out.exists() and not Path(f"{out}.partial").exists()
    run_job(Job(input=str(clip_360p), output=str(out), profile=registry.load(TINY_PROFILE), validate=False))
    assert (out / "master.m3u8").exists()
    assert "FILE-MISSING" in validate_output(str(out)).rules("error")


# -- the rule list ----------------------------------------------------------------------------------


def test_every_rule_is_documented_with_its_severity():
    text = DOCS.read_text()
    for rule in RULES.values():
        assert re.search(rf"^\| `{re.escape(rule.id)}` \| {rule.severity} \|", text, re.M), (
            f"{rule.id} ({rule.severity}) not in {DOCS}"
        )
    documented = set(re.findall(r"^\| `([A-Z0-9.-]+)` \|", text, re.M))
    assert documented == set(RULES), documented ^ set(RULES)


def test_readme_lists_every_rule_id():
    from abrpipe.validate.report import RULES

    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- rules:begin -->")[1].split("<!-- rules:end -->")[0]
    listed = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert listed == set(RULES)


def test_threads_that_validate_at_once_never_share_a_compiled_schema():
    """A batch validates its jobs in parallel threads; lxml keeps a validation's state (its error log) on
    the validator object, so each thread compiles its own and reuses it."""
    import threading

    from abrpipe.validate import dash_checks

    if not (SHARED_SCHEMA / "DASH-MPD.xsd").is_file():
        pytest.fail(f"{SHARED_SCHEMA}/DASH-MPD.xsd is missing: the conformance material is read from ../shared")
    schema_dir = str(SHARED_SCHEMA)
    mine = dash_checks._schema(schema_dir)
    assert dash_checks._schema(schema_dir) is mine  # compiled once per thread
    theirs: list[object] = []
    worker = threading.Thread(target=lambda: theirs.extend([dash_checks._schema(schema_dir), dash_checks._schema(schema_dir)]))
    worker.start()
    worker.join()
    assert theirs[0] is theirs[1] and theirs[0] is not mine
