"""Protection in a jobs file (`abrpipe batch`): a `protection` table per job or in [defaults].

    [defaults.protection]
    encrypt = "cbcs"                 # or hls_aes128 = true
    keys = "keys.toml"               # a keys file (relative to the jobs file, mode 0600) ...
    cpix = "provider.cpix.xml"       # ... or a CPIX document; neither: ABRPIPE_KEYS where the job runs
    key_uri = "https://keys.example.com/{kid}"

Keys are never written in a jobs file: a `key` field, or a KID:KEY where a file name belongs, is
refused with one line that never repeats the value.
"""

from __future__ import annotations

import os
import re
from typing import Any

from abrpipe.protect import SCHEMES, ProtectOptions

FIELDS: dict[str, str] = {
    "encrypt": 'Common Encryption scheme: "cenc" or "cbcs"',
    "keys": "keys file (TOML, mode 0600), relative to the jobs file",
    "cpix": "CPIX document from a DRM provider, relative to the jobs file",
    "pssh": "file of pssh boxes to signal with raw keys, relative to the jobs file",
    "hls_aes128": "whole-segment HLS AES-128 (HLS only) instead of Common Encryption",
    "key_uri": "URI template players fetch a key from: {kid}, {kid_uuid}, {period}",
    "key_rotation": "a new key every N segments (hls_aes128; or CPIX key periods by @index)",
    "embed_keys": "write the keys into the output (tests and demos only)",
    "allow_clear": "leave renditions without a key in the clear",
}
_PATHS = ("keys", "cpix", "pssh")
INLINE_HINT = "keys never go in a jobs file: give a keys file (keys = \"keys.toml\", mode 0600), a CPIX document, or set ABRPIPE_KEYS"
_KEYLIKE = re.compile(r"^\s*(\w+=)?[0-9a-fA-F-]{32,36}:[0-9a-fA-F-]{32,36}\s*$")


def parse_table(value: Any) -> dict[str, Any]:
    """Check a `protection` table's fields and types (ValueError names the field, never a key)."""
    if not isinstance(value, dict):
        raise ValueError("expected a table like { encrypt = \"cbcs\", keys = \"keys.toml\" }")
    out: dict[str, Any] = {}
    for name, v in value.items():
        if name in ("key", "key_id", "kid_key"):
            raise ValueError(f"{name}: {INLINE_HINT}")
        if name not in FIELDS:
            raise ValueError(f"{name}: unknown key (expected one of: {', '.join(FIELDS)})")
        if name in ("hls_aes128", "embed_keys", "allow_clear"):
            if not isinstance(v, bool):
                raise ValueError(f"{name}: expected true or false")
        elif name == "key_rotation":
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a number of segments (1 or more)")
        elif not isinstance(v, str) or not v.strip():
            raise ValueError(f"{name}: expected a non-empty string")
        elif name in _PATHS and _KEYLIKE.match(v):
            raise ValueError(f"{name}: this is a key, not a file name; {INLINE_HINT}")
        elif name == "encrypt" and v not in SCHEMES:
            raise ValueError(f"encrypt: unknown encryption scheme {v!r} (use \"cenc\" or \"cbcs\")")
        out[name] = v
    return out


def options(table: dict[str, Any], base_dir: str, key_classes: tuple = (), profile_scheme: str | None = None) -> ProtectOptions | None:
    """ProtectOptions for one job (paths resolved against the jobs file), or None: no protection.
    ValueError: an inconsistent table (the message names the field)."""
    scheme = table.get("encrypt") or (None if table.get("hls_aes128") else profile_scheme)
    if not (scheme or table.get("hls_aes128")):
        # Signalling fields alone (a [defaults] key_uri, say) wait for a job that encrypts; keys do not.
        given = [k for k in _PATHS if table.get(k)]
        if given:
            raise ValueError(f"{given[0]} goes with encrypt = \"cenc\" or \"cbcs\" (or hls_aes128 = true)")
        return None
    if scheme and table.get("hls_aes128"):
        raise ValueError("encrypt and hls_aes128 are two different outputs: choose one")
    if sum(bool(table.get(k)) for k in ("keys", "cpix")) > 1:
        raise ValueError("keys, cpix: give keys one way")

    def path(name: str) -> str | None:
        v = table.get(name)
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(v))) if v else None

    return ProtectOptions(
        scheme=scheme, keys_file=path("keys"), cpix=path("cpix"), pssh_file=path("pssh"),
        hls_aes128=bool(table.get("hls_aes128")), key_uri=table.get("key_uri"), key_rotation=table.get("key_rotation"),
        embed_keys=bool(table.get("embed_keys")), allow_clear=bool(table.get("allow_clear")), key_classes=tuple(key_classes),
    )
