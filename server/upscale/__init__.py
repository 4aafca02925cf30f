"""Mode ``upscale``: model upscalers (through spandrel) or Lanczos, then optionally a seam-free tiled refine.

``UpscaleEngine`` is this mode's engine. Parameters (``job.params``): ``scale`` (1-8), ``upscaler`` (a model of kind "upscaler" by name; "" = Lanczos),
``tile`` (tile size in px for model and refine tiles; 0 = automatic), ``refine`` (img2img strength of the refine pass;
0 = off), ``seed`` (-1 = random; refine tile ``i`` uses ``seed + i``).

Placement rule: the result is the whole job image scaled by ``scale``: width and height are ``round(w * scale)`` and
``round(h * scale)``, and the layer sits at ``(round(job.x * scale), round(job.y * scale))``, i.e. where the job's box
lands in the document after the document itself is scaled by ``scale``. For a whole-canvas upscale the plugin scales
the canvas by ``scale`` and the layer lands at (0, 0).

Masks are ignored: upscaling always covers the job's whole image (send the selection's bounds as the image to upscale
only a part). Transparency is kept: alpha is resized with Lanczos, RGB by the model.

``tileable`` (a seamless texture stays seamless): the image is padded with its own opposite edges (``seamless``),
upscaled and refined with them, and cropped back with each edge band cross-faded with its copy from the other side.
"""

from __future__ import annotations

import secrets
from typing import Callable, List, Optional

import numpy as np

from protocol import Limits
from protocol.errors import BAD_REQUEST, MODEL_NOT_FOUND, TOO_LARGE, ProtocolError
from protocol.images import MAX_SIDE

from .. import seamless
from ..core import Engine, Job, JobContext, Layer
from ..imageops import resize
from .models import upscalers
from .refine import DEFAULT_REFINE_TILE, RefineFn, refine_overlap, refine_tiled
from .scaling import (
    MODEL_TILE_OVERLAP,
    count_model_tiles,
    model_pass,
    model_tile_size,
    plan_passes,
    resize_alpha,
    resize_rgba,
)
from .tiling import tile_grid

__all__ = ["UpscaleEngine", "run_upscale", "upscale_rgb", "upscaled_size"]

# The result travels in one frame: keep its RGBA bytes under the default frame limit, with room for the envelope.
MAX_OUTPUT_PIXELS = (Limits().max_frame_bytes - (1 << 20)) // 4

SDXL_REFINE_TILE = 1024


def upscaled_size(width: int, height: int, scale: float) -> tuple:
    """The result's (width, height) for an image of ``width`` x ``height`` upscaled by ``scale``."""
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def refine_tile_size(job: Job, registry) -> int:
    """Automatic refine tile: the checkpoint's native resolution (1024 px for SDXL-class, else 512 px)."""
    entry = None
    try:
        entry = registry.find(job.model, "checkpoint") if job.model else registry.default_checkpoint()
    except AttributeError:  # a registry without these queries: assume SD1.5-class
        pass
    return SDXL_REFINE_TILE if getattr(entry, "arch", None) == "sdxl" else DEFAULT_REFINE_TILE


def _check_size(job: Job, out_w: int, out_h: int, what: str = "") -> None:
    if out_w > MAX_SIDE or out_h > MAX_SIDE or out_w * out_h > MAX_OUTPUT_PIXELS:
        raise ProtocolError(
            TOO_LARGE,
            f"upscaling {job.width}x{job.height} by {job.params.scale:g} gives {out_w}x{out_h} px{what}, over the "
            f"limit of {MAX_SIDE} px a side and {MAX_OUTPUT_PIXELS} px in all; choose a smaller scale or a smaller "
            "area",
            field="params.scale",
        )


def run_upscale(
    job: Job,
    ctx: JobContext,
    registry,
    refine: Optional[RefineFn],
    device: str = "cpu",
) -> List[Layer]:
    """Upscale ``job.image`` by ``params.scale`` (model or Lanczos), refine it if ``params.refine > 0``; one layer.

    ``refine(rgba, strength, seed) -> rgba`` is the diffusion engine's img2img of one tile (None when no checkpoint is
    installed). Progress counts model tiles, then refine tiles; cancellation takes effect between tiles.
    """
    params = job.params
    scale, strength, tile_param = float(params.scale), float(params.refine), int(params.tile)
    image = job.image
    if image is None:
        raise ProtocolError(BAD_REQUEST, "mode 'upscale' needs an image", field="image")
    h, w = image.shape[:2]
    out_w, out_h = upscaled_size(w, h, scale)
    _check_size(job, out_w, out_h)
    if strength > 0 and refine is None:
        dirs = getattr(registry, "dirs", None) or []
        folders = " or ".join(str(d / "checkpoints") for d in dirs) or "the models folder's checkpoints/"
        raise ProtocolError(
            MODEL_NOT_FOUND,
            f"upscale-and-refine (refine {strength:g}) needs a Stable Diffusion checkpoint: choose one, or put a "
            f".safetensors checkpoint into {folders}; or set refine to 0 to upscale only",
            field="params.refine",
        )
    seed = int(params.seed) if params.seed >= 0 else secrets.randbelow(2**32)

    model, upscaler_name = None, "Lanczos"
    if params.upscaler:
        entry = registry.get(params.upscaler, "upscaler")
        model = upscalers.get(entry.path, device)
        upscaler_name = getattr(entry, "name", params.upscaler)

    passes = plan_passes(model.scale, scale) if model is not None else []
    model_tile = model_tile_size(model, tile_param) if model is not None else None
    refine_tile = (tile_param or refine_tile_size(job, registry)) if strength > 0 else 0
    final_w, final_h, margin = out_w, out_h, (0, 0)
    if params.tileable:  # work on the image padded with its opposite edges; ``seamless.fold`` crops it back
        reach = max(
            8,
            MODEL_TILE_OVERLAP // 2 * scale if model is not None else 0,
            refine_overlap(refine_tile) if strength > 0 else 0,
        )  # in result pixels
        wanted = seamless.margin_for(scale, int(reach))
        mx, my = seamless.aligned_margin(w, out_w, wanted), seamless.aligned_margin(h, out_h, wanted)
        margin = (int(round(mx * out_w / w)), int(round(my * out_h / h)))
        image = seamless.wrap_pad(image, mx, my)
        h, w = image.shape[:2]
        out_w, out_h = final_w + 2 * margin[0], final_h + 2 * margin[1]
        _check_size(job, out_w, out_h, f" with its wrap margins of {margin[0]}x{margin[1]} px")
    n_model = count_model_tiles(w, h, model_tile, passes) if model is not None else 0
    n_refine = len(tile_grid(out_w, out_h, refine_tile, refine_overlap(refine_tile))) if strength > 0 else 0
    total = max(1, n_model + n_refine)
    done = [0]
    splits: List[int] = []  # smaller tiles used after running out of memory

    def on_model_tile() -> None:
        done[0] += 1
        ctx.progress(done[0], total)

    ctx.check()
    if model is None:  # one long call for a large result: waited for interruptibly
        result = ctx.interruptible(resize_rgba, image, out_w, out_h)
    else:
        rgb = np.ascontiguousarray(image[..., :3])
        for step in passes:
            rgb = model_pass(rgb, model, step, model_tile, on_model_tile, splits)
        result = np.empty((out_h, out_w, 4), np.uint8)
        result[..., :3] = ctx.interruptible(resize, rgb, out_w, out_h)
        result[..., 3] = ctx.interruptible(resize_alpha, image[..., 3], out_w, out_h)

    if strength > 0:
        result = refine_tiled(
            result,
            refine,
            strength,
            seed,
            refine_tile,
            ctx,
            progress_offset=n_model,
            progress_total=total,
            previews=job.previews,
        )
    elif n_model == 0:
        ctx.progress(1, 1)
    if params.tileable:
        result = seamless.fold(result, margin[0], margin[1], final_w, final_h)

    name = f"Upscaled {scale:g}x ({upscaler_name})" + (f", refined {strength:g}" if strength > 0 else "")
    info = {"scale": scale, "upscaler": params.upscaler, "refine": strength, "tiles": n_model + n_refine}
    if params.tileable:
        info["tileable"] = f"wrap margins of {margin[0]}x{margin[1]} px, edges cross-faded"
    if splits:
        info["memory_fallbacks"] = [f"upscaler tiles of {min(splits)} px"]
    return [
        Layer(
            name=name,
            rgba=result,
            x=int(round(job.x * scale)),
            y=int(round(job.y * scale)),
            seed=seed if strength > 0 else -1,
            info=info,
        )
    ]


def upscale_rgb(rgb: np.ndarray, path, width: int, height: int, device: str = "cpu") -> np.ndarray:
    """An H x W x 3 uint8 image upscaled to ``width`` x ``height`` by the upscale model at ``path`` (model passes,
    then Lanczos/area to the exact size): the hires fix's pixel upscale."""
    model = upscalers.get(path, device)
    h, w = rgb.shape[:2]
    tile = model_tile_size(model, 0)
    for step in plan_passes(model.scale, max(width / w, height / h)):
        rgb = model_pass(np.ascontiguousarray(rgb), model, step, tile, lambda: None)
    return resize(rgb, width, height)


class UpscaleEngine(Engine):
    """Mode ``upscale``: ``run_upscale`` with the server's device; ``refiner_for(job, ctx)`` gives the refine function
    (img2img of one tile on the diffusers engine, wired by the router), or None when no checkpoint is installed."""

    name = "upscale"
    modes = ("upscale",)

    def __init__(
        self, registry, refiner_for: Callable[[Job, JobContext], Optional[RefineFn]], device: str = "cpu"
    ) -> None:
        self.registry = registry
        self.refiner_for = refiner_for
        self.device = device

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        if job.mode not in self.modes:
            raise self.refuse_mode(job)
        return run_upscale(job, ctx, self.registry, self.refiner_for(job, ctx), device=self.device)
