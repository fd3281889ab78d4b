"""Read the protection boxes of CMAF files (ISO/IEC 23001-7): the init's sinf/schm/tenc and pssh
boxes, and each fragment's senc/saiz/saio. Used to build the manifests' signalling from what the
files really carry, and by `abrpipe validate`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from abrpipe.protect.systems import Pssh, parse_pssh

_CONTAINERS = {"moov", "trak", "mdia", "minf", "stbl", "sinf", "schi", "moof", "traf", "mvex"}


class BoxError(ValueError):
    pass


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[str, int, int, int]]:
    """(type, box start, payload start, box end) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        btype = data[pos + 4 : pos + 8].decode("latin-1")
        header = 8
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise BoxError(f"box {btype!r} at byte {pos} runs past its parent")
        yield btype, pos, pos + header, pos + size
        pos += size


def find_all(data: bytes, path: tuple[str, ...], start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(payload, end) of every box at `path` (e.g. ('moov', 'pssh'))."""
    found = []
    for btype, _, payload, box_end in iter_boxes(data, start, end):
        if btype != path[0]:
            continue
        if len(path) == 1:
            found.append((payload, box_end))
        elif btype in _CONTAINERS:
            found += find_all(data, path[1:], payload, box_end)
    return found


@dataclass(frozen=True)
class InitProtection:
    scheme: str  # schm scheme_type: 'cenc' | 'cbcs' | ...
    original_format: str  # frma: 'avc1', 'mp4a', ...
    kid: bytes
    per_sample_iv_size: int
    crypt_byte_block: int
    skip_byte_block: int
    constant_iv: bytes | None
    is_protected: bool
    pssh: tuple[Pssh, ...]

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()


def _sample_entry_sinf(data: bytes) -> tuple[int, int] | None:
    for payload, end in find_all(data, ("moov", "trak", "mdia", "minf", "stbl", "stsd")):
        entries = payload + 8  # version/flags, entry_count
        for btype, _, ep, eend in iter_boxes(data, entries, end):
            if btype not in ("encv", "enca"):
                return None
            # Sample entry fields before the child boxes: visual 78 bytes, audio 28.
            first = ep + (78 if btype == "encv" else 28)
            for ctype, _, cp, cend in iter_boxes(data, first, eend):
                if ctype == "sinf":
                    return cp, cend
            return None
    return None


def read_init_protection(data: bytes) -> InitProtection | None:
    """The protection of an init segment's (first) track, or None when it is in the clear."""
    pssh = tuple(parse_pssh(data[p - 8 : e]) for p, e in find_all(data, ("moov", "pssh")))
    sinf = _sample_entry_sinf(data)
    if sinf is None:
        return None
    fmt = scheme = ""
    tenc: tuple[int, int] | None = None
    for btype, _, payload, end in iter_boxes(data, *sinf):
        if btype == "frma":
            fmt = data[payload : payload + 4].decode("latin-1")
        elif btype == "schm":
            scheme = data[payload + 4 : payload + 8].decode("latin-1")
        elif btype == "schi":
            for ctype, _, cp, cend in iter_boxes(data, payload, end):
                if ctype == "tenc":
                    tenc = (cp, cend)
    if tenc is None:
        raise BoxError("protected sample entry without a 'tenc' box")
    p, _ = tenc
    version = data[p]
    pattern = data[p + 5]
    crypt, skip = (pattern >> 4, pattern & 0x0F) if version > 0 else (0, 0)
    is_protected = data[p + 6] == 1
    iv_size = data[p + 7]
    kid = data[p + 8 : p + 24]
    constant_iv = None
    if is_protected and iv_size == 0:
        n = data[p + 24]
        constant_iv = data[p + 25 : p + 25 + n]
    return InitProtection(scheme, fmt, kid, iv_size, crypt, skip, constant_iv, is_protected, pssh)


@dataclass(frozen=True)
class FragmentProtection:
    moof_offset: int
    sample_count: int  # trun samples
    senc_samples: int | None  # None: no senc
    saiz_samples: int | None
    saio_present: bool
    has_subsamples: bool
    ivs: tuple[bytes, ...]
    # Key rotation: the KIDs that 'seig' sample groups give to samples of this fragment, how many
    # samples keep the tenc's default KID, and how many point at a group description that is not there.
    group_kids: tuple[bytes, ...] = ()
    default_samples: int = 0
    unknown_group_samples: int = 0


def read_segment_protection(data: bytes, iv_size: int) -> list[FragmentProtection]:
    out = []
    for mtype, mstart, mp, mend in iter_boxes(data):
        if mtype != "moof":
            continue
        for ttype, _, tp, tend in iter_boxes(data, mp, mend):
            if ttype != "traf":
                continue
            samples = 0
            senc = saiz = None
            saio = subsamples = False
            ivs: list[bytes] = []
            seig: list[bytes] = []
            groups: list[tuple[int, int]] = []
            for btype, _, p, end in iter_boxes(data, tp, tend):
                if btype == "trun":
                    samples += int.from_bytes(data[p + 4 : p + 8], "big")
                elif btype == "saiz":
                    flags = int.from_bytes(data[p + 1 : p + 4], "big")
                    q = p + 4 + (8 if flags & 1 else 0)
                    saiz = int.from_bytes(data[q + 1 : q + 5], "big")
                elif btype == "saio":
                    saio = True
                elif btype == "sgpd" and data[p + 4 : p + 8] == b"seig":
                    seig += _seig_kids(data, p, end)
                elif btype == "sbgp" and data[p + 4 : p + 8] == b"seig":
                    q = p + 8 + (4 if data[p] == 1 else 0)
                    for i in range(int.from_bytes(data[q : q + 4], "big")):
                        e = q + 4 + 8 * i
                        groups.append((int.from_bytes(data[e : e + 4], "big"), int.from_bytes(data[e + 4 : e + 8], "big")))
                elif btype == "senc":
                    flags = int.from_bytes(data[p + 1 : p + 4], "big")
                    senc = int.from_bytes(data[p + 4 : p + 8], "big")
                    subsamples = bool(flags & 2)
                    q = p + 8
                    for _ in range(senc):
                        ivs.append(data[q : q + iv_size])
                        q += iv_size
                        if subsamples:
                            n = int.from_bytes(data[q : q + 2], "big")
                            q += 2 + 6 * n
                    if q > end:
                        raise BoxError(f"'senc' in the moof at byte {mstart} runs past its box")
            kids: list[bytes] = []
            unknown = grouped = 0
            for count, index in groups:
                grouped += count
                if index == 0:
                    continue  # not in the group: the default KID
                local = index - 0x10001
                if index > 0x10000 and local < len(seig):
                    kids.append(seig[local])
                else:
                    unknown += count
            default = max(samples - grouped, 0) + sum(c for c, i in groups if i == 0)
            out.append(FragmentProtection(mstart, samples, senc, saiz, saio, subsamples, tuple(ivs),
                                          tuple(dict.fromkeys(kids)), default, unknown))
    return out


def _seig_kids(data: bytes, p: int, end: int) -> list[bytes]:
    """The KIDs of the 'seig' entries of an sgpd box (payload at p)."""
    version = data[p]
    pos = p + 8  # version/flags, grouping_type
    default_length = 0
    if version == 1:
        default_length = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
    elif version >= 2:
        pos += 4  # default_sample_description_index
    count = int.from_bytes(data[pos : pos + 4], "big")
    pos += 4
    kids = []
    for _ in range(count):
        length = default_length
        if version == 1 and default_length == 0:
            length = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
        if not length:  # version 0: the entry's own size
            length = 20 + (1 + data[pos + 20] if data[pos + 2] == 1 and data[pos + 3] == 0 else 0)
        if pos + 20 > end:
            raise BoxError("'sgpd' entry runs past its box")
        kids.append(bytes(data[pos + 4 : pos + 20]))
        pos += length
    return kids


def system_uuid(value: str) -> str:
    return str(uuid.UUID(value))


def describe(info: InitProtection | None) -> dict | None:
    """Scheme, KID and DRM systems of an init segment (for `abrpipe probe`); never a key."""
    if info is None:
        return None
    from abrpipe.protect.systems import NAMES

    return {
        "scheme": info.scheme,
        "kid": str(uuid.UUID(bytes=info.kid)),
        "iv_size": info.per_sample_iv_size,
        "pattern": f"{info.crypt_byte_block}:{info.skip_byte_block}",
        "systems": [NAMES.get(p.system_id, p.system_id) for p in info.pssh],
        # Every KID the init names: the default one, and (key rotation) the later periods' ones that
        # its pssh boxes list.
        "kids": sorted({str(uuid.UUID(bytes=k)) for k in (info.kid, *(k for p in info.pssh for k in p.kids))}),
    }


def probe_protection(path: str) -> dict | None:
    """The protection of an MP4 file's first track, or None (clear, or not an MP4 at all)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
        return describe(read_init_protection(head))
    except (OSError, BoxError, ValueError, IndexError):
        return None
