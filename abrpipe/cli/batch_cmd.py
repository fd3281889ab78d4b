"""`abrpipe batch`: many jobs from a jobs file or from input patterns, with one progress display."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import click
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from abrpipe import batch
from abrpipe.cli.common import console_err, emit_json, endpoint_option, json_option, quiet_option
from abrpipe.cli.encode_cmd import parse_audio_tracks, parse_chunk
from abrpipe.errors import ExitCode
from abrpipe.jobsfile import BatchDefaults, is_jobs_file, jobs_from_patterns, load_jobs_file


def _short_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if len(rel) < len(path) else path


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class BatchDisplay(batch.BatchObserver):
    """One live display for the whole batch on a terminal; plain lines otherwise (CI logs)."""

    def __init__(self, total: int, *, quiet: bool, interval_s: float = 10.0) -> None:
        self.total = total
        self.quiet = quiet
        self.interval_s = interval_s
        self.console = console_err()
        self.finished = 0
        self._bar: Progress | None = None
        self._overall: TaskID | None = None
        self._rows: dict[str, TaskID] = {}
        self._last_line = time.monotonic()

    def __enter__(self) -> BatchDisplay:
        if not self.quiet and self.console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=True,
            )
            self._bar.__enter__()
            self._overall = self._bar.add_task("[bold]batch", total=self.total, info="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def say(self, text: str, *, always: bool = False, style: str | None = None) -> None:
        if always or not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True, style=style)

    def job_started(self, js: batch.JobState) -> None:
        if self._bar is not None:
            self._rows[js.name] = self._bar.add_task(f"  {js.name}", total=1.0, info="starting")

    def job_retry(self, js: batch.JobState, delay_s: float) -> None:
        self._drop_row(js)
        error = js.last.error.line() if js.last and js.last.error else "failed"
        self.say(f"{js.name}: attempt {len(js.attempts)} failed ({error}); retrying in {delay_s:g}s", style="yellow")

    def job_finished(self, js: batch.JobState) -> None:
        self._drop_row(js)
        self.finished += 1
        prefix = f"[{self.finished}/{self.total}] {js.name}"
        last = js.last
        if js.status == "succeeded":
            self.say(f"{prefix}: succeeded in {_duration(js.took_s)}, {js.renditions} renditions -> {_short_path(js.job.output)}")
        elif js.status == "skipped":
            self.say(f"{prefix}: skipped, {last.reason if last else 'up to date'}")
        elif js.status == "failed":
            error = js.error_line or "failed"
            tries = f" after {js.tries} attempts" if js.tries > 1 else ""
            self.say(f"{prefix}: failed{tries}: {error}", always=True, style="red")
        elif js.status == "interrupted":
            self.say(f"{prefix}: interrupted", always=True, style="yellow")

    def _drop_row(self, js: batch.JobState) -> None:
        row = self._rows.pop(js.name, None)
        if self._bar is not None and row is not None:
            self._bar.remove_task(row)

    def tick(self, states: list[batch.JobState], elapsed_s: float) -> None:
        done = sum(1 for s in states if s.final)
        running = [s for s in states if s.status == "running"]
        failed = sum(1 for s in states if s.status == "failed")
        eta = batch.eta_s(states, elapsed_s)
        info = f"{done}/{len(states)} done, {len(running)} running, {failed} failed, eta {_duration(eta)}"
        if self._bar is not None and self._overall is not None:
            self._bar.update(self._overall, completed=done + sum(s.fraction for s in running), info=info)
            for s in running:
                row = self._rows.get(s.name)
                if row is not None:
                    self._bar.update(row, completed=s.fraction, info=s.stage)
            return
        now = time.monotonic()
        if running and now - self._last_line >= self.interval_s:
            self._last_line = now
            self.say(f"batch: {info}")


def summary_table(result: batch.BatchResult) -> Table:
    """From each job's summary fields (time, renditions, error line), not its outcomes: those went to
    the report spool as the job finished."""
    table = Table(title="batch", title_justify="left")
    for col in ("job", "status", "time", "renditions", "output / error"):
        table.add_column(col, justify="right" if col in ("time", "renditions") else "left", overflow="fold")
    styles = {"succeeded": "green", "skipped": "cyan", "failed": "red", "interrupted": "yellow", "cancelled": "dim"}
    for js in result.jobs:
        detail = _short_path(js.job.output)
        if js.status in ("failed", "interrupted") and js.error_line:
            detail = js.error_line
        elif js.status == "cancelled":
            detail = "not started"
        table.add_row(
            js.name, f"[{styles.get(js.status, '')}]{js.status}[/]", _duration(js.took_s) if js.tries else "-",
            str(js.renditions) if js.renditions else "-", detail,
        )
    return table


@click.command(name="batch")
@click.argument("sources", nargs=-1, required=True, metavar="JOBS_FILE | INPUT...")
@click.option("-o", "--output-dir", metavar="DIR",
              help="Directory or s3://BUCKET/PREFIX/ receiving one output per job (OUTPUT_DIR/<name>); default: beside each input.")
@click.option("--profile", "-p", "profile_ref",
              help="Profile for every job without its own (name or .toml/.yaml path). Inputs on the command line: default 'default'.")
@click.option("--preset", help="Override the encoder preset of every job without its own.")
@click.option("--audio-track", "audio_tracks", multiple=True, help="Source audio track to keep (index or language); repeatable.")
@click.option("--allow-references", is_flag=True,
              help="Let ffmpeg open inputs that reference other files or URLs (playlists, concat lists). Off by default for safety.")
@click.option("-j", "--jobs", "concurrency", type=click.IntRange(min=1),
              help="Jobs at a time. Default: CPUs divided by one job's threads (2 per video rung), at least 1; with --scheduler, all.")
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True,
              help="Retry a failed job up to N more times (not when the input or profile is at fault).")
@click.option("--retry-delay", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds before the first retry; doubled for each further one.")
@click.option("--fail-fast", is_flag=True, help="Stop everything at the first job that fails for good.")
@click.option("--force", is_flag=True, help="Redo jobs whose output is already up to date.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write a JSON report (per job: status, timings, renditions, validation, every attempt's error).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="Write JUnit XML: one test case per job, for CI.")
@click.option("--scheduler", envvar="ABRPIPE_DASK_SCHEDULER", metavar="ADDRESS",
              help="Encode every job's work units on the dask.distributed scheduler at this address (env ABRPIPE_DASK_SCHEDULER; "
                   "pip install 'abrpipe[distributed]'; workers share the paths and the ffmpeg build).")
@click.option("--chunk", "chunk", metavar="SECONDS|auto|off", default="auto", show_default=True,
              help="Work-unit length of every job (see `abrpipe encode --chunk`).")
@click.option("--no-validate", is_flag=True, help="Do not validate before publishing.")
@click.option("--dash-schema", type=click.Path(exists=True, file_okay=False), envvar="ABRPIPE_DASH_SCHEMA",
              help="Directory with the MPEG-DASH XSD (DASH-MPD.xsd) to validate each MPD against.")
@click.option("--keep-logs", is_flag=True, help="Keep ffmpeg's logs in each OUTPUT/.logs/.")
@click.option("--dry-run", is_flag=True, help="Validate the jobs, say what each would do (run or skip), run nothing.")
@endpoint_option
@json_option
@quiet_option
@click.pass_context
def batch_cmd(ctx, sources, output_dir, profile_ref, preset, audio_tracks, allow_references, concurrency, retries,
              retry_delay, fail_fast, force, report_path, junit_path, scheduler, chunk, no_validate, dash_schema, keep_logs,
              dry_run, endpoint, as_json, quiet):
    """Encode many titles: from a jobs file (.toml/.yaml), or from inputs and glob patterns.

    \b
    abrpipe batch jobs.toml -j 2 --retries 2 --report report.json --junit junit.xml
    abrpipe batch 'media/*.mp4' --profile 720p -o out/

    Every job is checked before the first encode. A failing job never stops the others (unless
    --fail-fast); a job already done with the same input, profile and abrpipe version is skipped.
    Exit code 0 when every job succeeded or was skipped, 8 when some failed, 4 for an invalid jobs
    file, 130/143 when interrupted (rerun the same command to finish).
    """
    defaults = BatchDefaults(
        profile=profile_ref,
        preset=preset,
        audio_tracks=parse_audio_tracks(audio_tracks),
        output_dir=output_dir,
        validate=False if no_validate else None,
        allow_references=allow_references,
        dash_schema=dash_schema,
        keep_logs=keep_logs or ctx.obj.get("debug", False),
        endpoint=endpoint,
    )
    if len(sources) == 1 and is_jobs_file(sources[0]):
        jobs = load_jobs_file(sources[0], defaults)
    elif any(is_jobs_file(s) for s in sources):
        raise click.UsageError("give one jobs file, or input files / patterns, not both")
    else:
        jobs = jobs_from_patterns(list(sources), defaults)
    chunk_s = parse_chunk(chunk)
    jobs = [replace(j, job=replace(j.job, chunk_s=chunk_s)) for j in jobs]

    if dry_run:
        _dry_run(jobs, force, as_json)
        return

    workers = concurrency or (len(jobs) if scheduler else batch.default_concurrency(jobs))
    executor = batch.make_executor(workers, scheduler)
    err = console_err()
    # Each finished job's report entry goes to a temporary file beside the report (see ReportSpool):
    # the reports are streamed from it at the end, so finished jobs' outcomes are not held in memory.
    target = report_path or junit_path
    with batch.ReportSpool(os.path.dirname(os.path.abspath(target)) if target else None) as spool:
        with BatchDisplay(len(jobs), quiet=quiet or (as_json and not err.is_terminal)) as display:
            if not display.quiet:
                display.say(f"batch: {len(jobs)} job(s), {executor.description}")
            result = batch.run_batch(
                jobs, executor, concurrency=workers, retries=retries, retry_delay_s=retry_delay,
                fail_fast=fail_fast, force=force, observer=display, spool=spool,
            )
        if report_path:
            batch.write_report(result, report_path)
        if junit_path:
            batch.write_junit(result, junit_path)
        if as_json:
            batch.dump_report(result, sys.stdout.write)
            sys.stdout.flush()
    if not quiet:
        err.print(summary_table(result))
        err.print(batch.summary_line(result), highlight=False, markup=False, soft_wrap=True)
    _raise_for(result, report_path)


def _raise_for(result: batch.BatchResult, report_path: str | None) -> None:
    where = f"; details in {report_path}" if report_path else ""
    if result.interrupted_code is not None:
        done = result.count("succeeded") + result.count("skipped")
        raise batch.BatchInterrupted(
            f"interrupted: {done} of {len(result.jobs)} job(s) done, {result.count('interrupted')} stopped, "
            f"{result.count('cancelled')} not started; nothing half-built was published",
            code=result.interrupted_code,
            hint="run the same command again to finish: completed jobs are skipped" + where,
        )
    if result.exit_code == ExitCode.BATCH_FAILED:
        failed = [js.name for js in result.jobs if js.status == "failed"]
        names = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        others = result.count("cancelled") + result.count("interrupted")
        raise batch.BatchFailed(
            f"{len(failed)} of {len(result.jobs)} job(s) failed: {names}"
            + (f" ({others} not finished: --fail-fast)" if others else ""),
            hint="fix them and run the same command again: completed jobs are skipped" + where,
        )


def _dry_run(jobs, force: bool, as_json: bool) -> None:
    rows = []
    for b in jobs:
        if force:
            action, reason = "run", "--force"
        else:
            done, reason = batch.check_up_to_date(b.job)
            action = "skip" if done else "run"
        rows.append({"name": b.name, "input": b.job.input, "profile": b.job.effective_profile().name,
                     "output": b.job.output, "action": action, "reason": reason})
    if as_json:
        emit_json({"jobs": rows, "default_concurrency": batch.default_concurrency(jobs)})
        return
    for r in rows:
        click.echo(f"{r['action']:4}  {r['name']}: {r['input']} -> {os.path.join(r['output'], '')} ({r['profile']}): {r['reason']}")


COMMANDS = [batch_cmd]
