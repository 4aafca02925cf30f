"""The server's defaults, one table each: per mode, per model family. Engines read them when a job leaves a parameter
open, and ``welcome.defaults`` sends the same tables to the plugins, so both sides cannot disagree."""

from __future__ import annotations

from typing import Dict, Iterable, List

MODE_DEFAULTS: Dict[str, dict] = {
    "generate": {"strength": 1.0},
    "img2img": {"strength": 0.7},
    "inpaint": {"strength": 1.0},
    "outpaint": {"strength": 1.0},
    "upscale": {"strength": 0.35, "scale": 2.0},  # strength: of the refine pass, when the user turns it on
    "edit": {
        "strength": 1.0
    },  # instruction edit (Flux.1 Kontext, Flux.2 Klein): the whole box is redrawn, kept by the mask
}

DEFAULT_SAMPLER = "DPM++ 2M Karras"

FAMILY_DEFAULTS: Dict[str, dict] = {
    "sd15": {"steps": 25, "cfg": 7.0, "sampler": DEFAULT_SAMPLER, "resolution": 512},
    "sdxl": {"steps": 30, "cfg": 6.0, "sampler": DEFAULT_SAMPLER, "resolution": 1024},
    "flux": {"steps": 28, "cfg": 3.5, "sampler": "Euler", "resolution": 1024},
    "flux-fill": {"steps": 28, "cfg": 30.0, "sampler": "Euler", "resolution": 1024},
    "flux-kontext": {"steps": 28, "cfg": 2.5, "sampler": "Euler", "resolution": 1024},
    "sd3": {"steps": 28, "cfg": 4.5, "sampler": "Euler", "resolution": 1024},
    "flux2-klein": {"steps": 4, "cfg": 1.0, "sampler": "Euler", "resolution": 1024},  # the distilled releases
    "z-image": {"steps": 50, "cfg": 4.0, "sampler": "Euler", "resolution": 1024},
    # Chroma: cfg is real classifier-free guidance with the negative prompt (Flux.1 dev embeds its guidance instead)
    "chroma": {"steps": 40, "cfg": 3.0, "sampler": "Euler", "resolution": 1024},
    # Qwen-Image: cfg is true classifier-free guidance (two passes a step, negative prompt " " when none is given)
    "qwen-image": {"steps": 30, "cfg": 4.0, "sampler": "Euler", "resolution": 1024},
    "qwen-image-edit": {"steps": 30, "cfg": 4.0, "sampler": "Euler", "resolution": 1024},
    "qwen-image-edit-plus": {"steps": 30, "cfg": 4.0, "sampler": "Euler", "resolution": 1024},
    "qwen-image-layered": {"steps": 50, "cfg": 4.0, "sampler": "Euler", "resolution": 640},
    "classical": {"steps": 1, "cfg": 0.0, "sampler": "", "resolution": 0},
}

# Variants whose published settings differ from their family's (few-step distilled models), by listing ``variant``.
VARIANT_DEFAULTS: Dict[str, dict] = {
    "schnell": {"steps": 4, "cfg": 0.0},
    "3-medium": {"cfg": 7.0},
    "3.5-large-turbo": {"steps": 4, "cfg": 0.0},
    "klein-4b-base": {"steps": 50, "cfg": 4.0},
    "klein-9b-base": {"steps": 50, "cfg": 4.0},
    "z-image-turbo": {"steps": 9, "cfg": 0.0},
}

LAYER_NAME_LENGTH = 40

# Denoising strength per mode when a job leaves ``params.strength`` open.
DEFAULT_STRENGTH: Dict[str, float] = {mode: d["strength"] for mode, d in MODE_DEFAULTS.items() if mode != "upscale"}


def default_cfg(arch: str) -> float:
    """Guidance scale of a model family when a job leaves ``params.cfg`` open (sd15's for unknown families)."""
    return FAMILY_DEFAULTS.get(arch, FAMILY_DEFAULTS["sd15"])["cfg"]


def family_settings(family: str, variant: str = "") -> dict:
    """A family's defaults with its variant's differences applied (sd15's for unknown families)."""
    return {**FAMILY_DEFAULTS.get(family, FAMILY_DEFAULTS["sd15"]), **VARIANT_DEFAULTS.get(variant, {})}


def welcome_defaults() -> dict:
    """``welcome.defaults`` (``variants``: per listing ``variant``, what differs from its family's defaults)."""
    return {
        "modes": {m: dict(d) for m, d in MODE_DEFAULTS.items()},
        "families": {f: dict(d) for f, d in FAMILY_DEFAULTS.items()},
        "variants": {v: dict(d) for v, d in VARIANT_DEFAULTS.items()},
        "layer_name_length": LAYER_NAME_LENGTH,
    }


def family_of(entry: dict) -> str:
    """A model entry's family: a key of ``FAMILY_DEFAULTS``, ``""`` when none fits."""
    if entry.get("kind") == "builtin":
        return "classical"
    arch = entry.get("arch") or ""
    return arch if arch in FAMILY_DEFAULTS else ""


def with_family(entries: Iterable[dict]) -> List[dict]:
    """Model listing entries with ``family`` filled in."""
    return [dict(e, family=e.get("family") or family_of(e)) for e in entries]
