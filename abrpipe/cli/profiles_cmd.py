"""`abrpipe profiles list|show|validate|schema`."""

from __future__ import annotations

import os
from typing import Any

import click
from rich.table import Table

from abrpipe import codecs, plugins, registry
from abrpipe.cli.common import console_err, emit_json, json_option
from abrpipe.errors import ExitCode, ProfileError
from abrpipe.profile import (
    AUDIO_FIELDS,
    OVERRIDE_FIELDS,
    RUNG_FIELDS,
    SCHEMA_VERSION,
    TOP_FIELDS,
    dump_toml,
    to_schema,
)


def _warn_plugins() -> None:
    for w in plugins.unshown_warnings():
        console_err().print(f"abrpipe: warning: {w}", style="yellow", highlight=False, markup=False, soft_wrap=True)


@click.group()
def profiles():
    """List, show, validate and document encoding profiles.

    \b
    Profiles come from, in lookup order: the directories in ABRPIPE_PROFILE_PATH, plug-in
    packages (entry-point group abrpipe.profiles), and the built-ins. Any command that takes
    --profile also takes a path to a .toml/.yaml file.
    """


@profiles.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also list profiles shadowed by one of the same name earlier in the lookup order.")
@json_option
def list_cmd(show_all, as_json):
    """Every profile abrpipe can find, with where it comes from (builtin, user dir, plug-in)."""
    winners = registry.entries()
    listed = registry.all_entries() if show_all else list(winners.values())
    rows: list[dict[str, Any]] = []
    for entry in sorted(listed, key=lambda e: e.name):
        row = {"name": entry.name, "origin": entry.origin, "path": entry.path, "shadowed": winners[entry.name] != entry,
               "description": "", "rungs": 0, "codecs": [], "audio": [], "error": None}
        try:
            p = registry.load(entry.path)  # by path: a shadowed profile is loaded as itself
            row.update(description=p.description, rungs=len(p.rungs), codecs=list(p.codecs),
                       audio=[a.label for a in p.audio])
        except ProfileError as exc:
            row["error"] = exc.message.splitlines()[0]
        rows.append(row)
    _warn_plugins()
    if as_json:
        emit_json(rows)
        return
    table = Table(title="profiles", title_justify="left")
    for col in ("name", "origin", "rungs", "codecs", "description"):
        table.add_column(col)
    for r in rows:
        name = f"{r['name']} (shadowed)" if r["shadowed"] else r["name"]
        text = f"invalid: {r['error']}" if r["error"] else r["description"]
        table.add_row(name, r["origin"], str(r["rungs"]), ",".join(r["codecs"]) or "audio only", text,
                      style="red" if r["error"] else None)
    console_err().print(table)


@profiles.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["toml", "yaml", "json"]), default="toml", show_default=True,
              help="Output format; the TOML or YAML is itself a valid profile file.")
@json_option
def show(name, fmt, as_json):
    """Print profile NAME (or a path) fully resolved: extends applied, defaults filled in.

    The output (on stdout) is a complete profile file: save it to start a new profile.
    """
    p = registry.load(name)
    _warn_plugins()
    data = to_schema(p)
    if as_json or fmt == "json":
        emit_json({"name": p.name, "origin": p.origin, "path": p.path, "warnings": list(p.warnings), "profile": data})
        return
    console_err().print(f"# {p.name} ({p.origin}: {p.path})", highlight=False, markup=False)
    for warning in p.warnings:
        console_err().print(f"abrpipe: warning: {warning}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    if fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    else:
        click.echo(dump_toml(data), nl=False)


@profiles.command("validate")
@click.argument("files", nargs=-1)
@click.option("--strict", is_flag=True, help="Treat warnings (e.g. HE-AAC above 64k, Apple level limits) as problems too.")
@json_option
def validate(files, strict, as_json):
    """Check profile FILES (names or paths; default: every profile found, shadowed ones too).

    Every problem is printed as `FILE: FIELD.PATH: message`; the exit status is 4 when any profile
    is invalid (or, with --strict, has warnings), so CI can run it.
    """
    targets = list(files) or [e.path for e in registry.all_entries()]
    problems: list[str] = []
    warnings: list[str] = []
    for ref in targets:
        if not registry.is_path(ref) and os.path.isfile(ref):
            ref = os.path.join(".", ref)  # a file in the current directory, not a profile name
        try:
            warnings.extend(registry.load(ref).warnings)
        except ProfileError as exc:
            problems.extend(getattr(exc, "problems", [exc.message]))
    _warn_plugins()
    failed = bool(problems) or (strict and bool(warnings))
    if as_json:
        emit_json({"checked": targets, "problems": problems, "warnings": warnings, "ok": not failed})
    else:
        err = console_err()
        for line in problems:
            err.print(line, style="red", highlight=False, markup=False, soft_wrap=True)
        for line in warnings:
            err.print(f"warning: {line}", style="yellow", highlight=False, markup=False, soft_wrap=True)
        err.print(f"{len(targets)} profile(s) checked: {len(problems)} problem(s), {len(warnings)} warning(s)",
                  highlight=False, markup=False)
    if failed:
        raise click.exceptions.Exit(ExitCode.PROFILE)


@profiles.command("schema")
@json_option
def schema(as_json):
    """Document every field of a profile file, and every codec name abrpipe knows."""
    video: dict[str, dict[str, Any]] = {}
    audio: dict[str, dict[str, Any]] = {}
    for name, e in sorted(codecs.registry().items()):
        origin = codecs.origin(name)
        if isinstance(e, codecs.VideoEncoder):
            video[name] = {"ffmpeg_encoder": e.ffmpeg_encoder, "description": e.description, "origin": origin,
                           "profiles": list(e.profiles), "rate_control": list(e.rate_controls), "hardware": e.hardware}
        else:
            audio[name] = {"ffmpeg_encoder": e.ffmpeg_encoder, "description": e.description, "origin": origin}
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "profile": TOP_FIELDS, "rungs[]": RUNG_FIELDS,
            "rung_overrides[]": OVERRIDE_FIELDS, "audio[]": AUDIO_FIELDS, "video codecs": video, "audio codecs": audio}
    _warn_plugins()
    if as_json:
        emit_json(data)
        return
    click.echo(f"abrpipe profile schema, version {SCHEMA_VERSION} (TOML or YAML; see docs/PROFILES.md)")
    for section in ("profile", "rungs[]", "rung_overrides[]", "audio[]"):
        click.echo(f"\n{section}:")
        for key, text in data[section].items():
            click.echo(f"  {key:18} {text}")
    click.echo("\nvideo codecs:")
    for name, info in video.items():
        extra = f"; profiles {', '.join(info['profiles'])}" if info["profiles"] else ""
        click.echo(f"  {name:18} {info['description']} [{info['ffmpeg_encoder']}; rate control {', '.join(info['rate_control'])}{extra}]"
                   + (f" ({info['origin']})" if info["origin"] != "builtin" else ""))
    click.echo("\naudio codecs:")
    for name, info in audio.items():
        click.echo(f"  {name:18} {info['description']} [{info['ffmpeg_encoder']}]"
                   + (f" ({info['origin']})" if info["origin"] != "builtin" else ""))
