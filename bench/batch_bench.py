"""A batch of many tiny titles: abrpipe's own memory and CPU per job, and the size of the reports.

    python bench/batch_bench.py [--jobs 500] [-j 2] [--no-write]

One 1-s 128x72 clip is generated with lavfi; the jobs file lists it N times, each job publishing its
own output. `abrpipe batch -j 2 --report --junit` runs as a child process, and this script samples,
every 0.2 s, abrpipe's resident memory (VmRSS, /proc) and CPU time (utime + stime of the abrpipe
process, every thread included; its ffmpeg/ffprobe children are counted apart) against the number
of jobs finished. What is recorded:

- peak RSS, RSS after 10 %, 20 %, 50 % and 100 % of the jobs, and the growth per job fitted (least
  squares over every sample) in the first half (10-55 % of the jobs) and the second half (55-100 %)
  apart: flat means no per-job growth once the first jobs have warmed the process up (a cache that
  fills, then stops, shows in the first half only; a leak shows in both);
- abrpipe's thread count and open file descriptors along the way (a per-job leak of either shows);
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
AIM_GROWTH_B_PER_JOB = 512  # flat: the second half grows by less than this per job


def _stat(pid: int) -> tuple[float, float] | None:
    """(own CPU-s, reaped children's CPU-s) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def _memory(pid: int) -> tuple[int, int, int] | None:
    """(VmRSS KiB, threads, open file descriptors) of a live process."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    return int(fields["VmRSS"].split()[0]), int(fields["Threads"]), fds


def slope_b_per_job(samples: list[tuple[float, int, int, int, int]], lo: float, hi: float) -> float:
    """RSS growth in bytes per finished job: least squares over the samples taken while `lo` <= jobs
    done <= `hi` (and the batch was still running jobs)."""
    points = [(done, rss * 1024) for _, done, rss, _, _ in samples if lo <= done <= hi]
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


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
    load_start = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int, int, int, int]] = []  # (seconds, jobs done, RSS KiB, threads, fds)
    own = children = 0.0
    while proc.poll() is None:
        stat, memory = _stat(proc.pid), _memory(proc.pid)
        if stat is not None:
            own, children = stat
        if memory is not None:
            done = sum(1 for p in out.iterdir() if not p.name.endswith((".partial", ".units"))) if out.exists() else 0
            samples.append((time.monotonic() - start, done, *memory))
        time.sleep(0.2)
    _, stderr = proc.communicate()
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"abrpipe batch exited with {proc.returncode}:\n{stderr[-2000:]}")
    report = json.loads((work / "report.json").read_text())
    statuses = {j["status"] for j in report["jobs"]}
    assert statuses == {"succeeded"} and len(report["jobs"]) == jobs, statuses

    def at(fraction: float) -> tuple[float, int, int, int, int]:
        want = fraction * jobs
        return next((s for s in samples if s[1] >= want), samples[-1])

    fractions = {"10%": 0.10, "20%": 0.20, "50%": 0.50, "100%": 1.0}
    return {
        "jobs": jobs,
        "workers": workers,
        "load_start": load_start,
        "wall_s": wall,
        "peak_rss_kib": max(s[2] for s in samples),
        "rss_kib_at": {k: at(f)[2] for k, f in fractions.items()},
        "threads_at": {k: at(f)[3] for k, f in fractions.items()},
        "fds_at": {k: at(f)[4] for k, f in fractions.items()},
        "growth_b_per_job": {
            "first half": slope_b_per_job(samples, 0.10 * jobs, 0.55 * jobs),
            "second half": slope_b_per_job(samples, 0.55 * jobs, jobs - 1),
            "10-100%": slope_b_per_job(samples, 0.10 * jobs, jobs - 1),
        },
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
    growth = r["growth_b_per_job"]
    flat = abs(growth["second half"]) < AIM_GROWTH_B_PER_JOB
    mib = {k: f"{v / 1024:.1f}" for k, v in r["rss_kib_at"].items()}
    marks = {k: round(f * n) for k, f in (("10%", 0.1), ("20%", 0.2), ("50%", 0.5), ("100%", 1.0))}
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"""## Batch of many titles

`bench/batch_bench.py`, {now:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu_model()}), Linux {os.uname().release};
{ffmpeg_version.split(" Copyright")[0]}. The machine was shared with other work (load average {r["load_start"]:.1f} at the
start, {load[0]:.1f} at the end), so wall time is only indicative; CPU-seconds of the abrpipe process itself are what counts.

{n} jobs of one 1-s 128x72 clip (one H.264 rung + AAC, 1-s segments), `abrpipe batch -j {r["workers"]} --report
--junit`, every job encoded, validated and published.

| measure | value | aim |
|---|---|---|
| abrpipe's own CPU per job (beyond ffmpeg) | **{per_job:.3f} CPU-s** ({r["own_cpu_s"]:.1f} CPU-s in all) | < {AIM_OVERHEAD_CPU_S} s: {"met" if per_job < AIM_OVERHEAD_CPU_S else "MISSED"} |
| ffmpeg/ffprobe CPU per job (for scale) | {r["children_cpu_s"] / n:.3f} CPU-s | |
| peak RSS of abrpipe | {r["peak_rss_kib"] / 1024:.1f} MiB | |
| RSS after {" / ".join(str(v) for v in marks.values())} jobs | {" / ".join(mib.values())} MiB | |
| RSS growth per job, first half ({marks["10%"]}-{round(0.55 * n)} jobs) / second half ({round(0.55 * n)}-{n}) | {growth["first half"]:+.0f} / **{growth["second half"]:+.0f} bytes** | second half < {AIM_GROWTH_B_PER_JOB} bytes: {"flat" if flat else "NOT flat"} |
| threads / open files of abrpipe after {" / ".join(str(v) for v in marks.values())} jobs | {" / ".join(str(v) for v in r["threads_at"].values())} threads; {" / ".join(str(v) for v in r["fds_at"].values())} fds | no growth |
| report.json | {r["report_bytes"] / 1024:.0f} KiB ({r["report_bytes"] / n:.0f} bytes per job) | |
| junit.xml | {r["junit_bytes"] / 1024:.0f} KiB ({r["junit_bytes"] / n:.0f} bytes per job) | |
| wall time | {r["wall_s"]:.0f} s ({r["wall_s"] / n:.2f} s per job) | |

Growth per job is the least-squares slope of the RSS samples (every 0.2 s) against the jobs finished, in each half
of the batch; RSS is read from /proc, so it includes everything (the Python heap, the C allocator's arenas and what
they hold free, the libraries' own memory). Per finished job abrpipe keeps what the summary table shows (time,
rendition count, the error line of a failed job) and an 8-byte offset into the report spool: each job's report entry
is written to an unnamed temporary file beside `--report` as the job finishes (`ReportSpool` in abrpipe/batch.py),
and report.json and junit.xml are streamed from it at the end, then renamed into place.
`tests/test_batch.py::test_a_long_batch_holds_no_outcomes_and_streams_its_reports` keeps the Python heap growth
under 300 bytes per finished job over 2000 jobs. The garbage each attempt leaves in reference cycles (the minidom
trees of the MPDs it reads back, ffmpeg-python's filter graphs, indented JSON encoders: about 750 objects per job) is
collected as the attempt ends (`test_the_garbage_of_each_job_is_collected_as_the_job_ends`), and a local batch does
not import dask.distributed (`test_a_local_batch_imports_no_cluster_library`).

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
