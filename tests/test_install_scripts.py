"""The install scripts on a machine without network, and the Node versions the pinned players need."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from media import missing_capability

ROOT = Path(__file__).resolve().parent.parent
BROWSER = ROOT / "tests" / "browser"
DEBIAN_12_NODE = (18, 19, 0)  # bookworm's nodejs

# apt-get as it behaves without network: `update` warns and exits 0, `install` finds nothing.
OFFLINE_APT = """#!/bin/sh
echo "$*" >> "$APT_CALLS"
case " $* " in
  *" update "*)
    echo "Err:1 http://deb.debian.org/debian bookworm InRelease"
    echo "  Temporary failure resolving 'deb.debian.org'"
    echo "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'" >&2
    echo "W: Some index files failed to download. They have been ignored, or old ones used instead." >&2
    exit 0 ;;
  *" install "*)
    for last in "$@"; do :; done
    echo "E: Unable to locate package $last" >&2
    exit 100 ;;
esac
exit 100
"""


@pytest.fixture()
def offline(tmp_path) -> dict[str, str]:
    if os.geteuid() != 0:
        missing_capability("the install scripts apt-get only as root")
    shim = tmp_path / "bin"
    shim.mkdir()
    apt = shim / "apt-get"
    apt.write_text(OFFLINE_APT)
    apt.chmod(0o755)
    return {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}", "APT_CALLS": str(tmp_path / "apt-calls")}


def _run_bounded(argv: list[str], env: dict[str, str], limit_s: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=limit_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv[0]} was still trying after {limit_s:.0f} s without network")
    return proc, time.monotonic() - start


def test_install_system_deps_without_network_fails_fast_and_says_why(offline):
    proc, elapsed = _run_bounded([str(ROOT / "scripts" / "install-system-deps.sh"), "ffmpeg"], offline)
    assert proc.returncode != 0
    assert elapsed < 60
    assert "apt-get could not install ffmpeg" in proc.stderr
    assert "no network?" in proc.stderr and "apt-get install ffmpeg" in proc.stderr, proc.stderr
    calls = Path(offline["APT_CALLS"]).read_text()
    assert "Acquire::Retries=0" in calls and "Acquire::http::Timeout=15" in calls


def test_browser_setup_without_network_fails_fast_and_says_why(offline):
    env = {**offline, "ABRPIPE_CHROMIUM": "/nonexistent/chromium"}  # so that it wants to apt-get chromium
    proc, elapsed = _run_bounded(["bash", str(BROWSER / "setup.sh")], env)
    assert proc.returncode != 0
    assert elapsed < 60
    assert "no network?" in proc.stderr and "chromium" in proc.stderr, proc.stderr
    assert "could not install chromium" in proc.stderr


def _min_node(range_: str) -> tuple[int, int, int] | None:
    m = re.fullmatch(r">=\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", range_.strip())
    return (int(m[1]), int(m[2] or 0), int(m[3] or 0)) if m else None


def test_pinned_players_install_on_debian_12_node():
    """npm runs engine-strict: every pinned package must accept Debian 12's nodejs 18."""
    assert "engine-strict=true" in (BROWSER / ".npmrc").read_text().split()
    lock = json.loads((BROWSER / "package-lock.json").read_text())
    too_new = {}
    for where, pkg in lock["packages"].items():
        node = (pkg.get("engines") or {}).get("node", "*")
        need = _min_node(node) if "||" not in node else None
        if need and need > DEBIAN_12_NODE:
            too_new[where] = node
    assert not too_new, f"these need a newer Node than Debian 12's {DEBIAN_12_NODE}: {too_new}"


def test_setup_refuses_a_node_older_than_a_pinned_package_needs(tmp_path):
    """A lock whose package needs node >= 99: setup.sh names it and stops before npm."""
    if shutil.which("node") is None:
        missing_capability("node is not installed (tests/browser/setup.sh installs it)")
    browser = tmp_path / "tests" / "browser"
    browser.mkdir(parents=True)
    shutil.copy(BROWSER / "setup.sh", browser / "setup.sh")
    lock = json.loads((BROWSER / "package-lock.json").read_text())
    lock["packages"]["node_modules/future-player"] = {"version": "9.9.9", "engines": {"node": ">=99"}}
    (browser / "package-lock.json").write_text(json.dumps(lock))
    chromium = tmp_path / "chromium"
    chromium.write_text("#!/bin/sh\necho Chromium 1\n")
    chromium.chmod(0o755)
    env = {**os.environ, "ABRPIPE_CHROMIUM": str(chromium)}
    proc, _ = _run_bounded(["bash", str(browser / "setup.sh")], env)
    assert proc.returncode == 1, proc.stderr
    assert "is too old for the pinned players" in proc.stderr
    assert "future-player 9.9.9 needs node >=99" in proc.stderr
    assert "npm ci" not in proc.stderr
