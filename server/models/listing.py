"""What the ``welcome`` and ``models`` messages say about one installed model: name, kind, architecture, format, path,
and what each kind adds (control types, variants, reference types, few-step presets, why it cannot be used)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import fewstep, identify_dit, ipadapter, redux

if TYPE_CHECKING:
    from .entry import ModelEntry


def entry_listing(entry: ModelEntry) -> dict:
    """The listing map of ``entry``."""
    listed = {
        "name": entry.name,
        "kind": entry.kind,
        "arch": entry.arch,
        "inpaint": entry.inpaint,
        "format": entry.format,
        "path": str(entry.path),
    }
    if entry.kind == "controlnet":
        listed["control_types"] = entry.info.get("control_types", [])
        listed["union"] = bool(entry.info.get("union"))
    if entry.info.get("variant"):
        listed["variant"] = entry.info["variant"]  # Flux/SD3: dev, schnell, fill, kontext, 3.5-large, ...
    if entry.kind == "checkpoint" and entry.arch in identify_dit.EDIT_FAMILIES:
        listed["edit"] = True  # runs mode "edit" (instruction edit): the plugins offer it
    if entry.kind == "checkpoint" and entry.arch in identify_dit.DECOMPOSE_FAMILIES:
        listed["decompose"] = True  # runs mode "decompose" (picture into layers), and only that
    if entry.kind in ("checkpoint", "lora"):
        listed.update(fewstep.listing(entry.info.get("few_step")))
    if entry.info.get("prediction"):
        listed["prediction"] = entry.info["prediction"]["type"]  # v-prediction (zero terminal SNR) checkpoints
    if entry.kind == "ipadapter":  # reference images
        listed["reference_types"] = ["face"] if entry.info.get("face") else ["style", "composition", "content"]
        listed["variant"] = entry.info.get("variant", "")
    if entry.kind == "clip_vision":
        listed["encoder"] = (
            redux.describe_siglip(entry.info) if entry.arch == redux.SIGLIP else ipadapter.describe_encoder(entry.info)
        )
    if entry.kind == "layerdiffuse":
        listed["role"] = entry.info.get("role", "")
    if entry.kind == "redux":  # reference images on Flux
        listed["reference_types"] = list(redux.REDUX_TYPES)
    if entry.problem:
        listed["problem"] = entry.problem
    return listed
