"""Browser (real-player) tests: make ``import harness`` work in any pytest
import mode, and declare the ``browser`` marker if the project config has
not (harmless duplicate otherwise)."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_configure(config):
    declared = [m.split(":", 1)[0].strip() for m in config.getini("markers")]
    if "browser" not in declared:
        config.addinivalue_line("markers", "browser: plays output in headless Chromium")
