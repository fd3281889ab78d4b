"""Each protection rule of `abrpipe validate` fires, alone, on an output broken in that one way."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from media import requires_ffmpeg
from protect_media import AUDIO_KEY, AUDIO_KID, KID, encode, tiny_clip

from abrpipe.validate import RULES, validate_output

pytestmark = requires_ffmpeg
PROTECTION_RULES = {r for r in RULES if r.startswith("PROT-")}
KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def protected(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("validate-protect")
    return encode(tiny_clip(root), root / "out", "--encrypt", "cbcs", "--key", f"{KID}:{KEY}", "--key-uri", "/k/{kid}")


def fired(out: Path, **kwargs) -> set[str]:
    return validate_output(str(out), **kwargs).rules() & PROTECTION_RULES


def test_a_protected_output_is_clean(protected):
    assert fired(protected) == set()


def _patch(path: Path, old: bytes, new: bytes, at: int = 0) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(old)
    data[i + at : i + at + len(new)] = new
    path.write_bytes(bytes(data))


def _video(out: Path) -> Path:
    return next(p for p in sorted(out.iterdir()) if p.name.startswith("180p"))


def _tenc_pattern_off(out: Path) -> None:
    _patch(_video(out) / "init.mp4", b"tenc", b"\x00", at=4 + 5)  # the crypt:skip byte


def _drop_senc(out: Path) -> None:
    _patch(_video(out) / "seg_00002.m4s", b"senc", b"free")


def _bad_tenc(out: Path) -> None:
    _patch(_video(out) / "init.mp4", b"tenc", b"free")


def _mpd_scheme(out: Path) -> None:
    mpd = out / "manifest.mpd"
    mpd.write_text(mpd.read_text().replace('value="cbcs"', 'value="cenc"'))


def _mpd_kid(out: Path) -> None:
    mpd = out / "manifest.mpd"
    mpd.write_text(mpd.read_text().replace("00112233-4455-6677-8899-aabbccddeeff", "ffeeddcc-4455-6677-8899-aabbccddeeff"))


def _no_hls_key(out: Path) -> None:
    playlist = _video(out) / "playlist.m3u8"
    playlist.write_text("".join(line for line in playlist.read_text().splitlines(True) if not line.startswith("#EXT-X-KEY")))


@pytest.mark.parametrize(
    ("rule", "breakage"),
    [
        ("PROT-TENC", _bad_tenc),
        ("PROT-IV-PATTERN", _tenc_pattern_off),
        ("PROT-SENC", _drop_senc),
        ("PROT-SCHEME", _mpd_scheme),
        ("PROT-KID", _mpd_kid),
        ("PROT-SIGNALLING", _no_hls_key),
    ],
)
def test_rule_fires(rule, breakage, protected, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(protected, out)
    breakage(out)
    assert fired(out) == {rule}


def test_half_protected_is_an_error_unless_allowed(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text(f'AUDIO = "{AUDIO_KID}:{AUDIO_KEY}"\n')
    keys.chmod(0o600)
    out = encode(tiny_clip(tmp_path), tmp_path / "out", "--encrypt", "cenc", "--keys", str(keys), "--key-uri", "/k/{kid}",
                 "--allow-clear")
    assert fired(out, allow_clear=True) == set()
    assert fired(out) == {"PROT-HALF"}
