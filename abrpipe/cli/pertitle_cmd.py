"""Per-title ladders on the command line: `abrpipe compare`, and the pieces behind
`abrpipe ladder INPUT --per-title` and `abrpipe encode INPUT --per-title`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from typing import Any

import click
from rich.table import Table

from abrpipe import registry
from abrpipe.cli.common import console_err, emit_json, json_option, quiet_option
from abrpipe.errors import DependencyError
from abrpipe.profile import Profile
from abrpipe.units import format_kbps

METRIC_CHOICES = ("vmaf", "xpsnr", "ssim", "psnr")
ANALYSIS_NAME = "pertitle.json"
PROFILE_NAME = "pertitle-profile.toml"
REPORT_NAME = "pertitle-report.json"
REPORT_PLOT_NAME = "pertitle-report.png"


def metric_option(f):
    return click.option(
        "--metric", type=click.Choice(METRIC_CHOICES), default=None,
        help="Quality metric of the per-title analysis (default: VMAF when an ffmpeg with libvmaf is "
        "available, e.g. from `pip install 'abrpipe[vmaf]'`, else PSNR-Y).",
    )(f)  # fmt: skip


def min_saving_option(f):
    return click.option(
        "--min-saving", "min_saving", type=click.FloatRange(min=0.0), default=None, metavar="PCT",
        help="With --per-title: use the per-title ladder only if the trials predict it saves at least PCT % "
        "bitrate at equal quality (BD-rate), on the whole sample and on every sampled window; otherwise keep "
        "the profile's ladder (default 3).",
    )(f)  # fmt: skip


def analysis_options(metric: str | None, min_saving: float | None):
    from abrpipe.pertitle.analysis import AnalysisOptions
    from abrpipe.pertitle.guard import GuardOptions

    guard = GuardOptions() if min_saving is None else GuardOptions(min_saving_pct=min_saving)
    return AnalysisOptions(metric=metric, guard_options=guard)


def require_extras(*, bd: bool = False, plot: bool = False) -> None:
    """Per-title needs the `pertitle` extra; say so in one line instead of an ImportError."""
    needed = ["numpy", "scipy"] + (["bjontegaard"] if bd else []) + (["matplotlib"] if plot else [])
    missing = []
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise DependencyError(
            f"per-title ladders need {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            hint="pip install 'abrpipe[pertitle]'",
        )


class _Messages:
    """Progress lines on stderr (never on stdout, which carries --json)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            console_err().print(f"per-title: {message}", highlight=False, markup=False, soft_wrap=True)


def _q(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" if metric == "ssim" else f"{value:.2f}"


def run_analysis(source_path: str, profile: Profile, *, metric: str | None, allow_references: bool, quiet: bool,
                 min_saving: float | None = None):  # fmt: skip
    """Probe and analyse one title (the analysis behind every --per-title)."""
    require_extras()
    from abrpipe.pertitle.analysis import analyse
    from abrpipe.probe import probe

    source = probe(source_path, allow_references=allow_references)
    return analyse(source, profile, analysis_options(metric, min_saving), on_event=_Messages(quiet))


def save(analysis, path: str) -> str:
    from abrpipe.pertitle.ladder import save_profile

    comment = (
        f"Per-title ladder for {os.path.basename(analysis.input)}, derived from profile {analysis.base_profile!r}\n"
        f"({analysis.metric} hull of {len(analysis.trials)} trial encodes at preset {analysis.preset}).\n"
        f"Encode with: abrpipe encode {os.path.basename(analysis.input)} --profile {os.path.basename(path)}"
    )
    save_profile(analysis.profile, path, comment=comment)
    return os.path.abspath(path)


def plot_analysis(analysis, path: str, *, per_title_measured=(), fixed_measured=None) -> str:
    require_extras(plot=True)
    from abrpipe.pertitle.plot import PlotUnavailableError, plot_ladder

    fixed = fixed_measured if fixed_measured is not None else analysis.fixed
    try:
        out = plot_ladder(
            path, analysis.points, rungs=analysis.rungs if not per_title_measured else (), fixed_ladder=fixed,
            per_title_ladder=per_title_measured, metric=analysis.metric,
            title=f"{os.path.basename(analysis.input)}: per-title vs {analysis.base_profile} ({analysis.metric})",
        )  # fmt: skip
    except PlotUnavailableError as exc:
        raise DependencyError(str(exc), hint="pip install 'abrpipe[pertitle]'") from None
    except ValueError as exc:
        raise click.UsageError(f"--plot {path}: {exc}") from None
    return str(out.resolve())


def analysis_table(analysis) -> Table:
    table = Table(title=f"per-title ladder for {analysis.input} ({analysis.metric}, from profile {analysis.base_profile})",
                  title_justify="left")  # fmt: skip
    for col in ("#", "size", "bitrate", "maxrate", f"predicted {analysis.metric}"):
        table.add_column(col, justify="left" if col == "size" else "right")
    for i, (spec, r) in enumerate(zip(analysis.profile.rungs, analysis.rungs, strict=True)):
        note = " (extrapolated)" if r.extrapolated else ""
        table.add_row(str(i), f"{r.width}x{r.height}", format_kbps(spec.bitrate_kbps), format_kbps(spec.maxrate_kbps),
                      _q(r.predicted_quality, analysis.metric) + note)  # fmt: skip
    return table


def print_analysis(analysis) -> None:
    err = console_err()
    err.print(analysis_table(analysis))
    fixed = ", ".join(f"{f.height}p@{format_kbps(f.kbps)} ({_q(f.predicted_quality, analysis.metric)})" for f in analysis.fixed)
    err.print(f"fixed ladder {analysis.base_profile}, predicted: {fixed}", highlight=False, markup=False, soft_wrap=True)
    if analysis.crossovers:
        cross = ", ".join(f"{c.below[1]}p->{c.above[1]}p at {c.kbps:.0f} kbps" for c in analysis.crossovers)
        err.print(f"resolution crossovers: {cross}", highlight=False, markup=False, soft_wrap=True)
    if analysis.predicted_bd and analysis.predicted_bd.get("percent") is not None:
        bd = analysis.predicted_bd
        err.print(f"predicted BD-rate vs the fixed ladder: {bd['percent']:+.1f}% (overlap {bd['overlap']:.2f}; "
                  "from the trial curves, `abrpipe compare` measures it)", highlight=False, markup=False, soft_wrap=True)  # fmt: skip
    windows = ", ".join(f"{w.start_s:g}s" for w in analysis.windows)
    c = analysis.cost
    err.print(f"analysis: {len(analysis.trials)} trials ({len(analysis.candidates)} sizes x {len(analysis.crfs)} CRFs) on "
              f"{len(analysis.windows)} window(s) at {windows}, every {analysis.every_nth}th frame scored; "
              f"{c.cpu_s:.1f} CPU-s ({c.encode_cpu_s:.1f} encoding, {c.metric_cpu_s:.1f} scoring), {c.wall_s:.1f} s"
              + _budget_text(c), highlight=False, markup=False, soft_wrap=True)  # fmt: skip
    for note in analysis.notes:
        err.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    print_decision(analysis)


def _budget_text(cost) -> str:
    if not (math.isfinite(cost.budget_cpu_s) and cost.fixed_encode_estimate_cpu_s > 0):
        return ""
    return (f"; budget {cost.budget_cpu_s:.1f} CPU-s ({cost.budget_cpu_s / cost.fixed_encode_estimate_cpu_s:g}x one "
            f"fixed-ladder encode, estimated from the trials at {cost.fixed_encode_estimate_cpu_s:.1f} CPU-s)")  # fmt: skip


def print_decision(analysis) -> None:
    """One line: which ladder `encode --per-title` uses, and why the profile's is kept."""
    style = "green" if analysis.decision.per_title else "bold yellow"
    console_err().print(f"decision: {analysis.decision.summary()}", style=style, highlight=False, markup=False,
                        soft_wrap=True)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# abrpipe ladder INPUT --per-title
# --------------------------------------------------------------------------------------------------


def ladder_per_title(input_path: str, profile_ref: str, *, metric: str | None, plot: str | None,
                     save_profile: str | None, as_json: bool, allow_references: bool,
                     min_saving: float | None = None) -> None:  # fmt: skip
    profile = registry.load(profile_ref)
    analysis = run_analysis(input_path, profile, metric=metric, allow_references=allow_references, quiet=False,
                            min_saving=min_saving)  # fmt: skip
    data: dict[str, Any] = analysis.to_dict()
    if save_profile:
        data["saved_profile"] = save(analysis, save_profile)
    if plot:
        data["plot"] = plot_analysis(analysis, plot)
    if as_json:
        emit_json(data)
        return
    print_analysis(analysis)
    if save_profile:
        console_err().print(f"profile written: {data['saved_profile']}", highlight=False, markup=False)
    if plot:
        console_err().print(f"plot written: {data['plot']}", highlight=False, markup=False)


# --------------------------------------------------------------------------------------------------
# abrpipe encode INPUT --per-title [--report]
# --------------------------------------------------------------------------------------------------


def analyse_for_encode(input_path: str, profile: Profile, *, preset: str | None, metric: str | None,
                       allow_references: bool, quiet: bool, min_saving: float | None = None):  # fmt: skip
    """The per-title ladder to encode: analysed with the preset the encode will use."""
    effective = replace(profile, preset=preset) if preset else profile
    analysis = run_analysis(input_path, effective, metric=metric, allow_references=allow_references, quiet=quiet,
                            min_saving=min_saving)  # fmt: skip
    if not quiet:
        print_analysis(analysis)
    elif not analysis.decision.per_title:  # keeping the profile's ladder is said even with --quiet
        console_err().print(f"per-title: {analysis.decision.summary()}", highlight=False, markup=False, soft_wrap=True)
    return analysis


def after_encode(analysis, base_profile: Profile, result, output: str, *, published_as: str, preset: str | None,
                 report: bool, allow_references: bool, quiet: bool) -> dict[str, Any]:  # fmt: skip
    """Write the analysis (and, with --report, the comparison with the fixed ladder) into `output`,
    the job's work area, which is then published as `published_as`; return what `encode --json` adds."""
    from abrpipe.pertitle.ladder import profile_toml

    out = os.path.abspath(output)
    extra: dict[str, Any] = {"per_title": analysis.to_dict()}
    with open(os.path.join(out, ANALYSIS_NAME), "w", encoding="utf-8") as fh:
        json.dump(extra["per_title"], fh, indent=2, default=str)
    used = analysis.decision.per_title
    comment = (f"Per-title ladder of this output ({analysis.metric} hull)." if used else
               f"The profile's own ladder, kept for this output: {analysis.decision.summary()}.")  # fmt: skip
    with open(os.path.join(out, PROFILE_NAME), "w", encoding="utf-8") as fh:
        fh.write(profile_toml(analysis.chosen_profile, comment=comment))
    if not report:
        return extra
    require_extras(bd=True)
    from abrpipe.pertitle.compare import evaluate

    effective = replace(base_profile, preset=preset) if preset else base_profile
    published = {"per_title_result": result, "per_title_output": out} if used else {"fixed_result": result, "fixed_output": out}
    rep = evaluate(analysis, effective, analysis.input, allow_references=allow_references, on_event=_Messages(quiet),
                   **published)  # fmt: skip
    data = rep.to_dict()
    data.pop("analysis")  # already in pertitle.json
    outputs = data.get("outputs") or {}
    for key in ("per_title", "fixed"):
        if outputs.get(key) == out:
            outputs[key] = os.path.abspath(published_as)  # where the measured ladder is published
    try:
        data["plot"] = plot_analysis(analysis, os.path.join(out, REPORT_PLOT_NAME),
                                     per_title_measured=rep.comparison.per_title, fixed_measured=rep.comparison.fixed)  # fmt: skip
    except DependencyError as exc:
        data["plot"] = None
        if not quiet:
            console_err().print(f"note: no plot ({exc})", highlight=False, markup=False)
    with open(os.path.join(out, REPORT_NAME), "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
    extra["per_title_report"] = data
    if not quiet:
        print_report(rep)
    return extra


# --------------------------------------------------------------------------------------------------
# abrpipe compare
# --------------------------------------------------------------------------------------------------


def comparison_table(title: str, rungs, metric: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("rendition", "size", "target", "real avg", "peak", metric):
        table.add_column(col, justify="left" if col in ("rendition", "size") else "right")
    for r in sorted(rungs, key=lambda r: -r.kbps):
        table.add_row(r.id, f"{r.width}x{r.height}", format_kbps(r.target_kbps), f"{r.kbps:.0f}k", f"{r.peak_kbps:.0f}k",
                      _q(r.quality, metric))  # fmt: skip
    return table


def prediction_table(rep) -> Table:
    metric = rep.comparison.metric
    table = Table(title="predicted by the trials vs measured after the encode", title_justify="left")
    for col in ("ladder", "rendition", "target", "measured", "bitrate error", f"predicted {metric}", f"measured {metric}", "error"):
        table.add_column(col, justify="left" if col in ("ladder", "rendition") else "right")
    for p in rep.predictions:
        table.add_row(p.ladder, p.id, f"{p.predicted_kbps:.0f}k", f"{p.measured_kbps:.0f}k", f"{p.kbps_error_pct:+.1f}%",
                      _q(p.predicted_quality, metric), _q(p.measured_quality, metric), f"{p.quality_error:+.2f}")  # fmt: skip
    return table


def print_report(rep) -> None:
    err = console_err()
    cmp = rep.comparison
    err.print(comparison_table(f"fixed ladder ({rep.analysis.base_profile})", cmp.fixed, cmp.metric))
    err.print(comparison_table("per-title ladder", cmp.per_title, cmp.metric))
    style = "green" if cmp.per_title_wins else "bold yellow"
    err.print(rep.verdict(), style=style, highlight=False, markup=False, soft_wrap=True)
    err.print(prediction_table(rep))
    pe = rep.prediction_error()["all"]
    if pe.get("rungs"):
        err.print(f"prediction error over {pe['rungs']} rungs: {cmp.label} mean |error| {pe['quality_mae']:.2f} "
                  f"(max {pe['quality_max_abs']:.2f}, bias {pe['quality_bias']:+.2f}); bitrate mean |error| "
                  f"{pe['kbps_mae_pct']:.1f}% (max {pe['kbps_max_abs_pct']:.1f}%, bias {pe['kbps_bias_pct']:+.1f}%); at the "
                  f"bitrate each encode really hit, the trial curves are off by {pe['curve_mae']:.2f} on average",
                  highlight=False, markup=False,
                  soft_wrap=True)  # fmt: skip
    for item in cmp.left_out:
        err.print(f"note: left out of the BD-rate (more bits than another rung, no better quality): {item}",
                  highlight=False, markup=False, soft_wrap=True)  # fmt: skip
    ratio = rep.analysis_vs_encode
    if ratio is not None:
        est = rep.analysis.cost.fixed_encode_estimate_cpu_s
        guess = f", estimated from the trials at {est:.1f} CPU-s" if math.isfinite(est) and est > 0 else ""
        err.print(f"analysis: {rep.cpu_s['analysis']:.1f} CPU-s = {ratio:.2f}x the fixed-ladder encode "
                  f"({rep.cpu_s['fixed_encode']:.1f} CPU-s{guess})", highlight=False, markup=False, soft_wrap=True)  # fmt: skip


@click.command("compare")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=str))
@click.option("--profile", "-p", "profile_ref", default="default", show_default=True,
              help="The fixed ladder to compare with (a single-codec profile), and the settings of the per-title one.")
@click.option("--preset", help="Override the profile's encoder preset (trials and both ladders use it).")
@click.option("--per-title", "per_title", is_flag=True,
              help="Compare with the per-title ladder built for INPUT (implied: the only comparison today).")
@metric_option
@min_saving_option
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the curves and both ladders to this .png or .svg.")
@click.option("--save-profile", type=click.Path(dir_okay=False), help="Also write the per-title ladder to this .toml profile.")
@click.option("--work", "work_dir", type=click.Path(file_okay=False),
              help="Keep the trial encodes and both encoded ladders in this directory (default: a temporary one, removed).")
@click.option("--allow-references", is_flag=True, help="Let ffmpeg open inputs that reference other files or URLs.")
@json_option
@quiet_option
def compare(input_path, profile_ref, preset, per_title, metric, min_saving, plot, save_profile, work_dir,
            allow_references, as_json, quiet):  # fmt: skip
    """Build INPUT's per-title ladder, encode it and the profile's fixed ladder, and report the BD-rate.

    Both ladders are encoded like `abrpipe encode` does (video only), every rendition is scored
    against INPUT at the ladder's top size, and the per-title ladder's BD-rate against the fixed one
    is reported with the overlap of their quality ranges (negative = per-title saves bits). The exit
    code is 0 whichever ladder wins: this is a report.
    """
    require_extras(bd=True, plot=bool(plot))
    from abrpipe.pertitle.compare import compare as run_compare

    profile = registry.load(profile_ref)
    if preset:
        profile = replace(profile, preset=preset)
    rep = run_compare(input_path, profile, analysis_options(metric, min_saving), work_dir=work_dir,
                      allow_references=allow_references, on_event=_Messages(quiet or as_json))  # fmt: skip
    data = rep.to_dict()
    if save_profile:
        data["saved_profile"] = save(rep.analysis, save_profile)
    if plot:
        data["plot"] = plot_analysis(rep.analysis, plot, per_title_measured=rep.comparison.per_title,
                                     fixed_measured=rep.comparison.fixed)  # fmt: skip
    if as_json:
        emit_json(data)
    if not quiet:
        if not as_json:
            print_analysis(rep.analysis)
        print_report(rep)
        for key, label in (("saved_profile", "profile written"), ("plot", "plot written")):
            if data.get(key):
                console_err().print(f"{label}: {data[key]}", highlight=False, markup=False)


COMMANDS = [compare]
