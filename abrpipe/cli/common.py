"""Shared CLI pieces: consoles, --json output, progress display."""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn

from abrpipe.runner import Progress as FfmpegProgress


@functools.cache
def console_err() -> Console:
    return Console(stderr=True, highlight=False)


def emit_json(data: Any) -> None:
    """Machine output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print a JSON document on stdout (human text stays on stderr).")(f)


def quiet_option(f):
    return click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr (errors still show).")(f)


def endpoint_option(f):
    return click.option(
        "--endpoint", metavar="URL",
        help="Object-store endpoint for s3:// inputs and outputs (an S3-compatible server). Default: "
             "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS S3. Credentials come from the environment, "
             "AWS_PROFILE or an instance role.",
    )(f)


class ProgressDisplay:
    """Renders ffmpeg progress: a rich bar on a terminal, plain periodic lines otherwise (CI logs)."""

    def __init__(self, label: str, *, quiet: bool = False, interval_s: float = 10.0) -> None:
        self.label = label
        self.quiet = quiet
        self.interval_s = interval_s
        self.console = console_err()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = 0.0
        self._detail = ""

    def __enter__(self) -> ProgressDisplay:
        if not self.quiet and self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[speed]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=100, speed="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar:
            self._bar.__exit__(*exc)

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False)

    def detail(self, text: str) -> None:
        """A status shown with the progress (e.g. work units done/running/failed)."""
        self._detail = text
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=f"{self.label} [{text}]")

    def update(self, p: FfmpegProgress) -> None:
        if self.quiet:
            return
        fraction = p.fraction
        speed = f"{p.speed:.2f}x" if p.speed else ""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=(fraction or 0) * 100, speed=speed)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval_s or p.done:
            self._last_line = now
            pct = f"{fraction * 100:5.1f}%" if fraction is not None else f"{p.out_time_s:.1f}s"
            eta = ""
            if fraction and p.speed and p.duration_s and fraction < 1:
                eta = f" eta {((1 - fraction) * p.duration_s / p.speed):.0f}s"
            frames = f" {p.frame} frames" if p.frame else ""
            detail = f" [{self._detail}]" if self._detail else ""
            self.console.print(f"{self.label}: {pct}{frames} {speed}{eta}{detail}".rstrip(), highlight=False, markup=False)
