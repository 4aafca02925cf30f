"""A job as the diffusers engines see it: its working job (outpaint's extended canvas), init image, seeds and
strength, pipeline images, and the result layers composited by the soft mask."""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, List, Optional, Tuple

import numpy as np

from .. import imageops, lama, seamless
from ..core import Job, Layer, Params
from ..defaults import DEFAULT_STRENGTH


def seeds_of(params: Params) -> List[int]:
    """One seed per image of the batch: the job's seed (a random one when negative) and the ones after it."""
    seed = params.seed if params.seed >= 0 else random.randrange(2**32)
    return [(seed + i) % 2**32 for i in range(params.batch)]


def strength_of(job: Job, kind: str, steps: int) -> float:
    """The denoising strength of a pipeline ``kind`` (txt2img, img2img, inpaint, edit): 1 when generating or
    editing, else the job's (its mode's default when open), at least one step's worth (diffusers runs
    ``int(steps * strength)`` steps)."""
    if job.mode == "generate" or kind in ("txt2img", "edit"):
        return 1.0
    strength = job.params.strength if job.params.strength is not None else DEFAULT_STRENGTH.get(job.mode, 1.0)
    return max(strength, 1.0 / steps)


def init_image(work: Job, pw: int, ph: int, tileable: bool = False) -> np.ndarray:
    """The working job's RGB at processing size (mid grey without an image). A tileable job's image is scaled as a
    picture that wraps."""
    if work.image is None:
        return np.full((ph, pw, 3), 127, np.uint8)
    return (seamless.resize if tileable else imageops.resize)(np.ascontiguousarray(work.image[..., :3]), pw, ph)


def binary(mask: np.ndarray) -> np.ndarray:
    """A mask as 0 / 255: what pipelines' ``mask_image`` reads."""
    return np.where(mask > 0, 255, 0).astype(np.uint8)


def pil(array: np.ndarray):
    """A uint8 array as a PIL image (pipelines' image arguments)."""
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(array))


def result_layers(
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


def working_job(
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
