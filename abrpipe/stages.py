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


# Stages in the order they run: each one sees the Title the previous one returned.
_STAGES: list[Callable[[], Stage]] = []


def register(factory: Callable[[], Stage]) -> Callable[[], Stage]:
    _STAGES.append(factory)
    return factory


def enabled(job: Any) -> list[Stage]:
    return [stage for stage in (factory() for factory in _STAGES) if stage.wanted(job)]
