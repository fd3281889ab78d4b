"""validate: read an HLS/DASH output back and check it against its own media files.

    report = validate_output("out/", dash_schema="/path/to/dash-schema")
    report.errors, report.warnings, report.ok(strict=True), report.summary()

Works on any HLS (master.m3u8 or any *.m3u8) and DASH (*.mpd) output, not only abrpipe's: every
fact comes from the manifests (m3u8, mpegdash, lxml for the XSD) and from the segments' own boxes
(abrpipe.mp4). Each finding names a rule from RULES; docs/VALIDATION.md explains every rule.
"""

from __future__ import annotations

import os

import m3u8

from abrpipe.errors import InputError
from abrpipe.validate.dash_checks import DashChecker, check_schema_dir
from abrpipe.validate.hls_checks import HlsChecker
from abrpipe.validate.media import Context, Rendition
from abrpipe.validate.protection import check_protection
from abrpipe.validate.report import RULES, Finding, Report, Rule, Severity
from abrpipe.validate.thumb_checks import ThumbChecker, check_thumbnails

MASTER_NAME = "master.m3u8"
AV_DURATION_TOLERANCE_S = 0.25

__all__ = [
    "RULES",
    "Finding",
    "Report",
    "Rule",
    "Severity",
    "check_schema_dir",
    "find_manifests",
    "inspect_output",
    "validate_output",
]


def find_manifests(path: str) -> tuple[str, list[str], list[str]]:
    """(root directory, HLS entry playlists, MPDs) for a directory or a manifest path.

    In a directory, master.m3u8 is the HLS entry point when present; otherwise every top-level
    multivariant playlist is, or failing that every top-level playlist (a lone media playlist).
    """
    path = os.path.abspath(path)
    if os.path.isfile(path):
        root = os.path.dirname(path)
        lower = path.lower()
        if lower.endswith(".mpd"):
            return root, [], [path]
        return root, [path], []
    if not os.path.isdir(path):
        raise InputError(f"{path}: no such file or directory")
    names = sorted(os.listdir(path))
    mpds = [
        os.path.join(path, n)
        for n in names
        if n.lower().endswith(".mpd") and os.path.isfile(os.path.join(path, n))
    ]
    playlists = [
        os.path.join(path, n)
        for n in names
        if n.lower().endswith(".m3u8") and os.path.isfile(os.path.join(path, n))
    ]
    if os.path.join(path, MASTER_NAME) in playlists:
        # master.m3u8 first, then any other multivariant playlist beside it (e.g. master-ts.m3u8).
        others = [p for p in playlists if p != os.path.join(path, MASTER_NAME) and _is_multivariant(p)]
        return path, [os.path.join(path, MASTER_NAME), *others], mpds
    masters = [p for p in playlists if _is_multivariant(p)]
    return path, masters or playlists, mpds


def _is_multivariant(path: str) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            text = fh.read(1 << 20)
    except OSError:
        return False
    return "#EXT-X-STREAM-INF" in text or "#EXT-X-I-FRAME-STREAM-INF" in text


def validate_output(
    path: str, *, dash_schema: str | None = None, strict: bool = False, allow_clear: bool = False
) -> Report:
    """Validate an output directory (or one master playlist / MPD) and return the report.

    dash_schema: a directory holding DASH-MPD.xsd (and its imports); without it the XSD rule is
    skipped with an info finding. strict: the report's ok() also fails on warnings. allow_clear:
    renditions in the clear next to encrypted ones are not an error (PROT-HALF).
    """
    return inspect_output(path, dash_schema=dash_schema, strict=strict, allow_clear=allow_clear)[0]


def inspect_output(
    path: str, *, dash_schema: str | None = None, strict: bool = False, allow_clear: bool = False
) -> tuple[Report, Context]:
    """validate_output, plus the context it read: every rendition with its segments' boxes (what
    `abrpipe report` draws, so that its figures are the validator's own)."""
    if dash_schema:
        check_schema_dir(dash_schema)
    root, playlists, mpds = find_manifests(path)
    report = Report(path=os.path.abspath(path), strict=strict)
    ctx = Context(root, report)
    if not playlists and not mpds:
        report.add("NO-MANIFEST", f"{path}: no *.m3u8 playlist and no *.mpd manifest")
        return report.finish(), ctx
    hls = HlsChecker(ctx)
    for playlist in playlists:
        hls.check(playlist)
    dash = DashChecker(ctx, dash_schema)
    for mpd in mpds:
        dash.check(mpd)
    _check_alignment(ctx)
    _check_av_durations(ctx)
    check_thumbnails(ctx, ThumbChecker(ctx), [p for playlist in playlists for p in _image_playlists(playlist)])
    check_protection(root, playlists, mpds, report, allow_clear=allow_clear)
    return report.finish(), ctx


def _image_playlists(path: str) -> list[str]:
    """The image media playlists (EXT-X-IMAGE-STREAM-INF) a multivariant playlist names."""
    try:
        pl = m3u8.load(path)
    except Exception:  # noqa: BLE001 - a playlist that does not parse is reported by the HLS checks
        return []
    base = os.path.dirname(path)
    return [os.path.normpath(os.path.join(base, p.uri)) for p in pl.image_playlists if p.uri and "://" not in p.uri]


def _check_alignment(ctx: Context) -> None:
    """Segment boundaries and keyframes at the same times in every video rendition of a set."""
    for label, renditions in ctx.align_groups.values():
        _align(ctx, label, renditions, "ALIGN-SEGMENTS", "segment boundaries", lambda r: r.segment_starts_s())
        _align(ctx, label, renditions, "ALIGN-KEYFRAMES", "keyframes", lambda r: r.keyframes_s())


def _align(ctx: Context, label: str, renditions: list[Rendition], rule: str, what: str, times_of) -> None:
    timed = [(r, t) for r in renditions if (t := times_of(r)) is not None]
    if len(timed) < 2:
        return
    # The reference is the most common pattern, so that one odd rendition is the one named.
    patterns: dict[tuple, list[Rendition]] = {}
    for r, times in timed:
        patterns.setdefault(tuple(round(t, 2) for t in times), []).append(r)
    reference_times = max(patterns.items(), key=lambda kv: len(kv[1]))[0]
    reference = next(r for r, t in timed if tuple(round(x, 2) for x in t) == reference_times)
    ref_times = times_of(reference)
    for r, times in timed:
        if r is reference:
            continue
        tolerance = max(r.sample_s, reference.sample_s) / 2 or 0.001
        problem = _first_difference(ref_times, times, tolerance)
        if problem:
            ctx.report.add(
                rule, f"{label}: {what} differ from {reference.name}'s: {problem}", rendition=r.name
            )


def _first_difference(reference: list[float], other: list[float], tolerance: float) -> str | None:
    if len(reference) != len(other):
        extra = [t for t in other if not any(abs(t - x) <= tolerance for x in reference)]
        lacking = [t for t in reference if not any(abs(t - x) <= tolerance for x in other)]
        detail = []
        if extra:
            detail.append(f"extra at {_times(extra)}")
        if lacking:
            detail.append(f"none at {_times(lacking)}")
        return f"{len(other)} vs {len(reference)}" + (f" ({'; '.join(detail)})" if detail else "")
    for a, b in zip(reference, other, strict=True):
        if abs(a - b) > tolerance:
            return f"{b:.3f} s where the reference has {a:.3f} s"
    return None


def _times(values: list[float]) -> str:
    shown = ", ".join(f"{v:.3f}" for v in values[:5])
    return shown + (f" ... ({len(values)} in all)" if len(values) > 5 else "") + " s"


def _check_av_durations(ctx: Context) -> None:
    """Apple 8.3: audio and video that play together cover the same duration."""
    for video, audio in ctx.av_pairs.values():
        if not (video.analysed and audio.analysed):
            continue
        if not all(s.readable for s in video.segments + audio.segments):
            continue
        v, a = video.total_s, audio.total_s
        if abs(v - a) > AV_DURATION_TOLERANCE_S:
            ctx.report.add(
                "AV-DURATION",
                f"video {video.name} lasts {v:.3f} s but audio {audio.name} {a:.3f} s ({abs(v - a):.3f} s apart)",
                rendition=video.name,
            )
