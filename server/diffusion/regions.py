"""Regions on SD1.5/SDXL UNets: each area of the picture conditioned by its own prompt (an "attention couple").

The UNet's cross-attention layers (``attn2``) get a ``RegionAttention`` processor through diffusers'
``unet.set_attn_processor`` for the length of one pipeline call. It runs the layer's own processor once for the job's
prompt and once per region (the region's prompt followed by the job's), and blends the outputs pixel by pixel with
weights made from the region masks at that layer's resolution: a region's weight is its mask × strength; where
regions overlap and their weights add up to more than 1 they are scaled to 1; the job's prompt gets what is left, so
pixels outside every region follow the job's prompt alone. The weights sum to 1 everywhere, so the blend keeps the
layer's output scale (and its output projection's bias). Self-attention and the pipelines' samplers are untouched.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .. import imageops
from ..core import Region
from .prompts import LoraTag, extract_loras

CROSS_ATTENTION = "attn2.processor"  # diffusers' name of a transformer block's cross-attention processor
FAMILIES = ("sd15", "sdxl")  # UNet families whose cross-attention the processor can blend


def texts(regions: Sequence[Region], prompt: str, negative: str) -> Tuple[List[Tuple[str, str]], List[LoraTag]]:
    """Each region's (prompt, negative prompt) as encoded — its own text followed by the job's — and the LoRA tags the
    region texts carry (removed from them; they apply to the whole job like the job's own tags)."""
    out, tags = [], []
    for region in regions:
        own, own_tags = extract_loras(region.prompt)
        own_negative, negative_tags = extract_loras(region.negative_prompt)
        tags += own_tags + negative_tags
        out.append((_join(own, prompt), _join(own_negative, negative)))
    return out, tags


def _join(first: str, second: str) -> str:
    first, second = first.strip(), second.strip()
    return f"{first}, {second}" if first and second else first or second


def weights(regions: Sequence[Region], width: int, height: int) -> np.ndarray:
    """The blend weights at ``width`` x ``height`` (float32, [1 + regions, height, width], summing to 1 per pixel):
    index 0 is the job's prompt, then one per region (mask × strength, overlaps scaled down to a sum of 1)."""
    out = np.zeros((len(regions) + 1, height, width), np.float32)
    for i, region in enumerate(regions, start=1):
        mask = region.mask if region.mask.shape == (height, width) else _resize(region.mask, width, height)
        out[i] = mask.astype(np.float32) * (float(region.strength) / 255.0)
    total = out[1:].sum(axis=0)
    over = total > 1.0
    out[1:, over] /= total[over]
    out[0] = np.clip(1.0 - out[1:].sum(axis=0), 0.0, 1.0)
    return out


def _resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area averaging when shrinking, linear when enlarging (no ringing: weights stay in 0..1)."""
    shrinking = width * height < array.shape[0] * array.shape[1]
    return imageops.resize(array, width, height, cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


@dataclass
class RegionPlan:
    """What the processors of one pipeline call share: the blend weights at latent size and each region's prompt
    embeddings (``[1, tokens, dim]`` negative and positive, in the pipeline's dtype and device)."""

    latent_weights: "object"  # torch tensor [1 + regions, 1, h, w]
    embeds: List[Tuple["object", "object"]]
    batch: int  # images per call: with classifier-free guidance the UNet sees 2 x batch rows
    _by_tokens: Dict[int, "object"] = field(default_factory=dict)

    def weights_for(self, tokens: int, like) -> "object":
        """The weights at the attention resolution of ``tokens`` query positions, as ``[1 + regions, 1, tokens, 1]``."""
        import torch.nn.functional as F

        cache = self._by_tokens
        if tokens not in cache:
            h, w = self.latent_weights.shape[-2:]
            while h * w > tokens:  # each UNet level halves the size, rounding up (stride-2 convolutions, padding 1)
                h, w = (h + 1) // 2, (w + 1) // 2
            if h * w != tokens:
                raise RuntimeError(
                    f"a cross-attention layer over {tokens} positions matches no level of the "
                    f"{tuple(self.latent_weights.shape[-2:])} latent"
                )
            level = F.interpolate(self.latent_weights, size=(h, w), mode="area")
            level = level / level.sum(dim=0, keepdim=True).clamp_min(1e-6)
            cache[tokens] = level.reshape(level.shape[0], 1, tokens, 1)
        return cache[tokens].to(device=like.device, dtype=like.dtype)

    def region_states(self, rows: int) -> Iterator["object"]:
        """Each region's encoder states for a UNet call of ``rows`` rows (negative rows first under guidance)."""
        import torch

        guided = rows == 2 * self.batch
        per_prompt = self.batch if guided else rows
        for negative, positive in self.embeds:
            pos = positive.expand(per_prompt, -1, -1)
            yield torch.cat([negative.expand(per_prompt, -1, -1), pos]) if guided else pos


class RegionAttention:
    """A cross-attention processor that blends the wrapped processor's output for the job's prompt and for each
    region's prompt by the regions' weights at the layer's resolution."""

    def __init__(self, inner, plan: RegionPlan) -> None:
        self.inner = inner
        self.plan = plan

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        *args,
        ip_adapter_masks=None,
        **kwargs,
    ):
        # diffusers hands a processor only the cross-attention kwargs its signature names: masked references' masks
        # must be named here to reach the wrapped IP-Adapter processor
        if ip_adapter_masks is not None:
            kwargs["ip_adapter_masks"] = ip_adapter_masks
        if encoder_hidden_states is None or hidden_states.ndim != 3:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        weights = self.plan.weights_for(hidden_states.shape[1], hidden_states)
        out = weights[0] * self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        # With IP-Adapters loaded the UNet hands (text states, image embeds): a region swaps only the text part.
        extra = tuple(encoder_hidden_states[1:]) if isinstance(encoder_hidden_states, tuple) else None
        text = encoder_hidden_states[0] if extra is not None else encoder_hidden_states
        for weight, states in zip(weights[1:], self.plan.region_states(hidden_states.shape[0])):
            states = states.to(device=text.device, dtype=text.dtype)
            states = (states,) + extra if extra is not None else states
            out = out + weight * self.inner(attn, hidden_states, states, attention_mask, temb, *args, **kwargs)
        return out


def plan(
    regions: Sequence[Region],
    conditionings: Sequence[object],
    width: int,
    height: int,
    latent_width: int,
    latent_height: int,
    batch: int,
    device,
    dtype,
) -> RegionPlan:
    """The plan of one call: ``regions`` at the context size ``width`` x ``height`` with their encoded prompts
    (``prompts.Conditioning`` each), for a latent of ``latent_width`` x ``latent_height``."""
    import torch

    full = weights(regions, width, height)
    latent = np.stack([_resize(w, latent_width, latent_height) for w in full])
    tensor = torch.from_numpy(np.ascontiguousarray(latent, np.float32))[:, None].to(device)
    embeds = [(c.negative_prompt_embeds.to(device, dtype), c.prompt_embeds.to(device, dtype)) for c in conditionings]
    return RegionPlan(tensor, embeds, batch)


@contextlib.contextmanager
def applied(unet, region_plan: Optional[RegionPlan]) -> Iterator[None]:
    """Within the block, ``unet``'s cross-attention layers follow ``region_plan`` (nothing changes when it is None);
    the processors it had come back afterwards, also when the call fails."""
    if region_plan is None:
        yield
        return
    saved = dict(unet.attn_processors)
    unet.set_attn_processor(
        {
            name: RegionAttention(proc, region_plan) if name.endswith(CROSS_ATTENTION) else proc
            for name, proc in saved.items()
        }
    )
    try:
        yield
    finally:
        unet.set_attn_processor(saved)
