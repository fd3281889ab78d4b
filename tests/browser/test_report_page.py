"""The HTML report of a real encode in headless Chromium: it renders without an error, makes no
request at all (everything is inline), and the figures the browser reads are those of
`abrpipe validate --json` for the same output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from harness import require_browser
from serving import run_page

pytestmark = pytest.mark.browser


def test_report_renders_offline_and_matches_validate(encoded_tiny, tmp_path):
    require_browser()
    target = tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "abrpipe", "report", str(encoded_tiny), "-o", str(target), "-q"], check=True, timeout=120)
    result = run_page("report", target.as_uri(), seconds=45)
    assert result["ok"], result
    assert result["requests"] == [target.as_uri()] and result["blocked"] == []
    assert result["console_errors"] == [] and result["page_errors"] == []
    assert result["svg_count"] >= 5 and result["title"] == f"abrpipe report: {encoded_tiny.name}"
    validate = json.loads(subprocess.run([sys.executable, "-m", "abrpipe", "validate", str(encoded_tiny), "--json", "-q"],
                                         capture_output=True, text=True, timeout=120).stdout)  # fmt: skip
    vals = result["values"]
    assert vals["validation.ok"] == str(validate["ok"]).lower()
    for key in ("errors", "warnings", "info", "renditions", "segments"):
        assert int(vals[f"validation.{key}"]) == validate[key], key
    assert vals["validation.rules"].split(",") == [f["rule"] for f in validate["findings"]]
    record = json.loads((encoded_tiny / "abrpipe.json").read_text())
    for r in record["renditions"]:
        assert int(vals[f"rendition.{r['id']}.size_bytes"]) == r["size_bytes"]
