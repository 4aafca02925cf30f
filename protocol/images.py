"""Raw image payloads: width, height, pixel format and bytes; checked before use, converted without copies where possible.

Pure Python, and no per-pixel Python: byte-order conversions use extended-slice assignment on ``bytearray``, and
luma is computed on many pixels at once as one big integer with a 32-bit lane per pixel (``_luma``); both run at C
speed. A payload keeps the bytes-like object it was given or received (bytes, bytearray or memoryview) without copying
it; ``to_wire`` hands that same object to msgpack.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Tuple, Union

from .errors import TOO_LARGE, ProtocolError, bad_field

RGBA8 = "rgba8"
BGRA8 = "bgra8"
GRAY8 = "gray8"

BYTES_PER_PIXEL = {RGBA8: 4, BGRA8: 4, GRAY8: 1}
PIXEL_FORMATS = tuple(BYTES_PER_PIXEL)

# Side length limit independent of the pixel limit, so a 1 x 10^9 image is refused too.
MAX_SIDE = 16384

BytesLike = Union[bytes, bytearray, memoryview]


@dataclass(frozen=True)
class ImagePayload:
    """An image as it travels: ``data`` holds ``height`` rows of ``width`` pixels, no padding (any bytes-like object:
    it is not copied, so a bytearray given here must not change while the payload is in use)."""

    width: int
    height: int
    format: str
    data: BytesLike

    @property
    def bytes_per_pixel(self) -> int:
        return BYTES_PER_PIXEL[self.format]

    def to_wire(self) -> dict:
        """The msgpack-ready map for this payload."""
        return {"width": self.width, "height": self.height, "format": self.format, "data": self.data}

    def converted(self, fmt: str) -> "ImagePayload":
        """This image in pixel format ``fmt`` (``rgba8``, ``bgra8`` or ``gray8``)."""
        if fmt == self.format:
            return self
        return ImagePayload(self.width, self.height, fmt, convert_pixels(self.data, self.format, fmt))


def convert_pixels(data: BytesLike, src: str, dst: str) -> bytes:
    """Convert raw pixels between ``rgba8``, ``bgra8`` and ``gray8`` (gray expands to opaque gray; to gray is Rec. 601
    luma, ``(299 R + 587 G + 114 B + 500) // 1000``, alpha dropped)."""
    if src == dst:
        return bytes(data)
    if src in (RGBA8, BGRA8) and dst in (RGBA8, BGRA8):
        out = bytearray(data)
        out[0::4] = data[2::4]
        out[2::4] = data[0::4]
        return bytes(out)
    if src == GRAY8 and dst in (RGBA8, BGRA8):
        out = bytearray(b"\xff" * (len(data) * 4))
        for i in range(3):
            out[i::4] = data
        return bytes(out)
    if dst == GRAY8 and src in (RGBA8, BGRA8):
        view = memoryview(data).cast("B")
        red, blue = (0, 16) if src == RGBA8 else (16, 0)
        out = bytearray()
        for start in range(0, len(view), LUMA_CHUNK * 4):
            out += _luma(view[start : start + LUMA_CHUNK * 4], red, blue)
        return bytes(out)
    raise ValueError(f"cannot convert {src} to {dst}")


# Pixels converted to gray per step (a few big integers of 4 bytes per pixel each).
LUMA_CHUNK = 1 << 18


@lru_cache(maxsize=4)
def _lane_masks(n: int) -> Tuple[int, int, int]:
    """Big integers with ``n`` 32-bit lanes holding 0xFF, 0x7FFF and 1."""
    return (
        int.from_bytes(b"\xff\x00\x00\x00" * n, "little"),
        int.from_bytes(b"\xff\x7f\x00\x00" * n, "little"),
        int.from_bytes(b"\x01\x00\x00\x00" * n, "little"),
    )


def _luma(pixels: memoryview, red: int, blue: int) -> bytes:
    """``(299 R + 587 G + 114 B + 500) // 1000`` of every 4-byte pixel (R at bit ``red``, B at bit ``blue``), all
    pixels at once: the pixels read as one big integer are one 32-bit lane each, and every step keeps each lane's
    value inside its lane (the weighted sum < 2**18; // 1000 is // 8 then // 125 as ``* 33555 >> 22``, exact for
    quotients of // 8 below 59074, with products < 2**30)."""
    n = len(pixels) // 4
    byte, low15, ones = _lane_masks(n)
    x = int.from_bytes(pixels, "little")
    total = 299 * ((x >> red) & byte) + 587 * ((x >> 8) & byte) + 114 * ((x >> blue) & byte) + 500 * ones
    eighths = (total >> 3) & low15
    return (((eighths * 33555) >> 22) & byte).to_bytes(4 * n, "little")[0::4]


def payload_size(value: Mapping, field: str, max_pixels: int, formats: tuple = PIXEL_FORMATS) -> int:
    """The bytes a payload map's ``width``, ``height`` and ``format`` need, each checked (positive, within
    ``MAX_SIDE`` and ``max_pixels``, a format of ``formats``) before anything is allocated."""
    for key in ("width", "height"):
        v = value.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad_field(f"{field}.{key}", "must be an integer" if key in value else "is missing")
        if v <= 0:
            raise bad_field(f"{field}.{key}", f"must be positive, got {v}")
        if v > MAX_SIDE:
            raise ProtocolError(
                TOO_LARGE, f"field '{field}.{key}' is {v}, over the limit of {MAX_SIDE} px", field=f"{field}.{key}"
            )
    width, height = value["width"], value["height"]
    if width * height > max_pixels:
        raise ProtocolError(
            TOO_LARGE,
            f"field '{field}' is {width}x{height} = {width * height} px, over the server's limit of {max_pixels} px",
            field=field,
        )
    fmt = value.get("format")
    if fmt not in formats:
        raise bad_field(f"{field}.format", f"must be one of {', '.join(formats)}, got {fmt!r}")
    return width * height * BYTES_PER_PIXEL[fmt]


def parse_payload(
    value: Any,
    field: str,
    max_pixels: int,
    formats: tuple = PIXEL_FORMATS,
) -> ImagePayload:
    """Validate a wire map as an image payload; sizes are checked before the bytes are touched."""
    if not isinstance(value, Mapping):
        raise bad_field(field, f"must be a map with width, height, format and data, got {type(value).__name__}")
    expected = payload_size(value, field, max_pixels, formats)
    width, height, fmt = value["width"], value["height"], value["format"]
    data = value.get("data")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise bad_field(f"{field}.data", "must be binary (msgpack bin)" if "data" in value else "is missing")
    if isinstance(data, memoryview):
        if not data.c_contiguous:
            raise bad_field(f"{field}.data", "must be one contiguous block of bytes")
        data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    if len(data) != expected:
        raise bad_field(
            f"{field}.data",
            f"holds {len(data)} bytes but {width}x{height} {fmt} needs {expected}",
        )
    return ImagePayload(width, height, fmt, data)
