"""Helpers shared by the batch, input-matrix and chaos tests: lavfi media, a tiny profile, the CLI
in a subprocess, a /proc scan for leftover ffmpeg processes and a watcher that checks published
manifests against the files they name, continuously."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# Two tiny rungs and one audio rung: fast, and enough to make a real ladder.
TINY_PROFILE = """\
schema = 1
description = "tests: two tiny rungs"
preset = "ultrafast"
gop = 1
segment = 2

[[rungs]]
size = "320x180"
bitrate = "300k"

[[rungs]]
size = "160x90"
bitrate = "100k"

[[audio]]
codec = "aac"
bitrate = "64k"
channels = 2
"""

AUDIO_ONLY_PROFILE = """\
schema = 1
description = "tests: audio only"
gop = 1
segment = 2

[[audio]]
codec = "aac"
bitrate = "64k"
channels = 2
"""


def require_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg/ffprobe are not installed (make ffmpeg)")


def ffmpeg(*args: str, timeout: float = 120) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        check=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def ffprobe_json(path: str | Path, *extra: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", *extra, f"file:{path}"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    return json.loads(out)


def make_clip(path: Path, *, size: str = "320x180", seconds: float = 2, rate: str = "30", audio: bool = True,
              vcodec: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast")) -> Path:
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-c:a", "aac"]
    ffmpeg(*args, *vcodec, "-pix_fmt", "yuv420p", str(path))
    return path


def write_profile(directory: Path, name: str = "tiny", text: str = TINY_PROFILE) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML escapes)."""
    return json.dumps(value, ensure_ascii=False)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "abrpipe", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("abrpipe: error:")]


# ---------------------------------------------------------------------------------------------
# Processes


def ffmpeg_pids(marker: str, names: tuple[bytes, ...] = (b"ffmpeg", b"ffprobe")) -> list[int]:
    """Live ffmpeg/ffprobe processes whose command line mentions `marker` (a test's tmp dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state == b"Z" or not argv or not argv[0]:
            continue
        if os.path.basename(argv[0]).startswith(names) and marker.encode() in b" ".join(argv):
            pids.append(int(entry))
    return pids


def assert_no_ffmpeg_left(marker: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not ffmpeg_pids(marker):
            return
        time.sleep(0.1)
    left = ffmpeg_pids(marker)
    for pid in left:  # do not leak them into other tests
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    raise AssertionError(f"ffmpeg processes left running: {left}")


# ---------------------------------------------------------------------------------------------
# Outputs


def rendition_file(out: Path, rendition_id: str) -> Path:
    """init.mp4 + every segment of one rendition, concatenated into one playable fMP4 file."""
    rdir = out / rendition_id
    target = out.parent / f"{out.name}-{rendition_id}-joined.mp4"
    with open(target, "wb") as dst:
        for part in [rdir / "init.mp4", *sorted(rdir.glob("seg_*.m4s"))]:
            dst.write(part.read_bytes())
    return target


def read_record(out: Path) -> dict:
    return json.loads((out / "abrpipe.json").read_text(encoding="utf-8"))


def validate(out: Path):
    from abrpipe.validate import validate_output

    return validate_output(str(out))


_URI_ATTR = re.compile(r'URI="([^"]+)"')


def manifest_references(read) -> list[str]:
    """Every file named by the published manifests of one output, relative to it.

    `read(name)` returns a manifest's text or raises FileNotFoundError."""
    refs: list[str] = []
    try:
        master = read("master.m3u8")
    except FileNotFoundError:
        master = None
    if master is not None:
        playlists = [line.strip() for line in master.splitlines() if line.strip() and not line.startswith("#")]
        playlists += _URI_ATTR.findall(master)
        for playlist in dict.fromkeys(playlists):
            refs.append(playlist)
            base = os.path.dirname(playlist)
            text = read(playlist)
            names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
            names += _URI_ATTR.findall(text)
            refs += [os.path.join(base, n) for n in dict.fromkeys(names)]
    try:
        mpd = read("manifest.mpd")
    except FileNotFoundError:
        mpd = None
    if mpd is not None:
        root = ET.fromstring(mpd)
        ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
        for rep in root.iter("{urn:mpeg:dash:schema:mpd:2011}Representation"):
            template = rep.find("d:SegmentTemplate", ns)
            if template is None:
                continue
            rid = rep.get("id", "")
            init = template.get("initialization", "").replace("$RepresentationID$", rid)
            refs.append(init)
            count = sum(1 + int(s.get("r", "0")) for s in template.iterfind("d:SegmentTimeline/d:S", ns))
            start = int(template.get("startNumber", "1"))
            media = template.get("media", "").replace("$RepresentationID$", rid)
            for number in range(start, start + count):
                refs.append(re.sub(r"\$Number(%0(\d+)d)?\$", lambda m, n=number: f"{n:0{m.group(2) or 1}d}", media))
    return refs


class ManifestWatcher:
    """Polls every published output under `root` and records any instant at which a manifest names
    a file that does not exist. Reads through a directory descriptor, so a directory swapped out
    mid-check (publishing replaces it atomically) is recognised and not blamed."""

    def __init__(self, root: Path, interval_s: float = 0.02) -> None:
        self.root = root
        self.interval_s = interval_s
        self.violations: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ManifestWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                names = os.listdir(self.root)
            except OSError:
                names = []
            for name in names:
                if name.endswith(".partial") or ".old-" in name or name.startswith("."):
                    continue
                self._check(self.root / name)
            time.sleep(self.interval_s)

    def _check(self, out: Path) -> None:
        try:
            fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            def read(rel: str) -> str:
                f = os.open(rel, os.O_RDONLY, dir_fd=fd)
                with os.fdopen(f, encoding="utf-8") as fh:
                    return fh.read()

            try:
                refs = manifest_references(read)
            except FileNotFoundError as exc:
                missing = [exc.filename or "a playlist"]
                refs = []
            except (ET.ParseError, ValueError, OSError) as exc:
                missing = [f"unreadable manifest: {exc}"]
                refs = []
            else:
                missing = []
            for rel in refs:
                try:
                    os.stat(rel, dir_fd=fd)
                except FileNotFoundError:
                    missing.append(rel)
            self.checks += 1
            if missing and self._still_published(out, fd):
                self.violations.append(f"{out.name}: manifest names missing {missing[:3]}")
        finally:
            os.close(fd)

    @staticmethod
    def _still_published(out: Path, fd: int) -> bool:
        try:
            return os.stat(out).st_ino == os.fstat(fd).st_ino
        except OSError:
            return False
