"""Where profiles come from: one registry for built-ins, user directories, plug-ins and paths.

Lookup order for a name: directories in ABRPIPE_PROFILE_PATH (user profiles shadow the rest), then
profiles contributed by plug-ins (entry-point group `abrpipe.profiles`), then the built-ins, which
are themselves registered through that same entry-point group. A path (anything with a slash or a
.toml/.yaml/.yml suffix) is loaded directly.

A `abrpipe.profiles` entry point is a callable returning a list of directories or profile files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from abrpipe import codecs, plugins
from abrpipe.errors import ProfileError
from abrpipe.profile import Profile, build_profile, merge_extends, profile_name_from_path, read_profile_file

PROFILE_SUFFIXES = (".toml", ".yaml", ".yml")


def builtin_profile_dirs() -> list[str]:
    """The built-in profiles: inside the installed package, or the source tree's profiles/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "builtin_profiles", here.parent / "profiles"):
        if candidate.is_dir():
            return [str(candidate)]
    return []


@dataclass(frozen=True)
class ProfileEntry:
    name: str
    path: str
    origin: str  # "user (DIR)", "plug-in DIST", "builtin"


def _files_in(location: str) -> list[str]:
    p = Path(location)
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        return sorted(str(f) for f in p.iterdir() if f.suffix in PROFILE_SUFFIXES and f.is_file())
    return []


def entries() -> dict[str, ProfileEntry]:
    """Every named profile, first source wins (user dirs, then plug-ins, then built-ins)."""
    found: dict[str, ProfileEntry] = {}
    user_path = os.environ.get("ABRPIPE_PROFILE_PATH", "")
    for directory in [d for d in user_path.split(os.pathsep) if d]:
        for f in _files_in(directory):
            found.setdefault(profile_name_from_path(f), ProfileEntry(profile_name_from_path(f), f, f"user ({directory})"))
    contributed: list[tuple[str, str]] = []
    for dist, factory in plugins.load_entry_points("abrpipe.profiles", fallback={"builtin": builtin_profile_dirs}):
        try:
            locations = list(factory() if callable(factory) else factory)
        except Exception as exc:
            plugins.warnings.append(f"profile plug-in from distribution {dist!r} failed: {exc}")
            continue
        origin = "builtin" if dist.startswith("abrpipe") else f"plug-in {dist}"
        for location in locations:
            files = _files_in(str(location))
            if not files:
                plugins.warnings.append(f"profile plug-in from distribution {dist!r} names {location}, which has no profiles")
            contributed.extend((f, origin) for f in files)
    # Plug-ins before built-ins, so that a plug-in profile is listed with its own origin.
    for f, origin in sorted(contributed, key=lambda item: item[1] == "builtin"):
        found.setdefault(profile_name_from_path(f), ProfileEntry(profile_name_from_path(f), f, origin))
    return found


def _is_path(ref: str) -> bool:
    return os.sep in ref or "/" in ref or ref.endswith(PROFILE_SUFFIXES)


def load(ref: str) -> Profile:
    """Load a profile by name or path, resolving `extends`, validating everything once."""
    return _load(ref, base_dir=None, chain=())


def _locate(ref: str, base_dir: str | None) -> ProfileEntry:
    if _is_path(ref):
        path = ref if os.path.isabs(ref) or base_dir is None else os.path.join(base_dir, ref)
        if not os.path.isfile(path):
            raise ProfileError(f"{ref}: no such profile file")
        return ProfileEntry(profile_name_from_path(path), os.path.abspath(path), "file")
    known = entries()
    if ref not in known:
        raise ProfileError(
            f"unknown profile {ref!r}", hint=f"known profiles: {', '.join(sorted(known))}; or give a path to a .toml/.yaml file"
        )
    return known[ref]


def _raw(entry: ProfileEntry, base_dir: str | None, chain: tuple[str, ...]) -> dict:
    if entry.path in chain:
        raise ProfileError(f"{entry.path}: extends itself through {' -> '.join(chain + (entry.path,))}")
    data = read_profile_file(entry.path)
    parent_ref = data.get("extends")
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str):
        raise ProfileError(f"{entry.path}: extends: expected a profile name or path")
    parent = _locate(parent_ref, os.path.dirname(entry.path))
    if parent.path == entry.path:
        # A user profile named like a built-in may extend the built-in it shadows.
        builtin = [e for e in _builtin_entries() if e.name == parent_ref]
        if not builtin:
            raise ProfileError(f"{entry.path}: extends itself")
        parent = builtin[0]
    parent_data = _raw(parent, os.path.dirname(parent.path), chain + (entry.path,))
    return merge_extends(parent_data, data, entry.path)


def _builtin_entries() -> list[ProfileEntry]:
    return [ProfileEntry(profile_name_from_path(f), f, "builtin") for d in builtin_profile_dirs() for f in _files_in(d)]


def _load(ref: str, base_dir: str | None, chain: tuple[str, ...]) -> Profile:
    entry = _locate(ref, base_dir)
    data = _raw(entry, base_dir, chain)
    return build_profile(
        data,
        name=entry.name,
        origin=entry.origin,
        path=entry.path,
        where=_display_path(entry.path),
        known_codec=_codec_problem,
    )


def _codec_problem(name: str) -> str | None:
    return codecs.problem_with(name)


def _display_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("../..") else path
