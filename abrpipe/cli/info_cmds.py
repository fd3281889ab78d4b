"""`abrpipe probe` and `abrpipe ladder`."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from abrpipe import registry
from abrpipe.cli.common import console_err, emit_json, json_option
from abrpipe.plan import plan_ladder
from abrpipe.probe import probe, source_to_dict
from abrpipe.units import format_kbps


@click.command("probe")
@click.argument("input_path", metavar="INPUT")
@click.option("--allow-references", is_flag=True, help="Let ffprobe follow playlists / lists of other files.")
@json_option
def probe_cmd(input_path, allow_references, as_json):
    """Describe INPUT as abrpipe sees it: streams, display size, rotation, frame rate, audio tracks."""
    source = probe(input_path, allow_references=allow_references)
    if as_json:
        emit_json(source_to_dict(source))
        return
    err = console_err()
    err.print(f"{source.path}: {source.format_name}, {source.duration_s:.2f} s, {source.size_bytes / 1e6:.1f} MB")
    v = source.video
    if v:
        flags = [f for f, on in (("VFR", v.variable_frame_rate), ("interlaced", v.interlaced), ("HDR", v.is_hdr)) if on]
        rot = f", rotated {v.rotation_deg}" if v.rotation_deg else ""
        err.print(f"  video #{v.index}: {v.codec} {v.width}x{v.height} (display {v.display_width}x{v.display_height}{rot}), "
                  f"{float(v.frame_rate):.3f} fps, {v.pix_fmt} {v.bit_depth}-bit {' '.join(flags)}".rstrip())
    else:
        err.print("  no video")
    for a in source.audio:
        err.print(f"  audio #{a.index} (a:{a.position}): {a.codec} {a.channels}ch {a.sample_rate} Hz, language {a.language or 'und'}")


@click.command()
@click.argument("input_path", metavar="[INPUT]", required=False)
@click.option("--profile", "-p", "profile_ref", default="default", show_default=True, help="Profile name or path.")
@click.option("--allow-references", is_flag=True, help="Let ffprobe follow playlists / lists of other files.")
@click.option("--per-title", is_flag=True, help="Build INPUT's own ladder from trial encodes (rate/quality convex hull).")
@click.option("--metric", type=click.Choice(("vmaf", "xpsnr", "ssim", "psnr")),
              help="With --per-title: quality metric (default: VMAF if available, else PSNR-Y).")
@click.option("--plot", type=click.Path(dir_okay=False), help="With --per-title: plot the curves, hull and rungs (.png/.svg).")
@click.option("--save-profile", type=click.Path(dir_okay=False), help="With --per-title: write the ladder as a .toml profile.")
@json_option
def ladder(input_path, profile_ref, allow_references, per_title, metric, plot, save_profile, as_json):
    """Show a profile's ladder; with INPUT, the ladder as applied to it (and the rungs it drops, and why).

    With --per-title, INPUT's own ladder: trial encodes of sampled segments at every rung size and
    several quality levels, their rate/quality hull, and rungs chosen on it within the profile's limits.
    """
    if per_title or metric or plot or save_profile:
        if not per_title:
            raise click.UsageError("--metric, --plot and --save-profile go with --per-title")
        if input_path is None:
            raise click.UsageError("--per-title needs INPUT")
        from abrpipe.cli.pertitle_cmd import ladder_per_title

        ladder_per_title(input_path, profile_ref, metric=metric, plot=plot, save_profile=save_profile,
                         as_json=as_json, allow_references=allow_references)  # fmt: skip
        return
    profile = registry.load(profile_ref)
    err = console_err()
    if input_path is None:
        rows: list[dict[str, Any]] = [
            {"codec": r.codec, "size": f"{r.width}x{r.height}" if r.width else f"{r.height}p", "bitrate_kbps": r.bitrate_kbps,
             "maxrate_kbps": r.maxrate_kbps, "bufsize_kbps": r.bufsize_kbps, "crf": r.crf, "max_fps": r.max_fps,
             "profile": r.codec_profile}
            for r in profile.rungs
        ]
        if as_json:
            emit_json({"profile": profile.name, "rungs": rows, "audio": [a.__dict__ for a in profile.audio]})
            return
        table = Table(title=f"profile {profile.name}: {profile.description}", title_justify="left")
        for col in ("#", "codec", "size", "bitrate", "maxrate", "bufsize", "max fps"):
            table.add_column(col)
        for i, r in enumerate(rows):
            table.add_row(str(i), r["codec"], r["size"], format_kbps(r["bitrate_kbps"]), format_kbps(r["maxrate_kbps"]),
                          format_kbps(r["bufsize_kbps"]), f"{r['max_fps']:g}" if r["max_fps"] else "source")
        err.print(table)
        for a in profile.audio:
            err.print(f"audio: {a.codec} {format_kbps(a.bitrate_kbps)} {a.channels}ch {a.sample_rate} Hz")
        err.print(f"GOP {profile.gop_s:g} s, segments {profile.segment_s:g} s, rate control {profile.rate_control}, preset {profile.preset}")
        return
    source = probe(input_path, allow_references=allow_references)
    plan = plan_ladder(source, profile)
    if as_json:
        emit_json({
            "profile": profile.name,
            "gop_s": plan.gop_s, "segment_s": plan.segment_s, "gop_frames": plan.gop_frames,
            "video": [{**r.__dict__, "fps": str(r.fps)} for r in plan.video],
            "audio": [a.__dict__ for a in plan.audio],
            "dropped": [d.__dict__ for d in plan.dropped],
            "notes": list(plan.notes),
        })
        return
    table = Table(title=f"{profile.name} applied to {source.path}", title_justify="left")
    for col in ("rendition", "size", "fps", "bitrate", "maxrate", "GOP"):
        table.add_column(col)
    for rung in plan.video:
        table.add_row(rung.id, f"{rung.width}x{rung.height}", f"{float(rung.fps):g}", format_kbps(rung.bitrate_kbps),
                      format_kbps(rung.maxrate_kbps), f"{rung.gop_frames} frames")
    err.print(table)
    for au in plan.audio:
        err.print(f"audio {au.id}: {au.codec} {format_kbps(au.bitrate_kbps)} {au.channels}ch from a:{au.source_position} ({au.language or 'und'})")
    for d in plan.dropped:
        err.print(f"dropped {d.label}: {d.reason}")
    for n in plan.notes:
        err.print(f"note: {n}")
    err.print(f"keyframes every {plan.gop_s:.3f} s, segments of {plan.segment_s:.3f} s")
