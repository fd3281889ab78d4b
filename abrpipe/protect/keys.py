"""Content keys: where they come from (a KID:KEY pair, a keys file, the environment, a CPIX document)
and which rendition each one protects (audio, or the video track class SD / HD / UHD by height).

A key never appears in a repr, an error message, a log or the record: ContentKey hides it, and
every message names the key by its KID only.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import tomllib
import uuid
from dataclasses import dataclass, field

from abrpipe.errors import InputError

KEYS_ENV = "ABRPIPE_KEYS"  # "KID:KEY" (hex), or several "class=KID:KEY" separated by commas
TRACK_CLASSES = ("SD", "HD", "UHD", "AUDIO")
# Video track classes by height, as DRM providers recommend (a key per class): up to 576 lines is SD,
# up to 1080 HD, above that UHD.
SD_MAX_HEIGHT = 576
HD_MAX_HEIGHT = 1080
KEY_HINT = "a key is KID:KEY, two 32-digit hexadecimal numbers (16 bytes each)"


class KeyError_(InputError):
    """A key or key document is unusable (exit code 3, like any unusable input)."""


@dataclass(frozen=True)
class ContentKey:
    kid: bytes  # 16 bytes
    key: bytes = field(repr=False)  # 16 bytes; never printed
    iv: bytes | None = field(default=None, repr=False)  # explicit IV (CPIX explicitIV), else chosen by the packager

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    @property
    def kid_uuid(self) -> str:
        return str(uuid.UUID(bytes=self.kid))

    def __getstate__(self) -> dict:  # never pickled: keys travel by file, not inside a Job
        raise TypeError("a ContentKey is never pickled")


def track_class(kind: str, height: int | None, limits: tuple[tuple[str, int], ...] = ()) -> str:
    """AUDIO, or SD / HD / UHD by height (a profile's key_classes may move the limits)."""
    if kind == "audio":
        return "AUDIO"
    bounds = {"SD": SD_MAX_HEIGHT, "HD": HD_MAX_HEIGHT, **dict(limits)}
    h = height or 0
    return "SD" if h <= bounds["SD"] else "HD" if h <= bounds["HD"] else "UHD"


def parse_hex16(text: str, what: str, where: str) -> bytes:
    """16 bytes from 32 hex digits (dashes of a UUID allowed); the message never repeats a key."""
    cleaned = text.strip().replace("-", "")
    try:
        value = bytes.fromhex(cleaned)
    except ValueError:
        raise KeyError_(f"{where}: the {what} is not hexadecimal", hint=KEY_HINT) from None
    if len(value) != 16:
        raise KeyError_(f"{where}: the {what} is {len(value)} bytes, not 16", hint=KEY_HINT)
    return value


def parse_pair(text: str, where: str) -> ContentKey:
    """'KID:KEY' (hex) -> ContentKey."""
    kid, sep, key = text.strip().partition(":")
    if not sep:
        raise KeyError_(f"{where}: malformed key (expected KID:KEY)", hint=KEY_HINT)
    return ContentKey(parse_hex16(kid, "KID", where), parse_hex16(key, "key", where))


def parse_b64_16(text: str, what: str, where: str) -> bytes:
    try:
        value = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyError_(f"{where}: the {what} is not base64") from None
    if len(value) != 16:
        raise KeyError_(f"{where}: the {what} is {len(value)} bytes, not 16")
    return value


@dataclass(frozen=True)
class KeySet:
    """The keys of one job: one per track class ('*' = every class without its own key)."""

    by_class: dict[str, ContentKey]
    pssh: tuple[bytes, ...] = ()  # extra pssh boxes (Widevine, PlayReady...) given with raw keys
    periods: tuple[ContentKey, ...] = ()  # HLS AES-128: the keys of successive key periods, in order

    def for_track(self, kind: str, height: int | None, limits: tuple[tuple[str, int], ...] = ()) -> ContentKey | None:
        return self.by_class.get(track_class(kind, height, limits)) or self.by_class.get("*")

    def all(self) -> list[ContentKey]:
        if self.periods:
            return list(self.periods)
        unique: dict[bytes, ContentKey] = {}
        for k in self.by_class.values():
            unique.setdefault(k.kid, k)
        return list(unique.values())


def warn_if_world_readable(path: str) -> str | None:
    """A warning when other users can read a key file (it should be mode 0600)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"{path}: key file is readable by other users (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
    return None


def read_keys_file(path: str) -> KeySet:
    """keys.toml:

        key = "KID:KEY"            # every track without a key of its own
        SD = "KID:KEY"             # video up to 576 lines; HD up to 1080; UHD above
        HD = "KID:KEY"
        AUDIO = "KID:KEY"
        pssh = ["<base64 pssh box>", ...]   # optional: Widevine / PlayReady system data
        periods = ["KID:KEY", ...]  # --hls-aes128: one key per key period, in order
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise KeyError_(f"{path}: cannot read the keys file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError:
        # the parser's message may quote the file: a key must not reach the terminal
        raise KeyError_(f"{path}: not a valid TOML keys file", hint='write lines like HD = "KID:KEY"') from None
    by_class: dict[str, ContentKey] = {}
    pssh: list[bytes] = []
    periods: list[ContentKey] = []
    for name, value in data.items():
        where = f"{path}: {name}"
        if name == "periods":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise KeyError_(f"{where}: expected a list of KID:KEY strings", hint=KEY_HINT)
            periods += [parse_pair(v, f"{where}[{n}]") for n, v in enumerate(value)]
            continue
        if name == "pssh":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise KeyError_(f"{where}: expected a list of base64 pssh boxes")
            pssh += [read_pssh_text(v, where) for v in value]
            continue
        cls = "*" if name == "key" else name.upper()
        if cls != "*" and cls not in TRACK_CLASSES:
            raise KeyError_(f"{where}: unknown track class (expected key, SD, HD, UHD, AUDIO or pssh)")
        if not isinstance(value, str):
            raise KeyError_(f"{where}: expected a string KID:KEY", hint=KEY_HINT)
        by_class[cls] = parse_pair(value, where)
    if not by_class and not periods:
        raise KeyError_(f"{path}: the keys file holds no key", hint='add key = "KID:KEY"')
    return KeySet(by_class, tuple(pssh), tuple(periods))


def write_private_keys_file(values: tuple[str, ...], directory: str | None = None) -> str:
    """--key values (KID:KEY or CLASS=KID:KEY) checked, then written to a new 0600 keys file.

    The caller removes it when the job is done; a Job carries only its path."""
    import tempfile

    lines = []
    plain = []
    for value in values:
        name, eq, pair = value.partition("=")
        cls = name.strip().upper() if eq else None
        if cls is not None and cls not in TRACK_CLASSES:
            raise KeyError_(f"--key: unknown track class {name.strip()!r} (expected SD, HD, UHD or AUDIO)", hint=KEY_HINT)
        key = parse_pair(pair if eq else value, "--key")
        text = f'"{key.kid.hex()}:{key.key.hex()}"'
        if cls:
            lines.append(f"{cls} = {text}")
        else:
            plain.append(text)
    if plain:
        lines.insert(0, f"key = {plain[0]}")
        if len(plain) > 1:
            lines.append(f"periods = [{', '.join(plain)}]")
    fd, path = tempfile.mkstemp(prefix="abrpipe-keys-", suffix=".toml", dir=directory)
    with os.fdopen(fd, "w", encoding="ascii") as fh:  # mkstemp: mode 0600, only this user reads it
        fh.write("\n".join(lines) + "\n")
    return path


def read_env_keys(value: str) -> KeySet:
    by_class: dict[str, ContentKey] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        name, eq, pair = item.partition("=")
        cls = name.strip().upper() if eq else "*"
        if cls not in TRACK_CLASSES + ("*",):
            raise KeyError_(f"{KEYS_ENV}: unknown track class {name.strip()!r} (expected SD, HD, UHD or AUDIO)")
        by_class[cls] = parse_pair(pair if eq else item, KEYS_ENV)
    if not by_class:
        raise KeyError_(f"{KEYS_ENV} is set but empty", hint=KEY_HINT)
    return KeySet(by_class)


def read_pssh_text(text: str, where: str) -> bytes:
    """A pssh box given as base64 or hex; checked to be one whole 'pssh' box."""
    text = text.strip()
    try:
        box = bytes.fromhex(text)
    except ValueError:
        try:
            box = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise KeyError_(f"{where}: a pssh box must be base64 or hex") from None
    if len(box) < 32 or box[4:8] != b"pssh" or int.from_bytes(box[:4], "big") != len(box):
        raise KeyError_(f"{where}: not a whole 'pssh' box")
    return box


def read_pssh_file(path: str) -> tuple[bytes, ...]:
    """--pssh FILE: pssh boxes, either binary (concatenated) or one base64/hex box per line."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise KeyError_(f"{path}: cannot read the pssh file ({exc.strerror})") from None
    boxes: list[bytes] = []
    if data[4:8] == b"pssh":
        pos = 0
        while pos < len(data):
            size = int.from_bytes(data[pos : pos + 4], "big")
            if size < 32 or data[pos + 4 : pos + 8] != b"pssh" or pos + size > len(data):
                raise KeyError_(f"{path}: not a sequence of whole 'pssh' boxes (byte {pos})")
            boxes.append(data[pos : pos + size])
            pos += size
        return tuple(boxes)
    for n, line in enumerate(data.decode("ascii", "replace").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            boxes.append(read_pssh_text(line, f"{path}:{n}"))
    if not boxes:
        raise KeyError_(f"{path}: no pssh box in the file")
    return tuple(boxes)
