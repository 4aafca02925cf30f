"""Qwen-Image-Layered: one picture into a group of RGBA layers (mode ``decompose``), the one mode its checkpoints run.

The pipeline (``QwenImageLayeredPipeline``) reads the picture (with its alpha) through an RGBA VAE, denoises
``layers + 1`` frames (the whole picture again, then the layers) and decodes the layers, bottom first: the first is
the background, each next one lies above. Its working area is one of two buckets (640² or 1024² px); here it is the
model's native area, read by the pipeline through its module's ``calculate_dimensions`` (as ``qwen.reference_area``
does for the Edit models).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List, Tuple

import numpy as np

from protocol.errors import UNSUPPORTED, ProtocolError

from .. import imageops
from ..core import Job, Layer
from ..models import qwen
from ..models.registry import ModelEntry, arch_name

MODE = "decompose"
KIND = "decompose"  # the pipeline kind in ``specs.FamilySpec.pipelines``
NATIVE = 640  # the smaller of the model's two working buckets: the one its release runs by default
MULTIPLE = 16  # working sizes: the VAE's 8x times the 2 x 2 packing
BUCKET = 640  # the ``resolution`` argument the pipeline accepts; its area is replaced by ``working_area``


def is_layered(entry: ModelEntry) -> bool:
    return entry.arch == qwen.QWEN_LAYERED


def check_job(job: Job, entry: ModelEntry) -> None:
    """Mode ``decompose`` runs on Qwen-Image-Layered only, and Qwen-Image-Layered runs nothing else; what a
    decomposition cannot take (control layers, reference images, regions, a mask) is refused by name."""
    layered = is_layered(entry)
    if job.mode == MODE and not layered:
        raise ProtocolError(
            UNSUPPORTED,
            f"decompose (a picture into layers) needs a Qwen-Image-Layered checkpoint; '{entry.name}' is "
            f"{arch_name(entry.arch)}: pick a Qwen-Image-Layered model",
            field="mode",
        )
    if not layered:
        return
    if job.mode != MODE:
        raise ProtocolError(
            UNSUPPORTED,
            f"'{entry.name}' is Qwen-Image-Layered, which splits a picture into layers (mode decompose) and runs "
            f"nothing else: use mode decompose, or pick another model for mode {job.mode}",
            field="mode",
        )
    for field, given in (
        ("controls", job.controls),
        ("references", job.references),
        ("regions", job.regions),
        ("mask", job.mask is not None),
    ):
        if given:
            raise ProtocolError(
                UNSUPPORTED,
                f"decompose splits the whole picture it is sent; it takes no {field}: leave {field} out",
                field=field,
            )


def inputs(work: Job, prompt: str, layer_count: int) -> dict:
    """The pipeline's picture (RGBA: the layered VAE reads alpha too), layer count and caption arguments."""
    from PIL import Image

    return {
        "image": Image.fromarray(np.ascontiguousarray(work.image), "RGBA"),
        "layers": int(layer_count),
        "resolution": BUCKET,
        "use_en_prompt": True,  # an empty prompt is captioned by the model, in English
        "prompt": prompt,
    }


@contextlib.contextmanager
def working_area(area: int) -> Iterator[None]:
    """Run the pipeline at ``area`` pixels (the model's native area) instead of its fixed bucket."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_layered as module

    original = module.calculate_dimensions
    module.calculate_dimensions = lambda target, ratio: original(area, ratio)
    try:
        yield
    finally:
        module.calculate_dimensions = original


def working_size(area: int, width: int, height: int) -> Tuple[int, int]:
    """The (width, height) the pipeline works at for a ``width`` x ``height`` picture under ``working_area(area)``."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_layered as module

    w, h = module.calculate_dimensions(area, width / height)
    return int(w) // MULTIPLE * MULTIPLE, int(h) // MULTIPLE * MULTIPLE


def whole_picture(latents, width: int, height: int):
    """The packed latents' first frame (the whole picture the model paints again before its layers), for previews."""
    tokens = (height // MULTIPLE) * (width // MULTIPLE)
    return latents[:, :tokens].contiguous()


def group_name(prompt: str, seed: int) -> str:
    """The layer group's name: what was decomposed (the prompt's start) and the seed."""
    text = " ".join(prompt.split())
    subject = text if len(text) <= 40 else text[:39].rsplit(" ", 1)[0] + "…"
    return f"{subject or 'Layers'} (seed {seed})"


def result_layers(work: Job, frames: np.ndarray, seed: int, group: str, info: dict) -> List[Layer]:
    """One decomposition's layers (``frames``: N x h x w x 4 uint8, bottom first) at the picture's size and place,
    bottom first, each in ``group``; colours are scaled premultiplied so that no hidden colour bleeds at edges."""
    count = len(frames)
    layers = []
    for i, frame in enumerate(frames):
        rgba = unpremultiply(imageops.resize(premultiply(frame), work.width, work.height))
        name = f"Layer {i + 1}" + (" (bottom)" if i == 0 else " (top)" if i == count - 1 else "")
        layer_info = dict(info, layer=i + 1, layers=count)
        layers.append(Layer(name=name, rgba=rgba, x=work.x, y=work.y, seed=seed, info=layer_info, group=group))
    return layers


def premultiply(rgba: np.ndarray) -> np.ndarray:
    out = rgba.astype(np.uint16)
    out[..., :3] = (out[..., :3] * out[..., 3:] + 127) // 255
    return out.astype(np.uint8)


def unpremultiply(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.uint32)
    colour = np.where(alpha > 0, (rgba[..., :3].astype(np.uint32) * 255 + alpha // 2) // np.maximum(alpha, 1), 0)
    return np.dstack([np.minimum(colour, 255).astype(np.uint8), rgba[..., 3]])
