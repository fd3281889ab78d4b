"""Content protection: an optional stage between encode and package.

    --encrypt cenc|cbcs   Common Encryption of the one CMAF segment set (DASH + HLS), with ClearKey
                          signalling, and Widevine / PlayReady / FairPlay signalling from a CPIX
                          document or --pssh boxes.
    --hls-aes128          whole-segment AES-128 for old HLS clients (HLS only), keys rotated every
                          N segments.

Keys never travel inside a Job: ProtectOptions holds the paths of key files (the CLI writes --key
values into a private 0600 file) and the environment variable ABRPIPE_KEYS is read where the job runs.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMES = ("cenc", "cbcs")


@dataclass(frozen=True)
class ProtectOptions:
    scheme: str | None = None  # cenc | cbcs (None with --hls-aes128 only)
    keys_file: str | None = None  # keys.toml, or the CLI's private file holding --key values
    cpix: str | None = None
    pssh_file: str | None = None
    hls_aes128: bool = False
    key_uri: str | None = None  # template: {kid} (hex), {kid_uuid}, {period}
    key_rotation: int | None = None  # AES-128: a new key every N segments; CPIX @index key periods: N segments each
    embed_keys: bool = False  # write the keys into OUT/keys/ (tests, demos)
    allow_clear: bool = False  # renditions without a key stay in the clear instead of failing
    key_classes: tuple[tuple[str, int], ...] = ()  # the profile's SD / HD height limits

    @property
    def enabled(self) -> bool:
        return bool(self.scheme or self.hls_aes128)


def _register() -> None:
    from abrpipe import stages
    from abrpipe.protect.stage import ProtectStage

    stages.register(ProtectStage, order=stages.ORDER_ENCRYPT)


_register()
