"""What a checkpoint of each family can run, as ``welcome.capabilities.families`` announces it: the modes, which of
them take control layers and which control types the installed ControlNets serve, the techniques (hires fix,
detailer), the sampling options (VAE, CLIP skip, refiner), regions, reference types, transparency, speed levels,
seamless modes and the families of the LoRAs it takes. Built from the tables the engines refuse by, so what an
editor offers and what the server runs cannot disagree.
"""

from __future__ import annotations

from typing import Dict, List

from protocol.messages import CONTROL_TYPES, REFERENCE_TYPES, TILEABLE_MODES, TRANSPARENT_MODES

from .diffusion import controls as sd_controls, engine as sd_engine
from .diffusion.regions import FAMILIES as UNET_REGION_FAMILIES
from .diffusion.stepcache import FAMILIES as FAST_FAMILIES
from .families import controlnets as family_controls, engine as family_engine, layered as family_layered
from .families.specs import FAMILIES as TRANSFORMER_FAMILIES
from .models.identify_dit import DECOMPOSE_FAMILIES, EDIT_FAMILIES, NAMES
from .models.ipadapter import REFERENCE_FAMILIES
from .models import lorafit
from .models.layerdiffuse import FAMILIES as TRANSPARENT_FAMILIES
from .models.qwen import FAMILIES as QWEN_FAMILIES  # 3-D VAEs: no wrap-around (tileable)
from .models.redux import REDUX_FAMILIES, REDUX_TYPES
from .models.registry import ModelRegistry, arch_name

UNET_FAMILIES = ("sd15", "sdxl")  # checkpoints the diffusers UNet engine runs
TECHNIQUES = ("hires", "detail")  # run after the job by the UNet engine only
TECHNIQUE_MODES = ("generate", "img2img", "inpaint", "outpaint")  # the modes the hires fix and detailer follow
SD_SAMPLING = ("vae", "clip_skip")  # job options only the UNet engine honours
REFINER_FAMILIES = ("sdxl",)
REGION_FAMILIES = UNET_REGION_FAMILIES + tuple(family_engine.FamilyEngine.region_families)  # blended / masked attention


def checkpoint_modes(arch: str) -> List[str]:
    """The modes a checkpoint of ``arch`` runs (instruction edit only on the families that edit)."""
    if arch in DECOMPOSE_FAMILIES:  # Qwen-Image-Layered splits pictures into layers, and does nothing else
        return [family_layered.MODE]
    modes = sd_engine.MODES if arch in UNET_FAMILIES else family_engine.MODES
    return [m for m in modes if (m != "edit" or arch in EDIT_FAMILIES) and m != family_layered.MODE]


def control_modes(arch: str) -> List[str]:
    """The modes whose jobs take control layers on a checkpoint of ``arch``."""
    if arch in UNET_FAMILIES:
        return [m for m in sd_engine.MODES if m != "detail"]
    return list(family_controls.CONTROL_MODES.get(arch, ()))


def installed_control_types(registry: ModelRegistry, arch: str) -> List[str]:
    """The control types an installed ControlNet of ``arch`` serves (by its name, or a union ControlNet's modes), in
    the protocol's order: what a job of that family can be sent without ``model_not_found``."""
    served = set()
    for entry in registry.entries("controlnet"):
        if entry.problem is not None or entry.arch != arch:
            continue
        if not entry.info.get("union"):
            served.update(entry.info.get("control_types") or ())
        else:
            served.update(
                sd_controls.union_types(entry) if arch in UNET_FAMILIES else family_controls.union_types(arch)
            )
    return [t for t in CONTROL_TYPES if t in served]


def family(registry: ModelRegistry, arch: str) -> dict:
    """What a checkpoint of ``arch`` can run (one entry of ``capabilities.families``)."""
    unet = arch in UNET_FAMILIES
    modes = checkpoint_modes(arch)
    controlled = [m for m in control_modes(arch) if m in modes]
    return {
        "name": arch_name(arch) if unet else NAMES.get(arch, arch),
        "modes": modes,
        "control_modes": controlled,
        "max_controls": None if unet else 1,
        "control_types": installed_control_types(registry, arch) if controlled else [],
        "techniques": list(TECHNIQUES) if unet else [],
        "technique_modes": [m for m in TECHNIQUE_MODES if m in modes] if unet else [],
        "sampling": list(SD_SAMPLING) + (["refiner"] if arch in REFINER_FAMILIES else []) if unet else [],
        "regions": arch in REGION_FAMILIES,
        "reference_types": list(REFERENCE_TYPES)
        if arch in REFERENCE_FAMILIES
        else list(REDUX_TYPES)
        if arch in REDUX_FAMILIES
        else [],
        "transparent": [m for m in TRANSPARENT_MODES if m in modes] if arch in TRANSPARENT_FAMILIES else [],
        "speed_levels": ["quality"] + (["fast"] if arch in FAST_FAMILIES else []),
        "tileable": [m for m in TILEABLE_MODES if m in modes] if arch not in QWEN_FAMILIES else [],
        "lora_families": list(lorafit.lora_families(arch)),
    }


def families(registry: ModelRegistry) -> Dict[str, dict]:
    """``capabilities.families``: every checkpoint family this server runs, by its ``arch``."""
    return {arch: family(registry, arch) for arch in UNET_FAMILIES + tuple(TRANSFORMER_FAMILIES)}
