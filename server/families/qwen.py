"""What Qwen-Image (and its Edit models) need beyond the Flux/SD3 recipe: the Qwen2.5-VL text encoder, tokenizer and
image processor of a split checkpoint, its 3-D VAE, reference images for Edit Plus, and previews from its latents.

The tokenizer (151k tokens) and the Edit models' image processor are not shipped with the server: a split
checkpoint finds them in its ``<name>.config/`` folder (``tokenizer/``, ``processor/``, as in the diffusers
release), and a diffusers folder carries its own.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from ..core import Job
from ..models import qwen
from ..models.loading import empty_transformers_model
from ..models.registry import ModelEntry
from ..models.tensors import read_tensors

MAX_REFERENCES = 3  # Edit Plus was trained with up to three input images: the edited one and two references
ENCODER_CLASS = "Qwen2_5_VLForConditionalGeneration"


def is_qwen(family: str) -> bool:
    return family in qwen.FAMILIES


def _transformers_names(state: dict) -> dict:
    """ComfyUI's Qwen2.5-VL names (``model.layers.*``, ``visual.*``) as transformers 5 names them
    (``model.language_model.*``, ``model.visual.*``)."""
    out = {}
    for key, value in state.items():
        if key.startswith("visual."):
            key = "model." + key
        elif key.startswith("model.") and not key.startswith(("model.language_model.", "model.visual.")):
            key = "model.language_model." + key[len("model.") :]
        out[key] = value
    return out


def text_encoder(path: Path, prefix: str, config: Path, dtype):
    """The Qwen2.5-VL text encoder from a file with transformers or ComfyUI key names."""
    model = empty_transformers_model(config, ENCODER_CLASS)
    wanted = set(model.state_dict())
    state = {k: v for k, v in _transformers_names(read_tensors(path, dtype, prefix)).items() if k in wanted}
    if "lm_head.weight" in wanted and "lm_head.weight" not in state:  # unused by the pipeline (hidden states only)
        state["lm_head.weight"] = state["model.language_model.embed_tokens.weight"]
    model.load_state_dict(state, strict=False, assign=True)
    return model.to(dtype).eval()


def vae(path: Path, config: Path, dtype):
    """Qwen-Image's VAE from a file with diffusers key names, or the original (Wan 2.1) names."""
    import torch
    from diffusers import AutoencoderKLQwenImage
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    if path.is_dir():
        return AutoencoderKLQwenImage.from_pretrained(str(path), dtype=dtype, local_files_only=True).eval()
    state = read_tensors(path, dtype, "")
    if "encoder.conv1.weight" in state:  # original names
        state = convert_wan_vae_to_diffusers(state)
    with torch.device("meta"):
        model = AutoencoderKLQwenImage.from_config(AutoencoderKLQwenImage.load_config(str(config)))
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(dtype).eval()


def preprocessors(entry: ModelEntry, config: Path) -> dict:
    """The tokenizer (and, for the Edit models, the image processor) from the checkpoint's config folder; a missing
    one is named with where it goes."""
    from transformers import AutoProcessor, AutoTokenizer

    beside = entry.path.with_name(entry.path.stem + ".config")  # also without a model_index.json of its own
    # the Edit models read pictures with it; Qwen-Image-Layered captions a picture sent without a prompt
    names = ["tokenizer"] + ["processor"] * (entry.arch in qwen.EDIT_FAMILIES + (qwen.QWEN_LAYERED,))
    wanted = {n: next((d / n for d in (config, beside) if (d / n).is_dir()), None) for n in names}
    missing = [name for name, folder in wanted.items() if folder is None]
    if missing:
        raise ProtocolError(
            MODEL_NOT_FOUND,
            f"checkpoint '{entry.name}' ({qwen.NAMES[entry.arch]}) needs its {' and '.join(missing)} files: copy the "
            f"{' and '.join(m + '/' for m in missing)} folder{'s' * (len(missing) > 1)} of the diffusers release into "
            f"{beside}",
            field="model",
        )
    out = {"tokenizer": AutoTokenizer.from_pretrained(str(wanted["tokenizer"]), local_files_only=True)}
    if "processor" in wanted:
        out["processor"] = AutoProcessor.from_pretrained(str(wanted["processor"]), local_files_only=True)
    return out


def check_layered_config(entry: ModelEntry) -> None:
    """A lone Qwen-Image-Layered transformer loads with its release's configs in ``<name>.config/`` (none ship with
    the server); without them the job names what to copy where."""
    if entry.arch == qwen.QWEN_LAYERED and entry.format != "diffusers" and entry.config_dir is None:
        beside = entry.path.with_name(entry.path.stem + ".config")
        raise ProtocolError(
            MODEL_NOT_FOUND,
            f"checkpoint '{entry.name}' (Qwen-Image-Layered) needs the configs of its diffusers release: copy its "
            f"{qwen.LAYERED_CONFIGS} (the config files, no weights) into {beside}",
            field="model",
        )


def check_references(job: Job, entry: ModelEntry, takes_them: bool) -> None:
    """Reference images on a Qwen-Image model: Edit Plus takes up to two beside the edited image, in mode edit,
    as whole pictures; anything else is refused by name."""
    name = qwen.NAMES[entry.arch]
    if not takes_them or job.mode != "edit":
        raise ProtocolError(
            UNSUPPORTED,
            f"reference images on {name} work in mode edit with a Qwen-Image-Edit 2509/2511 (Plus) checkpoint; "
            f"'{entry.name}' is {name} in mode {job.mode}",
            field="references",
        )
    if len(job.references) > MAX_REFERENCES - 1:
        raise ProtocolError(
            UNSUPPORTED,
            f"{name} takes at most {MAX_REFERENCES - 1} reference images beside the edited one; "
            f"the job has {len(job.references)}",
            field="references",
        )
    for i, ref in enumerate(job.references):
        if ref.type != "content" or ref.mask is not None or ref.start > 0.0 or ref.end < 1.0 or ref.strength != 1.0:
            raise ProtocolError(
                UNSUPPORTED,
                f"{name} reads a reference image as a whole picture the prompt can name ('the second image'): "
                "send it as type 'content', without a mask, strength, start or end",
                field=f"references[{i}]",
            )


def reference_images(work: Job) -> list:
    """The job's reference pictures as PIL images, in order."""
    from PIL import Image

    return [Image.fromarray(np.ascontiguousarray(ref.image[..., :3])) for ref in work.references]


@contextlib.contextmanager
def reference_area(area: int) -> Iterator[None]:
    """Run the Edit pipelines with their input images scaled to ``area`` pixels (the model's native area) instead
    of their fixed 1024² px. The pipelines read module constants; the family engine runs one job at a time."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as edit
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_inpaint as edit_inpaint
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus

    saved = [(m, m.calculate_dimensions) for m in (edit, edit_inpaint)] + [(plus, plus.VAE_IMAGE_SIZE)]

    def scaled(original):
        return lambda target, ratio: original(area if target == 1024 * 1024 else target, ratio)

    try:
        for module, original in saved[:-1]:
            module.calculate_dimensions = scaled(original)
        plus.VAE_IMAGE_SIZE = area
        yield
    finally:
        for module, original in saved[:-1]:
            module.calculate_dimensions = original
        plus.VAE_IMAGE_SIZE = saved[-1][1]


def fit_preview(vae_model):
    """(W, b) of ``preview.fit`` for Qwen-Image's 3-D VAE: latents normalised by its per-channel mean and std."""
    import torch

    from . import preview

    picture = preview.fitting_picture()
    param = next(vae_model.parameters())
    seen = picture
    if getattr(vae_model.config, "input_channels", 3) == 4:  # Qwen-Image-Layered's RGBA VAE: an opaque picture
        seen = np.dstack([picture, np.ones(picture.shape[:2], picture.dtype)])
    x = torch.from_numpy(seen.transpose(2, 0, 1)[None, :, None]).to(param.device, param.dtype)
    with torch.inference_mode():
        z = vae_model.encode(x).latent_dist.mean.float()[:, :, 0]
    mean = torch.tensor(vae_model.config.latents_mean).view(1, -1, 1, 1)
    std = torch.tensor(vae_model.config.latents_std).view(1, -1, 1, 1)
    return preview.solve(((z.cpu() - mean) / std)[0].numpy(), picture)
