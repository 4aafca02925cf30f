"""Regions on Qwen-Image, Qwen-Image-Edit and Edit Plus: the masked joint attention of ``regions`` in Qwen-Image's
layout.

Edit Plus (2509/2511) runs the modes regions work in (generate, img2img, inpaint, outpaint) on Qwen-Image's own
pipelines, and so does the first Qwen-Image-Edit but for inpaint and outpaint, which run its edit inpaint pipeline:
there the prompt reads the picture (Qwen2.5-VL sees it beside the text) and the transformer sees the picture's tokens
after the image's (``QwenEditPlan``).

Qwen-Image's transformer runs every block's joint attention on [text | image]: the text is Qwen2.5-VL's hidden states
of the prompt's real tokens (a key mask hides padding), the image its 16 px latent tokens. Text token j has rotary
position m + j on every axis, where m is half the image's longer side in tokens (so the text's positions depend on the
image size); true CFG runs the negative prompt in a second transformer call.

1. ``prepare``: the job's prompt and each region's text (the region's prompt followed by the job's) are encoded
   separately by the pipeline's ``encode_prompt``, and so are the negative prompts (the job's, then each region's
   followed by the job's). Group g's prompt and negative are padded to the same length (the key mask hides the
   padding), so both calls share one layout: [job | region 1 | ...]. An edit pipeline prepares the picture its prompt
   reads itself: there its own ``encode_prompt`` is made to encode the groups, each text with the picture, while
   the job runs (``QwenEditPlan.installed``).
2. ``QwenPlan``: every attention layer runs its own processor with ``regions.joint_mask`` (and the call's key mask) in
   place of the key mask alone, and the text's rotary factors restarted per group (group g's token j at m + j, as
   the only prompt). Qwen's processor builds its mask from the key mask itself, so the joint mask reaches torch's
   ``scaled_dot_product_attention`` through a function mode around the processor (on diffusers' native backend).
   The edit pipeline's picture tokens read the job's prompt alone, and every text reads them
   (``regions.extended_mask``): the same choice as Kontext's and Klein's.

A region at strength 0 (or without pixels) gets weight 0 everywhere: nothing reads its text, and the picture equals
the job without it up to rounding.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..core import Region
from ..models import qwen as qwen_models
from . import regions

FAMILIES = (qwen_models.QWEN, qwen_models.QWEN_EDIT, qwen_models.QWEN_EDIT_PLUS)
QWEN_MASK_COPIES = 3


@dataclass
class QwenPlan:
    """The token layout of one job: ``lengths`` of the (padded) text groups, the job's prompt first, and their
    ``weights`` per image token (as ``regions.token_weights``)."""

    lengths: List[int]
    weights: np.ndarray
    extra: bool = False  # whether a picture's tokens may follow the image's (an edit pipeline's)
    _masks: Dict[tuple, object] = field(default_factory=dict)

    @property
    def text_tokens(self) -> int:
        return sum(self.lengths)

    def wrap(self, name: str, processor):
        """The processor the attention layer ``name`` runs for the job."""
        return QwenMaskedAttention(processor, self)

    def mask_elements(self) -> int:
        """Elements the job's masks hold at once: the joint mask kept, the call's copy with its key mask, and the
        aligned copy torch's memory-efficient attention may make (``regions.check_memory``)."""
        return QWEN_MASK_COPIES * (self.text_tokens + int(self.weights.shape[1])) ** 2

    def check_memory(self, element_bytes: int, available: int, regions_count: int) -> None:
        image = int(self.weights.shape[1])
        regions.check_memory(self.mask_elements(), element_bytes, available, regions_count, self.text_tokens, image)

    def mask(self, key_mask, like, image: Optional[int] = None):
        """The additive mask ``[batch, 1, S, S]`` over [text | image | extra] (``image`` tokens after the text: the
        plan's unless told) in ``like``'s dtype and device, with the call's text ``key_mask`` (``[batch, text]``,
        True = a real token; None: all are)."""
        import torch

        image = int(self.weights.shape[1]) if image is None else image
        key = (image, str(like.device), like.dtype)
        if key not in self._masks:
            extra = image - int(self.weights.shape[1])
            self._masks[key] = regions.extended_mask(self.lengths, self.weights, extra, like)[None, None]
        joint = self._masks[key]
        if key_mask is None:
            return joint
        hidden = ~key_mask.to(device=like.device, dtype=torch.bool)  # [batch, text]
        hidden = torch.cat([hidden, hidden.new_zeros(hidden.shape[0], image)], dim=1)
        return joint.masked_fill(hidden[:, None, None, :], float("-inf"))

    def text_freqs(self, freqs):
        """The text's rotary factors restarted per group: group g's token j gets the call's factor of token j."""
        import torch

        return torch.cat([freqs[:n] for n in self.lengths])


class QwenMaskedAttention:
    """A Qwen-Image attention processor run with the regions' mask and text positions."""

    def __init__(self, inner, plan: QwenPlan) -> None:
        self.inner, self.plan = inner, plan

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        encoder_hidden_states_mask=None,
        attention_mask=None,
        image_rotary_emb=None,
    ):
        text, image = int(encoder_hidden_states.shape[1]), int(hidden_states.shape[1])
        planned = int(self.plan.weights.shape[1])
        regions.check_layout("Qwen-Image", text, min(image, planned) if self.plan.extra else image, self.plan)
        if image_rotary_emb is not None:
            image_rotary_emb = (image_rotary_emb[0], self.plan.text_freqs(image_rotary_emb[1]))
        return regions.masked_once(
            self.plan.mask(encoder_hidden_states_mask, hidden_states, image),
            "Qwen-Image",
            lambda: self.inner(attn, hidden_states, encoder_hidden_states, None, attention_mask, image_rotary_emb),
        )


def groups(encode: Callable[[str], object], prompts: Sequence[str], negatives: Sequence[str]):
    """Each prompt's real tokens (``encode(text)`` gives ``(embeds, key mask)`` for one text) and each negative's
    (none: no negative pass), group g's pair padded to one length: ``(embeds, mask)`` of the prompts and of the
    negatives (or None), and the groups' lengths."""
    import torch

    def real(text: str):
        embeds, mask = encode(text)
        return embeds[0] if mask is None else embeds[0][mask[0].bool()]

    positive = [real(p) for p in prompts]
    negative = [real(n) for n in negatives]
    lengths = [max(len(p), len(n)) for p, n in zip(positive, negative or positive)]

    def joined(parts):
        embeds = torch.cat([torch.cat([p, p.new_zeros(n - len(p), p.shape[1])]) for p, n in zip(parts, lengths)])
        mask = torch.cat([torch.arange(n) < len(p) for p, n in zip(parts, lengths)]).to(embeds.device)
        return embeds[None], mask[None]

    return joined(positive), joined(negative) if negative else None, lengths


@dataclass
class QwenEditPlan(QwenPlan):
    """The plan of a pipeline whose prompt reads the picture (Qwen-Image-Edit's inpaint): the pipeline encodes the
    prompt itself, with the picture as it prepares it, so within the job its ``encode_prompt`` gives the job's and the
    regions' texts (and negatives) as one padded sequence, and the ``lengths`` are known from then on. The picture's
    tokens follow the image's (``extra``)."""

    runner: object = None
    texts: Sequence[Tuple[str, str]] = ()
    negative: Optional[str] = None  # the job's negative prompt when the pipeline runs its negative pass

    @contextlib.contextmanager
    def installed(self, module) -> Iterator[None]:
        """Within the block, the pipeline's ``encode_prompt`` (patched on the transformer's turn) encodes the groups:
        its first call of a pipeline call gives the prompts, the next one the negatives."""
        if module is not self.runner.transformer:
            yield
            return
        original, pending = self.runner.encode_prompt, []

        def encode_prompt(prompt, image=None, device=None, **_ignored):
            if pending:
                return pending.pop()

            def one(text: str):
                return original(prompt=text, image=image, device=device)

            prompts = [prompt, *(t for t, _ in self.texts)]
            negatives = [self.negative, *(n for _, n in self.texts)] if self.negative is not None else []
            positive, negative, lengths = groups(one, prompts, negatives)
            self.lengths[:] = lengths
            self._masks.clear()
            if negative is not None:
                pending.append(negative)
            return positive

        self.runner.encode_prompt = encode_prompt
        try:
            yield
        finally:
            del self.runner.encode_prompt  # the pipeline's own method again


def early_plan(call: dict, region_list: Sequence[Region], width: int, height: int) -> QwenPlan:
    """The smallest plan the job can have before its prompts are encoded (one token a text), for
    ``regions.check_memory``: the real one is checked again once the prompts are."""
    return QwenPlan([1] * (len(region_list) + 1), regions.token_weights(region_list, width, height))


def prepare(
    runner, call: dict, texts: Sequence[Tuple[str, str]], region_list: Sequence[Region], width: int, height: int
) -> Tuple[dict, QwenPlan]:
    """``call`` with the job's and the regions' prompts and negative prompts (``(text, negative)`` each) in place of
    its own, and the plan (a pipeline whose prompt reads the picture encodes them itself: ``QwenEditPlan``)."""
    import torch

    device = runner._execution_device
    guided = call.get("negative_prompt") is not None and float(call.get("true_cfg_scale") or 0) > 1
    weights = regions.token_weights(region_list, width, height)
    if "image" in inspect.signature(runner.encode_prompt).parameters:
        negative = call["negative_prompt"] if guided else None
        return call, QwenEditPlan([], weights, extra=True, runner=runner, texts=list(texts), negative=negative)

    def encode(text: str):
        return runner.encode_prompt(prompt=text, device=device)

    with torch.inference_mode():
        prompts = [call["prompt"], *(t for t, _ in texts)]
        positive, negative, lengths = groups(
            encode, prompts, [call["negative_prompt"], *(n for _, n in texts)] if guided else []
        )
    out = {k: v for k, v in call.items() if k not in ("prompt", "negative_prompt")}
    out["prompt_embeds"], out["prompt_embeds_mask"] = positive
    if negative is not None:
        out["negative_prompt_embeds"], out["negative_prompt_embeds_mask"] = negative
    return out, QwenPlan(lengths, weights)
