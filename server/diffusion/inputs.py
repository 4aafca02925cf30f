"""What an SD job gives its pipeline, prepared once and cached by content (``cache.BoundedCache``, one per kind within
``CACHE_BUDGETS``): masks, prompt embeddings, VAE latents of the init image, control images, reference embeddings,
the regions' plan, and the pipeline's size and image arguments."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .. import imageops
from ..checkpoint.jobparts import binary, pil
from ..core import Job, JobContext
from ..models.registry import ModelRegistry
from . import cache
from . import controls as control_plans
from . import latents as latents_of
from . import prompts, regions
from . import references as refs
from .parts import Parts
from .plan import LoadedUNet

PREPROCESS_PARAMS = ("low_threshold", "high_threshold")
# bytes each content-keyed cache may hold (least recently used values go first)
CACHE_BUDGETS = {
    "prompts": 64 << 20,
    "latents": 128 << 20,
    "masks": 256 << 20,
    "controls": 128 << 20,
    "references": 64 << 20,
}


class JobInputs:
    """The SD engine's prepared inputs on ``device`` in ``dtype``; ``caches`` by name (cleared with ``clear``)."""

    def __init__(self, registry: ModelRegistry, device, dtype, parts: Parts) -> None:
        self.registry, self.device, self.dtype, self.parts = registry, device, dtype, parts
        self.caches = {name: cache.BoundedCache(name, budget) for name, budget in CACHE_BUDGETS.items()}

    def clear(self) -> None:
        for c in self.caches.values():
            c.clear()

    def mask(self, work: Job) -> Tuple[np.ndarray, np.ndarray]:
        """The job's (hard, soft) masks (imageops.prepare_mask), read-only, cached by mask content and settings."""
        params = work.params
        key = (cache.digest(work.mask), work.width, work.height, params.grow, params.feather)

        def make():
            hard, soft = imageops.prepare_mask(work)
            for arr in (hard, soft):
                arr.setflags(write=False)
            return hard, soft

        return self.caches["masks"].get(key, make)

    def prompt_embeddings(self, loaded: LoadedUNet, runner, prompt: str, negative: str, clip_skip: int = 0):
        """Prompt embeddings, cached per checkpoint, precision, active LoRAs (their text-encoder part changes them),
        loaded embeddings, CLIP skip and prompt text."""
        adapters = loaded.adapters
        skip = prompts.skipped_layers(clip_skip)
        key = (
            str(loaded.entry.path),
            str(self.dtype),
            tuple(tuple(a) for a in adapters.active),
            tuple(sorted(adapters.embeddings)),
            skip,
            prompt,
            negative,
        )
        return self.caches["prompts"].get(key, lambda: prompts.encode(runner, prompt, negative, self.device, clip_skip))

    def control_images(self, plans, work: Job, hard: np.ndarray, pw: int, ph: int, ctx: JobContext) -> list:
        """Each ControlNet's input at processing size (preprocessed when asked; inpaint ones from image and mask),
        cached by content and the preprocessing settings."""
        images = []
        params = work.params
        for plan in plans:
            control = plan.control
            if control_plans.uses_inpaint_condition(plan) and work.image is not None:
                key = ("inpaint", cache.digest(work.image, hard), pw, ph)

                def make():
                    return control_plans.inpaint_tensor(
                        imageops.resize(work.image[..., :3], pw, ph), imageops.resize(hard, pw, ph)
                    )
            else:
                settings = tuple(getattr(params, k) for k in PREPROCESS_PARAMS) if control.preprocess else ()
                seed = params.seed if control.preprocess and control.type == "shuffle" else None
                key = (control.type, control.preprocess, cache.digest(control.image), settings, seed, pw, ph)

                def make(c=control):
                    image = ctx.interruptible(control_plans.control_image, c, self.registry, params, str(self.device))
                    return pil(imageops.resize(image, pw, ph))

            images.append(self.caches["controls"].get(key, make))
        return images

    def reference_embeddings(self, loaded: LoadedUNet, plan: "refs.ReferencePlan", cfg: bool):
        """A reference's image embeddings, cached by encoder, precision, image content and CFG."""
        key = (
            str(plan.encoder.path),
            str(self.dtype),
            plan.adapter.info["encoder_output"],
            cfg,
            cache.digest(plan.reference.image),
        )
        return self.caches["references"].get(key, lambda: loaded.references.embeddings(plan, cfg))

    def region_plan(
        self, loaded: LoadedUNet, runner, work: Job, texts, pw: int, ph: int, batch: int
    ) -> regions.RegionPlan:
        """The regions of a job for one pipeline call: blend weights at latent size, each region's embeddings."""
        conditionings = [self.prompt_embeddings(loaded, runner, text, negative) for text, negative in texts]
        factor = loaded.pipe.vae_scale_factor
        return regions.plan(
            work.regions,
            conditionings,
            work.width,
            work.height,
            pw // factor,
            ph // factor,
            batch,
            self.device,
            loaded.pipe.unet.dtype,
        )

    def encode_latents(
        self, loaded: LoadedUNet, rgb: np.ndarray, hole: Optional[np.ndarray] = None, tileable: bool = False
    ):
        """VAE latents of an image (with ``hole`` blanked: the masked image of 9-channel UNets), cached by content
        (and by the padding: a tileable job's encoder wraps around)."""
        vae = loaded.pipe.vae
        key = (str(loaded.entry.path), str(self.dtype), self.parts.vae_key(vae), cache.digest(rgb, hole), tileable)
        return self.caches["latents"].get(
            key, lambda: latents_of.encode(vae, latents_of.to_tensor(rgb, self.device, vae.dtype, hole))
        )

    def image_inputs(
        self,
        loaded: LoadedUNet,
        init: Optional[np.ndarray],
        kind: str,
        controlled: bool,
        hard: np.ndarray,
        pw: int,
        ph: int,
        strength: float,
        batch: int,
        tileable: bool = False,
    ) -> dict:
        """The pipeline's size and image arguments: processing size (txt2img, inpaint; img2img takes it from the
        image), init image as latents (img2img, inpaint) and mask (inpaint). ControlNet inpaint pipelines take no
        latents: they get pixels, as stock diffusers."""
        if kind == "txt2img":
            return {"height": ph, "width": pw}
        if kind == "img2img":
            return {
                "image": self.encode_latents(loaded, init, tileable=tileable).repeat(batch, 1, 1, 1),
                "strength": strength,
            }
        mask = binary(imageops.resize(hard, pw, ph))
        out = {"mask_image": pil(mask), "height": ph, "width": pw, "strength": strength}
        if controlled:
            out["image"] = pil(init)
            return out
        image_latents = self.encode_latents(loaded, init)
        nine_channels = loaded.pipe.unet.config.in_channels == 9
        # a regular UNet never reads the masked image's latents: the image's own stand in, unused
        out.update(
            image=image_latents,
            masked_image_latents=self.encode_latents(loaded, init, mask) if nine_channels else image_latents,
        )
        return out
