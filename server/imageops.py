"""Image operations every engine shares: mask grow/feather, hole filling, compositing, resizing, canvas extension.

Every operation takes a bounded time on the largest image the protocol allows (so an engine that checks for
cancellation between them stops soon after a cancel): grow and feather with a large radius work at a reduced scale.
Their work is proportional to the area that changes: masks are grown, feathered and filled inside the bounding box of
their non-zero part (plus the margin the operation reads), outpaint fills each new band on its own, and compositing
writes only inside the mask's box; pixels outside the mask are copied, never recomputed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Tuple, Union

import cv2
import numpy as np

from dataclasses import replace

from .core import Extend, Job
from .patchfill import is_thin, patch_fill

# Up to this radius, grow and feather work at full resolution (an OpenCV disc costs about radius² per pixel).
FINE_RADIUS = 24
# Above it they work on a copy reduced so that the radius is about this many px there, with a block of margin
# (so the result covers the exact one; it grows at most about 4 blocks more: under 10 % of large radii).
COARSE_RADIUS = 48
MARGIN_BLOCKS = 1
# Holes are filled on at most this many pixels (the area around them included), then scaled up: big fills stay fast
# and smooth, thin ones (an 8 px outpaint band) keep full resolution.
MAX_FILL_AREA = 768 * 768
# A crop at least this many times longer than wide (an outpaint band, a long stroke) is a strip: it is filled
# shortened along its length by up to STRIP_FACTOR (down to STRIP_ASPECT x its width), its width kept.
STRIP_ASPECT = 4
STRIP_FACTOR = 8
# Known pixels around a hole that a fill reads (OpenCV's inpainting radius is 5 px), with room for the scaling.
FILL_MARGIN = 16
FILL_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
# Fills that copy texture or need a view of the scene (the exemplar fill "patch", a LaMa-class network) read a wider
# margin around the hole: half its larger side, within these bounds (px).
CONTEXT_MARGIN = (32, 512)
# ... and work on at most this many pixels of the crop (the hole and that margin), never shortening strips (which
# would stretch the texture): the time stays bounded on any document.
MAX_CONTEXT_AREA = 384 * 384
# A thin hole (an outpaint band, a scratch) costs the exemplar fill in proportion to its own area (patches on a grid,
# searched nearby): its crop is filled at full size up to this many pixels (an 8-16 px band along a side of the
# largest document and its margin), as reducing it would blur the band.
MAX_THIN_CONTEXT_AREA = 1024 * 1024
# A fill given as a function: (H x W x 3 uint8 crop, H x W uint8 hole (255), check) -> the crop filled.
Filler = Callable[[np.ndarray, np.ndarray, Callable[[], None]], np.ndarray]
Method = Union[str, Filler]


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
    # Never lose a pixel the original (ungrown) selection fully covered. (A threshold, not ``cv2.compare`` with a
    # number: OpenCV reads a 1 x 1 array beside a number as a 4-channel scalar and answers 4 x 1.)
    return cv2.max(soft, cv2.threshold(core, 254, 255, cv2.THRESH_BINARY)[1])


Rect = Tuple[int, int, int, int]  # x, y, width, height


def nonzero_box(mask: np.ndarray, margin: int = 0) -> Optional[Rect]:
    """The bounding box of ``mask``'s non-zero pixels grown by ``margin`` and clamped to the mask; None if all zero."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return None
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(mask.shape[1], x + w + margin), min(mask.shape[0], y + h + margin)
    return x0, y0, x1 - x0, y1 - y0


def fill_size(width: int, height: int, strips: bool = True, max_area: int = MAX_FILL_AREA) -> Tuple[int, int]:
    """The size a crop of ``width`` x ``height`` is filled at: a strip shortened along its length (``STRIP_FACTOR``;
    only with ``strips``), then anything over ``max_area`` px reduced evenly."""
    w, h = width, height
    if strips and w >= STRIP_ASPECT * h:
        w = max(STRIP_ASPECT * h, -(-w // STRIP_FACTOR))
    elif strips and h >= STRIP_ASPECT * w:
        h = max(STRIP_ASPECT * w, -(-h // STRIP_FACTOR))
    scale = min(1.0, (max_area / float(w * h)) ** 0.5)
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def _smooth_filler(flag: int, radius: int) -> Filler:
    return lambda rgb, hard, check: cv2.inpaint(np.ascontiguousarray(rgb), hard, radius, flag)


def _exemplar(rgb: np.ndarray, hard: np.ndarray, check: Callable[[], None]) -> np.ndarray:
    return patch_fill(rgb, hard, check)


def _filler(method: Method, radius: int) -> Tuple[Filler, bool]:
    """The fill function for ``method`` and whether it is a smooth (diffusion-style) fill."""
    if callable(method):
        return method, False
    if method == "patch":
        return _exemplar, False
    if method in FILL_METHODS:
        return _smooth_filler(FILL_METHODS[method], radius), True
    raise ValueError(f"unknown fill method {method!r}: expected 'patch', 'telea', 'ns' or a fill function")


def fill_margin(method: Method, width: int, height: int) -> int:
    """Known pixels around a hole box of ``width`` x ``height`` that ``method`` reads."""
    if not callable(method) and method in FILL_METHODS:
        return FILL_MARGIN
    low, high = CONTEXT_MARGIN
    return int(min(high, max(low, max(width, height) // 2)))


def _fill_crop(
    rgb: np.ndarray, hard: np.ndarray, filler: Filler, smooth: bool, check: Callable[[], None]
) -> np.ndarray:
    """One crop (``hard`` 255 = hole) filled at ``fill_size``, scaled back up."""
    h, w = hard.shape
    if smooth:
        sw, sh = fill_size(w, h)
    else:
        thin = filler is _exemplar and h * w <= MAX_THIN_CONTEXT_AREA and is_thin(hard)
        sw, sh = fill_size(w, h, strips=False, max_area=MAX_THIN_CONTEXT_AREA if thin else MAX_CONTEXT_AREA)
    if (sw, sh) == (w, h):
        return filler(np.ascontiguousarray(rgb), hard, check)
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    small_mask = cv2.dilate(cv2.resize(hard, (sw, sh), interpolation=cv2.INTER_NEAREST), np.ones((3, 3), np.uint8))
    return cv2.resize(filler(small, small_mask, check), (w, h), interpolation=cv2.INTER_CUBIC)


def fill_into(
    out: np.ndarray,
    hole: np.ndarray,
    method: Method = "patch",
    radius: int = 5,
    write: Optional[Rect] = None,
    check: Callable[[], None] = lambda: None,
) -> None:
    """Fill the non-zero area of ``hole`` in the H x W x 3 uint8 ``out`` in place from its surroundings, working only
    on the hole's box plus the margin the method reads (``fill_margin``). ``method``: "patch" (exemplar-based:
    texture copied from around the hole), "telea" or "ns" (OpenCV's smooth inpainting) or a fill function
    (``Filler``, e.g. a LaMa network). Only hole pixels are written, and only those inside ``write`` (x, y, w, h)
    when given. ``check`` is called between the steps of the exemplar fill (a cancellation check)."""
    filler, smooth = _filler(method, radius)
    tight = nonzero_box(hole)
    if tight is None:
        return
    box = nonzero_box(hole, fill_margin(method, tight[2], tight[3]))
    x, y, w, h = box
    hard = cv2.threshold(hole[y : y + h, x : x + w], 0, 255, cv2.THRESH_BINARY)[1]
    filled = _fill_crop(out[y : y + h, x : x + w], hard, filler, smooth, check)
    if write is not None:
        wx, wy, ww, wh = write
        x0, y0, x1, y1 = max(x, wx), max(y, wy), min(x + w, wx + ww), min(y + h, wy + wh)
        if x0 >= x1 or y0 >= y1:
            return
        np.copyto(
            out[y0:y1, x0:x1],
            filled[y0 - y : y1 - y, x0 - x : x1 - x],
            where=hard[y0 - y : y1 - y, x0 - x : x1 - x, None] > 0,
        )
    else:
        np.copyto(out[y : y + h, x : x + w], filled, where=hard[..., None] > 0)


def fill(
    rgb: np.ndarray,
    mask: np.ndarray,
    method: Method = "patch",
    radius: int = 5,
    check: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """Fill the non-zero area of ``mask`` in an H x W x 3 uint8 image from its surroundings (``fill_into`` on a
    copy); pixels outside the mask stay exact."""
    out = np.array(rgb, dtype=np.uint8, copy=True, order="C")
    fill_into(out, mask, method, radius, check=check)
    return out


def color_match(result: np.ndarray, original: np.ndarray, mask: np.ndarray, ring: int = 0) -> np.ndarray:
    """``result`` (H x W x 3 uint8) with the colours inside ``mask`` moved to match the ``original``'s around it:
    the mean and spread of each Lab channel inside the mask made those of the ring ``ring`` px wide around it
    (default: a tenth of the mask's larger side, at least 8 px), spreads scaled by at most 1.25x either way (more
    would sharpen or flatten the result's own texture). Pixels
    outside the mask are returned unchanged; the work stays inside the mask's box plus the ring."""
    out = np.array(result, dtype=np.uint8, copy=True, order="C")
    tight = nonzero_box(mask)
    if tight is None:
        return out
    ring = ring or max(8, max(tight[2], tight[3]) // 10)
    x, y, w, h = nonzero_box(mask, ring + 1)
    inside = mask[y : y + h, x : x + w] > 0
    around = (cv2.dilate(inside.astype(np.uint8), _disc(ring)) > 0) & ~inside
    if not around.any():
        return out
    lab_result = cv2.cvtColor(np.ascontiguousarray(out[y : y + h, x : x + w]), cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_original = cv2.cvtColor(np.ascontiguousarray(original[y : y + h, x : x + w, :3]), cv2.COLOR_RGB2LAB).astype(
        np.float32
    )
    have, want = lab_result[inside], lab_original[around]
    spread = np.clip(want.std(axis=0) / np.maximum(have.std(axis=0), 1e-3), 0.8, 1.25)
    moved = (have - have.mean(axis=0)) * spread + want.mean(axis=0)
    lab_result[inside] = moved
    back = cv2.cvtColor(np.clip(np.rint(lab_result), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    np.copyto(out[y : y + h, x : x + w], back, where=inside[..., None])
    return out


def outpaint_layer(
    image: np.ndarray, extend: Extend, method: Method = "patch", check: Callable[[], None] = lambda: None
) -> np.ndarray:
    """The classical outpaint result: ``image`` (RGBA) on a canvas grown by ``extend``, the new bands filled from the
    image's edges, alpha 255 on the new area and 0 over the image (whose RGB is copied exactly).

    Each band is filled on its own strip (its width plus the margin of the image the method reads, ``fill_margin``):
    the work grows with the new area, not with the image. Top and bottom bands (corners included) first, then left
    and right between them.
    """
    left, top, right, bottom = extend.left, extend.top, extend.right, extend.bottom
    h, w = image.shape[:2]
    H, W = h + top + bottom, w + left + right
    out = np.empty((H, W, 4), np.uint8)
    # One pass over the image: its pixels as 32-bit words with the alpha byte cleared (byte order independent).
    opaque = np.array([255, 255, 255, 0], np.uint8).view(np.uint32)[0]
    inner = out[top : top + h, left : left + w].view(np.uint32)[..., 0]
    np.bitwise_and(np.ascontiguousarray(image).view(np.uint32)[..., 0], opaque, out=inner)
    for band in (out[:top], out[H - bottom :], out[top : top + h, :left], out[top : top + h, W - right :]):
        band.view(np.uint32)[...] = ~opaque  # black, alpha 255
    rgb = out[..., :3]
    # The margin each band reads: by its thickness (a band's box is as long as the canvas side).
    mt, mb = (fill_margin(method, side, side) for side in (top, bottom))
    ml, mr = (fill_margin(method, side, side) for side in (left, right))
    # Each step: (strip of the canvas it reads, band it writes), both as (x, y, w, h) in canvas coordinates.
    bands = [
        ((0, 0, W, min(H, top + mt)), (0, 0, W, top)),
        ((0, max(0, H - bottom - mb), W, min(H, bottom + mb)), (0, H - bottom, W, bottom)),
        ((0, 0, min(W, left + ml), H), (0, top, left, h)),
        ((max(0, W - right - mr), 0, min(W, right + mr), H), (W - right, top, right, h)),
    ]
    done = np.zeros(4, bool)

    def fill_band(i: int) -> None:
        (sx, sy, sw, sh), (bx, by, bw, bh) = bands[i]
        check()
        # The hole inside the strip: every new-area pixel not filled yet (later bands are filled as context only).
        hole = out[sy : sy + sh, sx : sx + sw, 3].copy()
        for j in np.flatnonzero(done):
            jx, jy, jw, jh = bands[j][1]
            x0, y0, x1, y1 = max(jx, sx), max(jy, sy), min(jx + jw, sx + sw), min(jy + jh, sy + sh)
            if x0 < x1 and y0 < y1:
                hole[y0 - sy : y1 - sy, x0 - sx : x1 - sx] = 0
        strip = np.ascontiguousarray(rgb[sy : sy + sh, sx : sx + sw])
        fill_into(strip, hole, method, write=(bx - sx, by - sy, bw, bh), check=check)
        rgb[by : by + bh, bx : bx + bw] = strip[by - sy : by - sy + bh, bx - sx : bx - sx + bw]

    # Opposite bands (top/bottom, then left/right) are filled at the same time when neither's strip reaches the other
    # (OpenCV releases the GIL): on a large canvas each is a long, thin fill of its own.
    for pair in ((0, 1), (2, 3)):
        todo = [i for i in pair if bands[i][1][2] > 0 and bands[i][1][3] > 0]
        if len(todo) == 2 and _apart(bands[pair[0]][0], bands[pair[1]][0]) and not callable(method):
            with ThreadPoolExecutor(max_workers=1) as pool:  # waits for the other band even when this one fails
                other = pool.submit(fill_band, todo[1])
                fill_band(todo[0])
                other.result()
        else:
            for i in todo:
                fill_band(i)
        done[list(todo)] = True
    return out


def job_in_rgba(job: Job) -> Job:
    """``job`` with its image in RGBA order: one channel swap when it still holds the client's ``bgra8``."""
    if not job.image_bgra or job.image is None:
        return job
    rgba = cv2.cvtColor(job.image, cv2.COLOR_BGRA2RGBA)
    rgba.flags.writeable = False
    return replace(job, image=rgba, image_bgra=False)


def _apart(a: Rect, b: Rect) -> bool:
    """True when the rectangles (x, y, w, h) do not overlap."""
    return a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]


def prepare_mask(job: Job, check: Callable[[], None] = lambda: None) -> Tuple[np.ndarray, np.ndarray]:
    """The job's (hard area, soft blend mask): the mask grown by ``params.grow``, then feathered by ``params.feather``.

    The hard area is where pixels may change (mask > 0 after growing); the soft mask is the returned layer's alpha.
    A job without a mask changes the whole image. ``check`` is called between the steps (a cancellation check).
    Both are worked out inside the mask's box plus the margin growing and feathering reach (zero elsewhere).
    """
    h, w = job.height, job.width
    if job.mask is None:
        full = np.full((h, w), 255, np.uint8)
        return full, full
    mask = job.mask
    grow = job.params.grow if job.params.grow >= 0 else default_grow(mask)
    feather = job.params.feather if job.params.feather >= 0 else default_feather(mask)
    grown = np.zeros((h, w), np.uint8)
    soft = np.zeros((h, w), np.uint8)
    # Growing reaches ``grow`` px (up to ~4 blocks more at a reduced scale); feathering reads 2 x its radius around
    # the grown area (the blur's kernel), and works in blocks too.
    margin = grow + 4 * _reduction(grow) + 2 * feather + 4 * _reduction(feather) + 2
    box = nonzero_box(mask, margin)
    if box is None:
        return grown, soft
    x, y, bw, bh = box
    part = np.ascontiguousarray(mask[y : y + bh, x : x + bw])
    check()
    grown_part = grow_mask(part, grow)
    check()
    grown[y : y + bh, x : x + bw] = grown_part
    soft[y : y + bh, x : x + bw] = np.maximum(feather_mask(grown_part, feather), part)
    return grown, soft


def composite_layer(original: np.ndarray, generated: np.ndarray, soft_mask: np.ndarray) -> np.ndarray:
    """The result layer: generated RGB where the mask is non-zero, the original's RGB elsewhere; alpha = soft mask.

    Placed over the original it blends by the soft mask, and outside the mask it equals the original exactly (a copy;
    only the mask's box is composited).
    """
    out = np.array(original, dtype=np.uint8, copy=True, order="C")
    out[..., 3] = soft_mask
    box = nonzero_box(soft_mask)
    if box is not None:
        x, y, w, h = box
        np.copyto(
            out[y : y + h, x : x + w, :3],
            generated[y : y + h, x : x + w, :3],
            where=soft_mask[y : y + h, x : x + w, None] > 0,
        )
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
    """Resize with area averaging when shrinking and Lanczos when enlarging (or the given OpenCV interpolation).
    At the same size this is ``image`` itself, not a copy: a caller that writes into the result copies it first
    (a received payload is read-only)."""
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
    canvas[top : top + h, left : left + w] = image
    mask = np.full(canvas.shape[:2], 255, np.uint8)
    mask[top : top + h, left : left + w] = 0
    return canvas, mask


def rgba(image: np.ndarray) -> np.ndarray:
    """Any H x W, H x W x 3 or H x W x 4 uint8 image as RGBA."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 3:
        return np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return image
