"""The hires fix's second pass of the SD engine: the pipeline and call arguments at the target size."""

from __future__ import annotations


import numpy as np

from .. import imageops, seamless
from ..core import JobContext
from . import hires as hires_fix
from . import latents as latents_of
from . import pipelines, samplers
from ..checkpoint.jobparts import binary, init_image, pil


def second_pass(engine, p, latents, first_call: dict, ctx: JobContext):
    """The hires fix's second pass of the engine's job plan ``p`` (``plan.Plan``): its pipeline (img2img, inpaint
    for masked jobs) and call arguments at the target size, on the first pass's latents upscaled in latent or pixel
    space as the plan says."""
    import torch

    loaded, two, kind, plans, nets, union = p.loaded, p.hires, p.kind, p.controls, p.nets, p.union
    work, hard, settings, preset = p.work, p.hard, p.settings, p.preset
    pipe = loaded.pipe
    factor = pipe.vae_scale_factor
    tw, th = two.width, two.height
    kind2 = "inpaint" if kind == "inpaint" else "img2img"
    runner = pipelines.variant(loaded, kind2, nets, union)
    runner.scheduler = samplers.make_scheduler(
        settings["sampler"], loaded.scheduler_config, preset["spacing"] if preset else None, settings["scheduler"]
    )
    tileable = bool(work.params.tileable)
    if two.upscaler == hires_fix.LATENT:
        upscaled = (
            seamless.upscale_latents(latents, th // factor, tw // factor)
            if tileable
            else hires_fix.upscale_latents(latents, tw, th, factor)
        )
        pixels = None
    else:
        h, w = latents.shape[-2] * factor, latents.shape[-1] * factor
        decoded = latents_of.decode_into(pipe.vae, latents, (0, 0, w, h), np.zeros((h, w, 3), np.uint8), factor)
        pixels = ctx.interruptible(
            hires_fix.upscale_pixels, decoded, tw, th, two.upscaler, engine.pixel_upscaler, tileable
        )
        upscaled = torch.cat(
            [latents_of.encode(pipe.vae, latents_of.to_tensor(p, engine.device, pipe.vae.dtype)) for p in pixels]
        )
    image_keys = (
        "height",
        "width",
        "image",
        "mask_image",
        "masked_image_latents",
        "strength",
        "control_image",
        "controlnet_conditioning_scale",
        "control_guidance_start",
        "control_guidance_end",
        "control_mode",
    )
    call = {k: v for k, v in first_call.items() if k not in image_keys}
    call.update(num_inference_steps=two.steps, strength=two.strength, image=upscaled)
    if kind2 == "inpaint":
        init = init_image(work, tw, th)
        mask = binary(imageops.resize(hard, tw, th))
        call.update(mask_image=pil(mask), height=th, width=tw)
        if plans:  # ControlNet inpaint pipelines take pixels
            if pixels is None:
                size = (th, tw)
                pixels = [
                    np.clip(np.rint(p * 255), 0, 255).astype(np.uint8)
                    for p in latents_of.decode_into(
                        pipe.vae, upscaled, (0, 0, tw, th), np.zeros(size + (3,), np.uint8), factor
                    )
                ]
            call["image"] = pil(pixels[0])
        else:
            nine = pipe.unet.config.in_channels == 9
            call["masked_image_latents"] = engine.inputs.encode_latents(loaded, init, mask) if nine else upscaled
    if plans:
        images = engine.inputs.control_images(plans, work, hard, tw, th, ctx)
        call.update(pipelines.control_kwargs(kind2, plans, images, union))
    return runner, call


# --- prepared inputs, cached by content ---
