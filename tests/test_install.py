"""A normal (non-editable) install carries the built-in profiles and the preview player inside the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_builtin_profiles(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(ROOT)],
        check=True,
    )
    wheel = next(wheel_dir.glob("abrpipe-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    # `abrpipe serve`'s page and the vendored player, with its licence, are in the wheel.
    for name in ("index.html", "player.js", "vendor/shaka-player.compiled.js", "vendor/shaka-player.LICENSE"):
        assert f"abrpipe/player/{name}" in names, name
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)], check=True)
    code = (
        "import json, abrpipe, abrpipe.registry as r, abrpipe.serve as s;"
        "p = r.load('default');"
        "print(json.dumps({'module': abrpipe.__file__, 'dirs': r.builtin_profile_dirs(), 'rungs': len(p.rungs),"
        " 'names': sorted(r.entries()), 'player': str(s.player_dir() / 'vendor' / 'shaka-player.compiled.js')}))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path, env=env)
    data = json.loads(out.stdout)
    assert data["module"].startswith(str(target)), "the installed copy, not the source tree, was imported"
    assert data["dirs"] == [str(target / "abrpipe" / "builtin_profiles")]
    assert data["rungs"] == 9
    assert {"default", "1080p", "720p", "480p"} <= set(data["names"])
    assert data["player"] == str(target / "abrpipe" / "player" / "vendor" / "shaka-player.compiled.js")
    assert os.path.getsize(data["player"]) > 500_000
