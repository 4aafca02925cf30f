"""Transparent layers (``params.transparent``): what a job needs of LayerDiffuse, and the decode to colour and alpha.

``plan`` checks the job and finds the family's attention weights and transparent decoder (img2img: and its latent
transparency encoder) in ``layer_model/``;
``layer_attention.applied`` puts the weights on the UNet while it samples; ``decode`` turns the final latents into
straight colour and alpha (the VAE's picture and the latent through the transparent decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError
from protocol.messages import TRANSPARENT_MODES

from ..models import layerdiffuse as ld
from ..models.cache import LastLoaded
from ..models.registry import ModelEntry, arch_name
from . import layer_attention, transparent_decoder, transparent_encoder
from .latents import _full_precision as full_precision

_decoders: LastLoaded = LastLoaded(transparent_decoder.load)
_encoders: LastLoaded = LastLoaded(transparent_encoder.load)
_attention: LastLoaded = LastLoaded(lambda path, device: _read(path))


def _read(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@dataclass
class TransparencyPlan:
    arch: str
    attention: ModelEntry
    decoder: ModelEntry
    encoder: Optional[ModelEntry] = None  # img2img only

    def weights(self) -> dict:
        """The attention file's tensors (kept between jobs)."""
        return _attention.get(self.attention.path, "cpu")

    def applied(self, unet):
        """The attention weights on ``unet`` for the block that uses it (``layer_attention.applied``); a file that
        does not fit the checkpoint is refused naming it."""
        try:
            prepared = layer_attention.prepare(unet, self.arch, self.weights())
        except ValueError as err:
            raise ProtocolError(
                UNSUPPORTED,
                f"LayerDiffuse file '{self.attention.name}' does not fit this {arch_name(self.arch)} checkpoint: {err}",
                field="params.transparent",
            ) from None
        return layer_attention.applied(unet, prepared)

    def decoder_model(self, device: str):
        return _decoders.get(self.decoder.path, device)

    def encoded(self, vae, rgba: np.ndarray, device: str):
        """Scaled latents of the RGBA picture ``rgba`` (img2img of a transparent layer)."""
        return transparent_encoder.encode(vae, _encoders.get(self.encoder.path, device), rgba)


def _refuse(field: str, why: str) -> ProtocolError:
    return ProtocolError(UNSUPPORTED, f"a transparent layer {why}", field=field)


def plan(job, entry: ModelEntry, registry, live: bool = False) -> TransparencyPlan:
    """The LayerDiffuse files for ``job`` on checkpoint ``entry``; a job the method cannot do, or missing files, are
    refused naming what to change or pull."""
    params = job.params
    if job.mode not in TRANSPARENT_MODES:
        raise _refuse(
            "params.transparent",
            f"is made by mode 'generate' (into a selection or a new layer) or "
            f"'img2img' (of a transparent layer), not '{job.mode}'",
        )
    if entry.arch not in ld.FAMILIES or entry.inpaint:
        raise _refuse(
            "model",
            f"needs an SD1.5 or SDXL checkpoint (not an inpainting one); '{entry.name}' is "
            f"{arch_name(entry.arch)}{' inpainting' if entry.inpaint else ''}",
        )
    for on, field, what in (
        (params.hires.enabled, "params.hires", "the hires fix"),
        (bool(params.refiner), "params.refiner", "an SDXL refiner"),
        (bool(job.regions), "regions", "regions"),
        (bool(job.references), "references", "reference images"),
        (live, "live", "live mode"),
    ):
        if on:
            raise _refuse(field, f"is not made together with {what}: switch one of them off")
    found = {}
    for role in (ld.ATTENTION, ld.DECODER) + ((ld.ENCODER,) if job.mode == "img2img" else ()):
        usable = [
            e
            for e in registry.entries(ld.KIND)
            if e.arch == entry.arch and e.problem is None and e.info.get("role") == role
        ]
        if not usable:
            folders = " or ".join(str(d / "layer_model") for d in registry.dirs) or "layer_model/"
            raise ProtocolError(
                MODEL_NOT_FOUND,
                f"a transparent {arch_name(entry.arch)} layer needs LayerDiffuse's "
                f"{ld.FILES[(entry.arch, role)]} in {folders}: run `paintbridge models pull "
                f"{ld.PRESETS[entry.arch]}`",
                field="params.transparent",
            )
        found[role] = usable[0]
    return TransparencyPlan(entry.arch, found[ld.ATTENTION], found[ld.DECODER], found.get(ld.ENCODER))


def decode(vae, latents, decoder, augment: bool = True) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Straight colour (H x W x 3 uint8) and alpha (H x W uint8) of each final latent (scaled, as a pipeline with
    ``output_type="latent"`` returns them)."""
    import torch

    config = vae.config
    z = latents.float() / config.scaling_factor
    if getattr(config, "shift_factor", None):
        z = z + config.shift_factor
    with torch.inference_mode(), full_precision(vae):
        pixels = (vae.decode(z.to(vae.dtype)).sample.float() * 0.5 + 0.5).clamp(0, 1)
    colours, alphas = [], []
    for i in range(z.shape[0]):
        rgb, alpha = transparent_decoder.decode(decoder, pixels[i : i + 1], z[i : i + 1].float(), augment)
        colours.append(np.clip(np.rint(rgb[0] * 255), 0, 255).astype(np.uint8))
        alphas.append(np.clip(np.rint(alpha[0] * 255), 0, 255).astype(np.uint8))
    return colours, alphas
