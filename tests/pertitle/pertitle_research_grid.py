"""Trial grids measured in /work/shared/reference/per-title-research.md, section 4.1.

libx264 veryfast, CRF {18, 24, 30, 36, 42}, lanczos downscale, bicubic upscale to 1280x720 for the metric.
Each entry: height -> list of (kbps, VMAF, PSNR-Y dB), CRF 18 first.
"""

from __future__ import annotations

from abrpipe.pertitle.hull import TrialPoint

CRFS = (18, 24, 30, 36, 42)
WIDTHS = {720: 1280, 540: 960, 360: 640, 234: 416}

LOW = {
    720: [(4263, 97.9, 47.5), (2430, 95.1, 42.1), (1080, 89.2, 37.8), (690, 77.8, 35.1), (610, 59.7, 32.9)],
    540: [(2172, 91.4, 37.3), (977, 87.6, 36.3), (443, 80.8, 35.1), (286, 68.2, 33.7), (261, 49.3, 31.9)],
    360: [(779, 84.5, 35.2), (347, 79.5, 34.6), (186, 71.5, 33.8), (153, 57.7, 32.4), (148, 38.1, 30.7)],
    234: [(352, 70.6, 33.0), (169, 64.6, 32.6), (107, 54.6, 32.0), (92, 40.9, 30.9), (87, 24.0, 29.4)],
}

HIGH = {
    720: [(33034, 93.1, 37.7), (4807, 84.5, 34.4), (1543, 69.3, 31.4), (633, 44.1, 28.9), (705, 11.9, 27.4)],
    540: [(8915, 81.7, 31.8), (1847, 73.0, 31.0), (552, 57.2, 29.8), (296, 33.1, 28.6), (332, 6.2, 27.3)],
    360: [(2017, 69.2, 30.2), (618, 59.1, 29.8), (226, 42.0, 29.0), (135, 19.2, 28.1), (134, 0.8, 26.9)],
    234: [(651, 53.8, 29.4), (230, 41.8, 29.0), (99, 23.9, 28.4), (59, 4.8, 27.6), (53, 0.0, 26.4)],
}


def points(grid: dict, metric: str = "vmaf") -> list[TrialPoint]:
    idx = {"vmaf": 1, "psnr": 2}[metric]
    return [
        TrialPoint(WIDTHS[h], h, crf, row[0], row[idx])
        for h, rows in grid.items()
        for crf, row in zip(CRFS, rows, strict=True)
    ]
