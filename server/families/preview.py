"""Progress previews for Flux/SD3: latents → RGB by a linear map fitted to the checkpoint's own VAE.

The 16-channel latents of these families have no fixed published map that fits every VAE, so the map is measured when
the checkpoint loads: the VAE encodes a fixed picture of colour patches and gradients (128² px), and a least-squares fit
gives RGB ≈ latents · W + b in the space the transformer denoises ((z - shift) · scale). One encode, on the CPU before
the model is placed. Flux keeps its latents packed (2x2 patches as 64 channels): ``unpack`` undoes it.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

FIT_SIDE = 128  # px of the fitting picture: 16² latent pixels for 17 unknowns per colour
MAX_SIDE = 128  # previews at most this many latent pixels wide (one latent pixel per preview pixel)


def fitting_picture(side: int = FIT_SIDE) -> np.ndarray:
    """A fixed side x side RGB picture in [-1, 1]: 8x8 blocks of seeded random colours over two gradients."""
    rng = np.random.default_rng(0)
    blocks = rng.uniform(-1, 1, (side // 16, side // 16, 3)).repeat(16, 0).repeat(16, 1)
    ramp = np.linspace(-1, 1, side)
    gradient = np.stack(
        [ramp[None, :].repeat(side, 0), ramp[:, None].repeat(side, 1), -ramp[None, :].repeat(side, 0)], -1
    )
    mixed = np.where(
        (np.arange(side)[:, None] // 32 + np.arange(side)[None, :] // 32)[..., None] % 3 == 0, gradient, blocks
    )
    return mixed.astype(np.float32)


def fit(vae) -> Tuple[np.ndarray, np.ndarray]:
    """(W [C, 3], b [3]) with RGB in [-1, 1] ≈ normalised latents · W + b for ``vae`` (an AutoencoderKL)."""
    import torch

    picture = fitting_picture()
    param = next(vae.parameters())
    x = torch.from_numpy(picture.transpose(2, 0, 1)[None]).to(param.device, param.dtype)
    with torch.inference_mode():
        z = vae.encode(x).latent_dist.mean.float()
    shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
    scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
    return solve(((z - shift) * scale)[0].cpu().numpy(), picture)


def solve(z: np.ndarray, picture: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(W [C, 3], b [3]) of the least-squares fit RGB ≈ z · W + b, ``z`` [C, h, w] the latents of ``picture``."""
    c, h, w = z.shape
    factor = picture.shape[0] // h
    target = picture.reshape(h, factor, w, factor, 3).mean((1, 3)).reshape(-1, 3)
    design = np.concatenate([z.reshape(c, -1).T, np.ones((h * w, 1), np.float32)], 1)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)


def unpack(latents, height: int, width: int):
    """Flux's packed latents [B, (h/2)(w/2), 4C] as [B, C, h, w] (``height``/``width``: the image's pixels)."""
    b, _, packed = latents.shape
    h2, w2 = height // 16, width // 16
    channels = packed // 4
    return latents.view(b, h2, w2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, channels, h2 * 2, w2 * 2)


def to_rgb(latents, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The first image of a [B, C, h, w] latent batch as an h x w x 3 uint8 preview (≤ MAX_SIDE px a side)."""
    z = latents[0].detach().float().cpu().numpy()
    step = max(1, -(-max(z.shape[1:]) // MAX_SIDE))
    z = z[:, ::step, ::step]
    rgb = np.einsum("chw,cr->hwr", z, weights) + bias
    return np.clip(np.rint((rgb + 1) * 127.5), 0, 255).astype(np.uint8)
