"""Plot output and the lazy matplotlib import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pertitle_research_grid import HIGH, LOW, points

from abrpipe.pertitle.hull import TrialPoint, choose_rungs, envelope
from abrpipe.pertitle.plot import PlotUnavailableError, plot_ladder

REPO = Path(__file__).resolve().parents[2]
FIXED = [
    TrialPoint(1280, 720, None, 3000, 96.6),
    TrialPoint(960, 540, None, 2000, 91.3),
    TrialPoint(640, 360, None, 1000, 85.6),
    TrialPoint(416, 234, None, 400, 71.6),
]


def test_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib")
    pts = points(LOW)
    rungs = choose_rungs(envelope(pts), min_kbps=400, max_kbps=3000, rung_count=4, saturation_quality=95)
    png = plot_ladder(tmp_path / "sub" / "low.png", pts, rungs=rungs, fixed_ladder=FIXED, title="low")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    svg = plot_ladder(tmp_path / "high.SVG", points(HIGH, "psnr"), metric="psnr")
    text = svg.read_text()
    assert "<svg" in text and "PSNR-Y (dB)" in text


def test_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=".pdf"):
        plot_ladder(tmp_path / "x.pdf", points(LOW))


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    # None in sys.modules makes "import matplotlib..." raise ImportError (also if already imported)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(PlotUnavailableError, match="pip install matplotlib"):
        plot_ladder(tmp_path / "x.png", points(LOW))


def test_core_modules_do_not_import_matplotlib():
    code = (
        "import sys\n"
        "import abrpipe.pertitle.hull, abrpipe.pertitle.bdrate, abrpipe.pertitle.metrics, abrpipe.pertitle.plot\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'bjontegaard'))\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
