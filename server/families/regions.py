"""Regions on Flux.1 (dev, schnell, Fill, Kontext): each area of the picture conditioned by its own prompt, through a
mask on the transformer's joint attention (the other families' variants of the same: ``regions_zimage``,
``regions_klein``, ``regions_qwen``, ``regions_chroma``, ``regions_sd3``).

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
   token; each group's text tokens attend to themselves and, with the same biases, to their area's image tokens (the
   job prompt's: the area outside the regions, as in the job without regions where that is the whole picture).
   Kontext appends the tokens of the picture it edits after the image's (``RegionPlan.extra``): they read each other
   and the image freely, and the job's prompt alone; every text group reads them (``extended_mask``). (The protocol
   takes regions in generate, img2img, inpaint and outpaint, where the engine's Kontext pipelines append none; a
   Kontext pipeline called with a picture gets them.)
3. ``applied``: for one job, every attention processor of the transformer (and of the job's ControlNet, which gets
   the same tokens) is wrapped by the plan (``MaskedAttention``: it hands the mask to the wrapped processor, joined
   with the call's own key mask where the model has one: Chroma's); diffusers' attention dispatch runs torch's
   ``scaled_dot_product_attention`` with it (the native backend is made active for the job). A processor that calls
   torch's attention itself gets the mask through ``MaskedSDPA``. The processors and the backend come back
   afterwards, also when the job fails.

A region at strength 0 (or without pixels) gets weight 0 everywhere: nothing reads its text, and the picture equals
the job without it up to rounding.

The mask is the full square of the joint sequence (torch's attention takes no other form of an arbitrary additive
mask): 16 regions at 1024² px on Flux are 8,704 text + 4,096 image tokens, 330 MB in bf16, and it grows with the
square of the picture. So before the prompts are encoded (``early_plan``: exact where the texts have a fixed length, as
on Flux and Klein, else with one token a text) and again before the first step, ``check_memory`` sets what the plan's
masks will hold
(``mask_elements``: the masks it keeps and the copies an attention call makes of them) against the memory the device
has available now (``device.available_bytes``), and a job whose masks would take more than ``MASK_SHARE`` of it is
refused naming its regions, the mask's size and the picture size that would fit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from protocol.errors import OUT_OF_MEMORY, ProtocolError

from ..core import Region
from ..diffusion import regions as sd_regions
from . import specs

FAMILIES = (specs.FLUX, specs.FLUX_FILL, specs.FLUX_KONTEXT)  # Flux.1 families whose jobs take regions
TOKEN_PX = 16  # pixels per Flux image token: VAE factor 8 x 2 x 2 packing
MAX_SEQUENCE = 512  # T5 tokens per text, as the Flux pipelines encode a prompt by default
MASK_SHARE = 0.5  # the regions' masks may take this share of the memory available when the job starts
FLUX_MASK_COPIES = 2  # the mask kept, and the aligned copy torch's memory-efficient attention may make of it


@dataclass
class RegionPlan:
    """The token layout of one job: ``lengths`` of the text groups (the job's prompt, then each region's) and the
    ``weights`` of each group per image token (float32, ``[groups, tokens]``, summing to 1 per token); ``extra``:
    whether tokens of another picture may follow the image's (Kontext's edited picture)."""

    lengths: List[int]
    weights: np.ndarray
    extra: bool = False
    copies: int = FLUX_MASK_COPIES  # masks of ``sequence``² held at once while a layer runs (``check_memory``)
    _masks: Dict[Tuple[str, object], object] = field(default_factory=dict)

    @property
    def text_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def sequence(self) -> int:
        """Tokens in the joint attention: the whole text, then the image."""
        return self.text_tokens + int(self.weights.shape[1])

    def mask(self, like, tokens: Optional[int] = None) -> "object":
        """The additive mask ``[1, 1, tokens, tokens]`` (``sequence`` unless told; more: extra tokens after the
        image's) in ``like``'s dtype and device (0 = attend, -inf = not)."""
        tokens = self.sequence if tokens is None else tokens
        key = (tokens, str(like.device), like.dtype)
        if key not in self._masks:
            self._masks[key] = extended_mask(self.lengths, self.weights, tokens - self.sequence, like)[None, None]
        return self._masks[key]

    def wrap(self, name: str, processor):
        """The processor the attention module ``name`` runs for the job."""
        return MaskedAttention(processor, self)

    def mask_elements(self) -> int:
        """Elements the job's masks hold at once (``check_memory``)."""
        return self.copies * self.sequence**2

    def check_memory(self, element_bytes: int, available: int, regions: int) -> None:
        check_memory(self.mask_elements(), element_bytes, available, regions, self.text_tokens, self.weights.shape[1])


def token_weights(regions: Sequence[Region], width: int, height: int) -> np.ndarray:
    """Each text group's weight per image token (the job's prompt, then each region: ``[groups, tokens]``, row-major
    over the 16 px token grid of a ``width`` x ``height`` px processing size, multiples of 16)."""
    if width % TOKEN_PX or height % TOKEN_PX:
        raise ValueError(
            f"a processing size on a {TOKEN_PX} px token grid is a multiple of {TOKEN_PX}, not {width}x{height}"
        )
    weights = sd_regions.weights(regions, width // TOKEN_PX, height // TOKEN_PX)
    return weights.reshape(weights.shape[0], -1)


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def check_memory(elements: int, element_bytes: int, available: int, regions: int, text: int, image: int) -> None:
    """Refuse (``out_of_memory`` on ``regions``) a job whose region masks, ``elements`` values of ``element_bytes``
    each, would take more than ``MASK_SHARE`` of the ``available`` bytes; the message names the regions, the mask's
    size and tokens (``text`` + ``image``), and the largest picture (in 16 px tokens) these prompts would fit with."""
    need = elements * element_bytes
    budget = int(available * MASK_SHARE)
    if need <= budget:
        return
    sequence = text + image
    per_square = elements / max(1, sequence**2)  # the masks' count of sequence-squares (copies, pictures)
    fits_tokens = int((budget / (per_square * element_bytes)) ** 0.5) - text
    side = int(fits_tokens**0.5) * TOKEN_PX if fits_tokens > 0 else 0
    fits = (
        f"with these prompts a picture of at most about {side}x{side} px fits, or use fewer regions"
        if side >= TOKEN_PX
        else f"their text alone ({text} tokens) leaves no room for a picture: use fewer regions or shorter prompts"
    )
    raise ProtocolError(
        OUT_OF_MEMORY,
        f"{regions} region(s) need an attention mask over {text} text + {image} image tokens: {_size(need)}, more "
        f"than the {_size(budget)} they may take of the {_size(available)} available now; {fits}",
        field="regions",
    )


def joint_mask(group, weights: np.ndarray, like):
    """The additive mask over [text | image] tokens, made in ``like``'s dtype and device: ``group`` is each text
    token's group (0 = the job's prompt), ``weights`` each group's weight per image token (``[groups, image tokens]``)."""
    import torch

    bias = torch.from_numpy(np.ascontiguousarray(weights, np.float32)).log()  # [groups, image tokens]; log 0 = -inf
    bias, group = bias.to(device=like.device, dtype=like.dtype), group.to(like.device)
    text = int(group.numel())
    size = text + bias.shape[1]
    out = torch.zeros(size, size, device=like.device, dtype=like.dtype)
    out[:text, :text] = torch.where(group[:, None] == group[None, :], 0.0, float("-inf"))
    out[:text, text:] = bias[group]  # a text token sees its group's area (weight 1: 0, partly: log w, else -inf)
    out[text:, :text] = bias[group].T  # an image token sees each group's text by that group's weight there
    return out


def extended_mask(lengths: Sequence[int], weights: np.ndarray, extra: int, like):
    """``joint_mask`` over [text | image | ``extra`` tokens], the text groups' ``lengths`` given: the extra tokens (a
    picture the model sees beside the one it makes) read each other and the image freely and the job's prompt alone
    (it has no place on the canvas: reading a region's text, every area reading it would read that text too), and
    every text group reads them."""
    import torch

    group = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(list(lengths)))
    if not extra:
        return joint_mask(group, weights, like)
    image, text = int(weights.shape[1]), int(group.numel())
    wide = np.zeros((len(lengths), image + extra), np.float32)
    wide[:, :image] = weights
    wide[0, image:] = 1.0
    out = joint_mask(group, wide, like)
    out[:text, text + image :] = 0.0
    return out


def with_key_mask(mask, key_mask):
    """The additive ``mask`` joined with a call's own attention mask (``[batch, 1, S, S]`` or broadcastable):
    boolean (True = attend) or additive, as diffusers' Chroma hands it."""
    import torch

    if key_mask.dtype == torch.bool:
        return mask.masked_fill(~key_mask.to(mask.device), float("-inf"))
    return mask + key_mask.to(device=mask.device, dtype=mask.dtype)


def plan(
    regions: Sequence[Region],
    lengths: Sequence[int],
    width: int,
    height: int,
    extra: bool = False,
    copies: int = FLUX_MASK_COPIES,
) -> RegionPlan:
    """The plan for a ``width`` x ``height`` px processing size (multiples of 16) with the text groups' ``lengths``;
    ``extra``: tokens of another picture may follow the image's; ``copies``: masks held at once while a layer runs."""
    return RegionPlan(list(lengths), token_weights(regions, width, height), extra, copies)


def early_plan(call: dict, regions: Sequence[Region], width: int, height: int) -> RegionPlan:
    """The plan before any prompt is encoded, for ``check_memory``: every text is 512 T5 tokens (the job's prompt a
    Redux job's embeddings), as ``prompt_inputs`` will make them."""
    first = int(call["prompt_embeds"].shape[1]) if "prompt_embeds" in call else MAX_SEQUENCE
    return plan(regions, [first] + [MAX_SEQUENCE] * len(regions), width, height)


def prepare(runner, call: dict, texts: Sequence[Tuple[str, str]], regions: Sequence[Region], width: int, height: int):
    """``call`` with the regions' prompts (``(text, negative)`` each; Flux reads no negative prompt) and the plan."""
    from diffusers import FluxKontextInpaintPipeline, FluxKontextPipeline

    call, lengths = prompt_inputs(runner, call, [text for text, _ in texts])
    kontext = isinstance(runner, (FluxKontextPipeline, FluxKontextInpaintPipeline))  # the edited picture's tokens
    return call, plan(regions, lengths, width, height, extra=kontext)


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
    """An attention processor that runs the wrapped one with the regions' mask over the joint sequence (joined with
    the call's own mask, where it has one)."""

    def __init__(self, inner, region_plan: RegionPlan) -> None:
        self.inner = inner
        self.plan = region_plan

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        tokens = int(hidden_states.shape[1] + (0 if encoder_hidden_states is None else encoder_hidden_states.shape[1]))
        extra = tokens - self.plan.sequence
        if extra < 0 or (extra and not self.plan.extra):
            raise RuntimeError(
                f"an attention layer over {tokens} tokens does not match the regions' "
                f"{self.plan.text_tokens} text + {self.plan.weights.shape[1]} image tokens"
            )
        mask = self.plan.mask(hidden_states, tokens)
        if attention_mask is not None:
            mask = with_key_mask(mask, attention_mask)
        return self.inner(
            attn, hidden_states, encoder_hidden_states, attention_mask=mask, image_rotary_emb=image_rotary_emb
        )


class MaskedSDPA:
    """Within the block, torch's ``scaled_dot_product_attention`` runs with ``mask`` (for processors that call it
    themselves, without a mask of their own: Qwen-Image's, SD3's); ``calls`` counts its calls."""

    def __init__(self, mask) -> None:
        self.mask, self.calls = mask, 0

    def __enter__(self):
        import torch
        from torch.overrides import TorchFunctionMode

        outer = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = dict(kwargs or {})
                if func is torch.nn.functional.scaled_dot_product_attention:
                    outer.calls += 1
                    kwargs["attn_mask"] = outer.mask
                return func(*args, **kwargs)

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)


def check_layout(family: str, text: int, image: int, region_plan) -> None:
    """Refuse a ``family`` attention layer over ``text`` + ``image`` tokens that are not ``region_plan``'s."""
    planned = (region_plan.text_tokens, int(region_plan.weights.shape[1]))
    if (text, image) != planned:
        raise RuntimeError(
            f"a {family} attention layer over {text} text + {image} image tokens; the regions planned "
            f"{planned[0]} + {planned[1]}"
        )


def masked_once(mask, family: str, run: Callable[[], object]):
    """``run()`` (one ``family`` attention layer's processor) with torch's attention masked by ``mask``, checked to
    call it exactly once."""
    with MaskedSDPA(mask) as sdpa:
        out = run()
    if sdpa.calls != 1:
        raise RuntimeError(f"regions expect one torch attention call per {family} layer, not {sdpa.calls}")
    return out


@contextlib.contextmanager
def applied(modules: Sequence[object], region_plan) -> Iterator[None]:
    """Within the block, every attention layer of ``modules`` (a transformer, its ControlNet) runs the processor
    ``region_plan.wrap`` gives it, on diffusers' native (torch SDPA) attention backend; nothing changes when the plan
    is None. The layers' own processors come back afterwards, also when the call fails."""
    if region_plan is None:
        yield
        return
    from diffusers.models.attention_dispatch import attention_backend

    modules = [m for m in modules if m is not None]
    saved = [
        (name, layer, layer.processor)
        for module in modules
        for name, layer in module.named_modules()
        if hasattr(layer, "set_processor") and getattr(layer, "processor", None) is not None
    ]
    try:
        with contextlib.ExitStack() as stack:
            for name, layer, processor in saved:
                layer.set_processor(region_plan.wrap(name, processor))
            for module in modules if hasattr(region_plan, "installed") else ():  # a plan's own hooks (Z-Image, Klein)
                stack.enter_context(region_plan.installed(module))
            stack.enter_context(attention_backend("native"))
            yield
    finally:
        for _, layer, processor in saved:
            layer.set_processor(processor)
