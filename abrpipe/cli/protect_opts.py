"""`abrpipe encode` options for content protection (abrpipe.protect), and the private key file that
carries --key values to the job (a Job holds the file's path, never a key)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import click

from abrpipe.errors import UsageError
from abrpipe.protect import SCHEMES, ProtectOptions


def protection_options(f):
    opts = [
        # A plain string checked in check(): an unknown scheme is one line (exit 2), not click's usage text.
        click.option("--encrypt", "encrypt", metavar="cenc|cbcs",
                     help="Common Encryption of every rendition: cenc (AES-CTR) or cbcs (AES-CBC 1:9 pattern, the one "
                          "scheme FairPlay, Widevine and PlayReady all play). Needs keys: --key, --keys, --cpix or ABRPIPE_KEYS."),
        click.option("--key", "keys", multiple=True, metavar="[CLASS=]KID:KEY",
                     help="A content key, 32 hex digits each side; CLASS (SD, HD, UHD, AUDIO) limits it to one track class. "
                          "Repeat for several classes, or for --hls-aes128 key periods. Prefer --keys FILE: arguments are "
                          "visible to other users of this machine."),
        click.option("--keys", "keys_file", type=click.Path(dir_okay=False),
                     help="TOML keys file (mode 0600): key / SD / HD / UHD / AUDIO = \"KID:KEY\", pssh = [...], periods = [...]."),
        click.option("--cpix", type=click.Path(dir_okay=False),
                     help="CPIX document from a DRM provider: keys, usage rules and Widevine/PlayReady/FairPlay signalling "
                          "(plain keys only; encrypted keys are refused)."),
        click.option("--pssh", "pssh_file", type=click.Path(dir_okay=False),
                     help="File of pssh boxes (binary, or one base64/hex box per line) to put in the inits and manifests with raw keys."),
        click.option("--hls-aes128", is_flag=True,
                     help="HLS-only output (no DASH MPD): whole-segment AES-128 with an explicit IV per segment, for old HLS clients."),
        click.option("--key-uri", metavar="TEMPLATE",
                     help="URI players fetch a key from: {kid} (hex), {kid_uuid}, {period}; e.g. https://keys.example.com/{kid}."),
        click.option("--key-rotation", type=click.IntRange(min=1), metavar="N",
                     help="With --hls-aes128: a new key every N segments. With --cpix key periods by @index: each period lasts N segments."),
        click.option("--embed-keys", is_flag=True,
                     help="Write the keys into OUTPUT/keys/<kid>.key (tests and demos only: anyone who can read OUTPUT can decrypt it)."),
        click.option("--allow-clear", is_flag=True,
                     help="Leave renditions without a key in the clear instead of failing."),
    ]
    for option in reversed(opts):
        f = option(f)
    return f


def check_scheme(scheme: str | None, where: str = "--encrypt") -> None:
    """An unknown scheme: one line naming the option (exit 2)."""
    if scheme is not None and scheme not in SCHEMES:
        raise UsageError(f"{where} {scheme!r}: unknown encryption scheme",
                         hint="use cenc (AES-CTR) or cbcs (AES-CBC, which FairPlay plays too); nothing was encoded")


def check(encrypt, keys, keys_file, cpix, pssh_file, hls_aes128, key_uri, key_rotation, embed_keys, allow_clear, outputs) -> None:
    check_scheme(encrypt)
    wanted = bool(encrypt or hls_aes128)
    given = [name for name, v in (("--key", keys), ("--keys", keys_file), ("--cpix", cpix), ("--pssh", pssh_file),
                                  ("--key-uri", key_uri), ("--key-rotation", key_rotation), ("--embed-keys", embed_keys),
                                  ("--allow-clear", allow_clear)) if v]
    if given and not wanted:
        raise UsageError(f"{given[0]} goes with --encrypt or --hls-aes128")
    if encrypt and hls_aes128:
        raise UsageError("--encrypt and --hls-aes128 are two different outputs: choose one")
    if key_rotation and not (hls_aes128 or cpix):
        raise UsageError("--key-rotation goes with --hls-aes128, or with --cpix key periods given by @index",
                         hint="CENC keys rotate only from a CPIX document's ContentKeyPeriodList")
    if sum(bool(v) for v in (keys, keys_file, cpix)) > 1:
        raise UsageError("give keys one way: --key, --keys or --cpix")
    if encrypt and "hls" in outputs and not (cpix or pssh_file or key_uri or embed_keys):
        raise UsageError("HLS players need to know where the key is: add --key-uri TEMPLATE (or --embed-keys, "
                         "--pssh, --cpix), or use a profile with outputs = [\"dash\"]")
    if hls_aes128 and "hls" not in outputs:
        raise UsageError("--hls-aes128 writes HLS only, and the profile asks for no HLS output")


@contextlib.contextmanager
def protect_job_options(encrypt, keys, keys_file, cpix, pssh_file, hls_aes128, key_uri, key_rotation, embed_keys,
                        allow_clear, key_classes=()) -> Iterator[ProtectOptions | None]:
    """ProtectOptions for the Job; --key values live in a private file only while the job runs."""
    if not (encrypt or hls_aes128):
        yield None
        return
    private = None
    if keys:
        from abrpipe.protect.keys import write_private_keys_file

        private = write_private_keys_file(keys)
    try:
        yield ProtectOptions(
            scheme=encrypt, keys_file=private or keys_file, cpix=cpix, pssh_file=pssh_file, hls_aes128=hls_aes128,
            key_uri=key_uri, key_rotation=key_rotation, embed_keys=embed_keys, allow_clear=allow_clear,
            key_classes=tuple(key_classes),
        )
    finally:
        if private:
            with contextlib.suppress(OSError):
                os.remove(private)


def preflight(opts: ProtectOptions) -> None:
    """Read the keys now: a bad key or document fails before anything is encoded."""
    from abrpipe.protect.stage import load_keys, read_cpix_checked

    if opts.cpix:
        read_cpix_checked(opts.cpix)
    else:
        load_keys(opts, required=bool(opts.scheme) or not opts.embed_keys)


def warnings() -> list[str]:
    from abrpipe.protect import stage

    shown = list(dict.fromkeys(stage.warnings))
    stage.warnings.clear()
    return shown


def describe(summary: dict | None) -> str:
    """'cbcs KID 00112233445566778899aabbccddeeff' for the summary: the scheme and the KIDs (never a key)."""
    if not summary:
        return "clear"
    kids = summary.get("kids") or []
    return f"{summary['scheme']} KID " + ",".join(kids)
