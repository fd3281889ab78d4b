"""`abrpipe report` and `encode --report`: one self-contained HTML file whose figures are those of
`abrpipe validate --json`, of the job record, and of the media itself (ffprobe's packet sizes)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from media import TINY_PROFILE, ffprobe_json, joined_rendition, requires_ffmpeg

pytestmark = requires_ffmpeg


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abrpipe", *args], capture_output=True, text=True, timeout=300)


def values(page: str) -> dict[str, str]:
    """Every data-key / data-value pair of the page."""
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r'data-key="([^"]*)" data-value="([^"]*)"', page)}


def assert_self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    for attr, url in re.findall(r'\b(src|href)\s*=\s*"([^"]*)"', page, re.IGNORECASE):
        assert url.startswith("data:"), (attr, url)
    assert "url(" not in page and "@import" not in page
    assert not re.search(r"https?://", page), "no address of any kind in the page"


def validate_json(out: Path) -> dict:
    proc = run_cli("validate", str(out), "--json", "-q")
    return json.loads(proc.stdout)


def assert_matches_validate(vals: dict[str, str], summary: dict) -> None:
    assert vals["validation.ok"] == str(summary["ok"]).lower()
    for key in ("errors", "warnings", "info", "renditions", "segments"):
        assert int(vals[f"validation.{key}"]) == summary[key], key
    assert vals["validation.rules"].split(",") == [f["rule"] for f in summary["findings"]]


def segment_rates_ffprobe(rendition_dir: Path, tmp: Path, segment_s: float) -> list[float]:
    """Bit rate of each segment's samples, from ffprobe's packet sizes and times (not abrpipe's reader)."""
    packets = ffprobe_json("-show_entries", "packet=dts_time,size", str(joined_rendition(rendition_dir, tmp)))["packets"]
    sums: dict[int, int] = {}
    for p in packets:
        index = int(float(p["dts_time"]) // segment_s + 1e-9) if float(p["dts_time"]) >= 0 else 0
        sums[index] = sums.get(index, 0) + int(p["size"])
    return [sums[i] * 8 / segment_s for i in sorted(sums)]


def test_report_matches_validate_record_and_media(encoded_tiny, tmp_path):
    target = tmp_path / "report.html"
    proc = run_cli("report", str(encoded_tiny), "-o", str(target), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["report"] == str(target)
    page = target.read_text(encoding="utf-8")
    assert_self_contained(page)
    vals = values(page)
    assert_matches_validate(vals, validate_json(encoded_tiny))
    # The ladder: the job record's own measurements, rendition by rendition.
    record = json.loads((encoded_tiny / "abrpipe.json").read_text())
    for r in record["renditions"]:
        k = f"rendition.{r['id']}"
        assert int(vals[f"{k}.segments"]) == r["segments"]
        assert int(vals[f"{k}.size_bytes"]) == r["size_bytes"] == sum(f.stat().st_size for f in (encoded_tiny / r["id"]).glob("seg_*.m4s"))
        assert int(vals[f"{k}.average_bps"]) == pytest.approx(r["average_bps"], abs=1)
        # The validator's peak (the highest segment rate, a short last segment left out) against the
        # record's RFC 8216 peak (runs of segments of 0.5-1.5 target durations): equal but for a short
        # last segment joined to the one before it.
        assert int(vals[f"{k}.peak_bps"]) == pytest.approx(r["peak_bps"], rel=0.01)
    mpd = (encoded_tiny / "manifest.mpd").read_text()
    for rep_id, bandwidth in re.findall(r'id="([^"]+)" bandwidth="(\d+)"', mpd):
        assert vals[f"rendition.{rep_id}.declared_dash_bps"] == bandwidth
    # HLS variants: BANDWIDTH as declared in master.m3u8.
    master = (encoded_tiny / "master.m3u8").read_text().splitlines()
    for i, line in enumerate(master):
        if line.startswith("#EXT-X-STREAM-INF:"):
            declared = re.search(r"(?<!-)BANDWIDTH=(\d+)", line).group(1)
            assert vals[f"variant.{master[i + 1]}.bandwidth"] == declared
    # The per-segment chart: the sample bytes of each 2-s segment, as ffprobe counts the packets.
    for rung in ("360p-600k", "180p-150k"):
        expected = segment_rates_ffprobe(encoded_tiny / rung, tmp_path, 2.0)
        drawn = [float(vals[f"segment.{rung}.{n}"]) for n in range(1, len(expected) + 1)]
        assert drawn == pytest.approx(expected, rel=0.002)
    # The keyframe grid: 1-s GOPs over 6 s on every video rendition.
    for rung in ("360p-600k", "270p-350k", "180p-150k"):
        assert vals[f"grid.{rung}.keyframes"] == "6"
    assert page.count("<svg") >= 5  # a chart per rendition and the grid


def test_report_of_a_broken_output(encoded_tiny, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(encoded_tiny, broken)
    (broken / "270p-350k" / "seg_00002.m4s").unlink()
    proc = run_cli("report", str(broken), "--json")
    assert proc.returncode == 0, proc.stderr  # the report is the product; its verdict is inside
    vals = values((broken / "report.html").read_text())
    summary = validate_json(broken)
    assert summary["ok"] is False and "FILE-MISSING" in [f["rule"] for f in summary["findings"]]
    assert_matches_validate(vals, summary)


def test_encode_report_is_published_with_the_ladder(clip_360p, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("encode", str(clip_360p), "-p", TINY_PROFILE, "-o", str(out), "--report", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    page = (out / "report.html").read_text()
    assert data["report"] == str(out / "report.html") and not (tmp_path / "out.partial").exists()
    assert_self_contained(page)
    vals = values(page)
    assert_matches_validate(vals, validate_json(out))
    assert f"<td>{out}</td>" in page, "the report names the published output, not its work area"
    record = json.loads((out / "abrpipe.json").read_text())
    assert set(record["timings_s"]) >= {"probe_plan", "encode", "package", "validate"}
    for stage, seconds in record["timings_s"].items():
        assert float(vals[f"timing.{stage}"]) == seconds
    assert not any(k.startswith("pertitle.") for k in vals), "no per-title section without --per-title"


def test_report_draws_the_per_title_hull(encoded_tiny, tmp_path):
    """With a pertitle.json (the analysis `encode --per-title` writes), the report plots every trial,
    the hull and each chosen rung at its bitrate; `tests/pertitle` checks it on a real analysis."""
    out = tmp_path / "pt"
    shutil.copytree(encoded_tiny, out)
    trials = [{"width": w, "height": h, "crf": crf, "kbps": kbps, "quality": q, "frames": 10}
              for (w, h), points in {(640, 360): [(18, 900.0, 46.0), (30, 400.0, 40.0), (42, 150.0, 31.0)],
                                     (320, 180): [(18, 300.0, 38.0), (30, 120.0, 33.0), (42, 50.0, 27.0)]}.items()
              for crf, kbps, q in points]  # fmt: skip
    hull = [t for t in trials if (t["height"], t["crf"]) in {(180, 42), (180, 30), (360, 30), (360, 18)}]
    ladder = [{"width": 640, "height": 360, "bitrate_kbps": 600, "predicted_quality": 43.1, "extrapolated": False},
              {"width": 320, "height": 180, "bitrate_kbps": 150, "predicted_quality": 34.0, "extrapolated": False}]  # fmt: skip
    (out / "pertitle.json").write_text(json.dumps({"metric": "psnr", "metric_label": "PSNR-Y (dB)", "trials": trials,
                                                   "hull": hull, "ladder": ladder, "fixed_ladder": []}))  # fmt: skip
    assert run_cli("report", str(out), "-q").returncode == 0
    page = (out / "report.html").read_text()
    vals = values(page)
    assert vals["pertitle.hull_points"] == "4"
    assert [vals[f"pertitle.rung.{i}"] for i in range(2)] == ["640x360@600", "320x180@150"]
    assert page.count("<circle") >= len(trials) and "Per-title ladder (PSNR-Y (dB))" in page
    assert_self_contained(page)
