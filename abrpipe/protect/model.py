"""What a protected rendition carries into the manifests: no key material, only KIDs, the scheme,
each DRM system's public signalling data, and (HLS AES-128) where each key period starts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DrmSignal:
    system_id: str  # UUID
    pssh_b64: str | None = None  # the whole pssh box (DASH cenc:pssh, HLS data: URI)
    pro_b64: str | None = None  # PlayReady Object (mspr:pro)
    laurl: str | None = None  # license server URL (DASH dashif:Laurl), when known
    hls_media_tag: str | None = None  # a ready EXT-X-KEY line handed over by the DRM provider (CPIX)
    hls_master_tag: str | None = None  # its EXT-X-SESSION-KEY line
    hls_uri: str | None = None  # EXT-X-KEY URI for this system (FairPlay skd://...)


@dataclass(frozen=True)
class KeyPeriod:
    """A key applies from segment `first_segment` (0-based) on.

    HLS AES-128: `uri` is the key's URI, one explicit IV per segment. CENC key rotation: `uri` is the
    ClearKey (identity) URI or "", no IVs; `systems` are the DRM systems' signalling for this key, and
    `segment_uris` the segments the key protects."""

    first_segment: int
    kid: str  # hex
    uri: str
    ivs: tuple[str, ...]  # hex, one per segment of the period
    systems: tuple[DrmSignal, ...] = ()
    segment_uris: tuple[str, ...] = ()

    @property
    def kid_uuid(self) -> str:
        h = self.kid
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class Protection:
    scheme: str  # 'cenc' | 'cbcs' | 'aes-128'
    kid: str  # hex (the default KID; AES-128: the first period's)
    iv_size: int = 0
    crypt_byte_block: int = 0
    skip_byte_block: int = 0
    systems: tuple[DrmSignal, ...] = ()
    key_uri: str | None = None  # HLS identity (ClearKey) key URI
    periods: tuple[KeyPeriod, ...] = field(default=())  # AES-128 key periods, or CENC key rotation
    common_pssh_b64: str | None = None  # CENC key rotation: the W3C common pssh with every KID (DASH ClearKey)

    @property
    def rotates(self) -> bool:
        return self.scheme != "aes-128" and len(self.periods) > 1

    @property
    def kid_uuid(self) -> str:
        h = self.kid
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def summary(self) -> dict:
        return {
            "scheme": self.scheme,
            "kids": sorted({p.kid for p in self.periods} or {self.kid}),
            "systems": [s.system_id for s in self.systems],
        }
