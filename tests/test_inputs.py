"""Every input either works or fails clearly.

The "works" matrix: awkward real-world sources, made with lavfi, are encoded in one batch and every
output must validate and re-probe as expected (upright, 8-bit SDR 4:2:0, at most 60 fps, progressive).
The "fails" matrix: each bad input gives one error line naming the file and the reason, its
documented exit code, no traceback, nothing published and no ffmpeg left running. Crafted playlists
and lists of files are refused unless the user opts in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from batch_media import (
    AUDIO_ONLY_PROFILE,
    assert_no_ffmpeg_left,
    error_lines,
    ffmpeg,
    ffprobe_json,
    make_clip,
    read_record,
    rendition_file,
    require_ffmpeg,
    run_cli,
    toml_str,
    validate,
    write_profile,
)
from media import missing_capability, small_tmpfs

from abrpipe import batch
from abrpipe.errors import ExitCode
from abrpipe.jobsfile import load_jobs_file

# Three rungs: the top one only fits the 853x479 source (clamped to 852x478, never upscaled).
MATRIX_PROFILE = """\
schema = 1
description = "tests: input matrix"
preset = "ultrafast"
gop = 1
segment = 2

[[rungs]]
size = "854x480"
bitrate = "600k"

[[rungs]]
size = "320x180"
bitrate = "200k"

[[rungs]]
size = "160x90"
bitrate = "80k"

[[audio]]
codec = "aac"
bitrate = "64k"
channels = 2
"""

V = "testsrc2=size=320x240:rate=30:duration=2"
A = "sine=frequency=440:sample_rate=48000:duration=2"
X264 = ("-c:v", "libx264", "-preset", "ultrafast")
WEIRD_NAME = "it's a \"clip\" $(touch pwned) & `id` ünïcødé 名前.mp4"


@dataclass(frozen=True)
class Source:
    id: str
    file: str
    make: Callable[[Path], None]
    profile: str = "matrix"
    portrait: bool = False
    audio_channels: int | None = 2  # expected output channels; None: no audio rendition
    top_size: tuple[int, int] | None = None  # expected (w, h) of the top video rendition
    max_segments: int | None = None
    interlaced_source: bool = False
    video: bool = True
    awkward: Callable[[dict, dict], bool] | None = None  # (source video stream, audio stream): the fixture made it right
    note: str | None = None  # expected in the job record's notes


def _gen(*args: str) -> Callable[[Path], None]:
    return lambda out: ffmpeg(*args, str(out))


def _rotated(out: Path) -> None:
    plain = out.with_name("plain-for-rotation.mp4")
    ffmpeg("-f", "lavfi", "-i", V, "-f", "lavfi", "-i", A, *X264, "-c:a", "aac", str(plain))
    # The display matrix a phone writes: the coded picture is landscape, the display is portrait.
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out))


SOURCES = [
    Source("odd-853x479", "odd.mp4", _gen(
        "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30:duration=2", "-f", "lavfi", "-i", A,
        "-vf", "format=yuv444p,crop=853:479:0:0", *X264, "-c:a", "aac"), top_size=(852, 478),
        awkward=lambda v, a: (v["width"], v["height"]) == (853, 479)),
    Source("rotated-90", "phone.mp4", _rotated, portrait=True, top_size=(180, 240),
           awkward=lambda v, a: any(abs(sd.get("rotation", 0)) == 90 for sd in v.get("side_data_list", [])),
           note="output is upright"),
    Source("portrait", "portrait.mp4", _gen(
        "-f", "lavfi", "-i", "testsrc2=size=180x320:rate=30:duration=2", "-f", "lavfi", "-i", A, *X264, "-c:a", "aac"),
        portrait=True, top_size=(180, 320), awkward=lambda v, a: v["height"] > v["width"]),
    Source("vfr", "vfr.mp4", _gen(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=3", "-f", "lavfi", "-i", A,
        "-vf", "select='not(between(n,10,25))*not(between(n,40,50))'", "-fps_mode", "vfr", *X264, "-c:a", "aac"),
        awkward=lambda v, a: v["r_frame_rate"] != v["avg_frame_rate"], note="variable frame rate"),
    Source("interlaced", "interlaced.ts", _gen(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=60000/1001:duration=2", "-f", "lavfi", "-i", A,
        "-vf", "interlace", *X264, "-flags", "+ildct+ilme", "-x264-params", "tff=1", "-c:a", "aac"),
        interlaced_source=True, awkward=lambda v, a: v.get("field_order") == "tt", note="deinterlaced"),
    Source("10-bit", "tenbit.mp4", _gen(
        "-f", "lavfi", "-i", V, "-f", "lavfi", "-i", A, *X264, "-pix_fmt", "yuv420p10le", "-c:a", "aac"),
        awkward=lambda v, a: v["pix_fmt"] == "yuv420p10le", note="10-bit source"),
    Source("hdr-pq", "hdr.mp4", _gen(
        "-f", "lavfi", "-i", V, "-f", "lavfi", "-i", A, "-c:v", "libx265", "-preset", "ultrafast",
        "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020",
        "-color_trc", "smpte2084", "-colorspace", "bt2020nc", "-tag:v", "hvc1", "-c:a", "aac"),
        awkward=lambda v, a: v.get("color_transfer") == "smpte2084", note="tone-mapped"),
    Source("120fps", "fast.mp4", _gen(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=120:duration=2", "-f", "lavfi", "-i", A, *X264, "-c:a", "aac"),
        awkward=lambda v, a: v["r_frame_rate"] == "120/1", note="output at 60 fps"),
    Source("surround-5.1", "surround.mp4", _gen(
        "-f", "lavfi", "-i", V, "-f", "lavfi", "-i", A, "-filter_complex",
        "[1:a]pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0[a]", "-map", "0:v", "-map", "[a]", *X264, "-c:a", "aac"),
        awkward=lambda v, a: a["channels"] == 6),
    Source("mono", "mono.mp4", _gen("-f", "lavfi", "-i", V, "-f", "lavfi", "-i", A, *X264, "-c:a", "aac", "-ac", "1"),
           awkward=lambda v, a: a["channels"] == 1),
    Source("no-audio", "silent.mp4", _gen("-f", "lavfi", "-i", V, *X264), audio_channels=None,
           awkward=lambda v, a: a is None, note="no audio"),
    Source("shorter-than-a-segment", "short.mp4", _gen(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=1", "-f", "lavfi", "-i",
        "sine=frequency=440:sample_rate=48000:duration=1", *X264, "-c:a", "aac"), max_segments=1),
    Source("vp9-webm", "clip.webm", _gen(
        "-f", "lavfi", "-i", V, "-f", "lavfi", "-i", A, "-c:v", "libvpx-vp9", "-deadline", "realtime",
        "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus"), awkward=lambda v, a: v["codec_name"] == "vp9"),
    Source("mpeg4-avi", "clip.avi", _gen(
        "-f", "lavfi", "-i", V, "-f", "lavfi", "-i", A, "-c:v", "mpeg4", "-q:v", "5", "-c:a", "libmp3lame"),
        awkward=lambda v, a: v["codec_name"] == "mpeg4"),
    Source("mpeg2-ts", "clip.ts", _gen(
        "-f", "lavfi", "-i", V, "-f", "lavfi", "-i", A, "-c:v", "mpeg2video", "-q:v", "5", "-c:a", "mp2"),
        awkward=lambda v, a: v["codec_name"] == "mpeg2video"),
    Source("awkward-name", WEIRD_NAME, _gen("-f", "lavfi", "-i", V, "-f", "lavfi", "-i", A, *X264, "-c:a", "aac")),
    Source("audio-only", "voice.m4a", _gen("-f", "lavfi", "-i", A, "-c:a", "aac"), profile="audio", video=False,
           awkward=lambda v, a: v is None),
]


@dataclass
class Matrix:
    dir: Path
    states: dict[str, batch.JobState]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Matrix:
    """Make every source, then encode them all in one batch (two at a time)."""
    require_ffmpeg()
    d = tmp_path_factory.mktemp("inputs")
    write_profile(d, "matrix", MATRIX_PROFILE)
    write_profile(d, "audio", AUDIO_ONLY_PROFILE)
    jobs = ['[defaults]\nprofile = "matrix.toml"\noutput_dir = "out"\n']
    for s in SOURCES:
        s.make(d / s.file)
        jobs.append(f'[[jobs]]\nname = "{s.id}"\ninput = {toml_str(s.file)}\nprofile = "{s.profile}.toml"\n')
    (d / "jobs.toml").write_text("\n".join(jobs), encoding="utf-8")
    result = batch.run_batch(load_jobs_file(str(d / "jobs.toml")), batch.LocalExecutor(2), concurrency=2)
    return Matrix(d, {js.name: js for js in result.jobs})


def _video_renditions(out: Path) -> list[dict]:
    return sorted((r for r in read_record(out)["renditions"] if r["kind"] == "video"), key=lambda r: -r["height"])


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=[s.id for s in SOURCES])
def test_awkward_source_encodes_and_validates(matrix, source):
    probed_source = ffprobe_json(matrix.dir / source.file, "-show_entries", "stream_side_data")
    streams = {s["codec_type"]: s for s in reversed(probed_source["streams"])}
    if source.awkward:
        assert source.awkward(streams.get("video"), streams.get("audio")), "the fixture did not make the awkward source"
    js = matrix.states[source.id]
    error = js.last.error.line() if js.last and js.last.error else ""
    assert js.status == "succeeded", f"{source.id}: {error}"
    out = matrix.dir / "out" / source.id
    report = validate(out)
    assert not report.errors, [f"{f.rule}: {f.message}" for f in report.errors]
    record = read_record(out)
    if source.note:
        assert any(source.note in n for n in record["notes"]), record["notes"]

    videos = _video_renditions(out)
    if not source.video:
        assert videos == []
    else:
        assert videos, "no video rendition"
        top = videos[0]
        if source.top_size:
            assert (top["width"], top["height"]) == source.top_size
        probed = ffprobe_json(rendition_file(out, top["id"]), "-show_entries", "stream_side_data")
        (v,) = [s for s in probed["streams"] if s["codec_type"] == "video"]
        assert v["codec_name"] == "h264"
        assert v["pix_fmt"] == "yuv420p"  # 8-bit 4:2:0 whatever the source
        assert v.get("color_transfer") not in ("smpte2084", "arib-std-b67")  # SDR
        num, den = (int(x) for x in v["r_frame_rate"].split("/"))
        assert num / den <= 60.0 + 1e-6
        assert v.get("field_order", "progressive") in ("progressive", "unknown")
        assert not any("rotation" in sd for sd in v.get("side_data_list", [])), "output must be upright, untagged"
        assert (v["height"] > v["width"]) == source.portrait
        for r in videos:
            assert r["width"] % 2 == 0 and r["height"] % 2 == 0
        if source.interlaced_source:
            assert num / den == pytest.approx(60000 / 1001, rel=1e-3)  # one frame per field
        if source.max_segments:
            assert all(r["segments"] <= source.max_segments for r in record["renditions"])

    audios = [r for r in record["renditions"] if r["kind"] == "audio"]
    if source.audio_channels is None:
        assert audios == []
    else:
        assert [a["channels"] for a in audios] == [source.audio_channels]
    assert abs(record["duration_s"] - float(probed_source["format"]["duration"])) < 0.5


@pytest.mark.slow
def test_awkward_file_name_ran_nothing(matrix):
    assert not (matrix.dir / "pwned").exists()
    assert not (matrix.dir / "out" / "pwned").exists()


# ---------------------------------------------------------------------------------------------
# Inputs that must fail cleanly.


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    require_ffmpeg()
    d = tmp_path_factory.mktemp("bad_inputs")
    write_profile(d)
    (d / "a directory").mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("Shot list\n1. intro\n2. interview\n", encoding="utf-8")
    (d / "noise.mp4").write_bytes(os.urandom(64 * 1024))
    good = make_clip(d / "good.mp4", seconds=4)
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov at the end: cut off
    ffmpeg("-i", str(good), "-c", "copy", "-movflags", "+faststart", str(d / "faststart.mp4"))
    data = (d / "faststart.mp4").read_bytes()
    (d / "truncated-faststart.mp4").write_bytes(data[: len(data) // 2])  # index intact, media cut off
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180", "-frames:v", "1", str(d / "still.png"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180", "-frames:v", "1", "-c:v", "mjpeg", "-f", "mp4", str(d / "still-jpeg.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(d / "audio.m4a"))
    # Crafted files that would make ffmpeg open other files or addresses.
    (d / "segment.ts").write_bytes(b"")  # what the crafted playlists point at
    (d / "playlist.mp4").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile:///etc/passwd\n#EXTINF:2,\nsegment.ts\n#EXT-X-ENDLIST\n")
    (d / "bom-playlist.mp4").write_bytes("\ufeff  \n#EXTM3U\n#EXTINF:2,\nhttp://127.0.0.1:9/x.ts\n".encode())
    (d / "list.mp4").write_text("ffconcat version 1.0\nfile '/etc/passwd'\nfile 'good.mp4'\n")
    (d / "bare-list.mp4").write_text("file 'good.mp4'\nfile 'good.mp4'\n")
    (d / "session.sdp").write_text("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\n")
    (d / "manifest.mp4").write_text('<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet>'
                                    '<Representation><BaseURL>http://127.0.0.1:9/</BaseURL></Representation>'
                                    "</AdaptationSet></Period></MPD>")
    (d / "ansi.nfo").write_text("\x1b[1;31m  ANSI art  \x1b[0m\n")
    return d


@dataclass(frozen=True)
class Bad:
    id: str
    input: str  # relative to the bad-inputs directory
    code: int
    reason: str  # a fragment of the one error line


BAD = [
    Bad("missing", "nowhere.mp4", ExitCode.INPUT, "no such file"),
    Bad("directory", "a directory", ExitCode.INPUT, "is a directory"),
    Bad("empty", "empty.mp4", ExitCode.INPUT, "is empty"),
    Bad("text", "notes.mp4", ExitCode.INPUT, "is a text file"),
    Bad("ansi-text", "ansi.nfo", ExitCode.INPUT, "text file"),
    Bad("random-bytes", "noise.mp4", ExitCode.INPUT, "not a readable media file"),
    Bad("truncated", "truncated.mp4", ExitCode.INPUT, "not a readable media file"),
    Bad("truncated-faststart", "truncated-faststart.mp4", ExitCode.INPUT, "ends early"),
    Bad("still-png", "still.png", ExitCode.INPUT, "still image"),
    Bad("still-jpeg-in-mp4", "still-jpeg.mp4", ExitCode.INPUT, "still image"),
    Bad("audio-only-with-video-profile", "audio.m4a", ExitCode.INPUT, "no video stream"),
    Bad("hls-playlist", "playlist.mp4", ExitCode.INPUT, "playlist or list of other files"),
    Bad("hls-playlist-bom", "bom-playlist.mp4", ExitCode.INPUT, "playlist or list of other files"),
    Bad("concat-list", "list.mp4", ExitCode.INPUT, "playlist or list of other files"),
    Bad("bare-concat-list", "bare-list.mp4", ExitCode.INPUT, "text file"),
    Bad("sdp", "session.sdp", ExitCode.INPUT, "playlist or list of other files"),
    Bad("dash-manifest", "manifest.mp4", ExitCode.INPUT, "playlist or list of other files"),
    Bad("url", "http://127.0.0.1:9/video.mp4", ExitCode.INPUT, "is a URL"),
]


def _check_clean_failure(proc: subprocess.CompletedProcess, name: str, code: int, reason: str, out: Path, marker: str):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert name in lines[0] and reason in lines[0], lines[0]
    assert not out.exists(), "something was published"
    assert not Path(str(out) + ".partial").exists(), "a work area was left behind"
    assert_no_ffmpeg_left(marker)


@pytest.mark.parametrize("case", BAD, ids=[b.id for b in BAD])
def test_bad_input_fails_cleanly(bad, case):
    out = bad / f"out-{case.id}"
    proc = run_cli("encode", case.input, "-o", str(out), "-p", "tiny.toml", cwd=bad)
    _check_clean_failure(proc, case.input if "://" in case.input else os.path.basename(case.input),
                         case.code, case.reason, out, str(bad))


@pytest.mark.slow
def test_audio_only_input_works_with_an_audio_only_profile(bad, tmp_path):
    write_profile(tmp_path, "audio", AUDIO_ONLY_PROFILE)
    proc = run_cli("encode", str(bad / "audio.m4a"), "-o", str(tmp_path / "out"), "-p", str(tmp_path / "audio.toml"))
    assert proc.returncode == 0, proc.stderr
    assert not validate(tmp_path / "out").errors
    assert [r["kind"] for r in read_record(tmp_path / "out")["renditions"]] == ["audio"]


@pytest.mark.slow
def test_references_work_only_when_the_user_opts_in(tmp_path):
    """An HLS playlist of local segments: refused by default, encoded with --allow-references."""
    require_ffmpeg()
    write_profile(tmp_path)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
           "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", str(tmp_path / "source.m3u8"))
    refused = run_cli("encode", "source.m3u8", "-o", "out", "-p", "tiny.toml", cwd=tmp_path)
    assert refused.returncode == ExitCode.INPUT and "playlist" in error_lines(refused.stderr)[0]
    allowed = run_cli("encode", "source.m3u8", "-o", "out", "-p", "tiny.toml", "--allow-references", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert not validate(tmp_path / "out").errors


def _chattr(path: Path, flag: str) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_unwritable_output_fails_cleanly(bad, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
    elif not _chattr(locked, "+i"):  # root ignores permissions; the immutable flag stops even root
        missing_capability("cannot make a directory unwritable here (chattr +i failed or is not installed)")
    try:
        proc = run_cli("encode", str(bad / "good.mp4"), "-o", str(locked / "out"), "-p", str(bad / "tiny.toml"))
        _check_clean_failure(proc, str(locked / "out"), ExitCode.OUTPUT, "cannot write", locked / "out", str(tmp_path))
    finally:
        if os.geteuid() == 0:
            _chattr(locked, "-i")
        locked.chmod(0o755)


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: too small for the output of a 4 s ladder."""
    with small_tmpfs(tmp_path / "disk") as mnt:
        yield mnt


@pytest.mark.slow
def test_disk_full_during_the_encode_fails_cleanly(bad, tiny_disk):
    out = tiny_disk / "out"
    proc = run_cli("encode", str(bad / "good.mp4"), "-o", str(out), "-p", str(bad / "tiny.toml"))
    _check_clean_failure(proc, str(out), ExitCode.OUTPUT, "no space left on device", out, str(bad))
    assert os.listdir(tiny_disk) == []  # the work area was removed, the space given back


@pytest.mark.slow
def test_bad_inputs_in_a_batch_fail_one_by_one(bad, tmp_path):
    """In a batch, each bad input is one failed job with its reason; the batch exits 8."""
    runnable = [b for b in BAD if b.id not in ("missing", "directory", "url")]  # those fail the jobs file check
    jobs = ['[defaults]\nprofile = "tiny.toml"\noutput_dir = "out"\n']
    jobs += [f'[[jobs]]\nname = "{b.id}"\ninput = {toml_str(str(bad / b.input))}\n' for b in runnable]
    jobs.append(f'[[jobs]]\nname = "good"\ninput = {toml_str(str(bad / "good.mp4"))}\n')
    (tmp_path / "jobs.toml").write_text("\n".join(jobs), encoding="utf-8")
    shutil.copy(bad / "tiny.toml", tmp_path / "tiny.toml")
    proc = run_cli("batch", "jobs.toml", "-j", "2", "--report", "report.json", cwd=tmp_path)
    assert proc.returncode == ExitCode.BATCH_FAILED, proc.stderr
    assert "Traceback" not in proc.stderr
    report = {j["name"]: j for j in json.loads((tmp_path / "report.json").read_text())["jobs"]}
    assert report["good"]["status"] == "succeeded"
    for b in runnable:
        entry = report[b.id]
        assert entry["status"] == "failed" and entry["exit_code"] == b.code, entry
        assert b.reason in entry["error"] and os.path.basename(b.input) in entry["error"]
        assert len(entry["attempts"]) == 1  # an input at fault is not retried
        assert not (tmp_path / "out" / b.id).exists()
    assert sorted(os.listdir(tmp_path / "out")) == ["good"]
    assert_no_ffmpeg_left(str(tmp_path))

    # Missing inputs and directories are caught before anything runs: exit 4, one line each.
    (tmp_path / "jobs2.toml").write_text(
        f'[defaults]\nprofile = "tiny.toml"\n[[jobs]]\ninput = {toml_str(str(bad / "nowhere.mp4"))}\n'
        f'[[jobs]]\ninput = {toml_str(str(bad / "a directory"))}\n[[jobs]]\ninput = "http://127.0.0.1:9/x.mp4"\n',
        encoding="utf-8")
    proc = run_cli("batch", "jobs2.toml", cwd=tmp_path)
    assert proc.returncode == ExitCode.PROFILE
    lines = error_lines(proc.stderr)
    assert len(lines) == 3 and "jobs[0].input: no such file" in lines[0] and "jobs[1].input: is a directory" in lines[1]
    assert "jobs[2].input: is a URL" in lines[2]


def test_capability_tests_fail_under_make_test_when_the_capability_is_missing(tmp_path):
    """Under `make test` (ABRPIPE_REQUIRE_CAPABILITIES=1) the chattr and tmpfs tests fail, not skip,
    when chattr/mount are missing: here they are hidden from PATH."""
    require_ffmpeg()
    shim = tmp_path / "bin"
    shim.mkdir()
    for tool in ("ffmpeg", "ffprobe"):
        (shim / tool).symlink_to(shutil.which(tool))
    here = Path(__file__).resolve().parent
    tests = [f"{here / 'test_inputs.py'}::test_unwritable_output_fails_cleanly",
             f"{here / 'test_inputs.py'}::test_disk_full_during_the_encode_fails_cleanly"]  # fmt: skip
    env = {**os.environ, "PATH": str(shim), "ABRPIPE_REQUIRE_CAPABILITIES": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfs", *tests],
                          capture_output=True, text=True, env=env, cwd=here.parent, timeout=300)  # fmt: skip
    # A failing fixture is reported as an error: either way, not a skip and not a pass.
    assert proc.returncode == 1 and "1 failed, 1 error" in proc.stdout and "skipped" not in proc.stdout, proc.stdout
    # Each says what is missing and why it fails (pytest's summary may repeat a line: under CI=true it
    # does not shorten it).
    for missing in ("mounting a small tmpfs needs root", "cannot make a directory unwritable here"):
        assert re.search(re.escape(missing) + r".*ABRPIPE_REQUIRE_CAPABILITIES=1 \(make test\) requires it", proc.stdout), proc.stdout
