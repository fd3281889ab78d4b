"""What the benchmark scripts share: describing the machine and writing docs/BENCHMARKS.md."""

from __future__ import annotations

import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_section(text: str) -> None:
    """Replace the section of docs/BENCHMARKS.md that `text` starts with ("## Encode", ...); the
    other sections are left alone."""
    heading = text.splitlines()[0]
    path = ROOT / "docs" / "BENCHMARKS.md"
    path.parent.mkdir(exist_ok=True)
    current = path.read_text() if path.exists() else "# Benchmarks\n\nRatios against baselines measured in the same run.\n"
    start = current.find(heading)
    if start >= 0:
        end = current.find("\n## ", start + 1)
        current = current[:start] + text + (current[end + 1 :] if end >= 0 else "")
    else:
        current = current.rstrip("\n") + "\n\n" + text
    path.write_text(current.rstrip("\n") + "\n")
