"""Regions on SD3/SD3.5: the masked joint attention of ``regions`` in the MMDiT's layout.

SD3's transformer blocks run one joint attention over [image | text] (image first: diffusers' ``JointAttnProcessor2_0``
concatenates the text's queries, keys and values after the image's); SD3.5's dual-attention blocks add a
self-attention over the image alone. A prompt's text is CLIP-L and CLIP-G's 77 tokens (side by side, padded to T5's
width) followed by T5's tokens, all read (no key mask), with no position of their own (SD3 places only the image's
patches); the pooled CLIP vectors condition every block's norms. CFG runs the negative prompt in the same call (the
batch: negative, then positive).

1. ``prepare``: the job's prompt and each region's text (the region's prompt followed by the job's) are encoded
   separately by the pipeline's ``encode_prompt`` (CLIP-L, CLIP-G and T5 each), and so are the negative prompts (the
   job's, then each region's followed by the job's); each group's tokens are concatenated: [job | region 1 | ...].
   Every group has the same length (77 + T5's), so the negative and positive rows share one layout. The pooled
   vectors stay the job prompt's.
2. ``SD3Plan``: every joint attention layer (the job's ControlNet's too) runs its own processor with
   ``regions.joint_mask`` reordered to [image | text], handed to torch's ``scaled_dot_product_attention`` through
   ``regions.MaskedSDPA`` (diffusers' SD3 processor calls it without a mask); the image's own self-attention (SD3.5)
   runs as it is: image tokens read each other freely in every layer.

A region at strength 0 (or without pixels) gets weight 0 everywhere: nothing reads its text, and the picture equals
the job without it up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from ..core import Region
from . import regions, specs

FAMILIES = (specs.SD3,)
TEXT_TOKENS = 77 + 256  # one prompt: CLIP's 77 tokens, then T5's 256 (StableDiffusion3Pipeline's max_sequence_length)
SD3_MASK_COPIES = 3  # the [text | image] mask while it is reordered, the reordered one kept, attention's aligned copy


@dataclass
class SD3Plan(regions.RegionPlan):
    """``regions.RegionPlan`` in SD3's order: the image's tokens first, then the text groups'."""

    copies: int = SD3_MASK_COPIES

    def wrap(self, name: str, processor):
        """The processor the attention layer ``name`` runs for the job."""
        return SD3MaskedAttention(processor, self)

    def mask(self, like, tokens: Optional[int] = None):
        """The additive mask ``[1, 1, S, S]`` over [image | text] in ``like``'s dtype and device."""
        import torch

        key = (str(like.device), like.dtype)
        if key not in self._masks:
            joint = regions.extended_mask(self.lengths, self.weights, 0, like)  # [text | image]
            text, size = self.text_tokens, joint.shape[0]
            order = torch.cat([torch.arange(text, size), torch.arange(text)]).to(joint.device)
            self._masks[key] = joint[order][:, order][None, None]
        return self._masks[key]


class SD3MaskedAttention:
    """An SD3 attention processor run with the regions' mask where it joins text and image."""

    def __init__(self, inner, plan: SD3Plan) -> None:
        self.inner, self.plan = inner, plan

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        if encoder_hidden_states is None:  # the image's own self-attention
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        regions.check_layout("SD3", int(encoder_hidden_states.shape[1]), int(hidden_states.shape[1]), self.plan)
        return regions.masked_once(
            self.plan.mask(hidden_states),
            "SD3",
            lambda: self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs),
        )


def early_plan(call: dict, region_list: Sequence[Region], width: int, height: int) -> SD3Plan:
    """The plan before any prompt is encoded (``regions.check_memory``): every prompt is 77 + 256 tokens."""
    return SD3Plan([TEXT_TOKENS] * (len(region_list) + 1), regions.token_weights(region_list, width, height))


def prepare(
    runner, call: dict, texts: Sequence[Tuple[str, str]], region_list: Sequence[Region], width: int, height: int
) -> Tuple[dict, SD3Plan]:
    """``call`` with the job's and the regions' prompts and negative prompts (``(text, negative)`` each) in place of
    its own, and the plan."""
    import torch

    device = runner._execution_device
    guided = float(call.get("guidance_scale") or 0) > 1  # the pipeline's own test for its negative rows
    pairs = [(call["prompt"], call.get("negative_prompt") or ""), *texts]
    with torch.inference_mode():
        encoded = [
            runner.encode_prompt(
                prompt=p,
                prompt_2=None,
                prompt_3=None,
                negative_prompt=n,
                device=device,
                do_classifier_free_guidance=guided,
            )
            for p, n in pairs
        ]
    out = {k: v for k, v in call.items() if k not in ("prompt", "negative_prompt")}
    out["prompt_embeds"] = torch.cat([e[0] for e in encoded], dim=1)
    out["pooled_prompt_embeds"] = encoded[0][2]
    if guided:
        out["negative_prompt_embeds"] = torch.cat([e[1] for e in encoded], dim=1)
        out["negative_pooled_prompt_embeds"] = encoded[0][3]
    lengths = [int(e[0].shape[1]) for e in encoded]
    return out, SD3Plan(lengths, regions.token_weights(region_list, width, height))
