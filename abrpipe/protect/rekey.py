"""CENC key rotation: give the fragments of a later key period their own key.

The packager encrypts a whole rendition with the first period's key (its raw-key source cannot rotate
real keys). For each fragment of a later period, abrpipe then swaps the key: it decrypts the
protected bytes with the first key and encrypts them again with the period's key, using exactly the
layout the packager wrote (the same IVs, subsamples and pattern from `senc` and `tenc`), and names
the new key in the fragment with a `seig` sample group (`sgpd` + `sbgp` in the `traf`, ISO/IEC
23001-7 key rotation). The `sgpd`/`sbgp` boxes are appended at the end of the `traf`: `senc` does
not move, so the `saio` offsets stay right, and every `trun` data offset grows by the bytes added.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from abrpipe.protect.boxes import BoxError, InitProtection, iter_boxes
from abrpipe.protect.keys import ContentKey

DEFAULT_BASE_IS_MOOF = 0x020000
LOCAL_GROUP_INDEX = 0x10001  # sbgp: the first entry of the sgpd in this fragment (ISO/IEC 14496-12 8.9.4)


@dataclass(frozen=True)
class _Sample:
    offset: int  # in the file
    size: int
    iv: bytes
    subsamples: tuple[tuple[int, int], ...]  # (clear bytes, protected bytes); () = the whole sample


def _u32(data, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 4], "big")


def _box(btype: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + btype + payload


def seig_boxes(info: InitProtection, kid: bytes, sample_count: int) -> bytes:
    """sgpd (one 'seig' entry: this period's KID, the init's scheme parameters) + sbgp (every sample)."""
    entry = bytes([0, (info.crypt_byte_block << 4) | info.skip_byte_block, 1, info.per_sample_iv_size]) + kid
    if info.per_sample_iv_size == 0:
        iv = info.constant_iv or b""
        entry += bytes([len(iv)]) + iv
    # version 1: default_length gives the size of every entry.
    sgpd = _box(b"sgpd", bytes([1, 0, 0, 0]) + b"seig" + len(entry).to_bytes(4, "big") + (1).to_bytes(4, "big") + entry)
    sbgp = _box(b"sbgp", bytes(4) + b"seig" + (1).to_bytes(4, "big") + sample_count.to_bytes(4, "big")
                + LOCAL_GROUP_INDEX.to_bytes(4, "big"))
    return sgpd + sbgp


def _traf_samples(data: bytes, moof_start: int, tp: int, tend: int, iv_size: int) -> tuple[list[_Sample], list[int]]:
    """The samples of one traf (file offsets, sizes, IVs, subsamples) and the positions of its trun data offsets."""
    default_size = None
    sizes: list[int] = []
    offsets: list[int] = []
    trun_offsets: list[int] = []
    senc: list[tuple[bytes, tuple[tuple[int, int], ...]]] = []
    for btype, _, p, end in iter_boxes(data, tp, tend):
        if btype == "tfhd":
            flags = int.from_bytes(data[p + 1 : p + 4], "big")
            if flags & 1 or not flags & DEFAULT_BASE_IS_MOOF:
                raise BoxError("tfhd without default-base-is-moof: cannot move the sample data")
            q = p + 8 + (4 if flags & 2 else 0) + (4 if flags & 8 else 0)
            if flags & 0x10:
                default_size = _u32(data, q)
        elif btype == "trun":
            flags = int.from_bytes(data[p + 1 : p + 4], "big")
            if not flags & 1:
                raise BoxError("trun without a data offset")
            count = _u32(data, p + 4)
            trun_offsets.append(p + 8)
            pos = moof_start + int.from_bytes(data[p + 8 : p + 12], "big", signed=True)
            q = p + 12 + (4 if flags & 4 else 0)
            for _ in range(count):
                q += 4 if flags & 0x100 else 0
                size = _u32(data, q) if flags & 0x200 else default_size
                if size is None:
                    raise BoxError("trun sample without a size")
                q += (4 if flags & 0x200 else 0) + (4 if flags & 0x400 else 0) + (4 if flags & 0x800 else 0)
                offsets.append(pos)
                sizes.append(size)
                pos += size
        elif btype == "senc":
            flags = int.from_bytes(data[p + 1 : p + 4], "big")
            q = p + 8
            for _ in range(_u32(data, p + 4)):
                iv = data[q : q + iv_size]
                q += iv_size
                subs: list[tuple[int, int]] = []
                if flags & 2:
                    n = int.from_bytes(data[q : q + 2], "big")
                    q += 2
                    for _ in range(n):
                        subs.append((int.from_bytes(data[q : q + 2], "big"), _u32(data, q + 2)))
                        q += 6
                senc.append((iv, tuple(subs)))
            if q > end:
                raise BoxError("senc runs past its box")
    if len(senc) != len(sizes):
        raise BoxError(f"senc has {len(senc)} entries for {len(sizes)} samples")
    samples = [_Sample(o, s, iv, subs) for o, s, (iv, subs) in zip(offsets, sizes, senc)]
    return samples, trun_offsets


def _ranges(sample: _Sample) -> list[tuple[int, int]]:
    """(file offset, length) of each protected range of a sample."""
    if not sample.subsamples:
        return [(sample.offset, sample.size)]
    out = []
    pos = sample.offset
    for clear, protected in sample.subsamples:
        pos += clear
        if protected:
            out.append((pos, protected))
        pos += protected
    if pos != sample.offset + sample.size:
        raise BoxError("subsamples do not add up to the sample size")
    return out


def _pattern_blocks(start: int, length: int, crypt: int, skip: int) -> list[int]:
    """File offsets of the encrypted 16-byte blocks of one cbcs protected range (partial blocks stay clear)."""
    if crypt == 0 and skip == 0:
        return [start + 16 * i for i in range(length // 16)]
    blocks = []
    pos = 0
    while length - pos >= 16:
        n = min(crypt, (length - pos) // 16)
        blocks += [start + pos + 16 * i for i in range(n)]
        pos += 16 * (crypt + skip)
    return blocks


def _rekey_cenc(buf: bytearray, sample: _Sample, old: bytes, new: bytes) -> None:
    # AES-CTR over the protected bytes of the sample as one stream; the 8-byte IV is the counter's top half.
    ranges = _ranges(sample)
    data = b"".join(bytes(buf[o : o + n]) for o, n in ranges)
    counter = sample.iv.ljust(16, b"\0")
    clear = Cipher(algorithms.AES(old), modes.CTR(counter)).decryptor().update(data)
    cipher = Cipher(algorithms.AES(new), modes.CTR(counter)).encryptor().update(clear)
    pos = 0
    for o, n in ranges:
        buf[o : o + n] = cipher[pos : pos + n]
        pos += n


def _rekey_cbcs(buf: bytearray, sample: _Sample, iv: bytes, crypt: int, skip: int, old: bytes, new: bytes) -> None:
    # AES-CBC: the chain restarts from the IV at each protected range (subsample) and runs through its
    # encrypted blocks only (the pattern's clear blocks are skipped).
    for start, length in _ranges(sample):
        blocks = _pattern_blocks(start, length, crypt, skip)
        if not blocks:
            continue
        data = b"".join(bytes(buf[b : b + 16]) for b in blocks)
        clear = Cipher(algorithms.AES(old), modes.CBC(iv)).decryptor().update(data)
        cipher = Cipher(algorithms.AES(new), modes.CBC(iv)).encryptor().update(clear)
        for n, b in enumerate(blocks):
            buf[b : b + 16] = cipher[16 * n : 16 * n + 16]


def rekey_segment(data: bytes, info: InitProtection, old: ContentKey, new: ContentKey) -> bytes:
    """A segment encrypted with `old`, encrypted with `new` instead, each fragment naming `new` in a seig group."""
    if info.scheme not in ("cenc", "cbcs"):
        raise BoxError(f"key rotation of scheme {info.scheme!r}")
    buf = bytearray(data)
    moofs = [(start, payload, end) for btype, start, payload, end in iter_boxes(data) if btype == "moof"]
    for start, payload, end in moofs:
        trafs = [(tp, tend) for ttype, _, tp, tend in iter_boxes(data, payload, end) if ttype == "traf"]
        if len(trafs) != 1:
            raise BoxError(f"the moof at byte {start} has {len(trafs)} trafs (CMAF has one)")
        samples, _ = _traf_samples(data, start, *trafs[0], info.per_sample_iv_size)
        for s in samples:
            if info.scheme == "cenc":
                _rekey_cenc(buf, s, old.key, new.key)
            else:
                iv = s.iv if info.per_sample_iv_size else (info.constant_iv or b"")
                _rekey_cbcs(buf, s, iv, info.crypt_byte_block, info.skip_byte_block, old.key, new.key)
    # Then grow each moof by its seig boxes, from the last moof back so earlier offsets stay valid.
    for start, payload, end in reversed(moofs):
        tp, tend = next((tp, tend) for ttype, _, tp, tend in iter_boxes(bytes(buf), payload, end) if ttype == "traf")
        samples, trun_offsets = _traf_samples(bytes(buf), start, tp, tend, info.per_sample_iv_size)
        extra = seig_boxes(info, new.kid, len(samples))
        for q in trun_offsets:
            value = int.from_bytes(buf[q : q + 4], "big", signed=True) + len(extra)
            buf[q : q + 4] = value.to_bytes(4, "big", signed=True)
        traf_start = tp - 8
        buf[traf_start : traf_start + 4] = (_u32(buf, traf_start) + len(extra)).to_bytes(4, "big")
        buf[start : start + 4] = (_u32(buf, start) + len(extra)).to_bytes(4, "big")
        buf[tend:tend] = extra
    return bytes(buf)
