"""Hires fix: the plan of a two-pass job and the upscale between the passes.

A box larger than the model's native area is first sampled at the native area (as every job is), then upscaled to
the target size, in latent space (``latent``: the latents interpolated, as A1111's "Latent") or in pixel space
(``lanczos``, or an upscale model from the models folder: the first pass decoded, upscaled, encoded again), and
sampled a second time at the target size with its own denoise (``hires.strength``) and steps. The passes are stock
diffusers pipelines (txt2img/img2img/inpaint, then img2img/inpaint handed the upscaled latents).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from protocol.errors import ProtocolError

LATENT = "latent"
LANCZOS = "lanczos"
MAX_SIDE_FACTOR = 4  # the second pass is at most 4x the native side (16x its area)

# (H x W x 3 uint8 RGB, upscale model name, width, height) -> H' x W' x 3 uint8 RGB; wired by the router
PixelUpscaler = Callable[[np.ndarray, str, int, int], np.ndarray]


@dataclasses.dataclass(frozen=True)
class HiresPlan:
    """The second pass: its size (multiples of the latent factor), upscaler, denoise and steps."""

    width: int
    height: int
    upscaler: str
    strength: float
    steps: int


def plan(
    hires, box_width: int, box_height: int, pw: int, ph: int, factor: int, steps: int, live: bool = False
) -> Optional[HiresPlan]:
    """The second pass of a job whose first pass runs at ``pw`` x ``ph``; None when hires is off, the job is a live
    frame, or the target is not larger than the first pass. ``hires.scale`` > 0 sets the target to that multiple of
    the first pass; 0 takes the box's own size. The target is capped at ``MAX_SIDE_FACTOR`` times the first pass."""
    if hires is None or not hires.enabled or live:
        return None
    if hires.scale > 0:
        tw, th = pw * hires.scale, ph * hires.scale
    else:
        tw, th = float(box_width), float(box_height)
    cap = min(MAX_SIDE_FACTOR, max(tw / pw, th / ph)) / max(tw / pw, th / ph)
    tw = max(factor, int(tw * cap / factor + 0.5) * factor)
    th = max(factor, int(th * cap / factor + 0.5) * factor)
    if tw * th <= pw * ph:
        return None
    second_steps = hires.steps or steps
    strength = max(float(hires.strength), 1.0 / second_steps)  # diffusers runs int(steps * strength): keep one
    return HiresPlan(tw, th, hires.upscaler or LATENT, strength, second_steps)


def second_pass_steps(p: HiresPlan) -> int:
    """The denoising steps the second pass runs (as diffusers counts them for img2img and inpaint)."""
    return max(1, min(int(p.steps * p.strength), p.steps))


def upscale_latents(latents, width: int, height: int, factor: int):
    """Latents [B, C, h, w] interpolated (bilinear) to the latent size of ``width`` x ``height`` px."""
    import torch.nn.functional as F

    size = (height // factor, width // factor)
    return F.interpolate(latents.float(), size=size, mode="bilinear", align_corners=False).to(latents.dtype)


def upscale_pixels(
    images: np.ndarray,
    width: int,
    height: int,
    upscaler: str,
    model_upscaler: Optional[PixelUpscaler],
    tileable: bool = False,
) -> list:
    """Each image of [B, H, W, 3] floats in [0, 1] (a decoded first pass) upscaled to ``width`` x ``height``:
    H x W x 3 uint8 each, by Lanczos or the named upscale model (a tileable job's as a picture that wraps)."""
    from .. import imageops, seamless

    out = []
    for img in images:
        rgb = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
        if upscaler == LANCZOS:
            out.append((seamless.resize if tileable else imageops.resize)(rgb, width, height))
        else:
            if model_upscaler is None:
                raise ProtocolError(
                    "unsupported",
                    f"hires upscaler '{upscaler}' needs the upscale engine, which this server did not wire",
                    field="params.hires.upscaler",
                )

            def model(pixels: np.ndarray, w: int, h: int) -> np.ndarray:
                return imageops.resize(model_upscaler(pixels, upscaler, w, h), w, h)

            out.append(seamless.wrapped(model, rgb, width, height, 16) if tileable else model(rgb, width, height))
    return out
