"""Turn the panel's settings and the pixels read from the document into a protocol ``job`` map (no Qt, no Krita)."""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import List, Optional

from .wire import Box, context_box, protocol

MODES = ("generate", "inpaint", "img2img", "outpaint", "upscale")
MODE_LABELS = {
    "generate": "Generate",
    "inpaint": "Inpaint",
    "img2img": "Refine (img2img)",
    "outpaint": "Outpaint",
    "upscale": "Upscale",
}
MODE_STRENGTH = {"generate": 1.0, "inpaint": 1.0, "img2img": 0.55, "outpaint": 1.0, "upscale": 0.35}
CLASSICAL = "classical"


@dataclass(frozen=True)
class FamilyDefaults:
    """Good starting values for a model family."""

    steps: int
    cfg: float
    sampler: str
    resolution: int


FAMILY_DEFAULTS = {
    "sd15": FamilyDefaults(steps=25, cfg=7.0, sampler="DPM++ 2M Karras", resolution=512),
    "sdxl": FamilyDefaults(steps=30, cfg=5.5, sampler="DPM++ 2M Karras", resolution=1024),
    "lcm": FamilyDefaults(steps=6, cfg=1.5, sampler="LCM", resolution=512),
    CLASSICAL: FamilyDefaults(steps=1, cfg=0.0, sampler="", resolution=0),
}


def family_of(model: Optional[dict]) -> str:
    """The defaults family of a model listing entry (None or the classical engine: ``classical``)."""
    if not model or model.get("name") == CLASSICAL or model.get("arch") in (None, "", CLASSICAL):
        return CLASSICAL
    name = str(model.get("name", "")).lower()
    if "lcm" in name or "turbo" in name or "lightning" in name:
        return "lcm"
    return "sdxl" if model.get("arch") == "sdxl" else "sd15"


def defaults_for(model: Optional[dict]) -> FamilyDefaults:
    return FAMILY_DEFAULTS[family_of(model)]


@dataclass
class Settings:
    """Everything the panel lets the painter choose for one job."""

    mode: str = "inpaint"
    model: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    strength: float = 1.0
    steps: int = 25
    cfg: float = 7.0
    sampler: str = ""
    seed: int = 0
    random_seed: bool = True
    batch: int = 1
    extend_left: int = 0
    extend_top: int = 0
    extend_right: int = 0
    extend_bottom: int = 0
    scale: float = 2.0
    upscaler: str = ""
    refine: float = 0.0
    image_source: str = "visible"  # "visible" (composited image) or "layer" (the active layer)
    mask_source: str = "selection"  # "selection" (or a selected selection/transparency mask) or "alpha"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        """Settings from a stored map; unknown keys are ignored and ill-typed values fall back to defaults."""
        out = cls()
        for key, default in asdict(out).items():
            value = data.get(key, default)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else default
            else:
                ok = isinstance(value, type(default)) and not isinstance(value, bool)
            setattr(out, key, value if ok else default)
        if out.mode not in MODES:
            out.mode = cls.mode
        return out


@dataclass
class ControlInput:
    """One control layer's contribution to a job: its pixels over the context box."""

    type: str
    image: bytes  # bgra8, context box size
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0


@dataclass
class JobInputs:
    """What was read from the document for one job."""

    box: Box  # where the image sits in the document
    image: Optional[bytes]  # bgra8 of the box (None for generate)
    mask: Optional[bytes]  # gray8 of the box (None: the whole box)
    controls: List[ControlInput] = field(default_factory=list)


class JobError(ValueError):
    """A job cannot be built from what the painter chose; the message says what to change."""


def needs_mask(mode: str) -> bool:
    return mode == "inpaint"


def input_box(mode: str, selection: Optional[Box], canvas_width: int, canvas_height: int) -> Box:
    """The part of the document a job reads: the context box around the selection, or the whole canvas.

    Outpaint and upscale always work on the whole canvas.
    """
    if mode in ("outpaint", "upscale") or selection is None or selection.is_empty:
        return Box(0, 0, canvas_width, canvas_height)
    return context_box(selection, canvas_width, canvas_height)


def build_job(settings: Settings, inputs: JobInputs, seed: int, previews: bool = True) -> dict:
    """The ``job`` map for ``settings`` and ``inputs``; raises JobError naming what is missing or wrong."""
    mode = settings.mode
    if mode not in MODES:
        raise JobError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    box = inputs.box
    if box.is_empty:
        raise JobError("the area to work on is empty")
    params = {
        "steps": int(settings.steps),
        "seed": int(seed),
        "batch": int(settings.batch),
    }
    if settings.sampler:
        params["sampler"] = settings.sampler
    if settings.cfg > 0:
        params["cfg"] = float(settings.cfg)
    if mode in ("img2img", "inpaint", "upscale") or (mode == "outpaint" and settings.strength < 1.0):
        params["strength"] = float(settings.strength)
    job: dict = {
        "mode": mode,
        "model": settings.model,
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt,
        "x": box.x,
        "y": box.y,
        "result_format": protocol.BGRA8,
        "previews": previews,
        "params": params,
    }
    if mode == "generate":
        params["width"], params["height"] = box.width, box.height
    else:
        if inputs.image is None:
            raise JobError(f"mode '{mode}' needs an image and none was read")
        job["image"] = _payload(box, protocol.BGRA8, inputs.image)
    if needs_mask(mode):
        if inputs.mask is None or not any(inputs.mask):
            raise JobError("Inpaint needs a selection (or a selected selection/transparency mask): "
                           "select the area to repaint first")
    if inputs.mask is not None and mode in ("inpaint", "img2img"):
        job["mask"] = _payload(box, protocol.GRAY8, inputs.mask)
    if mode == "outpaint":
        extend = {"left": settings.extend_left, "top": settings.extend_top,
                  "right": settings.extend_right, "bottom": settings.extend_bottom}
        if not any(extend.values()):
            raise JobError("Outpaint needs at least one side to extend: set a number of pixels for a side")
        params["extend"] = {k: int(v) for k, v in extend.items()}
    if mode == "upscale":
        params["scale"] = float(settings.scale)
        params["upscaler"] = settings.upscaler
        params["refine"] = float(settings.refine)
        params["batch"] = 1
    if inputs.controls:
        job["controls"] = [
            {"type": c.type, "image": _payload(box, protocol.BGRA8, c.image), "strength": float(c.strength),
             "start": float(c.start), "end": float(c.end)}
            for c in inputs.controls
        ]
    return job


def build_preprocess_job(preprocessor: str, box: Box, image: bytes) -> dict:
    """A ``preprocess`` job that turns ``image`` (bgra8 of ``box``) into a control image."""
    if preprocessor not in protocol.CONTROL_TYPES:
        raise JobError(f"unknown control type {preprocessor!r}")
    return {
        "mode": "preprocess", "model": "", "x": box.x, "y": box.y, "result_format": protocol.BGRA8,
        "image": _payload(box, protocol.BGRA8, image), "params": {"preprocessor": preprocessor},
    }


def _payload(box: Box, fmt: str, data: bytes) -> dict:
    expected = box.width * box.height * (1 if fmt == protocol.GRAY8 else 4)
    if len(data) != expected:
        raise JobError(f"read {len(data)} bytes for a {box.width}x{box.height} {fmt} image, expected {expected}")
    return {"width": box.width, "height": box.height, "format": fmt, "data": bytes(data)}
