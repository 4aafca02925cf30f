"""One document both editors' host tests generate into, so their results can be compared pixel for pixel.

A 256x192 RGBA canvas filled with ``pattern()``, a soft elliptical selection (the ellipse inscribed in the box at
(64, 48) of size 128x96, its edge feathered over ``FEATHER`` px: ``selection()``), then Generate with the tiny SD1.5
model, ``PROMPT``, ``SEED``, ``STEPS`` and every other option at its default (from the server's ``welcome``). Each
host test writes the applied result layer, the whole canvas as straight-alpha RGBA, to
``test-artifacts/generate-ellipse-<editor>.png`` (``krita``, ``gimp``). Pure Python: the Krita driver gets the
bytes through files.

Upscale of a selection uses the same canvas (no soft selection: the rectangle ``UPSCALE_BOX``), scale
``UPSCALE_SCALE``, every other option at its default; the new document's pixels go to
``test-artifacts/upscale-selection-<editor>.png``.
"""

from __future__ import annotations

import math

WIDTH, HEIGHT = 256, 192
ELLIPSE = (64, 48, 128, 96)  # x, y, width, height of the ellipse's bounding box
FEATHER = 8.0  # px over which the selection falls from 255 (inside) to 0 (on the rim)
MODEL = "tiny-sd15"
PROMPT = "a red fox in the snow"
SEED = 1234
STEPS = 4
ARTIFACT = "generate-ellipse-{editor}.png"
# Upscale of a selection, on a fresh document with the same pattern and a rectangular selection of this box
UPSCALE_BOX = (8, 8, 24, 16)  # x, y, width, height
UPSCALE_SCALE = 2.0
UPSCALE_ARTIFACT = "upscale-selection-{editor}.png"


def pattern() -> bytes:
    """The canvas as ``rgba8``: smooth gradients with a few hard-edged squares, opaque."""
    out = bytearray(WIDTH * HEIGHT * 4)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            i = (y * WIDTH + x) * 4
            r = 128 + int(100 * math.sin(x / 11.0) * math.cos(y / 9.0))
            g, b = (y * 255) // (HEIGHT - 1), (x * 255) // (WIDTH - 1)
            if (x // 16 + y // 16) % 5 == 0:
                r = g = b = 32
            out[i : i + 4] = bytes((r, g, b, 255))
    return bytes(out)


def selection() -> bytes:
    """The soft elliptical selection as ``gray8`` over the canvas (255 inside, 0 outside, a ramp at the rim)."""
    x0, y0, w, h = ELLIPSE
    cx, cy, rx, ry = x0 + w / 2, y0 + h / 2, w / 2, h / 2
    out = bytearray(WIDTH * HEIGHT)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            d = math.hypot((x + 0.5 - cx) / rx, (y + 0.5 - cy) / ry)
            out[y * WIDTH + x] = max(0, min(255, int(round((1.0 - d) * min(rx, ry) / FEATHER * 255))))
    return bytes(out)


def rgba_to_bgra(data: bytes) -> bytes:
    out = bytearray(data)
    out[0::4], out[2::4] = data[2::4], data[0::4]
    return bytes(out)
