"""Reaching a target scale: model passes (tiled, overlapping tiles blended) and Lanczos for the rest.

The plan: the model always runs once; it runs again while at least 1.5x is still missing; a smaller remainder is
Lanczos. A pass that would overshoot the target (a 4x model asked for 2x) shrinks each output tile right away, so the
full overshoot image is never held in memory. A tile that runs out of memory is split into smaller tiles and retried.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import cv2
import numpy as np

from protocol.errors import OUT_OF_MEMORY, ProtocolError

from .. import device as devices
from ..imageops import resize
from .models import run_model
from .tiling import TileBlender, tile_grid

GPU_MODEL_TILE = 512
CPU_MODEL_TILE = 256  # a 256 px tile of a full-size ESRGAN takes ~20 s on a laptop CPU: cancel stays responsive
MIN_MODEL_TILE = 32
MODEL_TILE_OVERLAP = 32
FURTHER_PASS_MIN = 1.5

TileProgress = Callable[[], None]


def plan_passes(model_scale: int, target: float) -> List[float]:
    """Output scale of each model pass (each at most ``model_scale``); their product is at most ``target``."""
    passes: List[float] = []
    remaining = target
    while True:
        step = min(float(model_scale), remaining) if model_scale > 1 else 1.0
        passes.append(step)
        remaining /= step
        if model_scale <= 1 or remaining < FURTHER_PASS_MIN:
            break
    return passes


def model_tile_size(model, requested: int) -> Optional[int]:
    """Input tile size for a model: ``requested`` (0 = automatic), or None when the model must see the whole image."""
    from spandrel import ModelTiling

    if model.tiling == ModelTiling.INTERNAL:
        return None
    if requested > 0:
        return requested
    on_gpu = next(model.model.parameters()).device.type != "cpu"
    tile = GPU_MODEL_TILE if on_gpu else CPU_MODEL_TILE
    return tile * 2 if model.tiling == ModelTiling.DISCOURAGED else tile


def count_model_tiles(width: int, height: int, tile: Optional[int], passes: List[float]) -> int:
    """How many tiles the model passes of ``plan_passes`` will run (for progress totals)."""
    count = 0
    for scale in passes:
        count += 1 if tile is None else len(tile_grid(width, height, tile, MODEL_TILE_OVERLAP))
        width, height = int(round(width * scale)), int(round(height * scale))
    return count


def model_pass(
    rgb: np.ndarray,
    model,
    out_scale: float,
    tile: Optional[int],
    on_tile: TileProgress,
    splits: Optional[List[int]] = None,
) -> np.ndarray:
    """One model pass over an H x W x 3 uint8 image, output ``out_scale`` times larger (<= the model's scale).

    The size of each smaller tile used after running out of memory is added to ``splits``."""
    h, w = rgb.shape[:2]
    out_w, out_h = int(round(w * out_scale)), int(round(h * out_scale))
    if tile is None:
        out = _run_or_split(model, rgb, splittable=False, splits=splits)
        on_tile()
        return resize(out, out_w, out_h)
    blender = TileBlender(out_w, out_h, 3)
    for t in tile_grid(w, h, tile, MODEL_TILE_OVERLAP):
        up = _run_or_split(model, rgb[t.y0 : t.y1, t.x0 : t.x1], splits=splits)
        box = t.scaled(out_scale)
        blender.add(box, resize(up, box.width, box.height))
        on_tile()
    return blender.result()


def _run_or_split(model, pixels: np.ndarray, splittable: bool = True, splits: Optional[List[int]] = None) -> np.ndarray:
    """The model's output for one tile; a tile that runs out of memory is redone as smaller overlapping tiles."""
    try:
        return run_model(model, pixels)
    except RuntimeError as err:  # torch.OutOfMemoryError is a RuntimeError; so is the CPU allocator's failure
        if not devices.is_out_of_memory(err):
            raise
        devices.empty_cache(next(model.model.parameters()).device)
        smaller = max(pixels.shape[:2]) // 2
        if not splittable or smaller < MIN_MODEL_TILE:
            raise ProtocolError(
                OUT_OF_MEMORY,
                f"the upscaler ran out of memory on a {pixels.shape[1]}x{pixels.shape[0]} px "
                + ("tile, even after splitting it" if splittable else "image (this model cannot work in tiles)")
                + "; free memory (close other GPU programs) or upscale a smaller area",
            ) from err
    if splits is not None:
        splits.append(smaller)
    return model_pass(pixels, model, float(model.scale), smaller, on_tile=lambda: None, splits=splits)


def resize_rgba(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize RGBA with premultiplied alpha (no dark or colored fringes at transparent edges)."""
    alpha = image[..., 3]
    if alpha.min() == 255:
        out = resize(image, width, height)
        if out is image:  # the same size: ``resize`` hands back the (read-only) input itself
            return image.copy()
        out[..., 3] = 255
        return out
    a = alpha.astype(np.float32)[..., None] / 255.0
    premul = np.concatenate([image[..., :3].astype(np.float32) * a, a * 255.0], axis=2)
    shrinking = width * height < image.shape[0] * image.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    big = cv2.resize(premul, (width, height), interpolation=interp)
    out_a = np.clip(big[..., 3:4], 0.0, 255.0)
    rgb = big[..., :3] / np.maximum(out_a / 255.0, 1e-6)
    alpha = np.clip(np.rint(out_a[..., 0]), 0, 255).astype(np.uint8)
    if not shrinking:
        alpha = limit_to_neighbourhood(alpha, image[..., 3])
    out = np.empty((height, width, 4), np.uint8)
    out[..., :3] = np.where(alpha[..., None] > 0, np.clip(np.rint(rgb), 0, 255), 0).astype(np.uint8)
    out[..., 3] = alpha
    return out


def resize_alpha(alpha: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an alpha channel without halos: Lanczos, limited to the range of the nearby source pixels, so no faint
    ring appears around a cut-out (fully opaque stays exactly opaque)."""
    if alpha.min() == 255:
        return np.full((height, width), 255, np.uint8)
    out = resize(alpha, width, height)
    return limit_to_neighbourhood(out, alpha)


def limit_to_neighbourhood(resized: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Clamp each pixel of a resized single-channel image to the min/max of the 3 x 3 source pixels around it
    (removes Lanczos ringing; values of smooth areas are unchanged)."""
    kernel = np.ones((3, 3), np.uint8)
    h, w = resized.shape[:2]
    low = cv2.resize(cv2.erode(source, kernel), (w, h), interpolation=cv2.INTER_NEAREST)
    high = cv2.resize(cv2.dilate(source, kernel), (w, h), interpolation=cv2.INTER_NEAREST)
    return np.clip(resized, low, high).astype(resized.dtype)
