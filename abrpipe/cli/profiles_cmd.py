"""`abrpipe profiles list|show|validate|schema`."""

from __future__ import annotations

import click
from rich.table import Table

from abrpipe import codecs, plugins, registry
from abrpipe.cli.common import console_err, emit_json, json_option
from abrpipe.errors import ProfileError
from abrpipe.profile import AUDIO_FIELDS, RUNG_FIELDS, TOP_FIELDS


def _warn_plugins() -> None:
    for w in plugins.warnings + codecs.warnings:
        console_err().print(f"abrpipe: warning: {w}", style="yellow", highlight=False, markup=False)


@click.group()
def profiles():
    """List, show, validate and document encoding profiles."""


@profiles.command("list")
@json_option
def list_cmd(as_json):
    """Every profile abrpipe can find, with where it comes from (builtin, user dir, plug-in)."""
    entries = registry.entries()
    rows = []
    for name, entry in sorted(entries.items()):
        try:
            p = registry.load(name)
            rows.append({"name": name, "origin": entry.origin, "path": entry.path, "description": p.description,
                         "rungs": len(p.rungs), "codecs": sorted({r.codec for r in p.rungs}), "error": None})
        except ProfileError as exc:
            rows.append({"name": name, "origin": entry.origin, "path": entry.path, "description": "", "rungs": 0,
                         "codecs": [], "error": exc.message})
    _warn_plugins()
    if as_json:
        emit_json(rows)
        return
    table = Table(title="profiles", title_justify="left")
    for col in ("name", "origin", "rungs", "codecs", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["origin"], str(r["rungs"]), ",".join(r["codecs"]),
                      f"[red]invalid: {r['error']}[/red]" if r["error"] else r["description"])
    console_err().print(table)


@profiles.command("show")
@click.argument("name")
@json_option
def show(name, as_json):
    """Print profile NAME (or a path) fully resolved: extends applied, defaults filled in."""
    p = registry.load(name)
    _warn_plugins()
    data = p.to_dict()
    if as_json:
        emit_json(data)
        return

    err = console_err()
    err.print(f"# {p.name} ({p.origin}: {p.path})", highlight=False, markup=False)
    for key, value in data.items():
        if key in ("rungs", "audio", "name", "origin", "path"):
            continue
        click.echo(f"{key} = {_toml_value(value)}")
    for r in p.rungs:
        click.echo("\n[[rungs]]")
        for key, value in r.__dict__.items():
            if value is not None:
                click.echo(f"{key} = {_toml_value(value)}")
    for a in p.audio:
        click.echo("\n[[audio]]")
        for key, value in a.__dict__.items():
            click.echo(f"{key} = {_toml_value(value)}")


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    return str(value)


@profiles.command("validate")
@click.argument("files", nargs=-1)
@json_option
def validate(files, as_json):
    """Check profile FILES (names or paths; default: every known profile). Exits 4 on any problem."""
    targets = list(files) or sorted(registry.entries())
    problems = []
    for ref in targets:
        try:
            registry.load(ref)
        except ProfileError as exc:
            problems.extend(getattr(exc, "problems", [exc.message]))
    _warn_plugins()
    if as_json:
        emit_json({"checked": targets, "problems": problems, "ok": not problems})
    else:
        err = console_err()
        for line in problems:
            err.print(line, style="red", highlight=False, markup=False)
        err.print(f"{len(targets)} profile(s) checked, {len(problems)} problem(s)")
    if problems:
        raise click.exceptions.Exit(ProfileError.exit_code)


@profiles.command("schema")
@json_option
def schema(as_json):
    """Document every field of a profile file."""
    data = {"profile": TOP_FIELDS, "rungs[]": RUNG_FIELDS, "audio[]": AUDIO_FIELDS,
            "codecs": {n: getattr(e, "description", "") for n, e in sorted(codecs.registry().items())}}
    if as_json:
        emit_json(data)
        return
    for section, fields in data.items():
        click.echo(f"\n{section}:")
        for key, text in fields.items():
            click.echo(f"  {key:16} {text}")
