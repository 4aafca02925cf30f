"""Raw image payloads: width, height, pixel format and bytes; checked before use, converted without copies where possible.

Pure Python: byte-order conversions use extended-slice assignment on ``bytearray``, which runs at C speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .errors import TOO_LARGE, ProtocolError, bad_field

RGBA8 = "rgba8"
BGRA8 = "bgra8"
GRAY8 = "gray8"

BYTES_PER_PIXEL = {RGBA8: 4, BGRA8: 4, GRAY8: 1}
PIXEL_FORMATS = tuple(BYTES_PER_PIXEL)

# Side length limit independent of the pixel limit, so a 1 x 10^9 image is refused too.
MAX_SIDE = 16384


@dataclass(frozen=True)
class ImagePayload:
    """An image as it travels: ``data`` holds ``height`` rows of ``width`` pixels, no padding."""

    width: int
    height: int
    format: str
    data: bytes

    @property
    def bytes_per_pixel(self) -> int:
        return BYTES_PER_PIXEL[self.format]

    def to_wire(self) -> dict:
        """The msgpack-ready map for this payload."""
        return {"width": self.width, "height": self.height, "format": self.format, "data": bytes(self.data)}

    def converted(self, fmt: str) -> "ImagePayload":
        """This image in pixel format ``fmt`` (``rgba8``, ``bgra8`` or ``gray8``)."""
        if fmt == self.format:
            return self
        return ImagePayload(self.width, self.height, fmt, convert_pixels(self.data, self.format, fmt))


def convert_pixels(data: bytes, src: str, dst: str) -> bytes:
    """Convert raw pixels between ``rgba8``, ``bgra8`` and ``gray8`` (gray expands to opaque gray)."""
    if src == dst:
        return bytes(data)
    if src in (RGBA8, BGRA8) and dst in (RGBA8, BGRA8):
        out = bytearray(data)
        out[0::4] = data[2::4]
        out[2::4] = data[0::4]
        return bytes(out)
    if src == GRAY8:
        out = bytearray(len(data) * 4)
        for i in range(3):
            out[i::4] = data
        out[3::4] = b"\xff" * len(data)
        return bytes(out)
    if dst == GRAY8:
        # Luma as the mean-free integer approximation of Rec. 601; alpha is dropped.
        r_off, b_off = (0, 2) if src == RGBA8 else (2, 0)
        r, g, b = data[r_off::4], data[1::4], data[b_off::4]
        return bytes((299 * rr + 587 * gg + 114 * bb + 500) // 1000 for rr, gg, bb in zip(r, g, b))
    raise ValueError(f"cannot convert {src} to {dst}")


def parse_payload(
    value: Any,
    field: str,
    max_pixels: int,
    formats: tuple = PIXEL_FORMATS,
) -> ImagePayload:
    """Validate a wire map as an image payload; sizes are checked before the bytes are touched."""
    if not isinstance(value, Mapping):
        raise bad_field(field, f"must be a map with width, height, format and data, got {type(value).__name__}")
    for key in ("width", "height"):
        v = value.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad_field(f"{field}.{key}", "must be an integer" if key in value else "is missing")
        if v <= 0:
            raise bad_field(f"{field}.{key}", f"must be positive, got {v}")
        if v > MAX_SIDE:
            raise ProtocolError(TOO_LARGE, f"field '{field}.{key}' is {v}, over the limit of {MAX_SIDE} px",
                                field=f"{field}.{key}")
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
    data = value.get("data")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise bad_field(f"{field}.data", "must be binary (msgpack bin)" if "data" in value else "is missing")
    expected = width * height * BYTES_PER_PIXEL[fmt]
    if len(data) != expected:
        raise bad_field(
            f"{field}.data",
            f"holds {len(data)} bytes but {width}x{height} {fmt} needs {expected}",
        )
    return ImagePayload(width, height, fmt, bytes(data))
