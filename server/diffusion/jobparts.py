"""A job as the diffusers engines see it: its settings, working image (outpaint's extended canvas), init image, and
the result layers composited by the soft mask. Shared by the SD engine and the Flux/SD3 engine."""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, List, Optional, Tuple

import numpy as np

from .. import imageops, lama, seamless
from ..core import Job, Layer
from ..defaults import DEFAULT_STRENGTH
from ..models.registry import ModelEntry
from . import samplers


def _settings(job: Job, entry: ModelEntry, kind: str, preset: Optional[dict] = None) -> dict:
    """Sampler, steps, strength, CFG and seeds of a job, with the defaults filled in. A few-step model's preset
    gives the sampler when the job leaves it open (and then its step count too) and the CFG when left open."""
    params = job.params
    sampler = params.sampler
    steps = params.steps
    if not sampler and preset:
        sampler, steps = preset["sampler"], preset["steps"]
    sampler, scheduler = samplers.choose(sampler, params.scheduler)
    strength = params.strength if params.strength is not None else DEFAULT_STRENGTH[job.mode]
    if job.mode == "generate":
        strength = 1.0
    if kind != "txt2img":  # diffusers runs int(steps * strength) steps: keep at least one
        strength = max(strength, 1.0 / steps)
    if params.cfg is not None:
        cfg = params.cfg
    else:
        cfg = preset["cfg"] if preset else samplers.default_cfg(sampler, entry.arch)
    seed = params.seed if params.seed >= 0 else random.randrange(2**32)
    return {
        "sampler": sampler,
        "scheduler": scheduler,
        "refiner_start": params.refiner_start,
        "strength": strength,
        "steps": steps,
        "cfg": cfg,
        "seeds": [(seed + i) % 2**32 for i in range(params.batch)],
    }


def _init_image(work: Job, kind: str, pw: int, ph: int, tileable: bool = False) -> Optional[np.ndarray]:
    """The init image at processing size (mid grey without an image); None for txt2img. A tileable job's image is
    scaled as a picture that wraps."""
    if kind == "txt2img":
        return None
    if work.image is None:
        return np.full((ph, pw, 3), 127, np.uint8)
    return (seamless.resize if tileable else imageops.resize)(np.ascontiguousarray(work.image[..., :3]), pw, ph)


def _layers(
    job: Job,
    work: Job,
    original: Optional[np.ndarray],
    soft: np.ndarray,
    images: List[np.ndarray],
    seeds: List[int],
    info: dict,
    alphas: Optional[List[np.ndarray]] = None,
) -> List[Layer]:
    """Result layers at the context size: generated pixels inside the soft mask, the original exactly outside. With
    ``alphas`` (transparent layers) each layer is the generated colour with that alpha times the soft mask."""
    width, height = work.width, work.height
    base = original if original is not None else np.zeros((height, width, 4), np.uint8)
    layers = []
    scale = seamless.resize if job.params.tileable else imageops.resize  # a tileable result is scaled as it wraps
    for i, (img, s) in enumerate(zip(images, seeds)):
        img = scale(img, width, height)
        if alphas is not None:  # the decoder's alpha inside the soft mask
            alpha = scale(alphas[i], width, height).astype(np.uint16) * soft.astype(np.uint16)
            rgba = np.dstack([img, ((alpha + 127) // 255).astype(np.uint8)])
        else:
            if job.params.color_match and original is not None:
                img = imageops.color_match(img, base, soft)
            rgba = imageops.composite_layer(base, img, soft)
            if original is None:
                rgba[..., 3] = 255
        name = f"{job.mode} {s}" if len(seeds) == 1 else f"{job.mode} {i + 1}/{len(seeds)} ({s})"
        layers.append(Layer(name=name, rgba=rgba, x=work.x, y=work.y, seed=s, info=dict(info)))
    return layers


def _working_job(
    job: Job, registry=None, check: Callable[[], None] = lambda: None, device: Callable[[], str] = lambda: "cpu"
) -> Tuple[Job, Optional[np.ndarray]]:
    """The job as processed (outpaint: on the extended canvas, the new area pre-filled with the job's
    ``params.fill`` band by band like the classical outpaint — "lama" from ``registry`` —, placed further up/left)
    and the original RGBA pixels the result is composited over (None when generating without an image)."""
    if job.mode != "outpaint":
        return job, job.image
    ext = job.params.extend
    canvas, new_area = imageops.extend_canvas(job.image, ext)
    fill = lama.fill_method(job.params.fill, registry, device)
    filled = imageops.outpaint_layer(job.image, ext, fill, check)
    filled[..., 3] = canvas[..., 3]
    controls = [
        dataclasses.replace(c, image=imageops.extend_canvas(imageops.rgba(c.image), ext)[0][..., :3])
        for c in job.controls
    ]  # control layers cover the original area; the new area gets none (black)
    pad = ((ext.top, ext.bottom), (ext.left, ext.right))  # regions too: the new area follows the job's prompt
    references = [
        dataclasses.replace(r, mask=np.pad(r.mask, pad)) if r.mask is not None else r for r in job.references
    ]  # a reference mask covers the original area
    region_list = [dataclasses.replace(r, mask=np.pad(r.mask, pad)) for r in getattr(job, "regions", ())]
    work = dataclasses.replace(
        job,
        image=filled,
        mask=new_area,
        x=job.x - ext.left,
        y=job.y - ext.top,
        controls=controls,
        references=references,
        regions=region_list,
    )
    return work, canvas


def _binary(mask: np.ndarray) -> np.ndarray:
    return np.where(mask > 0, 255, 0).astype(np.uint8)


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)
