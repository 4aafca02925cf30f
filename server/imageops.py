"""Image operations every engine shares: mask grow/feather, compositing, resizing, canvas extension for outpaint."""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from .engines.base import Job


def default_grow(mask: np.ndarray) -> int:
    """Grow radius in px scaled to the selection: about 2% of its larger side, at least 2 px."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0
    side = max(int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return max(2, int(round(side * 0.02)))


def default_feather(mask: np.ndarray) -> int:
    """Feather radius in px scaled to the selection: about 3% of its larger side, at least 2 px."""
    return max(2, int(round(default_grow(mask) * 1.5)))


def grow_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a uint8 mask by ``radius`` px (a disc); soft values grow too."""
    if radius <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel)


def feather_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Soften a mask's edge inwards by ``radius`` px: the feathered mask never reaches outside the original one,
    and it stays 255 deep inside it."""
    if radius <= 0:
        return mask.copy()
    # Erode first so the blur spreads into, not beyond, the grown area.
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    core = cv2.erode(mask, kernel)
    blurred = cv2.GaussianBlur(core.astype(np.float32), (0, 0), sigmaX=radius / 2.0)
    soft = np.minimum(np.clip(np.rint(blurred), 0, 255).astype(np.uint8), mask)
    # Never lose a pixel the original (ungrown) selection fully covered.
    return np.maximum(soft, np.where(core == 255, 255, 0).astype(np.uint8))


def prepare_mask(job: Job) -> Tuple[np.ndarray, np.ndarray]:
    """The job's (hard area, soft blend mask): the mask grown by ``params.grow``, then feathered by ``params.feather``.

    The hard area is where pixels may change (mask > 0 after growing); the soft mask is the returned layer's alpha.
    A job without a mask changes the whole image.
    """
    h, w = job.height, job.width
    if job.mask is None:
        full = np.full((h, w), 255, np.uint8)
        return full, full
    grow = job.params["grow"] if job.params["grow"] >= 0 else default_grow(job.mask)
    feather = job.params["feather"] if job.params["feather"] >= 0 else default_feather(job.mask)
    grown = grow_mask(job.mask, grow)
    soft = np.maximum(feather_mask(grown, feather), job.mask)
    return grown, soft


def composite_layer(original: np.ndarray, generated: np.ndarray, soft_mask: np.ndarray) -> np.ndarray:
    """The result layer: generated RGB where the mask is non-zero, the original's RGB elsewhere; alpha = soft mask.

    Placed over the original it blends by the soft mask, and outside the mask it equals the original exactly.
    """
    out = np.empty(original.shape[:2] + (4,), np.uint8)
    inside = soft_mask > 0
    out[..., :3] = np.where(inside[..., None], generated[..., :3], original[..., :3])
    out[..., 3] = soft_mask
    return out


def flatten_over(layer: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``layer`` (RGBA) composited over ``base`` (RGBA) with the normal blend mode; pixels with alpha 0 stay exact."""
    a = layer[..., 3:4].astype(np.float32) / 255.0
    rgb = layer[..., :3].astype(np.float32) * a + base[..., :3].astype(np.float32) * (1.0 - a)
    out = base.copy()
    out[..., :3] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    out[..., 3] = np.maximum(base[..., 3], layer[..., 3])
    keep = layer[..., 3] == 0
    out[keep] = base[keep]
    return out


def resize(image: np.ndarray, width: int, height: int, interpolation: Optional[int] = None) -> np.ndarray:
    """Resize with area averaging when shrinking and Lanczos when enlarging (or the given OpenCV interpolation)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    if interpolation is None:
        shrinking = width * height < image.shape[0] * image.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    return cv2.resize(image, (width, height), interpolation=interpolation)


def processing_size(width: int, height: int, native_area: int, multiple: int = 8) -> Tuple[int, int]:
    """Scale (width, height) to about ``native_area`` pixels, keeping the aspect, in multiples of ``multiple``."""
    scale = (native_area / float(width * height)) ** 0.5
    pw = max(multiple, int(round(width * scale / multiple)) * multiple)
    ph = max(multiple, int(round(height * scale / multiple)) * multiple)
    return pw, ph


def extend_canvas(image: np.ndarray, extend: dict) -> Tuple[np.ndarray, np.ndarray]:
    """Outpaint set-up: the image on a canvas grown by ``extend`` (left/top/right/bottom px), new area transparent,
    and the mask of the new area (255)."""
    left, top, right, bottom = (extend[k] for k in ("left", "top", "right", "bottom"))
    h, w = image.shape[:2]
    canvas = np.zeros((h + top + bottom, w + left + right, 4), np.uint8)
    canvas[top:top + h, left:left + w] = image
    mask = np.full(canvas.shape[:2], 255, np.uint8)
    mask[top:top + h, left:left + w] = 0
    return canvas, mask


def rgba(image: np.ndarray) -> np.ndarray:
    """Any H x W, H x W x 3 or H x W x 4 uint8 image as RGBA."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 3:
        return np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return image
