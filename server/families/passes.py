"""The pass and decode steps of a families job: the pipeline called once per seed (latents rolled between steps for a
tileable job, Qwen-Image-Edit's pictures read at the native area), progress and previews counted over every image,
each image's pixels."""

from __future__ import annotations

import contextlib
from typing import List, Optional, Tuple

import numpy as np

from .. import seamless
from ..checkpoint.engine import CheckpointEngine
from ..core import Job, JobContext
from . import klein, preview, qwen, specs
from .inputs import latent_layout
from .jobparts import one_step_schedule
from .pipes import Loaded


def run_passes(
    engine: CheckpointEngine,
    job: Job,
    ctx: JobContext,
    loaded: Loaded,
    runner,
    call: dict,
    settings: dict,
    size: Tuple[int, int],
    tileable: bool,
    rolling: bool,
) -> List[np.ndarray]:
    """The pipeline called once per seed, each image's pixels; progress counts every image's steps."""
    import torch

    seeds, steps = settings["seeds"], settings["steps"]
    pw, ph = size
    done = [0]
    roller: List[Optional[seamless.LatentRoller]] = [None]

    def per_image(pipe) -> int:
        return getattr(pipe, "num_timesteps", None) or steps

    def roll(pipe, step: int, tensors: dict) -> None:  # tileable: a new random offset, back after the last step
        if roller[0] is not None and tensors.get("latents") is not None:
            tensors["latents"] = roller[0].step(tensors["latents"], last=step + 1 >= per_image(pipe))

    def shown(latents) -> np.ndarray:
        latents = roller[0].unrolled(latents) if roller[0] is not None else latents
        unpack = klein.unpack if loaded.entry.arch == specs.FLUX2_KLEIN else preview.unpack
        return preview.to_rgb(unpack(latents, ph, pw) if latents.dim() == 3 else latents, *loaded.preview)

    on_step = engine.step_callback(
        job,
        ctx,
        lambda pipe, step: (
            done[0] * per_image(pipe) + min(step + 1, per_image(pipe)),
            per_image(pipe) * len(seeds),
        ),
        shown if loaded.preview is not None else None,
        roll,
    )
    images = []
    for s in seeds:
        ctx.check()
        if rolling:
            roller[0] = seamless.LatentRoller(s, *latent_layout(runner, loaded.entry.arch, ph, pw))
        wrapping = seamless.circular(loaded.pipe.vae) if tileable else contextlib.nullcontext()
        # Qwen-Image-Edit reads its pictures at the model's native area
        area = qwen.reference_area(loaded.native**2) if qwen.is_qwen(loaded.entry.arch) else contextlib.nullcontext()
        with torch.inference_mode(), wrapping, area, one_step_schedule(runner, steps):
            out = runner(**call, generator=torch.Generator("cpu").manual_seed(s), callback_on_step_end=on_step)
        images += engine.to_uint8(out.images[:1], loaded.entry, loaded.pipe.vae.dtype)
        done[0] += 1
    return images
