"""Entry-point discovery shared by the profile and encoder registries.

Two groups: `abrpipe.profiles` (a callable returning directories or files of profiles) and
`abrpipe.encoders` (a callable returning encoder objects, see codecs.py). abrpipe registers its own
built-ins in both, so built-ins and plug-ins load the same way. A plug-in that fails to import or
to run is a warning naming its distribution, never a crash of the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

OWN_DISTRIBUTION = "abrpipe"

# Warnings about plug-ins, in order, each once: the CLI prints them on stderr.
warnings: list[str] = []
_shown = 0


def warn(message: str) -> None:
    if message not in warnings:
        warnings.append(message)


def unshown_warnings() -> list[str]:
    """The warnings not handed out yet (so that the CLI prints each once, wherever it is)."""
    global _shown
    new = warnings[_shown:]
    _shown = len(warnings)
    return new


def clear_warnings() -> None:
    global _shown
    warnings.clear()
    _shown = 0


def origin_label(dist: str) -> str:
    """How `profiles list` names where something came from."""
    return "builtin" if is_builtin(dist) else f"plug-in {dist}"


def is_builtin(dist: str) -> bool:
    return dist == OWN_DISTRIBUTION or dist.startswith(f"{OWN_DISTRIBUTION} (")


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return name or f"unknown distribution of {ep.value}"


def load_entry_points(group: str, *, fallback: dict[str, Callable[[], Any]]) -> Iterator[tuple[str, Any]]:
    """Yield (distribution name, loaded object) for each entry point of `group`, abrpipe's first.

    When abrpipe itself runs from a source tree without installed metadata, `fallback` supplies its
    built-ins (named "abrpipe (NAME)").
    """
    try:
        points = list(metadata.entry_points(group=group))
    except Exception as exc:  # a broken distribution's metadata must not break the CLI
        warn(f"cannot list the {group} plug-ins: {type(exc).__name__}: {exc}")
        points = []
    # abrpipe's own entry points come first: a plug-in may add names, not silently replace built-ins.
    points.sort(key=lambda ep: (_distribution(ep) != OWN_DISTRIBUTION, _distribution(ep), ep.name))
    seen_builtin = any(_distribution(ep) == OWN_DISTRIBUTION and ep.name in fallback for ep in points)
    if not seen_builtin:
        for name, obj in fallback.items():
            yield f"{OWN_DISTRIBUTION} ({name})", obj
    for ep in points:
        dist = _distribution(ep)
        try:
            obj = ep.load()
        except Exception as exc:
            warn(f"plug-in {ep.name!r} from distribution {dist!r} ({group}) failed to load: {type(exc).__name__}: {exc}")
            continue
        yield dist, obj
