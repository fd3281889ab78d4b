"""Content protection proved on the media: encrypted samples are not the clear ones, decrypting them
with Shaka Packager's raw-key decryptor (FFmpeg 5.1's -decryption_key gets the first sample of each
fragment wrong, pycenc drops the last sample of a one-sample fragment and has no cbcs) gives back
exactly the clear samples of the same encode; CPIX signalling lands where it belongs; keys never
leak; bad key input is one clear line and nothing is published."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from media import requires_ffmpeg
from protect_media import AUDIO_KEY, AUDIO_KID, KEY, KID, PROFILE, encode, tiny_clip

from abrpipe import package, registry
from abrpipe.pipeline import Job, prepare_job
from abrpipe.protect import ProtectOptions
from abrpipe.protect.boxes import read_init_protection, read_segment_protection
from abrpipe.protect.packager import packager_path
from abrpipe.protect.stage import ProtectStage
from abrpipe.protect.systems import FAIRPLAY, PLAYREADY, WIDEVINE, make_pssh, parse_pssh
from abrpipe.stages import StageContext

pytestmark = requires_ffmpeg
ABRPIPE = [sys.executable, "-m", "abrpipe"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return tiny_clip(tmp_path_factory.mktemp("protect-src"))


@pytest.fixture(scope="module")
def clear_out(clip, tmp_path_factory) -> Path:
    return encode(clip, tmp_path_factory.mktemp("protect-clear") / "clear-abr")


def keys_file(directory: Path, text: str) -> Path:
    path = directory / "keys.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def protect_copy(clear: Path, clip: Path, work: Path, opts: ProtectOptions):
    """Run the protection stage on a copy of a clear encode: the same samples, encrypted."""
    shutil.copytree(clear, work)
    job = Job(input=str(clip), output=str(work), profile=registry.load(PROFILE), protection=opts)
    source, plan = prepare_job(job)
    title = package.read_title(str(work), plan)
    logs = work / ".logs"
    logs.mkdir()
    return ProtectStage().run(StageContext(job, source, plan, str(work), str(logs), title))


def packet_hashes(path: Path, *pre: str) -> list[str]:
    """MD5 of every packet's data (stream copy: the samples as stored), in decode order."""
    out = subprocess.run(["ffmpeg", "-v", "error", *pre, "-i", str(path), "-map", "0", "-c", "copy", "-f", "framemd5", "-"],
                         check=True, capture_output=True, text=True).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def sample_hashes(path: Path) -> list[str]:
    """MD5 of every sample of a fragmented MP4, read from the boxes (trun sizes, mdat data)."""
    import hashlib

    from abrpipe.protect.boxes import iter_boxes

    data = path.read_bytes()
    hashes = []
    for btype, start, payload, end in iter_boxes(data):
        if btype != "moof":
            continue
        for ttype, _, tp, tend in iter_boxes(data, payload, end):
            if ttype != "traf":
                continue
            default_size = None
            for b, _, p, _e in iter_boxes(data, tp, tend):
                if b == "tfhd":
                    flags = int.from_bytes(data[p + 1 : p + 4], "big")
                    q = p + 8 + (8 if flags & 1 else 0) + (4 if flags & 2 else 0) + (4 if flags & 8 else 0)
                    if flags & 0x10:
                        default_size = int.from_bytes(data[q : q + 4], "big")
                elif b == "trun":
                    flags = int.from_bytes(data[p + 1 : p + 4], "big")
                    count = int.from_bytes(data[p + 4 : p + 8], "big")
                    q = p + 8
                    offset = start + int.from_bytes(data[q : q + 4], "big", signed=True) if flags & 1 else None
                    q += (4 if flags & 1 else 0) + (4 if flags & 4 else 0)
                    assert offset is not None, "tests read runs with a data offset"
                    for _ in range(count):
                        q += 4 if flags & 0x100 else 0
                        size = int.from_bytes(data[q : q + 4], "big") if flags & 0x200 else default_size
                        q += (4 if flags & 0x200 else 0) + (4 if flags & 0x400 else 0) + (4 if flags & 0x800 else 0)
                        hashes.append(hashlib.md5(data[offset : offset + size]).hexdigest())
                        offset += size
    return hashes


def decoded_hashes(path: Path, *pre: str) -> list[str]:
    proc = subprocess.run(["ffmpeg", "-v", "quiet", *pre, "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
                          capture_output=True, text=True)
    return [line.rsplit(",", 1)[1].strip() for line in proc.stdout.splitlines() if line and not line.startswith("#")]


def joined(rdir: Path, dest: Path, segments: list[str] | None = None) -> Path:
    with open(dest, "wb") as out:
        out.write((rdir / "init.mp4").read_bytes())
        for name in segments or sorted(p.name for p in rdir.glob("seg_*.m4s")):
            out.write((rdir / name).read_bytes())
    return dest


def packager_decrypt(src: Path, dest: Path, kind: str, kid: str, key: str, tmp: Path) -> Path:
    flags = tmp / "decrypt.flags"
    flags.write_text(f"--enable_raw_key_decryption\n--keys=label=:key_id={kid}:key={key}\n")
    flags.chmod(0o600)
    subprocess.run([packager_path(), f"in={src},stream={kind},output={dest}", f"--flagfile={flags}"],
                   check=True, capture_output=True)
    return dest


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_encrypted_samples_decrypt_to_the_clear_encode(scheme, clip, clear_out, tmp_path):
    kf = keys_file(tmp_path, f'key = "{KID}:{KEY}"\n')
    title = protect_copy(clear_out, clip, tmp_path / "enc", ProtectOptions(scheme=scheme, keys_file=str(kf)))
    for r in title.renditions:
        assert r.protection is not None and r.protection.scheme == scheme and r.protection.kid == KID
        clear = sample_hashes(joined(clear_out / r.id, tmp_path / f"{r.id}-clear.mp4"))
        enc_dir = tmp_path / "enc" / r.id
        # FFmpeg 5.1 reads an encrypted fMP4 one init + segment at a time.
        singles = [joined(enc_dir, tmp_path / f"{r.id}-{seg}.mp4", [seg]) for seg in sorted(p.name for p in enc_dir.glob("seg_*.m4s"))]
        encrypted = sample_hashes(joined(enc_dir, tmp_path / f"{r.id}-enc-all.mp4"))
        assert len(encrypted) == len(clear)
        # Every sample is encrypted (no clear lead).
        assert sum(a != b for a, b in zip(clear, encrypted)) == len(clear), f"{r.id}: some samples are still in the clear"
        src = tmp_path / f"{r.id}-enc-all.mp4"
        decrypted = packet_hashes(packager_decrypt(src, tmp_path / f"{r.id}-dec.mp4", r.kind, KID, KEY, tmp_path))
        assert decrypted == clear, f"{r.id}: decrypted samples differ from the clear encode"
        if r.kind == "video":
            # Without the key the decoder gets garbage: no decoded frame equals the clear one.
            clear_frames = decoded_hashes(tmp_path / f"{r.id}-clear.mp4")
            garbage = [h for one in singles for h in decoded_hashes(one)]
            assert clear_frames and not set(clear_frames) & set(garbage)


def test_fragments_carry_senc_saiz_saio_and_inits_the_pssh(clip, tmp_path):
    out = encode(clip, tmp_path / "out", "--encrypt", "cbcs", "--key", f"{KID}:{KEY}", "--key-uri", "https://keys.example.com/{kid}")
    for rdir in sorted(p for p in out.iterdir() if (p / "init.mp4").exists()):
        info = read_init_protection((rdir / "init.mp4").read_bytes())
        assert info is not None and info.scheme == "cbcs" and info.kid_hex == KID and info.constant_iv
        if rdir.name.startswith("audio"):
            assert (info.crypt_byte_block, info.skip_byte_block) == (0, 0)
        else:
            assert (info.crypt_byte_block, info.skip_byte_block) == (1, 9)
        assert [p.kids for p in info.pssh if p.system_id == "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"] == [(bytes.fromhex(KID),)]
        for seg in sorted(rdir.glob("seg_*.m4s")):
            for frag in read_segment_protection(seg.read_bytes(), info.per_sample_iv_size):
                assert frag.senc_samples == frag.sample_count
                if info.per_sample_iv_size or frag.has_subsamples:  # else the auxiliary info is empty
                    assert frag.saiz_samples == frag.sample_count and frag.saio_present


def _cpix(path: Path, *, encrypted: bool = False, rules: bool = True) -> dict:
    """A CPIX 2.3 document: a video key and an audio key, Widevine + PlayReady PSSH, FairPlay HLS data."""
    vkid, akid = bytes.fromhex(KID), bytes.fromhex(AUDIO_KID)
    doc = {"pssh": {}, "fairplay": {}}
    systems = []
    for kid in (vkid, akid):
        wv = make_pssh(WIDEVINE, [], b"\x12\x10" + kid, version=0)
        pr = make_pssh(PLAYREADY, [kid], b"<WRMHEADER>" + kid.hex().encode() + b"</WRMHEADER>")
        fp_line = f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://fp-{kid.hex()}",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"'
        doc["pssh"][kid.hex()] = {WIDEVINE: wv, PLAYREADY: pr}
        doc["fairplay"][kid.hex()] = fp_line
        u = uuid.UUID(bytes=kid)
        b = lambda data: base64.b64encode(data).decode()  # noqa: E731
        systems.append(f'<cpix:DRMSystem kid="{u}" systemId="{WIDEVINE}"><cpix:PSSH>{b(wv)}</cpix:PSSH></cpix:DRMSystem>')
        systems.append(f'<cpix:DRMSystem kid="{u}" systemId="{PLAYREADY}"><cpix:PSSH>{b(pr)}</cpix:PSSH></cpix:DRMSystem>')
        systems.append(f'<cpix:DRMSystem kid="{u}" systemId="{FAIRPLAY}"><cpix:HLSSignalingData playlist="media">{b(fp_line.encode())}</cpix:HLSSignalingData></cpix:DRMSystem>')

    def key_el(kid: str, key: str) -> str:
        value = (f"<pskc:EncryptedValue><enc:CipherData><enc:CipherValue>{base64.b64encode(os.urandom(32)).decode()}</enc:CipherValue></enc:CipherData></pskc:EncryptedValue>"
                 if encrypted else f"<pskc:PlainValue>{base64.b64encode(bytes.fromhex(key)).decode()}</pskc:PlainValue>")
        return f'<cpix:ContentKey kid="{uuid.UUID(kid)}" commonEncryptionScheme="cbcs"><cpix:Data><pskc:Secret>{value}</pskc:Secret></cpix:Data></cpix:ContentKey>'

    usage = (f'<cpix:ContentKeyUsageRule kid="{uuid.UUID(KID)}" intendedTrackType="VIDEO"><cpix:VideoFilter/></cpix:ContentKeyUsageRule>'
             f'<cpix:ContentKeyUsageRule kid="{uuid.UUID(AUDIO_KID)}" intendedTrackType="AUDIO"><cpix:AudioFilter/></cpix:ContentKeyUsageRule>'
             if rules else
             f'<cpix:ContentKeyUsageRule kid="{uuid.UUID(KID)}" intendedTrackType="VIDEO"><cpix:VideoFilter/></cpix:ContentKeyUsageRule>')
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#" contentId="test">'
        f"<cpix:ContentKeyList>{key_el(KID, KEY)}{key_el(AUDIO_KID, AUDIO_KEY)}</cpix:ContentKeyList>"
        f"<cpix:DRMSystemList>{''.join(systems)}</cpix:DRMSystemList>"
        f"<cpix:ContentKeyUsageRuleList>{usage}</cpix:ContentKeyUsageRuleList>"
        "</cpix:CPIX>"
    )
    path.chmod(0o600)
    return doc


def test_cpix_keys_and_drm_signalling(clip, tmp_path):
    doc = _cpix(tmp_path / "provider.cpix.xml")
    out = encode(clip, tmp_path / "out", "--encrypt", "cbcs", "--cpix", str(tmp_path / "provider.cpix.xml"))
    from lxml import etree

    mpd = etree.parse(str(out / "manifest.mpd"))
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011", "cenc": "urn:mpeg:cenc:2013", "mspr": "urn:microsoft:playready"}
    for aset in mpd.iterfind(".//d:AdaptationSet", ns):
        kid = KID if aset.get("contentType") == "video" else AUDIO_KID
        cps = {cp.get("schemeIdUri"): cp for cp in aset.iterfind("d:ContentProtection", ns)}
        assert cps["urn:mpeg:dash:mp4protection:2011"].get("value") == "cbcs"
        assert cps["urn:mpeg:dash:mp4protection:2011"].get("{urn:mpeg:cenc:2013}default_KID") == str(uuid.UUID(kid))
        for system in (WIDEVINE, PLAYREADY):
            pssh = cps[f"urn:uuid:{system}"].findtext("cenc:pssh", namespaces=ns)
            assert base64.b64decode(pssh) == doc["pssh"][kid][system]
        pro = cps[f"urn:uuid:{PLAYREADY}"].findtext("mspr:pro", namespaces=ns)
        assert base64.b64decode(pro) == parse_pssh(doc["pssh"][kid][PLAYREADY]).data
        assert f"urn:uuid:{FAIRPLAY}" not in cps  # an HLS-only system
    for rdir in (p for p in out.iterdir() if (p / "init.mp4").exists()):
        kid = AUDIO_KID if rdir.name.startswith("audio") else KID
        info = read_init_protection((rdir / "init.mp4").read_bytes())
        assert info.kid_hex == kid
        boxes = {p.system_id: p.box for p in info.pssh}
        assert boxes[WIDEVINE] == doc["pssh"][kid][WIDEVINE] and boxes[PLAYREADY] == doc["pssh"][kid][PLAYREADY]
        playlist = (rdir / "playlist.m3u8").read_text()
        keys = [line for line in playlist.splitlines() if line.startswith("#EXT-X-KEY")]
        assert doc["fairplay"][kid] in keys
        wv = base64.b64encode(doc["pssh"][kid][WIDEVINE]).decode()
        assert f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="data:text/plain;base64,{wv}",KEYFORMAT="urn:uuid:{WIDEVINE}",KEYFORMATVERSIONS="1"' in keys
        pro = base64.b64encode(parse_pssh(doc["pssh"][kid][PLAYREADY]).data).decode()
        assert (f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="data:text/plain;charset=UTF-16;base64,{pro}",'
                'KEYFORMAT="com.microsoft.playready",KEYFORMATVERSIONS="1"') in keys
    master = (out / "master.m3u8").read_text().splitlines()
    session = [line for line in master if line.startswith("#EXT-X-SESSION-KEY:")]
    assert len(session) == 6  # Widevine, PlayReady and FairPlay for each of the two keys
    for kid in (KID, AUDIO_KID):
        assert doc["fairplay"][kid].replace("#EXT-X-KEY:", "#EXT-X-SESSION-KEY:") in session


def _leaks(text: bytes, secrets: list[bytes]) -> list[bytes]:
    return [s for s in secrets if s in text]


def secret_forms(key_hex: str) -> list[bytes]:
    raw = bytes.fromhex(key_hex)
    return [key_hex.encode(), key_hex.upper().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"="), raw]


def test_keys_never_leak(clip, tmp_path, monkeypatch):
    """Every file of OUT, the logs, --json, the record, --dry-run and the packager's argv: no key."""
    from abrpipe import runner

    seen: list[tuple[list[str], dict]] = []
    real = runner.capture_result

    def spy(argv, **kwargs):
        flagfile = next((a.split("=", 1)[1] for a in argv if a.startswith("--flagfile=")), None)
        if flagfile:
            seen.append((list(argv), {"mode": os.stat(flagfile).st_mode & 0o777}))
        return real(argv, **kwargs)

    monkeypatch.setattr(runner, "capture_result", spy)
    kf = keys_file(tmp_path, f'key = "{KID}:{KEY}"\nAUDIO = "{AUDIO_KID}:{AUDIO_KEY}"\n')
    from click.testing import CliRunner

    from abrpipe.cli import cli

    out = tmp_path / "out"
    args = ["encode", str(clip), "-p", PROFILE, "-o", str(out), "--encrypt", "cenc", "--keys", str(kf), "--keep-logs",
            "--key-uri", "https://keys.example.com/{kid}"]
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    dry = CliRunner().invoke(cli, ["encode", str(clip), "-p", PROFILE, "-o", str(tmp_path / "dry"), "--encrypt", "cenc",
                                   "--key", f"{KID}:{KEY}", "--key-uri", "/k/{kid}", "--dry-run"], catch_exceptions=False)
    assert dry.exit_code == 0 and "--flagfile=KEYS.flags --segment_duration=1.000000" in dry.output
    secrets = secret_forms(KEY) + secret_forms(AUDIO_KEY)
    assert seen and all(s["mode"] == 0o600 for _, s in seen), "keys go to the packager by a 0600 flag file"
    assert not _leaks(" ".join(a for argv, _ in seen for a in argv).encode(), secrets)
    assert not _leaks(result.output.encode(), secrets) and not _leaks(dry.output.encode(), secrets)
    record = json.loads(result.stdout)
    assert {r["protection"]["kids"][0] for r in record["renditions"]} == {KID, AUDIO_KID}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(".logs" in p.parts for p in files) and (out / "abrpipe.json") in files
    for p in files:
        assert not _leaks(p.read_bytes(), secrets), f"a key leaked into {p}"
    assert not any(p.name.startswith("abrpipe-keys-") for p in Path(os.environ.get("TMPDIR", "/tmp")).iterdir() if
                   p.stat().st_mtime > kf.stat().st_mtime), "the private key files are removed"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ABRPIPE, *args], capture_output=True, text=True, timeout=120)


def test_world_readable_key_file_warns(clip, tmp_path):
    kf = keys_file(tmp_path, f'key = "{KID}:{KEY}"\n')
    kf.chmod(0o644)
    proc = run_cli("encode", str(clip), "-p", PROFILE, "-o", str(tmp_path / "out"), "--encrypt", "cenc", "--keys", str(kf),
                   "--key-uri", "https://keys.example.com/{kid}", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"abrpipe: warning: {kf}: key file is readable by other users (mode 0644); chmod 600 it" in proc.stderr


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("malformed", "--key: malformed key (expected KID:KEY)"),
        ("short-kid", "--key: the KID is 8 bytes, not 16"),
        ("cpix-encrypted", "the content keys are encrypted (DeliveryData / EncryptedValue)"),
        ("cpix-no-key", "no key for rendition audio-aac-64k (AUDIO track)"),
    ],
)
def test_bad_key_input_is_one_line_and_publishes_nothing(case, expected, clip, tmp_path):
    out = tmp_path / "out"
    args = ["encode", str(clip), "-p", PROFILE, "-o", str(out), "--encrypt", "cbcs", "--key-uri", "/k/{kid}"]
    if case == "malformed":
        args += ["--key", KID + KEY]
    elif case == "short-kid":
        args += ["--key", f"0011223344556677:{KEY}"]
    else:
        _cpix(tmp_path / "doc.xml", encrypted=case == "cpix-encrypted", rules=case != "cpix-no-key")
        args += ["--cpix", str(tmp_path / "doc.xml")]
    proc = run_cli(*args)
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and KEY not in proc.stderr
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_unknown_scheme_is_one_usage_line(clip, tmp_path):
    """An unknown --encrypt scheme: one line naming the option and the schemes, exit code 2, nothing published."""
    out = tmp_path / "out"
    proc = run_cli("encode", str(clip), "-p", PROFILE, "-o", str(out), "--encrypt", "cbc1", "--key", f"{KID}:{KEY}")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert errors == ["abrpipe: error: --encrypt 'cbc1': unknown encryption scheme"], proc.stderr
    assert "use cenc (AES-CTR) or cbcs" in proc.stderr and "Usage:" not in proc.stderr and "Traceback" not in proc.stderr
    assert KEY not in proc.stderr
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_profile_scheme_and_key_classes_and_probe(clip, tmp_path):
    """A profile sets the scheme and the SD/HD limit; each class gets its own key; probe and the MPD say so."""
    profile = tmp_path / "enc.toml"
    profile.write_text(f'schema = 1\nextends = "{PROFILE}"\nencryption = "cenc"\nkey_classes = {{ SD = 150 }}\n')
    hd_kid, hd_key = "10" * 16, "11" * 16
    kf = keys_file(tmp_path, f'SD = "{KID}:{KEY}"\nHD = "{hd_kid}:{hd_key}"\nAUDIO = "{AUDIO_KID}:{AUDIO_KEY}"\n')
    out = tmp_path / "out"
    proc = run_cli("encode", str(clip), "-p", str(profile), "-o", str(out), "--keys", str(kf), "--key-uri", "/k/{kid}")
    assert proc.returncode == 0, proc.stderr
    probed = json.loads(run_cli("probe", str(out), "--json").stdout)
    kids = {r["rendition"]: (r["protection"]["scheme"], r["protection"]["kid"].replace("-", "")) for r in probed["renditions"]}
    assert kids == {"144p-150k": ("cenc", KID), "180p-300k": ("cenc", hd_kid), "audio-aac-64k": ("cenc", AUDIO_KID)}
    # Two keys in one video AdaptationSet: the KIDs go on each Representation.
    mpd = (out / "manifest.mpd").read_text()
    assert mpd.count('value="cenc" cenc:default_KID="') == 3
    # The summary table names the scheme and the KIDs.
    summary = " ".join(proc.stderr.split())
    assert f"180p-300k: cenc KID {hd_kid}" in summary and f"audio-aac-64k: cenc KID {AUDIO_KID}" in summary


def test_raw_keys_with_pssh_file(clip, tmp_path):
    """--pssh: a Widevine box given with a raw key lands in the init, the MPD and the HLS key lines."""
    box = make_pssh(WIDEVINE, [], b"\x12\x10" + bytes.fromhex(KID), version=0)
    pssh_file = tmp_path / "widevine.pssh"
    pssh_file.write_text(base64.b64encode(box).decode() + "\n")
    out = encode(clip, tmp_path / "out", "--encrypt", "cenc", "--key", f"{KID}:{KEY}", "--pssh", str(pssh_file))
    info = read_init_protection((out / "180p-300k" / "init.mp4").read_bytes())
    assert {p.system_id: p.box for p in info.pssh}[WIDEVINE] == box
    assert f"<cenc:pssh>{base64.b64encode(box).decode()}</cenc:pssh>" in (out / "manifest.mpd").read_text()
    line = (f'#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI="data:text/plain;base64,{base64.b64encode(box).decode()}",'
            f'KEYFORMAT="urn:uuid:{WIDEVINE}",KEYFORMATVERSIONS="1"')
    assert line in (out / "180p-300k" / "playlist.m3u8").read_text().splitlines()


def test_aes128_segments_decrypt_to_the_clear_encode(clip, clear_out, tmp_path):
    """Each segment, decrypted (AES-128-CBC, PKCS#7) with its period's key file and the playlist's explicit
    IV, is the clear segment; a new key every 2 segments; the init stays in the clear, before the first key."""
    import m3u8
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    title = protect_copy(clear_out, clip, tmp_path / "enc", ProtectOptions(hls_aes128=True, key_rotation=2, embed_keys=True))
    from abrpipe import hls

    hls.write_hls(str(tmp_path / "enc"), title)
    for r in title.renditions:
        rdir = tmp_path / "enc" / r.id
        assert (rdir / "init.mp4").read_bytes() == (clear_out / r.id / "init.mp4").read_bytes()
        text = (rdir / "playlist.m3u8").read_text()
        assert text.index("#EXT-X-MAP:") < text.index("#EXT-X-KEY:")
        playlist = m3u8.loads(text)
        kids = []
        for n, seg in enumerate(playlist.segments):
            key_path = (rdir / seg.key.uri).resolve()
            kids.append(key_path.stem)
            clear = (clear_out / r.id / seg.uri).read_bytes()
            encrypted = rdir / seg.uri
            assert encrypted.read_bytes() != clear
            dec = Cipher(algorithms.AES(key_path.read_bytes()), modes.CBC(bytes.fromhex(seg.key.iv[2:]))).decryptor()
            unpad = padding.PKCS7(128).unpadder()
            out = unpad.update(dec.update(encrypted.read_bytes()) + dec.finalize()) + unpad.finalize()
            assert out == clear, f"{r.id} segment {n + 1}"
        assert kids == [kids[2 * (i // 2)] for i in range(len(kids))] and len(set(kids)) == -(-len(kids) // 2)


def test_keys_from_the_environment(clip, tmp_path):
    """ABRPIPE_KEYS gives a key per track class; --dry-run shows one packager run per key, no key."""
    env = {**os.environ, "ABRPIPE_KEYS": f"SD={KID}:{KEY},AUDIO={AUDIO_KID}:{AUDIO_KEY}"}
    proc = subprocess.run([*ABRPIPE, "encode", str(clip), "-p", PROFILE, "-o", str(tmp_path / "out"), "--encrypt", "cbcs",
                           "--key-uri", "/k/{kid}", "--dry-run"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs = [line for line in proc.stdout.splitlines() if line.startswith("# ") and "--flagfile=KEYS.flags" in line]
    assert len(runs) == 2 and "stream=audio" in runs[1] and runs[0].count("stream=video") == 2
    assert not _leaks((proc.stdout + proc.stderr).encode(), secret_forms(KEY) + secret_forms(AUDIO_KEY))
    bad = subprocess.run([*ABRPIPE, "encode", str(clip), "-p", PROFILE, "-o", str(tmp_path / "out"), "--encrypt", "cbcs",
                          "--key-uri", "/k/{kid}"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ABRPIPE_KEYS": "XL=" + f"{KID}:{KEY}"})
    assert bad.returncode == 3 and "ABRPIPE_KEYS: unknown track class 'XL'" in bad.stderr and KEY not in bad.stderr


def test_embedded_keys_feed_the_preview_servers_clearkey_license(clip, clear_out, tmp_path):
    """--embed-keys: OUT/keys/<kid>.key and OUT/clearkey.json, from which `abrpipe serve` answers a
    W3C ClearKey license request with exactly the key asked for."""
    import base64

    from abrpipe.serve import ClearKeys

    kf = keys_file(tmp_path, f'key = "{KID}:{KEY}"\n')
    protect_copy(clear_out, clip, tmp_path / "enc", ProtectOptions(scheme="cenc", keys_file=str(kf), embed_keys=True))
    assert (tmp_path / "enc" / "keys" / f"{KID}.key").read_bytes() == bytes.fromhex(KEY)
    keys = ClearKeys.load(str(tmp_path / "enc"))
    assert keys is not None

    def b64url(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    license = keys.license({"kids": [b64url(bytes.fromhex(KID))], "type": "temporary"})
    assert license is not None
    assert [(k["kid"], k["k"]) for k in license["keys"]] == [(b64url(bytes.fromhex(KID)), b64url(bytes.fromhex(KEY)))]
    assert keys.license({"kids": [b64url(bytes(16))]})["keys"] == []  # an unknown KID gets no key
