"""In-progress previews, without Qt: read the small image a ``progress`` event carries and fit it to the panel.

A job sent with ``previews: true`` gets a ``preview`` image payload (``rgba8``, a few dozen to a few hundred pixels a
side) with its ``progress`` events. The panel only shows it; it never goes into the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from .wire import client

RGBA8 = "rgba8"
MAX_SIDE = 512  # diffusion previews are latent-sized (<= 128 px), upscale-and-refine ones <= 256 px; larger is refused


@dataclass(frozen=True)
class Preview:
    """One progress preview: ``rgba8`` pixels (straight alpha, rows without padding) and the step it shows."""

    width: int
    height: int
    data: bytes
    step: int
    total: int


def _side(value) -> Optional[int]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        return None
    return value


def _get(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def preview_of(msg) -> Optional[Preview]:
    """The preview a ``progress`` message (typed or a wire map) carries; None when it has none or one the panel
    cannot show."""
    if client.wire.message_type(msg) != "progress":
        return None
    payload = client.wire.field_of(msg, "preview")
    if payload is None or _get(payload, "format") != RGBA8:
        return None
    width, height, data = _side(_get(payload, "width")), _side(_get(payload, "height")), _get(payload, "data")
    if width is None or height is None or not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    data = bytes(data)
    if len(data) != width * height * 4:
        return None
    step, total = client.wire.field_of(msg, "step", 0), client.wire.field_of(msg, "total", 0)
    return Preview(width, height, data, step if isinstance(step, int) else 0, total if isinstance(total, int) else 0)


def fit_size(width: int, height: int, max_width: int, max_height: int) -> Tuple[int, int]:
    """The largest size with ``width``:``height``'s aspect ratio that fits ``max_width`` x ``max_height`` (>= 1x1).

    Small previews are scaled up to fill the area, large ones down.
    """
    max_width, max_height = max(1, max_width), max(1, max_height)
    if width <= 0 or height <= 0:
        return max_width, max_height
    if width * max_height <= height * max_width:  # height is the limit
        return max(1, min(max_width, round(width * max_height / height))), max_height
    return max_width, max(1, min(max_height, round(height * max_width / width)))
