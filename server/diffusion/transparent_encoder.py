"""LayerDiffuse's latent transparency encoder: a picture with alpha into latents that the transparent decoder reads
back with that alpha (img2img of a transparent layer).

The latent is the VAE's posterior of the colour premultiplied by alpha (on the VAE's mid grey), moved inside its
spread by an offset the encoder network computes from the alpha and the colour extended into the transparent parts
(``extend_colour``). The network is nine 3x3 convolutions with SiLU between them (three of stride 2), in the module
layout of the published ``vae_transparent_encoder.safetensors`` / ``layer_sd15_vae_transparent_encoder.safetensors``
(``blocks.<n>``); its widths are read from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

CONVS = 9
STRIDED = (2, 4, 6)  # the convolutions that halve the size
OFFSET_SCALE = 300.0  # the offset network's output scale (its last layer starts at zero during training)


def build(channels: List[int]):
    """An untrained encoder with ``channels`` = [4, w1, ..., w8, 4] (torch ``nn.Sequential``)."""
    import torch

    layers = []
    for i in range(CONVS):
        layers.append(
            torch.nn.Conv2d(channels[i], channels[i + 1], kernel_size=3, padding=1, stride=2 if i in STRIDED else 1)
        )
        if i < CONVS - 1:
            layers.append(torch.nn.SiLU())
    return torch.nn.Sequential(*layers)


def channels_of(state: Dict[str, "object"]) -> List[int]:
    try:
        weights = [state[f"{2 * i}.weight"] for i in range(CONVS)]
    except KeyError as err:
        raise ValueError(f"not a LayerDiffuse transparency encoder: blocks.{err.args[0]} is missing") from None
    return [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]


def load(path: Path, device: str = "cpu"):
    """The encoder of the safetensors file ``path`` (float32, eval mode) on ``device``."""
    from safetensors.torch import load_file

    state = {k[len("blocks.") :]: v for k, v in load_file(str(path)).items() if k.startswith("blocks.")}
    model = build(channels_of(state))
    model.load_state_dict(state, strict=True)
    return model.float().eval().to(device)


def extend_colour(rgba: np.ndarray, step: float = 1.2) -> np.ndarray:
    """H x W x 3 float colour (0..1) of an RGBA uint8 picture, with the visible colour carried smoothly into its
    transparent parts: premultiplied colour and alpha are shrunk by ``step`` down to one pixel, and from the coarsest
    level up each level's colour fills in where it is transparent."""
    colour = rgba[..., :3].astype(np.float32) / 255.0
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    levels = [(colour * alpha, alpha)]
    while min(levels[-1][1].shape[:2]) > 1:
        c, a = levels[-1]
        size = (max(1, int(c.shape[1] / step)), max(1, int(c.shape[0] / step)))
        levels.append(
            (
                cv2.resize(c, size, interpolation=cv2.INTER_AREA),
                cv2.resize(a, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], 1),
            )
        )
    c, a = levels[-1]
    filled = c.sum(axis=(0, 1), keepdims=True) / max(float(a.sum()), 1e-8)
    for c, a in reversed(levels):
        filled = cv2.resize(filled, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_LINEAR).reshape(c.shape)
        filled = c + filled * (1.0 - a)
    return filled


def encode(vae, encoder, rgba: np.ndarray):
    """Scaled latents [1, 4, h, w] (as a pipeline's img2img takes them) of an RGBA uint8 picture whose sides are
    multiples of 8."""
    import torch

    from .latents import _full_precision as full_precision

    picture = torch.from_numpy(np.ascontiguousarray(rgba)).permute(2, 0, 1)[None].float() / 255.0
    colour, alpha = picture[:, :3], picture[:, 3:]
    extended = torch.from_numpy(extend_colour(rgba)).permute(2, 0, 1)[None]
    device = next(encoder.parameters()).device
    with torch.inference_mode(), full_precision(vae):
        posterior = vae.encode(((colour * 2.0 - 1.0) * alpha).to(vae.device, vae.dtype)).latent_dist
        offset = encoder(torch.cat([alpha, extended], dim=1).to(device)) * OFFSET_SCALE
        latent = posterior.mean.float() + posterior.std.float() * offset.to(posterior.mean.device).float()
    return latent * vae.config.scaling_factor
