"""A batch of many tiny titles: abrpipe's own memory and CPU per job, and the size of the reports.

    python bench/batch_bench.py [--jobs 500] [-j 2] [--no-write]

One 1-s 128x72 clip is generated with lavfi; the jobs file lists it N times, each job publishing its
own output. `abrpipe batch -j 2 --report --junit` runs as a child process, and this script samples,
every 0.2 s, abrpipe's resident memory (VmRSS, /proc) and CPU time (utime + stime of the abrpipe
process, every thread included; its ffmpeg/ffprobe children are counted apart) against the number
of jobs finished. What is recorded:

- peak RSS, and RSS after 10 %, 50 % and 100 % of the jobs: flat means no per-job growth;
- abrpipe's own CPU-seconds per job (robust to a loaded machine, unlike wall time), next to the
  CPU-seconds of the ffmpeg/ffprobe children per job;
- the sizes of report.json and junit.xml, in all and per job.

The result replaces the "## Batch of many titles" section of docs/BENCHMARKS.md (unless --no-write).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_model, write_section  # noqa: E402

PROFILE = """\
schema = 1
description = "bench: one tiny rung"
preset = "ultrafast"
gop = 1
segment = 1

[[rungs]]
size = "128x72"
bitrate = "100k"

[[audio]]
codec = "aac"
bitrate = "32k"
channels = 2
"""
TICK = os.sysconf("SC_CLK_TCK")
AIM_OVERHEAD_CPU_S = 0.2


def _stat(pid: int) -> tuple[float, float] | None:
    """(own CPU-s, reaped children's CPU-s) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run(jobs: int, workers: int, work: Path) -> dict:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=128x72:rate=30:duration=1",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(work / "clip.mp4")],
        check=True,
    )  # fmt: skip
    (work / "tiny.toml").write_text(PROFILE)
    lines = ['schema = 1\n\n[defaults]\nprofile = "tiny.toml"\noutput_dir = "out"\n']
    lines += [f'[[jobs]]\nname = "title{n:04d}"\ninput = "clip.mp4"\n' for n in range(jobs)]
    (work / "jobs.toml").write_text("\n".join(lines))
    out = work / "out"
    argv = [sys.executable, "-m", "abrpipe", "batch", "jobs.toml", "-j", str(workers), "-q",
            "--report", "report.json", "--junit", "junit.xml"]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int, int]] = []  # (seconds, jobs done, RSS KiB)
    own = children = 0.0
    while proc.poll() is None:
        stat, rss = _stat(proc.pid), _rss_kib(proc.pid)
        if stat is not None:
            own, children = stat
        if rss is not None:
            done = sum(1 for p in out.iterdir() if not p.name.endswith(".partial")) if out.exists() else 0
            samples.append((time.monotonic() - start, done, rss))
        time.sleep(0.2)
    _, stderr = proc.communicate()
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"abrpipe batch exited with {proc.returncode}:\n{stderr[-2000:]}")
    report = json.loads((work / "report.json").read_text())
    statuses = {j["status"] for j in report["jobs"]}
    assert statuses == {"succeeded"} and len(report["jobs"]) == jobs, statuses

    def rss_at(fraction: float) -> int:
        want = fraction * jobs
        return next((rss for _, done, rss in samples if done >= want), samples[-1][2])

    return {
        "jobs": jobs,
        "workers": workers,
        "wall_s": wall,
        "peak_rss_kib": max(rss for _, _, rss in samples),
        "rss_kib_at": {"10%": rss_at(0.10), "50%": rss_at(0.50), "100%": rss_at(1.0)},
        "own_cpu_s": own,
        "children_cpu_s": children,
        "report_bytes": (work / "report.json").stat().st_size,
        "junit_bytes": (work / "junit.xml").stat().st_size,
        "samples": len(samples),
    }


def markdown(r: dict) -> str:
    now = datetime.now(UTC)
    load = os.getloadavg()
    n = r["jobs"]
    per_job = r["own_cpu_s"] / n
    growth = (r["rss_kib_at"]["100%"] - r["rss_kib_at"]["10%"]) / (0.9 * n) * 100
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"""## Batch of many titles

`bench/batch_bench.py`, {now:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu_model()}), Linux {os.uname().release};
{ffmpeg_version.split(" Copyright")[0]}. The machine was shared with other work (load average {load[0]:.1f} at the
end), so wall time is only indicative; CPU-seconds of the abrpipe process itself are what counts.

{n} jobs of one 1-s 128x72 clip (one H.264 rung + AAC, 1-s segments), `abrpipe batch -j {r["workers"]} --report
--junit`, every job encoded, validated and published.

| measure | value | aim |
|---|---|---|
| abrpipe's own CPU per job (beyond ffmpeg) | **{per_job:.3f} CPU-s** ({r["own_cpu_s"]:.1f} CPU-s in all) | < {AIM_OVERHEAD_CPU_S} s: {"met" if per_job < AIM_OVERHEAD_CPU_S else "MISSED"} |
| ffmpeg/ffprobe CPU per job (for scale) | {r["children_cpu_s"] / n:.3f} CPU-s | |
| peak RSS of abrpipe | {r["peak_rss_kib"] / 1024:.1f} MiB | |
| RSS after 10 % / 50 % / 100 % of the jobs | {r["rss_kib_at"]["10%"] / 1024:.1f} / {r["rss_kib_at"]["50%"] / 1024:.1f} / {r["rss_kib_at"]["100%"] / 1024:.1f} MiB ({growth / 100:+.1f} KiB per job) | {"flat" if abs(growth) < 50 else "NOT flat"} (flat: < 0.5 KiB per job) |
| report.json | {r["report_bytes"] / 1024:.0f} KiB ({r["report_bytes"] / n:.0f} bytes per job) | |
| junit.xml | {r["junit_bytes"] / 1024:.0f} KiB ({r["junit_bytes"] / n:.0f} bytes per job) | |
| wall time | {r["wall_s"]:.0f} s ({r["wall_s"] / n:.2f} s per job) | |

Each job's report entry is written to an unnamed temporary file beside `--report` as the job finishes
(`ReportSpool` in abrpipe/batch.py), and report.json and junit.xml are streamed from it at the end, one entry
at a time, then renamed into place. What abrpipe keeps per finished job is what the summary table shows (time,
rendition count, the error line of a failed job) and an 8-byte offset into that file;
`tests/test_batch.py::test_a_long_batch_holds_no_outcomes_and_streams_its_reports` keeps the Python heap growth
under 300 bytes per finished job over 2000 jobs.

"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("-j", "--workers", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    ap.add_argument("--keep", help="keep the work directory here")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="abrpipe-batch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args.jobs, args.workers, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    text = markdown(result)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
