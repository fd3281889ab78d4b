"""Read a CPIX document (DASH-IF Content Protection Information Exchange Format, 2.x): the content
keys, key periods, usage rules (which key protects which track) and each DRM system's signalling
data (PSSH, HLS signalling). Encrypted content keys (DeliveryData) are refused: abrpipe does not
decrypt key material."""

from __future__ import annotations

import base64
import binascii
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime

from abrpipe.protect.keys import ContentKey, KeyError_, parse_b64_16
from abrpipe.protect.model import DrmSignal
from abrpipe.protect.systems import PLAYREADY, parse_pssh

NS = {"cpix": "urn:dashif:org:cpix", "pskc": "urn:ietf:params:xml:ns:keyprov:pskc"}
HINT = "see docs/PROTECTION.md for the CPIX elements abrpipe reads"


@dataclass(frozen=True)
class UsageRule:
    kid: bytes
    kind: str | None  # 'video' | 'audio' | None (any track)
    min_pixels: int | None = None
    max_pixels: int | None = None
    period: str | None = None

    def matches(self, kind: str, width: int | None, height: int | None) -> bool:
        if self.kind and self.kind != kind:
            return False
        pixels = (width or 0) * (height or 0)
        if self.min_pixels is not None and pixels < self.min_pixels:
            return False
        return not (self.max_pixels is not None and pixels > self.max_pixels)


@dataclass(frozen=True)
class KeyPeriodSpec:
    """A ContentKeyPeriod: @start/@end (xs:dateTime) or @index, as written in the document."""

    id: str
    index: int | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class PeriodRange:
    """A key period on the title's timeline: [start_s, end_s) in seconds (end None: to the end)."""

    id: str
    start_s: float
    end_s: float | None


@dataclass(frozen=True)
class CpixDocument:
    path: str
    keys: dict[bytes, ContentKey]
    rules: tuple[UsageRule, ...]
    periods: tuple[KeyPeriodSpec, ...]
    systems: dict[tuple[bytes, str], DrmSignal]  # (kid, system id) -> signalling
    pssh: dict[tuple[bytes, str], bytes]  # (kid, system id) -> pssh box

    @property
    def rotates(self) -> bool:
        return len(self.periods) > 1

    def key_for(self, kind: str, width: int | None, height: int | None, period: str | None = None) -> ContentKey | None:
        """The key of a track (in one key period, when the document has several)."""
        if not self.rules:  # one key and no rules: it protects everything
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        for rule in self.rules:
            if self.rotates and rule.period is not None and rule.period != period:
                continue
            if rule.matches(kind, width, height):
                return self.keys[rule.kid]
        return None

    def period_ranges(self, segment_s: float, rotation: int | None) -> list[PeriodRange]:
        """The key periods on the title's timeline. @start/@end: the earliest @start is the title's
        time 0. @index: period n lasts `rotation` segments (--key-rotation N), the lowest index first."""
        if not self.rotates:
            return [PeriodRange(self.periods[0].id if self.periods else "", 0.0, None)]
        if all(p.index is not None for p in self.periods):
            if not rotation:
                raise KeyError_(f"{self.path}: key periods by @index need a period length",
                                hint="add --key-rotation N (a new key every N segments)")
            ordered = sorted(self.periods, key=lambda p: p.index or 0)
            length = rotation * segment_s
            return [PeriodRange(p.id, n * length, None if n == len(ordered) - 1 else (n + 1) * length) for n, p in enumerate(ordered)]
        if any(p.start is None or p.end is None for p in self.periods):
            raise KeyError_(f"{self.path}: every ContentKeyPeriod needs @start and @end, or every one an @index", hint=HINT)
        ordered = sorted(self.periods, key=lambda p: p.start.timestamp() if p.start else 0.0)
        zero = ordered[0].start
        assert zero is not None
        out = []
        for n, p in enumerate(ordered):
            assert p.start is not None and p.end is not None
            if n and p.start != ordered[n - 1].end:
                raise KeyError_(f"{self.path}: ContentKeyPeriod {p.id!r} does not start where {ordered[n - 1].id!r} ends",
                                hint="key periods must follow each other without gap or overlap")
            last = n == len(ordered) - 1
            out.append(PeriodRange(p.id, (p.start - zero).total_seconds(), None if last else (p.end - zero).total_seconds()))
        return out

    def pssh_boxes(self, kid: bytes) -> list[bytes]:
        return [box for (k, _), box in self.pssh.items() if k == kid]

    def signal(self, kid: bytes, system_id: str) -> DrmSignal | None:
        return self.systems.get((kid, system_id))

    def signals(self, kid: bytes) -> list[DrmSignal]:
        return [s for (k, _), s in self.systems.items() if k == kid]


def _uuid_bytes(text: str | None, where: str) -> bytes:
    try:
        return uuid.UUID(text or "").bytes
    except ValueError:
        raise KeyError_(f"{where}: {text!r} is not a 16-byte KID (a UUID)", hint=HINT) from None


def _b64_text(el: ET.Element | None) -> bytes | None:
    if el is None or not (el.text or "").strip():
        return None
    try:
        return base64.b64decode((el.text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _period(el: ET.Element, n: int, path: str) -> KeyPeriodSpec:
    where = f"{path}: ContentKeyPeriod #{n}"
    pid = el.get("id") or str(n)
    index = el.get("index")
    if index is not None:
        if not index.isdigit():
            raise KeyError_(f"{where}: @index={index!r} is not a number", hint=HINT)
        return KeyPeriodSpec(pid, index=int(index))

    def when(attr: str) -> datetime | None:
        value = el.get(attr)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # no zone: UTC
        except ValueError:
            raise KeyError_(f"{where}: @{attr}={value!r} is not an xs:dateTime", hint=HINT) from None

    start, end = when("start"), when("end")
    if start is not None and end is not None and end <= start:
        raise KeyError_(f"{where}: @end is not after @start", hint=HINT)
    return KeyPeriodSpec(pid, start=start, end=end)


def read_cpix(path: str) -> CpixDocument:
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise KeyError_(f"{path}: cannot read the CPIX document ({exc.strerror})") from None
    except ET.ParseError as exc:
        raise KeyError_(f"{path}: not an XML document (line {exc.position[0]})", hint=HINT) from None
    if root.tag != f"{{{NS['cpix']}}}CPIX":
        raise KeyError_(f"{path}: not a CPIX document (root element {root.tag})", hint=HINT)
    if root.find("cpix:DeliveryDataList", NS) is not None or root.find(".//pskc:EncryptedValue", NS) is not None:
        raise KeyError_(
            f"{path}: the content keys are encrypted (DeliveryData / EncryptedValue); abrpipe reads only plain keys",
            hint="ask the DRM provider for a CPIX document with pskc:PlainValue keys, delivered over a secure channel",
        )
    keys: dict[bytes, ContentKey] = {}
    for n, el in enumerate(root.findall("cpix:ContentKeyList/cpix:ContentKey", NS), 1):
        where = f"{path}: ContentKey #{n}"
        kid = _uuid_bytes(el.get("kid"), where)
        plain = el.find("cpix:Data/pskc:Secret/pskc:PlainValue", NS)
        if plain is None:
            raise KeyError_(f"{where} (kid {uuid.UUID(bytes=kid)}) has no pskc:PlainValue key", hint=HINT)
        key = parse_b64_16(plain.text or "", f"key of kid {uuid.UUID(bytes=kid)}", where)
        iv_text = el.get("explicitIV")
        iv = parse_b64_16(iv_text, "explicitIV", where) if iv_text else None
        keys[kid] = ContentKey(kid, key, iv)
    if not keys:
        raise KeyError_(f"{path}: the CPIX document holds no content key", hint=HINT)

    periods = tuple(_period(el, n, path) for n, el in enumerate(root.findall("cpix:ContentKeyPeriodList/cpix:ContentKeyPeriod", NS), 1))
    period_ids = {p.id for p in periods}

    rules = []
    for n, el in enumerate(root.findall("cpix:ContentKeyUsageRuleList/cpix:ContentKeyUsageRule", NS), 1):
        where = f"{path}: ContentKeyUsageRule #{n}"
        kid = _uuid_bytes(el.get("kid"), where)
        if kid not in keys:
            raise KeyError_(f"{where}: kid {uuid.UUID(bytes=kid)} has no ContentKey in the document", hint=HINT)
        video = el.find("cpix:VideoFilter", NS)
        audio = el.find("cpix:AudioFilter", NS)
        kind = "video" if video is not None else "audio" if audio is not None else None
        track_type = (el.get("intendedTrackType") or "").upper()
        if kind is None and track_type:
            kind = "audio" if track_type.startswith("AUDIO") else "video"

        def pixels(attr: str, video=video, where=where) -> int | None:
            value = video.get(attr) if video is not None else None
            if value is None:
                return None
            if not value.isdigit():
                raise KeyError_(f"{where}: VideoFilter {attr}={value!r} is not a number of pixels")
            return int(value)

        period_filter = el.find("cpix:KeyPeriodFilter", NS)
        period = period_filter.get("periodId") if period_filter is not None else None
        if period is not None and period not in period_ids:
            raise KeyError_(f"{where}: KeyPeriodFilter names period {period!r}, which the ContentKeyPeriodList does not hold", hint=HINT)
        rules.append(UsageRule(kid, kind, pixels("minPixels"), pixels("maxPixels"), period))

    systems: dict[tuple[bytes, str], DrmSignal] = {}
    pssh: dict[tuple[bytes, str], bytes] = {}
    for n, el in enumerate(root.findall("cpix:DRMSystemList/cpix:DRMSystem", NS), 1):
        where = f"{path}: DRMSystem #{n}"
        kid = _uuid_bytes(el.get("kid"), where)
        system_id = str(uuid.UUID(bytes=_uuid_bytes(el.get("systemId"), where)))
        box = _b64_text(el.find("cpix:PSSH", NS))
        pro = None
        if box is not None:
            try:
                parsed = parse_pssh(box)
            except ValueError:
                raise KeyError_(f"{where}: PSSH is not a pssh box", hint=HINT) from None
            if parsed.system_id != system_id:
                raise KeyError_(f"{where}: PSSH is for system {parsed.system_id}, not {system_id}", hint=HINT)
            pssh[(kid, system_id)] = box
            if system_id == PLAYREADY:
                pro = base64.b64encode(parsed.data).decode()
        media_tag = master_tag = None
        for hls in el.findall("cpix:HLSSignalingData", NS):
            text = _b64_text(hls)
            if text is None:
                continue
            line = text.decode("utf-8", "replace").strip()
            if hls.get("playlist", "media") == "master":
                master_tag = line
            else:
                media_tag = line
        uri = _b64_text(el.find("cpix:URIExtXKey", NS))
        systems[(kid, system_id)] = DrmSignal(
            system_id,
            pssh_b64=base64.b64encode(box).decode() if box else None,
            pro_b64=pro,
            hls_media_tag=media_tag,
            hls_master_tag=master_tag,
            hls_uri=uri.decode("utf-8", "replace").strip() if uri else None,
        )
    return CpixDocument(path, keys, tuple(rules), periods, systems, pssh)
