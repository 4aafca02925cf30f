"""Where results go and what they are called, for both editors: layer names (length from ``welcome.defaults``),
canvas growth for results that reach past the canvas (outpaint), the enlarged canvas of an upscale into a layer, and
the part of a result that lies on the canvas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .modes import RULES
from .settings import FALLBACK_DEFAULTS
from .wire import Box, protocol

PREVIEW_NAME = "Paintbridge preview"
NAME_LENGTH = FALLBACK_DEFAULTS["layer_name_length"]


def subject(mode: str, prompt: str, max_length: int = NAME_LENGTH) -> str:
    """A short subject for a layer name: the prompt (whitespace folded) cut at a word boundary to ``max_length``
    characters with "…", or the mode's title when there is no prompt."""
    text = " ".join(prompt.split())
    if not text:
        return RULES[mode].label if mode in RULES else mode.capitalize()
    if len(text) <= max_length:
        return text
    cut = text[: max_length - 1]
    if " " in cut and text[max_length - 1] != " ":
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(",.;: ") + "…"


def layer_name(mode: str, prompt: str, layer: Any, max_length: int = NAME_LENGTH) -> str:
    """``'<prompt> (seed N)'``; the built-in engine's results say ``(classical, <fill>)`` instead (no seed);
    control images are ``'Control: <kind>'``. ``layer`` is a result layer (``seed``, ``info``, ``name``)."""
    info = getattr(layer, "info", None) or {}
    if getattr(layer, "group", None):  # a layer of a group (decompose) keeps the server's name: its place in it
        return getattr(layer, "name", "") or subject(mode, prompt, max_length)
    if mode == "preprocess":
        kind = info.get("preprocessor")
        return f"Control: {kind}" if kind else (getattr(layer, "name", "") or "Control")
    if info.get("engine") == "classical":
        fill = info.get("fill")
        return f"{subject(mode, prompt, max_length)} (classical{', ' + str(fill) if fill else ''})"
    seed = getattr(layer, "seed", -1)
    if seed is not None and seed >= 0:
        return f"{subject(mode, prompt, max_length)} (seed {seed})"
    return subject(mode, prompt, max_length)


def layer_names(mode: str, prompt: str, layers: Sequence[Any], max_length: int = NAME_LENGTH) -> List[str]:
    """Names for a batch: unique, numbered (#2, #3 ...) where two would read the same."""
    names: List[str] = []
    for layer in layers:
        name = layer_name(mode, prompt, layer, max_length)
        if name in names:
            n = 2
            while f"{name} #{n}" in names:
                n += 1
            name = f"{name} #{n}"
        names.append(name)
    return names


@dataclass(frozen=True)
class Group:
    """Result layers that go into one layer group: its ``name`` and the indexes of its layers in the result, bottom
    first (the order they arrived in)."""

    name: str
    members: Tuple[int, ...]


def groups(layers: Sequence[Any]) -> List[Group]:
    """The layer groups of a result, in order of their first layer; a layer without ``group`` belongs to none."""
    found: Dict[str, List[int]] = {}
    for i, layer in enumerate(layers):
        name = getattr(layer, "group", None)
        if name:
            found.setdefault(str(name), []).append(i)
    return [Group(name, tuple(members)) for name, members in found.items()]


@dataclass(frozen=True)
class Growth:
    """How far the canvas grows on each side so that every result fits (outpaint); zero when none has to."""

    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @property
    def any(self) -> bool:
        return bool(self.left or self.top or self.right or self.bottom)

    def new_size(self, width: int, height: int) -> Tuple[int, int]:
        return width + self.left + self.right, height + self.top + self.bottom

    def shifted(self, box: Box) -> Box:
        """Where ``box`` (old document coordinates) lies once the canvas grew: its origin moved by left/top."""
        return Box(box.x + self.left, box.y + self.top, box.width, box.height)

    def resize_args(self, width: int, height: int) -> Tuple[int, int, int, int]:
        """(x, y, w, h) of the new canvas in old coordinates (Krita's ``Document.resizeImage``)."""
        w, h = self.new_size(width, height)
        return -self.left, -self.top, w, h

    def offsets(self) -> Tuple[int, int]:
        """Where the old canvas's origin lands on the new one (GIMP's ``Image.resize`` offsets)."""
        return self.left, self.top


def box_of(layer: Any) -> Box:
    """A result layer's box in document coordinates."""
    return Box(int(layer.x), int(layer.y), int(layer.width), int(layer.height))


def canvas_growth(
    boxes: Iterable[Box], canvas_width: int, canvas_height: int, minimum: Optional[Tuple[int, int]] = None
) -> Growth:
    """The growth that makes the canvas hold the old canvas, every box, and at least ``minimum`` = (w, h)."""
    boxes = list(boxes)
    want_w, want_h = minimum or (canvas_width, canvas_height)
    x0 = min([0] + [b.x for b in boxes])
    y0 = min([0] + [b.y for b in boxes])
    x1 = max([canvas_width, want_w] + [b.right for b in boxes])
    y1 = max([canvas_height, want_h] + [b.bottom for b in boxes])
    return Growth(-x0, -y0, x1 - canvas_width, y1 - canvas_height)


def upscaled_size(width: int, height: int, scale: float) -> Tuple[int, int]:
    """The size of a ``width`` x ``height`` area upscaled by ``scale`` (the server's rounding)."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def on_canvas(box: Box, canvas_width: int, canvas_height: int) -> Optional[Box]:
    """The part of ``box`` that lies on the canvas (None when none does)."""
    part = box.intersect(Box(0, 0, canvas_width, canvas_height))
    return None if part.is_empty else part


def crop(data: bytes, origin: Box, part: Box, bytes_per_pixel: int) -> bytes:
    """The bytes of ``part`` out of an image that covers ``origin`` (both in document coordinates)."""
    x0, y0 = part.x - origin.x, part.y - origin.y
    if x0 < 0 or y0 < 0 or x0 + part.width > origin.width or y0 + part.height > origin.height:
        raise ValueError(f"{part} does not lie inside {origin}")
    stride = origin.width * bytes_per_pixel
    if x0 == 0 and part.width == origin.width:
        return bytes(data[y0 * stride : (y0 + part.height) * stride])
    return b"".join(
        data[(y0 + row) * stride + x0 * bytes_per_pixel : (y0 + row) * stride + (x0 + part.width) * bytes_per_pixel]
        for row in range(part.height)
    )


def pixels_in(layer: Any, fmt: str) -> Any:
    """A result layer's pixels in ``fmt`` (``rgba8`` or ``bgra8``), converted only when the server sent another; else
    the layer's own bytes-like data, not a copy (a read-only view of a shared file when the result came through shared
    memory): a host API that needs ``bytes`` takes its one copy there."""
    return layer.data if layer.format == fmt else protocol.convert_pixels(layer.data, layer.format, fmt)
