"""Reading one job's inputs from a GIMP image (selection or layer mask, source pixels, control layers) and putting
results back; shared by the one-shot procedures and the live dialog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from gi.repository import Gimp

from protocol.geometry import crop_gray
from protocol.messages import ResultLayer

from . import host, settings
from .arguments import ProcedureSpec
from .errors import InputError
from .jobs import ControlInput, build_job, control_slots, plan_box, uses_mask
from .results import layer_names

INSTALL_INFO = "install.json"
PLUGIN_DIR = Path(__file__).resolve().parent.parent


def profile_dir() -> Path:
    """GIMP's profile folder, where the remembered server settings live."""
    return Path(Gimp.directory())


def server_command() -> Optional[List[str]]:
    """The command that starts a local server, as the installer recorded it (None when it did not)."""
    try:
        info = json.loads((PLUGIN_DIR / INSTALL_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    command = info.get("server_command") if isinstance(info, dict) else None
    return [str(part) for part in command] if isinstance(command, list) and command else None


def server_target(values: Dict[str, Any]) -> Tuple[str, Optional[str]]:
    """(url, token) for a run: the arguments, else the remembered ones."""
    return settings.resolve(profile_dir(), str(values.get("server") or ""), str(values.get("token") or ""))


def capture_job(spec: ProcedureSpec, image, active, values: Dict[str, Any], hide: Sequence[object] = ()) -> dict:
    """The job for ``spec`` from the image's current selection (or layer mask), pixels and control layers.
    Layers in ``hide`` are left out of the visible image (the live preview)."""
    if image.get_floating_sel() is not None:
        raise InputError("The image has a floating selection: anchor it or make it a new layer first")
    width, height = image.get_width(), image.get_height()
    full_mask = None
    if values.get("mask-source") == "layer-mask":
        if active is None:
            raise InputError("Mask = Active layer's mask needs an active layer")
        full_mask, selected = host.read_layer_mask(active, width, height)
    else:
        selected = host.selection_bounds(image)
    box = plan_box(spec.mode, selected, width, height)
    mask = None
    if uses_mask(spec.mode, selected):
        mask = crop_gray(full_mask, width, box) if full_mask is not None else host.read_selection(image, box)
    if values.get("source") == "layer":
        if active is None:
            raise InputError("Source = Active layer needs an active layer")
        pixels = host.read_layer(host.layer_of(active), box)
    else:
        pixels = host.read_visible(image, box, hide)
    controls = [ControlInput(slot.type, slot.strength, slot.preprocess, host.read_layer(slot.layer, box))
                for slot in control_slots(values)]
    return build_job(spec, values, box, pixels, mask, controls)


def place_results(spec: ProcedureSpec, image, active, job: dict, results: List[ResultLayer],
                  values: Dict[str, Any], interactive: bool = False):
    """Insert the results (one undo step); an upscale into a new image returns that image, else None."""
    names = layer_names(spec.mode, job["prompt"], results)
    if spec.mode == "upscale" and values.get("target") != "layer":
        new_image = host.new_image_with(image, results, names)
        if interactive:
            Gimp.Display.new(new_image)
            Gimp.displays_flush()
        return new_image
    canvas = None
    if spec.mode == "upscale":
        scale = float(values["scale"])
        canvas = (max(1, round(image.get_width() * scale)), max(1, round(image.get_height() * scale)))
    host.insert_results(image, active, results, names, canvas)
    return None
