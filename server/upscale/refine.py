"""Upscale-and-refine: img2img over overlapping tiles of an upscaled image, blended without seams.

Each tile goes through the diffusion engine's ``refine(rgba, strength, seed) -> rgba``; img2img drifts in brightness and
hue from tile to tile, so each refined tile's low-frequency component (a heavy blur) is replaced by the upscaled
source's, keeping only the detail the refine added. Tiles overlap by a quarter of their size and are blended with
raised-cosine weights (``tiling``), so no border shows.
"""

from __future__ import annotations

from typing import Callable, Optional

import cv2
import numpy as np

from ..core import JobContext
from ..imageops import resize
from .tiling import TileBlender, tile_grid

RefineFn = Callable[[np.ndarray, float, int], np.ndarray]
DEFAULT_REFINE_TILE = 512


def refine_overlap(tile: int) -> int:
    """Overlap between refine tiles: a quarter of the tile, at least 16 px."""
    return max(16, tile // 4)


def low_frequency(image: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian low-pass (float32) of an H x W x C image, computed on a reduced copy for speed."""
    img = image.astype(np.float32)
    h, w = img.shape[:2]
    factor = max(1, int(sigma // 4))
    small_w, small_h = max(1, w // factor), max(1, h // factor)
    small = cv2.resize(img, (small_w, small_h), interpolation=cv2.INTER_AREA) if factor > 1 else img
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / factor, borderType=cv2.BORDER_REFLECT)
    if small.ndim == 2:
        small = small[..., None]
    if factor > 1:
        small = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if small.ndim == 2:
            small = small[..., None]
    return small


def color_correct(refined: np.ndarray, source: np.ndarray, sigma: float) -> np.ndarray:
    """``refined`` RGB with its low frequencies replaced by ``source``'s (both H x W x 3 uint8); float32 result."""
    return refined.astype(np.float32) - low_frequency(refined, sigma) + low_frequency(source, sigma)


def refine_tiled(
    image: np.ndarray,
    refine: RefineFn,
    strength: float,
    seed: int,
    tile: int,
    ctx: JobContext,
    progress_offset: int = 0,
    progress_total: Optional[int] = None,
    previews: bool = False,
) -> np.ndarray:
    """Refine an H x W x 4 uint8 RGBA image tile by tile; alpha is kept as it is. Tile ``i`` uses seed ``seed + i``."""
    h, w = image.shape[:2]
    tiles = tile_grid(w, h, tile, refine_overlap(tile))
    total = progress_total if progress_total is not None else len(tiles)
    sigma = max(4.0, min(tile, w, h) / 8.0)
    blender = TileBlender(w, h, 3)
    for t in tiles:
        ctx.check()
        src = np.ascontiguousarray(image[t.y0 : t.y1, t.x0 : t.x1])
        out = np.asarray(refine(src, strength, (seed + t.index) % 2**32))
        if out.shape[:2] != src.shape[:2]:
            out = resize(out, t.width, t.height)
        corrected = color_correct(out[..., :3], src[..., :3], sigma)
        blender.add(t, np.clip(corrected, 0, 255))
        preview = _preview(blender, image) if previews else None
        ctx.progress(progress_offset + t.index + 1, total, preview)
    result = image.copy()
    result[..., :3] = blender.result()
    return result


def _preview(blender: TileBlender, image: np.ndarray, side: int = 256) -> np.ndarray:
    """A small RGB preview: refined tiles so far over the unrefined image."""
    rgb = np.where(blender.covered()[..., None], blender.result(), image[..., :3])
    h, w = rgb.shape[:2]
    scale = min(1.0, side / max(h, w))
    return resize(rgb, max(1, int(w * scale)), max(1, int(h * scale)))
