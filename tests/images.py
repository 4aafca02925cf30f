"""Test pictures for jobs over the wire: an RGBA gradient with noise, a rectangle mask, their payloads, a classical
inpaint job of them, and a result layer's pixels as an array."""

from __future__ import annotations

import numpy as np

from protocol import ResultLayer


def rgba_image(w: int = 64, h: int = 64, seed: int = 0) -> np.ndarray:
    """An opaque ``h x w`` RGBA picture: red and green ramps across and down, blue noise of ``seed``."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = (xs * 255 // max(1, w - 1)).astype(np.uint8)
    img[..., 1] = (ys * 255 // max(1, h - 1)).astype(np.uint8)
    img[..., 2] = rng.integers(0, 255, (h, w), dtype=np.uint8)
    img[..., 3] = 255
    return img


def payload(arr: np.ndarray, fmt: str) -> dict:
    """The wire payload of ``arr`` in pixel format ``fmt`` (``rgba8``, ``bgra8``, ``gray8``...)."""
    arr = np.ascontiguousarray(arr)
    return {"width": arr.shape[1], "height": arr.shape[0], "format": fmt, "data": arr.tobytes()}


def rect_mask(w: int = 64, h: int = 64, box=(20, 20, 40, 44)) -> np.ndarray:
    """A ``h x w`` gray mask, 255 inside ``box`` (x0, y0, x1, y1), 0 elsewhere."""
    mask = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    return mask


def inpaint_job(img: np.ndarray, mask: np.ndarray, **extra) -> dict:
    """A classical inpaint job of ``img`` under ``mask`` with no grow or feather; ``extra`` replaces its fields."""
    job = {
        "mode": "inpaint",
        "model": "classical",
        "image": payload(img, "rgba8"),
        "mask": payload(mask, "gray8"),
        "params": {"grow": 0, "feather": 0},
    }
    job.update(extra)
    return job


def layer_pixels(layer: ResultLayer) -> np.ndarray:
    """A result layer's RGBA pixels as an ``h x w x 4`` array (a view of its data)."""
    return np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4)
