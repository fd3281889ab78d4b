"""Put the key tags of a protected rendition into its media playlist, and the session keys into the
multivariant playlist (hls.py calls these only for protected titles)."""

from __future__ import annotations

from dataclasses import replace

import m3u8
from m3u8.model import InitializationSection

from abrpipe.protect.aes128 import SCHEME as AES128
from abrpipe.protect.model import DrmSignal, KeyPeriod, Protection
from abrpipe.protect.signalling import KeyTags, aes128_key, hls_key_lines
from abrpipe.protect.systems import CLEARKEY


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
    if p.rotates:
        # CENC key rotation: each period's key lines (with KEYID) before its first segment.
        by_uri: dict[str, KeyTags] = {}
        for period in p.periods:
            tags = KeyTags(hls_key_lines(_period_protection(p, period), keyid=period.kid))
            by_uri.update(dict.fromkeys(period.segment_uris, tags))
        for seg in pl.segments:
            seg.key = by_uri[seg.uri]
        return
    tags = KeyTags(hls_key_lines(p))
    for seg in pl.segments:
        seg.key = tags


def _period_protection(p: Protection, period: KeyPeriod) -> Protection:
    return replace(p, kid=period.kid, systems=(DrmSignal(CLEARKEY), *period.systems), key_uri=period.uri or None)


def session_keys(renditions) -> list:
    """EXT-X-SESSION-KEY for each DRM system key (lets players start license requests early)."""
    lines: dict[str, object] = {}
    for r in renditions:
        if r.protection is not None and r.protection.scheme != AES128:
            variants = [_period_protection(r.protection, period) for period in r.protection.periods] if r.protection.rotates else [r.protection]
            for p in variants:
                for key in hls_key_lines(p, session=True):
                    lines.setdefault(str(key), key)
    return list(lines.values())
