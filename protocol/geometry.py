"""Context-box geometry shared by both plugins: which part of the canvas a job reads and where results go."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """An axis-aligned pixel rectangle; ``x + width`` is exclusive."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: "Box") -> "Box":
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.right, other.right), min(self.bottom, other.bottom)
        return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


SNAP = 8
MIN_PADDING = 16
MAX_PADDING = 512
PADDING_FRACTION = 0.3
MIN_CONTEXT = 64


def context_padding(selection: Box) -> int:
    """Padding around a selection: a share of its larger side, so small selections see their surroundings too."""
    side = max(selection.width, selection.height)
    return max(MIN_PADDING, min(MAX_PADDING, int(round(side * PADDING_FRACTION))))


def _span(lo: int, hi: int, pad: int, limit: int) -> tuple:
    """One axis of ``context_box``: pad, reach the minimum size, snap outwards, clamp, then win back the minimum
    size on the free side when the canvas edge cut it."""
    lo, hi = lo - pad, hi + pad
    short = MIN_CONTEXT - (hi - lo)
    if short > 0:
        lo, hi = lo - short // 2, hi + short - short // 2
    lo, hi = (lo // SNAP) * SNAP, -((-hi) // SNAP) * SNAP
    lo, hi = max(0, lo), min(limit, hi)
    need = min(MIN_CONTEXT, limit) - (hi - lo)
    if need > 0:
        if lo == 0:
            hi = min(limit, hi + need)
        else:
            lo = max(0, lo - need)
    return lo, hi


def context_box(selection: Box, canvas_width: int, canvas_height: int) -> Box:
    """The box a job reads: selection bounds grown by ``context_padding``, at least ``MIN_CONTEXT`` px a side,
    snapped outwards to multiples of 8 and clamped to the canvas. An empty selection means the whole canvas."""
    canvas = Box(0, 0, canvas_width, canvas_height)
    selection = selection.intersect(canvas)
    if selection.is_empty:
        return canvas
    pad = context_padding(selection)
    x0, x1 = _span(selection.x, selection.right, pad, canvas_width)
    y0, y1 = _span(selection.y, selection.bottom, pad, canvas_height)
    return Box(x0, y0, x1 - x0, y1 - y0)


def selection_bounds_from_mask(mask: bytes, width: int, height: int) -> Box:
    """Bounds of the non-zero bytes of a ``gray8`` mask (``Box(0, 0, 0, 0)`` when all zero)."""
    rows = [y for y in range(height) if mask[y * width : (y + 1) * width].strip(b"\x00")]
    if not rows:
        return Box(0, 0, 0, 0)
    x0, x1 = width, 0
    for y in rows:
        row = mask[y * width : (y + 1) * width]
        x0 = min(x0, len(row) - len(row.lstrip(b"\x00")))
        x1 = max(x1, len(row.rstrip(b"\x00")))
    return Box(x0, rows[0], x1 - x0, rows[-1] + 1 - rows[0])


def crop_gray(mask: bytes, width: int, box: Box) -> bytes:
    """Cut ``box`` out of a ``gray8`` buffer that is ``width`` px wide."""
    return b"".join(mask[(y * width + box.x) : (y * width + box.right)] for y in range(box.y, box.bottom))
