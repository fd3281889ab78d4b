"""Protection checks (ISO/IEC 23001-7): each protected init has a tenc with a valid scheme, KID,
IV size and pattern; every fragment carries its senc (and saiz/saio when the auxiliary information
is not empty); the manifests signal the scheme and the KID the inits carry; no rendition is left in
the clear next to encrypted ones unless that was asked for.

Whole-segment HLS AES-128 output is not CENC: its segments are opaque here (SEG-FORMAT says so).
"""

from __future__ import annotations

import os
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import m3u8

from abrpipe.protect.boxes import BoxError, InitProtection, read_init_protection, read_segment_protection
from abrpipe.validate.report import Report

MP4PROTECTION = "urn:mpeg:dash:mp4protection:2011"
DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
CENC_NS = "urn:mpeg:cenc:2013"
# METHOD of EXT-X-KEY for each CENC scheme in fMP4.
HLS_METHOD = {"cbcs": "SAMPLE-AES", "cenc": "SAMPLE-AES-CTR"}


@dataclass
class _Track:
    name: str
    init: str
    segments: list[str]
    declared: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (manifest, scheme, kid hex)
    # The KIDs each manifest declares: DASH for the whole track (cenc:default_KID + the KIDs of its
    # cenc:pssh boxes), HLS per segment path (the KEYIDs of the EXT-X-KEY lines before it; none: the tenc's).
    kids: list[tuple[str, set[str] | None, dict[str, set[str]]]] = field(default_factory=list)


def check_protection(root: str, playlists: list[str], mpds: list[str], report: Report, *, allow_clear: bool = False) -> None:
    tracks: dict[str, _Track] = {}
    for mpd in mpds:
        _from_mpd(mpd, tracks)
    for playlist in playlists:
        _from_hls(playlist, tracks)
    states: dict[str, InitProtection | None] = {}
    for init, t in tracks.items():
        rel = os.path.relpath(init, root)
        try:
            with open(init, "rb") as fh:
                info = read_init_protection(fh.read())
        except OSError:
            continue  # FILE-MISSING already says so
        except BoxError as exc:
            report.add("PROT-TENC", f"{rel}: protected sample entry unreadable: {exc}", file=rel, rendition=t.name)
            continue
        states[init] = info
        for manifest, scheme, kid in t.declared:
            if info is None:
                if scheme or kid:
                    report.add("PROT-SIGNALLING", f"{manifest} declares {scheme or 'protection'} but {rel} is in the clear", file=rel, rendition=t.name)
                continue
            if scheme is None and kid is None:
                report.add("PROT-SIGNALLING", f"{rel} is encrypted ({info.scheme}) but {manifest} signals no protection", file=rel, rendition=t.name)
                continue
            if scheme is not None and scheme != info.scheme:
                report.add("PROT-SCHEME", f"{manifest} declares {scheme}, {rel} carries {info.scheme}", file=rel, rendition=t.name)
            if kid is not None and kid != info.kid_hex:
                report.add("PROT-KID", f"{manifest} declares KID {_u(kid)}, {rel}'s tenc has {_u(info.kid_hex)}", file=rel, rendition=t.name)
        if info is None:
            continue
        _check_tenc(info, rel, t.name, report)
        for n, seg in enumerate(t.segments, 1):
            _check_segment(info, seg, root, t.name, n, report, t.kids)
    protected = [i for i, s in states.items() if s is not None]
    clear = [i for i, s in states.items() if s is None]
    if protected and clear and not allow_clear:
        for init in clear:
            rel = os.path.relpath(init, root)
            report.add("PROT-HALF", f"{rel} is in the clear while {len(protected)} other rendition(s) are encrypted",
                       file=rel, rendition=tracks[init].name)


def _u(kid_hex: str) -> str:
    try:
        return str(uuid.UUID(kid_hex))
    except ValueError:
        return kid_hex


def _check_tenc(info: InitProtection, rel: str, name: str, report: Report) -> None:
    if info.scheme not in ("cenc", "cbcs", "cens", "cbc1"):
        report.add("PROT-TENC", f"{rel}: unknown protection scheme {info.scheme!r} in schm", file=rel, rendition=name)
        return
    if not info.is_protected:
        return
    problem = None
    if info.scheme in ("cenc", "cbc1"):
        if info.per_sample_iv_size not in (8, 16):
            problem = f"{info.scheme} needs a per-sample IV of 8 or 16 bytes, tenc says {info.per_sample_iv_size}"
        elif info.crypt_byte_block or info.skip_byte_block:
            problem = f"{info.scheme} has no pattern, tenc says {info.crypt_byte_block}:{info.skip_byte_block}"
    elif info.scheme == "cbcs":
        if info.per_sample_iv_size != 0 and info.per_sample_iv_size != 16:
            problem = f"cbcs needs a constant IV or a 16-byte IV, tenc says {info.per_sample_iv_size}"
        elif info.per_sample_iv_size == 0 and len(info.constant_iv or b"") != 16:
            problem = f"cbcs constant IV is {len(info.constant_iv or b'')} bytes, not 16"
        elif info.original_format not in ("mp4a", "Opus", "ac-3", "ec-3") and (info.crypt_byte_block, info.skip_byte_block) == (0, 0):
            problem = "cbcs video without a pattern (1:9 expected)"
    if problem:
        report.add("PROT-IV-PATTERN", f"{rel}: {problem}", file=rel, rendition=name)


def _check_segment(info: InitProtection, path: str, root: str, name: str, n: int, report: Report,
                   kids: list[tuple[str, set[str] | None, dict[str, set[str]]]]) -> None:
    rel = os.path.relpath(path, root)
    try:
        with open(path, "rb") as fh:
            frags = read_segment_protection(fh.read(), info.per_sample_iv_size)
    except (OSError, BoxError):
        return  # FILE-MISSING / SEG-TRUNCATED say so
    for f in frags:
        where = f"{rel}: moof at byte {f.moof_offset}"
        if f.unknown_group_samples:
            report.add("PROT-FRAGMENT-KID", f"{where}: {f.unknown_group_samples} sample(s) name a seig group description "
                       "the fragment does not hold", file=rel, rendition=name, segment=n)
        # The tenc's KID is PROT-KID's business: this rule is about the KIDs that seig groups name.
        rotated = {k.hex() for k in f.group_kids} - {info.kid_hex}
        for manifest, whole, per_segment in kids:
            allowed = whole if whole is not None else per_segment.get(path, set())
            for kid in sorted(rotated - allowed):
                report.add("PROT-FRAGMENT-KID", f"{where} is encrypted with KID {_u(kid)}, which {manifest} does not declare "
                           "for it", file=rel, rendition=name, segment=n)
        if f.senc_samples is None:
            report.add("PROT-SENC", f"{where} has no senc box", file=rel, rendition=name, segment=n)
        elif f.senc_samples != f.sample_count:
            report.add("PROT-SENC", f"{where}: senc has {f.senc_samples} entries for {f.sample_count} samples", file=rel, rendition=name, segment=n)
        elif info.per_sample_iv_size or f.has_subsamples:
            if f.saiz_samples is None or not f.saio_present:
                report.add("PROT-SENC", f"{where} lacks saiz/saio for its senc", file=rel, rendition=name, segment=n)
            elif f.saiz_samples != f.sample_count:
                report.add("PROT-SENC", f"{where}: saiz has {f.saiz_samples} entries for {f.sample_count} samples", file=rel, rendition=name, segment=n)


def _from_mpd(path: str, tracks: dict[str, _Track]) -> None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return  # DASH-PARSE says so
    base = os.path.dirname(path)
    ns = {"d": DASH_NS}
    manifest = os.path.basename(path)

    def declared_kids(elements) -> set[str]:
        kids = set()
        for el in elements:
            for cp in el.findall("d:ContentProtection", ns):
                if cp.get(f"{{{CENC_NS}}}default_KID"):
                    kids.add(cp.get(f"{{{CENC_NS}}}default_KID", "").replace("-", "").lower())
                for box in cp.findall(f"{{{CENC_NS}}}pssh"):
                    kids |= _pssh_kids(box.text or "")
        return kids

    def declared(elements) -> tuple[str | None, str | None]:
        scheme = kid = None
        for el in elements:
            for cp in el.findall("d:ContentProtection", ns):
                k = cp.get(f"{{{CENC_NS}}}default_KID")
                if cp.get("schemeIdUri") == MP4PROTECTION:
                    scheme = cp.get("value") or scheme
                if k:
                    kid = kid or k.replace("-", "").lower()
        return scheme, kid

    for aset in root.iterfind(".//d:AdaptationSet", ns):
        for rep in aset.findall("d:Representation", ns):
            template = rep.find("d:SegmentTemplate", ns)
            if template is None:
                template = aset.find("d:SegmentTemplate", ns)
            if template is None or not template.get("initialization"):
                continue
            rid = rep.get("id") or ""
            init = os.path.normpath(os.path.join(base, template.get("initialization", "").replace("$RepresentationID$", rid)))
            media = template.get("media", "").replace("$RepresentationID$", rid)
            segments = _template_segments(base, media, template, ns)
            t = tracks.setdefault(init, _Track(rid, init, segments))
            t.declared.append((manifest, *declared([rep, aset])))
            t.kids.append((manifest, declared_kids([rep, aset]), {}))


def _pssh_kids(text: str) -> set[str]:
    """The KIDs a (version 1) pssh box in base64 lists."""
    import base64
    import binascii

    from abrpipe.protect.systems import parse_pssh

    try:
        return {k.hex() for k in parse_pssh(base64.b64decode(text.strip(), validate=True)).kids}
    except (ValueError, binascii.Error):
        return set()


def _hls_segment_kids(text: str, mdir: str) -> dict[str, set[str]]:
    """Segment path -> the KEYIDs of the EXT-X-KEY lines that apply to it (a run of key lines after a
    segment replaces the previous run)."""
    out: dict[str, set[str]] = {}
    current: set[str] = set()
    fresh = True
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-KEY:"):
            if not fresh:
                current, fresh = set(), True
            m = re.search(r"KEYID=0[xX]([0-9a-fA-F]{32})", line)
            if m:
                current.add(m.group(1).lower())
        elif line and not line.startswith("#"):
            out[os.path.normpath(os.path.join(mdir, line))] = set(current)
            fresh = False
    return out


def _template_segments(base: str, media: str, template, ns) -> list[str]:
    if "$Number" not in media:
        return []
    start = int(template.get("startNumber", "1"))
    count = 0
    timeline = template.find("d:SegmentTimeline", ns)
    if timeline is not None:
        count = sum(1 + int(s.get("r", "0")) for s in timeline.findall("d:S", ns))
    out = []
    for n in range(start, start + count):
        name = media
        for token in ("$Number%05d$", "$Number$"):
            name = name.replace(token, f"{n:05d}" if "%05d" in token else str(n))
        out.append(os.path.normpath(os.path.join(base, name)))
    return out


def _from_hls(path: str, tracks: dict[str, _Track]) -> None:
    try:
        master = m3u8.load(path)
    except Exception:  # noqa: BLE001 - HLS-PARSE reports it
        return
    base = os.path.dirname(path)
    uris = [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri] if master.is_variant else [os.path.basename(path)]
    for uri in dict.fromkeys(uris):
        media_path = os.path.normpath(os.path.join(base, uri))
        try:
            pl = m3u8.load(media_path)
        except Exception:  # noqa: BLE001
            continue
        if not pl.segments:
            continue
        maps = [s.init_section for s in pl.segments if s.init_section] or list(pl.segment_map or [])
        if not maps:
            continue
        mdir = os.path.dirname(media_path)
        init = os.path.normpath(os.path.join(mdir, maps[0].uri))
        methods = {k.method for k in pl.keys if k}
        if "AES-128" in methods:
            continue  # whole-segment encryption: not CENC
        scheme = next((s for s, m in HLS_METHOD.items() if m in methods), None)
        segments = [os.path.normpath(os.path.join(mdir, s.uri)) for s in pl.segments]
        t = tracks.setdefault(init, _Track(os.path.basename(mdir), init, segments))
        manifest = os.path.relpath(media_path, os.path.dirname(path))
        t.declared.append((manifest, scheme, None))
        if scheme is not None:
            with open(media_path, encoding="utf-8", errors="replace") as fh:
                t.kids.append((manifest, None, _hls_segment_kids(fh.read(), mdir)))
