"""`abrpipe validate`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import click
from rich.table import Table
from rich.text import Text

from abrpipe import storage
from abrpipe.cli.common import console_err, emit_json, endpoint_option, json_option, quiet_option
from abrpipe.errors import InputError, ValidationFailed
from abrpipe.validate import Report, validate_output

_STYLE = {"error": "red", "warning": "yellow", "info": "dim"}


@click.command()
@click.argument("path", metavar="OUT", type=str)
@click.option(
    "--strict", is_flag=True, help="Fail on warnings too (Apple authoring rules, overstated bandwidth...)."
)
@click.option(
    "--dash-schema",
    type=click.Path(exists=True, file_okay=False),
    envvar="ABRPIPE_DASH_SCHEMA",
    help="Directory with the MPEG-DASH XSD (DASH-MPD.xsd) to validate the MPD against.",
)
@click.option("--allow-clear", is_flag=True, help="Renditions in the clear next to encrypted ones are not an error (PROT-HALF).")
@endpoint_option
@json_option
@quiet_option
def validate(path, strict, dash_schema, allow_clear, endpoint, as_json, quiet):
    """Check an HLS/DASH output: OUT is a directory, a master playlist or an MPD.

    Every manifest must parse and every file it references must exist; segments must start with
    keyframes aligned across renditions; durations, CODECS, RESOLUTION, FRAME-RATE and bandwidth
    must match the media; Apple's HLS authoring rules are linted. Each finding names its rule
    (docs/VALIDATION.md). Exit code 0 when clean, 7 on errors (and on warnings with --strict).
    OUT may be s3://BUCKET/PREFIX/: the published manifests and what they name are downloaded to
    scratch space (ABRPIPE_SCRATCH) and checked there.
    """
    try:
        url = storage.parse(path)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}", hint="validate reads a local directory, a manifest, or s3://BUCKET/PREFIX/") from None
    if url is None and not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    with contextlib.ExitStack() as stack:
        local = path
        if url is not None:
            local = tempfile.mkdtemp(prefix="abrpipe-validate-", dir=storage.scratch_dir())
            stack.callback(shutil.rmtree, local, True)
            say = None if quiet else (lambda m: console_err().print(m, highlight=False, markup=False))
            try:
                storage.fetch_tree(url, local, endpoint=endpoint, say=say)
            except OSError as exc:
                raise InputError(f"{path}: cannot download to scratch space ({exc.strerror or exc})",
                                 hint=f"free some space, or set {storage.SCRATCH_ENV}") from None
        report = validate_output(local, dash_schema=dash_schema, strict=strict, allow_clear=allow_clear)
        if url is not None:
            report.path = path
        if as_json:
            emit_json(report.summary())
        if not quiet:
            render(report)
        if not report.ok(strict):
            counts = f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
            first = (report.errors or report.warnings)[0]
            raise ValidationFailed(
                f"{path}: validation failed: {counts}; first: {first.rule}: {first.message}",
                hint="each rule is explained in docs/VALIDATION.md"
                if report.errors
                else "warnings fail because of --strict",
            )


def render(report: Report) -> None:
    """A table on a terminal; one line per finding otherwise (CI logs)."""
    err = console_err()
    if report.findings and not err.is_terminal:
        for f in report.findings:
            where = ":".join(
                x for x in (f.file, f"segment {f.segment}" if f.segment is not None else None) if x
            )
            who = f" [{f.rendition}]" if f.rendition else ""
            err.print(
                f"{f.severity}: {f.rule}: {where or '-'}{who}: {f.message}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    elif report.findings:
        table = Table(title=f"validation of {report.path}", title_justify="left")
        for column in ("severity", "rule", "file", "rendition", "seg", "message"):
            table.add_column(column, overflow="fold", justify="right" if column == "seg" else "left")
        for f in report.findings:
            table.add_row(  # Text cells: messages may hold brackets that are not rich markup
                Text(f.severity, style=_STYLE[f.severity]),
                Text(f.rule),
                Text(f.file or ""),
                Text(f.rendition or ""),
                Text(str(f.segment) if f.segment is not None else ""),
                Text(f.message),
            )
        err.print(table)
    counts = f"{len(report.errors)} error(s), {len(report.warnings)} warning(s), {len(report.infos)} note(s)"
    checked = f"{', '.join(report.manifests) or 'no manifest'}; {report.renditions} renditions, {report.segments} segments"
    verdict = "valid" if report.ok() else "invalid"
    err.print(f"{verdict}: {counts} ({checked})", highlight=False, markup=False, soft_wrap=True)


COMMANDS = [validate]
