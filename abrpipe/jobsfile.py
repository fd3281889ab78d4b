"""Jobs files and input patterns for `abrpipe batch`: parsed and validated as a whole, once.

A jobs file (TOML or YAML) lists jobs, each an input with its profile, output and overrides, under
a table of defaults:

    schema = 1
    [defaults]
    profile = "480p"          # a profile name, or a path relative to this file
    output_dir = "out"        # each job publishes to output_dir/<name> unless it gives `output`
    name = "{stem}"           # job names: {stem} (the input's name) and {profile} are filled in

    [[jobs]]
    input = "demo.mp4"        # relative to this file

    [[jobs]]
    input = "demo.mp4"
    name = "demo-720p"
    profile = "720p"
    preset = "ultrafast"

Nothing is encoded until every job is valid: every input exists, every profile resolves, no two
jobs write the same output (or one inside another's), no output would replace a directory holding
an input. Every problem is reported at once, each naming the file, the job and the field:
`jobs.toml: jobs[2].profile: unknown profile 'x'`.

Job names are identifiers in reports and JUnit, and, when a job gives no `output`, the name of its
output directory. Names derived from inputs or profiles are reduced to safe characters, so they can
never escape the output directory.
"""

from __future__ import annotations

import glob
import os
import re
import string
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from abrpipe import registry, storage, subtitles
from abrpipe.errors import InputError, OutputError, ProfileError
from abrpipe.layout import PARTIAL_SUFFIX, UNITS_SUFFIX
from abrpipe.pipeline import Job, default_output
from abrpipe.profile import Profile

SCHEMA_VERSION = 1
JOBS_FILE_SUFFIXES = (".toml", ".yaml", ".yml")

TOP_FIELDS: dict[str, str] = {
    "schema": "schema version of the file; must be 1",
    "defaults": "a table of settings every job inherits (any job key but input and output, plus output_dir)",
    "jobs": "the jobs: a list of [[jobs]] tables",
}
JOB_FIELDS: dict[str, str] = {
    "input": "the source file (relative to the jobs file), or an s3:// object",
    "name": "the job's name in reports; with no output, its directory name under output_dir. Default \"{stem}\"",
    "output": "output directory (relative to the jobs file) or s3:// prefix; default output_dir/<name>, or <input>-abr beside the input",
    "profile": "profile name or path to a .toml/.yaml profile (relative to the jobs file)",
    "preset": "override the profile's encoder preset",
    "audio_tracks": 'override the profile\'s audio tracks: "all", "first", or a list of indices / languages',
    "validate": "validate before publishing (default true)",
    "allow_references": "let ffmpeg open inputs that reference other files or URLs (default false)",
    "subtitles": 'sidecar subtitle files: a list of "LANG[,forced][,sdh][,default]=FILE" (FILE relative to the jobs file)',
    "source_subtitles": "publish the source's own text tracks (default true)",
    "protection": "content protection: a table of encrypt, keys, cpix, pssh, hls_aes128, key_uri, key_rotation, embed_keys, "
                  "allow_clear (key files by path; never a key: see docs/BATCH.md)",
}
DEFAULT_FIELDS: dict[str, str] = {
    **{k: v for k, v in JOB_FIELDS.items() if k not in ("input", "output")},
    "output_dir": "directory (relative to the jobs file) or s3:// prefix that receives one output per job",
}
NAME_PLACEHOLDERS = ("stem", "profile")
_NAME_RE = re.compile(r"^\w[\w .+\-]*$")


class JobsFileError(ProfileError):
    """An invalid jobs file or job list (exit code PROFILE); one line per problem."""


@dataclass(frozen=True)
class BatchJob:
    name: str  # unique in the batch: the report key and the JUnit test case name
    job: Job  # the self-contained task: input, resolved profile, output, overrides
    where: str  # how messages refer to it: "jobs.toml: jobs[2]" or the input path


@dataclass(frozen=True)
class BatchDefaults:
    """Settings from the command line. They override the file's [defaults]; a job's own keys win."""

    profile: str | None = None
    preset: str | None = None
    audio_tracks: tuple | None = None
    output_dir: str | None = None
    validate: bool | None = None
    allow_references: bool = False
    dash_schema: str | None = None
    keep_logs: bool = False
    endpoint: str | None = None


def is_jobs_file(arg: str) -> bool:
    return arg.lower().endswith(JOBS_FILE_SUFFIXES)


def safe_name(text: str) -> str:
    """A file-name-safe version of `text`: letters, digits, '.', '-', '_' only; never '.', '..', or a path."""
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[^\w.\-]+", "_", text)
    text = re.sub(r"_{2,}", "_", text).strip("._-")
    return text[:120] or "title"


def _stem(path: str) -> str:
    base = os.path.basename(path.rstrip("/").split("?", 1)[0])
    return os.path.splitext(base)[0] or base


def _is_url(path: str) -> bool:
    return storage.is_url(path)


def _is_object(path: str) -> bool:
    """An input abrpipe itself downloads (s3://): no --allow-references needed."""
    try:
        return storage.parse_input(path) is not None
    except InputError:
        return False


def _resolve_output(base_dir: str, path: str) -> str:
    return path if _is_url(path) else _resolve(base_dir, path)


class _Problems:
    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{self.where}: {path}: {message}" if path else f"{self.where}: {message}")

    def raise_if_any(self) -> None:
        self.items = list(dict.fromkeys(self.items))
        if self.items:
            error = JobsFileError("\n".join(self.items))
            error.problems = list(self.items)  # type: ignore[attr-defined]
            raise error


class _ProfileCache:
    def __init__(self) -> None:
        self._cache: dict[str, Profile | ProfileError] = {}

    def load(self, ref: str) -> Profile:
        if ref not in self._cache:
            try:
                self._cache[ref] = registry.load(ref)
            except ProfileError as exc:
                self._cache[ref] = exc
        value = self._cache[ref]
        if isinstance(value, ProfileError):
            raise value
        return value


def _looks_like_path(ref: str) -> bool:
    return os.sep in ref or "/" in ref or ref.endswith(registry.PROFILE_SUFFIXES)


# ---------------------------------------------------------------------------------------------
# Field parsers: return the value, or raise ValueError with what was expected.


def _str_field(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a non-empty string")
    return v


def _bool_field(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _preset_field(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int) or (isinstance(v, str) and not v.strip()):
        raise ValueError("expected a preset name like veryfast (or a number)")
    return str(v)


def _audio_tracks_field(v: Any) -> str | tuple:
    if v in ("all", "first"):
        return v
    if isinstance(v, list) and v and all(
        (isinstance(x, str) and x) or (isinstance(x, int) and not isinstance(x, bool) and x >= 0) for x in v
    ):
        return tuple(v)
    raise ValueError('expected "all", "first", or a list of track indices / languages')


def _name_template(v: Any) -> str:
    text = _str_field(v)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid name template ({exc})") from None
    for f in fields:
        if f not in NAME_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{f}}} (use {{stem}} or {{profile}})")
    return text


def _subtitles_field(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError('expected a list of "LANG[,forced][,sdh][,default]=FILE" strings')
    for x in v:
        try:
            subtitles.parse_spec(x)
        except InputError as exc:
            raise ValueError(exc.message) from None
    return tuple(v)


def _protection_field(v: Any) -> dict[str, Any]:
    from abrpipe.protect.jobs import parse_table

    return parse_table(v)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "input": _str_field,
    "name": _name_template,
    "output": _str_field,
    "output_dir": _str_field,
    "profile": _str_field,
    "preset": _preset_field,
    "audio_tracks": _audio_tracks_field,
    "validate": _bool_field,
    "allow_references": _bool_field,
    "subtitles": _subtitles_field,
    "source_subtitles": _bool_field,
    "protection": _protection_field,
}


# ---------------------------------------------------------------------------------------------


def read_jobs_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise JobsFileError(f"{path}: no such jobs file") from None
    except IsADirectoryError:
        raise JobsFileError(f"{path}: is a directory, not a jobs file") from None
    except OSError as exc:
        raise JobsFileError(f"{path}: cannot be read ({exc.strerror})") from None
    yaml_file = path.lower().endswith((".yaml", ".yml"))
    try:
        text = raw.decode("utf-8")
        if yaml_file:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # UnicodeDecodeError, tomllib / yaml syntax errors
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise JobsFileError(f"{path}: not valid {'YAML' if yaml_file else 'TOML'} ({detail})") from None
    if not isinstance(data, dict):
        raise JobsFileError(f"{path}: expected a table with `defaults` and a list of `jobs`")
    return data


def load_jobs_file(path: str, cli: BatchDefaults | None = None) -> list[BatchJob]:
    """Parse and validate a jobs file; raise JobsFileError listing every problem."""
    cli = cli or BatchDefaults()
    data = read_jobs_file(path)
    where = os.path.relpath(path) if not os.path.isabs(path) else path
    base_dir = os.path.dirname(os.path.abspath(path))
    problems = _Problems(where)
    for key in data:
        if key not in TOP_FIELDS:
            problems.add(key, f"unknown key (expected one of: {', '.join(TOP_FIELDS)})")
    if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        problems.add("schema", f"unsupported schema version {data.get('schema')!r} (this abrpipe reads {SCHEMA_VERSION})")

    defaults: dict[str, Any] = {}
    raw_defaults = data.get("defaults", {})
    if not isinstance(raw_defaults, dict):
        problems.add("defaults", "expected a table of settings")
        raw_defaults = {}
    for key, value in raw_defaults.items():
        if key not in DEFAULT_FIELDS:
            problems.add(f"defaults.{key}", f"unknown key (expected one of: {', '.join(DEFAULT_FIELDS)})")
            continue
        try:
            defaults[key] = _PARSERS[key](value)
        except ValueError as exc:
            problems.add(f"defaults.{key}", str(exc))
    if "output_dir" in defaults:
        defaults["output_dir"] = _resolve_output(base_dir, defaults["output_dir"])
    _apply_cli(defaults, cli)

    raw_jobs = data.get("jobs")
    if raw_jobs is None:
        problems.add("jobs", "missing: add at least one [[jobs]] table with an input")
        raw_jobs = []
    elif not isinstance(raw_jobs, list) or not raw_jobs:
        problems.add("jobs", "expected a non-empty list of [[jobs]] tables")
        raw_jobs = []

    profiles = _ProfileCache()
    specs: list[_Spec] = []
    for i, raw in enumerate(raw_jobs):
        path_ = f"jobs[{i}]"
        if not isinstance(raw, dict):
            problems.add(path_, "expected a table with at least an input")
            continue
        fields: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in JOB_FIELDS:
                problems.add(f"{path_}.{key}", f"unknown key (expected one of: {', '.join(JOB_FIELDS)})")
                continue
            try:
                fields[key] = _PARSERS[key](value)
            except ValueError as exc:
                problems.add(f"{path_}.{key}", str(exc))
        if "input" not in fields:
            if "input" not in raw:
                problems.add(f"{path_}.input", "missing: the source file of this job")
            continue
        if "name" in fields and not _NAME_RE.match(fields["name"]) and "{" not in fields["name"]:
            problems.add(f"{path_}.name", "must be a plain name (letters, digits, space, . + - _), not a path")
            continue
        merged = {**defaults, **fields}
        # A job's protection fields add to (or override) the defaults' ones, field by field.
        merged["protection"] = {**defaults.get("protection", {}), **fields.get("protection", {})}
        spec = _Spec(
            index=i,
            where=f"{where}: {path_}",
            prefix=where,
            field_prefix=path_,
            explicit=frozenset(fields),
            input=fields["input"] if _is_url(fields["input"]) else _resolve(base_dir, fields["input"]),
            output=_resolve_output(base_dir, fields["output"]) if "output" in fields else None,
            output_dir=merged.get("output_dir"),
            profile_ref=_profile_ref(merged.get("profile", "default"), base_dir),
            name_template=merged.get("name", "{stem}"),
            preset=merged.get("preset"),
            audio_tracks=merged.get("audio_tracks"),
            validate=merged.get("validate", True),
            allow_references=bool(merged.get("allow_references", False)) or cli.allow_references,
            subtitles=tuple(subtitles.parse_spec(v, base_dir=base_dir) for v in merged.get("subtitles", ())),
            source_subtitles=merged.get("source_subtitles", True),
            protection=merged["protection"],
            base_dir=base_dir,
        )
        try:
            subtitles.check_specs(spec.subtitles)  # a bad sidecar fails the file check, before any encode
        except InputError as exc:
            problems.add(f"{path_}.subtitles", exc.message)
            continue
        specs.append(spec)
    return _build(specs, cli, problems, profiles)


def jobs_from_patterns(patterns: list[str], cli: BatchDefaults | None = None) -> list[BatchJob]:
    """`abrpipe batch 'media/*.mp4' -o out/`: one job per matching file, sorted, each file once."""
    cli = cli or BatchDefaults()
    problems = _Problems("batch")
    inputs: list[str] = []
    for pattern in patterns:
        if _is_url(pattern):
            inputs.append(pattern)
            continue
        if glob.has_magic(pattern) and not os.path.exists(pattern):  # "clip [1].mp4" is a name, not a pattern
            matches = sorted(m for m in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(m))
            if not matches:
                raise InputError(f"{pattern}: no file matches this pattern", hint="quote the pattern, and check the directory")
            inputs.extend(os.path.abspath(m) for m in matches)
        else:
            inputs.append(os.path.abspath(os.path.expanduser(pattern)))
    inputs = list(dict.fromkeys(inputs))
    output_dir = (cli.output_dir if _is_url(cli.output_dir) else os.path.abspath(cli.output_dir)) if cli.output_dir else None
    profile_ref = cli.profile or "default"
    specs = [
        _Spec(
            index=i,
            where=path,
            prefix=path,
            field_prefix="",
            explicit=frozenset(),
            input=path,
            output=None,
            output_dir=output_dir,
            profile_ref=profile_ref,
            name_template="{stem}",
            preset=cli.preset,
            audio_tracks=cli.audio_tracks,
            validate=True if cli.validate is None else cli.validate,
            allow_references=cli.allow_references,
        )
        for i, path in enumerate(inputs)
    ]
    return _build(specs, cli, problems, _ProfileCache())


@dataclass(frozen=True)
class _Spec:
    index: int
    where: str  # names the job: "jobs.toml: jobs[2]", or the input path
    prefix: str  # starts its error messages: "jobs.toml", or the input path
    field_prefix: str  # "jobs[2]" in a jobs file, "" for inputs given on the command line
    explicit: frozenset[str]
    input: str
    output: str | None
    output_dir: str | None
    profile_ref: str
    name_template: str
    preset: str | None
    audio_tracks: str | tuple | None
    validate: bool
    allow_references: bool
    subtitles: tuple = ()  # subtitles.SubtitleSpec, paths resolved
    source_subtitles: bool = True
    protection: dict | None = None  # the job's `protection` table (abrpipe.protect.jobs), paths not yet resolved
    base_dir: str = ""  # the jobs file's directory


def _resolve(base_dir: str, path: str) -> str:
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def _profile_ref(ref: str, base_dir: str) -> str:
    if _looks_like_path(ref) and not os.path.isabs(os.path.expanduser(ref)):
        return _resolve(base_dir, ref)
    return os.path.expanduser(ref) if _looks_like_path(ref) else ref


def _apply_cli(defaults: dict[str, Any], cli: BatchDefaults) -> None:
    if cli.profile:
        defaults["profile"] = cli.profile if not _looks_like_path(cli.profile) else os.path.abspath(cli.profile)
    if cli.preset:
        defaults["preset"] = cli.preset
    if cli.audio_tracks is not None:
        defaults["audio_tracks"] = cli.audio_tracks
    if cli.output_dir:
        defaults["output_dir"] = cli.output_dir if _is_url(cli.output_dir) else os.path.abspath(cli.output_dir)
    if cli.validate is not None:
        defaults["validate"] = cli.validate


def _field(spec: _Spec, name: str) -> str:
    return f"{spec.field_prefix}.{name}" if spec.field_prefix else name


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _build(specs: list[_Spec], cli: BatchDefaults, problems: _Problems, profiles: _ProfileCache) -> list[BatchJob]:
    built: list[tuple[_Spec, str, str, Job]] = []  # spec, name, output, job
    for spec in specs:
        ok = True
        # The input: it must exist and be a file (what it contains is each job's own business).
        if not _is_url(spec.input):
            if not os.path.exists(spec.input):
                problems.items.append(f"{spec.prefix}: {_label(spec, 'input')}no such file{_at(spec)}")
                ok = False
            elif os.path.isdir(spec.input):
                problems.items.append(f"{spec.prefix}: {_label(spec, 'input')}is a directory, not a media file{_at(spec)}")
                ok = False
        elif (problem := _url_problem(spec.input)) is not None:  # s3:/typo, s3://bucket/folder/
            problems.items.append(f"{spec.prefix}: {_label(spec, 'input')}{problem}")
            ok = False
        elif not spec.allow_references and not _is_object(spec.input):
            problems.items.append(
                f"{spec.prefix}: {_label(spec, 'input')}is a URL; set allow_references (or --allow-references) to let ffmpeg open it"
            )
            ok = False
        # The profile: resolved now, once per distinct reference.
        profile: Profile | None = None
        try:
            profile = profiles.load(spec.profile_ref)
        except ProfileError as exc:
            lines = exc.message.splitlines() or [str(exc)]
            first = lines[0] + (f" ({exc.hint})" if exc.hint else "")
            if spec.field_prefix:
                problems.items.append(f"{spec.prefix}: {_label(spec, 'profile')}{first}")
                problems.items.extend(f"{spec.prefix}: {_label(spec, 'profile')}{line}" for line in lines[1:])
            else:  # --profile on the command line: the same problem for every input, said once
                problems.items.extend([first, *lines[1:]])
            ok = False
        # The name, then the output.
        stem = safe_name(_stem(spec.input))
        profile_name = safe_name(profile.name) if profile else safe_name(os.path.basename(spec.profile_ref))
        try:
            raw_name = spec.name_template.format(stem=stem, profile=profile_name)
        except (KeyError, IndexError, ValueError) as exc:
            problems.items.append(f"{spec.prefix}: {_label(spec, 'name')}cannot be filled in ({exc})")
            continue
        name = raw_name.strip() if "name" in spec.explicit and "{" not in spec.name_template else safe_name(raw_name)
        if spec.output:
            output = spec.output
        elif spec.output_dir and _is_url(spec.output_dir):
            output = spec.output_dir.rstrip("/") + "/" + name + "/"
        elif spec.output_dir:
            output = os.path.join(spec.output_dir, name)
            if not _within(os.path.normpath(output), os.path.normpath(spec.output_dir)) or name in (".", ".."):
                problems.items.append(f"{spec.prefix}: {_label(spec, 'name')}{name!r} would leave the output directory")
                ok = False
        else:
            output = default_output(spec.input) if not _is_url(spec.input) or _is_object(spec.input) else os.path.abspath(stem + "-abr")
        if _is_url(output):
            try:
                storage.parse_output(output)
            except OutputError as exc:
                problems.items.append(f"{spec.prefix}: {_label(spec, 'output')}{exc.message}")
                ok = False
        else:
            output = os.path.normpath(os.path.abspath(output))
        if not ok or profile is None:
            continue
        try:
            protection = _protection(spec, profile)
        except (ValueError, InputError) as exc:
            problems.items.append(f"{spec.prefix}: {_label(spec, 'protection')}{getattr(exc, 'message', exc)}")
            continue
        if protection is not None and protection.hls_aes128:
            profile = replace(profile, outputs=("hls",))  # AES-128 segments are for HLS players only
        job = Job(
            input=spec.input,
            output=output,
            profile=profile,
            preset=spec.preset,
            audio_tracks=spec.audio_tracks,
            validate=spec.validate,
            dash_schema=cli.dash_schema,
            allow_references=spec.allow_references,
            keep_logs=cli.keep_logs,
            endpoint=cli.endpoint,
            subtitles=spec.subtitles,
            source_subtitles=spec.source_subtitles,
            protection=protection,
        )
        built.append((spec, name, output, job))
    _check_conflicts(built, problems)
    problems.raise_if_any()
    names = _unique_names([name for _, name, _, _ in built])
    return [BatchJob(name=n, job=job, where=spec.where) for (spec, _, _, job), n in zip(built, names, strict=True)]


def _protection(spec: _Spec, profile: Profile):
    """The job's ProtectOptions (None: in the clear), its keys read now: a bad key file or CPIX document
    fails the jobs file before anything is encoded. The messages never hold a key."""
    if not spec.protection and not profile.encryption:
        return None
    from abrpipe.protect.jobs import options
    from abrpipe.protect.stage import load_keys, read_cpix_checked

    opts = options(spec.protection or {}, spec.base_dir, profile.key_classes, profile.encryption)
    if opts is None:
        return None
    if opts.scheme and "hls" in profile.outputs and not (opts.cpix or opts.pssh_file or opts.key_uri or opts.embed_keys):
        raise ValueError("HLS players need to know where the key is: add key_uri (or embed_keys, pssh, cpix), "
                         "or use a profile with outputs = [\"dash\"]")
    if opts.cpix:
        read_cpix_checked(opts.cpix)
    elif opts.keys_file:
        load_keys(opts)
    return opts


def _url_problem(text: str) -> str | None:
    """Why an s3-like input cannot be read, or None."""
    try:
        storage.parse_input(text)
    except InputError as exc:
        return exc.message[len(text) + 2:] if exc.message.startswith(text + ": ") else exc.message
    return None


def _at(spec: _Spec) -> str:
    return f": {spec.input}" if spec.field_prefix else ""


def _label(spec: _Spec, name: str) -> str:
    return f"{spec.field_prefix}.{name}: " if spec.field_prefix else ""


def _unique_names(names: list[str]) -> list[str]:
    """Names are report keys: a repeated name gets ~2, ~3... (outputs are checked separately)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        out.append(name if count == 1 else f"{name}~{count}")
    return out


def _check_conflicts(built: list[tuple[_Spec, str, str, Job]], problems: _Problems) -> None:
    """No two jobs write the same output, or into each other's output or work area; no output
    replaces a directory that holds an input of the batch."""
    areas = [(spec, (out, out + PARTIAL_SUFFIX, out + UNITS_SUFFIX)) for spec, _, out, _ in built]
    for a in range(len(areas)):
        spec_a, paths_a = areas[a]
        for b in range(a + 1, len(areas)):
            spec_b, paths_b = areas[b]
            if paths_a[0] == paths_b[0]:
                problems.items.append(
                    f"{spec_b.prefix}: {_label(spec_b, 'output')}same output as {_short(spec_a)} ({paths_a[0]})"
                    + ("; give the jobs different names or outputs" if not {"output"} & (spec_a.explicit | spec_b.explicit) else "")
                )
            elif any(_within(p, q) or _within(q, p) for p in paths_a for q in paths_b):
                problems.items.append(
                    f"{spec_b.prefix}: {_label(spec_b, 'output')}{paths_b[0]} and the output of {_short(spec_a)} "
                    f"({paths_a[0]}) overlap: one would replace the other"
                )
    for spec_i, _, _, job_i in built:
        if _is_url(job_i.input):
            continue
        for spec_o, paths in areas:
            if any(_within(job_i.input, p) for p in paths):
                problems.items.append(
                    f"{spec_o.prefix}: {_label(spec_o, 'output')}{paths[0]} holds the input of {_short(spec_i)} "
                    "and would be replaced when published"
                )


def _short(spec: _Spec) -> str:
    return spec.field_prefix or spec.where
