"""Regions on Flux.2 Klein: the masked joint attention of ``regions`` in Klein's sequence layout.

Klein's transformer runs its double-stream blocks on [text | image | extra] (text as ``encoder_hidden_states``, the
image tokens then the reference pictures' or the inpaint pipeline's condition tokens as ``hidden_states``) and its
single-stream blocks on the same sequence already joined. Its text tokens are Qwen3 hidden states, padded to 512 per
prompt and all read (no key mask), at rotary positions counting up along the last axis; the image and the extra tokens
sit at positions of their own.

1. ``prepare``: the job's prompt and each region's text (the region's prompt followed by the job's) are encoded
   separately by the pipeline's ``encode_prompt`` and concatenated into one text sequence: [job | region 1 | ...].
2. ``KleinPlan``: while the job runs, a hook on the transformer restarts the text positions per group (each group
   stands where it would as the only prompt) and every attention layer gets ``regions.joint_mask`` over [text | image]
   extended to the extra tokens: image and extra tokens read each other freely, every text group reads the extra
   tokens, and the extra tokens read the job's prompt alone. A reference picture has no place on the canvas: were it
   to read a region's text, every area reading it would read that region's prompt too; reading the job's prompt, it is
   what it is in the job without regions.
3. Klein takes no negative prompt; its undistilled releases run a second pass on the empty prompt, which has no
   regions: that pass runs without a mask.

A region at strength 0 (or without pixels) gets weight 0 everywhere: nothing reads its text, and the picture equals the
job without it up to rounding.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from .. import device as devices
from ..core import Region
from . import regions, specs

FAMILIES = (specs.FLUX2_KLEIN,)
SINGLE = "single_transformer_blocks."  # the single-stream blocks' attention layers, by name
MAX_SEQUENCE = 512  # Qwen3 tokens per prompt: Flux2KleinPipeline.encode_prompt pads every prompt to this many


@dataclass
class KleinPlan:
    """The token layout of one job: ``lengths`` of the text groups (the job's prompt, then each region's), their
    ``weights`` per image token (as ``regions.token_weights``); ``masked`` says whether the running transformer call
    carries the regions' text (the negative pass does not)."""

    lengths: List[int]
    weights: np.ndarray
    masked: bool = True
    _masks: Dict[tuple, object] = field(default_factory=dict)

    @property
    def text_tokens(self) -> int:
        return sum(self.lengths)

    def wrap(self, name: str, processor):
        """The processor of the attention layer ``name`` for the job."""
        return (KleinMaskedSingleAttention if name.startswith(SINGLE) else KleinMaskedAttention)(processor, self)

    def check_memory(self, element_bytes: int, available: int, regions_count: int, extra: int = 0) -> None:
        """``regions.check_memory`` for the mask over [text | image | ``extra``] (the reference pictures' or the
        inpaint condition's tokens: known when the transformer is called, and checked again then)."""
        image = int(self.weights.shape[1]) + extra
        elements = regions.FLUX_MASK_COPIES * (self.text_tokens + image) ** 2
        regions.check_memory(elements, element_bytes, available, regions_count, self.text_tokens, image)

    @contextlib.contextmanager
    def installed(self, transformer) -> Iterator[None]:
        """Within the block, each transformer call's text positions restart per group, and the call is marked masked
        (the regions' text) or not (the job's prompt alone: the negative pass)."""
        import torch

        positions = torch.cat([torch.arange(n) for n in self.lengths])

        def before(_module, args, kwargs):
            text = int(kwargs["encoder_hidden_states"].shape[1])
            if text not in (self.text_tokens, self.lengths[0]):
                raise RuntimeError(f"a Klein call over {text} text tokens; the regions planned {self.text_tokens}")
            self.masked = text == self.text_tokens
            if self.masked:
                ids = kwargs["txt_ids"].clone()
                ids[..., -1] = positions.to(ids.device, ids.dtype)
                kwargs = dict(kwargs, txt_ids=ids)
            return args, kwargs

        handle = transformer.register_forward_pre_hook(before, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def mask(self, tokens: int, like):
        """The additive mask ``[1, 1, tokens, tokens]`` over [text | image | extra] in ``like``'s dtype and device."""
        image = int(self.weights.shape[1])
        extra = tokens - self.text_tokens - image
        if extra < 0:
            raise RuntimeError(
                f"a Klein attention layer over {tokens} tokens; the regions planned {self.text_tokens} text + "
                f"{image} image tokens"
            )
        key = (extra, str(like.device), like.dtype)
        if key not in self._masks:
            self.check_memory(like.element_size(), devices.available_bytes(like.device), len(self.lengths) - 1, extra)
            self._masks[key] = regions.extended_mask(self.lengths, self.weights, extra, like)[None, None]
        return self._masks[key]


class KleinMaskedAttention:
    """A Klein double-stream attention processor run with the regions' mask on a masked call."""

    def __init__(self, inner, plan: KleinPlan) -> None:
        self.inner, self.plan = inner, plan

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        if self.plan.masked:
            tokens = int(hidden_states.shape[1] + encoder_hidden_states.shape[1])
            attention_mask = self.plan.mask(tokens, hidden_states)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)


class KleinMaskedSingleAttention(KleinMaskedAttention):
    """A Klein single-stream attention processor (the text already joined to the image) run with the regions' mask."""

    def __call__(self, attn, hidden_states, attention_mask=None, image_rotary_emb=None):
        if self.plan.masked:
            attention_mask = self.plan.mask(int(hidden_states.shape[1]), hidden_states)
        return self.inner(attn, hidden_states, attention_mask, image_rotary_emb)


def early_plan(call: dict, region_list: Sequence[Region], width: int, height: int) -> KleinPlan:
    """The plan before any prompt is encoded (``regions.check_memory``): Klein pads every prompt to 512 tokens."""
    lengths = [MAX_SEQUENCE] * (len(region_list) + 1)
    return KleinPlan(lengths, regions.token_weights(region_list, width, height))


def prepare(
    runner, call: dict, texts: Sequence[Tuple[str, str]], region_list: Sequence[Region], width: int, height: int
) -> Tuple[dict, KleinPlan]:
    """``call`` with the job's and the regions' prompts (``(text, negative)`` each; Klein reads no negative prompt) as
    one text sequence in place of its prompt, and the plan."""
    import torch

    device = runner._execution_device
    with torch.inference_mode():
        groups = [runner.encode_prompt(prompt=p, device=device)[0] for p in [call["prompt"], *(t for t, _ in texts)]]
    out = {k: v for k, v in call.items() if k != "prompt"}
    out["prompt_embeds"] = torch.cat(groups, dim=1)
    lengths = [int(g.shape[1]) for g in groups]
    return out, KleinPlan(lengths, regions.token_weights(region_list, width, height))
