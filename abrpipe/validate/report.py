"""The rule registry, findings and the report they make up.

Every check reports through a rule id listed in RULES, whose severity is fixed here (and documented
in docs/VALIDATION.md): a rule never changes severity from one finding to the next, so CI can
filter on ids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    summary: str  # what the rule checks, one line


_RULES = [
    # What was given
    Rule("NO-MANIFEST", "error", "the path holds no HLS playlist (*.m3u8) and no DASH MPD (*.mpd)"),
    # Files
    Rule("FILE-MISSING", "error", "a file referenced by a manifest does not exist"),
    Rule("FILE-EMPTY", "error", "a file referenced by a manifest is empty"),
    Rule("FILE-OUTSIDE", "warning", "a reference resolves outside the output directory"),
    Rule("REMOTE-URI", "info", "an absolute URL was referenced and not checked"),
    # HLS syntax
    Rule("HLS-PARSE", "error", "a playlist cannot be parsed (no #EXTM3U, bad tag value, no segments)"),
    Rule("HLS-REQUIRED-TAG", "error", "a media playlist lacks EXT-X-TARGETDURATION"),
    Rule("HLS-ATTRIBUTE", "error", "a required attribute (BANDWIDTH, URI, TYPE, GROUP-ID, NAME) is missing"),
    Rule("HLS-GROUP", "error", "a variant names an AUDIO/SUBTITLES group that no EXT-X-MEDIA defines"),
    Rule("HLS-MAP", "error", "fMP4 segments without an EXT-X-MAP initialization section"),
    Rule("HLS-ENDLIST", "warning", "a media playlist has no EXT-X-ENDLIST (players treat it as live)"),
    Rule(
        "HLS-TARGETDURATION",
        "error",
        "a segment, rounded to the nearest second, is longer than EXT-X-TARGETDURATION",
    ),
    Rule("HLS-EXTINF-MISMATCH", "error", "an EXTINF duration differs from the segment's real duration"),
    # DASH syntax and timeline
    Rule("DASH-PARSE", "error", "the MPD cannot be parsed"),
    Rule("DASH-XSD", "error", "the MPD does not validate against the MPEG-DASH schema"),
    Rule("DASH-XSD-SKIPPED", "info", "no schema directory given: the XSD check did not run"),
    Rule(
        "DASH-ATTRIBUTE",
        "error",
        "a Representation lacks @id, @bandwidth or a segment addressing it can be read by",
    ),
    Rule(
        "DASH-ADDRESSING",
        "info",
        "segment addressing not checked segment by segment (SegmentBase, remote BaseURL)",
    ),
    Rule("DASH-TIMELINE-GAP", "error", "the SegmentTimeline has a gap between two S elements"),
    Rule("DASH-TIMELINE-OVERLAP", "error", "two S elements of the SegmentTimeline overlap"),
    Rule(
        "DASH-TIMELINE-MISMATCH",
        "error",
        "a timeline entry's time or duration differs from the segment's boxes",
    ),
    Rule("DASH-TIMELINE-OFFSET", "warning", "the whole timeline is shifted from the media's own timestamps"),
    Rule("DASH-PERIOD-DURATION", "warning", "a Representation ends well before or after its Period"),
    Rule("DASH-MAX-SEGMENT-DURATION", "warning", "a segment is longer than MPD@maxSegmentDuration"),
    Rule(
        "DASH-BANDWIDTH", "error", "@bandwidth is too low for the segments with MPD@minBufferTime of buffer"
    ),
    # Media segments
    Rule("INIT-INVALID", "error", "an initialization segment is not a readable fMP4 init (ftyp+moov+mvex)"),
    Rule("SEG-TRUNCATED", "error", "a media segment is cut short (a box runs past the end of the file)"),
    Rule("SEG-INVALID", "error", "a media segment is not a readable fMP4 fragment of the expected track"),
    Rule(
        "SEG-FORMAT",
        "info",
        "segments are neither fMP4 nor MPEG-TS: only files, sizes and durations were checked",
    ),
    Rule("SEG-KEYFRAME", "error", "a video segment does not start with a sync sample"),
    Rule("SEG-IDR", "error", "a segment's first sample is flagged sync but its picture is not IDR/IRAP"),
    Rule("SEG-CONTINUITY", "error", "a segment does not start where the previous one ended (gap or overlap)"),
    # MPEG-TS segments (HLS)
    Rule("TS-PSI", "error", "an MPEG-TS segment does not start with a PAT and a PMT"),
    Rule("TS-IDR", "error", "an MPEG-TS segment's first video picture is not an IDR"),
    Rule("TS-CONTINUITY", "error", "an MPEG-TS segment's timestamps do not continue from the previous segment (gap, overlap, reset)"),
    Rule("TS-CC", "error", "an MPEG-TS continuity counter skips within a segment (lost packets)"),
    # Thumbnails (trick play)
    Rule("THUMB-PARSE", "error", "a WebVTT thumbnails track, HLS image playlist or DASH image Representation cannot be read"),
    Rule("THUMB-SHEET", "error", "a sprite sheet is not a readable JPEG or PNG image"),
    Rule("THUMB-TILE", "error", "a thumbnail tile lies outside its sprite sheet"),
    Rule("THUMB-COVERAGE", "warning", "the thumbnails do not cover the title from start to end without gaps"),
    # Subtitles (WebVTT)
    Rule("VTT-PARSE", "error", "a WebVTT subtitle file does not parse (header, cue timing, a cue ending before it starts)"),
    Rule("VTT-TIMESTAMP-MAP", "error", "an HLS WebVTT segment has no X-TIMESTAMP-MAP tying its cues to the media timeline"),
    Rule("VTT-CUE-OUTSIDE", "error", "a WebVTT segment holds a cue that lies outside the segment's time range"),
    Rule("VTT-COVERAGE-GAP", "error", "a cue that runs past its segment's end is not repeated in the next segment"),
    # Content protection (ISO/IEC 23001-7)
    Rule("PROT-TENC", "error", "a protected init has no readable tenc, or an unknown scheme in schm"),
    Rule("PROT-IV-PATTERN", "error", "IV size, constant IV or pattern in tenc invalid for the scheme (cenc, cbcs)"),
    Rule("PROT-SENC", "error", "a fragment of a protected rendition lacks senc (or saiz/saio), or counts differ from trun"),
    Rule("PROT-SCHEME", "error", "the scheme a manifest declares differs from the init's schm"),
    Rule("PROT-KID", "error", "the KID a manifest declares (cenc:default_KID) differs from the init's tenc"),
    Rule("PROT-FRAGMENT-KID", "error", "a fragment's KID (its seig sample group, else the tenc's) is not one the manifests declare for it"),
    Rule("PROT-SIGNALLING", "error", "encrypted media without protection signalling in a manifest, or the reverse"),
    Rule("PROT-HALF", "error", "a rendition is in the clear next to encrypted ones (unless allowed)"),
    # Alignment and cross-stream checks
    Rule("ALIGN-SEGMENTS", "error", "video renditions of one set have different segment boundaries"),
    Rule("ALIGN-KEYFRAMES", "error", "video renditions of one set have keyframes at different times"),
    Rule(
        "CODECS-MISMATCH",
        "error",
        "CODECS / @codecs differs from the codec configuration in the init segments",
    ),
    Rule("RESOLUTION-MISMATCH", "error", "RESOLUTION / @width x @height differs from the video track"),
    Rule("FRAMERATE-MISMATCH", "error", "FRAME-RATE / @frameRate differs from the measured frame rate"),
    Rule("CHANNELS-MISMATCH", "warning", "CHANNELS / AudioChannelConfiguration differs from the audio track"),
    Rule("SAMPLERATE-MISMATCH", "warning", "@audioSamplingRate differs from the audio track"),
    Rule("AV-DURATION", "warning", "audio and video that play together differ in duration"),
    # Bit rates
    Rule(
        "BW-PEAK",
        "error",
        "BANDWIDTH is more than 10% below the measured peak segment bit rate (Apple 1.27, 9.13)",
    ),
    Rule(
        "BW-PEAK-HIGH", "warning", "BANDWIDTH is more than 10% above the measured peak bit rate (Apple 1.27)"
    ),
    Rule(
        "BW-AVERAGE",
        "error",
        "AVERAGE-BANDWIDTH is not within 10% of the measured average bit rate (Apple 1.26)",
    ),
    Rule("BW-PEAK-2X-AVG", "warning", "the measured peak bit rate is above twice the average (Apple 1.30)"),
    # I-frame playlists
    Rule(
        "IFRAME-TAG", "error", "a playlist referenced by EXT-X-I-FRAME-STREAM-INF lacks EXT-X-I-FRAMES-ONLY"
    ),
    Rule(
        "IFRAME-RANGE",
        "error",
        "an I-frame byte range does not cover a moof whose first sample is a sync sample",
    ),
    Rule(
        "IFRAME-DURATION",
        "error",
        "the I-frame playlist's durations do not add up to its rendition's duration",
    ),
    # Apple HLS Authoring Specification lint
    Rule(
        "APPLE-1.3-H264-PROFILE", "warning", "H.264 above High profile level 5.2, or not Baseline/Main/High"
    ),
    Rule("APPLE-1.10-SAMPLE-ENTRY", "warning", "avc3/hev1 sample entries: Apple wants avc1/hvc1"),
    Rule("APPLE-1.12-H264", "warning", "no H.264 variant for compatibility"),
    Rule("APPLE-1.13-IDR-INTERVAL", "warning", "keyframes more than 2 s apart"),
    Rule("APPLE-1.19-FRAME-RATE-MAX", "warning", "a video frame rate above 60 fps"),
    Rule("APPLE-1.33-ASPECT", "warning", "video variants do not share one aspect ratio"),
    Rule("APPLE-2.3-STEREO-AAC", "warning", "audio is offered but no stereo AAC rendition"),
    Rule("APPLE-6.1-IFRAME-PLAYLISTS", "warning", "no EXT-X-I-FRAME-STREAM-INF for trick play"),
    Rule("APPLE-7.5-TARGET-DURATION", "info", "EXT-X-TARGETDURATION is not the recommended 6 s"),
    Rule(
        "APPLE-7.7-SEG-OVER-TARGET",
        "warning",
        "a segment is more than 0.5 s longer than the nominal 6 s target",
    ),
    Rule(
        "APPLE-8.2-SAME-TARGETDURATION",
        "warning",
        "media playlists of one presentation differ in EXT-X-TARGETDURATION",
    ),
    Rule("APPLE-8.6-PLAYLIST-TYPE", "warning", "a VOD media playlist lacks EXT-X-PLAYLIST-TYPE:VOD"),
    Rule("APPLE-8.10-LANGUAGE", "warning", "a non-video EXT-X-MEDIA lacks LANGUAGE"),
    Rule("APPLE-9.1-CODECS", "warning", "an EXT-X-STREAM-INF lacks CODECS"),
    Rule("APPLE-9.2-RESOLUTION", "warning", "a video EXT-X-STREAM-INF lacks RESOLUTION"),
    Rule("APPLE-9.3-IFRAME-ATTRIBUTES", "warning", "an EXT-X-I-FRAME-STREAM-INF lacks CODECS or RESOLUTION"),
    Rule(
        "APPLE-9.11-INDEPENDENT-SEGMENTS",
        "warning",
        "EXT-X-INDEPENDENT-SEGMENTS in neither the multivariant nor every video playlist",
    ),
    Rule("APPLE-9.14-AVERAGE-BANDWIDTH", "warning", "an EXT-X-STREAM-INF lacks AVERAGE-BANDWIDTH"),
    Rule("APPLE-9.15-FRAME-RATE", "warning", "a video EXT-X-STREAM-INF lacks FRAME-RATE"),
]

RULES: dict[str, Rule] = {r.id: r for r in _RULES}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    file: str | None = None  # relative to the validated directory
    rendition: str | None = None
    segment: int | None = None  # 1-based position in its manifest

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Beyond this many findings of one rule for one rendition, the rest are counted in one last finding.
MAX_PER_RULE_AND_RENDITION = 10


@dataclass
class Report:
    """Everything one validation found, plus what it looked at."""

    path: str
    strict: bool = False
    findings: list[Finding] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    renditions: int = 0
    segments: int = 0
    _seen: set[tuple] = field(default_factory=set, repr=False)
    _per_key: Counter = field(default_factory=Counter, repr=False)
    _overflow: Counter = field(default_factory=Counter, repr=False)

    def add(
        self,
        rule: str,
        message: str,
        *,
        file: str | None = None,
        rendition: str | None = None,
        segment: int | None = None,
    ) -> None:
        severity = RULES[rule].severity  # KeyError: an undeclared rule is a bug
        key = (rule, message, file, rendition, segment)
        if key in self._seen:
            return
        self._seen.add(key)
        bucket = (rule, rendition or file)
        self._per_key[bucket] += 1
        if self._per_key[bucket] > MAX_PER_RULE_AND_RENDITION:
            self._overflow[bucket] += 1
            return
        self.findings.append(Finding(rule, severity, message, file, rendition, segment))

    def finish(self) -> Report:
        """Count what was left out and sort the findings, most severe first."""
        for (rule, where), extra in self._overflow.items():
            self.findings.append(
                Finding(rule, RULES[rule].severity, f"... and {extra} more like this", rendition=where)
            )
        self._overflow.clear()
        self.findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
        return self

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def infos(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "info"]

    def ok(self, strict: bool | None = None) -> bool:
        strict = self.strict if strict is None else strict
        return not self.errors and not (strict and self.warnings)

    def rules(self, severity: Severity | None = None) -> set[str]:
        """The ids of the rules that fired (of one severity, if given)."""
        return {f.rule for f in self.findings if severity is None or f.severity == severity}

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok(),
            "strict": self.strict,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "info": len(self.infos),
            "manifests": list(self.manifests),
            "renditions": self.renditions,
            "segments": self.segments,
            "findings": [f.to_dict() for f in self.findings],
        }
