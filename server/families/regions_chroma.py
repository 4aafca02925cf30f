"""Regions on Chroma: the masked joint attention of ``regions`` with Chroma's text key mask.

Chroma's transformer is Flux's layout ([text | image] in the double-stream blocks' joint attention and in the
single-stream blocks, every text token at position (0, 0, 0)), with T5 tokens padded to 512 per prompt and a key
mask over them (each prompt's real tokens and its first padding token): the transformer turns the mask into the
outer product ``m_i * m_j`` over [text | image] and hands it to every attention layer, where torch adds it to the
logits as diffusers 0.42 builds it. Chroma runs real CFG: the negative prompt in a second transformer call.

1. ``prepare``: the job's prompt and each region's text (the region's prompt followed by the job's) are encoded
   separately by the pipeline's ``encode_prompt``, each with its own key mask, and concatenated: [job | region 1 |
   ...]; so are the negative prompts (the job's, then each region's followed by the job's). Every group is 512
   tokens long, so both calls share one layout.
2. ``regions.MaskedAttention`` runs each layer's own processor with ``regions.joint_mask`` joined to the call's key
   mask: the job's text and the image see what they see in the job without regions, plus (by weight) the regions'
   texts where the regions are.

A region at strength 0 (or without pixels) gets weight 0 everywhere: nothing reads its text, and the picture equals
the job without it up to rounding.
"""

from __future__ import annotations

from typing import Sequence, Tuple

from ..core import Region
from . import regions, specs

FAMILIES = (specs.CHROMA,)
MAX_SEQUENCE = 512  # T5 tokens per prompt, as ChromaPipeline pads each
# the joint mask kept, its copy joined to the call's key mask, and the aligned copy torch's attention may make
CHROMA_MASK_COPIES = 3


def early_plan(call: dict, region_list: Sequence[Region], width: int, height: int) -> regions.RegionPlan:
    """The plan before any prompt is encoded (``regions.check_memory``): every prompt is 512 T5 tokens."""
    lengths = [MAX_SEQUENCE] * (len(region_list) + 1)
    return regions.plan(region_list, lengths, width, height, copies=CHROMA_MASK_COPIES)


def prepare(
    runner, call: dict, texts: Sequence[Tuple[str, str]], region_list: Sequence[Region], width: int, height: int
) -> Tuple[dict, regions.RegionPlan]:
    """``call`` with the job's and the regions' prompts and negative prompts (``(text, negative)`` each) as one text
    sequence with its key mask in place of its own, and the plan."""
    import torch

    device = runner._execution_device
    guided = float(call.get("guidance_scale") or 0) > 1  # the pipeline's own test for its negative pass

    def encode(prompts: Sequence[str]):
        parts = [runner.encode_prompt(p, device=device, do_classifier_free_guidance=False) for p in prompts]
        embeds, masks = [p[0] for p in parts], [p[2] for p in parts]
        return torch.cat(embeds, dim=1), torch.cat(masks, dim=1), [int(e.shape[1]) for e in embeds]

    with torch.inference_mode():
        embeds, mask, lengths = encode([call["prompt"], *(t for t, _ in texts)])
        negative = encode([call.get("negative_prompt") or "", *(n for _, n in texts)]) if guided else None
    out = {k: v for k, v in call.items() if k not in ("prompt", "negative_prompt")}
    out["prompt_embeds"], out["prompt_attention_mask"] = embeds, mask
    if negative is not None:
        out["negative_prompt_embeds"], out["negative_prompt_attention_mask"] = negative[:2]
    return out, regions.plan(region_list, lengths, width, height, copies=CHROMA_MASK_COPIES)
