"""`abrpipe batch`: jobs files, validation of the whole batch, reports, skip/redo, retries, fail-fast."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from batch_media import (
    error_lines,
    make_clip,
    read_record,
    require_ffmpeg,
    run_cli,
    toml_str,
    validate,
    write_profile,
)

from abrpipe import batch, jobsfile
from abrpipe.errors import EncodeError, ExitCode, InputError
from abrpipe.jobsfile import BatchDefaults, JobsFileError, load_jobs_file


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """a.mp4 and b.mp4 (2 s, 320x180, stereo tone), c.mp4 (different content), tiny.toml."""
    require_ffmpeg()
    d = tmp_path_factory.mktemp("batch_media")
    make_clip(d / "a.mp4")
    make_clip(d / "b.mp4", size="320x240")
    make_clip(d / "c.mp4", seconds=3)
    write_profile(d)
    return d


@pytest.fixture()
def work(media, tmp_path) -> Path:
    for name in ("a.mp4", "b.mp4", "c.mp4", "tiny.toml"):
        shutil.copy(media / name, tmp_path / name)
    return tmp_path


def run(jobs, **kwargs) -> batch.BatchResult:
    kwargs.setdefault("concurrency", 2)
    return batch.run_batch(jobs, batch.LocalExecutor(kwargs["concurrency"]), **kwargs)


# ---------------------------------------------------------------------------------------------
# The jobs file


def test_jobs_file_defaults_overrides_and_relative_paths(work):
    (work / "jobs.toml").write_text(
        """
schema = 1
[defaults]
profile = "tiny.toml"
output_dir = "out"
preset = "superfast"

[[jobs]]
input = "a.mp4"

[[jobs]]
input = "b.mp4"
name = "b-720p"
profile = "720p"
preset = "ultrafast"
audio_tracks = [0]
validate = false

[[jobs]]
input = "c.mp4"
output = "elsewhere/c"
""",
        encoding="utf-8",
    )
    jobs = load_jobs_file(str(work / "jobs.toml"))
    assert [j.name for j in jobs] == ["a", "b-720p", "c"]
    a, b, c = (j.job for j in jobs)
    assert a.input == str(work / "a.mp4") and a.output == str(work / "out" / "a")
    assert a.profile.name == "tiny" and a.preset == "superfast" and a.validate
    assert b.profile.name == "720p" and b.preset == "ultrafast" and b.audio_tracks == (0,) and not b.validate
    assert b.output == str(work / "out" / "b-720p")
    assert c.output == str(work / "elsewhere" / "c")
    assert jobs[1].where.endswith("jobs.toml: jobs[1]")

    # Command-line settings override [defaults]; a job's own keys still win.
    jobs = load_jobs_file(str(work / "jobs.toml"), BatchDefaults(preset="veryfast", output_dir=str(work / "o2")))
    assert [j.job.preset for j in jobs] == ["veryfast", "ultrafast", "veryfast"]
    assert jobs[0].job.output == str(work / "o2" / "a")


def test_yaml_jobs_file_reads_like_toml(work):
    (work / "jobs.yaml").write_text(
        "schema: 1\ndefaults:\n  profile: tiny.toml\n  output_dir: out\n  name: '{stem}-{profile}'\n"
        "jobs:\n  - input: a.mp4\n  - input: b.mp4\n    preset: ultrafast\n",
        encoding="utf-8",
    )
    jobs = load_jobs_file(str(work / "jobs.yaml"))
    assert [j.name for j in jobs] == ["a-tiny", "b-tiny"]
    assert jobs[1].job.preset == "ultrafast"


def test_invalid_jobs_file_reports_every_problem_with_job_and_field(work):
    (work / "sub").mkdir()
    (work / "jobs.toml").write_text(
        """
schema = 1
colour = "blue"
[defaults]
profile = "tiny.toml"
output_dir = "out"
speed = 3

[[jobs]]
input = "missing.mp4"

[[jobs]]
input = "sub"

[[jobs]]
input = "a.mp4"
profile = "no-such-profile"

[[jobs]]
input = "b.mp4"
output = "out/same"

[[jobs]]
input = "c.mp4"
output = "out/same"

[[jobs]]
input = "a.mp4"
name = "../escape"

[[jobs]]
input = "a.mp4"
name = "nested"
output = "out/same/inner"

[[jobs]]
input = "a.mp4"
preset = true
audio_tracks = "some"
""",
        encoding="utf-8",
    )
    with pytest.raises(JobsFileError) as info:
        load_jobs_file(str(work / "jobs.toml"))
    problems = info.value.problems
    text = "\n".join(problems)
    expected = [
        "colour: unknown key",
        "defaults.speed: unknown key",
        "jobs[0].input: no such file",
        "jobs[1].input: is a directory",
        "jobs[2].profile: unknown profile 'no-such-profile'",
        "jobs[4].output: same output as jobs[3]",
        "jobs[5].name: must be a plain name",
        "jobs[6].output:",  # nested inside jobs[3]'s output
        "jobs[7].preset: expected a preset name",
        "jobs[7].audio_tracks: expected",
    ]
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not reported in:\n{text}"
    assert all(p.startswith("jobs.toml: ") or "/jobs.toml: " in p for p in problems)

    # Through the CLI: one line per problem, exit code PROFILE (4), nothing created.
    proc = run_cli("batch", "jobs.toml", cwd=work)
    assert proc.returncode == ExitCode.PROFILE, proc.stderr
    assert len(error_lines(proc.stderr)) == len(problems)
    assert "Traceback" not in proc.stderr
    assert not (work / "out").exists()


def test_derived_names_cannot_escape_the_output_directory(work):
    for name in ("..mp4", "-rf.mp4", "a$(touch pwned) & b.mp4", "x\\..\\y.mp4", "über.mp4"):
        shutil.copy(work / "a.mp4", work / name)
    jobs = jobsfile.jobs_from_patterns(
        [str(work / n) for n in ("..mp4", "-rf.mp4", "a$(touch pwned) & b.mp4", "x\\..\\y.mp4", "über.mp4")],
        BatchDefaults(profile=str(work / "tiny.toml"), output_dir=str(work / "out")),
    )
    out = str(work / "out") + os.sep
    for j in jobs:
        assert j.job.output.startswith(out), j.job.output
        assert os.sep not in j.job.output[len(out):]
        assert not os.path.basename(j.job.output).startswith((".", "-"))
    assert "über" in [j.name for j in jobs]

    (work / "jobs.toml").write_text(
        f'[defaults]\nprofile = "tiny.toml"\noutput_dir = "out"\nname = "../../{{stem}}/../{{profile}}"\n'
        f'[[jobs]]\ninput = {toml_str("a.mp4")}\n',
        encoding="utf-8",
    )
    (job,) = load_jobs_file(str(work / "jobs.toml"))
    assert os.path.dirname(job.job.output) == str(work / "out")


def test_outputs_may_not_hold_an_input(work):
    (work / "jobs.toml").write_text(
        '[defaults]\nprofile = "tiny.toml"\n[[jobs]]\ninput = "a.mp4"\noutput = "."\n', encoding="utf-8"
    )
    with pytest.raises(JobsFileError, match=r"jobs\[0\]\.output: .* holds the input of jobs\[0\]"):
        load_jobs_file(str(work / "jobs.toml"))


def test_glob_patterns_that_match_nothing_fail_clearly(work):
    with pytest.raises(InputError, match=r"no file matches"):
        jobsfile.jobs_from_patterns([str(work / "nothing" / "*.mp4")], BatchDefaults(profile=str(work / "tiny.toml")))


def test_a_task_crosses_a_process_boundary_intact(work):
    (bj,) = jobsfile.jobs_from_patterns([str(work / "a.mp4")], BatchDefaults(profile=str(work / "tiny.toml")))
    task = batch.Task(bj.name, bj.job, attempt=2)
    assert pickle.loads(pickle.dumps(task)) == task
    outcome = batch.TaskOutcome("a", 1, "failed", 0.0, 1.0, error=batch.ErrorInfo("EncodeError", "boom", 6))
    assert pickle.loads(pickle.dumps(outcome)) == outcome


def test_default_concurrency_divides_cpus_by_job_threads(work):
    jobs = jobsfile.jobs_from_patterns([str(work / "a.mp4"), str(work / "b.mp4")], BatchDefaults(profile=str(work / "tiny.toml")))
    # Two video rungs: 4 threads per job.
    assert batch.default_concurrency(jobs, cpus=2) == 1
    assert batch.default_concurrency(jobs, cpus=8) == 2
    assert batch.default_concurrency(jobs, cpus=64) == 2  # never more than there are jobs
    assert batch.default_concurrency([], cpus=64) == 1


def test_eta_is_the_remaining_input_at_the_rate_encoded_so_far(work):
    (bj,) = jobsfile.jobs_from_patterns([str(work / "a.mp4")], BatchDefaults(profile=str(work / "tiny.toml")))
    done, running, queued, failed = (batch.JobState(n, bj.job, "", 100.0) for n in "abcd")
    done.status, running.status, running.fraction, failed.status = "succeeded", "running", 0.5, "failed"
    # 150 units encoded in 30 s; 50 + 100 units left (the failed job is not counted either way).
    assert batch.eta_s([done, running, queued, failed], 30.0) == pytest.approx(30.0)
    assert batch.eta_s([queued], 30.0) is None


def test_backoff_doubles_and_is_capped():
    assert [batch.backoff_s(n, 2.0) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert batch.backoff_s(30, 2.0) == batch.MAX_BACKOFF_S


def test_dask_executor_without_dask_says_what_to_install(monkeypatch):
    from abrpipe.errors import DependencyError

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(DependencyError, match="dask") as info:
        batch.make_executor(1, "tcp://127.0.0.1:1")
    assert "pip install 'abrpipe[distributed]'" in (info.value.hint or "")


@pytest.mark.slow
def test_dask_executor_runs_a_job(work):
    from test_dask import require_dask

    require_dask()
    import dask.distributed as distributed

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        jobs = jobsfile.jobs_from_patterns([str(work / "a.mp4")], BatchDefaults(profile=str(work / "tiny.toml"), output_dir=str(work / "out")))
        executor = batch.DaskExecutor(cluster.scheduler_address)
        result = batch.run_batch(jobs, executor, concurrency=1)
    assert [js.status for js in result.jobs] == ["succeeded"]
    assert not validate(work / "out" / "a").errors


# ---------------------------------------------------------------------------------------------
# Running batches


@pytest.mark.slow
def test_batch_cli_reports_and_junit(work):
    """Glob mode, one bad input among good ones: the others publish, exit code 8, both reports."""
    src = work / "src"
    src.mkdir()
    shutil.copy(work / "a.mp4", src / "a.mp4")
    shutil.copy(work / "b.mp4", src / "b.mp4")
    (src / "bad.mp4").write_bytes(os.urandom(5000))
    proc = run_cli("batch", "src/*.mp4", "-p", "tiny.toml", "-o", "out", "-j", "2",
                   "--report", "report.json", "--junit", "junit.xml", cwd=work)
    assert proc.returncode == ExitCode.BATCH_FAILED, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "1 of 3 job(s) failed: bad" in line
    assert any("bad.mp4: not a readable media file" in ln for ln in proc.stderr.splitlines())

    report = json.loads((work / "report.json").read_text())
    assert report["exit_code"] == 8 and report["counts"]["succeeded"] == 2 and report["counts"]["failed"] == 1
    entries = {j["name"]: j for j in report["jobs"]}
    assert set(entries) == {"a", "b", "bad"}
    for name in ("a", "b"):
        e = entries[name]
        assert e["status"] == "succeeded" and e["error"] is None and e["exit_code"] == 0
        assert {"probe_plan", "encode", "package", "validate", "publish"} <= set(e["timings_s"])
        assert [r["id"] for r in e["renditions"] if r["kind"] == "video"]
        assert e["validation"]["ok"] is True
        assert Path(e["validation"]["path"]).resolve() == (work / "out" / name).resolve()  # OUT, not OUT.partial
        assert len(e["attempts"]) == 1 and e["attempts"][0]["status"] == "succeeded"
        assert not validate(work / "out" / name).errors
    bad = entries["bad"]
    assert bad["status"] == "failed" and bad["exit_code"] == ExitCode.INPUT
    assert "bad.mp4" in bad["error"] and bad["attempts"][0]["error"]["type"] == "InputError"
    assert not (work / "out" / "bad").exists() and not (work / "out" / "bad.partial").exists()

    suite = ET.parse(work / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["bad"].find("failure") is not None and "bad.mp4" in cases["bad"].find("failure").get("message")
    assert cases["a"].find("failure") is None and cases["a"].find("skipped") is None

    # The same command again: done jobs are skipped (and say why); the bad one fails again.
    proc = run_cli("batch", "src/*.mp4", "-p", "tiny.toml", "-o", "out", "--report", "report2.json", "--junit", "junit2.xml",
                   "--json", cwd=work)
    assert proc.returncode == ExitCode.BATCH_FAILED
    report = json.loads((work / "report2.json").read_text())
    assert json.loads(proc.stdout) == report  # --json prints the same report
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(("report", "junit"))) == [
        "junit.xml", "junit2.xml", "report.json", "report2.json"]  # no temporary file left beside them
    entries = {j["name"]: j for j in report["jobs"]}
    assert entries["a"]["status"] == entries["b"]["status"] == "skipped"
    assert "up to date" in entries["a"]["reason"] and entries["a"]["renditions"]
    suite = ET.parse(work / "junit2.xml").getroot().find("testsuite")
    assert suite.get("skipped") == "2"


@pytest.mark.slow
def test_skip_redo_and_force(work):
    (work / "jobs.toml").write_text('[defaults]\nprofile = "tiny.toml"\noutput_dir = "out"\n[[jobs]]\ninput = "a.mp4"\n')

    def once(**kwargs):
        jobs = load_jobs_file(str(work / "jobs.toml"), BatchDefaults(**kwargs.pop("cli", {})))
        (js,) = run(jobs, concurrency=1, **kwargs).jobs
        return js

    first = once()
    assert first.status == "succeeded"
    created = read_record(work / "out" / "a")["created_unix"]
    second = once()
    assert second.status == "skipped" and "up to date" in second.last.reason
    assert read_record(work / "out" / "a")["created_unix"] == created  # untouched

    changed_preset = once(cli={"preset": "superfast"})
    assert changed_preset.status == "succeeded" and "profile or the job's overrides changed" in changed_preset.last.reason

    shutil.copy(work / "c.mp4", work / "a.mp4")  # new content under the same name
    changed_input = once(cli={"preset": "superfast"})
    assert changed_input.status == "succeeded" and "input changed" in changed_input.last.reason
    assert read_record(work / "out" / "a")["duration_s"] == pytest.approx(3.0, abs=0.1)

    forced = once(cli={"preset": "superfast"}, force=True)
    assert forced.status == "succeeded" and forced.last.reason == "redone: --force"

    # A damaged previous output is redone, not trusted.
    next((work / "out" / "a").glob("*/seg_00002.m4s")).unlink()
    damaged = once(cli={"preset": "superfast"})
    assert damaged.status == "succeeded" and "incomplete" in damaged.last.reason
    assert not validate(work / "out" / "a").errors


def test_a_stale_partial_work_area_is_cleared_and_the_job_redone(work):
    stale = work / "out" / "a.partial"
    (stale / "180p-300k").mkdir(parents=True)
    (stale / "180p-300k" / "seg_00001.m4s").write_bytes(b"half a segment")
    (stale / "master.m3u8").write_text("#EXTM3U\n")
    jobs = jobsfile.jobs_from_patterns([str(work / "a.mp4")], BatchDefaults(profile=str(work / "tiny.toml"), output_dir=str(work / "out")))
    (js,) = run(jobs).jobs
    assert js.status == "succeeded"
    assert not stale.exists()
    assert not validate(work / "out" / "a").errors


def test_retries_back_off_and_keep_every_attempts_error(work, monkeypatch):
    real = batch.run_job
    calls: list[str] = []

    def flaky(job, on_event=None):
        calls.append(job.input)
        if job.input.endswith("a.mp4") and len([c for c in calls if c.endswith("a.mp4")]) <= 2:
            raise EncodeError("ffmpeg exited with code -9", returncode=-9, stderr_tail="Killed")
        if job.input.endswith("b.mp4"):
            raise InputError(f"{job.input}: not a readable media file (test)")
        return real(job, on_event)

    monkeypatch.setattr(batch, "run_job", flaky)
    jobs = jobsfile.jobs_from_patterns([str(work / "a.mp4"), str(work / "b.mp4")],
                                       BatchDefaults(profile=str(work / "tiny.toml"), output_dir=str(work / "out")))
    result = run(jobs, retries=2, retry_delay_s=0.05)
    a, b = result.jobs
    assert a.status == "succeeded" and [o.status for o in a.attempts] == ["failed", "failed", "succeeded"]
    assert all(o.error and o.error.message == "ffmpeg exited with code -9" and o.error.stderr_tail == "Killed" for o in a.attempts[:2])
    # The second attempt started at least the backoff after the first ended.
    assert a.attempts[1].started_unix - (a.attempts[0].started_unix + a.attempts[0].duration_s) >= 0.04
    # An input at fault is not retried: the same error would come back.
    assert b.status == "failed" and len(b.attempts) == 1
    assert result.exit_code == ExitCode.BATCH_FAILED
    entry = {e["name"]: e for e in batch.report_dict(result)["jobs"]}["a"]
    assert [at["error"]["message"] if at["error"] else None for at in entry["attempts"]] == [
        "ffmpeg exited with code -9", "ffmpeg exited with code -9", None]


def test_fail_fast_stops_the_rest(work):
    (work / "notes.mp4").write_text("not a video at all\n")
    jobs = jobsfile.jobs_from_patterns([str(work / n) for n in ("notes.mp4", "a.mp4", "b.mp4")],
                                       BatchDefaults(profile=str(work / "tiny.toml"), output_dir=str(work / "out")))
    result = run(jobs, concurrency=1, fail_fast=True)
    assert [js.status for js in result.jobs] == ["failed", "cancelled", "cancelled"]
    assert result.exit_code == ExitCode.BATCH_FAILED
    assert not (work / "out").exists() or not any((work / "out").iterdir())
    # Without --fail-fast the others run.
    result = run(jobs, concurrency=2)
    assert [js.status for js in result.jobs] == ["failed", "succeeded", "succeeded"]


def test_the_sample_jobs_file_is_valid(work):
    """samples/jobs.toml, which the README walks through, passes the whole-batch check."""
    sample = Path(__file__).resolve().parent.parent / "samples" / "jobs.toml"
    shutil.copy(sample, work / "jobs.toml")
    shutil.copy(work / "a.mp4", work / "demo.mp4")
    jobs = load_jobs_file(str(work / "jobs.toml"))
    assert [j.name for j in jobs] == ["demo-480p", "demo-720p", "demo-audio"]
    assert {os.path.dirname(j.job.output) for j in jobs} == {str(work / "batch-abr")}
    assert [j.job.profile.name for j in jobs] == ["480p", "720p", "audio-only"]


def test_dry_run_says_what_would_run_or_skip(work):
    (work / "jobs.toml").write_text('[defaults]\nprofile = "tiny.toml"\noutput_dir = "out"\n[[jobs]]\ninput = "a.mp4"\n')
    proc = run_cli("batch", "jobs.toml", "--dry-run", "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["jobs"]
    assert row["action"] == "run" and row["output"] == str(work / "out" / "a")
    assert not (work / "out").exists()


# ---------------------------------------------------------------------------------------------
# Memory: a batch's reports are streamed, so finished jobs' outcomes are not held in memory


class _FakeFuture:
    """Done at a random poll (so jobs finish out of order); its outcome is made when it is read,
    as an outcome arrives from a worker: a fresh record per job, like a real one in size."""

    def __init__(self, task: batch.Task, rng) -> None:
        self.task, self.rng, self._done = task, rng, False

    def done(self) -> bool:
        self._done = self._done or self.rng.random() < 0.3
        return self._done

    def result(self, timeout=None) -> batch.TaskOutcome:
        name, n = self.task.name, int(self.task.name[1:])
        if n % 7 == 3:
            return batch.TaskOutcome(name, self.task.attempt, "failed", 1e9 + n, 0.5, retriable=False, error=batch.ErrorInfo(
                "EncodeError", f"ffmpeg exited with code 1 ({name})", 6, hint="see the log", stderr_tail=f"Error \x1b[31m{n}"))
        if n % 13 == 5 and self.task.attempt == 1:
            return batch.TaskOutcome(name, 1, "failed", 1e9 + n, 0.25, retriable=True,
                                     error=batch.ErrorInfo("EncodeError", "ffmpeg exited with code -9", 6, stderr_tail="Killed"))
        renditions = [
            {"id": f"{h}p-{n}", "kind": "video", "codec": "avc1.64001e", "width": h * 16 // 9, "height": h, "frame_rate": 30.0,
             "segments": 10 + n % 5, "duration_s": 20.0 + n / 1000, "average_bps": 1000 * n + h, "peak_bps": 2000 * n + h,
             "size_bytes": 10_000 * n + h, "channels": None, "language": None}
            for h in (180, 360, 720)
        ] + [{"id": f"audio-{n}", "kind": "audio", "codec": "mp4a.40.2", "width": None, "height": None, "frame_rate": None,
              "segments": 10, "duration_s": 20.0, "average_bps": 64_000 + n, "peak_bps": 70_000 + n, "size_bytes": 160_000 + n,
              "channels": 2, "language": "und"}]
        record = {"renditions": renditions, "validation": {"ok": True, "errors": 0, "warnings": 1, "findings": [
            {"rule": "APPLE-9.14-AVERAGE-BANDWIDTH", "severity": "warning", "message": f"{name}: a warning of {n}"}]}}
        status, reason = ("skipped", f"up to date ({name})") if n % 11 == 0 else ("succeeded", "")
        timings = {"probe_plan": 0.01 * n, "encode": 0.02 * n, "package": 0.5, "validate": 0.25, "publish": 0.125}
        return batch.TaskOutcome(name, self.task.attempt, status, 1e9 + n, 1.5, reason=reason, timings_s=timings, record=record)


class _FakeExecutor:
    description = "fake"
    streams_events = False

    def __init__(self, seed: int = 7) -> None:
        import random

        self.rng = random.Random(seed)

    def submit(self, task, on_event=None):
        return _FakeFuture(task, self.rng)

    def cancel_all(self) -> None: ...

    def shutdown(self, wait: bool = True) -> None: ...


def test_a_long_batch_holds_no_outcomes_and_streams_its_reports(tmp_path):
    """2000 finished jobs (no ffmpeg): the Python heap grows by less than 300 bytes per finished job
    (each outcome's renditions and validation go to the report spool as the job finishes, not to
    memory), and report.json / junit.xml still hold every job, in the batch's order, formatted as
    json.dumps(indent=2) and ET.indent would format the whole document."""
    import dataclasses
    import io
    import tracemalloc

    from rich.console import Console

    from abrpipe.cli.batch_cmd import summary_table

    (tmp_path / "in.mp4").write_bytes(b"\0" * 100)
    (template,) = jobsfile.jobs_from_patterns([str(tmp_path / "in.mp4")], BatchDefaults(profile="default", output_dir=str(tmp_path / "out")))
    n_jobs = 2000
    jobs = [jobsfile.BatchJob(f"t{n:04d}", template.job, f"jobs[{n}]") for n in range(n_jobs)]
    heap: dict[int, int] = {}

    class Sampler(batch.BatchObserver):
        finished = 0

        def job_finished(self, js):
            self.finished += 1
            if self.finished in (200, n_jobs):
                heap[self.finished] = tracemalloc.get_traced_memory()[0]

    report, junit = tmp_path / "reports" / "report.json", tmp_path / "reports" / "junit.xml"
    report.parent.mkdir()
    with batch.ReportSpool(str(report.parent)) as spool:
        tracemalloc.start()
        try:
            result = batch.run_batch(jobs, _FakeExecutor(), concurrency=8, retries=1, retry_delay_s=0.0,
                                     observer=Sampler(), poll_s=0.0, spool=spool)
        finally:
            tracemalloc.stop()
        per_job = (heap[n_jobs] - heap[200]) / (n_jobs - 200)
        print(f"PERJOB {per_job:.1f}")
        assert per_job < 300, f"{per_job:.0f} bytes of Python heap per finished job"
        assert all(not js.attempts for js in result.jobs)  # every outcome went to the spool
        batch.write_report(result, str(report))
        batch.write_junit(result, str(junit))
        stdout = io.StringIO()
        batch.dump_report(result, stdout.write)
        table = io.StringIO()
        Console(file=table, width=200).print(summary_table(dataclasses.replace(result, jobs=result.jobs[:50])))  # rich is slow
    assert sorted(p.name for p in report.parent.iterdir()) == ["junit.xml", "report.json"]  # no temporary left

    text = report.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2) + "\n" == stdout.getvalue()
    entries = data["jobs"]
    assert [e["name"] for e in entries] == [f"t{n:04d}" for n in range(n_jobs)]
    failed = [n for n in range(n_jobs) if n % 7 == 3]
    skipped = [n for n in range(n_jobs) if n % 11 == 0 and n % 7 != 3]
    assert data["counts"] == {"total": n_jobs, "succeeded": n_jobs - len(failed) - len(skipped), "skipped": len(skipped),
                              "failed": len(failed), "interrupted": 0, "cancelled": 0}
    for n, e in enumerate(entries):
        if n % 7 == 3:
            assert e["status"] == "failed" and e["error"] == f"ffmpeg exited with code 1 (t{n:04d}) (see the log)"
            assert e["renditions"] == [] and e["exit_code"] == 6
            continue
        assert e["status"] == ("skipped" if n % 11 == 0 else "succeeded")
        assert [r["id"] for r in e["renditions"]] == [f"180p-{n}", f"360p-{n}", f"720p-{n}", f"audio-{n}"]
        assert e["renditions"][2]["size_bytes"] == 10_000 * n + 720
        assert e["validation"]["findings"][0]["message"] == f"t{n:04d}: a warning of {n}"
        assert [a["status"] for a in e["attempts"]] == (["failed", e["status"]] if n % 13 == 5 else [e["status"]])

    raw = junit.read_bytes()
    root = ET.fromstring(raw)
    suite = root.find("testsuite")
    assert suite.get("tests") == str(n_jobs) and suite.get("failures") == str(len(failed))
    assert suite.get("skipped") == str(len(skipped))
    cases = list(suite.iter("testcase"))
    assert [c.get("name") for c in cases] == [f"t{n:04d}" for n in range(n_jobs)]
    assert "Error ?[31m3" in cases[3].find("failure").text  # the control character made XML-safe
    assert "rendition 720p-1: 1280x720 avc1.64001e 1720 bps" in cases[1].find("system-out").text
    ET.indent(root)  # the streamed document is what indenting the whole tree at once makes
    assert ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n" == raw

    rows = table.getvalue()  # from the summary fields each job kept
    assert rows.count(" succeeded ") == sum(e["status"] == "succeeded" for e in entries[:50])
    assert rows.count(" 4 ") == sum(e["status"] != "failed" for e in entries[:50])  # renditions
    assert "ffmpeg exited with code 1 (t0003) (see the log)" in rows


def test_a_local_batch_imports_no_cluster_library(work):
    """Without --scheduler every work unit runs here: the batch must not import dask.distributed
    (with it numpy, tornado, psutil...: 35 MiB of resident memory, and a second of CPU) only to
    learn that it is not on a dask worker. CI installs dask (make test): otherwise this proves nothing."""
    from test_dask import require_dask

    require_dask()
    code = ("import sys\nfrom abrpipe.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n"
            "    print(exc.code, [m for m in ('distributed', 'dask', 'numpy', 'tornado', 'psutil') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code, "batch", "a.mp4", "-p", "tiny.toml", "-o", "out", "-q"],
                          cwd=work, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.stdout.strip() == "0 []", proc.stdout + proc.stderr
    assert read_record(work / "out" / "a")["renditions"]  # the job ran


def test_the_garbage_of_each_job_is_collected_as_the_job_ends(tmp_path):
    """What a job leaves in reference cycles (a real one: the DOM trees of the MPDs it read back,
    ffmpeg-python's filter graphs) is freed as it ends, not when CPython's oldest generation next
    fills up (here, with the automatic collections off, never); gc's state is restored afterwards."""
    import gc
    import weakref

    class Node:  # a DOM node and its child: parent <-> child
        def __init__(self, parent=None) -> None:
            self.parent, self.children = parent, []
            if parent is not None:
                parent.children.append(self)

    cycles: list[weakref.ref] = []

    class CyclicFuture(_FakeFuture):
        def result(self, timeout=None) -> batch.TaskOutcome:
            cycles.append(weakref.ref(Node(Node())))  # garbage in a cycle from here on, as a parsed manifest is
            return super().result(timeout)

    class CyclicExecutor(_FakeExecutor):
        def submit(self, task, on_event=None):
            return CyclicFuture(task, self.rng)

    left: list[int] = []

    class Watcher(batch.BatchObserver):
        def tick(self, states, elapsed_s):
            left.append(sum(ref() is not None for ref in cycles))

    (tmp_path / "in.mp4").write_bytes(b"\0" * 100)
    (template,) = jobsfile.jobs_from_patterns([str(tmp_path / "in.mp4")], BatchDefaults(profile="default"))
    jobs = [jobsfile.BatchJob(f"t{n:04d}", template.job, f"jobs[{n}]") for n in range(200)]
    gc.disable()
    try:
        batch.run_batch(jobs, CyclicExecutor(), concurrency=4, retries=1, retry_delay_s=0.0, observer=Watcher(), poll_s=0.0)
        assert gc.get_freeze_count() == 0 and not gc.isenabled()
    finally:
        gc.enable()
    assert len(cycles) > 200 and len(left) > 50  # every job (and its retry) made garbage
    assert max(left) == 0, f"up to {max(left)} jobs' garbage was still held"


def test_reports_from_the_spool_equal_the_reports_from_memory(tmp_path):
    """The same batch reported from its outcomes in memory and from a spool: the same bytes."""
    (tmp_path / "in.mp4").write_bytes(b"\0" * 100)
    (template,) = jobsfile.jobs_from_patterns([str(tmp_path / "in.mp4")], BatchDefaults(profile="default"))
    jobs = [jobsfile.BatchJob(f"t{n:04d}", template.job, f"jobs[{n}]") for n in range(40)]
    result = batch.run_batch(jobs, _FakeExecutor(), concurrency=4, retries=1, retry_delay_s=0.0, poll_s=0.0, fail_fast=True)
    assert {"failed", "cancelled"} <= {js.status for js in result.jobs}  # fail-fast stopped the rest
    batch.write_report(result, str(tmp_path / "memory.json"))
    batch.write_junit(result, str(tmp_path / "memory.xml"))
    assert json.loads((tmp_path / "memory.json").read_text()) == batch.report_dict(result)
    with batch.ReportSpool(str(tmp_path)) as spool:
        spool.begin(len(result.jobs))
        for js in reversed(result.jobs):  # in any order
            assert spool.add(js.index, batch.job_entry(js))
        result.spool = spool
        batch.write_report(result, str(tmp_path / "spool.json"))
        batch.write_junit(result, str(tmp_path / "spool.xml"))
    assert (tmp_path / "spool.json").read_bytes() == (tmp_path / "memory.json").read_bytes()
    assert (tmp_path / "spool.xml").read_bytes() == (tmp_path / "memory.xml").read_bytes()


def test_an_unwritable_report_place_fails_before_the_first_job(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(batch.tempfile, "TemporaryFile", refuse)
    with pytest.raises(batch.OutputError) as info:
        batch.ReportSpool(str(tmp_path))
    assert info.value.message == f"{tmp_path}: cannot write the batch's reports there (Permission denied)"
    assert info.value.exit_code == ExitCode.OUTPUT and "--report" in (info.value.hint or "")
