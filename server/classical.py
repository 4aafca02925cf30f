"""The built-in classical engine: fill, object removal and outpaint without a diffusion model.

Fills (``params.fill``): "patch", the exemplar-based fill (``patchfill``: texture copied from around the hole, the
default), "telea" and "ns" (OpenCV's smooth inpainting), and "lama" (a LaMa-class network, when its weights are
installed: ``lama``). ``params.color_match`` moves the result's colours to those around the hole.

Needs no weights for "patch", "telea" and "ns", so the whole chain works on a fresh machine. It stops soon after a
cancel on any input: each step (grow, feather, fill, composite) takes a bounded time, cancellation is checked between
them (and between the exemplar fill's iterations), and the fill is waited for interruptibly. Its work grows with the
area it changes (``imageops``): an outpaint fills only the new bands.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from . import imageops, lama
from .core import Engine, Job, JobContext, Layer

NAME = "classical"
STEPS = 3  # progress steps: mask ready, filled, composited
# Fills whose result does not depend on the order of the colour channels (checked by tests/test_engines.py).
ORDER_FREE_FILLS = ("patch", "telea", "ns")


def order_free(job: Job) -> bool:
    """Whether this engine's result for ``job`` is the same whatever the order of the image's colour channels (so a
    ``bgra8`` image is worked on as it came, and the result goes back in that order, both without a swap): an
    outpaint with a fill that treats the channels alike (the exemplar fill compares whole pixels, OpenCV's smooth
    fills weigh each channel the same way) and no colour matching (Lab needs RGB)."""
    params = job.params
    return job.model == NAME and job.mode == "outpaint" and params.fill in ORDER_FREE_FILLS and not params.color_match


class ClassicalEngine(Engine):
    """Runs inpaint and outpaint jobs with the built-in fills."""

    name = NAME
    modes = ("inpaint", "outpaint")

    def __init__(self, registry=None, device: Optional[Callable[[], str]] = None) -> None:
        self.registry = registry
        self.device = device or (lambda: "cpu")

    def models(self) -> List[dict]:
        return [
            {
                "name": NAME,
                "kind": "builtin",
                "arch": "",
                "inpaint": True,
                "format": "builtin",
                "modes": list(self.modes),
            }
        ]

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        if job.mode not in self.modes:
            hint = (
                (
                    "the detailer repaints faces with a diffusion model: choose a diffusion checkpoint (install one in "
                    "the models folder)"
                )
                if job.mode == "detail"
                else "decompose (a picture into layers) needs a Qwen-Image-Layered checkpoint: pick one"
                if job.mode == "decompose"
                else "install a diffusion checkpoint in the models folder for generate and img2img"
            )
            raise self.refuse_mode(job, hint)
        ctx.progress(0, STEPS)
        params = job.params
        label = f"{job.mode} ({NAME}, {params.fill})"
        info = {"engine": NAME, "fill": params.fill, "color_match": params.color_match}
        method = lama.fill_method(params.fill, self.registry, self.device)
        if job.mode == "outpaint":
            if not order_free(job):
                job = imageops.job_in_rgba(job)
            ext = params.extend
            ctx.progress(1, STEPS)
            layer = ctx.interruptible(imageops.outpaint_layer, job.image, ext, method, ctx.check)
            if params.color_match:
                layer[..., :3] = imageops.color_match(layer[..., :3], layer[..., :3], layer[..., 3])  # alpha: new area
            ctx.progress(STEPS, STEPS)
            return [
                Layer(
                    name=label,
                    rgba=layer,
                    x=job.x - ext.left,
                    y=job.y - ext.top,
                    seed=0,
                    info=info,
                    bgra=job.image_bgra,
                )
            ]
        job = imageops.job_in_rgba(job)
        grown, soft = imageops.prepare_mask(job, ctx.check)
        ctx.progress(1, STEPS)
        filled = ctx.interruptible(imageops.fill, job.image[..., :3], grown, method, check=ctx.check)
        if params.color_match:
            filled = imageops.color_match(filled, job.image, grown)
        ctx.progress(2, STEPS)
        layer = imageops.composite_layer(job.image, filled, soft)
        ctx.progress(STEPS, STEPS)
        return [Layer(name=label, rgba=layer, x=job.x, y=job.y, seed=0, info=info)]
