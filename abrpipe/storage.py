"""storage: object storage (S3 and S3-compatible servers) as an input and as a publish target.

Locations are `s3://bucket/prefix`. The client is boto3, so credentials come from its usual chain
(environment, shared config/credentials files with AWS_PROFILE, container or instance role) and the
endpoint from `--endpoint`, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (any S3-compatible server).
Credentials never appear in a message: errors name the URL, the endpoint and the server's error code.

Publishing (the guarantee): the validated local work area is uploaded under a versioned prefix,

    PREFIX/v/<version>/...          the whole ladder, exactly as validated (immutable)
    PREFIX/master.m3u8              entry points, rewritten to point into v/<version>/,
    PREFIX/manifest.mpd             written last, each in one PUT (an atomic switch per object)
    PREFIX/abrpipe.json             the job record, after the entry points

`<version>` is a digest of the ladder's content (paths and MD5s, the record excluded). Inside the
version, objects go up in order: segments and inits, then media playlists, then the version's own
master.m3u8 / manifest.mpd; every object is verified (size and ETag) before the next step starts.
So a reader who starts at any manifest only ever finds objects that exist, and re-publishing never
mixes old manifests with new segments: the previous ladder stays whole under its own version until
the entry points switch, and is removed only at the next publish (one previous version is kept for
players and CDN caches still holding the old entry points). A rerun after an interruption finds the
same version (same content) and uploads only the objects missing or different there.

An input in object storage is downloaded once into scratch space (ABRPIPE_SCRATCH, or the system's
temporary directory), verified (size and ETag), and only the local copy is given to ffmpeg.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from abrpipe.errors import AbrpipeError, DependencyError, InputError, Interrupted, OutputError

SCHEMES = ("s3",)
SCRATCH_ENV = "ABRPIPE_SCRATCH"
VERSIONS_DIR = "v"
ENTRY_POINTS = ("master-ts.m3u8", "master.m3u8", "manifest.mpd")  # switched last, in this order (when written)
RECORD_NAME = "abrpipe.json"  # written after the entry points

MULTIPART_THRESHOLD_BYTES = 8 << 20
_MIN_PART_BYTES = 8 << 20
_MAX_PARTS = 9000  # S3 allows 10 000 parts: room to spare
UPLOAD_WORKERS = 8
_TRIES = 4  # per object, on top of botocore's own retries of each request
_BACKOFF_S = 0.5
_CHUNK = 1 << 20

# Content-Type by extension: what players and CDNs expect for each kind of object.
CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".ts": "video/mp2t",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".webvtt": "text/vtt",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".json": "application/json",
    ".xml": "application/xml",
    ".html": "text/html; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# Everything under v/<version>/ never changes once written (a new ladder is a new version), so a CDN
# may keep it for a year. The entry points change when a ladder is re-published: a minute at the
# edge bounds how long a viewer can be sent to the previous version (which stays whole meanwhile).
# The record is for tools, not viewers: never cached.
CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_ENTRY_POINT = "public, max-age=60"
CACHE_RECORD = "no-cache"

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(.*)$", re.S)
# Names that are URL schemes even without '//' ("s3:bucket", "ftp:/x"): never local directories.
_KNOWN_SCHEMES = frozenset(
    "s3 s3a s3n gs gcs az abfs abfss adl wasb wasbs http https ftp ftps sftp scp file hdfs webdav dav r2 oss cos swift".split()
)

Message = Callable[[str], None]


@dataclass(frozen=True)
class ObjectURL:
    bucket: str
    key: str  # an object key, or a prefix ("" or ending with "/") for a folder

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def folder(self) -> str:
        """The key as a prefix: "" or ending with "/"."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"

    def child(self, rel: str) -> str:
        return self.folder + rel


def _malformed(text: str) -> str | None:
    """Why `text` looks like a URL abrpipe cannot use, or None if it is a URL we read or a plain path."""
    m = _SCHEME_RE.match(text)
    if not m or len(m.group(1)) < 2:  # "C:" style drive letters are not schemes
        return None
    scheme, rest = m.group(1).lower(), m.group(2)
    if rest.startswith("//"):
        if scheme in SCHEMES:
            bucket = rest[2:].split("/", 1)[0]
            if not bucket:
                return f"names no bucket (expected {scheme}://BUCKET/PREFIX)"
            if not re.fullmatch(r"[a-z0-9][a-z0-9.\-_]{1,254}", bucket):
                return f"'{bucket}' is not a valid bucket name"
            return None
        return f"is a {scheme}:// URL: only {', '.join(s + '://' for s in SCHEMES)} object storage is supported"
    if scheme in _KNOWN_SCHEMES or rest.startswith("/") or not rest:
        fixed = f"{scheme}://{rest.lstrip('/')}"
        return f"is not a valid URL (did you mean {fixed}?)"
    return None


def is_url(text: str) -> bool:
    """True for anything URL-like (scheme://... or a scheme-like typo), supported or not."""
    return "://" in text or _malformed(text) is not None


def parse(text: str) -> ObjectURL | None:
    """The ObjectURL of a supported URL; None for a plain path. Raises ValueError for a URL abrpipe
    cannot use, with the reason."""
    reason = _malformed(text)
    if reason:
        raise ValueError(reason)
    m = _SCHEME_RE.match(text)
    if not m or not m.group(2).startswith("//") or m.group(1).lower() not in SCHEMES:
        return None
    bucket, _, key = m.group(2)[2:].partition("/")
    return ObjectURL(bucket, key.lstrip("/"))


def parse_output(text: str) -> ObjectURL | None:
    """An output location: None for a local directory, an ObjectURL, or OutputError (exit 5)."""
    try:
        return parse(text)
    except ValueError as exc:
        raise OutputError(
            f"{text}: {exc}", hint="outputs are a local directory or s3://BUCKET/PREFIX/ (nothing was written)"
        ) from None


def parse_input(text: str) -> ObjectURL | None:
    """An s3:// input as ObjectURL; None for anything else (local paths, and other URLs, which probe
    refuses unless --allow-references); InputError (exit 3) for a malformed s3 URL."""
    m = _SCHEME_RE.match(text)
    if not m or m.group(1).lower() not in SCHEMES + tuple(s for s in _KNOWN_SCHEMES if s != "file"):
        return None
    if "://" in text and m.group(1).lower() not in SCHEMES:
        return None  # http(s)://, rtmp://...: probe's own rule (refused unless --allow-references)
    try:
        url = parse(text)
    except ValueError as exc:
        raise InputError(f"{text}: {exc}") from None
    if url is not None and (not url.key or url.key.endswith("/")):
        raise InputError(f"{text}: names a folder, not an object", hint="give the full key of the source file")
    return url


def scratch_dir() -> str:
    return os.path.abspath(os.environ.get(SCRATCH_ENV) or tempfile.gettempdir())


def _area(kind: str, url: ObjectURL, owner: str = "") -> str:
    digest = hashlib.sha256(f"{url}\0{owner}".encode()).hexdigest()[:16]
    return os.path.join(scratch_dir(), f"abrpipe-{kind}", digest)


# ---------------------------------------------------------------------------------------------
# The client and its errors.


def client(endpoint: str | None = None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise DependencyError(
            "object storage needs boto3, which is not installed", hint="pip install 'abrpipe[s3]'"
        ) from None
    # "standard" retries: exponential backoff with jitter on throttling, 5xx and dropped connections.
    config = Config(
        retries={"mode": "standard", "max_attempts": 6},
        max_pool_connections=UPLOAD_WORKERS * 4,
        connect_timeout=10,
        read_timeout=120,
    )
    session = boto3.session.Session()  # the whole credential chain: env, AWS_PROFILE/config files, roles
    return session.client("s3", endpoint_url=endpoint or None, config=config)


def endpoint_of(s3: Any) -> str:
    """The endpoint as it may be shown: scheme, host and port, never user info or a query."""
    raw = str(getattr(getattr(s3, "meta", None), "endpoint_url", "") or "")
    m = re.match(r"^([a-z]+://)(?:[^@/]*@)?([^/?#]*)", raw)
    return (m.group(1) + m.group(2)) if m else "the default endpoint"


_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
           "InvalidClientTokenId", "UnrecognizedClientException", "403", "AllAccessDisabled", "AccountProblem"}
_NO_BUCKET = {"NoSuchBucket"}
_NO_KEY = {"NoSuchKey", "404", "NotFound"}


def _cause(exc: BaseException) -> BaseException:
    """The botocore error under boto3's wrappers (S3UploadFailedError wraps the ClientError)."""
    seen = 0
    while getattr(exc, "response", None) is None and (exc.__cause__ or exc.__context__) is not None and seen < 5:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return exc


def error_code(exc: BaseException) -> str:
    response = getattr(_cause(exc), "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return ""


def explain(exc: BaseException, where: str, s3: Any, error: type[AbrpipeError]) -> AbrpipeError:
    """One line for a failed request: what, where, and what to do; never a credential."""
    from botocore import exceptions as bx

    endpoint = endpoint_of(s3)
    exc = _cause(exc)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return error(
            f"{where}: no credentials for object storage ({type(exc).__name__})",
            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance role",
        )
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError | bx.ConnectionClosedError):
        return error(f"{where}: cannot reach the object store at {endpoint}", hint="check --endpoint / AWS_ENDPOINT_URL and the network")
    code = error_code(exc)
    if code in _DENIED:
        return error(
            f"{where}: access denied by the object store at {endpoint} ({code})",
            hint="check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE) and the bucket's permissions",
        )
    if code in _NO_BUCKET:
        bucket = where.split("/")[2] if where.startswith("s3://") else where
        return error(f"{where}: no such bucket '{bucket}' at {endpoint}", hint="create the bucket, or check the URL and --endpoint")
    detail = code or type(exc).__name__
    return error(f"{where}: object storage request failed at {endpoint} ({detail})", hint="run with --debug for the details")


def _transient(exc: BaseException) -> bool:
    code = error_code(exc)
    return not (code in _DENIED or code in _NO_BUCKET or isinstance(exc, AbrpipeError))


def check_bucket(s3: Any, url: ObjectURL, error: type[AbrpipeError]) -> None:
    """Fail early (before an encode) on wrong credentials, a missing bucket or an unreachable endpoint."""
    try:
        s3.list_objects_v2(Bucket=url.bucket, Prefix=url.folder, MaxKeys=1)
    except Exception as exc:
        raise explain(exc, str(url), s3, error) from exc


def list_objects(s3: Any, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Key -> {size, etag, modified} for every object under prefix."""
    found: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = {"size": obj["Size"], "etag": obj["ETag"].strip('"'), "modified": obj["LastModified"]}
    return found


# ---------------------------------------------------------------------------------------------
# Checksums: an S3 ETag is the MD5 of the object, or for a multipart upload the MD5 of the parts'
# MD5s followed by "-<parts>".


def part_size_for(size: int) -> int:
    parts_needed = -(-size // _MAX_PARTS)
    return max(_MIN_PART_BYTES, -(-parts_needed // (1 << 20)) * (1 << 20))


@dataclass(frozen=True)
class LocalFile:
    rel: str  # path inside the work area, with "/"
    path: str
    size: int
    md5: str
    etag: str  # the ETag the store will report for our upload of it


def describe_file(path: str, rel: str) -> LocalFile:
    size = os.path.getsize(path)
    multipart = size >= MULTIPART_THRESHOLD_BYTES
    part = part_size_for(size) if multipart else 0
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    with open(path, "rb") as fh:
        while True:
            block = fh.read(part or _CHUNK * 8)
            if not block:
                break
            whole.update(block)
            if multipart:
                parts.append(hashlib.md5(block, usedforsecurity=False).digest())
    md5 = whole.hexdigest()
    etag = f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}" if multipart else md5
    return LocalFile(rel, path, size, md5, etag)


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


# ---------------------------------------------------------------------------------------------
# Upload.


@dataclass(frozen=True)
class Upload:
    key: str
    path: str
    size: int
    etag: str
    content_type: str
    cache_control: str


@dataclass
class PublishStats:
    url: str
    version: str
    objects: int = 0
    uploaded: int = 0
    skipped: int = 0
    bytes_uploaded: int = 0
    removed_versions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "version": self.version, "objects": self.objects, "uploaded": self.uploaded,
            "skipped": self.skipped, "bytes_uploaded": self.bytes_uploaded, "removed_versions": self.removed_versions,
        }


class Uploader:
    """Uploads batches of objects in parallel, each verified (size and ETag) after it is written."""

    def __init__(self, s3: Any, bucket: str, where: str, stats: PublishStats, say: Message) -> None:
        from boto3.s3.transfer import TransferConfig

        self.s3 = s3
        self.bucket = bucket
        self.where = where
        self.stats = stats
        self.say = say
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._transfer = TransferConfig

    def _config(self, size: int) -> Any:
        part = part_size_for(size)
        # use_threads=False: our pool already uploads objects in parallel.
        return self._transfer(multipart_threshold=MULTIPART_THRESHOLD_BYTES, multipart_chunksize=part, use_threads=False)

    def _one(self, up: Upload) -> None:
        for attempt in range(1, _TRIES + 1):
            if self._stop.is_set():
                return
            try:
                self.s3.upload_file(
                    up.path, self.bucket, up.key, Config=self._config(up.size),
                    ExtraArgs={"ContentType": up.content_type, "CacheControl": up.cache_control},
                )
                head = self.s3.head_object(Bucket=self.bucket, Key=up.key)
                etag = str(head.get("ETag", "")).strip('"')
                if head.get("ContentLength") != up.size or etag != up.etag:
                    raise _Mismatch(f"s3://{self.bucket}/{up.key}: the stored object differs from the upload "
                                    f"({head.get('ContentLength')} bytes, ETag {etag}; expected {up.size} bytes, ETag {up.etag})")
            except Exception as exc:
                if attempt == _TRIES or not (_transient(exc) or isinstance(exc, _Mismatch)):
                    raise
                time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
                continue
            with self._lock:
                self.stats.uploaded += 1
                self.stats.bytes_uploaded += up.size
            return

    def run(self, uploads: list[Upload], label: str) -> None:
        if not uploads:
            return
        done = 0
        last = time.monotonic()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=UPLOAD_WORKERS, thread_name_prefix="abrpipe-upload")
        try:
            futures = [pool.submit(self._one, up) for up in uploads]
            for future in concurrent.futures.as_completed(futures):
                future.result()
                done += 1
                now = time.monotonic()
                if now - last >= 2 or done == len(uploads):
                    last = now
                    self.say(f"upload {label}: {done}/{len(uploads)}")
        except BaseException as exc:
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C / SIGTERM: the entry points were not switched
                raise Interrupted(f"{self.where}: interrupted while uploading; the entry points were not switched",
                                  hint="run the same command again: it uploads only what is missing") from exc
            if isinstance(exc, _Mismatch):
                raise OutputError(str(exc), hint="nothing new was published; run again") from exc
            if isinstance(exc, Exception) and not isinstance(exc, AbrpipeError):
                raise explain(exc, self.where, self.s3, OutputError) from exc
            raise
        pool.shutdown(wait=True)


class _Mismatch(Exception):
    pass


_ENTRY_DIR = ".entry"  # the rewritten entry points, made at publish time: not part of the ladder


def _walk(work_dir: str) -> list[LocalFile]:
    files = []
    for dirpath, dirnames, filenames in os.walk(work_dir):
        if dirpath == work_dir and _ENTRY_DIR in dirnames:
            dirnames.remove(_ENTRY_DIR)
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, work_dir).replace(os.sep, "/")
            files.append(describe_file(path, rel))
    return files


def version_of(files: Iterable[LocalFile]) -> str:
    """The ladder's content digest: the same encode gives the same version, so a rerun resumes it."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.rel):
        if f.rel != RECORD_NAME and not f.rel.startswith("."):  # kept logs differ on every run
            h.update(f"{f.rel}\0{f.md5}\n".encode())
    return h.hexdigest()[:16]


def _phase(rel: str) -> int:
    """0: segments, inits and other media; 1: media playlists; 2: the version's own top-level files."""
    if "/" not in rel:
        return 2
    return 1 if rel.lower().endswith((".m3u8", ".mpd")) else 0


def point_hls(text: str, prefix: str) -> str:
    """The multivariant playlist with every relative URI (URI lines and URI="..." attributes) moved
    under prefix. Line by line on purpose: every tag survives, also ones the m3u8 library does not model."""

    def fix(uri: str) -> str:
        return uri if _SCHEME_RE.match(uri) and "://" in uri or uri.startswith(("/", "data:")) else prefix + uri

    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            line = fix(stripped)
        elif stripped.startswith("#EXT"):
            line = re.sub(r'URI="([^"]*)"', lambda m: f'URI="{fix(m.group(1))}"', line)
        out.append(line)
    return "\n".join(out) + "\n"


def point_dash(text: str, prefix: str) -> str:
    """The MPD with an MPD-level BaseURL naming prefix (relative BaseURLs already there are moved
    under it), so every SegmentTemplate resolves inside the version."""
    namespaces: dict[str, str] = {}
    for _, (ns_prefix, uri) in ET.iterparse(_as_stream(text), events=("start-ns",)):
        namespaces.setdefault(ns_prefix, uri)
    for ns_prefix, uri in namespaces.items():
        ET.register_namespace(ns_prefix, uri)
    root = ET.fromstring(text)
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    tag = f"{{{ns}}}BaseURL" if ns else "BaseURL"
    bases = root.findall(tag)
    if bases:
        for b in bases:
            value = (b.text or "").strip()
            if not ("://" in value or value.startswith("/")):
                b.text = prefix + value
    else:
        element = ET.Element(tag)
        element.text = prefix
        element.tail = "\n  "
        # BaseURL comes after ProgramInformation and before everything else (the MPD schema's order).
        position = sum(1 for child in root if child.tag.endswith("ProgramInformation"))
        root.insert(position, element)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _as_stream(text: str):
    import io

    return io.BytesIO(text.encode("utf-8"))


def _versions_named(text: str) -> set[str]:
    return set(re.findall(re.escape(VERSIONS_DIR + "/") + r"([0-9a-f]{16})/", text))


class ObjectTarget:
    """Publishes a validated work area to s3://BUCKET/PREFIX/ (see the module's docstring)."""

    def __init__(self, url: ObjectURL, *, endpoint: str | None = None, display: str | None = None) -> None:
        self.url = url
        self.endpoint = endpoint
        self.display = display or str(url)
        self._s3: Any = None

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = client(self.endpoint)
        return self._s3

    @property
    def work_dir(self) -> str:
        return _area("work", self.url) + ".partial"

    def check(self) -> None:
        check_bucket(self.s3, self.url, OutputError)
        _check_scratch_writable(os.path.dirname(self.work_dir), self.display)

    def prepare(self) -> str:
        self.check()
        work = self.work_dir
        try:
            if os.path.exists(work):
                shutil.rmtree(work)
            os.makedirs(work)
        except OSError as exc:
            raise OutputError(f"{work}: cannot be created ({exc.strerror})", hint=f"set {SCRATCH_ENV} to a writable directory") from None
        return work

    def discard(self, work_dir: str) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(work_dir)

    def published_paths(self) -> tuple[str, ...]:
        return tuple(str(ObjectURL(self.url.bucket, self.url.child(n))) for n in ENTRY_POINTS)

    def publish(self, work_dir: str, say: Message | None = None) -> dict[str, Any]:
        say = say or (lambda _m: None)
        files = _walk(work_dir)
        version = version_of(files)
        stats = PublishStats(str(self.url), version, objects=sum(1 for f in files if f.rel != RECORD_NAME))
        s3, bucket = self.s3, self.url.bucket
        vprefix = self.url.child(f"{VERSIONS_DIR}/{version}/")
        try:
            existing = list_objects(s3, bucket, vprefix)
            previous_entry = {n: self._read_text(self.url.child(n)) for n in ENTRY_POINTS}
        except Exception as exc:
            raise explain(exc, str(self.url), s3, OutputError) from exc
        uploader = Uploader(s3, bucket, str(self.url), stats, say)
        phases: list[list[Upload]] = [[], [], []]
        for f in files:
            if f.rel == RECORD_NAME:
                continue  # it changes on every run: only the top-level copy, written after the switch
            key = vprefix + f.rel
            have = existing.get(key)
            if have and have["size"] == f.size and have["etag"] == f.etag:
                stats.skipped += 1
                continue
            phases[_phase(f.rel)].append(Upload(key, f.path, f.size, f.etag, content_type(f.rel), CACHE_IMMUTABLE))
        for label, batch in zip(("segments", "playlists", "manifests"), phases):
            uploader.run(batch, label)
        # The switch: entry points that name this version, then the record.
        point_dir = os.path.join(work_dir, _ENTRY_DIR)
        os.makedirs(point_dir, exist_ok=True)
        switch: list[Upload | None] = []  # None: the store already holds exactly this entry point
        rel_prefix = f"{VERSIONS_DIR}/{version}/"
        for name in ENTRY_POINTS:
            src = os.path.join(work_dir, name)
            if not os.path.isfile(src):
                continue
            with open(src, encoding="utf-8") as fh:
                text = fh.read()
            pointed = point_hls(text, rel_prefix) if name.endswith(".m3u8") else point_dash(text, rel_prefix)
            switch.append(self._entry(point_dir, name, pointed, CACHE_ENTRY_POINT, previous_entry.get(name)))
        record = os.path.join(work_dir, RECORD_NAME)
        if os.path.isfile(record):
            with open(record, encoding="utf-8") as fh:
                data = json.load(fh)
            data["published"] = {"url": str(self.url), "version": version}
            pointed_record = json.dumps(data, indent=2, default=str) + "\n"
            switch.append(self._entry(point_dir, RECORD_NAME, pointed_record, CACHE_RECORD, None))
        for up in switch:  # one at a time, in order: master.m3u8, manifest.mpd, abrpipe.json
            if up is None:
                stats.skipped += 1
                continue
            uploader.run([up], up.key.rsplit("/", 1)[-1])
        stats.objects += len(switch)
        stats.removed_versions = self._prune(version, previous_entry)
        say(f"published {self.url}: version {version}, {stats.uploaded} object(s) uploaded, {stats.skipped} already there")
        return stats.to_dict()

    def _entry(self, folder: str, name: str, text: str, cache: str, previous: str | None) -> Upload | None:
        if previous is not None and previous == text:
            return None
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        f = describe_file(path, name)
        return Upload(self.url.child(name), path, f.size, f.etag, content_type(name), cache)

    def _read_text(self, key: str) -> str | None:
        try:
            body = self.s3.get_object(Bucket=self.url.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc) in _NO_KEY:
                return None
            raise
        return body.decode("utf-8", "replace")

    def _prune(self, current: str, previous_entry: dict[str, str | None]) -> list[str]:
        """Remove versions other than this one and the one the entry points named before."""
        keep = {current}
        for text in previous_entry.values():
            if text:
                keep |= _versions_named(text)
        root = self.url.child(VERSIONS_DIR + "/")
        try:
            listed = list_objects(self.s3, self.url.bucket, root)
        except Exception:
            return []  # pruning is housekeeping: the publish itself is done
        stale: dict[str, list[str]] = {}
        for key in listed:
            version = key[len(root):].split("/", 1)[0]
            if version not in keep:
                stale.setdefault(version, []).append(key)
        for keys in stale.values():
            # Manifests first, segments last: whatever a reader still finds of a pruned version, no
            # manifest of it names an object already gone.
            for phase in (2, 1, 0):
                batch = [k for k in keys if _phase(k[len(root):].split("/", 1)[-1]) == phase]
                for i in range(0, len(batch), 1000):
                    with contextlib.suppress(Exception):
                        self.s3.delete_objects(
                            Bucket=self.url.bucket, Delete={"Objects": [{"Key": k} for k in batch[i:i + 1000]], "Quiet": True}
                        )
        return sorted(stale)


def _check_scratch_writable(folder: str, where: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{where}: scratch space {folder} cannot be created ({exc.strerror})",
                          hint=f"set {SCRATCH_ENV} to a writable directory") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: cannot write in scratch space {folder} (permission denied)",
                          hint=f"set {SCRATCH_ENV} to a writable directory")


# ---------------------------------------------------------------------------------------------
# Download.


def _free_bytes(folder: str) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def _no_space(url: str, folder: str, need: int) -> OutputError:
    return OutputError(
        f"{url}: no space left on device in scratch space {folder} ({need / 1e6:.1f} MB needed)",
        hint=f"free some space, or set {SCRATCH_ENV} to a larger disk",
    )


def download(s3: Any, bucket: str, key: str, dest: str, *, where: str, error: type[AbrpipeError],
             say: Message | None = None, head: dict[str, Any] | None = None) -> dict[str, Any]:
    """Download one object to dest (through a .part file beside it), checked against its size and ETag.
    Returns the object's {size, etag}."""
    say = say or (lambda _m: None)
    try:
        head = head or s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in _NO_KEY:
            raise error(f"{where}: no such object", hint="check the bucket and key") from exc
        raise explain(exc, where, s3, error) from exc
    size = int(head["ContentLength"])
    etag = str(head.get("ETag", "")).strip('"')
    folder = os.path.dirname(dest)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{where}: scratch space {folder} cannot be created ({exc.strerror})",
                          hint=f"set {SCRATCH_ENV} to a writable directory") from None
    if _free_bytes(folder) < size:
        raise _no_space(where, folder, size)
    part_size = 0
    if re.fullmatch(r"[0-9a-f]{32}-\d+", etag):
        try:  # the size of part 1 is the part size the object was uploaded with
            part_size = int(s3.head_object(Bucket=bucket, Key=key, PartNumber=1)["ContentLength"])
        except Exception:
            part_size = 0
    tmp = f"{dest}.{os.getpid()}-{threading.get_ident()}.part"
    whole = hashlib.md5(usedforsecurity=False)
    part_md5 = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    in_part = 0
    got = 0
    last = time.monotonic()
    try:
        body = s3.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')["Body"] if etag else \
            s3.get_object(Bucket=bucket, Key=key)["Body"]
        with open(tmp, "wb") as out:
            for block in body.iter_chunks(_CHUNK):
                out.write(block)
                whole.update(block)
                got += len(block)
                if part_size:
                    view = memoryview(block)
                    while view:
                        take = min(len(view), part_size - in_part)
                        part_md5.update(view[:take])
                        in_part += take
                        view = view[take:]
                        if in_part == part_size:
                            parts.append(part_md5.digest())
                            part_md5 = hashlib.md5(usedforsecurity=False)
                            in_part = 0
                now = time.monotonic()
                if now - last >= 2:
                    last = now
                    say(f"{where}: {100 * got / max(1, size):.0f}% of {size / 1e6:.1f} MB")
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if exc.errno == 28:  # ENOSPC
            raise _no_space(where, folder, size) from None
        raise OutputError(f"{where}: cannot write {tmp} ({exc.strerror})") from None
    except Exception as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise explain(exc, where, s3, error) from exc
    except BaseException:  # Ctrl-C / SIGTERM: no half-downloaded file left in scratch space
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    if in_part:
        parts.append(part_md5.digest())
    if got != size:
        os.remove(tmp)
        raise error(f"{where}: download incomplete ({got} of {size} bytes)", hint="run again")
    if "-" not in etag and re.fullmatch(r"[0-9a-f]{32}", etag):
        actual = whole.hexdigest()
    elif part_size:
        actual = f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"
    else:
        actual = etag  # an ETag that is no MD5 (e.g. SSE-KMS): the size and If-Match are the check
    if actual != etag:
        os.remove(tmp)
        raise error(f"{where}: the download does not match the object's ETag ({actual} != {etag})", hint="run again")
    os.replace(tmp, dest)
    say(f"{where}: {size / 1e6:.1f} MB, verified")
    return {"size": size, "etag": etag}


def fetch_input(url: ObjectURL, *, endpoint: str | None = None, say: Message | None = None, owner: str = "") -> str:
    """The local copy of an s3:// input, downloaded once into scratch (reused while the object is
    unchanged) and verified. `owner` (the job's output) gives each job its own copy, so that jobs of a
    batch never share, and remove, one another's."""
    s3 = client(endpoint)
    where = str(url)
    try:
        head = s3.head_object(Bucket=url.bucket, Key=url.key)
    except Exception as exc:
        if error_code(exc) in _NO_KEY:
            check_bucket(s3, ObjectURL(url.bucket, ""), InputError)
            raise InputError(f"{where}: no such object", hint="check the key (abrpipe validate and aws s3 ls list them)") from exc
        raise explain(exc, where, s3, InputError) from exc
    folder = _area("inputs", url, owner)
    dest = os.path.join(folder, os.path.basename(url.key) or "input")
    stamp = dest + ".etag"
    etag = str(head.get("ETag", "")).strip('"')
    with contextlib.suppress(OSError, ValueError):
        with open(stamp, encoding="utf-8") as fh:
            seen = json.load(fh)
        if seen == {"etag": etag, "size": head["ContentLength"]} and os.path.getsize(dest) == head["ContentLength"]:
            return dest
    got = download(s3, url.bucket, url.key, dest, where=where, error=InputError, say=say, head=head)
    with open(stamp, "w", encoding="utf-8") as fh:
        json.dump(got, fh)
    return dest


def forget_input(url: ObjectURL, owner: str = "") -> None:
    """Remove the downloaded copy of an input (after the job that needed it succeeded)."""
    with contextlib.suppress(OSError):
        shutil.rmtree(_area("inputs", url, owner))


def fetch_tree(url: ObjectURL, dest: str, *, endpoint: str | None = None, say: Message | None = None) -> str:
    """Download a published output for validation: the objects at the top of the prefix, and of the
    versions (v/<id>/) only those that the top-level manifests name. Returns dest."""
    s3 = client(endpoint)
    where = str(url)
    check_bucket(s3, url, InputError)
    try:
        listed = list_objects(s3, url.bucket, url.folder)
    except Exception as exc:
        raise explain(exc, where, s3, InputError) from exc
    if not listed:
        raise InputError(f"{where}: no objects under this prefix", hint="check the URL (and --endpoint)")
    top = {k: v for k, v in listed.items() if "/" not in k[len(url.folder):]}
    wanted: set[str] | None = None
    if any(k[len(url.folder):].lower().endswith((".m3u8", ".mpd")) for k in top):
        texts = []
        for key in top:
            if key.lower().endswith((".m3u8", ".mpd")):
                dest_path = os.path.join(dest, key[len(url.folder):])
                download(s3, url.bucket, key, dest_path, where=f"s3://{url.bucket}/{key}", error=InputError)
                with open(dest_path, encoding="utf-8", errors="replace") as fh:
                    texts.append(fh.read())
        wanted = set().union(*(_versions_named(t) for t in texts)) or None  # None: no versions, take everything
    keys = []
    for key in listed:
        rel = key[len(url.folder):]
        if not rel or rel.endswith("/") or os.path.exists(os.path.join(dest, rel)):
            continue
        parts = rel.split("/")
        if (wanted is not None and parts[0] == VERSIONS_DIR and len(parts) > 2
                and re.fullmatch(r"[0-9a-f]{16}", parts[1]) and parts[1] not in wanted):
            continue  # an older (or unfinished) version that no manifest names
        if ".." in parts:
            continue
        keys.append(key)
    total = len(keys)
    done = 0
    last = time.monotonic()

    def get(key: str) -> None:
        rel = key[len(url.folder):]
        download(s3, url.bucket, key, os.path.join(dest, rel), where=f"s3://{url.bucket}/{key}", error=InputError)

    with concurrent.futures.ThreadPoolExecutor(max_workers=UPLOAD_WORKERS, thread_name_prefix="abrpipe-download") as pool:
        for future in concurrent.futures.as_completed([pool.submit(get, k) for k in keys]):
            future.result()
            done += 1
            if say and (time.monotonic() - last >= 2 or done == total):
                last = time.monotonic()
                say(f"download {where}: {done}/{total} objects")
    return dest
