"""Cheap progress previews: latents → RGB by a fixed linear map (no VAE decode), at latent size (≤ 128 px)."""

from __future__ import annotations

import numpy as np

# Least-squares fits of RGB on the 4 latent channels, as used by common SD UIs for live previews.
SD15_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SDXL_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_BIAS = (0.1084, -0.0175, -0.0011)
MAX_SIDE = 128


def latents_to_rgb(latents, arch: str) -> np.ndarray:
    """First image of a [B, 4, h, w] latent batch as an h x w x 3 uint8 preview (downsampled to ≤ 128 px)."""
    import torch

    lat = latents[0, :4].detach().float().cpu()
    step = max(1, -(-max(lat.shape[1:]) // MAX_SIDE))
    lat = lat[:, ::step, ::step]
    factors = torch.tensor(SDXL_FACTORS if arch == "sdxl" else SD15_FACTORS)
    rgb = torch.einsum("chw,cr->hwr", lat, factors)
    if arch == "sdxl":
        rgb = rgb + torch.tensor(SDXL_BIAS)
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
