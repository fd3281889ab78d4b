"""The type check is part of the build: `make lint` runs ruff and mypy, and `make test` runs `make lint`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_make_test_runs_lint_and_lint_runs_mypy():
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    ruff = next(i for i, ln in enumerate(lines) if "ruff check abrpipe tests bench" in ln)
    mypy = next(i for i, ln in enumerate(lines) if ln.strip().endswith("mypy abrpipe"))
    pytest_line = next(i for i, ln in enumerate(lines) if "bin/pytest" in ln)
    assert ruff < pytest_line and mypy < pytest_line, "lint runs before the tests"
    assert "ABRPIPE_REQUIRE_CAPABILITIES=1" in lines[pytest_line] and "ABRPIPE_REQUIRE_BROWSER=1" in lines[pytest_line]


def test_mypy_finds_nothing_in_abrpipe():
    proc = subprocess.run([sys.executable, "-m", "mypy", "abrpipe"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
