"""Protection signalling written from the model: DASH ContentProtection elements and HLS
EXT-X-KEY / EXT-X-SESSION-KEY tags, one per DRM system, for the scheme the init segments carry."""

from __future__ import annotations

import base64
import functools

import m3u8
from mpegdash.nodes import PSSH, ContentProtection
from mpegdash.utils import write_attr_value, write_child_node, write_node_value

from abrpipe.protect.model import DrmSignal, Protection
from abrpipe.protect.systems import (
    CLEARKEY,
    FAIRPLAY,
    HLS_KEYFORMAT,
    IDENTITY,
    MP4PROTECTION,
    PLAYREADY,
    W3C_CLEARKEY,
    WIDEVINE,
)

MSPR_NS = "urn:microsoft:playready"
CLEARKEY_VALUE = "ClearKey1.0"


class _Pro:
    def __init__(self, value: str) -> None:
        self.value = value

    def write(self, xmlnode) -> None:
        write_node_value(xmlnode, self.value)


class _ContentProtection(ContentProtection):
    """mpegdash's element plus PlayReady's mspr:pro (with its namespace declared on the element)."""

    pro: _Pro | None = None

    def write(self, xmlnode) -> None:
        super().write(xmlnode)
        if self.pro is not None:
            write_attr_value(xmlnode, "xmlns:mspr", MSPR_NS)
            write_child_node(xmlnode, "mspr:pro", self.pro)


def dash_content_protections(p: Protection) -> list[ContentProtection]:
    """mp4protection (scheme + cenc:default_KID) first, then one element per DRM system."""
    first = _ContentProtection()
    first.scheme_id_uri = MP4PROTECTION
    first.value = p.scheme
    first.cenc_default_kid = p.kid_uuid
    out: list[ContentProtection] = [first]
    # Key rotation: ClearKey's element carries the W3C common pssh that lists every KID (what the
    # fragments' seig groups name). The DRM systems' elements keep one cenc:pssh each, the first
    # period's (dash.js 4 fails on a ContentProtection with several); the inits hold every period's boxes.
    later: dict[str, list[str]] = {}
    if p.rotates and p.common_pssh_b64:
        later[CLEARKEY] = [p.common_pssh_b64]
    for s in p.systems:
        cp = _ContentProtection()
        cp.scheme_id_uri = f"urn:uuid:{s.system_id}"
        if s.system_id == CLEARKEY:
            cp.value = CLEARKEY_VALUE
        elif s.system_id == PLAYREADY:
            cp.value = "MSPR 2.0"
        elif s.system_id == WIDEVINE:
            cp.value = "Widevine"
        elif s.system_id == FAIRPLAY:
            continue  # FairPlay is an HLS system: no DASH signalling
        cp.cenc_default_kid = p.kid_uuid
        boxes = ([s.pssh_b64] if s.pssh_b64 else []) + later.get(s.system_id, [])
        if boxes:
            cp.pssh = []
            for b64_box in boxes:
                box = PSSH()
                box.pssh = b64_box
                cp.pssh.append(box)
        if s.pro_b64:
            cp.pro = _Pro(s.pro_b64)
        out.append(cp)
    return out


class KeyTags:
    """Several EXT-X-KEY lines before one segment (m3u8 writes one `key` object per segment)."""

    def __init__(self, keys: list, before: str = "") -> None:
        self.keys = keys
        self.before = before  # e.g. the EXT-X-MAP line that must precede the keys (AES-128)

    def __str__(self) -> str:
        lines = ([self.before] if self.before else []) + [str(k) for k in self.keys]
        return "\n".join(lines)

    def __eq__(self, other) -> bool:
        return isinstance(other, KeyTags) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


class SessionKey(m3u8.Key):
    tag = "#EXT-X-SESSION-KEY"


class KeyWithId(m3u8.Key):
    """EXT-X-KEY with KEYID (the key's KID, RFC 8216bis): with key rotation, each period's lines name their key."""

    def __init__(self, *args, keyid: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.keyid = keyid

    def __str__(self) -> str:
        return super().__str__() + f",KEYID=0x{self.keyid}"


def _method(scheme: str) -> str:
    # cbcs: SAMPLE-AES (Apple's name for cbcs in fMP4); cenc: SAMPLE-AES-CTR.
    return "SAMPLE-AES" if scheme == "cbcs" else "SAMPLE-AES-CTR"


def _data_uri(s: DrmSignal, system_id: str) -> str | None:
    if system_id == PLAYREADY and s.pro_b64:
        return f"data:text/plain;charset=UTF-16;base64,{s.pro_b64}"
    if s.pssh_b64:
        return f"data:text/plain;base64,{s.pssh_b64}"
    return None


def hls_key_lines(p: Protection, *, session: bool = False, keyid: str | None = None) -> list:
    """EXT-X-KEY (or EXT-X-SESSION-KEY) tags of a CENC-protected rendition, one per system (with
    KEYID=keyid on the EXT-X-KEY lines abrpipe writes, when given)."""
    cls: type | functools.partial = SessionKey if session else functools.partial(KeyWithId, keyid=keyid) if keyid else m3u8.Key
    method = _method(p.scheme)
    keys: list = []
    for s in p.systems:
        if s.hls_master_tag if session else s.hls_media_tag:
            continue  # the provider's own line is written instead (provider_tags)
        if session and s.hls_media_tag and s.hls_media_tag.startswith("#EXT-X-KEY:"):
            # The provider gave only the media playlist's line: the session key says the same.
            keys.append("#EXT-X-SESSION-KEY:" + s.hls_media_tag.removeprefix("#EXT-X-KEY:"))
            continue
        if s.system_id == CLEARKEY:
            if not session:
                # EME ClearKey (hls.js): the KID; the player gets the key from its license server.
                kid_uri = "data:text/plain;base64," + b64(bytes.fromhex(p.kid))
                keys.append(cls(method, None, uri=kid_uri, keyformat=W3C_CLEARKEY, keyformatversions="1"))
            if p.key_uri and not session:
                # ClearKey for Shaka Player: the key itself at URI (see docs/PROTECTION.md).
                keys.append(cls(method, None, uri=p.key_uri, keyformat=IDENTITY, keyformatversions="1"))
            continue
        keyformat = HLS_KEYFORMAT.get(s.system_id)
        if keyformat is None:
            continue
        if s.system_id == FAIRPLAY:
            if p.scheme != "cbcs":
                continue  # FairPlay decrypts cbcs only
            uri: str | None = s.hls_uri or f"skd://{p.kid}"
        else:
            uri = _data_uri(s, s.system_id)
        if uri is None:
            continue
        keys.append(cls(method, None, uri=uri, keyformat=keyformat, keyformatversions="1"))
    return keys + provider_tags(p, master=session)


def provider_tags(p: Protection, *, master: bool) -> list[str]:
    """EXT-X-KEY / EXT-X-SESSION-KEY lines a DRM provider handed over verbatim (CPIX HLSSignalingData)."""
    return [t for s in p.systems if (t := (s.hls_master_tag if master else s.hls_media_tag))]


def aes128_key(uri: str, iv_hex: str) -> m3u8.Key:
    return m3u8.Key("AES-128", None, uri=uri, iv="0x" + iv_hex)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
