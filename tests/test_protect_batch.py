"""Protection in a batch jobs file: a job's `protection` table (scheme, key file by path, key URI)
encrypts that job only; decrypted with its key, it is exactly the clear job's samples. Keys are never
written in a jobs file: an inline key is one line (exit 4) that does not repeat it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from media import requires_ffmpeg
from protect_media import KEY, KID, PROFILE, tiny_clip
from test_protect import (
    joined,
    keys_file,
    packager_decrypt,
    packet_hashes,
    run_cli,
    sample_hashes,
    secret_forms,
)

from abrpipe.protect.boxes import read_init_protection

pytestmark = requires_ffmpeg


def _jobs(directory: Path, clip: Path, protection: str) -> Path:
    """Two jobs from one clip: "clear", and "protected" with its own protection table. The defaults'
    key_uri alone encrypts nothing: it waits for a job that says `encrypt`."""
    path = directory / "jobs.toml"
    path.write_text(
        "schema = 1\n[defaults]\n"
        f'profile = "{PROFILE}"\noutput_dir = "out"\n'
        'protection = { key_uri = "/keys/{kid}" }\n\n'
        f'[[jobs]]\ninput = "{clip}"\nname = "clear"\n\n'
        f'[[jobs]]\ninput = "{clip}"\nname = "protected"\nprotection = {protection}\n'
    )
    return path


def test_a_protected_batch_job_decrypts_to_the_clear_job(tmp_path):
    clip = tiny_clip(tmp_path)
    keys_file(tmp_path, f'key = "{KID}:{KEY}"\n')  # tmp_path/keys.toml, mode 0600
    jobs = _jobs(tmp_path, clip, '{ encrypt = "cenc", keys = "keys.toml" }')  # + the defaults' key_uri
    proc = run_cli("batch", str(jobs), "-j", "1", "--json", "--keep-logs")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert not any(s in (proc.stdout + proc.stderr).encode() for s in secret_forms(KEY))
    clear, protected = tmp_path / "out" / "clear", tmp_path / "out" / "protected"
    renditions = sorted(p.name for p in protected.iterdir() if (p / "init.mp4").exists())
    assert len(renditions) == 3
    for rid in renditions:
        assert read_init_protection((clear / rid / "init.mp4").read_bytes()) is None
        info = read_init_protection((protected / rid / "init.mp4").read_bytes())
        assert info is not None and info.scheme == "cenc" and info.kid_hex == KID
        kind = "audio" if rid.startswith("audio") else "video"
        src = joined(protected / rid, tmp_path / f"{rid}-enc.mp4")
        decrypted = packet_hashes(packager_decrypt(src, tmp_path / f"{rid}-dec.mp4", kind, KID, KEY, tmp_path))
        assert decrypted == sample_hashes(joined(clear / rid, tmp_path / f"{rid}-clear.mp4")), rid
        assert sample_hashes(src) != decrypted
    for p in protected.rglob("*"):
        if p.is_file():
            assert not any(s in p.read_bytes() for s in secret_forms(KEY)), f"a key leaked into {p}"
    assert "/keys/" + KID in (protected / renditions[0] / "playlist.m3u8").read_text()
    assert KEY not in json.dumps(report)


@pytest.mark.parametrize(
    ("protection", "expected"),
    [
        (f'{{ encrypt = "cenc", key = "{KID}:{KEY}" }}', "jobs[1].protection: key: keys never go in a jobs file"),
        (f'{{ encrypt = "cenc", keys = "{KID}:{KEY}" }}', "jobs[1].protection: keys: this is a key, not a file name"),
        ('{ encrypt = "cbc1", keys = "keys.toml" }', "jobs[1].protection: encrypt: unknown encryption scheme 'cbc1'"),
        ('{ encrypt = "cenc", keys = "missing.toml" }', "missing.toml: cannot read the keys file"),
        ('{ keys = "keys.toml" }', 'jobs[1].protection: keys goes with encrypt = "cenc" or "cbcs"'),
    ],
    ids=["inline-key", "key-for-a-file", "unknown-scheme", "missing-keys-file", "keys-without-scheme"],
)
def test_bad_protection_in_a_jobs_file_is_one_line(protection, expected, tmp_path):
    clip = tiny_clip(tmp_path, seconds=1)
    keys_file(tmp_path, f'key = "{KID}:{KEY}"\n')
    proc = run_cli("batch", str(_jobs(tmp_path, clip, protection)))
    assert proc.returncode == 4, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert not any(s in proc.stderr.encode() for s in secret_forms(KEY)) and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
