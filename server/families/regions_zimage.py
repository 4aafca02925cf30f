"""Regions on Z-Image: the masked joint attention of ``regions`` in Z-Image's own sequence layout.

Z-Image's transformer refines the image tokens alone (``noise_refiner``), the text tokens alone (``context_refiner``),
then runs its main ``layers`` on [image | text] per picture, each part padded to a multiple of 32 tokens with a
learned padding token; text token i sits at rotary position i, the image after the padded caption. Under
classifier-free guidance the batch holds the prompt's picture and the negative prompt's (a key mask keeps each to its
own tokens).

1. ``prepare``: the job's prompt and each region's text (the region's prompt followed by the job's) are encoded
   separately by the pipeline's ``encode_prompt`` (Qwen3, real tokens only), each padded to a multiple of 32 on its
   own, and concatenated into one caption; under guidance the negative prompts likewise (the job's, then each
   region's negative followed by the job's).
2. ``ZImagePlan``: while the job runs, the padding slots become Z-Image's padding token (a hook on the caption
   embedder's output); the image refiner keeps its processor; in the text refiner each group's tokens attend only to
   their own group; the main layers get ``regions.joint_mask`` rearranged to [image | text] (the image's padding
   follows the job's prompt). The rotary positions of the text and of the image's padding are remade so that each
   group stands where a caption of its own would, right before the image (``ZImagePlan._positions``). So each group
   sees exactly what it would as the only caption, and a region at strength 0 leaves the picture as without it (up to
   rounding).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from protocol.errors import UNSUPPORTED, ProtocolError

from ..core import Region
from . import regions, specs

FAMILIES = (specs.ZIMAGE,)
SEQ_MULTIPLE = 32  # Z-Image pads the image and the text to multiples of this many tokens
NOISE, CONTEXT, MAIN = "noise_refiner.", "context_refiner.", "layers."  # Z-Image's attention layers, by name


def _padded(n: int) -> int:
    return -(-n // SEQ_MULTIPLE) * SEQ_MULTIPLE


@dataclass
class ZImagePlan:
    """The token layout of one job: per picture of a transformer call (the prompt's, then under guidance the negative
    prompt's) the real token count of each text group; ``weights`` per image token as in ``regions.token_weights``."""

    lengths: List[List[int]]
    weights: np.ndarray
    rope: object  # the transformer's rotary embedder: text positions are remade with it
    _cache: Dict[tuple, object] = field(default_factory=dict)

    def wrap(self, name: str, processor):
        """The processor of the attention layer ``name`` for the job."""
        role = next((r for r in (NOISE, CONTEXT, MAIN) if name.startswith(r)), "")
        return ZImageMaskedAttention(processor, self, role) if role else processor

    @property
    def text_tokens(self) -> int:
        """The longest padded caption of a picture of the call."""
        return max(sum(_padded(n) for n in lengths) for lengths in self.lengths)

    def mask_elements(self) -> int:
        """Elements the job's masks hold at once: the main layers' mask for every picture of the call, while one
        picture's is made the joint mask and its [image | text] reordering, and the aligned copy torch's
        memory-efficient attention may make (``regions.check_memory``; the text refiner's mask is small)."""
        sequence = _padded(int(self.weights.shape[1])) + self.text_tokens
        return (len(self.lengths) + 3) * sequence**2

    def check_memory(self, element_bytes: int, available: int, regions_count: int) -> None:
        image = _padded(int(self.weights.shape[1]))
        regions.check_memory(self.mask_elements(), element_bytes, available, regions_count, self.text_tokens, image)

    @contextlib.contextmanager
    def installed(self, transformer) -> Iterator[None]:
        """Within the block, the caption embedder's output carries Z-Image's padding token in each group's padding."""

        def pad(_module, _inputs, output):
            slots = self._padding_slots(int(output.shape[0]))
            out = output.clone()
            out[slots.to(out.device)] = transformer.cap_pad_token.to(out.dtype)
            return out

        handle = transformer.cap_embedder.register_forward_hook(pad)
        try:
            yield
        finally:
            handle.remove()

    def _padding_slots(self, tokens: int):
        """The padding rows of a caption-embedder call over ``tokens`` rows (the pictures' captions one after another)."""
        import torch

        slots, offset = [], 0
        for lengths in self.lengths:
            if offset >= tokens:
                break
            for n in lengths:
                slots.append(torch.arange(offset + n, offset + _padded(n)))
                offset += _padded(n)
        if offset != tokens:
            raise RuntimeError(f"a Z-Image caption of {tokens} tokens; the regions planned {offset}")
        return torch.cat(slots)

    def inputs(self, role: str, hidden, key_mask, freqs) -> tuple:
        """The additive mask ``[batch, 1, S, S]`` (the call's key mask included) and the rotary factors for a call of
        a ``role`` layer on ``hidden`` (``[batch, S, dim]``)."""
        import torch

        batch, size = hidden.shape[:2]
        if batch > len(self.lengths):
            raise RuntimeError(f"a Z-Image call over {batch} pictures; the regions planned {len(self.lengths)}")
        image = self.weights.shape[1]
        if freqs is not None and role != CONTEXT and image % SEQ_MULTIPLE:  # the image's padding: see _positions
            freqs = freqs.clone()
            for b, lengths in enumerate(self.lengths[:batch]):
                freqs[b, image : _padded(image)] = self._freqs([self._positions(lengths)[1]], freqs.device)
        if role == NOISE:
            return key_mask, freqs
        start = _padded(image) if role == MAIN else 0  # the text begins after the padded image
        key = (role, batch, size, str(hidden.device), hidden.dtype)
        if key not in self._cache:
            mask = torch.zeros(batch, 1, size, size, device=hidden.device, dtype=hidden.dtype)
            if key_mask is not None:
                mask = mask.masked_fill(~key_mask[:, None, None, :].to(hidden.device), float("-inf"))
            for b, lengths in enumerate(self.lengths[:batch]):
                end = start + sum(_padded(n) for n in lengths)
                if end > size:
                    raise RuntimeError(f"a Z-Image layer over {size} tokens; the regions planned {end}")
                mask[b, 0, :end, :end] += self._item_mask(role, lengths, hidden)
            self._cache[key] = mask
        if freqs is not None:
            freqs = freqs.clone()
            for b, lengths in enumerate(self.lengths[:batch]):
                text = self._freqs(self._positions(lengths)[0], freqs.device)
                freqs[b, start : start + len(text)] = text
        return self._cache[key], freqs

    def _item_mask(self, role: str, lengths: Sequence[int], like):
        """One picture's mask in ``like``'s dtype and device: the text refiner's (text groups apart) or the main
        layers' ([image | text])."""
        import torch

        group = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor([_padded(n) for n in lengths]))
        if role == CONTEXT:
            group = group.to(like.device)
            return torch.where(group[:, None] == group[None, :], 0.0, float("-inf")).to(like.dtype)
        image = self.weights.shape[1]
        weights = np.zeros((self.weights.shape[0], _padded(image)), np.float32)
        weights[:, :image] = self.weights
        weights[0, image:] = 1.0  # the image's padding: the job's prompt
        joint = regions.joint_mask(group, weights, like)  # [text | image]
        text = int(group.numel())
        order = torch.cat([torch.arange(text, joint.shape[0]), torch.arange(text)]).to(like.device)  # [image | text]
        return joint[order][:, order]

    @staticmethod
    def _positions(lengths: Sequence[int]) -> Tuple[List[int], int]:
        """One picture's rotary positions (axis 0): of its text tokens, and of its image's padding tokens.

        Alone, a caption padded to p tokens has token j (padding included) at j + 1, the image at p + 1 and the
        image's padding at 0. Here the image is at (all groups' padded lengths) + 1 = a: group g's token j goes to
        a - p_g + j and the image's padding to the job prompt's a - p_0 - 1, so every distance a token sees is the one
        it has alone."""
        at = sum(_padded(n) for n in lengths) + 1
        return [at - _padded(n) + j for n in lengths for j in range(_padded(n))], at - _padded(lengths[0]) - 1

    def _freqs(self, positions: Sequence[int], device):
        import torch

        ids = torch.zeros(len(positions), 3, dtype=torch.long, device=device)
        ids[:, 0] = torch.tensor(list(positions), device=device)
        return self.rope(ids)


class ZImageMaskedAttention:
    """A Z-Image attention processor run with the regions' mask and text positions."""

    def __init__(self, inner, plan: ZImagePlan, role: str) -> None:
        self.inner, self.plan, self.role = inner, plan, role

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, freqs_cis=None):
        mask, freqs = self.plan.inputs(self.role, hidden_states, attention_mask, freqs_cis)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask=mask, freqs_cis=freqs)


def _guided(call: dict) -> bool:
    return float(call.get("guidance_scale") or 0) > 0  # as ZImagePipeline decides


def early_plan(call: dict, region_list: Sequence[Region], width: int, height: int) -> ZImagePlan:
    """The smallest plan the job can have before its prompts are encoded (one token a text, padded as Z-Image pads
    it), for ``regions.check_memory``: the real one is checked again once the prompts are."""
    lengths = [[1] * (len(region_list) + 1)] * (2 if _guided(call) else 1)
    return ZImagePlan(lengths, regions.token_weights(region_list, width, height), None)


def prepare(
    runner, call: dict, texts: Sequence[Tuple[str, str]], region_list: Sequence[Region], width: int, height: int
) -> Tuple[dict, ZImagePlan]:
    """``call`` with the captions of the job and its regions (``(text, negative)`` each) in place of its prompts, and
    the plan; a caption too long for the transformer's text positions is refused naming the regions."""
    import torch

    guided = _guided(call)
    device = runner._execution_device

    def caption(prompts: Sequence[str]) -> Tuple[object, List[int]]:
        parts = [
            runner.encode_prompt(prompt=p, device=device, do_classifier_free_guidance=False)[0][0] for p in prompts
        ]
        padded = [torch.cat([p, p.new_zeros(_padded(len(p)) - len(p), p.shape[1])]) for p in parts]  # slots: see hook
        return torch.cat(padded), [int(p.shape[0]) for p in parts]

    with torch.inference_mode():
        positive, lengths = caption([call["prompt"]] + [text for text, _ in texts])
        out = {k: v for k, v in call.items() if k not in ("prompt", "negative_prompt")}
        out["prompt_embeds"] = [positive]
        items = [lengths]
        if guided:
            negative, negative_lengths = caption([call.get("negative_prompt") or ""] + [neg for _, neg in texts])
            out["negative_prompt_embeds"] = [negative]
            items.append(negative_lengths)
    limit = int(runner.transformer.config.axes_lens[0])
    longest = max(sum(_padded(n) for n in item) for item in items)
    if longest + 1 >= limit:
        raise ProtocolError(
            UNSUPPORTED,
            f"the prompts of the job and its {len(texts)} region(s) come to {longest} text tokens together; Z-Image "
            f"places at most {limit - 2}: shorten the prompts or use fewer regions",
            field="regions",
        )
    return out, ZImagePlan(items, regions.token_weights(region_list, width, height), runner.transformer.rope_embedder)
