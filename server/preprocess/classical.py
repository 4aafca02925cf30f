"""Preprocessors that need no weights (OpenCV/numpy). Each takes H x W x 3 uint8 RGB and returns the same size.

Control images follow the ControlNet conventions: edge-like maps (canny, lineart, scribble) are white lines on black.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np


MIN_LINE_CONTRAST = 24.0


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _line_width(rgb: np.ndarray) -> int:
    """Stroke width for scribbles: about 1 px per 512 px of the image's larger side, at least 1."""
    return max(1, int(round(max(rgb.shape[:2]) / 512)))


def canny(rgb: np.ndarray, low_threshold: int = 100, high_threshold: int = 200) -> np.ndarray:
    """Canny edges (white on black) with hysteresis thresholds ``low_threshold`` < ``high_threshold`` (0-255)."""
    if low_threshold > high_threshold:
        low_threshold, high_threshold = high_threshold, low_threshold
    return _rgb(cv2.Canny(_gray(rgb), low_threshold, high_threshold, L2gradient=True))


def ink(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Float32 'ink' map: how much darker each pixel is than its surroundings (a difference of Gaussians).

    The background estimate is a Gaussian blur of radius ``sigma``; strokes thinner than that stand out, flat areas
    and soft gradients give 0.
    """
    gray = _gray(rgb).astype(np.float32)
    background = cv2.GaussianBlur(gray, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
    detail = cv2.GaussianBlur(gray, (0, 0), sigmaX=0.7, borderType=cv2.BORDER_REPLICATE)
    return np.maximum(background - detail, 0.0)


def lineart(rgb: np.ndarray) -> np.ndarray:
    """Standard line art: dark strokes and contours of the image as white lines on black, strength kept as gray.

    Contrast is normalised by the typical stroke strength (the 90th percentile of the ink map's non-empty pixels),
    so faint pencil and strong ink both give clear lines; differences under ``MIN_LINE_CONTRAST`` levels stay dim.
    """
    sigma = max(2.0, max(rgb.shape[:2]) / 170.0)
    strength = ink(rgb, sigma)
    lit = strength[strength > 2.0]
    norm = max(MIN_LINE_CONTRAST, float(np.percentile(lit, 90))) if lit.size else MIN_LINE_CONTRAST
    return _rgb(np.clip(strength * (255.0 / norm), 0, 255).astype(np.uint8))


def scribble(rgb: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
    """A sketch as a binary scribble: its strokes as white lines on black, thickened to a scribble's width.

    Works for dark-on-light sketches (the usual case) and light-on-dark ones (they are inverted first).
    """
    if float(np.median(_gray(rgb))) < 128:
        rgb = 255 - rgb
    sigma = max(2.0, max(rgb.shape[:2]) / 128.0)
    strength = ink(rgb, sigma)
    if threshold is None:
        # Otsu on the ink map separates strokes from paper noise; never below a small absolute floor.
        scaled = np.clip(strength * 4.0, 0, 255).astype(np.uint8)
        otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        threshold = max(8.0, otsu / 4.0)
    lines = (strength > threshold).astype(np.uint8) * 255
    width = _line_width(rgb)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return _rgb(cv2.dilate(lines, kernel))


def shuffle(rgb: np.ndarray, seed: int = 0, cells: int = 6) -> np.ndarray:
    """Content shuffle: the image warped by a smooth random displacement field, so colours and textures remain but
    the composition is scrambled (for the shuffle ControlNet). Deterministic for a given ``seed``."""
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(seed)
    # Coarse random source coordinates, upsampled smoothly: every output pixel samples somewhere in the image.
    coarse = rng.random((cells, cells, 2)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    map_x = np.clip(field[..., 0], 0, 1) * (w - 1)
    map_y = np.clip(field[..., 1], 0, 1) * (h - 1)
    return cv2.remap(rgb, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def tile(rgb: np.ndarray, downscale: float = 1.0, blur: float = 0.0) -> np.ndarray:
    """The image itself for the tile ControlNet, optionally softened: shrunk by ``downscale`` and enlarged back, then
    blurred by ``blur`` px (to let the model invent more detail)."""
    h, w = rgb.shape[:2]
    out = rgb
    if downscale > 1.0:
        small = cv2.resize(rgb, (max(1, int(w / downscale)), max(1, int(h / downscale))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=blur)
    return np.ascontiguousarray(out)


def to_fill(mask: np.ndarray) -> np.ndarray:
    """The one rule for which pixels an inpaint control marks as "to fill": every pixel the mask touches (mask > 0),
    the same area the inpaint pipeline's own mask and the classical fill change."""
    return mask > 0


def inpaint(rgb: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    """The inpaint control image as a picture: the image with the area to fill (``to_fill``) blacked out.

    The inpaint ControlNet itself expects the masked pixels at -1, which uint8 cannot hold: the diffusion engine
    feeds it ``inpaint_condition`` instead; this picture is what a painter sees and edits.
    """
    out = rgb.copy()
    if mask is not None:
        out[to_fill(mask)] = 0
    return out


def inpaint_condition(rgb: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    """H x W x 3 float32 condition for the inpaint ControlNet: RGB in [0, 1], the area to fill (``to_fill``) at -1."""
    cond = rgb[..., :3].astype(np.float32) / 255.0
    if mask is not None:
        cond[to_fill(mask)] = -1.0
    return cond
