"""A local origin for an output directory: `abrpipe serve OUT`.

    app = make_app("out/")                      # aiohttp application
    serve_forever("out/", host="127.0.0.1", port=8000, on_ready=print)

What it serves, and nothing else:

* ``/`` and ``/_abrpipe/...``: the player page and its files, shipped inside this package
  (abrpipe/player/, Shaka Player vendored: no CDN at run time);
* ``/_abrpipe/info``: JSON naming the manifests found at the top of OUT and whether keys exist;
* ``/clearkey``: a W3C ClearKey license server (POST ``{"kids": [...]}``), answering from
  ``OUT/clearkey.json`` when the output was packaged with its keys embedded (see KEYS_NAME);
* every other path: a regular file inside OUT, with the right MIME type, byte ranges (206/416),
  HEAD, CORS and ``Cache-Control: no-cache``.

Path safety does not rely on the HTTP library's normalisation: the raw request path is split into
segments, each decoded exactly once, and a segment that is empty, ``.``, ``..``, holds a slash,
a backslash or a NUL, or still holds an encoded dot/slash after decoding (double encoding) is
refused with 400. The file is then resolved with every symlink followed, and must lie inside OUT's
own real path, or it is refused with 403. Directories are never listed (404), and the keys file is
never served as a file (403): keys leave only through /clearkey.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from abrpipe.errors import InputError, OutputError

# The key file a protected output carries when it was packaged with its keys embedded:
#   {"keys": [{"kid": "<32 hex digits>", "key": "<32 hex digits>"}, ...]}
KEYS_NAME = "clearkey.json"
PLAYER_PREFIX = "/_abrpipe/"
LICENSE_PATH = "/clearkey"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

MIME_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".m4a": "audio/mp4",
    ".cmfv": "video/mp4",
    ".cmfa": "audio/mp4",
    ".cmft": "application/mp4",
    ".ts": "video/mp2t",
    ".aac": "audio/aac",
    ".vtt": "text/vtt; charset=utf-8",
    ".webvtt": "text/vtt; charset=utf-8",
    ".ttml": "application/ttml+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".toml": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".key": "application/octet-stream",
}
DEFAULT_MIME = "application/octet-stream"

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges, Content-Type",
}
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Range, Content-Type",
    "Access-Control-Max-Age": "600",
}
# Once decoded, a segment must not still hold an encoded dot, slash, backslash or percent sign:
# that is a double-encoded traversal (%252e%252e%252f) aimed at a second decoder.
_DOUBLE_ENCODED = re.compile(r"%(2e|2f|5c|25|00)", re.IGNORECASE)


class PathRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def mime_type(path: str) -> str:
    return MIME_TYPES.get(os.path.splitext(path)[1].lower(), DEFAULT_MIME)


def resolve_request_path(root_real: str, raw_path: str) -> str:
    """The real path of the file inside ``root_real`` that ``raw_path`` (the request target as
    sent, query included or not) names; PathRefused(400/403/404) otherwise."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        raise PathRefused(400, "the request target is not an origin-form path")
    parts = path[1:].split("/")
    directory = len(parts) > 1 and parts[-1] == ""  # "/dir/": a directory, never listed
    if directory:
        parts.pop()
    segments = []
    for raw in parts:
        segment = urllib.parse.unquote(raw, errors="strict") if "%" in raw else raw
        if segment in ("", ".", ".."):
            raise PathRefused(400, f"path segment {raw!r} is not allowed")
        if any(c in segment for c in "/\\\0") or _DOUBLE_ENCODED.search(segment):
            raise PathRefused(400, f"path segment {raw!r} is not allowed")
        segments.append(segment)
    candidate = os.path.join(root_real, *segments)
    real = os.path.realpath(candidate)
    if os.path.commonpath([root_real, real]) != root_real:
        raise PathRefused(403, "the path leads outside the served directory")
    if directory or os.path.isdir(real):
        raise PathRefused(404, "not found (directories are not listed)")
    if real == os.path.join(root_real, KEYS_NAME):
        raise PathRefused(403, f"{KEYS_NAME} is only given out through {LICENSE_PATH}")
    if not os.path.isfile(real):
        raise PathRefused(404, "not found")
    return real


# ------------------------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class ClearKeys:
    """kid -> key, both 16 bytes, read from OUT/clearkey.json (never in a repr or a log line)."""

    keys: dict[bytes, bytes] = field(repr=False)

    @classmethod
    def load(cls, root: str) -> ClearKeys | None:
        path = os.path.join(root, KEYS_NAME)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            keys = {_hex16(k["kid"]): _hex16(k["key"]) for k in data["keys"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path}: not a key file ({exc})",
                hint='expected {"keys": [{"kid": "<32 hex digits>", "key": "<32 hex digits>"}]}',
            ) from None
        return cls(keys)

    def license(self, request: Any) -> dict[str, Any] | None:
        """The W3C ClearKey license (EME §9.1.4) for a license request {"kids": [b64url...]}; None
        when the request is malformed."""
        if not isinstance(request, dict) or not isinstance(request.get("kids"), list):
            return None
        found = []
        for kid_b64 in request["kids"]:
            if not isinstance(kid_b64, str):
                return None
            try:
                kid = base64.urlsafe_b64decode(kid_b64 + "=" * (-len(kid_b64) % 4))
            except (binascii.Error, ValueError):
                return None
            key = self.keys.get(kid)
            if key is not None:
                found.append({"kty": "oct", "kid": _b64url(kid), "k": _b64url(key)})
        return {"keys": found, "type": request.get("type", "temporary")}


def _hex16(value: str) -> bytes:
    raw = bytes.fromhex(str(value).replace("-", ""))
    if len(raw) != 16:
        raise ValueError(f"{value!r} is not 16 bytes of hex")
    return raw


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# ------------------------------------------------------------------------------------------- app


def player_dir() -> Path:
    return Path(str(resources.files("abrpipe") / "player"))


def manifests(root: str) -> dict[str, list[str]]:
    names = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n)))
    hls = [n for n in names if n.lower().endswith(".m3u8")]
    if "master.m3u8" in hls:  # the multivariant playlist first
        hls.remove("master.m3u8")
        hls.insert(0, "master.m3u8")
    return {"hls": hls, "dash": [n for n in names if n.lower().endswith(".mpd")]}


def make_app(root: str):
    """The aiohttp application serving ``root`` (see the module docstring)."""
    from aiohttp import web
    from multidict import CIMultiDict

    root_real = os.path.realpath(root)
    if not os.path.isdir(root_real):
        raise InputError(f"{root}: not a directory", hint="give the output directory of `abrpipe encode`")
    keys = ClearKeys.load(root_real)
    player_real = os.path.realpath(player_dir())

    @web.middleware
    async def cors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204, headers=PREFLIGHT_HEADERS)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
        response.headers.update(CORS_HEADERS)
        return response

    def refuse(exc: PathRefused) -> web.Response:
        return web.Response(status=exc.status, text=f"{exc.status} {exc.reason}\n")

    class WholeFile(web.FileResponse):
        """A multiple-range request is answered with the whole file (200), as RFC 9110 §14.2
        allows: aiohttp would refuse it with 416 though every range is satisfiable."""

        async def prepare(self, request: web.BaseRequest):
            headers = CIMultiDict(request.headers)
            headers.popall("Range", None)
            return await super().prepare(request.clone(headers=headers))

    def send(real: str, request: web.Request | None = None) -> web.FileResponse:
        # FileResponse answers HEAD, Range (206, 416 with Content-Range: bytes */size) and
        # If-Modified-Since itself; the MIME type is ours, mimetypes knows no .m4s/.mpd.
        multi = request is not None and "," in request.headers.get("Range", "")
        kind = WholeFile if multi else web.FileResponse
        return kind(real, headers={"Content-Type": mime_type(real), "Cache-Control": "no-cache"})

    async def media(request: web.Request) -> web.StreamResponse:
        try:
            return send(resolve_request_path(root_real, request.raw_path), request)
        except PathRefused as exc:
            return refuse(exc)

    async def page(request: web.Request) -> web.StreamResponse:
        return send(os.path.join(player_real, "index.html"))

    async def player_file(request: web.Request) -> web.StreamResponse:
        try:
            raw = "/" + request.raw_path[len(PLAYER_PREFIX) :]
            return send(resolve_request_path(player_real, raw))
        except PathRefused as exc:
            return refuse(exc)

    async def info(request: web.Request) -> web.StreamResponse:
        return web.json_response({"manifests": manifests(root_real), "clearkey": keys is not None,
                                  "license_url": LICENSE_PATH if keys else None})  # fmt: skip

    async def license_(request: web.Request) -> web.StreamResponse:
        if keys is None:
            return web.json_response({"error": f"no {KEYS_NAME} in the served directory"}, status=404)
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        answer = keys.license(body)
        if answer is None:
            return web.json_response({"error": 'expected {"kids": ["<base64url>", ...]}'}, status=400)
        return web.json_response(answer)

    app = web.Application(middlewares=[cors])
    app.router.add_get("/", page)
    app.router.add_get(PLAYER_PREFIX + "info", info)
    app.router.add_get(PLAYER_PREFIX + "{tail:.*}", player_file)
    app.router.add_post(LICENSE_PATH, license_)
    app.router.add_get("/{tail:.*}", media)
    return app


async def _run(root: str, host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
    from aiohttp import web

    runner = web.AppRunner(make_app(root), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise OutputError(
                f"{host}:{port}: cannot listen ({reason})",
                hint="choose another --port (--port 0 picks a free one)",
            ) from None
        server = site._server  # the asyncio server: the port really bound (port 0 picks one)
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        on_ready(host, bound)
        await asyncio.Event().wait()  # until Ctrl-C / SIGTERM
    finally:
        await runner.cleanup()


def serve_forever(root: str, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  on_ready: Callable[[str, int], None] = lambda h, p: None) -> None:  # fmt: skip
    """Serve ``root`` until interrupted; ``on_ready(host, port)`` once listening."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        from abrpipe.errors import DependencyError

        raise DependencyError("serve needs aiohttp", hint="pip install 'abrpipe[serve]'") from None
    make_app(root)  # a bad OUT fails before anything listens
    asyncio.run(_run(root, host, port, on_ready))
