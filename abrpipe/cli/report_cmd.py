"""`abrpipe report`."""

from __future__ import annotations

import os

import click

from abrpipe.cli.common import console_err, emit_json, json_option, quiet_option


@click.command()
@click.argument("out", metavar="OUT", type=click.Path(exists=True, path_type=str))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str),
              help="Where to write the HTML file (default: OUT/report.html).")
@click.option("--dash-schema", type=click.Path(exists=True, file_okay=False), envvar="ABRPIPE_DASH_SCHEMA",
              help="Directory with the MPEG-DASH XSD, for the validation part of the report.")
@json_option
@quiet_option
def report(out, output, dash_schema, as_json, quiet):
    """Write a self-contained HTML report of the output OUT.

    One HTML file that needs nothing else (no script, no network): the ladder (codecs, sizes,
    declared vs measured bandwidth), each rendition's bit rate segment by segment (from the samples
    in the segments), the keyframe/segment grid, the validation result, the encode timings, and
    the per-title rate/quality hull with the chosen rungs when the output was encoded --per-title.
    """
    from abrpipe import report as report_mod

    target = output or os.path.join(out if os.path.isdir(out) else os.path.dirname(out), report_mod.REPORT_NAME)
    data = report_mod.write_report(out, target, dash_schema=dash_schema)
    if as_json:
        emit_json({"report": os.path.abspath(target), **data.summary()})
    if not quiet:
        console_err().print(f"report: {os.path.abspath(target)}", highlight=False, markup=False)


COMMANDS = [report]
