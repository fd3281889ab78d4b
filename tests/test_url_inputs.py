"""URL inputs (--allow-references) and the input restrictions the runner puts on every ffmpeg/ffprobe.

A local HTTP server on 127.0.0.1 serves the media. What a crafted playlist may not open is a FIFO:
opening a FIFO for writing without blocking succeeds only while some process has it open for reading,
so a watcher thread sees the very moment ffmpeg opens it, whatever ffmpeg then does with it.
"""

from __future__ import annotations

import errno
import http.server
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from batch_media import ffmpeg, ffprobe_json, make_clip, require_ffmpeg, validate, write_profile

from abrpipe import runner
from abrpipe.errors import ExitCode
from abrpipe.pertitle import metrics


class _Server:
    """A threaded static file server with byte ranges; `requests` lists every path asked for."""

    def __init__(self, root: Path) -> None:
        requests: list[str] = []
        self.requests = requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):  # quiet
                pass

            def send_head(self):
                requests.append(self.path)
                path = Path(self.translate_path(self.path))
                rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if not rng or not path.is_file():
                    return super().send_head()
                data = path.read_bytes()
                start = int(rng.group(1))
                end = min(int(rng.group(2)) if rng.group(2) else len(data) - 1, len(data) - 1)
                if start >= len(data):
                    self.send_error(416)
                    return None
                self.send_response(206)
                self.send_header("Content-Type", self.guess_type(str(path)))
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                import io

                return io.BytesIO(data[start : end + 1])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class FifoWatch:
    """A FIFO with a thread that records whether any process opened it for reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nobody has it open for reading
                    raise
                time.sleep(0.005)
                continue
            self.opened.set()
            os.close(fd)  # the reader sees end of file and goes on
            return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abrpipe", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Served files: clip.mp4 (moov first, so it streams) and 1-s MPEG-TS segments of it."""
    require_ffmpeg()
    root = tmp_path_factory.mktemp("site")
    make_clip(root / "raw.mp4", size="160x90", seconds=2)
    ffmpeg("-i", str(root / "raw.mp4"), "-c", "copy", "-movflags", "+faststart", str(root / "clip.mp4"))
    ffmpeg("-i", str(root / "raw.mp4"), "-c", "copy", "-f", "segment", "-segment_time", "1",
           "-segment_format", "mpegts", str(root / "seg%d.ts"))  # fmt: skip
    write_profile(root, "small")  # its 320x180 rung is dropped: above this 160x90 source
    return root


def _playlist(*uris: str) -> str:
    body = "".join(f"#EXTINF:1.0,\n{u}\n" for u in uris)
    return f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n{body}#EXT-X-ENDLIST\n"


def test_http_input_with_allow_references_encodes_and_validates(site, tmp_path):
    with _Server(site) as server:
        url = f"{server.url}/clip.mp4"
        proc = run_cli("encode", url, "-o", "out", "-p", str(site / "small.toml"), "--allow-references", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "/clip.mp4" in server.requests
    report = validate(tmp_path / "out")
    assert not report.errors, [f"{f.rule}: {f.message}" for f in report.errors]
    (rendition,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir() and p.name.startswith("90p")]
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(b"".join(p.read_bytes() for p in [rendition / "init.mp4", *sorted(rendition.glob("seg_*.m4s"))]))
    video = next(s for s in ffprobe_json(joined)["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (160, 90)
    assert float(ffprobe_json(joined)["format"]["duration"]) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:9/x.mp4", "rtmp://127.0.0.1:9/live", "tcp://127.0.0.1:9"])
def test_only_http_urls_are_opened(site, tmp_path, url):
    proc = run_cli("probe", url, "--allow-references", cwd=tmp_path)
    assert proc.returncode == ExitCode.INPUT, proc.stderr
    assert "only http:// and https:// URLs can be opened" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_remote_playlist_cannot_open_a_local_file(site, tmp_path):
    """An HTTP playlist whose first segment is a local file: ffmpeg must never open that file."""
    with FifoWatch(tmp_path / "secret.ts") as secret, _Server(site) as server:
        (site / "evil.m3u8").write_text(_playlist(f"file://{secret.path}", "seg0.ts", "seg1.ts"))
        proc = run_cli("encode", f"{server.url}/evil.m3u8", "-o", "out", "-p", str(site / "small.toml"),
                       "--allow-references", "-q", cwd=tmp_path)  # fmt: skip
        time.sleep(0.1)
    assert not secret.opened.is_set(), "ffmpeg/ffprobe opened a local file named by a remote playlist"
    assert "/evil.m3u8" in server.requests
    assert "Traceback" not in proc.stderr
    # The http segments were readable: the title is the two of them (the local one was refused).
    assert proc.returncode == 0, proc.stderr
    assert not validate(tmp_path / "out").errors


@pytest.fixture(scope="module")
def psnr_engine():
    require_ffmpeg()
    return metrics.find_metric_engine("psnr", candidates=[os.environ.get("ABRPIPE_FFMPEG") or "ffmpeg"])


def test_scoring_cannot_follow_a_local_playlist_to_the_network(site, tmp_path, psnr_engine):
    """The scoring ffmpeg reads the source: a local playlist (allowed with --allow-references) that
    names a URL must not make it reach the network."""
    with _Server(site) as server:
        ref = tmp_path / "ref.m3u8"
        ref.write_text(_playlist(str(site / "seg0.ts"), f"{server.url}/seg1.ts"))
        try:
            metrics.measure(psnr_engine, str(ref), str(site / "raw.mp4"), width=160, height=90)
        except metrics.MetricError:
            pass  # scoring one segment against two may fail; what matters is what was opened
        time.sleep(0.1)
    assert server.requests == [], "the scoring ffmpeg fetched a URL named by a local playlist"


def test_scoring_cannot_follow_a_remote_playlist_to_a_local_file(site, tmp_path, psnr_engine):
    with FifoWatch(tmp_path / "secret.ts") as secret, _Server(site) as server:
        (site / "evil-ref.m3u8").write_text(_playlist("seg0.ts", f"file://{secret.path}", "seg1.ts"))
        try:
            metrics.measure(psnr_engine, f"{server.url}/evil-ref.m3u8", str(site / "raw.mp4"), width=160, height=90)
        except metrics.MetricError:
            pass
        time.sleep(0.1)
    assert not secret.opened.is_set(), "the scoring ffmpeg opened a local file named by a remote playlist"
    assert "/evil-ref.m3u8" in server.requests


def _inputs_restricted(argv: list[str]) -> bool:
    """Every -i of an ffmpeg argv has, since the previous input, the whitelist for its kind."""
    block = 1
    for i, arg in enumerate(argv):
        if arg == "-i":
            opts = argv[block:i]
            if "-protocol_whitelist" not in opts:
                return False
            if opts[len(opts) - 1 - opts[::-1].index("-protocol_whitelist") + 1] != runner.input_protocols(argv[i + 1]):
                return False
            block = i + 2
    return True


def test_every_process_the_runner_starts_is_restricted(site, tmp_path, psnr_engine, monkeypatch):
    """Spy on what really reaches the OS: probe's ffprobe and the scoring ffmpeg, both restricted."""
    started: list[list[str]] = []
    real = subprocess.Popen

    def spy(argv, *args, **kwargs):
        started.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    from abrpipe.probe import probe

    probe(str(site / "clip.mp4"))
    metrics.measure(psnr_engine, str(site / "clip.mp4"), str(site / "raw.mp4"), width=160, height=90)
    ff = [a for a in started if os.path.basename(a[0]).startswith(("ffmpeg", "ffprobe"))]
    assert any("-filter_complex" in a for a in ff) and any(os.path.basename(a[0]) == "ffprobe" for a in ff)
    for argv in ff:
        if os.path.basename(argv[0]).startswith("ffprobe") and "-show_format" in argv:
            assert argv[argv.index("-protocol_whitelist") + 1] == "file,pipe", argv
        elif "-i" in argv:
            assert _inputs_restricted(argv), argv


def test_restrict_inputs_adds_or_replaces_the_whitelist():
    ff = "/usr/bin/ffmpeg"
    argv = [ff, "-y", "-f", "lavfi", "-i", "color", "-protocol_whitelist", "file,http,tcp", "-i", "file:/a.mp4",
            "-i", "https://h/x.m3u8", "-map", "0", "out.mp4"]  # fmt: skip
    got = runner.restrict_inputs(argv)
    assert got == [ff, "-y", "-f", "lavfi", "-protocol_whitelist", "file,pipe", "-i", "color",
                   "-protocol_whitelist", "file,pipe", "-i", "file:/a.mp4",
                   "-protocol_whitelist", "http,https,tcp,tls", "-i", "https://h/x.m3u8", "-map", "0", "out.mp4"]  # fmt: skip
    probe = ["/usr/bin/ffprobe", "-v", "error", "-protocol_whitelist", "file,http", "-of", "json", "http://h/x.mp4"]
    assert runner.restrict_inputs(probe)[4] == "http,https,tcp,tls"
    assert runner.restrict_inputs(["/usr/bin/ffprobe", "-v", "error", "x.mp4"])[1:3] == ["-protocol_whitelist", "file,pipe"]
    assert runner.restrict_inputs([ff, "-hide_banner", "-version"]) == [ff, "-hide_banner", "-version"]
    assert runner.restrict_inputs(["/bin/echo", "-i", "x"]) == ["/bin/echo", "-i", "x"]
    # Anything that is not an http(s) URL (subfile:, 'http:' without //) is a local input; a
    # concatenation (abrpipe's own reads of its segments as one file) may join local files only.
    for url in ("subfile,,start,0,end,1,,:/etc/passwd", "http:x", "/tmp/http://x"):
        assert runner.input_protocols(url) == "file,pipe"
    assert runner.input_protocols("concat:a.ts|b.ts") == "concat,file,pipe"
    assert runner.input_protocols("concatf:list.txt") == "concatf,file,pipe"
