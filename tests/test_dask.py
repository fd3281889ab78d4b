"""Work units on a real dask.distributed cluster: a `dask scheduler` and two `dask worker`
processes on 127.0.0.1, started here and always stopped.

Without dask these tests are skipped on a developer's machine, and FAIL where
ABRPIPE_REQUIRE_DASK=1 (make test sets it): CI must really run them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from media import ffmpeg_processes_under, make_clip
from test_workunits import CRF, abrpipe, boxes, encode, frame_count

from abrpipe import layout
from abrpipe.validate import validate_output

pytestmark = pytest.mark.slow
REQUIRE_ENV = "ABRPIPE_REQUIRE_DASK"
BIN = Path(sys.executable).parent


def require_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        message = "dask.distributed is not installed (pip install -e '.[distributed]'; make test installs it)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}")
        pytest.skip(message)
    if not (BIN / "dask").exists():
        pytest.fail(f"the dask command is not installed beside {sys.executable}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """PIDs whose parent is `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return out


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


class Cluster:
    """`dask scheduler` + `dask worker`s on 127.0.0.1. A unit that loses two workers is failed
    (allowed-failures 1), so that KilledWorker can be provoked."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.log = open(tmp / "cluster.log", "ab")  # noqa: SIM115
        self.scheduler = self._start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1",
                                      "--port", self.address.rsplit(":", 1)[1], "--no-dashboard"])
        self.workers: list[subprocess.Popen] = []
        self._count = 0

    def _start(self, argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=self.env, cwd=self.tmp, start_new_session=True)

    def ensure_workers(self, n: int = 2, timeout_s: float = 90) -> None:
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < n:
            self._count += 1
            # No nanny: the worker is one process, the parent of the ffmpeg it starts.
            self.workers.append(self._start([str(BIN / "dask"), "worker", self.address, "--nthreads", "1", "--no-nanny",
                                             "--no-dashboard", "--name", f"w{self._count}", "--death-timeout", "60"]))
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            deadline = time.monotonic() + timeout_s
            while len(client.scheduler_info()["workers"]) != n:
                assert time.monotonic() < deadline, (self.tmp / "cluster.log").read_text()[-3000:]
                time.sleep(0.2)

    def ffmpeg_of(self, worker: subprocess.Popen) -> list[int]:
        """The worker's ffmpeg processes that encode a unit (they run in the unit's attempt folder)."""
        pids = []
        for pid in _children(worker.pid):
            with contextlib.suppress(OSError):
                if "ffmpeg" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() and ".run-" in _cwd(pid):
                    pids.append(pid)
        return pids

    def close(self) -> None:
        procs = [*self.workers, self.scheduler]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_dask()
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.ensure_workers(2)
        yield c
    finally:
        c.close()


@contextlib.contextmanager
def encoding(src: Path, out: Path, cluster: Cluster):
    """A chunked encode on the cluster, running in the background; killed if the test leaves early."""
    args = [sys.executable, "-X", "faulthandler", "-m", "abrpipe", "encode", str(src), "-o", str(out), "-p", CRF, "--chunk", "2",
            "--scheduler", cluster.address, "--json", "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _long_source(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "src.mp4", size="426x240", rate="30", seconds=16)


def _wait_for_ffmpeg(cluster: Cluster, proc: subprocess.Popen, timeout_s: float = 60) -> tuple[subprocess.Popen, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for worker in cluster.workers:
            pids = cluster.ffmpeg_of(worker)
            if pids:
                return worker, pids[0]
        time.sleep(0.05)
    raise AssertionError("no ffmpeg started on any worker")


def test_chunked_encode_on_the_cluster(cluster: Cluster, tmp_path: Path):
    cluster.ensure_workers(2)
    src = make_clip(tmp_path / "src.mp4", size="320x180", rate="25", seconds=8)
    local = encode(src, tmp_path / "local", CRF, "--chunk", "off")
    proc = abrpipe("encode", str(src), "-o", str(tmp_path / "dask"), "-p", CRF, "--chunk", "2",
                   "--scheduler", cluster.address, "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["encode"]["executor"] == f"dask ({cluster.address})"
    units = report["encode"]["units"]
    assert [u["kind"] for u in units] == ["video"] * 3 + ["audio"]
    assert all(u["worker"].startswith("tcp://127.0.0.1:") for u in units)
    for r in local["renditions"]:
        a, b = boxes(tmp_path / "local" / r["id"]), boxes(tmp_path / "dask" / r["id"])
        assert [s[:3] for s in a] == [s[:3] for s in b], r["id"]
        if r["kind"] == "video":
            assert frame_count(tmp_path / "dask" / r["id"], tmp_path) == frame_count(tmp_path / "local" / r["id"], tmp_path)
    assert not validate_output(str(tmp_path / "dask")).errors


def test_a_batch_shares_the_cluster(cluster: Cluster, tmp_path: Path):
    cluster.ensure_workers(2)
    for name in ("a", "b"):
        make_clip(tmp_path / f"{name}.mp4", size="320x180", rate="30", seconds=5)
    env_proc = subprocess.run(
        [sys.executable, "-m", "abrpipe", "batch", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "-p", CRF,
         "-o", str(tmp_path / "out"), "--chunk", "2", "--json", "-q"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "ABRPIPE_DASK_SCHEDULER": cluster.address},
    )
    assert env_proc.returncode == 0, env_proc.stderr
    report = json.loads(env_proc.stdout)
    assert report["counts"]["succeeded"] == 2
    for name in ("a", "b"):
        out = tmp_path / "out" / name
        assert not validate_output(str(out)).errors
        for r in json.loads((out / "abrpipe.json").read_text())["renditions"]:
            if r["kind"] == "video":
                assert frame_count(out / r["id"], tmp_path) == 5 * 30 // (2 if r["frame_rate"] < 20 else 1)


def test_a_worker_killed_mid_job_leaves_a_complete_valid_ladder(cluster: Cluster, tmp_path: Path):
    cluster.ensure_workers(2)
    src, out = _long_source(tmp_path), tmp_path / "out"
    with encoding(src, out, cluster) as proc:
        worker, _ = _wait_for_ffmpeg(cluster, proc)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    units = json.loads(stdout)["encode"]["units"]
    assert len(units) == 8  # 7 video units (the last one 4 s: it runs to the end) and the audio
    assert max(u["attempts"] for u in units) >= 2  # the killed worker's unit ran again elsewhere
    assert not validate_output(str(out)).errors
    for r in json.loads((out / "abrpipe.json").read_text())["renditions"]:
        if r["kind"] == "video":
            assert frame_count(out / r["id"], tmp_path) == 16 * 30 // (2 if r["frame_rate"] < 20 else 1)
    assert ffmpeg_processes_under(str(src)) == []


def test_sigterm_of_the_client_stops_every_unit_on_the_cluster(cluster: Cluster, tmp_path: Path):
    cluster.ensure_workers(2)
    src, out = _long_source(tmp_path), tmp_path / "out"
    with encoding(src, out, cluster) as proc:
        _wait_for_ffmpeg(cluster, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert ffmpeg_processes_under(str(src)) == []  # no ffmpeg of this job on any worker
    assert not out.exists() and not Path(layout.partial_dir(str(out))).exists()  # nothing published
    assert all(w.poll() is None for w in cluster.workers)  # the workers themselves carry on


def test_a_unit_that_kills_its_workers_fails_the_job_with_one_clear_line(cluster: Cluster, tmp_path: Path):
    cluster.ensure_workers(2)
    src, out = _long_source(tmp_path), tmp_path / "out"
    try:
        with encoding(src, out, cluster) as proc:
            worker, pid = _wait_for_ffmpeg(cluster, proc)
            unit = os.path.basename(_cwd(pid)).split(".run-")[0]
            assert unit.startswith("unit-")
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            # the same unit, rescheduled on the other worker: kill that one too
            other = next(w for w in cluster.workers if w is not worker)
            deadline = time.monotonic() + 60
            while not any(os.path.basename(_cwd(p)).startswith(unit + ".run-") for p in cluster.ffmpeg_of(other)):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            other.send_signal(signal.SIGKILL)
            other.wait()
            try:
                _, stderr = proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)
                _, stderr = proc.communicate(timeout=10)
                raise AssertionError(stderr) from None
    finally:
        cluster.ensure_workers(2)
    assert proc.returncode == 6, stderr  # ExitCode.ENCODE
    errors = [line for line in stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert len(errors) == 1, stderr
    # the unit and its time range (7 video units of 2 s, the last one running to the end)
    if unit == "unit-audio":
        expected = "audio unit (whole title)"
    else:
        index = int(unit.split("-")[1])
        expected = f"unit {index} ({index * 2}-{index * 2 + 2} s)" if index < 6 else f"unit {index} ({index * 2}-end)"
    assert expected in errors[0] and "KilledWorker" in errors[0]
    assert not out.exists()


def test_an_ffmpeg_killed_on_a_worker_fails_the_job_and_the_rerun_resumes(cluster: Cluster, tmp_path: Path):
    """SIGKILL of one unit's ffmpeg on a worker (the OOM killer, an operator): the job fails with one
    line naming the unit, publishes nothing; the rerun reuses every unit that finished and encodes the rest."""
    cluster.ensure_workers(2)
    src, out = _long_source(tmp_path), tmp_path / "out"
    units_root = Path(layout.units_dir(str(out)))
    with encoding(src, out, cluster) as proc:
        deadline = time.monotonic() + 120
        while len(list(units_root.glob("unit-*/unit.json"))) < 2:  # some units finished before the kill
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        _, pid = _wait_for_ffmpeg(cluster, proc)
        unit = os.path.basename(_cwd(pid)).split(".run-")[0]
        os.kill(pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 6, stderr  # ExitCode.ENCODE
    errors = [line for line in stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert len(errors) == 1 and "killed by SIGKILL" in errors[0], stderr
    assert ("audio unit" if unit == "unit-audio" else f"unit {int(unit.split('-')[1])} (") in errors[0], (unit, errors)
    assert not out.exists() and not Path(layout.partial_dir(str(out))).exists()  # nothing published
    assert ffmpeg_processes_under(str(src)) == []  # no ffmpeg of this job left on any worker
    assert all(w.poll() is None for w in cluster.workers)  # the workers themselves carry on
    finished = {p.parent.name for p in units_root.glob("unit-*/unit.json")}
    assert unit not in finished and len(finished) >= 2

    report = encode(src, out, CRF, "--chunk", "2", "--scheduler", cluster.address)
    units = {u["unit"]: u for u in report["encode"]["units"]}
    assert len(units) == 8  # 7 video units and the audio
    assert {name for name, u in units.items() if u["reused"]} == finished
    assert not validate_output(str(out)).errors
    for r in report["renditions"]:
        if r["kind"] == "video":
            assert frame_count(out / r["id"], tmp_path) == 16 * 30 // (2 if r["frame_rate"] < 20 else 1)
