"""Real-player harness: serve an HLS/DASH output directory and play it in
headless Chromium with hls.js, dash.js or Shaka Player (see play.mjs).

    from harness import play, require_browser
    require_browser()                      # skip (or fail in CI) if not set up
    r = play(out_dir, "hlsjs", "master.m3u8")
    assert r["ok"], r["reason"]

``serve(root)`` serves ``root`` under ``/media/`` and this directory (player
page + node_modules dist files) under ``/player/`` on 127.0.0.1, one origin,
so no CORS is involved.  Set ``ABRPIPE_REQUIRE_BROWSER=1`` (CI does) to turn
a missing Chromium / node / node_modules into a test failure instead of a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BROWSER_DIR = Path(__file__).resolve().parent
PLAY_MJS = BROWSER_DIR / "play.mjs"
NODE_MODULES = BROWSER_DIR / "node_modules"
PLAYERS = ("hlsjs", "dashjs", "shaka")
# Files player.js loads; their presence means `npm ci` has run.
DIST_FILES = (
    "hls.js/dist/hls.min.js",
    "dashjs/dist/dash.all.min.js",
    "shaka-player/dist/shaka-player.compiled.js",
    "playwright-core/package.json",
)
REQUIRE_ENV = "ABRPIPE_REQUIRE_BROWSER"

MIME_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".m4v": "video/mp4",
    ".cmfv": "video/mp4",
    ".cmfa": "audio/mp4",
    ".ts": "video/mp2t",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
}


def chromium_path() -> str:
    return os.environ.get("ABRPIPE_CHROMIUM", "/usr/bin/chromium")


def browser_available() -> str | None:
    """None when the real-player tests can run, else why not."""
    chrome = chromium_path()
    if not (os.path.isfile(chrome) and os.access(chrome, os.X_OK)):
        return f"{chrome} missing (apt-get install chromium, or run tests/browser/setup.sh)"
    if shutil.which("node") is None:
        return "node missing (apt-get install nodejs npm, or run tests/browser/setup.sh)"
    missing = [f for f in DIST_FILES if not (NODE_MODULES / f).is_file()]
    if missing:
        return f"{NODE_MODULES} incomplete ({missing[0]} missing): run tests/browser/setup.sh (npm ci)"
    return None


def browser_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def require_browser() -> None:
    """Skip the calling test if the browser setup is missing, or fail when
    ABRPIPE_REQUIRE_BROWSER=1 (CI must really run these tests)."""
    import pytest

    reason = browser_available()
    if reason is None:
        return
    if browser_required():
        pytest.fail(f"{REQUIRE_ENV}=1 but browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------- server


class _Handler(SimpleHTTPRequestHandler):
    """/media/... -> media root, /player/... -> tests/browser. Range aware."""

    media_root: Path = Path(".")
    license_keys: dict[str, str] | None = None  # {kid hex: key hex} for POST /clearkey
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def translate_path(self, path: str) -> str:
        path = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
        path = posixpath.normpath(path)
        for prefix, root in (("/media/", self.media_root), ("/player/", BROWSER_DIR)):
            if path.startswith(prefix) or path + "/" == prefix:
                rel = path[len(prefix) :]
                parts = [p for p in rel.split("/") if p and p not in (".", "..")]
                return str(root.joinpath(*parts))
        return "/nonexistent-abrpipe-path"

    def do_POST(self) -> None:
        """POST /clearkey: a W3C ClearKey license server (EME 9.1.4) for the keys given to serve()."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        keys = self.license_keys
        if self.path.split("?", 1)[0] != "/clearkey" or keys is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return
        from abrpipe.serve import ClearKeys

        try:
            answer = ClearKeys({bytes.fromhex(k): bytes.fromhex(v) for k, v in keys.items()}).license(json.loads(body))
        except ValueError:
            answer = None
        if answer is None:
            self.send_error(HTTPStatus.BAD_REQUEST, "not a ClearKey license request")
            return
        data = json.dumps(answer).encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def list_directory(self, path):  # no listings
        self.send_error(HTTPStatus.NOT_FOUND, "File not found")
        return None

    def send_head(self):
        rng = self.headers.get("Range")
        if not rng:
            return super().send_head()
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        size = os.path.getsize(path)
        try:
            unit, spec = rng.split("=", 1)
            if unit.strip() != "bytes" or "," in spec:
                raise ValueError
            a, b = spec.strip().split("-", 1)
            if a == "":
                start, end = max(0, size - int(b)), size - 1
            else:
                start, end = int(a), (int(b) if b else size - 1)
            end = min(end, size - 1)
            if start > end:
                raise ValueError
        except ValueError:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        f = open(path, "rb")
        f.seek(start)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile) -> None:
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        self._remaining = None
        while remaining > 0:
            buf = source.read(min(65536, remaining))
            if not buf:
                break
            outputfile.write(buf)
            remaining -= len(buf)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # players abort requests when they flush or switch: broken pipes are normal
        pass


@contextlib.contextmanager
def serve(root_dir: str | os.PathLike, license_keys: dict[str, str] | None = None) -> Iterator[str]:
    """Serve root_dir under /media/ and the player under /player/.

    Yields the base URL, e.g. ``http://127.0.0.1:41234``; the page is
    ``{base}/player/player.html`` and a manifest ``{base}/media/master.m3u8``.
    """
    root = Path(root_dir).resolve()
    handler = type("Handler", (_Handler,), {"media_root": root, "license_keys": license_keys})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="abrpipe-media-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ----------------------------------------------------------------------- play


def profile_processes(user_data_dir: str) -> list[int]:
    """Live (non-zombie) processes started with this Chromium profile dir."""
    pids = []
    needle = f"--user-data-dir={user_data_dir}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmd and state not in (b"Z", b"X"):
            pids.append(int(pid))
    return pids


def _kill_profile_processes(user_data_dir: str) -> int:
    """SIGKILL every process started with this (unique) Chromium profile."""
    killed = 0
    for pid in profile_processes(user_data_dir):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, sig)


def play(
    out_dir: str | os.PathLike,
    player: str,
    manifest_name: str,
    seconds: float = 60,
    *,
    advance: float = 1.0,
    extra_args: list[str] | None = None,
    clearkeys: dict[str, str] | None = None,
    license_keys: dict[str, str] | None = None,
) -> dict:
    """Play OUT_DIR/manifest_name with player (hlsjs|dashjs|shaka).

    Returns play.mjs's JSON result (``ok``, ``phases``, ``errors``, ...) plus
    ``returncode``, ``stderr``, ``user_data_dir`` (the Chromium profile used,
    for ``profile_processes``) and ``killed_leftovers`` (Chromium processes
    the harness had to kill after the driver: should be 0).  ``seconds`` bounds the whole run: the
    driver stops itself at that point, and is killed (with its Chromium) a
    few seconds later if it has not.  ``clearkeys`` ({kid hex: key hex}) are
    handed to the player's EME ClearKey configuration (Shaka, dash.js). ``license_keys`` ({kid hex:
    key hex}) are served by a W3C ClearKey license server at ``/clearkey``, which the page hands to
    hls.js (KEYFORMAT="org.w3.clearkey").
    """
    if player not in PLAYERS:
        raise ValueError(f"player must be one of {PLAYERS}, not {player!r}")
    manifest = "/".join(urllib.parse.quote(p) for p in Path(manifest_name).as_posix().split("/"))
    profile = tempfile.mkdtemp(prefix="abrpipe-chromium-")
    t0 = time.monotonic()
    try:
        with serve(out_dir, license_keys) as base:
            cmd = [
                "node",
                str(PLAY_MJS),
                "--page",
                f"{base}/player/player.html",
                "--player",
                player,
                "--manifest",
                f"{base}/media/{manifest}",
                "--seconds",
                str(seconds),
                "--advance",
                str(advance),
                "--chromium",
                chromium_path(),
                "--user-data-dir",
                profile,
                *(extra_args or []),
                *(["--clearkey", ",".join(f"{k}:{v}" for k, v in clearkeys.items())] if clearkeys else []),
                *(["--clearkey-license", f"{base}/clearkey"] if license_keys else []),
            ]
            proc = subprocess.Popen(
                cmd,
                cwd=BROWSER_DIR,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            timed_out = False
            try:
                out, err = proc.communicate(timeout=seconds + 20)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc, signal.SIGTERM)  # driver closes Chromium and prints JSON
                try:
                    out, err = proc.communicate(timeout=8)
                except subprocess.TimeoutExpired:
                    _kill_group(proc, signal.SIGKILL)
                    out, err = proc.communicate()
    finally:
        # play.mjs closes its browser itself; anything left here was orphaned
        leftovers = _kill_profile_processes(profile)
        shutil.rmtree(profile, ignore_errors=True)

    result: dict | None = None
    for line in reversed((out or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                result = json.loads(line)
                break
    if result is None:
        result = {
            "ok": False,
            "player": player,
            "phases": [],
            "errors": [],
            "reason": "driver timed out" if timed_out else f"driver printed no JSON (exit {proc.returncode})",
            "stdout": (out or "")[-2000:],
        }
    if timed_out:
        result["ok"] = False
        result.setdefault("reason", "driver timed out")
    result["returncode"] = proc.returncode
    result["user_data_dir"] = profile
    result["killed_leftovers"] = leftovers
    result["stderr"] = (err or "")[-4000:]
    result["harness_wall_s"] = round(time.monotonic() - t0, 2)
    return result


def summary(result: dict) -> str:
    """One readable paragraph for assertion messages."""
    keep = {
        k: result.get(k)
        for k in (
            "ok",
            "player",
            "player_version",
            "reason",
            "levels",
            "phases",
            "errors",
            "page_errors",
            "http_errors",
            "console_errors",
            "final_time",
            "wall_s",
        )
    }
    text = json.dumps(keep, indent=1, default=str)
    if result.get("stderr"):
        text += "\nstderr:\n" + result["stderr"][-1500:]
    return text


if __name__ == "__main__":  # python harness.py OUT_DIR PLAYER MANIFEST
    import sys

    if len(sys.argv) != 4:
        sys.exit("usage: python harness.py OUT_DIR hlsjs|dashjs|shaka MANIFEST")
    r = play(sys.argv[1], sys.argv[2], sys.argv[3])
    print(json.dumps(r, indent=1))
    sys.exit(0 if r["ok"] else 1)
