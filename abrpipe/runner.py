"""The one place that starts processes, and the owner of the programs it starts.

It decides which ffmpeg/ffprobe executables run and with which global flags (`ffmpeg_argv`), so
building a command never starts a process: a command is a list of strings until `run` is called.

It runs ffmpeg/ffprobe without a shell, reads `-progress pipe:1` into Progress callbacks, keeps the
tail of stderr (and the whole of it in a log file when asked), and never leaves a child behind:
Ctrl-C, SIGTERM or any exception terminates the child (then kills it), and on Linux the child is
also told to die with its parent should abrpipe itself be killed.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from abrpipe.errors import DependencyError, EncodeError, Interrupted

INSTALL_HINT = (
    "install FFmpeg >= 5.1 (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg) "
    "or point ABRPIPE_FFMPEG / ABRPIPE_FFPROBE at the binaries"
)
_ENV_VARS = {"ffmpeg": "ABRPIPE_FFMPEG", "ffprobe": "ABRPIPE_FFPROBE"}

# Flags every encoding ffmpeg process gets, whatever it does.
FFMPEG_GLOBAL_ARGS = (
    "-hide_banner",
    "-nostdin",  # never read the terminal: ffmpeg runs unattended
    "-v", "error",
    "-progress", "pipe:1",  # key=value progress blocks on stdout, read by run()
    "-nostats",
    "-y",  # outputs are always fresh paths of our own work area
)


def executable(name: str) -> str:
    """Path of `ffmpeg` or `ffprobe`: $ABRPIPE_FFMPEG / $ABRPIPE_FFPROBE, else PATH. Starts nothing."""
    env_var = _ENV_VARS[name]
    configured = os.environ.get(env_var)
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise DependencyError(f"{env_var}={configured} is not an executable file", hint=INSTALL_HINT)
    found = shutil.which(name)
    if not found:
        raise DependencyError(f"{name} was not found on PATH", hint=INSTALL_HINT)
    return found


def ffmpeg_argv(args: list[str]) -> list[str]:
    """The full argv of an encoding ffmpeg process: executable, global flags, then `args`."""
    return [executable("ffmpeg"), *FFMPEG_GLOBAL_ARGS, *args]

_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()


@dataclass(frozen=True)
class Progress:
    out_time_s: float
    duration_s: float | None
    speed: float | None  # x realtime
    frame: int | None
    done: bool = False

    @property
    def fraction(self) -> float | None:
        if not self.duration_s:
            return None
        return 1.0 if self.done else max(0.0, min(1.0, self.out_time_s / self.duration_s))


ProgressCallback = Callable[[Progress], None]


def _load_prctl():
    """Resolved once, in the parent: the child (forked from a threaded parent) must not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask the kernel to SIGKILL the child if abrpipe dies first (even by SIGKILL)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Terminate, wait, kill: the child never outlives us."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


def stop_all() -> None:
    """Stop every child still running (called on SIGTERM and at exit)."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        _stop(proc, grace_s=2.0)


# What an input may make ffmpeg/ffprobe open, by the kind of input. A local file (and whatever a
# playlist in it names, with --allow-references) may only reach local files; an http(s) URL only
# http(s) (tcp/tls carry it): a remote playlist cannot name a local file, nor a local one a URL.
LOCAL_PROTOCOLS = "file,pipe"
HTTP_PROTOCOLS = "http,https,tcp,tls"
_HTTP_URL = re.compile(r"^https?://", re.IGNORECASE)


# abrpipe's own reads of its CMAF segments as one file (concat: / concatf: of local files).
_LOCAL_CONCAT = re.compile(r"^(concat|concatf):", re.IGNORECASE)


def input_protocols(url: str) -> str:
    """The -protocol_whitelist for one ffmpeg/ffprobe input."""
    if _HTTP_URL.match(url):
        return HTTP_PROTOCOLS
    concat = _LOCAL_CONCAT.match(url)
    # A concatenation may only join local files: its own protocol, then file.
    return f"{concat.group(1).lower()},{LOCAL_PROTOCOLS}" if concat else LOCAL_PROTOCOLS


def _tool(argv: list[str]) -> str | None:
    """'ffmpeg', 'ffprobe' or None for other programs."""
    name = os.path.basename(argv[0]).lower() if argv else ""
    if name.startswith("ffprobe") or argv[0] == os.environ.get("ABRPIPE_FFPROBE"):
        return "ffprobe"
    if name.startswith("ffmpeg") or argv[0] == os.environ.get("ABRPIPE_FFMPEG"):
        return "ffmpeg"
    return None


def restrict_inputs(argv: list[str]) -> list[str]:
    """`argv` with the input restrictions every ffmpeg/ffprobe abrpipe starts must carry.

    Each input gets `-protocol_whitelist` for its kind (`input_protocols`): added where missing, and
    replacing whatever value a caller put there, so no command (encode, probe, per-title trials,
    scoring) can open more than its input allows. Other programs' argv is returned unchanged.
    """
    tool = _tool(argv)
    out = list(argv)
    if tool == "ffmpeg":
        block = 1  # where the options of the next input start
        i = 1
        while i < len(out) - 1:
            if out[i] == "-i":
                wanted = input_protocols(out[i + 1])
                given = [k for k in range(block, i) if out[k] == "-protocol_whitelist"]
                for k in given:
                    out[k + 1] = wanted
                if not given:
                    out[i:i] = ["-protocol_whitelist", wanted]
                    i += 2
                i += 2
                block = i
                continue
            i += 1
    elif tool == "ffprobe":
        if "-i" in out[1:-1]:
            url = out[out.index("-i", 1) + 1]
        elif len(out) > 2 and not out[-1].startswith("-") and not out[-2].startswith("-"):
            url = out[-1]
        else:
            return out  # no input (-version, -buildconf)
        wanted = input_protocols(url)
        given = [k for k in range(1, len(out) - 1) if out[k] == "-protocol_whitelist"]
        for k in given:
            out[k + 1] = wanted
        if not given:
            out[1:1] = ["-protocol_whitelist", wanted]
    return out


@contextlib.contextmanager
def _spawn(argv: list[str], **kwargs) -> Iterator[subprocess.Popen]:
    argv = restrict_inputs(argv)
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if _prctl is not None else None,
        **kwargs,
    )
    with _live_lock:
        _live.add(proc)
    try:
        yield proc
    except KeyboardInterrupt as exc:
        _stop(proc)
        raise Interrupted("interrupted; the child process was stopped") from exc
    except BaseException:
        _stop(proc)
        raise
    finally:
        with _live_lock:
            _live.discard(proc)


def capture(argv: list[str], *, timeout_s: float = 120.0) -> str:
    """Run a short command (ffprobe) and return stdout; raise EncodeError with stderr on failure."""
    with _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            _stop(proc)
            raise EncodeError(f"{os.path.basename(argv[0])} timed out after {timeout_s:.0f} s", argv=argv) from exc
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-5:])
        raise EncodeError(
            f"{os.path.basename(argv[0])} {_exit_description(proc.returncode)}",
            argv=argv,
            returncode=proc.returncode,
            stderr_tail=tail,
        )
    return out


def capture_result(
    argv: list[str], *, timeout_s: float | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and return its exit status, stdout and stderr.

    Unlike `capture`, a non-zero exit is not an error here (the caller reads `returncode`), and the
    whole stderr is returned (metric filters log their summaries there). On timeout the child is
    stopped and `subprocess.TimeoutExpired` propagates.
    """
    with _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", cwd=cwd) as proc:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run(
    argv: list[str],
    *,
    duration_s: float | None = None,
    on_progress: ProgressCallback | None = None,
    log_path: str | None = None,
    tail_lines: int = 20,
    cwd: str | None = None,
) -> float:
    """Run ffmpeg to completion; return the CPU seconds (user + system) it used.
    `argv` must carry `-progress pipe:1` for progress callbacks."""
    cpu_s = 0.0
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    log = open(log_path, "w", encoding="utf-8", errors="replace") if log_path else None  # noqa: SIM115
    try:
        with _spawn(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1, cwd=cwd
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            reader = threading.Thread(target=_drain, args=(proc.stderr, tail, log), daemon=True)
            reader.start()
            _read_progress(proc.stdout, duration_s, on_progress)
            cpu_s = _wait_with_usage(proc)
            reader.join(timeout=5)
    finally:
        if log:
            log.close()
    if proc.returncode != 0:
        if proc.returncode in (-signal.SIGINT, 255) and _interrupted_recently():
            raise Interrupted("interrupted; ffmpeg was stopped")
        raise EncodeError(
            f"ffmpeg {_exit_description(proc.returncode)}",
            argv=argv,
            returncode=proc.returncode,
            stderr_tail="\n".join(tail),
            log_path=log_path,
        )
    return cpu_s


def _wait_with_usage(proc: subprocess.Popen) -> float:
    """Wait for the child and return its CPU time (0.0 when another thread reaped it first)."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        proc.wait()
        return 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def _drain(stream, tail: collections.deque[str], log) -> None:
    for line in stream:
        tail.append(line.rstrip("\n"))
        if log:
            try:
                log.write(line)
            except OSError:  # a full disk must not stop the draining: ffmpeg would block on stderr
                log = None


def _read_progress(stream, duration_s: float | None, on_progress: ProgressCallback | None) -> None:
    block: dict[str, str] = {}
    for line in stream:
        key, _, value = line.strip().partition("=")
        if key != "progress":
            block[key] = value
            continue
        if on_progress:
            on_progress(_parse_progress(block, duration_s, done=value == "end"))
        block = {}


def _parse_progress(block: dict[str, str], duration_s: float | None, *, done: bool) -> Progress:
    def number(key: str) -> float | None:
        try:
            return float(block.get(key, "").rstrip("x"))
        except ValueError:
            return None

    out_us = number("out_time_us") or number("out_time_ms") or 0.0
    frame = number("frame")
    return Progress(
        out_time_s=max(0.0, out_us / 1e6),
        duration_s=duration_s,
        speed=number("speed"),
        frame=int(frame) if frame is not None else None,
        done=done,
    )


_last_interrupt = 0.0


def note_interrupt() -> None:
    """The CLI's signal handler records when the user asked us to stop."""
    global _last_interrupt
    _last_interrupt = time.monotonic()


def _exit_description(returncode: int) -> str:
    """'exited with code 1', or 'was killed by SIGKILL' for a child that a signal ended (the OOM killer,
    an operator), which says that the input was probably not at fault."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def _interrupted_recently() -> bool:
    return time.monotonic() - _last_interrupt < 30
