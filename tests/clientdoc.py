"""An in-memory document for the client-core tests: one RGBA layer and a soft selection, read the way both adapters
read theirs (Krita in bgra8, GIMP in rgba8). A real implementation of ``client.jobs.DocumentReader``, not a mock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

from protocol.geometry import Box, selection_bounds_from_mask
from protocol.images import BGRA8, RGBA8, convert_pixels
from protocol.messages import Welcome


def welcome(**fields) -> Welcome:
    """A ``welcome`` as a client gets it (typed), with ``fields`` and the required ones filled in."""
    return Welcome(protocol="1.1", server_version="test", **fields)


def crop(data: bytes, width: int, bpp: int, box: Box) -> bytes:
    """``box`` out of a ``width``-px-wide buffer; outside the canvas reads as zeros (as both hosts do)."""
    height = len(data) // (width * bpp)
    out = bytearray(box.width * box.height * bpp)
    for row in range(box.height):
        y = box.y + row
        if not 0 <= y < height:
            continue
        x0, x1 = max(0, box.x), min(width, box.right)
        if x1 <= x0:
            continue
        src = data[(y * width + x0) * bpp : (y * width + x1) * bpp]
        start = (row * box.width + (x0 - box.x)) * bpp
        out[start : start + len(src)] = src
    return bytes(out)


def ellipse_mask(width: int, height: int, cx: float, cy: float, rx: float, ry: float, soft: float = 6.0) -> bytes:
    """A soft elliptical selection (255 inside, a ramp over ``soft`` px, 0 outside)."""
    out = bytearray(width * height)
    for y in range(height):
        for x in range(width):
            d = (((x + 0.5 - cx) / rx) ** 2 + ((y + 0.5 - cy) / ry) ** 2) ** 0.5
            edge = (1.0 - d) * min(rx, ry) / soft
            out[y * width + x] = max(0, min(255, int(round(255 * (edge + 0.5)))))
    return bytes(out)


def gradient(width: int, height: int) -> bytes:
    return bytes(
        v for y in range(height) for x in range(width) for v in ((x * 7) % 256, (y * 5) % 256, (x + y) % 256, 255)
    )


@dataclass
class MemoryDocument:
    width: int
    height: int
    rgba: bytes
    selection: bytes  # gray8 over the canvas; all zero = nothing selected
    layers: Dict[str, bytes] = field(default_factory=dict)  # control layers, rgba8 over the canvas

    def selection_bounds(self) -> Box:
        return selection_bounds_from_mask(self.selection, self.width, self.height)


class Reader:
    """``DocumentReader`` over a MemoryDocument in one pixel order."""

    def __init__(self, doc: MemoryDocument, image_format: str) -> None:
        self.doc, self.image_format = doc, image_format
        self.reads = []

    def _pixels(self, data: bytes, box: Box) -> bytes:
        rgba = crop(data, self.doc.width, 4, box)
        return rgba if self.image_format == RGBA8 else convert_pixels(rgba, RGBA8, BGRA8)

    def read_image(self, box: Box) -> bytes:
        self.reads.append(("image", box))
        return self._pixels(self.doc.rgba, box)

    def read_mask(self, box: Box) -> bytes:
        self.reads.append(("mask", box))
        return crop(self.doc.selection, self.doc.width, 1, box)

    def read_layer(self, layer: str, box: Box) -> bytes:
        self.reads.append(("layer", box))
        return self._pixels(self.doc.layers[layer], box)
