"""Evidence for a per-title ladder: encode it and the fixed ladder, measure both, report the BD-rate.

Both ladders go through ``pipeline.run_job`` exactly as ``abrpipe encode`` would run them (same
preset, GOP, rate control and VBV; audio left out: only the video is compared). Each video
rendition's real bitrate is the job's measured average (segment bytes / duration); its quality is
measured against the source at the analysis' measuring size, on every Nth frame, with the same metric
as the analysis. The BD-rate (``bjontegaard``, PCHIP) is the per-title ladder's against the fixed one:
negative means the per-title ladder needs fewer bits for the same quality. The overlap of the two
ladders' quality ranges is reported beside it.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from abrpipe import encode
from abrpipe.errors import EncodeError
from abrpipe.pertitle import bdrate, hull, metrics
from abrpipe.pertitle.analysis import (
    METRIC_LABELS,
    Analysis,
    AnalysisOptions,
    analyse,
    bd_dict,
    children_cpu_s,
    metric_engine,
    monotone,
    predict_on_curve,
)
from abrpipe.pipeline import Job, JobResult, run_job
from abrpipe.plan import LadderPlan, PlannedRung
from abrpipe.probe import SourceMedia, probe
from abrpipe.profile import Profile

#: Both ladders' renditions are scored on every Nth frame: the density of sampled trial windows (a title
#: analysed whole scores its trials more sparsely, to bound the analysis' cost; the evaluation is not).
SCORE_EVERY_NTH = AnalysisOptions().every_nth

EventCallback = Callable[[str], None]


@dataclass(frozen=True)
class MeasuredRung:
    """One encoded video rendition: its target, its real average bitrate and its measured quality."""

    id: str
    width: int
    height: int
    target_kbps: int
    kbps: float  # real average bitrate of the rendition (segment bytes / duration)
    peak_kbps: float
    quality: float
    frames: int  # frames scored

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "width": self.width,
            "height": self.height,
            "target_kbps": self.target_kbps,
            "kbps": round(self.kbps, 1),
            "peak_kbps": round(self.peak_kbps, 1),
            "quality": round(self.quality, 3),
            "frames_scored": self.frames,
        }


@dataclass(frozen=True)
class Comparison:
    metric: str
    fixed: tuple[MeasuredRung, ...]
    per_title: tuple[MeasuredRung, ...]
    bd: bdrate.BdResult | None
    problem: str | None  # why there is no BD-rate
    left_out: tuple[str, ...]  # rungs left out of a BD curve: more bits than another rung, no better quality

    @property
    def label(self) -> str:
        return METRIC_LABELS.get(self.metric, self.metric)

    @property
    def per_title_wins(self) -> bool | None:
        """True/False when the BD-rate says so over a large enough overlap; None when it cannot tell."""
        if self.bd is None or math.isnan(self.bd.percent) or not self.bd.valid:
            return None
        return self.bd.percent < 0

    def verdict(self) -> str:
        if self.bd is None or math.isnan(self.bd.percent):
            return f"no BD-rate: {self.problem or 'the ladders do not overlap in quality'}"
        pct, ov = self.bd.percent, self.bd.overlap
        if not self.bd.valid:
            return (
                f"no verdict: the two ladders share only {ov:.0%} of their {self.label} range (below "
                f"{bdrate.DEFAULT_MIN_OVERLAP:.0%}); BD-rate over that sliver {pct:+.1f}%, not a claim either way"
            )
        if pct < 0:
            return f"per-title saves {-pct:.1f}% bitrate at equal {self.label} (BD-rate {pct:+.1f}%, overlap {ov:.2f})"
        return (
            f"per-title LOSES: it needs {pct:.1f}% more bitrate than the fixed ladder at equal {self.label} "
            f"(BD-rate {pct:+.1f}%, overlap {ov:.2f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "bd_rate": bd_dict(self.bd) if self.bd is not None else None,
            "per_title_wins": self.per_title_wins,
            "verdict": self.verdict(),
            "left_out_of_bd": list(self.left_out),
            "fixed": [r.to_dict() for r in self.fixed],
            "per_title": [r.to_dict() for r in self.per_title],
        }


@dataclass(frozen=True)
class RungPrediction:
    """What the trials predicted for one encoded rung and what the final encode measured."""

    ladder: str  # "per-title" or "fixed"
    id: str
    predicted_kbps: float  # the rung's target bitrate (the trials predict quality at it)
    measured_kbps: float
    predicted_quality: float
    measured_quality: float
    quality_at_measured_kbps: float  # the trial curve's quality at the bitrate the encode really hit

    @property
    def quality_error(self) -> float:
        return self.measured_quality - self.predicted_quality

    @property
    def kbps_error_pct(self) -> float:
        return 100.0 * (self.measured_kbps - self.predicted_kbps) / self.predicted_kbps

    def to_dict(self) -> dict[str, Any]:
        return {"ladder": self.ladder, "id": self.id, "predicted_kbps": round(self.predicted_kbps, 1),
                "measured_kbps": round(self.measured_kbps, 1), "kbps_error_pct": round(self.kbps_error_pct, 2),
                "predicted_quality": round(self.predicted_quality, 3),
                "measured_quality": round(self.measured_quality, 3), "quality_error": round(self.quality_error, 3),
                "quality_at_measured_kbps": round(self.quality_at_measured_kbps, 3),
                "curve_error": round(self.measured_quality - self.quality_at_measured_kbps, 3)}  # fmt: skip


def predictions(analysis: Analysis, fixed: Sequence[MeasuredRung], per_title: Sequence[MeasuredRung]) -> list[RungPrediction]:
    """Pair every measured rung with the analysis' prediction for it (same order as the ladders)."""
    env = hull.envelope(analysis.points)

    def at(m: MeasuredRung) -> float:
        try:
            return predict_on_curve(env, (m.width, m.height), m.kbps)[0]
        except KeyError:  # a size no trial measured
            return env.quality_at(m.kbps)

    out = []
    for m, f in zip(sorted(fixed, key=lambda r: -r.target_kbps), sorted(analysis.fixed, key=lambda r: -r.kbps), strict=False):
        out.append(RungPrediction("fixed", m.id, f.kbps, m.kbps, f.predicted_quality, m.quality, at(m)))
    for m, r in zip(sorted(per_title, key=lambda r: -r.target_kbps), sorted(analysis.rungs, key=lambda r: -r.kbps), strict=False):
        out.append(RungPrediction("per-title", m.id, r.kbps, m.kbps, r.predicted_quality, m.quality, at(m)))
    return out


def prediction_summary(preds: Sequence[RungPrediction]) -> dict[str, Any]:
    """Mean/max absolute error of the predicted quality and bitrate, over the given rungs."""
    if not preds:
        return {"rungs": 0}
    q = [abs(p.quality_error) for p in preds]
    k = [abs(p.kbps_error_pct) for p in preds]
    c = [abs(p.measured_quality - p.quality_at_measured_kbps) for p in preds]
    bias = sum(p.quality_error for p in preds) / len(preds)
    kbias = sum(p.kbps_error_pct for p in preds) / len(preds)
    return {"rungs": len(preds), "quality_mae": round(sum(q) / len(q), 3), "quality_max_abs": round(max(q), 3),
            "quality_bias": round(bias, 3), "kbps_mae_pct": round(sum(k) / len(k), 2),
            "kbps_max_abs_pct": round(max(k), 2), "kbps_bias_pct": round(kbias, 2),
            "curve_mae": round(sum(c) / len(c), 3)}  # fmt: skip


@dataclass(frozen=True)
class Report:
    analysis: Analysis
    comparison: Comparison
    cpu_s: dict[str, float]  # analysis, fixed_encode, per_title_encode, measure
    wall_s: dict[str, float]
    outputs: dict[str, str | None]  # where the two ladders were published (None once removed)
    predictions: tuple[RungPrediction, ...] = ()

    def prediction_error(self) -> dict[str, Any]:
        return {
            "all": prediction_summary(self.predictions),
            "per_title": prediction_summary([p for p in self.predictions if p.ladder == "per-title"]),
            "fixed": prediction_summary([p for p in self.predictions if p.ladder == "fixed"]),
        }

    def verdict(self) -> str:
        """The comparison's verdict, plus what ``encode --per-title`` does with this title."""
        d = self.analysis.decision
        used = ("encode --per-title uses the per-title ladder" if d.per_title
                else "encode --per-title keeps the profile's ladder (" + "; ".join(d.reasons) + ")")  # fmt: skip
        return f"{self.comparison.verdict()}; {used}"

    @property
    def analysis_vs_encode(self) -> float | None:
        """Analysis CPU time as a multiple of one full fixed-ladder encode of the same title."""
        enc = self.cpu_s.get("fixed_encode")
        return self.cpu_s["analysis"] / enc if enc else None

    def to_dict(self) -> dict[str, Any]:
        ratio = self.analysis_vs_encode
        return {
            "input": self.analysis.input,
            "profile": self.analysis.base_profile,
            "codec": self.analysis.codec,
            "preset": self.analysis.preset,
            "metric": self.analysis.metric,
            "metric_label": METRIC_LABELS.get(self.analysis.metric, self.analysis.metric),
            **self.comparison.to_dict(),
            "cpu_s": {k: round(v, 2) for k, v in self.cpu_s.items()},
            "wall_s": {k: round(v, 2) for k, v in self.wall_s.items()},
            "analysis_cpu_vs_fixed_encode": None if ratio is None else round(ratio, 3),
            "decision": self.analysis.decision.to_dict(),
            "used_ladder": "per-title" if self.analysis.decision.per_title else "profile",
            "prediction": [p.to_dict() for p in self.predictions],
            "prediction_error": self.prediction_error(),
            "outputs": self.outputs,
            "analysis": self.analysis.to_dict(),
        }


# --------------------------------------------------------------------------------------------------
# Measuring an encoded ladder
# --------------------------------------------------------------------------------------------------


def reference_filters(source: SourceMedia, plan: LadderPlan, rung: PlannedRung) -> list[str]:
    """Filters that turn the source into the frames the encoder saw for ``rung`` (before scaling).

    All of the encoder's own steps, always: its ``fps`` filter puts every source on a constant frame
    grid, and a source that declares a constant rate can still have holes or jitter in its timestamps
    (a camera clip whose first frames do not decode, so frame 1 comes three frame-times after frame 0).
    The encoder then repeats or drops frames to fill the grid; a reference that skipped the step would
    pair each rendition frame with the wrong source frame from the first hole on.
    """
    assert source.video is not None
    steps = list(encode.source_filters(plan))
    if rung.fps_divisor > 1:
        steps.append(("fps", {"fps": str(rung.fps)}))
    return [encode.filter_string(step) for step in steps]


def join_rendition(rendition_dir: str, dest: str) -> str:
    """init.mp4 + every segment in order: one fragmented MP4 an ffmpeg can read from the start."""
    names = sorted(n for n in os.listdir(rendition_dir) if n.startswith("seg_") and n.endswith(".m4s"))
    with open(dest, "wb") as out:
        for name in [encode.INIT_NAME, *names]:
            with open(os.path.join(rendition_dir, name), "rb") as fh:
                shutil.copyfileobj(fh, out)
    return dest


def measure_job(
    result: JobResult,
    output_dir: str,
    engine: metrics.MetricEngine,
    measure_size: tuple[int, int],
    *,
    every_nth: int,
    scratch: str,
    on_event: EventCallback | None = None,
) -> tuple[MeasuredRung, ...]:
    """Score every video rendition of a published job against its source."""
    assert result.plan is not None and result.title is not None and result.source is not None
    emit = on_event or (lambda message: None)
    rungs = {r.id: r for r in result.plan.video}
    out: list[MeasuredRung] = []
    for rendition in result.title.video:
        rung = rungs[rendition.id]
        joined = join_rendition(os.path.join(output_dir, rendition.id), os.path.join(scratch, f"{rendition.id}.mp4"))
        emit(f"scoring {rendition.id}")
        try:
            score = metrics.measure(
                engine, result.source.path, joined, width=measure_size[0], height=measure_size[1],
                every_nth=every_nth, reference_filters=reference_filters(result.source, result.plan, rung),
                reference_stream=result.source.video.index if result.source.video else None,
            )  # fmt: skip
        except metrics.MetricError as exc:
            raise EncodeError(f"{output_dir}/{rendition.id}: scoring failed: {exc}") from None
        finally:
            os.remove(joined)
        out.append(
            MeasuredRung(
                id=rendition.id,
                width=rendition.width or rung.width,
                height=rendition.height or rung.height,
                target_kbps=rung.bitrate_kbps,
                kbps=rendition.average_bps / 1000,
                peak_kbps=rendition.peak_bps / 1000,
                quality=score.mean,
                frames=score.frames,
            )
        )
    return tuple(out)


def compare_ladders(
    fixed: Sequence[MeasuredRung], per_title: Sequence[MeasuredRung], metric: str
) -> Comparison:
    """BD-rate of the per-title ladder against the fixed one (PCHIP), with the overlap."""
    a, a_out = monotone([(r.kbps, r.quality) for r in fixed])
    t, t_out = monotone([(r.kbps, r.quality) for r in per_title])
    left_out = tuple(
        [f"fixed {r.id}" for r in fixed if (r.kbps, r.quality) in a_out]
        + [f"per-title {r.id}" for r in per_title if (r.kbps, r.quality) in t_out]
    )
    bd = None
    problem = None
    if len(a) < 2 or len(t) < 2:
        problem = "each ladder needs at least two rungs of different quality"
    else:
        try:
            bd = bdrate.bd_rate(
                [k for k, _ in a], [q for _, q in a], [k for k, _ in t], [q for _, q in t], strict=False
            )
        except bdrate.BdRateError as exc:
            problem = str(exc)
    return Comparison(metric, tuple(fixed), tuple(per_title), bd, problem, left_out)


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def _encode(input_path: str, profile: Profile, output: str, allow_references: bool) -> JobResult:
    # Video only, no validation: these encodes are evidence, not deliverables.
    job = Job(input=input_path, output=output, profile=replace(profile, audio=()), validate=False,
              allow_references=allow_references)  # fmt: skip
    return run_job(job)


def evaluate(
    analysis: Analysis,
    profile: Profile,
    input_path: str,
    *,
    per_title_result: JobResult | None = None,
    per_title_output: str | None = None,
    fixed_result: JobResult | None = None,
    fixed_output: str | None = None,
    work_dir: str | None = None,
    allow_references: bool = False,
    on_event: EventCallback | None = None,
) -> Report:
    """Encode the fixed ladder of ``profile`` (unless ``fixed_result`` already holds it, published at
    ``fixed_output``) and the per-title ladder (unless ``per_title_result`` already holds it, published
    at ``per_title_output``), measure both and compare them.

    ``work_dir`` keeps the encodes (``WORK/fixed``, ``WORK/per-title``); by default they go to a
    temporary directory that is removed.
    """
    emit = on_event or (lambda message: None)
    engine = metric_engine(analysis.metric)
    if engine.metric != analysis.metric:  # pragma: no cover - find_metric_engine returns what was asked
        raise EncodeError(f"cannot measure with {analysis.metric}")
    keep = work_dir is not None
    base = os.path.abspath(work_dir) if work_dir is not None else tempfile.mkdtemp(prefix="abrpipe-compare-")
    os.makedirs(base, exist_ok=True)
    cpu: dict[str, float] = {"analysis": analysis.cost.cpu_s}
    wall: dict[str, float] = {"analysis": analysis.cost.wall_s}
    outputs: dict[str, str | None] = {}
    try:
        if fixed_result is None:
            fixed_out = os.path.join(base, "fixed")
            emit(f"encoding the fixed ladder ({profile.name}) into {fixed_out}")
            c0, w0 = children_cpu_s(), time.monotonic()
            fixed_result = _encode(input_path, profile, fixed_out, allow_references)
            cpu["fixed_encode"], wall["fixed_encode"] = children_cpu_s() - c0, time.monotonic() - w0
        else:
            assert fixed_output is not None
            fixed_out = fixed_output
        if per_title_result is None:
            per_title_output = os.path.join(base, "per-title")
            emit(f"encoding the per-title ladder into {per_title_output}")
            c0, w0 = children_cpu_s(), time.monotonic()
            per_title_result = _encode(input_path, analysis.profile, per_title_output, allow_references)
            cpu["per_title_encode"], wall["per_title_encode"] = children_cpu_s() - c0, time.monotonic() - w0
        assert per_title_output is not None
        emit(f"scoring both ladders with {METRIC_LABELS.get(engine.metric, engine.metric)}")
        c0, w0 = children_cpu_s(), time.monotonic()
        scratch = tempfile.mkdtemp(prefix="abrpipe-score-", dir=base)
        try:
            fixed = measure_job(fixed_result, fixed_out, engine, analysis.measure_size,
                                every_nth=SCORE_EVERY_NTH, scratch=scratch, on_event=emit)  # fmt: skip
            per_title = measure_job(per_title_result, per_title_output, engine, analysis.measure_size,
                                    every_nth=SCORE_EVERY_NTH, scratch=scratch, on_event=emit)  # fmt: skip
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        cpu["measure"], wall["measure"] = children_cpu_s() - c0, time.monotonic() - w0
        outputs = {"fixed": fixed_out, "per_title": per_title_output}
        for key, path in list(outputs.items()):
            if not keep and path is not None and path.startswith(base + os.sep):
                outputs[key] = None
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    preds = tuple(predictions(analysis, fixed, per_title))
    return Report(analysis, compare_ladders(fixed, per_title, engine.metric), cpu, wall, outputs, preds)


def compare(
    input_path: str,
    profile: Profile,
    options: AnalysisOptions | None = None,
    *,
    work_dir: str | None = None,
    allow_references: bool = False,
    on_event: EventCallback | None = None,
) -> Report:
    """Analyse ``input_path`` with ``profile``, then encode and measure both ladders (see :func:`evaluate`)."""
    source = probe(input_path, allow_references=allow_references)
    analysis_dir = None
    if work_dir is not None:
        analysis_dir = os.path.join(os.path.abspath(work_dir), "analysis")
        os.makedirs(analysis_dir, exist_ok=True)
    result = analyse(source, profile, options, work_dir=analysis_dir, on_event=on_event)
    return evaluate(result, profile, input_path, work_dir=work_dir, allow_references=allow_references, on_event=on_event)
