"""From procedure arguments and pixels read from the image to a protocol ``job`` message (no GIMP needed).

The GIMP side asks ``plan_box`` which part of the canvas to read, reads it (``rgba8`` pixels, a ``gray8`` mask, the
control layers), and hands the bytes to ``build_job``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from protocol.geometry import Box, context_box
from protocol.images import GRAY8, RGBA8, ImagePayload

from .arguments import MAX_CONTROLS, SAMPLER_BY_NICK, ProcedureSpec
from .errors import InputError


@dataclass(frozen=True)
class ControlSlot:
    """A control-layer argument set that names a layer: which layer (a host object) and how to use it."""

    layer: Any
    type: str
    strength: float
    preprocess: bool


@dataclass(frozen=True)
class ControlInput:
    """A control layer's pixels in the context box (``rgba8``) with its settings."""

    type: str
    strength: float
    preprocess: bool
    image: bytes


def control_prefix(index: int) -> str:
    """Argument-name prefix of control slot ``index`` (1-based): ``control``, ``control-2`` ..."""
    return "control" if index == 1 else f"control-{index}"


def control_slots(values: Mapping[str, Any]) -> List[ControlSlot]:
    """The control slots whose layer argument is set, in order."""
    slots = []
    for i in range(1, MAX_CONTROLS + 1):
        p = control_prefix(i)
        layer = values.get(f"{p}-layer")
        if layer is None:
            continue
        slots.append(ControlSlot(layer, str(values.get(f"{p}-type") or "canny"),
                                 float(values.get(f"{p}-strength", 1.0)), bool(values.get(f"{p}-preprocess", False))))
    return slots


def extend_from_values(values: Mapping[str, Any]) -> Dict[str, int]:
    """Outpaint's ``params.extend`` from the ``extend`` amount and the four side switches."""
    amount = int(values.get("extend", 0))
    sides = {side: amount if values.get(f"extend-{side}") else 0 for side in ("left", "top", "right", "bottom")}
    if amount <= 0 or not any(sides.values()):
        raise InputError("Outpaint needs at least one side to extend and an amount above 0 px")
    return sides


def params_from_values(spec: ProcedureSpec, values: Mapping[str, Any]) -> Dict[str, Any]:
    """The job's ``params`` map from the procedure's argument values (only what the procedure has)."""
    names = {arg.name for arg in spec.args}
    params: Dict[str, Any] = {}
    for name in ("steps", "seed", "batch", "grow", "feather"):
        if name in names:
            params[name] = int(values[name])
    if "strength" in names:
        params["strength"] = float(values["strength"])
    if "cfg" in names and float(values["cfg"]) > 0:
        params["cfg"] = float(values["cfg"])
    if "sampler" in names:
        nick = values["sampler"] or "default"
        if nick != "default" and nick not in SAMPLER_BY_NICK:
            raise InputError(f"Unknown sampler {nick!r}; choose one of: default, {', '.join(SAMPLER_BY_NICK)}")
        params["sampler"] = SAMPLER_BY_NICK.get(nick, "")
    if "fill" in names:
        params["fill"] = values["fill"]
    if spec.mode == "outpaint":
        params["extend"] = extend_from_values(values)
    if spec.mode == "preprocess":
        params["preprocessor"] = str(values["preprocessor"])
        params["low_threshold"] = int(values["low-threshold"])
        params["high_threshold"] = int(values["high-threshold"])
        if params["low_threshold"] > params["high_threshold"]:
            raise InputError("The low threshold is above the high threshold")
    if spec.mode == "upscale":
        params["scale"] = float(values["scale"])
        params["upscaler"] = str(values.get("upscaler") or "").strip()
        params["refine"] = float(values.get("refine", 0.0))
    return params


def plan_box(mode: str, selection: Box, canvas_width: int, canvas_height: int) -> Box:
    """The part of the canvas a job reads, given the mask's bounds (empty = nothing selected).

    Inpaint needs a mask and reads the context box around it; img2img and generate read the context box, or the
    whole canvas without a selection; outpaint reads the whole canvas; upscale reads the selection's bounds exactly.
    """
    canvas = Box(0, 0, canvas_width, canvas_height)
    selection = selection.intersect(canvas)
    if mode == "inpaint" and selection.is_empty:
        raise InputError("Inpaint needs a selection (or a layer mask) that marks the area to repaint: "
                         "select it first")
    if mode in ("inpaint", "img2img", "generate"):
        return context_box(selection, canvas_width, canvas_height)
    if mode in ("upscale", "preprocess") and not selection.is_empty:
        return selection
    return canvas


def uses_mask(mode: str, selection: Box) -> bool:
    """Whether a job sends a mask: the masked modes do whenever something is selected."""
    return mode in ("inpaint", "img2img", "generate") and not selection.is_empty


def build_job(
    spec: ProcedureSpec,
    values: Mapping[str, Any],
    box: Box,
    image: bytes,
    mask: Optional[bytes] = None,
    controls: Optional[List[ControlInput]] = None,
) -> Dict[str, Any]:
    """The ``job`` message (without id) for ``spec`` from argument values and the context box's pixels."""
    expected = box.width * box.height
    if len(image) != expected * 4:
        raise ValueError(f"image holds {len(image)} bytes, the {box.width}x{box.height} box needs {expected * 4}")
    if mask is not None:
        if len(mask) != expected:
            raise ValueError(f"mask holds {len(mask)} bytes, the {box.width}x{box.height} box needs {expected}")
        if not mask.strip(b"\x00"):
            raise InputError("The mask is empty inside the area to repaint: select (or paint white on the layer "
                             "mask) where the image should change")
    job: Dict[str, Any] = {
        "mode": spec.mode,
        "model": str(values.get("model") or "").strip(),
        "prompt": str(values.get("prompt") or "").strip(),
        "negative_prompt": str(values.get("negative-prompt") or "").strip(),
        "image": ImagePayload(box.width, box.height, RGBA8, image).to_wire(),
        "params": params_from_values(spec, values),
        "x": box.x,
        "y": box.y,
        "result_format": RGBA8,
    }
    if mask is not None:
        job["mask"] = ImagePayload(box.width, box.height, GRAY8, mask).to_wire()
    job["controls"] = []
    for ctl in controls or []:
        if len(ctl.image) != expected * 4:
            raise ValueError(f"control image holds {len(ctl.image)} bytes, the box needs {expected * 4}")
        job["controls"].append({
            "type": ctl.type,
            "image": ImagePayload(box.width, box.height, RGBA8, ctl.image).to_wire(),
            "strength": ctl.strength,
            "preprocess": ctl.preprocess,
        })
    return job
