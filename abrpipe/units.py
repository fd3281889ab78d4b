"""Parse human units ("800k", "2.5M", "6s", "1920x1080") once, at the boundary."""

from __future__ import annotations

import re
from fractions import Fraction

_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM])(?:bps|b/s)?\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*[xX:]\s*(\d+)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


def parse_bitrate_kbps(value: object) -> int:
    """'800k' -> 800, '2.5M' -> 2500. Raises ValueError for anything else (bare numbers are ambiguous)."""
    if isinstance(value, str):
        m = _BITRATE.match(value)
        if m:
            number = float(m.group(1)) * (1000 if m.group(2) in "mM" else 1)
            if number >= 1:
                return round(number)
    raise ValueError("expected a bitrate like 800k or 2.5M")


def format_kbps(kbps: float) -> str:
    return f"{kbps / 1000:g}M" if kbps >= 1000 and kbps % 100 == 0 else f"{round(kbps)}k"


def parse_size(value: object) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080)."""
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
            return int(m.group(1)), int(m.group(2))
    raise ValueError("expected a size like 1920x1080")


def parse_duration_s(value: object) -> float:
    """2, 2.0, '2s', '500ms' -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 2 or '2s'")
    if isinstance(value, int | float) and value > 0:
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and float(m.group(1)) > 0:
            return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    raise ValueError("expected a positive duration like 2 or '2s'")


def parse_rate(value: str) -> Fraction | None:
    """ffprobe's '30000/1001' or '25' -> Fraction; '0/0' -> None."""
    try:
        rate = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def format_rate(rate: Fraction) -> str:
    """DASH frameRate form: '30' or '30000/1001'."""
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"
