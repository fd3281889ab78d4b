"""Locate the external programs (ffmpeg, ffprobe) and ask them what they can do."""

from __future__ import annotations

import functools
import hashlib
import re

from abrpipe import runner
from abrpipe.errors import DependencyError, EncodeError

MIN_FFMPEG = (5, 1)
INSTALL_HINT = runner.INSTALL_HINT


def _locate(name: str, env_var: str) -> str:
    return runner.executable(name)


@functools.cache
def ffmpeg_path() -> str:
    path = _locate("ffmpeg", "ABRPIPE_FFMPEG")
    _check_version(path)
    return path


@functools.cache
def ffprobe_path() -> str:
    path = _locate("ffprobe", "ABRPIPE_FFPROBE")
    _check_version(path)
    return path


def _check_version(path: str) -> None:
    try:
        banner = runner.capture([path, "-hide_banner", "-version"], timeout_s=30)
    except (OSError, EncodeError) as exc:
        raise DependencyError(f"{path} cannot be run: {exc}", hint=INSTALL_HINT) from exc
    m = re.search(r"version n?(\d+)\.(\d+)", banner)
    # Builds from git ("version N-12345-g...") are newer than any release: accept them.
    if m and (int(m.group(1)), int(m.group(2))) < MIN_FFMPEG:
        raise DependencyError(
            f"{path} is FFmpeg {m.group(1)}.{m.group(2)}; abrpipe needs >= 5.1", hint=INSTALL_HINT
        )


def _listing(flag: str, column: int, keep) -> frozenset[str]:
    """Names from one of ffmpeg's listings (`-encoders`, `-filters`)."""
    out = runner.capture([ffmpeg_path(), "-hide_banner", flag], timeout_s=30)
    return frozenset(parts[column] for parts in (line.split() for line in out.splitlines()) if keep(parts))


@functools.cache
def ffmpeg_encoders() -> frozenset[str]:
    """Names of the encoders this ffmpeg build has (`ffmpeg -encoders`)."""
    # Lines look like " V....D libx264   libx264 H.264 ..."; the legend above them has "=" in it.
    return _listing("-encoders", 1, lambda p: len(p) >= 2 and len(p[0]) == 6 and "=" not in p[0] + p[1])


@functools.cache
def ffmpeg_filters() -> frozenset[str]:
    """Names of the filters this ffmpeg build has (`ffmpeg -filters`): " TSC scale   V->V  ..."."""
    return _listing("-filters", 1, lambda p: len(p) >= 3 and "->" in p[2])


@functools.cache
def ffmpeg_build() -> str:
    """Identifies this ffmpeg build: its version line and a digest of its configuration and
    library versions. Work units encoded by different builds must not be stitched together."""
    banner = runner.capture([ffmpeg_path(), "-hide_banner", "-version"], timeout_s=30)
    lines = [line.strip() for line in banner.splitlines() if line.strip()]
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    return f"{lines[0] if lines else 'ffmpeg'} [{digest}]"
