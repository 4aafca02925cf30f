"""The denoising passes of an SD job: the base pass (with the hires fix, a second pass at the target size), then the
SDXL refiner's; progress counted across them (``StepCount``), previews, and the reference scales of each step."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Optional, Tuple

import numpy as np

from ..checkpoint.jobparts import init_image
from ..core import JobContext
from . import hires as hires_fix
from . import references as refs
from . import prompts, regions, samplers, stepcache, tiny_vae
from .hires_pass import second_pass
from .plan import Plan
from .preview import latents_to_rgb

if TYPE_CHECKING:
    from .engine import DiffusionEngine


class StepCount:
    """Progress across the passes of one SD job: the hires fix's two passes, or the base pass then the refiner's."""

    def __init__(self, steps: int, refiner, after: int) -> None:
        self.steps, self.refiner = steps, refiner
        self.before = 0  # steps of passes done before this one (the hires fix's first pass)
        self.after = after  # steps of passes still to come (the hires fix's second pass)
        self.done = 0  # steps of the base pass, once the refiner runs
        self.total = 0

    def position(self, pipe, step: int) -> Tuple[int, int]:
        this_pass = getattr(pipe, "num_timesteps", None) or self.steps
        total = self.before + this_pass + self.after
        if self.refiner is not None:  # the base pass, then the refiner's steps after it
            total = max(self.done + this_pass, self.steps) if self.done else self.steps
        self.total = total
        return min(self.before + self.done + step + 1, total), total


def init_at(p: Plan, width: int, height: int) -> Optional[np.ndarray]:
    """The init image at ``width`` x ``height``; None for txt2img."""
    return None if p.kind == "txt2img" else init_image(p.work, width, height, p.tileable)


def denoise(engine: "DiffusionEngine", p: Plan, ctx: JobContext):
    """The pipeline passes of plan ``p`` on ``engine``; (output, the step cache's record or None, the step count)."""
    import torch

    job, settings = p.job, p.settings
    steps, seeds = settings["steps"], settings["seeds"]
    count = StepCount(steps, p.refiner, hires_fix.second_pass_steps(p.hires) if p.hires is not None else 0)
    on_step = engine.step_callback(job, ctx, count.position, previewer(p), reference_scaler(p))
    steps_kw = dict(callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"])
    # One call for the whole batch, one generator per image: each seed gives the same pixels alone or in a batch.
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    fast = job.params.speed == "fast"
    runner, call, region_plan = p.runner, p.call, p.region_plan
    if p.hires is not None:
        with regions.applied(runner.unet, region_plan), stepcache.maybe_applied(runner.unet, fast):
            # regions shape the first pass: the composition
            first = runner(**dict(call, output_type="latent"), generator=generators, **steps_kw)
        count.before, count.after = getattr(runner, "num_timesteps", None) or steps, 0
        ctx.check()
        runner, call = second_pass(engine, p, first.images, call, ctx)
        p.init = init_at(p, *p.target)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        region_plan = None  # the second pass refines the whole picture at the target size
    transparent = p.layer_plan.applied(runner.unet) if p.layer_plan is not None else contextlib.nullcontext()
    with (
        regions.applied(runner.unet, region_plan),
        transparent,
        stepcache.maybe_applied(runner.unet, fast) as reuse,
    ):
        out = runner(**call, generator=generators, **steps_kw)
    if p.refiner is not None:
        count.done = getattr(runner, "num_timesteps", 0) or int(steps * job.params.refiner_start)
        out = run_refiner(p, out.images, generators, on_step)
    return out, reuse, count


def previewer(p: Plan) -> Callable[[object], np.ndarray]:
    """Progress previews: the tiny VAE's decode when one is installed, else the linear latent → RGB map."""
    tiny, arch = p.tiny, p.entry.arch
    return lambda latents: tiny_vae.preview(tiny, latents) if tiny is not None else latents_to_rgb(latents, arch)


def reference_scaler(p: Plan) -> Optional[Callable[[object, int, dict], None]]:
    """Before each step's progress: the next step's reference scales (0 outside a reference's range)."""
    if p.ref_scales is None:
        return None

    def rescale(pipe, step: int, tensors: dict) -> None:
        if pipe is p.refiner:
            return
        this_pass = getattr(pipe, "num_timesteps", None) or p.settings["steps"]
        wanted = refs.scales(p.entry.arch, p.work.references, (step + 1) / this_pass)
        if wanted != p.ref_scales:
            pipe.set_ip_adapter_scale(wanted)
            p.ref_scales = wanted

    return rescale


def run_refiner(p: Plan, latents, generators, on_step):
    """The refiner's img2img pass over the base pass's latents from ``refiner_start`` on, decoded with the job's
    VAE. The refiner reads the prompts as plain text (its one text encoder; weights are dropped)."""
    refiner, settings = p.refiner, p.settings
    refiner.vae = p.loaded.pipe.vae
    refiner.scheduler = samplers.make_scheduler(
        settings["sampler"], refiner.scheduler.config, schedule=settings["scheduler"]
    )
    start = settings["refiner_start"]
    return refiner(
        prompt=prompts.plain_text(p.prompt),
        negative_prompt=prompts.plain_text(p.negative),
        image=latents,
        num_inference_steps=settings["steps"],
        denoising_start=start,
        guidance_scale=settings["cfg"],
        num_images_per_prompt=len(generators),
        generator=generators,
        output_type="np",
        callback_on_step_end=on_step,
        callback_on_step_end_tensor_inputs=["latents"],
    )
