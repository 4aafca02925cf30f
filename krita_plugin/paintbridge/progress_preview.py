"""In-progress previews, without Qt: read the small image a ``progress`` event carries and fit it to the panel.

A job sent with ``previews: true`` gets a ``preview`` image payload (``rgba8``, a few dozen to a few hundred pixels a
side) with its ``progress`` events. The panel only shows it; it never goes into the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from .wire import protocol

MAX_SIDE = (
    512  # diffusion previews are latent-sized (<= 128 px), upscale-and-refine ones <= 256 px; larger is not shown
)


@dataclass(frozen=True)
class Preview:
    """One progress preview: ``rgba8`` pixels (straight alpha, rows without padding) and the step it shows."""

    width: int
    height: int
    data: bytes
    step: int
    total: int


def preview_of(msg: "protocol.Message") -> Optional[Preview]:
    """The preview a ``progress`` message carries (the protocol has checked its format and size); None when it has
    none or one larger than the panel shows."""
    if not isinstance(msg, protocol.Progress) or msg.preview is None:
        return None
    payload = msg.preview
    if max(payload.width, payload.height) > MAX_SIDE:
        return None
    return Preview(payload.width, payload.height, bytes(payload.data), msg.step, msg.total)


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
