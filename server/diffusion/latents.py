"""Pixels → VAE latents, once per distinct image: the engine hands the pipelines latents instead of pixels.

Stock diffusers inpainting with a regular (4-channel) UNet encodes the image and the masked image, and uses only the
first; img2img and inpaint also encode again on every click. Here the image is encoded once, with the posterior's
mean (as ComfyUI does: the latents then depend on the pixels only, not on the seed, so they can be cached), and the
masked image only for 9-channel inpainting UNets, which use it.
"""

from __future__ import annotations

import numpy as np


def to_tensor(rgb: np.ndarray, device, dtype, hole: np.ndarray = None):
    """H x W x 3 uint8 → [1, 3, H, W] in [-1, 1]; pixels where ``hole`` > 0 become 0 (the masked image of
    inpainting UNets)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(rgb[..., :3])).permute(2, 0, 1)[None].float().div_(127.5).sub_(1.0)
    if hole is not None:
        t = t * torch.from_numpy(hole == 0)[None, None]
    return t.to(device=device, dtype=dtype)


def encode(vae, pixels):
    """Scaled latents [1, 4, h, w] of [1, 3, H, W] pixels in [-1, 1] (the posterior mean; a float16 VAE that asks for
    it is run in float32 for the encode, as diffusers does)."""
    import torch

    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    dtype = vae.dtype
    with torch.inference_mode():
        if upcast:
            vae.to(torch.float32)
        try:
            dist = vae.encode(pixels.to(vae.dtype)).latent_dist
            latents = dist.mode() * vae.config.scaling_factor
        finally:
            if upcast:
                vae.to(dtype)
    return latents.to(dtype)
