"""publish: move a complete, validated work area into place in one step.

Work happens in `OUT.partial/` beside OUT (same filesystem). Publishing is a rename, so a reader
of OUT sees either the previous complete output or the new one, never a manifest that points at a
missing segment.

Replacing an existing OUT, the guarantee depends on the filesystem:

- Linux with renameat2(RENAME_EXCHANGE) (ext4, xfs, btrfs, tmpfs, f2fs, ... since kernel 3.15):
  one atomic exchange. A reader sees the old OUT or the new one, at every instant.
- Elsewhere (other systems; Linux filesystems that answer EINVAL, such as NFS, most FUSE and
  overlayfs on older kernels; kernels without the call, ENOSYS): two renames, OUT -> OUT.old-PID
  then OUT.partial -> OUT. A reader sees the old OUT, then for an instant no OUT, then the new one:
  never a mix of both. If the second rename fails, the first is undone, so the previous output
  stays published.

Any other failure of the exchange (EPERM: an immutable or sticky-protected directory, EACCES,
EXDEV...) is an error, never a reason to fall back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any, Protocol

from abrpipe import layout
from abrpipe.errors import OutputError
from abrpipe.layout import PARTIAL_SUFFIX  # noqa: F401  (re-exported)

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def partial_dir(out_dir: str) -> str:
    return layout.partial_dir(out_dir)


def check_writable(out_dir: str) -> None:
    """Fail before any encoding if OUT cannot be created or replaced."""
    out = os.path.abspath(out_dir)
    parent = os.path.dirname(out) or "."
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise OutputError(f"{out_dir}: cannot be created ({probe} is not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{out_dir}: cannot write in {probe} (permission denied)", hint="choose another -o directory")
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"{out_dir}: exists and is not a directory", hint="remove it or choose another -o")


def prepare(out_dir: str) -> str:
    """Create OUT.partial fresh and return its path."""
    check_writable(out_dir)
    work = partial_dir(out_dir)
    try:
        if os.path.exists(work):
            shutil.rmtree(work)
        os.makedirs(work)
    except OSError as exc:
        raise OutputError(f"{work}: cannot be created ({exc.strerror})") from None
    return work


# Errors that mean "this system or filesystem cannot exchange", not "this exchange is refused".
_EXCHANGE_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths. False when the system or filesystem cannot; OSError otherwise."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # a C library without renameat2 (glibc < 2.28)
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in _EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), b)


def _replace_by_renames(work_dir: str, out: str) -> None:
    """OUT -> OUT.old-PID, then the work area -> OUT; the first rename is undone if the second fails."""
    old = out + f".old-{os.getpid()}"
    if os.path.lexists(old):
        shutil.rmtree(old)
    os.rename(out, old)
    try:
        os.rename(work_dir, out)
    except OSError as exc:
        try:
            os.rename(old, out)
        except OSError as undo:
            raise OSError(
                exc.errno, f"{exc.strerror or exc}; the previous output could not be restored and is in {old} "
                f"({undo.strerror or undo})"
            ) from exc
        raise
    shutil.rmtree(old, ignore_errors=True)


def publish(work_dir: str, out_dir: str) -> None:
    out = os.path.abspath(out_dir)
    try:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if not os.path.exists(out):
            os.rename(work_dir, out)
            return
        if _exchange(work_dir, out):
            shutil.rmtree(work_dir, ignore_errors=True)  # now holds the previous output
            return
        _replace_by_renames(work_dir, out)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot publish the output ({exc.strerror or exc})") from None


def discard(work_dir: str) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(work_dir)


class PublishTarget(Protocol):
    """Where a validated work area goes: a local directory or an object store (storage.ObjectTarget)."""

    display: str  # how messages name the destination

    @property
    def work_dir(self) -> str: ...  # where the work area is made

    def check(self) -> None: ...  # fail before any encoding when the destination cannot be written
    def prepare(self) -> str: ...  # a fresh, empty work area; returns its path
    def publish(self, work_dir: str, say: Callable[[str], None] | None = None) -> dict[str, Any]: ...
    def discard(self, work_dir: str) -> None: ...
    def published_paths(self) -> tuple[str, ...]: ...  # the entry points, as shown to people


class LocalTarget:
    """A local directory: work in OUT.partial/ beside it, then one rename (see publish())."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.display = os.path.abspath(out_dir)
        self.work_dir = partial_dir(out_dir)

    def check(self) -> None:
        check_writable(self.out_dir)

    def prepare(self) -> str:
        return prepare(self.out_dir)

    def publish(self, work_dir: str, say: Callable[[str], None] | None = None) -> dict[str, Any]:
        publish(work_dir, self.out_dir)
        return {"path": self.display}

    def discard(self, work_dir: str) -> None:
        discard(work_dir)

    def published_paths(self) -> tuple[str, ...]:
        return tuple(os.path.join(self.display, n) for n in ("master-ts.m3u8", "master.m3u8", "manifest.mpd"))


def target_for(output: str, *, endpoint: str | None = None) -> PublishTarget:
    """Where a job publishes: a LocalTarget, or an object-store target for s3:// URLs. A URL abrpipe
    cannot write (ftp://, s3:/typo...) is refused here, before anything runs, never taken as a path."""
    from abrpipe import storage

    url = storage.parse_output(output)
    if url is None:
        return LocalTarget(output)
    return storage.ObjectTarget(url, endpoint=endpoint, display=output)
