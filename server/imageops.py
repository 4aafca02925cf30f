"""Image operations every engine shares: mask grow/feather, hole filling, compositing, resizing, canvas extension.

Every operation takes a bounded time on the largest image the protocol allows (so an engine that checks for
cancellation between them stops soon after a cancel): grow and feather with a large radius work at a reduced scale.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import cv2
import numpy as np

from .core import Extend, Job

# Up to this radius, grow and feather work at full resolution (an OpenCV disc costs about radius² per pixel).
FINE_RADIUS = 24
# Above it they work on a copy reduced so that the radius is about this many px there, with a block of margin
# (so the result covers the exact one; it grows at most about 4 blocks more: under 10 % of large radii).
COARSE_RADIUS = 48
MARGIN_BLOCKS = 1
# Holes are filled at most at this resolution, then scaled up: big fills stay fast and smooth.
MAX_FILL_SIDE = 768
FILL_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


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


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _reduction(radius: int) -> int:
    """The factor grow and feather shrink a mask by for ``radius`` (1 = full resolution)."""
    return 1 if radius <= FINE_RADIUS else max(2, -(-radius // COARSE_RADIUS))


def _max_pool(mask: np.ndarray, factor: int) -> np.ndarray:
    """Each ``factor`` x ``factor`` block's maximum (edge blocks padded with 0)."""
    h, w = mask.shape
    ph, pw = -(-h // factor) * factor, -(-w // factor) * factor
    padded = np.zeros((ph, pw), mask.dtype)
    padded[:h, :w] = mask
    return padded.reshape(ph // factor, factor, pw // factor, factor).max(axis=(1, 3))


def _upsample(small: np.ndarray, factor: int, width: int, height: int) -> np.ndarray:
    """A block image back at full size, interpolated linearly between block centres."""
    big = cv2.resize(small, (small.shape[1] * factor, small.shape[0] * factor), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(big[:height, :width])


def _coarse_dilate(mask: np.ndarray, radius: int, factor: int) -> np.ndarray:
    """Dilation by ``radius`` px at 1/``factor`` scale, in blocks: once upsampled, a superset of the exact dilation
    (by at most about 4 x ``factor`` px more); the margin covers the block rounding and the linear upsampling."""
    return cv2.dilate(_max_pool(mask, factor), _disc(-(-radius // factor) + MARGIN_BLOCKS))


def grow_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a uint8 mask by ``radius`` px (a disc); soft values grow too.

    Radii over ``FINE_RADIUS`` are done at a reduced scale, growing up to about 4 blocks
    (``_reduction(radius)`` px each; under 10 % of large radii) more than asked.
    """
    if radius <= 0:
        return mask.copy()
    factor = _reduction(radius)
    if factor == 1:
        return cv2.dilate(mask, _disc(radius))
    h, w = mask.shape
    return np.maximum(_upsample(_coarse_dilate(mask, radius, factor), factor, w, h), mask)


def feather_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Soften a mask's edge inwards by ``radius`` px: the feathered mask never reaches outside the original one,
    and it stays 255 deep inside it. Radii over ``FINE_RADIUS`` are done at a reduced scale."""
    if radius <= 0:
        return mask.copy()
    # Erode first so the blur spreads into, not beyond, the grown area.
    factor = _reduction(radius)
    # (OpenCV calls throughout: at the largest size numpy's temporaries would cost seconds.)
    if factor == 1:
        core = cv2.erode(mask, _disc(radius))
        blurred = cv2.convertScaleAbs(cv2.GaussianBlur(core.astype(np.float32), (0, 0), sigmaX=radius / 2.0))
    else:
        h, w = mask.shape
        small_core = 255 - _coarse_dilate(255 - mask, radius, factor)  # erosion, a subset of the exact one
        small_blur = cv2.GaussianBlur(small_core.astype(np.float32), (0, 0), sigmaX=radius / 2.0 / factor)
        core = _upsample(small_core, factor, w, h)
        blurred = _upsample(cv2.convertScaleAbs(small_blur), factor, w, h)
    soft = cv2.min(blurred, mask)
    # Never lose a pixel the original (ungrown) selection fully covered.
    return cv2.max(soft, cv2.compare(core, 255, cv2.CMP_EQ))


def fill(rgb: np.ndarray, mask: np.ndarray, method: str = "telea", radius: int = 5) -> np.ndarray:
    """Fill the non-zero area of ``mask`` in an H x W x 3 uint8 image from its surroundings (OpenCV inpainting, Telea
    or Navier-Stokes, at most ``MAX_FILL_SIDE`` px a side); pixels outside the mask stay exact."""
    flag = FILL_METHODS[method]
    hard = np.where(mask > 0, 255, 0).astype(np.uint8)
    if not hard.any():
        return rgb.copy()
    h, w = hard.shape
    scale = min(1.0, MAX_FILL_SIDE / float(max(h, w)))
    if scale >= 1.0:
        filled = cv2.inpaint(np.ascontiguousarray(rgb), hard, radius, flag)
    else:
        sw, sh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
        small_mask = cv2.dilate(cv2.resize(hard, (sw, sh), interpolation=cv2.INTER_NEAREST), np.ones((3, 3), np.uint8))
        small_filled = cv2.inpaint(small, small_mask, radius, flag)
        filled = cv2.resize(small_filled, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.where(hard[..., None] > 0, filled, rgb)


def prepare_mask(job: Job, check: Callable[[], None] = lambda: None) -> Tuple[np.ndarray, np.ndarray]:
    """The job's (hard area, soft blend mask): the mask grown by ``params.grow``, then feathered by ``params.feather``.

    The hard area is where pixels may change (mask > 0 after growing); the soft mask is the returned layer's alpha.
    A job without a mask changes the whole image. ``check`` is called between the steps (a cancellation check).
    """
    h, w = job.height, job.width
    if job.mask is None:
        full = np.full((h, w), 255, np.uint8)
        return full, full
    grow = job.params.grow if job.params.grow >= 0 else default_grow(job.mask)
    feather = job.params.feather if job.params.feather >= 0 else default_feather(job.mask)
    check()
    grown = grow_mask(job.mask, grow)
    check()
    soft = np.maximum(feather_mask(grown, feather), job.mask)
    return grown, soft


def composite_layer(original: np.ndarray, generated: np.ndarray, soft_mask: np.ndarray) -> np.ndarray:
    """The result layer: generated RGB where the mask is non-zero, the original's RGB elsewhere; alpha = soft mask.

    Placed over the original it blends by the soft mask, and outside the mask it equals the original exactly.
    """
    rgb = np.ascontiguousarray(original[..., :3])  # a copy: the slice is not contiguous
    cv2.copyTo(np.ascontiguousarray(generated[..., :3]), soft_mask, rgb)
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
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


def extend_canvas(image: np.ndarray, extend: Extend) -> Tuple[np.ndarray, np.ndarray]:
    """Outpaint set-up: the image on a canvas grown by ``extend`` (left/top/right/bottom px), new area transparent,
    and the mask of the new area (255)."""
    left, top, right, bottom = extend.left, extend.top, extend.right, extend.bottom
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
