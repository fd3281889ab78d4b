"""Shared by the protection tests: a tiny clip, test keys, and protected encodes made once."""

from __future__ import annotations

from pathlib import Path

from media import ROOT, make_clip

PROFILE = str(ROOT / "tests" / "data" / "protect.toml")
KID = "00112233445566778899aabbccddeeff"
KEY = "0123456789abcdef0123456789abcdef"
AUDIO_KID = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
AUDIO_KEY = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
WRONG_KEY = "ffffffffffffffffffffffffffffffff"


def tiny_clip(directory: Path, seconds: float = 4) -> Path:
    """320x180 @ 25 fps with a tone: 4 one-second segments per rendition."""
    return make_clip(directory / "protect-src.mp4", size="320x180", rate="25", seconds=seconds)


def encode(clip: Path, out: Path, *args: str) -> Path:
    """`abrpipe encode` in this process (the CLI path: options, key file handling, publish)."""
    from click.testing import CliRunner

    from abrpipe.cli import cli

    result = CliRunner().invoke(cli, ["encode", str(clip), "-p", PROFILE, "-o", str(out), "-q", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out
