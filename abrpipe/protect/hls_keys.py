"""Put the key tags of a protected rendition into its media playlist, and the session keys into the
multivariant playlist (hls.py calls these only for protected titles)."""

from __future__ import annotations

import m3u8
from m3u8.model import InitializationSection

from abrpipe.protect.aes128 import SCHEME as AES128
from abrpipe.protect.model import Protection
from abrpipe.protect.signalling import KeyTags, aes128_key, hls_key_lines


def add_keys(pl: m3u8.M3U8, p: Protection, init: dict) -> None:
    if p.scheme == AES128:
        # The init segment stays in the clear: its EXT-X-MAP comes before the first EXT-X-KEY
        # (a key tag applies to the EXT-X-MAP after it, RFC 8216 4.3.2.4).
        map_line = str(InitializationSection(None, init["uri"]))
        for period in p.periods:
            for n, iv in enumerate(period.ivs):
                index = period.first_segment + n
                seg = pl.segments[index]
                seg.init_section = None
                seg.key = KeyTags([aes128_key(period.uri, iv)], before=map_line if index == 0 else "")
        return
    tags = KeyTags(hls_key_lines(p))
    for seg in pl.segments:
        seg.key = tags


def session_keys(renditions) -> list:
    """EXT-X-SESSION-KEY for each DRM system key (lets players start license requests early)."""
    lines: dict[str, object] = {}
    for r in renditions:
        if r.protection is not None and r.protection.scheme != AES128:
            for key in hls_key_lines(r.protection, session=True):
                lines.setdefault(str(key), key)
    return list(lines.values())
