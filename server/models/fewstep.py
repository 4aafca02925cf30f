"""Few-step models (LCM, Turbo, Lightning, Hyper-SD): recognise checkpoints and LoRAs, and the sampler, steps and CFG
each family is distilled for.

Evidence, strongest first: an LCM-distilled UNet (``time_cond_proj_dim`` in a diffusers config, a ``cond_proj``
tensor in a file); the safetensors metadata (``modelspec.title``, kohya's ``ss_output_name`` ...); the file or folder
name as the last resort ("sdxl_lightning_4step_lora", "Hyper-SDXL-8steps-CFG-lora", "sd_xl_turbo_1.0").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Optional

from . import headers

# family -> (sampler, steps, cfg, timestep spacing the distillation expects or None)
PRESETS = {
    "lcm": ("LCM", 4, 1.0, None),
    "turbo": ("Euler a", 4, 1.0, "trailing"),
    "lightning": ("Euler", 4, 1.0, "trailing"),
    "hyper": ("DDIM", 8, 1.0, "trailing"),
}
HYPER_CFG = 5.0  # Hyper-SD's "-CFG" variants are distilled to keep classifier-free guidance
METADATA_KEYS = (
    "modelspec.title",
    "modelspec.description",
    "modelspec.architecture",
    "ss_output_name",
    "ss_sd_model_name",
    "ss_training_comment",
    "name",
    "title",
    "description",
)
_FAMILY_WORDS = (
    ("lightning", re.compile(r"lightning")),
    ("hyper", re.compile(r"hyper[-_ ]?s[dx]|hyper")),
    ("turbo", re.compile(r"turbo")),
    ("lcm", re.compile(r"(?<![a-z])lcm(?![a-z])")),
)
_STEPS = re.compile(r"(\d+)[-_ ]?steps?(?![a-z])")


def metadata(path: Path) -> Dict[str, str]:
    """The ``__metadata__`` map of a ``.safetensors`` header ({} for other files or when unreadable)."""
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        return headers.safetensors_header(path)[1]
    except headers.HeaderError:
        return {}


def _from_text(text: str) -> Optional[dict]:
    low = text.lower()
    for family, words in _FAMILY_WORDS:
        if words.search(low):
            sampler, steps, cfg, spacing = PRESETS[family]
            m = _STEPS.search(low)
            if m and 1 <= int(m.group(1)) <= 16:
                steps = int(m.group(1))
            if family == "hyper" and "cfg" in low:
                cfg = HYPER_CFG
            return {"family": family, "sampler": sampler, "steps": steps, "cfg": cfg, "spacing": spacing}
    return None


def _lcm_unet(path: Path, shapes: Optional[dict]) -> bool:
    if path.is_dir():
        try:
            unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return bool(unet.get("time_cond_proj_dim"))
    return any("cond_proj" in k for k in (shapes or {}))


def detect(path: Path, shapes: Optional[dict] = None) -> Optional[dict]:
    """The few-step preset of a checkpoint or LoRA ({"family", "sampler", "steps", "cfg", "spacing"}), or None."""
    found = None
    if _lcm_unet(path, shapes):
        found = _from_text("lcm")
    if found is None:
        meta = metadata(path)
        found = _from_text(" ".join(meta.get(k, "") for k in METADATA_KEYS))
    if found is None:
        parts = [path.name] + ([path.parent.name] if path.name.startswith("pytorch_lora_weights") else [])
        found = _from_text(" ".join(parts))
    return found


def listing(preset: Optional[dict]) -> dict:
    """The listing fields of a few-step model: ``few_step`` (family) and ``preset`` (steps, cfg, sampler)."""
    if not preset:
        return {}
    return {
        "few_step": preset["family"],
        "preset": {"steps": preset["steps"], "cfg": preset["cfg"], "sampler": preset["sampler"]},
    }
