"""Flux.2 Klein: its 32-channel Flux.2 VAE (its Qwen3 text encoder and tokenizer: ``qwen3``), its pipelines' image inputs
(edit and generate with several reference images), its reference-image rules and its progress previews.

Klein reads reference images as pictures beside the latents (in-context tokens): generate and edit take several, the
inpaint pipeline (which also serves img2img, with the whole picture masked) one. Its latents are the VAE's 32 channels
patchified 2x2 into 128 and normalised by the VAE's batch-norm statistics, one token per 16x16 pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from protocol.errors import UNSUPPORTED, ProtocolError

from .. import imageops
from ..checkpoint.jobparts import pil
from ..core import Job, Reference
from ..models.klein import REFERENCE_TYPES
from ..models.registry import ModelEntry
from ..models.tensors import read_tensors
from . import preview

INPAINT_REFERENCES = 1  # Flux2KleinInpaintPipeline's image_reference is one picture
EDIT_REFERENCES = 4  # beside the picture being edited: every reference costs as many tokens as the picture
MIN_SIDE = 64  # px: the smallest side of a picture Klein sees (Flux2ImageProcessor.check_image_input)
MAX_ASPECT = 8  # the most elongated picture it sees


def vae(path: Path, prefix: str, folder: bool, config: Path, dtype):
    """The Flux.2 VAE from a diffusers folder, or from a file in diffusers or original (``encoder.down.*``) names."""
    from diffusers import AutoencoderKLFlux2
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    if folder:
        return AutoencoderKLFlux2.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    cfg = AutoencoderKLFlux2.load_config(str(config / "vae"))
    model = AutoencoderKLFlux2.from_config(cfg)
    state = read_tensors(path, dtype, prefix)
    if any(k.startswith("encoder.down.") for k in state):  # original names: the AutoencoderKL conversion fits
        bn = {k: v for k, v in state.items() if k.startswith("bn.")}
        state = {**convert_ldm_vae_checkpoint(state, cfg), **bn}
    model.load_state_dict(state, strict=True)
    return model.to(dtype).eval()


def check_job(job: Job, entry: ModelEntry) -> None:
    """``unsupported`` for what Klein cannot honour, before any work: see ``check_references``, and pictures it would
    see (the edited one, references) more elongated than ``MAX_ASPECT``."""
    check_references(list(job.references), entry, job.mode)
    seen = [("image", job.image)] * (job.mode == "edit" and job.image is not None)
    seen += [(f"references[{i}].image", r.image) for i, r in enumerate(job.references)]
    for field, picture in seen:
        h, w = picture.shape[:2]
        if max(w / h, h / w) > MAX_ASPECT:
            raise ProtocolError(
                UNSUPPORTED,
                f"Flux.2 Klein sees pictures up to {MAX_ASPECT}:1; this one is {w}x{h} px (checkpoint "
                f"'{entry.name}'): use a less elongated selection or reference",
                field=field,
            )


def check_references(references: List[Reference], entry: ModelEntry, mode: str) -> None:
    """``unsupported`` for reference images Klein cannot honour: masked ones, step ranges, a strength, or more than
    the mode's pipeline takes."""
    limit = EDIT_REFERENCES if mode in ("generate", "edit") else INPAINT_REFERENCES
    if len(references) > limit:
        raise ProtocolError(
            UNSUPPORTED,
            f"Flux.2 Klein takes at most {limit} reference image{'s' if limit > 1 else ''} in {mode} "
            f"(checkpoint '{entry.name}'); {len(references)} were sent: drop some"
            + (", or use generate or edit, which take several" if limit == 1 else ""),
            field="references",
        )
    for i, ref in enumerate(references):
        if ref.type not in REFERENCE_TYPES:
            raise ProtocolError(
                UNSUPPORTED,
                f"a '{ref.type}' reference is not supported for Flux.2 Klein (checkpoint '{entry.name}'): Klein sees "
                f"references as pictures ({', '.join(REFERENCE_TYPES)}); describe a style or layout in the prompt",
                field=f"references[{i}].type",
            )
        wrong = (
            ("mask", "a masked reference: Klein sees the whole picture")
            if ref.mask is not None
            else ("start", "a step range: Klein sees its references at every step")
            if ref.start > 0.0 or ref.end < 1.0
            else ("strength", "a reference strength: Klein sees each reference as it is")
            if ref.strength != 1.0
            else None
        )
        if wrong is not None:
            raise ProtocolError(
                UNSUPPORTED,
                f"reference {i + 1} asks for {wrong[1]} (checkpoint '{entry.name}'): send it whole, at strength 1",
                field=f"references[{i}].{wrong[0]}",
            )


def _condition(picture: np.ndarray, pw: int, ph: int):
    """A picture Klein sees beside the latents: about the job's processing area, its aspect kept, each side a multiple
    of 16 and at least ``MIN_SIDE`` (the pipeline's own limits)."""
    h, w = picture.shape[:2]
    scale = max((pw * ph / float(w * h)) ** 0.5, MIN_SIDE / float(min(w, h)))
    rw, rh = (max(MIN_SIDE, -(-int(round(side * scale)) // 16) * 16) for side in (w, h))
    return pil(imageops.resize(np.ascontiguousarray(picture[..., :3]), rw, rh))


def image_inputs(kind: str, work: Job, init: np.ndarray, mask: np.ndarray, pw: int, ph: int, strength: float) -> dict:
    """Klein's image arguments for ``kind``: generate with its references, edit with the picture first and the
    references after it, img2img as inpaint of the whole picture, inpaint with at most one reference."""
    refs = [_condition(ref.image, pw, ph) for ref in work.references]
    if kind == "txt2img":
        return {"image": refs} if refs else {}
    if kind == "edit":
        return {"image": [_condition(init, pw, ph)] + refs}
    whole = np.full((ph, pw), 255, np.uint8)
    out = {"image": pil(init), "mask_image": pil(whole if kind == "img2img" else mask), "strength": strength}
    if refs:
        out["image_reference"] = refs[0]
    return out


def fit_preview(vae_model) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(W [128, 3], b [3]): RGB ≈ Klein's normalised, patchified latents · W + b, measured on the VAE (a 2x2 patch of
    latents is one preview pixel)."""
    import torch

    picture = preview.fitting_picture()
    param = next(vae_model.parameters())
    x = torch.from_numpy(picture.transpose(2, 0, 1)[None]).to(param.device, param.dtype)
    with torch.inference_mode():
        z = vae_model.encode(x).latent_dist.mean.float()
        b, c, h, w = z.shape
        z = z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
        mean = vae_model.bn.running_mean.float().view(1, -1, 1, 1)
        std = torch.sqrt(vae_model.bn.running_var.float().view(1, -1, 1, 1) + vae_model.config.batch_norm_eps)
        z = ((z - mean) / std)[0].cpu().numpy()
    return preview.solve(z, picture)


def unpack(latents, height: int, width: int):
    """Klein's latent tokens [B, (h/16)(w/16), 128] as [B, 128, h/16, w/16] (``height``/``width``: pixels)."""
    b, _, c = latents.shape
    return latents.reshape(b, height // 16, width // 16, c).permute(0, 3, 1, 2)
