"""`abrpipe encode`."""

from __future__ import annotations

import os

import click
from rich.table import Table

from abrpipe import registry
from abrpipe.cli.common import ProgressDisplay, console_err, emit_json, json_option, quiet_option
from abrpipe.encode import build_commands
from abrpipe.pipeline import Event, Job, default_output, prepare_job, rendition_summary, run_job
from abrpipe.publish import partial_dir
from abrpipe.units import format_kbps


def job_options(f):
    """Options shared by every command that encodes (encode, batch, compare)."""
    f = click.option("--profile", "-p", "profile_ref", default="default", show_default=True,
                     help="Profile name (see `abrpipe profiles list`) or path to a .toml/.yaml profile.")(f)
    f = click.option("--preset", help="Override the profile's encoder preset (e.g. ultrafast for a quick look).")(f)
    f = click.option("--audio-track", "audio_tracks", multiple=True,
                     help="Source audio track to keep, by index (0, 1...) or language (eng); repeatable. Default: the profile's choice.")(f)
    f = click.option("--allow-references", is_flag=True,
                     help="Let ffmpeg open inputs that reference other files or URLs (playlists, concat lists). Off by default for safety.")(f)
    return f


def parse_audio_tracks(values: tuple[str, ...]) -> tuple | None:
    if not values:
        return None
    return tuple(int(v) if v.isdigit() else v for v in values)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=True, path_type=str))
@click.option("-o", "--output", help="Output directory (default: INPUT's name + '-abr' beside it). Work happens in OUTPUT.partial/.")
@job_options
@click.option("--dry-run", is_flag=True, help="Print the exact ffmpeg command(s) and run nothing.")
@click.option("--no-validate", is_flag=True, help="Do not validate before publishing (by default an invalid result is never published).")
@click.option("--dash-schema", type=click.Path(exists=True, file_okay=False), envvar="ABRPIPE_DASH_SCHEMA",
              help="Directory with the MPEG-DASH XSD (DASH-MPD.xsd) to validate the MPD against.")
@click.option("--keep-logs", is_flag=True, help="Keep ffmpeg's logs in OUTPUT/.logs/.")
@click.option("--per-title", is_flag=True,
              help="Encode INPUT's own ladder, built from trial encodes within the profile's limits (see `abrpipe ladder --per-title`).")
@click.option("--metric", type=click.Choice(("vmaf", "xpsnr", "ssim", "psnr")),
              help="With --per-title: quality metric (default: VMAF if available, else PSNR-Y).")
@click.option("--report", is_flag=True,
              help="With --per-title: also encode the fixed ladder and write the BD-rate comparison to OUTPUT/pertitle-report.json (+ .png).")
@click.option("--min-saving", "min_saving", type=click.FloatRange(min=0.0), default=None, metavar="PCT",
              help="With --per-title: use the per-title ladder only if the trials predict it saves at least PCT % "
              "bitrate at equal quality, on the whole sample and on every sampled window; else keep the profile's ladder (default 3).")
@json_option
@quiet_option
@click.pass_context
def encode(ctx, input_path, output, profile_ref, preset, audio_tracks, allow_references, dry_run, no_validate,
           dash_schema, keep_logs, per_title, metric, report, min_saving, as_json, quiet):
    """Encode INPUT into an ABR ladder and publish HLS (master.m3u8) and DASH (manifest.mpd).

    One ffmpeg process decodes INPUT once and encodes every rung with keyframes at the same
    timestamps; the segments are shared by both manifests. Nothing is written to OUTPUT until the
    whole result is complete and valid.
    """
    profile = registry.load(profile_ref)
    if dash_schema and not no_validate:
        from abrpipe.validate import check_schema_dir

        check_schema_dir(dash_schema)  # a wrong directory fails now, not after the encode
    out = output or default_output(input_path)
    analysis = None
    if (metric or report or min_saving is not None) and not per_title:
        raise click.UsageError("--metric, --report and --min-saving go with --per-title")
    if per_title:
        if dry_run:
            raise click.UsageError("--dry-run cannot run the per-title trial encodes; save the ladder with "
                                   "`abrpipe ladder INPUT --per-title --save-profile P.toml`, then --profile P.toml --dry-run")
        from abrpipe.cli import pertitle_cmd

        base_profile = profile
        analysis = pertitle_cmd.analyse_for_encode(input_path, profile, preset=preset, metric=metric,
                                                   allow_references=allow_references, quiet=quiet, min_saving=min_saving)
        profile = analysis.chosen_profile  # the per-title ladder, or the profile's own when the guard keeps it
    job = Job(
        input=input_path,
        output=out,
        profile=profile,
        preset=preset,
        audio_tracks=parse_audio_tracks(audio_tracks),
        validate=not no_validate,
        dash_schema=dash_schema,
        allow_references=allow_references,
        keep_logs=keep_logs or ctx.obj.get("debug", False),
    )
    err = console_err()
    if dry_run:
        source, plan = prepare_job(job)
        commands = build_commands(source, plan, partial_dir(out))
        if as_json:
            emit_json({"commands": [{"cwd": c.cwd, "argv": c.argv, "label": c.label} for c in commands]})
        else:
            for c in commands:
                click.echo(c.shell())
        return
    with ProgressDisplay(f"encode {os.path.basename(input_path)}", quiet=quiet or as_json and not err.is_terminal) as display:
        def on_event(e: Event) -> None:
            if e.progress is not None:
                display.update(e.progress)
            elif e.stage in ("plan", "package", "validate", "publish"):
                display.message(f"{e.stage}: {e.message}".rstrip(": "))

        extra: dict = {}

        def add_per_title_files(work: str, result) -> None:
            # The analysis (and the --report comparison) is written into the work area, so it is
            # published with the ladder, not added to OUT afterwards.
            extra.update(pertitle_cmd.after_encode(analysis, base_profile, result, work, published_as=out, preset=preset,
                                                   report=report, allow_references=allow_references, quiet=quiet))

        result = run_job(job, on_event, before_publish=add_per_title_files if analysis is not None else None)
    renditions = [rendition_summary(r) for r in result.title.renditions] if result.title else []
    if as_json:
        emit_json({"output": os.path.abspath(out), **result.record, "timings_s": result.timings_s, **extra})
    if not quiet:
        assert result.plan is not None  # a job that returned (did not raise) was planned
        for d in result.plan.dropped:
            err.print(f"dropped {d.label}: {d.reason}", highlight=False, markup=False)
        for note in result.plan.notes:
            err.print(f"note: {note}", highlight=False, markup=False)
        err.print(summary_table(renditions))
        err.print(f"published: {os.path.abspath(out)}/master.m3u8 and manifest.mpd", highlight=False, markup=False)


def summary_table(renditions: list[dict]) -> Table:
    table = Table(title="renditions", title_justify="left")
    for col in ("rendition", "resolution", "codec", "avg", "peak", "size", "segments"):
        table.add_column(col, justify="right" if col in ("avg", "peak", "size", "segments") else "left")
    for r in renditions:
        resolution = f"{r['width']}x{r['height']}@{r['frame_rate']:g}" if r["kind"] == "video" else f"{r['channels']}ch"
        table.add_row(
            r["id"], resolution, r["codec"], format_kbps(r["average_bps"] / 1000), format_kbps(r["peak_bps"] / 1000),
            f"{r['size_bytes'] / 1e6:.1f} MB", str(r["segments"]),
        )
    return table
