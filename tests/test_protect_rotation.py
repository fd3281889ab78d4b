"""CENC key rotation from a CPIX document's key periods: each period's segments are encrypted with
that period's key (decrypted by Shaka Packager, period by period, back to exactly the clear samples
of the same encode), named in each fragment by a seig sample group, and signalled in both manifests;
`abrpipe validate` knows the layout (PROT-FRAGMENT-KID); no key leaks."""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
import test_protect
from media import requires_ffmpeg
from protect_media import (
    AUDIO2_KID,
    AUDIO_KID,
    PROFILE,
    ROTATION,
    VIDEO2_KID,
    rotation_cpix,
    widevine_pssh,
)
from test_protect import (
    _leaks,
    joined,
    packager_decrypt,
    packet_hashes,
    protect_copy,
    run_cli,
    sample_hashes,
    secret_forms,
)

from abrpipe.protect import ProtectOptions
from abrpipe.protect.boxes import read_init_protection, read_segment_protection
from abrpipe.protect.systems import COMMON, WIDEVINE
from abrpipe.validate import RULES, validate_output

pytestmark = requires_ffmpeg
# The protection tests' fixtures: their tiny clip and its clear encode.
clip = test_protect.clip
clear_out = test_protect.clear_out
BOUNDARY_S = 2.0


@pytest.fixture(scope="module")
def rotated(clip, tmp_path_factory) -> tuple[Path, object]:
    """A whole `abrpipe encode --encrypt cbcs --cpix` with two key periods, its --json record kept."""
    from click.testing import CliRunner

    from abrpipe import runner
    from abrpipe.cli import cli

    root = tmp_path_factory.mktemp("rotation-out")
    cpix = rotation_cpix(root / "rotation.cpix.xml")
    out = root / "out"
    started: list[tuple[list[str], int | None]] = []  # every process's argv, and its flag file's mode
    real = runner.capture_result

    def spy(argv, **kwargs):
        flagfile = next((a.split("=", 1)[1] for a in argv if a.startswith("--flagfile=")), None)
        started.append((list(argv), os.stat(flagfile).st_mode & 0o777 if flagfile else None))
        return real(argv, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "capture_result", spy)
        result = CliRunner().invoke(cli, ["encode", str(clip), "-p", PROFILE, "-o", str(out), "--encrypt", "cbcs",
                                          "--cpix", str(cpix), "--keep-logs", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result.started = started
    return out, result


def _period_kids(kind: str) -> list[str]:
    return [keys[kind][0] for _, keys in ROTATION]


def _segments_by_period(rdir: Path) -> list[list[str]]:
    """The rendition's segments, split at the key boundary by their tfdt."""
    from abrpipe import mp4

    track = mp4.read_init(rdir / "init.mp4")
    periods: list[list[str]] = [[], []]
    for seg in sorted(p.name for p in rdir.glob("seg_*.m4s")):
        start = mp4.read_segment(rdir / seg, track).base_decode_time / track.timescale
        periods[start + 0.05 >= BOUNDARY_S].append(seg)
    return periods


def _period_file(rdir: Path, names: list[str], default_kid: str, kid: str, dest: Path) -> Path:
    """The init + one period's segments, for Shaka Packager's decryptor. Its demuxer ignores seig sample
    groups (it looks up the tenc's default KID for every sample), so for a later period the copy of
    the init names that period's KID in its tenc: the packager then asks for exactly that key."""
    init = (rdir / "init.mp4").read_bytes()
    if kid != default_kid:
        assert init.count(bytes.fromhex(default_kid)) >= 1
        init = init.replace(bytes.fromhex(default_kid), bytes.fromhex(kid))
    dest.write_bytes(init + b"".join((rdir / name).read_bytes() for name in names))
    return dest


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_each_period_decrypts_with_its_own_key_to_the_clear_samples(scheme, clip, clear_out, tmp_path):
    cpix = rotation_cpix(tmp_path / "rotation.cpix.xml")
    title = protect_copy(clear_out, clip, tmp_path / "enc", ProtectOptions(scheme=scheme, cpix=str(cpix)))
    for r in title.renditions:
        kids = _period_kids(r.kind)
        keys = {kid: key for _, ks in ROTATION for kid, key in ks.values()}
        assert r.protection is not None and r.protection.kid == kids[0] and r.protection.summary()["kids"] == sorted(kids)
        rdir = tmp_path / "enc" / r.id
        init = read_init_protection((rdir / "init.mp4").read_bytes())
        assert init.kid_hex == kids[0]  # one init: the first period's KID is the default
        common = [p for p in init.pssh if p.system_id == COMMON]
        assert [set(p.kids) for p in common] == [{bytes.fromhex(k) for k in kids}]  # every period's KID
        periods = _segments_by_period(rdir)
        assert all(periods), f"{r.id}: both periods have segments: {periods}"
        for n, names in enumerate(periods):
            for name in names:
                for frag in read_segment_protection((rdir / name).read_bytes(), init.per_sample_iv_size):
                    if n == 0:  # the first period keeps the tenc's default KID: no sample group
                        assert frag.group_kids == () and frag.default_samples == frag.sample_count
                    else:  # later periods: every sample in the seig group of the period's KID
                        assert frag.group_kids == (bytes.fromhex(kids[n]),) and frag.default_samples == 0
        clear = sample_hashes(joined(clear_out / r.id, tmp_path / f"{r.id}-clear.mp4"))
        decrypted: list[str] = []
        for n, names in enumerate(periods):
            src = _period_file(rdir, names, kids[0], kids[n], tmp_path / f"{r.id}-p{n}.mp4")
            out = packager_decrypt(src, tmp_path / f"{r.id}-p{n}-dec.mp4", r.kind, kids[n], keys[kids[n]], tmp_path)
            mine = packet_hashes(out)
            assert mine == clear[len(decrypted) : len(decrypted) + len(mine)], f"{r.id}: period {n + 1} decrypted"
            # The other period's key does not decrypt this period: the keys really differ.
            wrong = packager_decrypt(src, tmp_path / f"{r.id}-p{n}-wrong.mp4", r.kind, kids[n], keys[kids[1 - n]], tmp_path)
            assert packet_hashes(wrong) != mine
            decrypted += mine
        assert decrypted == clear, f"{r.id}: the periods, each decrypted with its key, are not the clear samples"


def test_rotated_output_is_signalled_and_validates(rotated):
    out, result = rotated
    from lxml import etree

    report = validate_output(str(out))
    assert report.ok() and report.rules("error") == set(), report.rules()
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011", "cenc": "urn:mpeg:cenc:2013"}
    mpd = etree.parse(str(out / "manifest.mpd"))
    for aset in mpd.iterfind(".//d:AdaptationSet", ns):
        kind = aset.get("contentType")
        kids = _period_kids(kind)
        cps = {cp.get("schemeIdUri"): cp for cp in aset.iterfind("d:ContentProtection", ns)}
        assert cps["urn:mpeg:dash:mp4protection:2011"].get("{urn:mpeg:cenc:2013}default_KID") == str(uuid.UUID(kids[0]))
        # Widevine: the first period's box (the init holds both); ClearKey: the common pssh naming both KIDs.
        wv = [base64.b64decode(p.text) for p in cps[f"urn:uuid:{WIDEVINE}"].iterfind("cenc:pssh", ns)]
        assert wv == [widevine_pssh(kids[0])]
        ck = cps["urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"].findtext("cenc:pssh", namespaces=ns)
        from abrpipe.protect.systems import parse_pssh

        assert set(parse_pssh(base64.b64decode(ck)).kids) == {bytes.fromhex(k) for k in kids}
    for rdir in (p for p in out.iterdir() if (p / "init.mp4").exists()):
        kids = _period_kids("audio" if rdir.name.startswith("audio") else "video")
        lines = (rdir / "playlist.m3u8").read_text().splitlines()
        # Before the first segment: period 1's lines; before the first segment of period 2: its own.
        keyids = [line.rsplit("KEYID=0x", 1)[1] for line in lines if line.startswith("#EXT-X-KEY:")]
        assert keyids and set(keyids) == set(kids) and keyids.index(kids[1]) > 0
        first_p2 = _segments_by_period(rdir)[1][0]
        key_run = lines[: lines.index(first_p2)]
        last_keys = [line for line in key_run if line.startswith("#EXT-X-KEY:")][-1]
        assert last_keys.endswith(f"KEYID=0x{kids[1]}")
        wv = base64.b64encode(widevine_pssh(kids[1])).decode()
        assert any(f'URI="data:text/plain;base64,{wv}"' in line for line in key_run)
    probed = {r["rendition"]: r["protection"] for r in json.loads(run_cli("probe", str(out), "--json").stdout)["renditions"]}
    for rid, protection in probed.items():
        kids = _period_kids("audio" if rid.startswith("audio") else "video")
        assert protection["kid"] == str(uuid.UUID(kids[0])) and protection["kids"] == sorted(str(uuid.UUID(k)) for k in kids)
    record = json.loads(result.stdout)
    assert {r["id"]: tuple(r["protection"]["kids"]) for r in record["renditions"]} == {
        r["id"]: tuple(sorted(_period_kids(r["kind"]))) for r in record["renditions"]}


def test_rotated_keys_never_leak(rotated, clip, tmp_path):
    """Every file of the rotated output (logs kept), its --json and a --dry-run: none holds a key."""
    from protect_media import ROTATION_KEYS

    out, result = rotated
    secrets = [s for key in ROTATION_KEYS.values() for s in secret_forms(key)]
    assert not _leaks(result.output.encode(), secrets)
    packager_runs = [(argv, mode) for argv, mode in result.started if mode is not None]
    assert packager_runs and all(mode == 0o600 for _, mode in packager_runs), "keys go to the packager by a 0600 flag file"
    assert not _leaks(" ".join(a for argv, _ in result.started for a in argv).encode(), secrets)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(".logs" in p.parts for p in files) and (out / "abrpipe.json") in files
    for p in files:
        assert not _leaks(p.read_bytes(), secrets), f"a key leaked into {p}"
    dry = run_cli("encode", str(clip), "-p", PROFILE, "-o", str(tmp_path / "dry"), "--encrypt", "cenc",
                  "--cpix", str(rotation_cpix(tmp_path / "doc.xml")), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "re-encrypted with that period's key" in dry.stdout
    assert not _leaks((dry.stdout + dry.stderr).encode(), secrets)


def _seig_kid_unknown(out: Path) -> None:
    """A period-2 video fragment's seig names a KID no manifest declares."""
    rdir = out / "180p-300k"
    seg = rdir / _segments_by_period(rdir)[1][0]
    data = bytearray(seg.read_bytes())
    at = data.index(bytes.fromhex(VIDEO2_KID))
    data[at : at + 16] = bytes.fromhex("dd" * 16)
    seg.write_bytes(bytes(data))


def _hls_keyid_dropped(out: Path) -> None:
    """The audio playlist no longer names period 2's KID."""
    playlist = out / "audio-aac-64k" / "playlist.m3u8"
    playlist.write_text(playlist.read_text().replace(f"KEYID=0x{AUDIO2_KID}", f"KEYID=0x{AUDIO_KID}"))


@pytest.mark.parametrize("breakage", [_seig_kid_unknown, _hls_keyid_dropped])
def test_undeclared_fragment_kid_fires_alone(breakage, rotated, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(rotated[0], out)
    breakage(out)
    report = validate_output(str(out))
    assert report.rules() & {r for r in RULES if r.startswith("PROT-")} == {"PROT-FRAGMENT-KID"}, report.rules()


def test_index_periods_last_key_rotation_segments_each(clip, clear_out, tmp_path):
    """Key periods by @index, --key-rotation 2: the key changes after 2 one-second segments, as with @start/@end."""
    doc = rotation_cpix(tmp_path / "index.cpix.xml", by_index=True)
    title = protect_copy(clear_out, clip, tmp_path / "enc", ProtectOptions(scheme="cenc", cpix=str(doc), key_rotation=2))
    for r in title.renditions:
        kids = _period_kids(r.kind)
        assert [(p.kid, p.first_segment) for p in r.protection.periods] == [(kids[0], 0), (kids[1], 2)]
        rdir = tmp_path / "enc" / r.id
        info = read_init_protection((rdir / "init.mp4").read_bytes())
        for n, names in enumerate(_segments_by_period(rdir)):
            for name in names:
                groups = {k for f in read_segment_protection((rdir / name).read_bytes(), info.per_sample_iv_size) for k in f.group_kids}
                assert groups == (set() if n == 0 else {bytes.fromhex(kids[1])}), (r.id, name)


def test_index_periods_need_a_period_length_and_keys_for_every_period(clip, tmp_path):
    doc = rotation_cpix(tmp_path / "index.cpix.xml", by_index=True)
    args = ["encode", str(clip), "-p", PROFILE, "-o", str(tmp_path / "out"), "--encrypt", "cenc", "--cpix", str(doc)]
    proc = run_cli(*args)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert proc.returncode == 3 and len(errors) == 1 and "key periods by @index need a period length" in errors[0], proc.stderr
    # A period without a rule for the audio track: one line naming the rendition and the period.
    text = doc.read_text()
    cut = text.index(f'<cpix:ContentKeyUsageRule kid="{uuid.UUID(AUDIO2_KID)}"')
    doc.write_text(text[:cut] + text[text.index("</cpix:ContentKeyUsageRule>", cut) + len("</cpix:ContentKeyUsageRule>"):])
    proc = run_cli(*args, "--key-rotation", "2")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert proc.returncode == 3 and len(errors) == 1 and "no key for rendition audio-aac-64k in key period 'p2'" in errors[0], proc.stderr
    assert not (tmp_path / "out").exists()
