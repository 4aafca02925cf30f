"""The built-in classical engine: OpenCV inpainting (Telea, Navier-Stokes) for fill, object removal and outpaint.

Needs no weights, so the whole chain works on a fresh machine. It stops soon after a cancel on any input: each step
(grow, feather, fill, composite) takes a bounded time, cancellation is checked between them, and the fill is waited
for interruptibly. Its work grows with the area it changes (``imageops``): an outpaint fills only the new bands.
"""

from __future__ import annotations

from typing import List

from . import imageops
from .core import Engine, Job, JobContext, Layer

NAME = "classical"
STEPS = 3  # progress steps: mask ready, filled, composited


class ClassicalEngine(Engine):
    """Runs inpaint and outpaint jobs with OpenCV."""

    name = NAME
    modes = ("inpaint", "outpaint")

    def models(self) -> List[dict]:
        return [{"name": NAME, "kind": "builtin", "arch": "", "inpaint": True, "format": "builtin",
                 "modes": list(self.modes)}]

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        if job.mode not in self.modes:
            hint = ("the detailer repaints faces with a diffusion model: choose a diffusion checkpoint (install one in "
                    "the models folder)") if job.mode == "detail" else \
                "install a diffusion checkpoint in the models folder for generate and img2img"
            raise self.refuse_mode(job, hint)
        ctx.progress(0, STEPS)
        label = f"{job.mode} ({NAME}, {job.params.fill})"
        if job.mode == "outpaint":
            ext = job.params.extend
            ctx.progress(1, STEPS)
            layer = ctx.interruptible(imageops.outpaint_layer, job.image, ext, job.params.fill, ctx.check)
            ctx.progress(STEPS, STEPS)
            return [Layer(name=label, rgba=layer, x=job.x - ext.left, y=job.y - ext.top, seed=0,
                          info={"engine": NAME})]
        grown, soft = imageops.prepare_mask(job, ctx.check)
        ctx.progress(1, STEPS)
        filled = ctx.interruptible(imageops.fill, job.image[..., :3], grown, job.params.fill)
        ctx.progress(2, STEPS)
        layer = imageops.composite_layer(job.image, filled, soft)
        ctx.progress(STEPS, STEPS)
        return [Layer(name=label, rgba=layer, x=job.x, y=job.y, seed=0, info={"engine": NAME})]

