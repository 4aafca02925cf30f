"""Pixels → VAE latents, once per distinct image (the engine hands the pipelines latents instead of pixels), and
latents → pixels only where the result can change.

Stock diffusers inpainting with a regular (4-channel) UNet encodes the image and the masked image, and uses only the
first; img2img and inpaint also encode again on every click. Here the image is encoded once, with the posterior's
mean (as ComfyUI does: the latents then depend on the pixels only, not on the seed, so they can be cached), and the
masked image only for 9-channel inpainting UNets, which use it.

An inpaint result keeps the original pixels outside its (feathered) mask, so only a box around the mask, with a margin
for the decoder's context, is decoded (``decode_box`` / ``decode_into``); the rest is the init image, which the
result layer replaces by the original anyway.
"""

from __future__ import annotations

import contextlib
from typing import Optional, Tuple

import numpy as np

DECODE_MARGIN = 64  # px at processing size around the mask's box: the decoder's context for the pixels inside
MAX_DECODE_FRACTION = 0.6  # above this share of the image, decode it all


def to_tensor(rgb: np.ndarray, device, dtype, hole: np.ndarray = None):
    """H x W x 3 uint8 → [1, 3, H, W] in [-1, 1]; pixels where ``hole`` > 0 become 0 (the masked image of
    inpainting UNets)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(rgb[..., :3])).permute(2, 0, 1)[None].float().div_(127.5).sub_(1.0)
    if hole is not None:
        t = t * torch.from_numpy(hole == 0)[None, None]
    return t.to(device=device, dtype=dtype)


@contextlib.contextmanager
def _full_precision(vae):
    """Run a float16 VAE that asks for it (``force_upcast``, SDXL's) in float32, as diffusers does."""
    import torch

    dtype = vae.dtype
    upcast = dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield
    finally:
        if upcast:
            vae.to(dtype)


def encode(vae, pixels):
    """Scaled latents [1, 4, h, w] of [1, 3, H, W] pixels in [-1, 1] (the posterior mean)."""
    import torch

    dtype = vae.dtype
    with torch.inference_mode(), _full_precision(vae):
        latents = vae.encode(pixels.to(vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
    return latents.to(dtype)


def decode_box(soft: np.ndarray, pw: int, ph: int, factor: int, vae_config) -> Optional[Tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) at processing size (multiples of ``factor``) that holds the mask's box and a margin, or None
    when that is most of the image (or the VAE needs latent statistics this module does not apply)."""
    if getattr(vae_config, "latents_mean", None) is not None or getattr(vae_config, "shift_factor", None):
        return None
    ys, xs = np.nonzero(soft)
    if len(xs) == 0:
        return None
    h, w = soft.shape
    x0 = max(0, (int(xs.min() * pw / w) - DECODE_MARGIN) // factor * factor)
    y0 = max(0, (int(ys.min() * ph / h) - DECODE_MARGIN) // factor * factor)
    x1 = min(pw, -(-(int(np.ceil((xs.max() + 1) * pw / w)) + DECODE_MARGIN) // factor) * factor)
    y1 = min(ph, -(-(int(np.ceil((ys.max() + 1) * ph / h)) + DECODE_MARGIN) // factor) * factor)
    if (x1 - x0) * (y1 - y0) > MAX_DECODE_FRACTION * pw * ph:
        return None
    return x0, y0, x1, y1


def decode_into(vae, latents, box: Tuple[int, int, int, int], init: np.ndarray, factor: int) -> np.ndarray:
    """Decode the ``box`` of latents [B, 4, h, w]; returns [B, H, W, 3] floats in [0, 1]: the decoded box on the
    init image (H x W x 3 uint8), like a pipeline's ``output_type="np"``."""
    import torch

    x0, y0, x1, y1 = box
    part = latents[:, :, y0 // factor : y1 // factor, x0 // factor : x1 // factor]
    with torch.inference_mode(), _full_precision(vae):
        pixels = vae.decode(part.to(vae.dtype) / vae.config.scaling_factor).sample
    decoded = ((pixels.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    out = np.repeat((init[..., :3].astype(np.float32) / 255.0)[None], latents.shape[0], axis=0)
    out[:, y0:y1, x0:x1] = decoded
    return out
