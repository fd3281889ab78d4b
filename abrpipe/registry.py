"""Where profiles come from: one registry for built-ins, user directories, plug-ins and paths.

Lookup order for a name: the directories in ABRPIPE_PROFILE_PATH (os.pathsep-separated; user
profiles shadow the rest, earlier directories first), then profiles contributed by plug-ins
(entry-point group `abrpipe.profiles`), then the built-ins, which are themselves registered through
that same entry-point group. A path (anything with a slash or a .toml/.yaml/.yml suffix) is loaded
directly.

An `abrpipe.profiles` entry point is a callable returning a list of directories or profile files
(str or os.PathLike); every .toml/.yaml/.yml file found is a profile named after its file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from abrpipe import plugins
from abrpipe.errors import ProfileError
from abrpipe.profile import Profile, build_profile, merge_extends, profile_name_from_path, read_profile_file

PROFILE_SUFFIXES = (".toml", ".yaml", ".yml")
ENTRY_POINT_GROUP = "abrpipe.profiles"
PATH_ENV = "ABRPIPE_PROFILE_PATH"


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
    origin: str  # "user (DIR)", "plug-in DIST", "builtin", "file"


def _files_in(location: str) -> list[str]:
    p = Path(location)
    if p.is_file():
        return [str(p)] if p.suffix in PROFILE_SUFFIXES else []
    if p.is_dir():
        return sorted(str(f) for f in p.iterdir() if f.suffix in PROFILE_SUFFIXES and f.is_file())
    return []


def user_dirs() -> list[str]:
    return [d for d in os.environ.get(PATH_ENV, "").split(os.pathsep) if d]


_contributed: list[ProfileEntry] | None = None


def _contributed_entries() -> list[ProfileEntry]:
    """Profiles from the `abrpipe.profiles` entry points: plug-ins first, then the built-ins."""
    global _contributed
    if _contributed is None:
        found: list[ProfileEntry] = []
        for dist, factory in plugins.load_entry_points(ENTRY_POINT_GROUP, fallback={"builtin": builtin_profile_dirs}):
            try:
                locations = [os.fspath(loc) for loc in (factory() if callable(factory) else factory)]
            except Exception as exc:  # a broken plug-in is a warning, not a crash
                plugins.warn(f"profile plug-in from distribution {dist!r} failed: {type(exc).__name__}: {exc}")
                continue
            for location in locations:
                files = _files_in(location)
                if not files:
                    plugins.warn(f"profile plug-in from distribution {dist!r} names {location}, which holds no profiles")
                found.extend(ProfileEntry(profile_name_from_path(f), f, plugins.origin_label(dist)) for f in files)
        # Plug-ins before built-ins (stable otherwise): a plug-in profile shadows a built-in of its name.
        _contributed = sorted(found, key=lambda e: e.origin == "builtin")
    return _contributed


def reset() -> None:
    """Forget the plug-in profiles found so far (tests, or after installing a plug-in in-process)."""
    global _contributed
    _contributed = None


def all_entries() -> list[ProfileEntry]:
    """Every profile file in lookup order, shadowed ones included."""
    found = [
        ProfileEntry(profile_name_from_path(f), f, f"user ({directory})")
        for directory in user_dirs()
        for f in _files_in(directory)
    ]
    return found + _contributed_entries()


def entries() -> dict[str, ProfileEntry]:
    """Every named profile: the first source wins (user dirs, then plug-ins, then built-ins)."""
    found: dict[str, ProfileEntry] = {}
    for entry in all_entries():
        found.setdefault(entry.name, entry)
    return found


def is_path(ref: str) -> bool:
    return os.sep in ref or "/" in ref or ref.endswith(PROFILE_SUFFIXES)


def load(ref: str) -> Profile:
    """Load a profile by name or path, resolving `extends`, validating everything once."""
    entry = _locate(ref, base_dir=None)
    data = _raw(entry, chain=())
    return build_profile(data, name=entry.name, origin=entry.origin, path=entry.path, where=display_path(entry.path))


def _locate(ref: str, base_dir: str | None, *, after: ProfileEntry | None = None) -> ProfileEntry:
    if is_path(ref):
        path = ref if os.path.isabs(ref) or base_dir is None else os.path.join(base_dir, ref)
        if not os.path.isfile(path):
            raise ProfileError(f"{ref}: no such profile file")
        return ProfileEntry(profile_name_from_path(path), os.path.abspath(path), "file")
    candidates = [e for e in all_entries() if e.name == ref]
    if after is not None:
        same = [n for n, e in enumerate(candidates) if os.path.abspath(e.path) == os.path.abspath(after.path)]
        # After its own place in the lookup order; a file given by path shadows nothing: the first.
        candidates = candidates[same[0] + 1:] if same else candidates
    if not candidates:
        known = sorted(entries())
        raise ProfileError(
            f"unknown profile {ref!r}", hint=f"known profiles: {', '.join(known)}; or give a path to a .toml/.yaml file"
        )
    return candidates[0]


def _raw(entry: ProfileEntry, chain: tuple[str, ...]) -> dict:
    """The file's data with its `extends` chain merged in. Each parent is validated on its own
    first, so that a problem in a parent names the parent's file."""
    where = display_path(entry.path)
    if entry.path in chain:
        raise ProfileError(f"{where}: extends: a loop ({' -> '.join(display_path(p) for p in chain + (entry.path,))})")
    data = read_profile_file(entry.path, where)
    parent_ref = data.get("extends")
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise ProfileError(f"{where}: extends: expected a profile name or path")
    try:
        if parent_ref == entry.name:
            # A profile extending its own name means the one it shadows (a user 'default' extends
            # the built-in 'default'), the next of that name in the lookup order.
            parent = _locate(parent_ref, None, after=entry)
        else:
            parent = _locate(parent_ref, os.path.dirname(entry.path))
    except ProfileError as exc:
        raise ProfileError(f"{where}: extends: {exc.message}", hint=exc.hint) from None
    parent_data = _raw(parent, chain + (entry.path,))
    build_profile(parent_data, name=parent.name, origin=parent.origin, path=parent.path, where=display_path(parent.path))
    return merge_extends(parent_data, data, where)


def display_path(path: str) -> str:
    """Paths under the current directory are shown relative (profiles/x.toml), others absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
