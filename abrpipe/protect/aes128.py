"""HLS AES-128: every media segment encrypted whole with AES-128-CBC (PKCS#7 padding), an explicit
random IV per segment, a new key every N segments. The init segments stay in the clear (EXT-X-MAP
comes before the first EXT-X-KEY). This output is for HLS only: DASH players cannot read it."""

from __future__ import annotations

import os
from dataclasses import replace

from abrpipe.errors import DependencyError
from abrpipe.model import Rendition, Title
from abrpipe.protect.keys import ContentKey, KeyError_
from abrpipe.protect.model import KeyPeriod, Protection

SCHEME = "aes-128"


def _crypto():
    """`cryptography` comes with the protect extra: imported only when AES-128 is asked for."""
    try:
        from cryptography.hazmat.primitives import padding
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        raise DependencyError("--hls-aes128 needs the cryptography package", hint="pip install 'abrpipe[protect]'") from None
    return padding, Cipher, algorithms, modes


def encrypt_bytes(data: bytes, key: bytes, iv: bytes) -> bytes:
    padding, Cipher, algorithms, modes = _crypto()
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padder.update(data) + padder.finalize()) + enc.finalize()


def decrypt_bytes(data: bytes, key: bytes, iv: bytes) -> bytes:
    padding, Cipher, algorithms, modes = _crypto()
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(dec.update(data) + dec.finalize()) + unpadder.finalize()


def period_count(segments: int, rotation: int | None) -> int:
    return -(-segments // rotation) if rotation else 1


def protect_title(ctx, opts, given: list[ContentKey]) -> Title:
    from abrpipe.protect.stage import key_uri, write_key_files

    if not (opts.key_uri or opts.embed_keys):
        raise KeyError_("--hls-aes128 needs --key-uri TEMPLATE (where players fetch each key) or --embed-keys")
    _crypto()
    needed = max(period_count(len(r.segments), opts.key_rotation) for r in ctx.title.renditions)
    if given:
        if len(given) < needed:
            raise KeyError_(
                f"--key-rotation {opts.key_rotation} needs {needed} keys for this title and {len(given)} were given",
                hint="give one key per period (repeat --key), or --embed-keys to let abrpipe make them",
            )
        keys = given[:needed]
    elif opts.embed_keys:
        keys = [ContentKey(os.urandom(16), os.urandom(16)) for _ in range(needed)]
    else:
        raise KeyError_(
            "--hls-aes128 needs keys and none were given",
            hint="pass one --key KID:KEY per key period, --keys FILE, or --embed-keys (keys written into OUT/keys/)",
        )
    if opts.embed_keys:
        write_key_files(ctx.work_dir, keys)

    def protect(r: Rendition) -> Rendition:
        periods = []
        segments = list(r.segments)
        step = opts.key_rotation or len(segments)
        for p, first in enumerate(range(0, len(segments), step)):
            key = keys[p]
            ivs = []
            for i in range(first, min(first + step, len(segments))):
                iv = os.urandom(16)
                path = os.path.join(ctx.work_dir, r.id, segments[i].uri)
                with open(path, "rb") as fh:
                    clear = fh.read()
                encrypted = encrypt_bytes(clear, key.key, iv)
                with open(path, "wb") as fh:
                    fh.write(encrypted)
                # Byte ranges into an encrypted segment mean nothing: no I-frame playlist.
                segments[i] = replace(segments[i], size_bytes=len(encrypted), iframes=())
                ivs.append(iv.hex())
            uri = key_uri(opts, key.kid_hex, p)
            assert uri is not None  # embedded keys or an explicit template
            periods.append(KeyPeriod(first, key.kid_hex, uri, tuple(ivs)))
        protection = Protection(scheme=SCHEME, kid=keys[0].kid_hex, iv_size=16, periods=tuple(periods))
        return replace(r, segments=tuple(segments), protection=protection)

    return replace(ctx.title, video=tuple(protect(r) for r in ctx.title.video), audio=tuple(protect(r) for r in ctx.title.audio))
