"""Entry-point discovery shared by the profile and encoder registries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

warnings: list[str] = []


def load_entry_points(group: str, *, fallback: dict[str, Callable[[], Any]]) -> Iterator[tuple[str, Any]]:
    """Yield (distribution name, loaded object) for each entry point of `group`.

    A plug-in that fails to import is a warning naming its distribution, never a crash. When abrpipe
    itself runs from a source tree without installed metadata, `fallback` supplies its built-ins.
    """
    points = list(metadata.entry_points(group=group))
    # abrpipe's own entry points come first: a plug-in may add names, not silently replace built-ins.
    points.sort(key=lambda ep: (ep.dist is None or ep.dist.name != "abrpipe", ep.name))
    seen_builtin = any(ep.dist and ep.dist.name == "abrpipe" and ep.name in fallback for ep in points)
    if not seen_builtin:
        for name, obj in fallback.items():
            yield f"abrpipe ({name})", obj
    for ep in points:
        dist = ep.dist.name if ep.dist else ep.value
        try:
            yield dist, ep.load()
        except Exception as exc:
            warnings.append(f"plug-in {ep.name!r} from distribution {dist!r} ({group}) failed to load: {exc}")
