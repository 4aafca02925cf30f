"""Overlapping tiles and the smooth weights that blend them back without seams.

Tiles cover an image in a regular grid; neighbouring tiles overlap, and inside each overlap the two tiles' weights follow
a raised-cosine ramp that sums to exactly 1, so blending (sum of weight x tile, divided by the sum of weights) never
shows a step where one tile ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` px, evenly spread, overlapping by at least
    ``overlap`` px. One tile (at 0) when the whole length fits."""
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    if length <= tile:
        return [0]
    overlap = max(0, min(overlap, tile // 2))
    count = math.ceil((length - overlap) / (tile - overlap))
    count = max(count, 2)
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


@dataclass(frozen=True)
class Tile:
    """One tile: its box in the image (x0, y0, x1, y1) and how far it overlaps each neighbour (0 at the image edge)."""

    index: int
    x0: int
    y0: int
    x1: int
    y1: int
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def scaled(self, scale: float) -> "Tile":
        """The same tile in an image ``scale`` times larger (box edges rounded, so neighbours still meet)."""

        def s(v: int) -> int:
            return int(round(v * scale))

        x0, y0, x1, y1 = s(self.x0), s(self.y0), s(self.x1), s(self.y1)
        return Tile(
            self.index,
            x0,
            y0,
            x1,
            y1,
            left=s(self.x0 + self.left) - x0 if self.left else 0,
            top=s(self.y0 + self.top) - y0 if self.top else 0,
            right=x1 - s(self.x1 - self.right) if self.right else 0,
            bottom=y1 - s(self.y1 - self.bottom) if self.bottom else 0,
        )


def _spans(length: int, tile: int, overlap: int) -> List[Tuple[int, int, int, int]]:
    """(start, end, overlap with previous, overlap with next) along one axis."""
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    spans = []
    for i, start in enumerate(starts):
        end = start + size
        before = (starts[i - 1] + size - start) if i > 0 else 0
        after = (end - starts[i + 1]) if i + 1 < len(starts) else 0
        spans.append((start, end, before, after))
    return spans


def tile_grid(width: int, height: int, tile: int, overlap: int) -> List[Tile]:
    """The tiles covering a ``width`` x ``height`` image, row by row."""
    tiles = []
    for y0, y1, top, bottom in _spans(height, tile, overlap):
        for x0, x1, left, right in _spans(width, tile, overlap):
            tiles.append(Tile(len(tiles), x0, y0, x1, y1, left, top, right, bottom))
    return tiles


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """1-D weights: a raised-cosine rise over the first ``before`` px, 1 in the middle, a fall over the last ``after``.

    A fall over n px and the neighbour's rise over the same n px sum to 1 at every pixel.
    """
    w = np.ones(length, np.float32)
    if before > 0:
        t = (np.arange(before, dtype=np.float32) + 0.5) / before
        w[:before] = 0.5 - 0.5 * np.cos(np.pi * t)
    if after > 0:
        t = (np.arange(after, dtype=np.float32) + 0.5) / after
        w[length - after :] = np.minimum(w[length - after :], 0.5 + 0.5 * np.cos(np.pi * t))
    return w


def tile_weights(tile: Tile) -> np.ndarray:
    """H x W float32 blend weights of a tile (always > 0)."""
    wy = _ramp(tile.height, tile.top, tile.bottom)
    wx = _ramp(tile.width, tile.left, tile.right)
    return np.outer(wy, wx)


class TileBlender:
    """Accumulates weighted tiles into one float image; ``result()`` divides by the summed weights."""

    def __init__(self, width: int, height: int, channels: int) -> None:
        self._sum = np.zeros((height, width, channels), np.float32)
        self._weight = np.zeros((height, width, 1), np.float32)

    def add(self, tile: Tile, pixels: np.ndarray) -> None:
        """Blend ``pixels`` (tile.height x tile.width x channels) into the tile's box."""
        if pixels.shape[:2] != (tile.height, tile.width):
            raise ValueError(
                f"tile {tile.index} is {pixels.shape[1]}x{pixels.shape[0]}, expected {tile.width}x{tile.height}"
            )
        w = tile_weights(tile)[..., None]
        self._sum[tile.y0 : tile.y1, tile.x0 : tile.x1] += pixels.astype(np.float32) * w
        self._weight[tile.y0 : tile.y1, tile.x0 : tile.x1] += w

    def covered(self) -> np.ndarray:
        """H x W bool: pixels some tile has reached so far."""
        return self._weight[..., 0] > 0

    def result(self) -> np.ndarray:
        """The blended image as uint8 (pixels no tile covered stay 0)."""
        out = self._sum / np.maximum(self._weight, 1e-6)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
