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


# CENC key rotation: a second key period (from 2 s on) with its own video and audio keys.
VIDEO2_KID = "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
VIDEO2_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
AUDIO2_KID = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
AUDIO2_KEY = "3c4fcf098815f7aba6d2ae2816157e2b"
# (period id, {track: (kid, key)}), in order; the boundary is at 2 s.
ROTATION = [("p1", {"video": (KID, KEY), "audio": (AUDIO_KID, AUDIO_KEY)}),
            ("p2", {"video": (VIDEO2_KID, VIDEO2_KEY), "audio": (AUDIO2_KID, AUDIO2_KEY)})]
ROTATION_KEYS = {kid: key for _, keys in ROTATION for kid, key in keys.values()}
WIDEVINE_ID = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"


def widevine_pssh(kid_hex: str) -> bytes:
    """A Widevine pssh box (v0) whose data names the KID, as a DRM provider's would."""
    from abrpipe.protect.systems import make_pssh

    return make_pssh(WIDEVINE_ID, [], b"\x12\x10" + bytes.fromhex(kid_hex), version=0)


def rotation_cpix(path: Path, *, by_index: bool = False) -> Path:
    """A CPIX document with two key periods (0-2 s, 2-4 s) x (video, audio) keys, a usage rule per
    track and period (KeyPeriodFilter), and a Widevine PSSH per key."""
    import base64
    import uuid

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    keys, rules, systems, periods = [], [], [], []
    for n, (pid, tracks) in enumerate(ROTATION):
        when = f'index="{n + 7}"' if by_index else f'start="2026-01-01T00:00:0{2 * n}Z" end="2026-01-01T00:00:0{2 * n + 2}Z"'
        periods.append(f'<cpix:ContentKeyPeriod id="{pid}" {when}/>')
        for track, (kid, key) in tracks.items():
            u = uuid.UUID(kid)
            keys.append(f'<cpix:ContentKey kid="{u}"><cpix:Data><pskc:Secret><pskc:PlainValue>{b64(bytes.fromhex(key))}'
                        "</pskc:PlainValue></pskc:Secret></cpix:Data></cpix:ContentKey>")
            flt = "<cpix:VideoFilter/>" if track == "video" else "<cpix:AudioFilter/>"
            rules.append(f'<cpix:ContentKeyUsageRule kid="{u}" intendedTrackType="{track.upper()}">'
                         f'<cpix:KeyPeriodFilter periodId="{pid}"/>{flt}</cpix:ContentKeyUsageRule>')
            systems.append(f'<cpix:DRMSystem kid="{u}" systemId="{WIDEVINE_ID}"><cpix:PSSH>{b64(widevine_pssh(kid))}</cpix:PSSH></cpix:DRMSystem>')
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" contentId="rotation">'
        f"<cpix:ContentKeyList>{''.join(keys)}</cpix:ContentKeyList>"
        f"<cpix:DRMSystemList>{''.join(systems)}</cpix:DRMSystemList>"
        f"<cpix:ContentKeyPeriodList>{''.join(periods)}</cpix:ContentKeyPeriodList>"
        f"<cpix:ContentKeyUsageRuleList>{''.join(rules)}</cpix:ContentKeyUsageRuleList>"
        "</cpix:CPIX>"
    )
    path.chmod(0o600)
    return path
