"""`abrpipe serve`: the real server (the CLI, in its own process) answered over raw sockets, so that
no HTTP client normalises a traversal attempt before it is sent."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving import Server

from abrpipe import serve

SECRET = b"not-for-the-web-0123456789"
KID = "0123456789abcdef0123456789abcdef"
KEY = "fedcba9876543210fedcba9876543210"


def b64url(hex_value: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(hex_value)).decode().rstrip("=")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("serve")
    (base / "secret.txt").write_bytes(SECRET)
    (base / "sibling").mkdir()
    (base / "sibling" / "x.m4s").write_bytes(SECRET)
    out = base / "out"
    (out / "720p-2M").mkdir(parents=True)
    (out / "master.m3u8").write_text("#EXTM3U\n")
    (out / "manifest.mpd").write_text("<MPD/>\n")
    (out / "720p-2M" / "init.mp4").write_bytes(b"\0" * 100)
    (out / "720p-2M" / "seg_00001.m4s").write_bytes(bytes(range(256)) * 4)
    (out / "720p-2M" / "playlist.m3u8").write_text("#EXTM3U\n")
    (out / "subs.vtt").write_text("WEBVTT\n")
    (out / "thumbs.jpg").write_bytes(b"\xff\xd8\xff")
    (out / "name with space.m4s").write_bytes(b"ok")
    (out / "outside-link.m4s").symlink_to(base / "secret.txt")
    (out / "outside-dir").symlink_to(base / "sibling")
    (out / "inside-link.m4s").symlink_to(out / "720p-2M" / "seg_00001.m4s")
    (out / serve.KEYS_NAME).write_text(json.dumps({"keys": [{"kid": KID, "key": KEY}]}))
    return out


@pytest.fixture(scope="module")
def server(tree):
    s = Server(tree)
    yield s
    assert s.stop() == 0, "Ctrl-C stops the server cleanly"


@pytest.mark.parametrize(("path", "mime"), [
    ("/master.m3u8", "application/vnd.apple.mpegurl"),
    ("/720p-2M/playlist.m3u8", "application/vnd.apple.mpegurl"),
    ("/manifest.mpd", "application/dash+xml"),
    ("/720p-2M/seg_00001.m4s", "video/iso.segment"),
    ("/720p-2M/init.mp4", "video/mp4"),
    ("/subs.vtt", "text/vtt"),
    ("/thumbs.jpg", "image/jpeg"),
])  # fmt: skip
def test_mime_types(server, path, mime):
    status, headers, _ = server.request(path)
    assert status == 200
    assert headers["content-type"].split(";")[0] == mime


def test_range_206_and_suffix(server):
    whole = bytes(range(256)) * 4
    status, headers, body = server.request("/720p-2M/seg_00001.m4s", headers={"Range": "bytes=10-19"})
    assert status == 206
    assert headers["content-range"] == f"bytes 10-19/{len(whole)}"
    assert body == whole[10:20]
    status, headers, body = server.request("/720p-2M/seg_00001.m4s", headers={"Range": "bytes=-16"})
    assert status == 206 and body == whole[-16:]
    status, headers, body = server.request("/720p-2M/seg_00001.m4s", headers={"Range": "bytes=1000-"})
    assert status == 206 and body == whole[1000:]


def test_range_416(server):
    status, headers, _ = server.request("/720p-2M/seg_00001.m4s", headers={"Range": "bytes=5000-6000"})
    assert status == 416
    assert headers["content-range"] == "bytes */1024"


def test_multiple_ranges_get_the_whole_file(server):
    status, _, body = server.request("/720p-2M/seg_00001.m4s", headers={"Range": "bytes=0-1,5-6"})
    assert status == 200 and len(body) == 1024


def test_head(server):
    status, headers, body = server.request("/720p-2M/seg_00001.m4s", method="HEAD")
    assert status == 200
    assert headers["content-length"] == "1024" and headers["accept-ranges"] == "bytes"
    assert body == b""


def test_cors(server):
    status, headers, _ = server.request("/master.m3u8", headers={"Origin": "http://example.test"})
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    assert "Content-Range" in headers["access-control-expose-headers"]
    status, headers, _ = server.request("/720p-2M/seg_00001.m4s", method="OPTIONS", headers={
        "Origin": "http://example.test", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"})  # fmt: skip
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "GET" in headers["access-control-allow-methods"] and "Range" in headers["access-control-allow-headers"]


TRAVERSALS = [
    "/../secret.txt",
    "/720p-2M/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/..%2fsecret.txt",
    "/720p-2M/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/%252e%252e%252fsecret.txt",  # double-encoded
    "/%252e%252e/secret.txt",
    "/..%5csecret.txt",  # backslash
    "/..\\secret.txt",
    "//secret.txt",
    "/.%2e/secret.txt",
    "/%2f..%2fsecret.txt",
    "/secret.txt%00.m4s",
    "/./../secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_refused(server, target):
    status, _, body = server.request(target)
    assert status in (400, 403, 404), status
    assert SECRET not in body


def test_absolute_paths_refused(server, tree):
    secret = str(tree.parent / "secret.txt")
    for target in (secret, "/" + secret, "/%2f" + secret.lstrip("/").replace("/", "%2f"), f"http://127.0.0.1:{server.port}/../secret.txt"):
        status, _, body = server.request(target)
        assert status in (400, 403, 404), (target, status)
        assert SECRET not in body


def test_symlinks(server):
    for target in ("/outside-link.m4s", "/outside-dir/x.m4s"):
        status, _, body = server.request(target)
        assert status == 403, target
        assert SECRET not in body
    status, _, body = server.request("/inside-link.m4s")  # a link that stays inside is fine
    assert status == 200 and body == bytes(range(256)) * 4


def test_no_directory_listing(server):
    for target in ("/720p-2M", "/720p-2M/", "/outside-dir/"):
        status, _, body = server.request(target)
        assert status in (403, 404), target
        assert b"seg_00001" not in body and b"x.m4s" not in body
    status, headers, body = server.request("/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"shaka-player.compiled.js" in body and b"seg_00001" not in body


def test_quoted_names(server):
    status, _, body = server.request("/name%20with%20space.m4s")
    assert status == 200 and body == b"ok"


def test_player_files_and_info(server):
    status, headers, body = server.request("/_abrpipe/vendor/shaka-player.compiled.js", method="HEAD")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    status, _, body = server.request("/_abrpipe/info")
    info = json.loads(body)
    assert info["manifests"] == {"hls": ["master.m3u8"], "dash": ["manifest.mpd"]}
    assert info["clearkey"] is True and info["license_url"] == "/clearkey"
    status, _, body = server.request("/_abrpipe/../secret.txt")
    assert status in (400, 403, 404) and SECRET not in body


def test_clearkey_license(server):
    req = json.dumps({"kids": [b64url(KID), b64url("00" * 16)], "type": "temporary"}).encode()
    status, headers, body = server.request("/clearkey", method="POST", headers={"Content-Type": "application/json"}, body=req)
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    answer = json.loads(body)
    assert answer == {"keys": [{"kty": "oct", "kid": b64url(KID), "k": b64url(KEY)}], "type": "temporary"}
    status, _, _ = server.request("/clearkey", method="POST", body=b"not json")
    assert status == 400
    status, _, body = server.request("/" + serve.KEYS_NAME)  # keys leave only through the license endpoint
    assert status == 403 and KEY.encode() not in body


def test_bound_to_loopback_only(server):
    """The listening socket is 127.0.0.1:port, read from the kernel's own table."""
    entries = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, port = local.rsplit(":", 1)
            if int(port, 16) == server.port and state == "0A":  # 0A: LISTEN
                entries.append(addr)
    assert entries == ["0100007F"], entries  # 127.0.0.1, little-endian; nothing on tcp6


def test_no_license_without_keys(tmp_path):
    (tmp_path / "master.m3u8").write_text("#EXTM3U\n")
    s = Server(tmp_path)
    try:
        status, _, body = s.request("/clearkey", method="POST", body=json.dumps({"kids": [b64url(KID)]}).encode())
        assert status == 404
        assert json.loads(s.request("/_abrpipe/info")[2])["clearkey"] is False
    finally:
        assert s.stop() == 0


def test_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "abrpipe", "serve", str(tmp_path), "--port", str(port)],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 5
    lines = [line for line in proc.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "Traceback" not in proc.stderr


def test_bad_key_file_is_one_line(tmp_path):
    (tmp_path / serve.KEYS_NAME).write_text('{"keys": [{"kid": "12"}]}')
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "abrpipe", "serve", str(tmp_path), "--port", "0"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 3 and time.monotonic() - t0 < 30
    assert "clearkey.json: not a key file" in proc.stderr and "Traceback" not in proc.stderr


def test_open_opens_the_page_once_listening(tmp_path, monkeypatch):
    import webbrowser

    from click.testing import CliRunner

    from abrpipe.cli import cli

    opened = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    monkeypatch.setattr(serve, "serve_forever", lambda root, host, port, on_ready: on_ready(host, 43210))
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--open", "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert opened == ["http://127.0.0.1:43210/"]
    assert json.loads(result.stdout)["url"] == "http://127.0.0.1:43210/"
