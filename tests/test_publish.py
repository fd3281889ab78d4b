"""publish: the atomic exchange and the two-rename fallback, each forced and checked directly."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from abrpipe import publish
from abrpipe.errors import OutputError


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def outputs(tmp_path):
    """An existing published OUT (v1) and a complete work area (v2) beside it."""
    out = tmp_path / "out"
    (out / "r1").mkdir(parents=True)
    (out / "master.m3u8").write_text("v1")
    (out / "r1" / "seg_00001.m4s").write_text("v1 segment")
    work = Path(publish.prepare(str(out)))
    (work / "r1").mkdir()
    (work / "master.m3u8").write_text("v2")
    (work / "r1" / "seg_00001.m4s").write_text("v2 segment")
    return out, work


class _FakeLibc:
    """A C library whose renameat2 fails with `err` (or is missing when err is None)."""

    def __init__(self, err: int | None) -> None:
        if err is not None:
            def renameat2(*_args):
                ctypes.set_errno(err)
                return -1

            self.renameat2 = renameat2


def _use_libc(monkeypatch, err: int | None) -> None:
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: _FakeLibc(err))


def test_exchange_replaces_atomically(outputs, monkeypatch):
    out, work = outputs
    calls = []
    real = publish._exchange
    monkeypatch.setattr(publish, "_exchange", lambda a, b: calls.append((a, b)) or real(a, b))
    renames = []
    real_rename = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: renames.append((a, b)) or real_rename(a, b))
    publish.publish(str(work), str(out))
    assert calls and not renames, "tmpfs/ext4 support RENAME_EXCHANGE: no rename fallback expected"
    assert _tree(out) == {"master.m3u8": "v2", "r1/seg_00001.m4s": "v2 segment"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EINVAL, None], ids=["ENOSYS", "EINVAL", "no-renameat2"])
def test_fallback_when_exchange_unsupported(outputs, monkeypatch, err):
    out, work = outputs
    _use_libc(monkeypatch, err)
    assert publish._exchange(str(work), str(out)) is False
    publish.publish(str(work), str(out))
    assert _tree(out) == {"master.m3u8": "v2", "r1/seg_00001.m4s": "v2 segment"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"], "no OUT.old-* or .partial left behind"


def test_fallback_rolls_back_when_second_rename_fails(outputs, monkeypatch):
    out, work = outputs
    _use_libc(monkeypatch, errno.ENOSYS)
    real_rename = os.rename

    def rename(src, dst):
        if os.fspath(src) == str(work):
            raise OSError(errno.EIO, "Input/output error", dst)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OutputError, match="cannot publish the output"):
        publish.publish(str(work), str(out))
    assert _tree(out) == {"master.m3u8": "v1", "r1/seg_00001.m4s": "v1 segment"}, "the previous output is restored"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out", "out.partial"]


def test_fallback_names_the_previous_output_when_rollback_fails(outputs, monkeypatch):
    out, work = outputs
    _use_libc(monkeypatch, errno.ENOSYS)
    real_rename = os.rename

    def rename(src, dst):
        if os.fspath(src) == str(work) or os.fspath(dst) == str(out):
            raise OSError(errno.EIO, "Input/output error", dst)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OutputError, match=r"previous output could not be restored and is in .*out\.old-"):
        publish.publish(str(work), str(out))


@pytest.mark.parametrize("err", [errno.EPERM, errno.EACCES])
def test_exchange_refused_is_an_error_not_a_fallback(outputs, monkeypatch, err):
    """EPERM (an immutable directory, a sticky /tmp) means no, not "unsupported": nothing is renamed."""
    out, work = outputs
    _use_libc(monkeypatch, err)
    renames = []
    real_rename = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: renames.append((a, b)) or real_rename(a, b))
    with pytest.raises(OutputError, match="cannot publish the output"):
        publish.publish(str(work), str(out))
    assert not renames
    assert _tree(out) == {"master.m3u8": "v1", "r1/seg_00001.m4s": "v1 segment"}
