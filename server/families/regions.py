"""Regions on Flux.1 (dev, schnell, Fill): each area of the picture conditioned by its own prompt, through a mask on
the transformer's joint attention.

1. ``prompt_inputs``: the job's prompt (with a Redux job's image tokens, when it has them) and each region's text
   (``diffusion.regions.texts``: the region's prompt followed by the job's) are encoded separately by the pipeline's
   own ``encode_prompt`` and their T5 tokens concatenated into one text sequence: [job | region 1 | region 2 ...].
   The pooled CLIP vector stays the job prompt's. Flux gives every text token the position id (0, 0, 0) — its
   rotary embedding leaves text tokens unrotated — so the pipeline's zero ``text_ids`` for the longer sequence are
   right as they are.
2. ``RegionPlan.mask``: an additive attention mask over [text | image] tokens (diffusers' Flux processors put the
   text first in the double-stream blocks, and the single-stream blocks run on the same concatenation). The image
   part comes from ``diffusion.regions.weights`` at the packed latent grid (Flux packs 2 x 2 latents per token, so
   16 px per token): per token, the job prompt's weight and each region's (mask x strength, summing to 1 as on
   SD1.5/SDXL). An image token attends to a text group with the bias log(weight) — only its own region's text where a
   region covers it fully, only the job's outside every region, both in proportion on soft edges — and to every image
   token; a region's text tokens attend to themselves and, with the same biases, to their region's image tokens; the
   job prompt's text attends to itself and to the whole picture.
3. ``applied``: for one job, every attention processor of the transformer (and of the job's ControlNet, which gets
   the same tokens) is wrapped by ``MaskedAttention``, which hands the mask to the wrapped processor; diffusers'
   attention dispatch runs torch's ``scaled_dot_product_attention`` with it (the native backend is made active for
   the job). The processors and the backend come back afterwards, also when the job fails.

A region at strength 0 (or without pixels) gets weight 0 everywhere: nothing reads its text, and the picture equals
the job without it up to rounding.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from ..core import Region
from ..diffusion import regions as sd_regions
from . import specs

FAMILIES = (specs.FLUX, specs.FLUX_FILL)  # Flux.1 families whose jobs take regions
TOKEN_PX = 16  # pixels per Flux image token: VAE factor 8 x 2 x 2 packing
MAX_SEQUENCE = 512  # T5 tokens per text, as the Flux pipelines encode a prompt by default


@dataclass
class RegionPlan:
    """The token layout of one job: ``lengths`` of the text groups (the job's prompt, then each region's) and the
    ``weights`` of each group per image token (float32, ``[groups, tokens]``, summing to 1 per token)."""

    lengths: List[int]
    weights: np.ndarray
    _masks: Dict[Tuple[str, object], object] = field(default_factory=dict)

    @property
    def text_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def sequence(self) -> int:
        """Tokens in the joint attention: the whole text, then the image."""
        return self.text_tokens + int(self.weights.shape[1])

    def mask(self, like) -> "object":
        """The additive mask ``[1, 1, sequence, sequence]`` in ``like``'s dtype and device (0 = attend, -inf = not)."""
        key = (str(like.device), like.dtype)
        if key not in self._masks:
            self._masks[key] = _mask(self.lengths, self.weights).to(device=like.device, dtype=like.dtype)[None, None]
        return self._masks[key]


def _mask(lengths: Sequence[int], weights: np.ndarray):
    """The mask of ``RegionPlan.mask`` in float32 on the CPU."""
    import torch

    group = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))  # each text token's group
    bias = torch.from_numpy(np.ascontiguousarray(weights, np.float32)).log()  # [groups, image tokens]; log 0 = -inf
    text = int(group.numel())
    size = text + bias.shape[1]
    out = torch.zeros(size, size)
    out[:text, :text] = torch.where(group[:, None] == group[None, :], 0.0, float("-inf"))
    to_image = bias[group]  # [text, image]: a text token sees the image tokens of its group ...
    to_image[group == 0] = 0.0  # ... and the job prompt's text sees the whole picture
    out[:text, text:] = to_image
    out[text:, :text] = bias[group].T  # an image token sees each group's text by that group's weight there
    return out


def plan(regions: Sequence[Region], lengths: Sequence[int], width: int, height: int) -> RegionPlan:
    """The plan for a ``width`` x ``height`` px processing size (multiples of 16) with the text groups' ``lengths``."""
    if width % TOKEN_PX or height % TOKEN_PX:
        raise ValueError(f"a Flux processing size is a multiple of {TOKEN_PX} px, not {width}x{height}")
    weights = sd_regions.weights(regions, width // TOKEN_PX, height // TOKEN_PX)
    return RegionPlan(list(lengths), weights.reshape(weights.shape[0], -1))


def prompt_inputs(runner, call: dict, texts: Sequence[str]) -> Tuple[dict, List[int]]:
    """``prompt_embeds`` and ``pooled_prompt_embeds`` for ``runner`` (a Flux pipeline) in place of ``call``'s prompt
    (or of its embeddings, a Redux job's): the job's T5 tokens, then each region text's; and each group's length."""
    import torch

    device = runner._execution_device
    with torch.inference_mode():
        if "prompt_embeds" in call:
            base, pooled = call["prompt_embeds"], call["pooled_prompt_embeds"]
        else:
            base, pooled, _ = runner.encode_prompt(
                prompt=call["prompt"], prompt_2=None, max_sequence_length=MAX_SEQUENCE, device=device
            )
        groups = [base]
        for text in texts:
            embeds, _, _ = runner.encode_prompt(
                prompt=text, prompt_2=None, max_sequence_length=MAX_SEQUENCE, device=device
            )
            groups.append(embeds.to(base.dtype))
    out = {k: v for k, v in call.items() if k != "prompt"}
    out["prompt_embeds"] = torch.cat(groups, dim=1)
    out["pooled_prompt_embeds"] = pooled
    return out, [int(g.shape[1]) for g in groups]


class MaskedAttention:
    """An attention processor that runs the wrapped one with the regions' mask over the joint sequence."""

    def __init__(self, inner, region_plan: RegionPlan) -> None:
        self.inner = inner
        self.plan = region_plan

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        tokens = hidden_states.shape[1] + (0 if encoder_hidden_states is None else encoder_hidden_states.shape[1])
        if tokens != self.plan.sequence:
            raise RuntimeError(
                f"an attention layer over {tokens} tokens does not match the regions' "
                f"{self.plan.text_tokens} text + {self.plan.weights.shape[1]} image tokens"
            )
        return self.inner(
            attn,
            hidden_states,
            encoder_hidden_states,
            attention_mask=self.plan.mask(hidden_states),
            image_rotary_emb=image_rotary_emb,
        )


@contextlib.contextmanager
def applied(modules: Sequence[object], region_plan: "RegionPlan | None") -> Iterator[None]:
    """Within the block, the attention of each of ``modules`` (a transformer, its ControlNet) follows
    ``region_plan`` on diffusers' native (torch SDPA) attention backend; nothing changes when it is None."""
    if region_plan is None:
        yield
        return
    from diffusers.models.attention_dispatch import attention_backend

    saved = [(m, dict(m.attn_processors)) for m in modules if m is not None]
    try:
        for module, processors in saved:
            module.set_attn_processor({name: MaskedAttention(p, region_plan) for name, p in processors.items()})
        with attention_backend("native"):
            yield
    finally:
        for module, processors in saved:
            module.set_attn_processor(processors)
