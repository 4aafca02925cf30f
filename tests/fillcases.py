"""The fills' test pictures and quality measure, shared by tests/test_fills.py and benchmarks/fills.py (no pytest).

The photo is scikit-image's public-domain astronaut (tests/data/astronaut.png, see tests/data/README.md).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PHOTO = Path(__file__).resolve().parent / "data" / "astronaut.png"


def photo_960x540() -> np.ndarray:
    """The astronaut photo (512 x 512) enlarged to 960 px wide and cropped to 960 x 540, RGB."""
    rgb = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(cv2.resize(rgb, (960, 960), interpolation=cv2.INTER_CUBIC)[200:740])


def ellipse(shape, centre, width: int) -> np.ndarray:
    """An ellipse mask ``width`` px wide and two thirds as high."""
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, centre, (width // 2, width // 3), 0, 0, 360, 255, -1)
    return mask


def detail_ratio(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Fine detail (grey level minus its Gaussian blur, sigma 2) deep inside the hole over that in a ring around it:
    about 1 when the fill carries the surroundings' texture, near 0 for a blur."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 2.0))
    core = cv2.erode(mask, np.ones((21, 21), np.uint8)) > 0
    ring = (cv2.dilate(mask, np.ones((41, 41), np.uint8)) > 0) & ~(cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0)
    return float(detail[core].mean() / detail[ring].mean())


def stripes(h: int = 128, w: int = 160) -> np.ndarray:
    """Red stripes 4 px wide across, green ones 6 px high down: what lies under any hole is known."""
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.where((xs // 4) % 2 == 0, 200, 40)
    img[..., 1] = np.where((ys // 6) % 2 == 0, 180, 60)
    img[..., 2] = 100
    return img
