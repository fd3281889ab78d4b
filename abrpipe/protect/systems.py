"""DRM systems: their ids, 'pssh' boxes, and what each one needs in the DASH MPD and HLS playlists."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

WIDEVINE = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
PLAYREADY = "9a04f079-9840-4286-ab92-e65be0885f95"
FAIRPLAY = "94ce86fb-07ff-4f43-adb8-93d2fa968ca2"
CLEARKEY = "e2719d58-a985-b3c9-781a-b030af78d30e"  # DASH-IF ClearKey
COMMON = "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"  # W3C common PSSH (carries the KIDs; used by ClearKey)
MP4PROTECTION = "urn:mpeg:dash:mp4protection:2011"
CENC_NS = "urn:mpeg:cenc:2013"
DASHIF_NS = "https://dashif.org/CPS"

NAMES = {WIDEVINE: "Widevine", PLAYREADY: "PlayReady", FAIRPLAY: "FairPlay", CLEARKEY: "ClearKey", COMMON: "W3C common"}

# HLS KEYFORMAT of each system (Apple HLS authoring spec; Widevine and PlayReady HLS docs).
HLS_KEYFORMAT = {
    FAIRPLAY: "com.apple.streamingkeydelivery",
    WIDEVINE: f"urn:uuid:{WIDEVINE}",
    PLAYREADY: "com.microsoft.playready",
}
# ClearKey in HLS: Shaka Player reads KEYFORMAT="identity" (the key itself at URI); hls.js reads
# "org.w3.clearkey" with a license server. abrpipe writes "identity" (see docs/PROTECTION.md).
IDENTITY = "identity"
W3C_CLEARKEY = "org.w3.clearkey"  # hls.js: EME ClearKey, keys from a license server the player is configured with


@dataclass(frozen=True)
class Pssh:
    system_id: str  # UUID string
    version: int
    kids: tuple[bytes, ...]
    data: bytes
    box: bytes  # the whole box as stored

    @property
    def name(self) -> str:
        return NAMES.get(self.system_id, self.system_id)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.box).decode()


def parse_pssh(box: bytes) -> Pssh:
    """ProtectionSystemSpecificHeaderBox (ISO/IEC 23001-7 8.1)."""
    if len(box) < 32 or box[4:8] != b"pssh":
        raise ValueError("not a pssh box")
    version = box[8]
    pos = 12
    system_id = str(uuid.UUID(bytes=box[pos : pos + 16]))
    pos += 16
    kids: list[bytes] = []
    if version > 0:
        count = int.from_bytes(box[pos : pos + 4], "big")
        pos += 4
        kids = [box[pos + 16 * i : pos + 16 * (i + 1)] for i in range(count)]
        pos += 16 * count
    size = int.from_bytes(box[pos : pos + 4], "big")
    pos += 4
    data = box[pos : pos + size]
    if pos + size > len(box):
        raise ValueError("pssh data runs past the box")
    return Pssh(system_id, version, tuple(kids), data, bytes(box))


def make_pssh(system_id: str, kids: list[bytes], data: bytes = b"", version: int = 1) -> bytes:
    body = bytes([version, 0, 0, 0]) + uuid.UUID(system_id).bytes
    if version > 0:
        body += len(kids).to_bytes(4, "big") + b"".join(kids)
    body += len(data).to_bytes(4, "big") + data
    return (8 + len(body)).to_bytes(4, "big") + b"pssh" + body


def common_pssh(kids: list[bytes]) -> bytes:
    """The W3C common PSSH (v1, KIDs, no data): what EME ClearKey reads from the init segment."""
    return make_pssh(COMMON, kids)


def playready_pro(pssh: Pssh) -> str:
    """PlayReady Object (base64) for mspr:pro / the HLS data URI: the pssh data is the PRO."""
    return base64.b64encode(pssh.data).decode()
