"""publish: move a complete, validated work area into place in one step.

Work happens in `OUT.partial/` beside OUT (same filesystem). Publishing is a rename, so a reader
of OUT sees either the previous complete output or the new one, never a manifest that points at a
missing segment. Replacing an existing OUT uses Linux's atomic exchange (renameat2) when available.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys

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


def _exchange(a: str, b: str) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    if ctypes.get_errno() in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), b)


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
        old = out + f".old-{os.getpid()}"
        os.rename(out, old)
        os.rename(work_dir, out)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot publish the output ({exc.strerror or exc})") from None


def discard(work_dir: str) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(work_dir)
