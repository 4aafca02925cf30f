"""Match a job's control layers to installed ControlNets of the checkpoint's architecture, and prepare their images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from ..core import Control, Params
from ..models.registry import ModelEntry, ModelRegistry, arch_name
from ..preprocess import inpaint_condition, preprocess_image

# ControlNet-Union (xinsir promax) control modes per control type.
UNION_MODES = {
    "pose": 0,
    "depth": 1,
    "softedge": 2,
    "scribble": 2,
    "canny": 3,
    "lineart": 3,
    "normal": 4,
    "tile": 6,
    "inpaint": 7,
}


@dataclass
class ControlPlan:
    control: Control
    entry: ModelEntry


def _describe(entries: List[ModelEntry]) -> str:
    if not entries:
        return "no ControlNet is installed"
    return "installed: " + ", ".join(
        f"{e.name} ({arch_name(e.arch)}{', union' if e.info.get('union') else ''}"
        f"{', ' + '/'.join(e.info.get('control_types') or []) if e.info.get('control_types') else ''})"
        for e in entries
    )


def select(controls: List[Control], checkpoint: ModelEntry, registry: ModelRegistry) -> List[ControlPlan]:
    """A ControlNet for each control: by ``control.model`` when given, else by the type keywords in ControlNet
    names among those of the checkpoint's architecture, else a union ControlNet that knows the type."""
    plans = []
    installed = [e for e in registry.entries("controlnet") if e.problem is None]
    for i, control in enumerate(controls):
        field = f"controls[{i}].model"
        if control.model:
            advice = f": pick a {arch_name(checkpoint.arch)} ControlNet"
            entry = registry.get_fitting(control.model, "controlnet", checkpoint, "ControlNet", field, advice=advice)
            if entry.info.get("union") and control.type not in UNION_MODES:
                raise ProtocolError(
                    UNSUPPORTED,
                    f"union ControlNet '{entry.name}' has no '{control.type}' mode (it knows {', '.join(UNION_MODES)})",
                    field=field,
                )
            plans.append(ControlPlan(control, entry))
            continue
        same_arch = [e for e in installed if e.arch == checkpoint.arch]
        typed = [
            e for e in same_arch if not e.info.get("union") and control.type in (e.info.get("control_types") or [])
        ]
        union = [e for e in same_arch if e.info.get("union") and control.type in UNION_MODES]
        if typed or union:
            plans.append(ControlPlan(control, (typed or union)[0]))
            continue
        raise ProtocolError(
            MODEL_NOT_FOUND,
            f"no {arch_name(checkpoint.arch)} ControlNet for control type '{control.type}' (checkpoint "
            f"'{checkpoint.name}'): none has '{control.type}' in its name and no union ControlNet is installed; "
            f"{_describe(installed)}",
            field=field,
        )
    unions = {p.entry.name for p in plans if p.entry.info.get("union")}
    if unions and (len(unions) > 1 or any(not p.entry.info.get("union") for p in plans)):
        raise ProtocolError(
            UNSUPPORTED,
            "a union ControlNet cannot be combined with other ControlNets in one job: use "
            "the union model for every control layer, or only regular ControlNets",
            field="controls",
        )
    return plans


def inpaint_tensor(rgb: np.ndarray, mask: np.ndarray):
    """What inpaint ControlNets take, ``preprocess.inpaint_condition`` as a [1, 3, H, W] tensor."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(inpaint_condition(rgb, mask).transpose(2, 0, 1)[None]))


def uses_inpaint_condition(plan: ControlPlan) -> bool:
    """An 'inpaint' control on a regular ControlNet is built from the job's image and mask, not from the layer."""
    return plan.control.type == "inpaint" and not plan.entry.info.get("union")


def control_image(control: Control, registry: ModelRegistry, params: Params, device: str = "cpu") -> np.ndarray:
    """The control layer as the ControlNet sees it (run through its preprocessor first when asked)."""
    if control.preprocess:  # the preprocessor gets the alpha too: a sketch on a transparent layer is lines on paper
        image = preprocess_image(
            control.type,
            control.image,
            registry,
            low_threshold=params.low_threshold,
            high_threshold=params.high_threshold,
            seed=max(0, params.seed),
            device=device,
        )
        return np.ascontiguousarray(image[..., :3])
    return np.ascontiguousarray(control.image[..., :3])
