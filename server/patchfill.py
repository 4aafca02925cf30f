"""Exemplar-based hole filling: PatchMatch (Barnes et al. 2009) inside a coarse-to-fine expectation-maximisation
completion (Wexler et al. 2007), vectorised with numpy and OpenCV.

The hole is filled with pixels copied from the known part of the image, so texture (foliage, fabric, noise, grain)
continues into it instead of smearing into a blur as the diffusion-style fills (Telea, Navier-Stokes) do. Every step
works on arrays of all the hole's patches at once (no per-pixel Python); the caller bounds the area
(``imageops`` fills a crop around the hole, reduced to a bounded size) and ``check`` is called between iterations
(a cancellation check).
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import cv2
import numpy as np

PATCH = 7  # patch side in px
RADIUS = PATCH // 2
# The pyramid stops when the hole's box is this small (px at the coarsest level) or the image this small.
COARSEST_HOLE = 2 * PATCH
COARSEST_IMAGE = 3 * PATCH
# Expectation-maximisation iterations at the coarsest level, decreasing to FINE_ITERATIONS at the finest one.
COARSE_ITERATIONS = 6
FINE_ITERATIONS = 2
# Propagation reaches candidates this many px away, then half, ... then 1 (jump flooding, so one vectorised pass
# carries good matches across the hole instead of one pixel per iteration).
JUMP = 8
# A target patch's vote weighs CONFIDENCE ** -(its distance into the hole, px): the hole's edge, where the known
# pixels pin the match down, leads.
CONFIDENCE = 1.3
# A thin hole - no pixel deeper than THIN px inside it, at least THIN_ASPECT * THIN px long (an outpaint band, a
# scratch) - is matched on its own neighbourhood: patch centres on a grid of THIN_STRIDE px at the finest level (each
# hole pixel still gets about 5 overlapping votes, for a ninth of the matching work) and random search within
# THIN_REACH px (not across the whole crop).
THIN = 16
THIN_ASPECT = 4
THIN_STRIDE = 3
THIN_REACH = 64
# A thin hole's full-resolution level gets THIN_ITERATIONS (measured on 8 px frames around the tests' photo and
# around 4016 px wide pictures: a second one cut the band's error against the true frame by 2-4 % for 1.6x the time).
THIN_ITERATIONS = 1
# The smooth fill (OpenCV's inpainting: flag, radius in px) that gives the coarsest level its first guess, and the
# hole where there is nothing to copy from. A thin hole filled at full resolution starts from each hole pixel's
# nearest known pixel instead (on the same frames: the band's error 0.1-1 % lower than from Navier-Stokes with a 1 px
# radius, itself 3-8 % lower than from Telea's 3 px).
SMOOTH = (cv2.INPAINT_TELEA, 3)


def _downscale(img: np.ndarray, hole: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Half size: known pixels averaged without the hole's (whose values are the object being removed); a coarse
    pixel is hole if any of its fine pixels is."""
    h, w = hole.shape
    size = ((w + 1) // 2, (h + 1) // 2)
    known = (~hole).astype(np.float32)
    weight = cv2.resize(known, size, interpolation=cv2.INTER_AREA)
    summed = cv2.resize(img * known[..., None], size, interpolation=cv2.INTER_AREA)
    small = summed / np.maximum(weight, 1e-6)[..., None]
    return small.astype(np.float32), weight < 0.999


class _Level:
    """One pyramid level on a grid padded by the patch radius: positions are flat indices into that grid."""

    def __init__(self, img: np.ndarray, hole: np.ndarray, grid: int = 1) -> None:
        self.h, self.w = hole.shape
        self.grid = grid  # px between target centres
        self.stride = self.w + 2 * RADIUS
        self.hole = hole
        padded_hole = cv2.copyMakeBorder(
            hole.astype(np.uint8), RADIUS, RADIUS, RADIUS, RADIUS, cv2.BORDER_CONSTANT, value=0
        )
        self.hole_flat = padded_hole.ravel() > 0
        dy, dx = np.mgrid[-RADIUS : RADIUS + 1, -RADIUS : RADIUS + 1]
        self.offsets = (dy * self.stride + dx).ravel()
        self.row_offsets = np.arange(-RADIUS, RADIUS + 1) * self.stride - RADIUS  # each patch row's first pixel
        # Valid sources: patches entirely inside the image and entirely known.
        known = (~hole).astype(np.uint8)
        valid = cv2.erode(known, np.ones((PATCH, PATCH), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        self.valid = valid > 0
        self.source_ys, self.source_xs = np.nonzero(self.valid)
        # Targets: every centre whose patch touches the hole.
        touched = cv2.dilate(hole.astype(np.uint8), np.ones((PATCH, PATCH), np.uint8)) > 0
        if grid > 1:  # centres on a grid (and the last row and column) still cover every hole pixel (grid <= 4)
            on_grid = np.zeros_like(touched)
            on_grid[
                np.ix_(np.r_[np.arange(0, self.h, grid), self.h - 1], np.r_[np.arange(0, self.w, grid), self.w - 1])
            ] = True
            touched &= on_grid
        self.ty, self.tx = np.nonzero(touched)
        self.targets = self.flat(self.ty, self.tx)
        self.index = np.full((self.h, self.w), -1, np.int64)
        self.index[self.ty, self.tx] = np.arange(len(self.ty))
        # Confidence of each target patch: high next to the known pixels, falling off inside the hole.
        depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)[self.ty, self.tx]
        self.confidence = (CONFIDENCE**-depth).astype(np.float32)
        self.set_image(img)

    def set_image(self, img: np.ndarray) -> None:
        """Take ``img`` (H x W x 3 float32) as the level's current image."""
        self.img = img
        padded = np.ascontiguousarray(cv2.copyMakeBorder(img, RADIUS, RADIUS, RADIUS, RADIUS, cv2.BORDER_REFLECT))
        self.pixels = padded.reshape(-1, 3)
        # Each run of PATCH pixels along a row as one item, starting at every pixel (the items overlap): a patch is
        # PATCH items, gathered with one fancy index (nearly twice as fast as PATCH * PATCH pixels one by one).
        self.rows = np.ndarray((len(self.pixels) - PATCH + 1,), f"V{PATCH * 12}", padded, strides=(12,))

    def flat(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return (ys + RADIUS) * self.stride + xs + RADIUS

    def describe(self, positions: np.ndarray) -> np.ndarray:
        """N x (PATCH * PATCH * 3): the patches centred at flat ``positions``, compared by their squared distance.
        (Shorter descriptors - a blurred patch sampled on a grid - were 2.5x faster but lost the phase of fine
        patterns: a striped pattern came back shifted.)"""
        return self.rows[positions[:, None] + self.row_offsets].view(np.float32).reshape(len(positions), -1)

    def random_sources(self, n: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        pick = rng.integers(0, len(self.source_ys), n)
        return self.source_ys[pick], self.source_xs[pick]


class _Field:
    """The nearest-neighbour field of a level's targets: a source centre (sy, sx) per target and its distance."""

    def __init__(self, level: _Level, sy: np.ndarray, sx: np.ndarray) -> None:
        self.level = level
        self.sy, self.sx = sy, sx
        self.rescore()

    def rescore(self) -> None:
        """Describe the targets' patches in the level's current image and score their matches again."""
        lv = self.level
        self.descriptors = lv.describe(lv.targets)
        self.cost = self._distances(np.arange(len(lv.ty)), self.sy, self.sx)

    def _distances(self, sel: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        mine = self.descriptors if len(sel) == len(self.descriptors) else self.descriptors[sel]  # (sel: ascending)
        diff = self.level.describe(self.level.flat(sy, sx))
        np.subtract(mine, diff, out=diff)
        return np.einsum("ij,ij->i", diff, diff)

    def _try(self, sel: np.ndarray, cy: np.ndarray, cx: np.ndarray) -> None:
        """Take the candidates (cy, cx) for targets ``sel`` where they are valid and closer."""
        lv = self.level
        ok = (cy >= 0) & (cy < lv.h) & (cx >= 0) & (cx < lv.w)
        sel, cy, cx = sel[ok], cy[ok], cx[ok]
        ok = lv.valid[cy, cx]
        sel, cy, cx = sel[ok], cy[ok], cx[ok]
        if len(sel) == 0:
            return
        cost = self._distances(sel, cy, cx)
        better = cost < self.cost[sel]
        sel = sel[better]
        self.sy[sel], self.sx[sel], self.cost[sel] = cy[better], cx[better], cost[better]

    def search(self, rng: np.random.Generator, reach: int = 0) -> None:
        """One PatchMatch pass: propagation from neighbours at jump distances, then random search (within
        ``reach`` px when given)."""
        lv = self.level
        everyone = np.arange(len(lv.ty))
        step = JUMP * lv.grid
        while step >= lv.grid:
            for dy, dx in ((0, step), (0, -step), (step, 0), (-step, 0)):
                ny, nx = lv.ty + dy, lv.tx + dx
                inside = (ny >= 0) & (ny < lv.h) & (nx >= 0) & (nx < lv.w)
                k = np.full(len(ny), -1, np.int64)
                k[inside] = lv.index[ny[inside], nx[inside]]
                sel = everyone[k >= 0]
                k = k[sel]
                self._try(sel, self.sy[k] - dy, self.sx[k] - dx)
            step //= 2
        radius = min(max(lv.h, lv.w), reach) if reach else max(lv.h, lv.w)
        n = len(everyone)
        while radius >= 1:
            self._try(
                everyone, self.sy + rng.integers(-radius, radius + 1, n), self.sx + rng.integers(-radius, radius + 1, n)
            )
            radius //= 2

    def vote(self) -> np.ndarray:
        """The level's image with each hole pixel replaced by the weighted mean of what the overlapping source
        patches say it is (patches nearer the hole's edge weigh more; weighing by match distance instead lets the
        easy, smooth matches inside the hole outvote the edge and leaves a seam)."""
        lv = self.level
        weight = lv.confidence
        into = lv.targets[:, None] + lv.offsets[None, :]  # N x P: the pixels each target patch covers
        take = lv.flat(self.sy, self.sx)[:, None] + lv.offsets[None, :]
        inside = lv.hole_flat[into]
        into, take = into[inside], take[inside]
        w = np.broadcast_to(weight[:, None], inside.shape)[inside]
        size = len(lv.hole_flat)
        total = np.bincount(into, weights=w, minlength=size)
        values = lv.pixels[take]
        out = lv.pixels.copy()
        filled = total > 0
        for c in range(3):
            out[filled, c] = np.bincount(into, weights=w * values[:, c], minlength=size)[filled] / total[filled]
        return out.reshape(lv.h + 2 * RADIUS, lv.w + 2 * RADIUS, 3)[RADIUS:-RADIUS, RADIUS:-RADIUS].copy()


def _upsampled_field(coarse: _Field, level: _Level, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Initial sources for ``level``'s targets: each coarse match's offset doubled; random where that is invalid."""
    cl = coarse.level
    offset_y = np.zeros((cl.h, cl.w), np.int64)
    offset_x = np.zeros((cl.h, cl.w), np.int64)
    offset_y[cl.ty, cl.tx] = coarse.sy - cl.ty
    offset_x[cl.ty, cl.tx] = coarse.sx - cl.tx
    cy = np.minimum(level.ty // 2, cl.h - 1)
    cx = np.minimum(level.tx // 2, cl.w - 1)
    sy = level.ty + 2 * offset_y[cy, cx]
    sx = level.tx + 2 * offset_x[cy, cx]
    ok = (sy >= 0) & (sy < level.h) & (sx >= 0) & (sx < level.w)
    ok[ok] = level.valid[sy[ok], sx[ok]]
    ry, rx = level.random_sources(int((~ok).sum()), rng)
    sy[~ok], sx[~ok] = ry, rx
    return sy, sx


def _smooth(img: np.ndarray, hole: np.ndarray, method: Tuple[int, int] = SMOOTH) -> np.ndarray:
    """``img`` with ``hole`` filled by OpenCV's inpainting (``method``: flag and radius; float32 in and out)."""
    flag, radius = method
    filled = cv2.inpaint(np.clip(img, 0, 255).astype(np.uint8), hole.astype(np.uint8) * 255, radius, flag)
    return filled.astype(np.float32)


def _nearest(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``img`` (float32) with each ``hole`` pixel replaced by its nearest known pixel."""
    _, labels = cv2.distanceTransformWithLabels(
        hole.astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )  # each known pixel's own label, and on each hole pixel its nearest known pixel's
    known = ~hole
    by_label = np.empty((int(labels.max()) + 1, 3), np.float32)
    by_label[labels[known]] = img[known]
    out = img.copy()
    out[hole] = by_label[labels[hole]]
    return out


def is_thin(hole: np.ndarray) -> bool:
    """True for a thin hole (see THIN): no pixel deeper than THIN px inside it, and THIN_ASPECT * THIN px long."""
    x, y, w, h = cv2.boundingRect(hole.astype(np.uint8))
    if max(w, h) < THIN_ASPECT * THIN:
        return False
    return float(cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3).max()) <= THIN


def patch_fill(
    rgb: np.ndarray, hole: np.ndarray, check: Callable[[], None] = lambda: None, seed: int = 0
) -> np.ndarray:
    """Fill the pixels of the H x W x 3 uint8 ``rgb`` where ``hole`` (H x W, non-zero = hole) with patches from the
    rest of the image; pixels outside the hole are returned unchanged. Deterministic for a given ``seed``.

    Falls back to OpenCV's Telea inpainting where too little of the image is known to take patches from.
    ``check`` is called between iterations (raise in it to stop).
    """
    hole = np.asarray(hole) > 0
    out = np.array(rgb, dtype=np.uint8, copy=True, order="C")
    if not hole.any():
        return out
    rng = np.random.default_rng(seed)
    pyramid: List[Tuple[np.ndarray, np.ndarray]] = [(out.astype(np.float32), hole)]  # finest first
    while True:
        img, hl = pyramid[-1]
        ys, xs = np.nonzero(hl)
        span = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) if len(ys) else 0
        if span <= COARSEST_HOLE or min(hl.shape) // 2 < COARSEST_IMAGE:
            break
        pyramid.append(_downscale(img, hl))
    levels = len(pyramid)
    thin = is_thin(hole)
    field = None
    for depth in range(levels - 1, -1, -1):
        check()
        img, hl = pyramid[depth]
        fine_thin = thin and depth == 0  # (coarser levels are cheap, and their matches seed this one)
        level = _Level(img, hl, THIN_STRIDE if fine_thin else 1)
        if len(level.source_ys) == 0:  # nothing to copy from: smooth fill at this level
            pyramid[depth] = (_smooth(img, hl), hl)
            field = None
            continue
        if field is None:  # coarsest (or after a level without sources): a first guess, random matches
            level.set_image(_nearest(img, hl) if fine_thin else _smooth(img, hl))
            field = _Field(level, *level.random_sources(len(level.ty), rng))
        else:  # the coarser level's matches, doubled, give this level's first guess
            field = _Field(level, *_upsampled_field(field, level, rng))
            level.set_image(field.vote())
            field.rescore()
        if fine_thin:
            iterations = THIN_ITERATIONS
        else:
            iterations = FINE_ITERATIONS + round((COARSE_ITERATIONS - FINE_ITERATIONS) * depth / max(1, levels - 1))
        for i in range(iterations):
            check()
            field.search(rng, THIN_REACH if fine_thin else 0)
            level.set_image(field.vote())
            if i + 1 < iterations:  # (the next level scores its own first guess)
                field.rescore()
        pyramid[depth] = (level.img, hl)
    out[hole] = np.clip(np.rint(pyramid[0][0][hole]), 0, 255).astype(np.uint8)
    return out
