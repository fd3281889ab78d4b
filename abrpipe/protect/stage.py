"""The protection stage: encrypt the encoded renditions in the work area, then re-read their boxes
into the model, so that the manifests signal exactly what the files carry."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace

from abrpipe import package
from abrpipe.errors import InputError, OutputError
from abrpipe.layout import INIT_NAME
from abrpipe.model import Rendition, Title
from abrpipe.protect import SCHEMES, ProtectOptions, packager
from abrpipe.protect.boxes import BoxError, read_init_protection
from abrpipe.protect.cpix import CpixDocument, PeriodRange, read_cpix
from abrpipe.protect.keys import (
    KEYS_ENV,
    ContentKey,
    KeyError_,
    KeySet,
    read_env_keys,
    read_keys_file,
    read_pssh_file,
    track_class,
    warn_if_world_readable,
)
from abrpipe.protect.model import DrmSignal, KeyPeriod, Protection
from abrpipe.protect.rekey import rekey_segment
from abrpipe.protect.systems import CLEARKEY, COMMON, PLAYREADY, common_pssh, parse_pssh
from abrpipe.stages import StageContext

KEYS_DIR = "keys"  # OUT/keys/<kid>.key, only with --embed-keys
CLEARKEY_NAME = "clearkey.json"  # the same keys for `abrpipe serve`'s ClearKey license endpoint
WORK_DIR = ".protect"
DEFAULT_EMBEDDED_URI = "../keys/{kid}.key"  # relative to a media playlist (OUT/<rendition>/playlist.m3u8)

warnings: list[str] = []  # shown by the CLI (key files readable by others, ...)


def options(job) -> ProtectOptions | None:
    opts = getattr(job, "protection", None)
    return opts if isinstance(opts, ProtectOptions) and opts.enabled else None


class ProtectStage:
    name = "protect"

    def wanted(self, job) -> bool:
        return options(job) is not None

    def run(self, ctx: StageContext) -> Title:
        opts = options(ctx.job)
        assert opts is not None
        if opts.hls_aes128:
            from abrpipe.protect import aes128

            keys = load_keys(opts, required=False)
            return aes128.protect_title(ctx, opts, keys.all() if keys else [])
        return encrypt_title(ctx, opts)


def load_keys(opts: ProtectOptions, *, required: bool = True) -> KeySet | None:
    """The job's keys from the keys file (or the CLI's private --key file), else ABRPIPE_KEYS."""
    extra_pssh: tuple[bytes, ...] = read_pssh_file(opts.pssh_file) if opts.pssh_file else ()
    keyset: KeySet | None = None
    if opts.keys_file:
        warning = warn_if_world_readable(opts.keys_file)
        if warning:
            warnings.append(warning)
        keyset = read_keys_file(opts.keys_file)
    elif os.environ.get(KEYS_ENV):
        keyset = read_env_keys(os.environ[KEYS_ENV])
    if keyset is None:
        if required:
            raise KeyError_(
                f"{opts.scheme or 'AES-128'} encryption (--encrypt or the profile's encryption) needs keys and none were given",
                hint=f"pass --key KID:KEY, --keys FILE, --cpix FILE, or set {KEYS_ENV}",
            )
        return None
    return replace(keyset, pssh=keyset.pssh + extra_pssh)


def read_cpix_checked(path: str) -> CpixDocument:
    """A CPIX document holds keys: readable by other users, it gets the key file's warning."""
    warning = warn_if_world_readable(path)
    if warning:
        warnings.append(warning)
    return read_cpix(path)


def _period_ranges(cpix: CpixDocument | None, plan, opts: ProtectOptions) -> list[PeriodRange] | None:
    """The CPIX key periods on the title's timeline, or None when keys do not rotate."""
    if cpix is None or not cpix.rotates:
        return None
    return cpix.period_ranges(plan.segment_s, opts.key_rotation)


def _track_keys(kind: str, width, height, rid: str, keys: KeySet | None, cpix: CpixDocument | None,
                ranges: list[PeriodRange] | None, opts: ProtectOptions) -> list[ContentKey] | None:
    """The key of each key period for one track ([key] without rotation), or None: no key at all."""
    if ranges is None:
        if cpix is not None:
            key = cpix.key_for(kind, width, height)
        else:
            assert keys is not None
            key = keys.for_track(kind, height, opts.key_classes)
        found: list[ContentKey | None] = [key]
    else:
        assert cpix is not None
        found = [cpix.key_for(kind, width, height, period=pr.id) for pr in ranges]
    if all(k is None for k in found):
        if not opts.allow_clear:
            raise KeyError_(
                f"{opts.cpix or 'the keys given'}: no key for rendition {rid} ({track_class(kind, height, opts.key_classes)} track)",
                hint="add a key for that track class, or --allow-clear to leave it unencrypted",
            )
        return None
    for pr, k in zip(ranges or [], found):
        if k is None:
            raise KeyError_(f"{opts.cpix}: no key for rendition {rid} in key period {pr.id!r}",
                            hint="every key period needs a ContentKeyUsageRule for every track")
    return [k for k in found if k is not None]


def encrypt_title(ctx: StageContext, opts: ProtectOptions) -> Title:
    if opts.scheme not in SCHEMES:
        raise InputError(f"unknown encryption scheme {opts.scheme!r}", hint="use --encrypt cenc or --encrypt cbcs")
    cpix = read_cpix_checked(opts.cpix) if opts.cpix else None
    keys = None if cpix else load_keys(opts)
    if cpix and opts.pssh_file:
        raise InputError("--pssh goes with raw keys; a CPIX document carries its own DRM system data")
    ranges = _period_ranges(cpix, ctx.plan, opts)
    # Renditions with the same key in every period share one packager run.
    groups: dict[tuple[bytes, ...], tuple[list[ContentKey], list[Rendition]]] = {}
    for r in ctx.title.renditions:
        period_keys = _track_keys(r.kind, r.width, r.height, r.id, keys, cpix, ranges, opts)
        if period_keys is not None:
            groups.setdefault(tuple(k.kid for k in period_keys), (period_keys, []))[1].append(r)

    tmp = os.path.join(ctx.work_dir, WORK_DIR)
    os.makedirs(tmp, exist_ok=True)
    try:
        for n, (period_keys, renditions) in enumerate(groups.values()):
            _encrypt_group(ctx, opts, period_keys, renditions, keys, cpix, tmp, n)
            if len({k.kid for k in period_keys}) > 1:
                assert ranges is not None
                for r in renditions:
                    _rotate(ctx.work_dir, r, period_keys, ranges)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.embed_keys:
        unique = {k.kid: k for ks, _ in groups.values() for k in ks}
        write_key_files(ctx.work_dir, list(unique.values()))

    by_id = {r.id: ks for ks, rs in groups.values() for r in rs}

    def reread(r: Rendition) -> Rendition:
        if r.id not in by_id:
            return r
        return _reread(ctx.work_dir, r, opts, cpix, by_id[r.id], ranges)

    return replace(ctx.title, video=tuple(reread(r) for r in ctx.title.video), audio=tuple(reread(r) for r in ctx.title.audio))


# A segment that starts this little before a key period's start belongs to that period (audio frames
# do not fall exactly on the segment grid).
PERIOD_SLACK_S = 0.05


def segment_periods(rendition: Rendition, ranges: list[PeriodRange]) -> list[int]:
    """The key period of each segment: the one its start time falls in."""
    out = []
    for seg in rendition.segments:
        t = (seg.start - rendition.segments[0].start) / rendition.timescale + PERIOD_SLACK_S
        out.append(max(n for n, pr in enumerate(ranges) if n == 0 or pr.start_s <= t))
    return out


def _rotate(work_dir: str, r: Rendition, period_keys: list[ContentKey], ranges: list[PeriodRange]) -> None:
    """Give the segments of each later key period their period's key (abrpipe.protect.rekey)."""
    fresh = package.read_rendition(work_dir, r.id, r.kind)
    rdir = os.path.join(work_dir, r.id)
    with open(os.path.join(rdir, INIT_NAME), "rb") as fh:
        info = read_init_protection(fh.read())
    if info is None:
        raise OutputError(f"{os.path.join(rdir, INIT_NAME)}: the packager wrote no protection")
    for seg, period in zip(fresh.segments, segment_periods(fresh, ranges)):
        key = period_keys[period]
        if key.kid == period_keys[0].kid:
            continue
        path = os.path.join(rdir, seg.uri)
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            data = rekey_segment(data, info, period_keys[0], key)
        except BoxError as exc:
            raise OutputError(f"{path}: cannot rotate the key of this segment ({exc})") from None
        with open(path, "wb") as fh:
            fh.write(data)


def _join(work_dir: str, r: Rendition, dest: str) -> None:
    with open(dest, "wb") as out:
        for name in [INIT_NAME] + [s.uri for s in r.segments]:
            with open(os.path.join(work_dir, r.id, name), "rb") as fh:
                shutil.copyfileobj(fh, out)


def _encrypt_group(ctx, opts, period_keys: list[ContentKey], renditions: list[Rendition], keys, cpix, tmp: str, n: int) -> None:
    key = period_keys[0]
    kids = list(dict.fromkeys(k.kid for k in period_keys))
    streams = []
    for r in renditions:
        joined = os.path.join(tmp, f"{r.id}.mp4")
        _join(ctx.work_dir, r, joined)
        out = os.path.join(tmp, "out", r.id)
        os.makedirs(out, exist_ok=True)
        streams.append(packager.PackagerStream(joined, r.kind, os.path.join(out, INIT_NAME), os.path.join(out, "seg_$Number%05d$.m4s")))
    if cpix is not None:
        # With key rotation the inits carry the pssh boxes of every period's key (the common one
        # lists every KID), so that a player asks for all of them before the first key change.
        pssh = [common_pssh(kids)] + [b for kid in kids for b in cpix.pssh_boxes(kid)]
    else:
        pssh = [common_pssh([key.kid])] + [b for b in keys.pssh if _pssh_for(b, key.kid)]
    plan = ctx.plan
    video = any(r.kind == "video" for r in renditions)
    fragment_s = plan.gop_s if video and plan.base_fps and plan.segment_gops > 1 else None
    with packager.flag_file() as flagfile:
        run = packager.build_run(
            streams, key, scheme=opts.scheme, pssh=pssh, segment_s=plan.segment_s, fragment_s=fragment_s, flagfile=flagfile
        )
        packager.execute(run, flagfile, log_path=os.path.join(ctx.log_dir, f"packager-{n}.log"))
    for r in renditions:
        rdir = os.path.join(ctx.work_dir, r.id)
        for name in os.listdir(rdir):
            if name == INIT_NAME or (name.startswith("seg_") and name.endswith(".m4s")):
                os.remove(os.path.join(rdir, name))
        out = os.path.join(tmp, "out", r.id)
        for name in os.listdir(out):
            os.replace(os.path.join(out, name), os.path.join(rdir, name))
            os.chmod(os.path.join(rdir, name), 0o644)  # the packager writes with the process umask


def _pssh_for(box: bytes, kid: bytes) -> bool:
    """A v1 pssh naming KIDs applies to those KIDs only; a v0 box applies to every key."""
    p = parse_pssh(box)
    return not p.kids or kid in p.kids


def write_key_files(work_dir: str, keys: list[ContentKey]) -> None:
    """--embed-keys: OUT/keys/<kid>.key, the 16 raw key bytes (what an HLS 'identity' URI serves), and
    OUT/clearkey.json, from which `abrpipe serve` answers ClearKey license requests."""
    kdir = os.path.join(work_dir, KEYS_DIR)
    os.makedirs(kdir, exist_ok=True)
    for k in keys:
        with open(os.path.join(kdir, f"{k.kid_hex}.key"), "wb") as fh:
            fh.write(k.key)
    with open(os.path.join(work_dir, CLEARKEY_NAME), "w", encoding="utf-8") as fh:
        json.dump({"keys": [{"kid": k.kid_hex, "key": k.key.hex()} for k in keys]}, fh, indent=2)


def key_uri(opts: ProtectOptions, kid_hex: str, period: int = 0) -> str | None:
    template = opts.key_uri or (DEFAULT_EMBEDDED_URI if opts.embed_keys else None)
    if template is None:
        return None
    h = kid_hex
    return template.format(kid=h, kid_uuid=f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", period=period)


def _reread(work_dir: str, r: Rendition, opts: ProtectOptions, cpix: CpixDocument | None, period_keys: list[ContentKey],
            ranges: list[PeriodRange] | None) -> Rendition:
    fresh = package.read_rendition(work_dir, r.id, r.kind)
    init_path = os.path.join(work_dir, r.id, INIT_NAME)
    kid = period_keys[0].kid
    try:
        with open(init_path, "rb") as fh:
            info = read_init_protection(fh.read())
    except (OSError, BoxError) as exc:
        raise OutputError(f"{init_path}: the encrypted init segment cannot be read ({exc})") from None
    if info is None or info.kid != kid:
        raise OutputError(f"{init_path}: the packager wrote no protection for key {kid.hex()}")
    rotating = len({k.kid for k in period_keys}) > 1
    periods: list[KeyPeriod] = []
    common_b64 = None
    if rotating:
        assert ranges is not None
        common_b64 = next((p.b64 for p in info.pssh if p.system_id == COMMON), None)
        for n, period in enumerate(segment_periods(fresh, ranges)):
            k = period_keys[period]
            if periods and periods[-1].kid == k.kid_hex:
                last = periods[-1]
                periods[-1] = replace(last, segment_uris=last.segment_uris + (fresh.segments[n].uri,))
                continue
            periods.append(KeyPeriod(n, k.kid_hex, key_uri(opts, k.kid_hex) or "", (),
                                     tuple(_systems(info, k.kid, cpix, rotating)), (fresh.segments[n].uri,)))
    protection = Protection(
        scheme=info.scheme,
        kid=info.kid_hex,
        iv_size=info.per_sample_iv_size,
        crypt_byte_block=info.crypt_byte_block,
        skip_byte_block=info.skip_byte_block,
        systems=(DrmSignal(CLEARKEY), *_systems(info, kid, cpix, rotating)),
        key_uri=key_uri(opts, info.kid_hex),
        periods=tuple(periods),
        common_pssh_b64=common_b64,
    )
    return replace(r, segments=fresh.segments, protection=protection)


def _systems(info, kid: bytes, cpix: CpixDocument | None, rotating: bool) -> list[DrmSignal]:
    """The DRM systems' signalling for one key: its pssh boxes in the init, plus what the CPIX
    document says about it (HLS lines, FairPlay, which has no pssh)."""
    systems: list[DrmSignal] = []
    own = {box for (k, _), box in cpix.pssh.items() if k == kid} if cpix is not None else set()
    for p in info.pssh:
        if p.system_id == COMMON or (rotating and p.box not in own):
            continue  # with rotation the init holds every period's boxes: keep this key's
        extra = cpix.signal(kid, p.system_id) if cpix else None
        systems.append(
            DrmSignal(
                p.system_id,
                pssh_b64=p.b64,
                pro_b64=extra.pro_b64 if extra and extra.pro_b64 else (_b64(p.data) if p.system_id == PLAYREADY else None),
                laurl=extra.laurl if extra else None,
                hls_media_tag=extra.hls_media_tag if extra else None,
                hls_master_tag=extra.hls_master_tag if extra else None,
                hls_uri=extra.hls_uri if extra else None,
            )
        )
    if cpix is not None:  # systems signalled without a pssh in the init (FairPlay)
        present = {s.system_id for s in systems}
        systems += [s for s in cpix.signals(kid) if s.system_id not in present]
    return systems


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def planned_groups(plan, opts: ProtectOptions) -> dict[tuple[bytes, ...], tuple[ContentKey, list[tuple[str, str]]]]:
    """Before the encode: which planned renditions each (first) key will protect. A rendition no key
    covers, in any key period, fails now (unless --allow-clear), with the message the stage would give
    after the encode."""
    cpix = read_cpix(opts.cpix) if opts.cpix else None
    keys = None if cpix else load_keys(opts)
    ranges = _period_ranges(cpix, plan, opts)
    groups: dict[tuple[bytes, ...], tuple[ContentKey, list[tuple[str, str]]]] = {}
    items = [(r.id, "video", r.width, r.height) for r in plan.video] + [(a.id, "audio", None, None) for a in plan.audio]
    for rid, kind, width, height in items:
        period_keys = _track_keys(kind, width, height, rid, keys, cpix, ranges, opts)
        if period_keys is not None:
            groups.setdefault(tuple(k.kid for k in period_keys), (period_keys[0], []))[1].append((rid, kind))
    return groups


def dry_run_lines(plan, opts: ProtectOptions, work_dir: str) -> list[str]:
    """What the protection stage will run after the encode, as comment lines for --dry-run: the
    packager commands as they will be run, but with the flag file (the keys) named, never shown."""
    import shlex

    if opts.hls_aes128:
        return [f"# then: every segment encrypted with AES-128-CBC in abrpipe (HLS only), a new key every "
                f"{opts.key_rotation or 'whole rendition of'} segment(s); keys are not shown"]
    lines = ["# then, to encrypt (the keys go in a private 0600 flag file, not shown):"]
    tmp = os.path.join(work_dir, WORK_DIR)
    for key, members in planned_groups(plan, opts).values():
        streams = [packager.PackagerStream(os.path.join(tmp, f"{rid}.mp4"), kind, os.path.join(tmp, "out", rid, INIT_NAME),
                                           os.path.join(tmp, "out", rid, "seg_$Number%05d$.m4s")) for rid, kind in members]
        video = any(kind == "video" for _, kind in members)
        fragment_s = plan.gop_s if video and plan.base_fps and plan.segment_gops > 1 else None
        run = packager.build_run(streams, key, scheme=opts.scheme or "cenc", pssh=[], segment_s=plan.segment_s,
                                 fragment_s=fragment_s, flagfile="KEYS.flags")
        lines.append(f"# {shlex.join(run.argv)}")
    if opts.cpix and read_cpix(opts.cpix).rotates:
        lines.append("# then: the segments of each later key period re-encrypted with that period's key in abrpipe, "
                     "named by a seig sample group in each fragment; keys are not shown")
    return lines
