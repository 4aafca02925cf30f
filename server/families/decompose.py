"""Mode decompose on Qwen-Image-Layered as numbered steps: the picture into ``params.layer_count`` RGBA layers, one
group per seed, bottom first (the model's inputs, working area and result layers are ``layered``'s)."""

from __future__ import annotations

import time
from typing import List

import numpy as np

from ..checkpoint.engine import CheckpointEngine
from ..core import Job, JobContext, Layer
from ..diffusion import prompts
from ..models.registry import ModelEntry
from . import layered, preview, specs
from .jobparts import job_info, job_settings, one_step_schedule, plain_prompt
from .pipes import variant


def recipe(engine: CheckpointEngine, job: Job, ctx: JobContext, entry: ModelEntry) -> List[Layer]:
    """Mode decompose (Qwen-Image-Layered) on ``engine``'s checkpoint ``entry``: one group of layers per seed."""
    import torch

    # 1. prompts and adapters (an empty prompt: the model captions the picture itself)
    ctx.check()
    text, tags = prompts.extract_loras(job.prompt)
    negative, neg_tags = prompts.extract_loras(job.negative_prompt)
    loaded = engine.checkpoint(entry)
    loras = loaded.adapters.apply_loras(tags + neg_tags)
    # 2. the pipeline and its settings
    runner = variant(loaded, layered.KIND, engine.device)
    spec = specs.SPECS[entry.arch]
    settings = job_settings(job, entry, "txt2img")
    seeds, steps = settings["seeds"], settings["steps"]
    # 3. conditioning: the RGBA picture, the layer count, prompts
    call = layered.inputs(job, plain_prompt(text), job.params.layer_count)
    call.update(num_inference_steps=steps, output_type="np", negative_prompt=plain_prompt(negative) or " ")
    call[spec.cfg_argument] = settings["cfg"]
    # 4. pass and decode: one pass per seed at the model's native area; progress counts every pass's steps
    done = [0]
    pw, ph = layered.working_size(loaded.native**2, job.width, job.height)

    def shown(latents) -> np.ndarray:
        return preview.to_rgb(preview.unpack(layered.whole_picture(latents, pw, ph), ph, pw), *loaded.preview)

    on_step = engine.step_callback(
        job,
        ctx,
        lambda pipe, step: (done[0] * steps + min(step + 1, steps), steps * len(seeds)),
        shown if loaded.preview is not None else None,
    )
    started = time.perf_counter()
    groups = []
    for s in seeds:
        ctx.check()
        with torch.inference_mode(), layered.working_area(loaded.native**2), one_step_schedule(runner, steps):
            out = runner(**call, generator=torch.Generator("cpu").manual_seed(s), callback_on_step_end=on_step)
        groups.append(np.stack(engine.to_uint8(out.images[0], entry, loaded.pipe.vae.dtype)))
        done[0] += 1
    # 5. info and result layers: each seed's layers in a group of their own, bottom first
    height, width = groups[0].shape[1:3]
    info = job_info(entry, loaded, settings, (width, height), loras, started)
    return [
        layer
        for s, frames_of_seed in zip(seeds, groups)
        for layer in layered.result_layers(job, frames_of_seed, s, layered.group_name(text, s), info)
    ]
