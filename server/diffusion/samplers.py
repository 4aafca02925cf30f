"""Sampler names users know, mapped onto diffusers schedulers built from the checkpoint's own scheduler config."""

from __future__ import annotations

from typing import Optional

from protocol.messages import SAMPLERS

from ..defaults import DEFAULT_SAMPLER, default_cfg as family_cfg

# name -> (diffusers class name, config overrides)
SCHEDULERS = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    # The SDE variant of DPM++ with Karras sigmas, multistep (needs no torchsde).
    "DPM++ SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {"set_alpha_to_one": False, "clip_sample": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
assert set(SCHEDULERS) == set(SAMPLERS), "every protocol sampler needs a scheduler"


def make_scheduler(name: str, base_config, spacing: Optional[str] = None):
    """A fresh scheduler for sampler ``name`` ("" = the default) from a checkpoint's scheduler config; ``spacing``
    sets the timestep spacing (few-step models want "trailing": their first step starts from pure noise)."""
    import diffusers

    cls_name, overrides = SCHEDULERS[name or DEFAULT_SAMPLER]
    config = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    for legacy in ("skip_prk_steps", "use_karras_sigmas", "algorithm_type", "interpolation_type"):
        config.pop(legacy, None)
    config.update(overrides)
    if spacing:
        config["timestep_spacing"] = spacing
    return getattr(diffusers, cls_name).from_config(config)


def default_cfg(sampler: str, arch: str) -> float:
    """Guidance scale when the job leaves it open."""
    if sampler == "LCM":
        return 1.5
    return family_cfg(arch)
