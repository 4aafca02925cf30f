"""Where results go: canvas growth for outpaint, layer names, and the part of a result that lies on the canvas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from .wire import Box

PREVIEW_NAME = "Paintbridge preview"
MAX_NAME_PROMPT = 40


@dataclass(frozen=True)
class Growth:
    """How much the canvas grows on each side (outpaint)."""

    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @property
    def any(self) -> bool:
        return bool(self.left or self.top or self.right or self.bottom)

    def resize_args(self, width: int, height: int) -> Tuple[int, int, int, int]:
        """Arguments for Krita's ``Document.resizeImage(x, y, w, h)``: the new left/top edge and size."""
        return -self.left, -self.top, width + self.left + self.right, height + self.top + self.bottom


def growth_for(layer: Box, canvas_width: int, canvas_height: int) -> Growth:
    """How far the canvas must grow so that ``layer`` (in document coordinates) fits on it."""
    return Growth(
        left=max(0, -layer.x),
        top=max(0, -layer.y),
        right=max(0, layer.right - canvas_width),
        bottom=max(0, layer.bottom - canvas_height),
    )


def shifted(layer: Box, growth: Growth) -> Box:
    """A result's box after the canvas grew by ``growth`` (document coordinates move by the left/top growth)."""
    return Box(layer.x + growth.left, layer.y + growth.top, layer.width, layer.height)


def layer_name(prompt: str, seed: int, mode: str) -> str:
    """The name of an applied result: the prompt (shortened) and the seed, e.g. ``"a red fox (seed 42)"``."""
    text = " ".join(prompt.split())
    if len(text) > MAX_NAME_PROMPT:
        text = text[: MAX_NAME_PROMPT - 1].rstrip() + "…"
    if not text:
        text = {"inpaint": "Inpaint", "img2img": "Refine", "outpaint": "Outpaint", "upscale": "Upscale",
                "generate": "Generate"}.get(mode, mode.capitalize())
    return f"{text} (seed {seed})" if seed >= 0 else text


def crop_rows(data: bytes, width: int, height: int, bpp: int, part: Box, origin: Box) -> bytes:
    """The bytes of ``part`` (a box inside ``origin``, both in document coordinates) from a ``width`` x ``height``
    image that sits at ``origin``."""
    assert origin.width == width and origin.height == height
    x0, y0 = part.x - origin.x, part.y - origin.y
    stride = width * bpp
    return b"".join(
        data[(y0 + row) * stride + x0 * bpp:(y0 + row) * stride + (x0 + part.width) * bpp]
        for row in range(part.height)
    )


def on_canvas(layer: Box, canvas_width: int, canvas_height: int) -> Optional[Box]:
    """The part of ``layer`` that lies on the canvas (None when none does)."""
    part = layer.intersect(Box(0, 0, canvas_width, canvas_height))
    return None if part.is_empty else part


def masked(bgra: bytes, mask: bytes) -> bytes:
    """``bgra8`` pixels with alpha scaled by a same-size ``gray8`` mask (a result shaped by the selection)."""
    if len(bgra) != 4 * len(mask):
        raise ValueError(f"mask has {len(mask)} pixels but the image has {len(bgra) // 4}")
    out = bytearray(bgra)
    out[3::4] = bytes((a * m + 127) // 255 for a, m in zip(bgra[3::4], mask))
    return bytes(out)
