"""`abrpipe serve` run as its own process for the tests, spoken to over raw sockets (no HTTP client
normalises what is sent)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path


class Server:
    def __init__(self, root: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "abrpipe", "serve", str(root), "--port", "0", "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines = []
        for line in self.proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.rstrip() == "}":
                break
        if not lines:
            raise AssertionError(f"server did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.info = json.loads("".join(lines))
        self.port = self.info["port"]

    def request(self, target: str, method: str = "GET", headers: dict | None = None, body: bytes = b"") -> tuple[int, dict, bytes]:
        """Send exactly `target` as the request target; (status, headers, body)."""
        head = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Connection: close"]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        if body:
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(data)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        raw = b"".join(chunks)
        head_raw, _, rest = raw.partition(b"\r\n\r\n")
        lines = head_raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if hdrs.get("transfer-encoding") == "chunked":
            rest = _unchunk(rest)
        return status, hdrs, rest

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def run_page(mode: str, url: str, *, seconds: float = 60, screenshot: str | None = None) -> dict:
    """Run tests/browser/page.mjs (player or report mode) and return its JSON result."""
    import os

    browser_dir = Path(__file__).resolve().parent / "browser"
    cmd = ["node", str(browser_dir / "page.mjs"), "--mode", mode, "--url", url, "--seconds", str(seconds),
           "--chromium", os.environ.get("ABRPIPE_CHROMIUM", "/usr/bin/chromium")]  # fmt: skip
    if screenshot:
        cmd += ["--screenshot", screenshot]
    proc = subprocess.run(cmd, cwd=browser_dir, capture_output=True, text=True, timeout=seconds + 30, stdin=subprocess.DEVNULL)
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["stderr"] = proc.stderr[-2000:]
            return result
    return {"ok": False, "reason": f"page.mjs printed no JSON (exit {proc.returncode})", "stderr": proc.stderr[-2000:]}


def play_page(root: Path, mode: str, manifest: str, *, seconds: float = 60, screenshot: str | None = None) -> dict:
    """Serve `root` with `abrpipe serve`, run page.mjs on its player page for `manifest`, stop the server."""
    server = Server(root)
    try:
        return run_page(mode, f"http://127.0.0.1:{server.port}/?manifest={manifest}", seconds=seconds, screenshot=screenshot)
    finally:
        assert server.stop() == 0, "Ctrl-C stops the server cleanly"
