"""What a families job gives its pipeline besides the prompts: the image and mask arguments per family and kind of
job, a ControlNet's control arguments, and how the latents unpack for a tileable job's rolling."""

from __future__ import annotations

import numpy as np

from .. import imageops
from ..checkpoint.jobparts import binary, init_image, pil
from ..core import Job, JobContext
from ..diffusion.controls import control_image
from ..models.registry import ModelRegistry
from . import controlnets, klein, specs


def image_inputs(
    family: str, kind: str, work: Job, hard: np.ndarray, pw: int, ph: int, strength: float, tileable: bool = False
) -> dict:
    """Image, mask and strength arguments of the family's pipeline for ``kind`` (a tileable job's image is scaled as
    a picture that wraps)."""
    init = init_image(work, pw, ph, tileable)
    mask = binary(imageops.resize(hard, pw, ph))
    if family == specs.FLUX2_KLEIN:
        return klein.image_inputs(kind, work, init, mask, pw, ph, strength)
    # Kontext scales every job to max_area (1024² px by default) unless told the job's own area
    kontext = {"_auto_resize": False, "max_area": pw * ph} if family == specs.FLUX_KONTEXT else {}
    if family == specs.FLUX_FILL:  # Fill always takes an image and a mask: generate = fill everything
        if kind == "txt2img":
            return {"image": pil(init), "mask_image": pil(np.full((ph, pw), 255, np.uint8)), "strength": 1.0}
        if kind == "img2img":
            return {"image": pil(init), "mask_image": pil(np.full((ph, pw), 255, np.uint8)), "strength": strength}
        return {"image": pil(init), "mask_image": pil(mask), "strength": strength}
    if kind == "txt2img":
        return {"max_area": pw * ph} if family == specs.FLUX_KONTEXT else {}
    if kind == "edit":
        return {"image": pil(init), **kontext}
    if kind == "img2img":
        return {"image": pil(init), "strength": strength}
    return {"image": pil(init), "mask_image": pil(mask), "strength": strength, **kontext}


def control_inputs(
    plan: controlnets.ControlPlan, job: Job, pw: int, ph: int, ctx: JobContext, registry: ModelRegistry, device
) -> dict:
    """The ControlNet pipeline's control arguments: the control image at processing size (preprocessed when
    asked), its strength and step range, and a union ControlNet's mode."""
    c = plan.control
    image = ctx.interruptible(control_image, c, registry, job.params, str(device))
    out = {
        "control_image": pil(imageops.resize(np.ascontiguousarray(image[..., :3]), pw, ph)),
        "controlnet_conditioning_scale": float(c.strength),
    }
    if plan.entry.arch not in controlnets.NO_STEP_RANGE:
        out.update(control_guidance_start=float(c.start), control_guidance_end=float(c.end))
    if plan.mode is not None:
        out["control_mode"] = plan.mode
    return out


def latent_layout(runner, family: str, ph: int, pw: int) -> tuple:
    """(unpack, pack) between the pipeline's latents and (batch, channels, height, width): Flux packs 2 x 2 latent
    pixels into one token; SD3's latents are 4-D already."""
    if family == specs.SD3:
        return (lambda t: t), (lambda t: t)
    factor = runner.vae_scale_factor

    def unpack(latents):
        return runner._unpack_latents(latents, ph, pw, factor)

    def pack(full):
        return runner._pack_latents(full, full.shape[0], full.shape[1], full.shape[2], full.shape[3])

    return unpack, pack
