"""Pixel conversions between Krita's native layouts and the wire's ``bgra8`` / ``gray8`` (stdlib only).

Krita stores RGBA U8 and U16 as B, G, R, A and RGBA F16 and F32 as R, G, B, A, little-endian, not premultiplied.
Profiles with a linear tone curve (Krita's default for 16-bit and float documents, e.g. ``sRGB-elle-V2-g10.icc``)
are converted through the sRGB curve, so the server always sees sRGB-encoded 8-bit pixels.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from typing import List, Union

BytesLike = Union[bytes, bytearray, memoryview]
SUPPORTED_MODEL = "RGBA"
DEPTHS = ("U8", "U16", "F16", "F32")
_LINEAR_MARKERS = ("g10", "linear", "scrgb", "lin")


@dataclass
class ColorInfo:
    """A document's colour model, channel depth, and whether its profile's tone curve is linear."""

    model: str
    depth: str
    linear: bool


class UnsupportedColorSpace(ValueError):
    """The document's color space cannot be sent to the server; the message tells the painter what to do."""


def check_color_space(model: str, depth: str) -> None:
    """Raise UnsupportedColorSpace unless (model, depth) is RGBA in 8/16-bit integer or 16/32-bit float."""
    if model != SUPPORTED_MODEL:
        raise UnsupportedColorSpace(
            f"Paintbridge works on RGB/Alpha images; this one is {model} {depth}. "
            "Convert it with Image > Convert Image Color Space... (RGB/Alpha) first."
        )
    if depth not in DEPTHS:
        raise UnsupportedColorSpace(
            f"Paintbridge cannot read {model} images of depth {depth}; use 8 or 16-bit integer or 16/32-bit float."
        )


def is_linear_profile(profile: str) -> bool:
    """Whether an ICC profile name denotes a linear tone curve."""
    name = (profile or "").lower()
    return any(marker in name for marker in _LINEAR_MARKERS)


def bytes_per_pixel(depth: str) -> int:
    return {"U8": 4, "U16": 8, "F16": 8, "F32": 16}[depth]


def _srgb_encode(v: float) -> float:
    if v <= 0.0031308:
        return 12.92 * v
    return 1.055 * v ** (1 / 2.4) - 0.055


def _srgb_decode(v: float) -> float:
    if v <= 0.04045:
        return v / 12.92
    return ((v + 0.055) / 1.055) ** 2.4


# Lookup tables: 8-bit sRGB value -> linear float, and a fine linear grid -> 8-bit sRGB value.
_DECODE8 = [_srgb_decode(i / 255.0) for i in range(256)]
_ENCODE_STEPS = 4096
_ENCODE_GRID = bytes(int(round(_srgb_encode(i / _ENCODE_STEPS) * 255)) for i in range(_ENCODE_STEPS + 1))


def _to8(values, linear: bool, scale: float) -> bytes:
    """Channel values (0..scale) to 8-bit, through the sRGB curve when ``linear``."""
    if linear:
        grid, steps = _ENCODE_GRID, _ENCODE_STEPS / scale
        return bytes(grid[min(_ENCODE_STEPS, max(0, int(v * steps + 0.5)))] for v in values)
    k = 255.0 / scale
    return bytes(min(255, max(0, int(v * k + 0.5))) for v in values)


def _alpha8(values, scale: float) -> bytes:
    k = 255.0 / scale
    return bytes(min(255, max(0, int(v * k + 0.5))) for v in values)


def to_bgra8(data: BytesLike, depth: str, linear: bool = False) -> BytesLike:
    """Krita pixels of ``depth`` (RGBA model) as ``bgra8`` bytes: ``U8`` pixels are that already (``data`` itself,
    not a copy), other depths are converted into new bytes."""
    if depth == "U8":
        return data
    if depth == "U16":
        values = array("H")
        values.frombytes(bytes(data))
        order = (0, 1, 2)  # B, G, R already
        scale = 65535.0
    elif depth == "F16":
        n = len(data) // 2
        values = struct.unpack(f"<{n}e", bytes(data))
        order = (2, 1, 0)  # R, G, B in memory -> B, G, R
        scale = 1.0
    elif depth == "F32":
        values = array("f")
        values.frombytes(bytes(data))
        order = (2, 1, 0)
        scale = 1.0
    else:
        raise UnsupportedColorSpace(f"unsupported depth {depth}")
    if depth == "U16" and not linear:
        # High byte of each little-endian 16-bit value: exact to within one step, and C speed.
        return bytes(memoryview(bytes(data))[1::2])
    out = bytearray(len(values))
    for dst, src in enumerate(order):
        out[dst::4] = _to8(values[src::4], linear, scale)
    out[3::4] = _alpha8(values[3::4], scale)
    return bytes(out)


def from_bgra8(data: bytes, depth: str, linear: bool = False) -> bytes:
    """``bgra8`` bytes as Krita pixels of ``depth`` (RGBA model); 8-bit pixels are ``data`` itself (any bytes-like)."""
    if depth == "U8":
        return data
    data = bytes(data)
    if depth == "U16" and not linear:
        out = bytearray(len(data) * 2)
        out[0::2] = data
        out[1::2] = data  # v * 257: 0 -> 0, 255 -> 65535
        return bytes(out)
    color: List[float] = _DECODE8 if linear else [i / 255.0 for i in range(256)]
    alpha = [i / 255.0 for i in range(256)]
    n = len(data)
    if depth == "U16":
        out16 = array("H", bytes(n * 2))
        for ch in range(3):
            out16[ch::4] = array("H", (int(color[v] * 65535 + 0.5) for v in data[ch::4]))
        out16[3::4] = array("H", (v * 257 for v in data[3::4]))
        return out16.tobytes()
    vals = [0.0] * n
    for dst, src in ((0, 2), (1, 1), (2, 0)):  # R, G, B in memory from B, G, R
        vals[dst::4] = [color[v] for v in data[src::4]]
    vals[3::4] = [alpha[v] for v in data[3::4]]
    if depth == "F16":
        return struct.pack(f"<{n}e", *vals)
    if depth == "F32":
        return array("f", vals).tobytes()
    raise UnsupportedColorSpace(f"unsupported depth {depth}")


def alpha_of_bgra8(data: bytes) -> bytes:
    """The alpha channel of ``bgra8`` bytes as ``gray8``."""
    return bytes(memoryview(bytes(data))[3::4])
