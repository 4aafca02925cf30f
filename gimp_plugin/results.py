"""Result layers: their names and where they go (no GIMP needed)."""

from __future__ import annotations

from typing import List, Sequence, Tuple

from protocol.geometry import Box
from protocol.messages import ResultLayer

MODE_TITLES = {
    "inpaint": "Inpaint",
    "img2img": "Img2img",
    "outpaint": "Outpaint",
    "upscale": "Upscale",
    "generate": "Generate",
    "preprocess": "Control",
}
MAX_SUBJECT = 48


def subject(mode: str, prompt: str) -> str:
    """A short subject for a layer name: the prompt cut at a word boundary, or the mode's title without one."""
    text = " ".join(prompt.split())
    if not text:
        return MODE_TITLES.get(mode, mode.capitalize())
    if len(text) <= MAX_SUBJECT:
        return text
    cut = text[:MAX_SUBJECT].rsplit(" ", 1)[0] or text[:MAX_SUBJECT]
    return cut.rstrip(",.;: ") + "…"


def layer_name(mode: str, prompt: str, layer: ResultLayer) -> str:
    """``'<prompt> (seed N)'``; results of the built-in engine, which has no seed, say so instead."""
    if mode == "preprocess":
        kind = layer.info.get("preprocessor") if layer.info else None
        return f"Control: {kind}" if kind else (layer.name or "Control")
    engine = str(layer.info.get("engine", "")) if layer.info else ""
    if engine == "classical":
        fill = layer.info.get("fill")
        return f"{subject(mode, prompt)} (classical{', ' + str(fill) if fill else ''})"
    if layer.seed is not None and layer.seed >= 0:
        return f"{subject(mode, prompt)} (seed {layer.seed})"
    return subject(mode, prompt)


def layer_names(mode: str, prompt: str, layers: Sequence[ResultLayer]) -> List[str]:
    """Names for a batch: unique, numbered (#2, #3 ...) where two would read the same."""
    names: List[str] = []
    for layer in layers:
        name = layer_name(mode, prompt, layer)
        if name in names:
            n = 2
            while f"{name} #{n}" in names:
                n += 1
            name = f"{name} #{n}"
        names.append(name)
    return names


def canvas_for(layers: Sequence[ResultLayer], canvas_width: int, canvas_height: int) -> Tuple[int, int, int, int]:
    """(width, height, offset_x, offset_y): the smallest canvas holding the old canvas and every result layer; the
    offsets say where the old canvas's origin lands (what GIMP's resize takes). Unchanged canvas → offsets 0."""
    x0 = min([0] + [layer.x for layer in layers])
    y0 = min([0] + [layer.y for layer in layers])
    x1 = max([canvas_width] + [layer.x + layer.width for layer in layers])
    y1 = max([canvas_height] + [layer.y + layer.height for layer in layers])
    return x1 - x0, y1 - y0, -x0, -y0


def layer_box(layer: ResultLayer, offset_x: int = 0, offset_y: int = 0) -> Box:
    """Where a result layer goes once the canvas origin moved by (offset_x, offset_y)."""
    return Box(layer.x + offset_x, layer.y + offset_y, layer.width, layer.height)
