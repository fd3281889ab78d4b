"""`abrpipe encode`."""

from __future__ import annotations

import os
from dataclasses import replace

import click
from rich.table import Table

from abrpipe import layout, registry, subtitles, text_stage, workunits
from abrpipe.cli import protect_opts
from abrpipe.cli.common import (
    ProgressDisplay,
    console_err,
    emit_json,
    endpoint_option,
    json_option,
    quiet_option,
)
from abrpipe.encode import unit_commands
from abrpipe.errors import UsageError
from abrpipe.pipeline import Event, Job, default_output, local_input, prepare_job, rendition_summary, run_job
from abrpipe.profile import Profile
from abrpipe.publish import target_for
from abrpipe.thumbnails import parse_spec
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


def with_delivery_options(profile: Profile, thumbnails_spec: str | None, hls_ts: bool) -> Profile:
    """The profile with --thumbnails / --hls-ts applied (they are profile keys too)."""
    if thumbnails_spec is not None:
        try:
            profile = replace(profile, thumbnails=parse_spec(thumbnails_spec))
        except ValueError as exc:
            raise UsageError(f"--thumbnails {exc}", hint="nothing was encoded") from None
    if hls_ts:
        profile = replace(profile, hls_ts=True)
    return profile
def parse_chunk(value: str | None) -> float | None:
    """--chunk: seconds, 'auto' (None) or 'off' (0)."""
    if value is None or value == "auto":
        return None
    if value in ("off", "0"):
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected seconds (e.g. 60), 'auto' or 'off'") from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r}: a chunk must be longer than 0 s")
    return seconds


def unit_options(f):
    """Where and in what pieces the encode runs (encode, batch)."""
    f = click.option("--chunk", "chunk", metavar="SECONDS|auto|off", default="auto", show_default=True,
                     help=f"Cut the title into work units of about SECONDS (whole segments), encoded independently and "
                          f"stitched; finished units survive a crash and are reused. auto: {workunits.DEFAULT_CHUNK_S:g}-s units "
                          f"for titles of {workunits.AUTO_MIN_DURATION_S:g} s or more, else one unit; off: always one unit.")(f)
    f = click.option("--workers", type=click.IntRange(1, 1024), default=1, show_default=True,
                     help="Work units encoded at a time on this machine (each is one ffmpeg process). Ignored with --scheduler.")(f)
    f = click.option("--scheduler", envvar="ABRPIPE_DASK_SCHEDULER", metavar="ADDRESS",
                     help="Run the work units on a dask.distributed cluster (e.g. tcp://host:8786; env ABRPIPE_DASK_SCHEDULER). "
                          "Workers must see the input and output at the same paths and have the same ffmpeg build.")(f)
    return f


def parse_audio_tracks(values: tuple[str, ...]) -> tuple | None:
    if not values:
        return None
    return tuple(int(v) if v.isdigit() else v for v in values)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=True, path_type=str))
@click.option("-o", "--output", help="Output directory or s3://BUCKET/PREFIX/ (default: INPUT's name + '-abr' beside it). "
              "Work happens in OUTPUT.partial/ (for s3://, in scratch space: ABRPIPE_SCRATCH).")
@job_options
@click.option("--thumbnails", "thumbnails_spec", metavar="INTERVAL,WxH,CxR",
              help="Seek-bar thumbnails from the same decode, e.g. 10s,320x180,5x5: a WxH tile every INTERVAL, CxR tiles per "
                   "JPEG sprite sheet, described in WebVTT, the MPD and an HLS image playlist (overrides the profile's thumbnails).")
@click.option("--hls-ts", is_flag=True,
              help="Also write HLS with MPEG-TS segments (master-ts.m3u8) for older devices: the same encoded frames, remuxed.")
@endpoint_option
@click.option("--dry-run", is_flag=True,
              help="Print the exact ffmpeg command(s) and run nothing (when encrypting, the packager commands follow as comments: their keys are in a flag file, never shown).")
@click.option("--no-validate", is_flag=True, help="Do not validate before publishing (by default an invalid result is never published).")
@click.option("--dash-schema", type=click.Path(exists=True, file_okay=False), envvar="ABRPIPE_DASH_SCHEMA",
              help="Directory with the MPEG-DASH XSD (DASH-MPD.xsd) to validate the MPD against.")
@click.option("--keep-logs", is_flag=True, help="Keep ffmpeg's logs in OUTPUT/.logs/.")
@click.option("--subtitles", "subtitle_specs", multiple=True, metavar="LANG[,forced][,sdh][,default]=FILE",
              help="Publish a sidecar SRT or WebVTT file as a subtitle track (LANG: a BCP 47 tag such as en or pt-BR); repeatable.")
@click.option("--no-subtitles", is_flag=True, help="Do not publish the source's own text tracks (kept by default).")
@click.option("--per-title", is_flag=True,
              help="Encode INPUT's own ladder, built from trial encodes within the profile's limits (see `abrpipe ladder --per-title`).")
@click.option("--metric", type=click.Choice(("vmaf", "xpsnr", "ssim", "psnr")),
              help="With --per-title: quality metric (default: VMAF if available, else PSNR-Y).")
@click.option("--report", is_flag=True,
              help="Write the HTML report (see `abrpipe report`) to OUTPUT/report.html. With --per-title, also encode the "
                   "fixed ladder and write the BD-rate comparison to OUTPUT/pertitle-report.json (+ .png).")
@click.option("--min-saving", "min_saving", type=click.FloatRange(min=0.0), default=None, metavar="PCT",
              help="With --per-title: use the per-title ladder only if the trials predict it saves at least PCT % "
              "bitrate at equal quality, on the whole sample and on every sampled window; else keep the profile's ladder (default 3).")
@unit_options
@protect_opts.protection_options
@json_option
@quiet_option
@click.pass_context
def encode(ctx, input_path, output, profile_ref, preset, audio_tracks, allow_references, thumbnails_spec, hls_ts, endpoint,
           dry_run, no_validate, dash_schema, keep_logs, subtitle_specs, no_subtitles, per_title, metric, report, min_saving,
           chunk, workers, scheduler, as_json, quiet, **protection):
    """Encode INPUT into an ABR ladder and publish HLS (master.m3u8) and DASH (manifest.mpd).

    One ffmpeg process decodes INPUT once and encodes every rung with keyframes at the same
    timestamps; the segments are shared by both manifests. Nothing is written to OUTPUT until the
    whole result is complete and valid.
    """
    profile = with_delivery_options(registry.load(profile_ref), thumbnails_spec, hls_ts)
    # Sidecar subtitles are read now: a bad file fails before the encode, not after it.
    text_specs = subtitles.check_specs(tuple(subtitles.parse_spec(v) for v in subtitle_specs))
    if profile.encryption and not protection["encrypt"] and not protection["hls_aes128"]:
        protection["encrypt"] = profile.encryption  # the profile's scheme; --encrypt overrides it
    protect_opts.check(**protection, outputs=profile.outputs)
    if profile.hls_ts and (protection["encrypt"] or protection["hls_aes128"]):
        # The MPEG-TS set is remuxed from the clear samples: it would publish the title unprotected.
        raise click.UsageError("--hls-ts cannot be combined with encryption: the MPEG-TS set would be in the clear")
    if protection["hls_aes128"]:
        profile = replace(profile, outputs=("hls",))  # AES-128 segments are for HLS players only
    with protect_opts.protect_job_options(**protection, key_classes=profile.key_classes) as protect:
        if protect is not None:
            protect_opts.preflight(protect)
        _encode(ctx, input_path, output, profile, preset, audio_tracks, allow_references, endpoint, text_specs, no_subtitles,
                dry_run, no_validate, dash_schema, keep_logs, per_title, metric, report, min_saving, chunk, workers, scheduler,
                as_json, quiet, protect)


def _encode(ctx, input_path, output, profile, preset, audio_tracks, allow_references, endpoint, text_specs, no_subtitles,
            dry_run, no_validate, dash_schema, keep_logs, per_title, metric, report, min_saving, chunk, workers, scheduler,
            as_json, quiet, protect):
    if dash_schema and not no_validate:
        from abrpipe.validate import check_schema_dir

        check_schema_dir(dash_schema)  # a wrong directory fails now, not after the encode
    out = output or default_output(input_path)
    target = target_for(out, endpoint=endpoint)  # a URL abrpipe cannot write is refused here, before anything runs
    analysis = None
    if (metric or min_saving is not None) and not per_title:
        raise click.UsageError("--metric and --min-saving go with --per-title")
    if per_title:
        if dry_run:
            raise click.UsageError("--dry-run cannot run the per-title trial encodes; save the ladder with "
                                   "`abrpipe ladder INPUT --per-title --save-profile P.toml`, then --profile P.toml --dry-run")
        from abrpipe.cli import pertitle_cmd

        base_profile = profile
        target.check()  # before the trial encodes, as run_job does before the encode
        source_path = local_input(Job(input=input_path, output=out, profile=profile, endpoint=endpoint))
        analysis = pertitle_cmd.analyse_for_encode(source_path, profile, preset=preset, metric=metric,
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
        endpoint=endpoint,
        subtitles=text_specs,
        source_subtitles=not no_subtitles,
        protection=protect,
        chunk_s=parse_chunk(chunk),
        workers=workers,
        scheduler=scheduler,
    )
    err = console_err()
    if dry_run:
        source, plan = prepare_job(job)
        units = workunits.plan_work(source, plan, workunits.resolve_chunking(job.chunk_s, source.duration_s))
        units_root = layout.units_dir(target.work_dir.removesuffix(layout.PARTIAL_SUFFIX))
        listed = [(u.name, u.describe(), c) for u in units
                  for c in unit_commands(source, plan, u, layout.unit_dir(units_root, u.name))]
        listed += [("subtitles", "the source's text tracks, after the encode", c)
                   for c in text_stage.dry_run_commands(job, source, target.work_dir)]
        protection_lines: list[str] = []
        if protect is not None:
            from abrpipe.protect.stage import dry_run_lines

            protection_lines = dry_run_lines(plan, protect, target.work_dir)
        if as_json:
            emit_json({"commands": [{"unit": name, "range": what, "cwd": c.cwd, "argv": c.argv, "label": c.label}
                                    for name, what, c in listed],
                       **({"protection": protection_lines} if protection_lines else {})})
        else:
            for _, what, c in listed:
                click.echo(f"# {what}")
                click.echo(c.shell())
            for line in protection_lines:
                click.echo(line)
        for warning in protect_opts.warnings():
            err.print(f"abrpipe: warning: {warning}", style="yellow", highlight=False, markup=False, soft_wrap=True)
        return
    if protect is not None and protect.scheme:
        from abrpipe.protect.stage import planned_groups

        planned_groups(prepare_job(job)[1], protect)  # a track without a key fails before the encode
    with ProgressDisplay(f"encode {os.path.basename(input_path)}", quiet=quiet or as_json and not err.is_terminal) as display:
        def on_event(e: Event) -> None:
            if e.progress is not None:
                display.update(e.progress)
            elif e.stage == "encode" and e.message.startswith("units "):
                display.detail(e.message)
            elif e.stage == "encode" and e.message:
                display.message(e.message)
            elif e.stage in ("plan", "package", "protect", "validate", "publish", "download"):
                display.message(f"{e.stage}: {e.message}".rstrip(": "))

        extra: dict = {}

        def add_reports(work: str, result) -> None:
            # The per-title analysis, the --report comparison and the HTML report are written into the
            # work area, so they are published with the ladder, not added to OUT afterwards.
            if analysis is not None:
                extra.update(pertitle_cmd.after_encode(analysis, base_profile, result, work, published_as=out, preset=preset,
                                                       report=report, allow_references=allow_references, quiet=quiet))
            if report:
                from abrpipe import report as html_report

                display.message("report: " + html_report.REPORT_NAME)
                html_report.write_report(work, os.path.join(work, html_report.REPORT_NAME), dash_schema=dash_schema,
                                         shown_as=os.path.abspath(out))
                extra["report"] = os.path.join(os.path.abspath(out), html_report.REPORT_NAME)

        try:
            result = run_job(job, on_event, before_publish=add_reports if analysis is not None or report else None)
        finally:
            if scheduler:
                workunits.close_dask_clients()
    renditions = [rendition_summary(r) for r in result.title.renditions] if result.title else []
    if as_json:
        encode_report = result.encode.to_dict() if result.encode else {}
        emit_json({"output": target.display, **result.record, "timings_s": result.timings_s, "encode": encode_report,
                   "published": result.published, **extra})
    if not quiet and result.plan is not None:
        for d in result.plan.dropped:
            err.print(f"dropped {d.label}: {d.reason}", highlight=False, markup=False)
        for note in result.record.get("notes", result.plan.notes):
            err.print(f"note: {note}", highlight=False, markup=False)
        for warning in protect_opts.warnings():
            err.print(f"abrpipe: warning: {warning}", style="yellow", highlight=False, markup=False, soft_wrap=True)
        err.print(summary_table(renditions))
        for t in result.record.get("subtitles", []):
            flags = "".join(f", {f}" for f in ("default", "forced", "sdh") if t[f])
            err.print(f"subtitles {t['id']}: {t['name']} ({t['language']}{flags}), {t['cues']} cues", highlight=False, markup=False)
        if result.record.get("closed_captions"):
            err.print(f"closed captions: {', '.join(result.record['closed_captions'])} (CEA-608 in the H.264 video)", highlight=False, markup=False)
        has_ts = result.title is not None and bool(result.title.ts)
        paths = [p for p in target.published_paths() if has_ts or not p.endswith("master-ts.m3u8")]
        err.print(f"published: {' and '.join(paths)}", highlight=False, markup=False)


def summary_table(renditions: list[dict]) -> Table:
    table = Table(title="renditions", title_justify="left")
    protected = any(r.get("protection") for r in renditions)
    if protected:
        table.caption = "; ".join(f"{r['id']}: {protect_opts.describe(r.get('protection'))}" for r in renditions)
        table.caption_justify = "left"
    for col in ("rendition", "resolution", "codec", "avg", "peak", "size", "segments"):
        table.add_column(col, justify="right" if col in ("avg", "peak", "size", "segments") else "left")
    for r in renditions:
        resolution = f"{r['width']}x{r['height']}@{r['frame_rate']:g}" if r["kind"] == "video" else f"{r['channels']}ch"
        table.add_row(
            r["id"], resolution, r["codec"], format_kbps(r["average_bps"] / 1000), format_kbps(r["peak_bps"] / 1000),
            f"{r['size_bytes'] / 1e6:.1f} MB", str(r["segments"]),
        )
    return table
