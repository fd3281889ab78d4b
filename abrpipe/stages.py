"""Optional stages that run between encode and package (encryption, text tracks, thumbnails...).

A stage declares when a job wants it and what it adds to the model: it reads and may rewrite the
files of the work area, and returns the (possibly extended) Title that packaging then writes
manifests for. run_job() knows no feature by name: it runs the enabled stages in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from abrpipe.model import LadderPlan, Title
    from abrpipe.probe import SourceMedia


@dataclass(frozen=True)
class StageContext:
    job: Any  # pipeline.Job (not imported: the pipeline imports this module)
    source: SourceMedia
    plan: LadderPlan
    work_dir: str
    log_dir: str
    title: Title


class Stage(Protocol):
    name: str  # shown as the stage of progress events and in the timings

    def wanted(self, job: Any) -> bool: ...

    def run(self, ctx: StageContext) -> Title: ...


# Where each kind of stage runs: stages that read the clear media (captions are probed in the
# decoded video, MPEG-TS is remuxed from the CMAF samples) come before encryption rewrites them.
ORDER_THUMBNAILS = 10
ORDER_TEXT = 20
ORDER_REMUX = 30
ORDER_ENCRYPT = 90

_STAGES: list[tuple[int, Callable[[], Stage]]] = []


def register(factory: Callable[[], Stage], *, order: int) -> Callable[[], Stage]:
    _STAGES.append((order, factory))
    return factory


def enabled(job: Any) -> list[Stage]:
    """The stages a job wants, in their order: each one sees the Title the previous one returned."""
    ordered = [factory for _, factory in sorted(_STAGES, key=lambda item: item[0])]
    return [stage for stage in (factory() for factory in ordered) if stage.wanted(job)]
