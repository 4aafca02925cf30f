"""LayerDiffuse's transparency weights on a diffusers UNet, for the length of one job.

SDXL (``layer_xl_transparent_attn.safetensors``): low-rank changes of the UNet's attention weights, stored in
ComfyUI's patch layout ``diffusion_model.<original key>::lora::<i>`` (0: up, 1: down, 2: optional alpha; a
``::diff::0`` entry is a whole difference); they are
added to the weights while the job runs and the old weights are put back after.

SD1.5 (``layer_sd15_transparent_attn.safetensors``): "attention sharing" units, one per self- and cross-attention of
the UNet's sixteen transformer blocks (``hookers.layers.<n>``): low-rank changes of the attention's q/k/v/out weights
(``to_q_lora.0.down/up`` ...) and a second path over the attention's result (a layer norm and five linear maps,
``temporal_*``; with one frame its attention over frames hands back its values). Its output is added to the
attention's own. Units are numbered down blocks first, then up blocks, then the middle block, attn1 before attn2.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Tuple

SD15_UNIT = re.compile(r"hookers\.layers\.(\d+)\.(.+)")
PATCH = re.compile(r"diffusion_model\.(.+)::(lora|diff)::(\d+)")
LORAS = ("to_q", "to_k", "to_v", "to_out")
TEMPORAL = ("temporal_n", "temporal_i", "temporal_q", "temporal_k", "temporal_v", "temporal_o")


def diffusers_key(ldm_key: str) -> str:
    """A UNet key of the original layout inside a transformer (``input_blocks.4.1.transformer_blocks.0.attn1.to_q.
    weight``) as diffusers names it (``down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight``); two
    resnets per down level and three per up level, as SD1.5 and SDXL have."""
    m = re.match(r"input_blocks\.(\d+)\.1\.(.+)", ldm_key)
    if m:
        n = int(m[1]) - 1
        return f"down_blocks.{n // 3}.attentions.{n % 3}.{m[2]}"
    m = re.match(r"output_blocks\.(\d+)\.1\.(.+)", ldm_key)
    if m:
        n = int(m[1])
        return f"up_blocks.{n // 3}.attentions.{n % 3}.{m[2]}"
    m = re.match(r"middle_block\.1\.(.+)", ldm_key)
    if m:
        return f"mid_block.attentions.0.{m[1]}"
    raise KeyError(f"{ldm_key} is not inside a transformer block of the UNet")


def sdxl_deltas(state: Dict[str, "object"]) -> Dict[str, "object"]:
    """Each patched UNet weight (diffusers name) → the change to add (float32)."""
    parts: Dict[str, Dict[int, object]] = {}
    out = {}
    for key, tensor in state.items():
        m = PATCH.fullmatch(key)
        if m is None:
            raise ValueError(f"'{key}' is not a LayerDiffuse patch key (diffusion_model.<key>::lora::<n>)")
        if m[2] == "diff":  # a whole difference of the weight
            out[diffusers_key(m[1])] = tensor.float()
        else:
            parts.setdefault(m[1], {})[int(m[3])] = tensor
    for key, p in parts.items():
        if 0 not in p or 1 not in p:
            raise ValueError(f"the patch of '{key}' lacks its up or down matrix")
        up, down = p[0].float().flatten(1), p[1].float().flatten(1)
        scale = float(p[2]) / down.shape[0] if 2 in p and p[2] is not None else 1.0
        out[diffusers_key(key)] = (up @ down) * scale
    return out


def attention_modules(unet) -> List[object]:
    """The 32 attentions LayerDiffuse's SD1.5 units replace, in their numbering."""
    blocks = [b for b in unet.down_blocks if hasattr(b, "attentions")]
    blocks += [b for b in unet.up_blocks if hasattr(b, "attentions")]
    transformers = [t for b in blocks for t in b.attentions] + list(unet.mid_block.attentions)
    return [a for t in transformers for a in (t.transformer_blocks[0].attn1, t.transformer_blocks[0].attn2)]


def sd15_units(state: Dict[str, "object"]) -> Dict[int, Dict[str, "object"]]:
    """The file's tensors per unit (``{n: {"to_q_lora.0.down.weight": ..., "temporal_n.weight": ...}}``)."""
    units: Dict[int, Dict[str, object]] = {}
    for key, tensor in state.items():
        m = SD15_UNIT.fullmatch(key)
        if m is None:
            raise ValueError(f"'{key}' is not a LayerDiffuse SD1.5 unit key (hookers.layers.<n>....)")
        units.setdefault(int(m[1]), {})[m[2]] = tensor
    return units


class SharedAttention:
    """An attention processor: the attention as before (its weights changed by the unit's low-rank parts), plus the
    unit's second path over ``input + attention``."""

    def __init__(self, inner, unit: Dict[str, "object"], like) -> None:
        import torch

        self.inner = inner
        width = unit["temporal_i.weight"].shape[0]
        self.norm = torch.nn.LayerNorm(width, eps=1e-6).to(like)
        self.norm.load_state_dict({"weight": unit["temporal_n.weight"], "bias": unit["temporal_n.bias"]})
        self.maps = []
        for name in ("temporal_i", "temporal_v", "temporal_o"):  # one frame: attention over frames gives v back
            linear = torch.nn.Linear(width, width).to(like)
            linear.load_state_dict({"weight": unit[f"{name}.weight"], "bias": unit[f"{name}.bias"]})
            self.maps.append(linear)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        x = self.norm((hidden_states + out).to(self.norm.weight.dtype))
        for linear in self.maps:
            x = linear(x)
        return out + x.to(out.dtype)


def _unit_deltas(attn, unit: Dict[str, "object"]) -> List[Tuple[object, object]]:
    targets = {"to_q": attn.to_q, "to_k": attn.to_k, "to_v": attn.to_v, "to_out": attn.to_out[0]}
    out = []
    for name in LORAS:
        up, down = unit[f"{name}_lora.0.up.weight"].float(), unit[f"{name}_lora.0.down.weight"].float()
        delta = up @ down
        if tuple(delta.shape) != tuple(targets[name].weight.shape):
            raise ValueError(
                f"its {name} change is {tuple(delta.shape)}, the attention's weight {tuple(targets[name].weight.shape)}"
            )
        out.append((targets[name].weight, delta))
    return out


@dataclass
class Prepared:
    """What ``applied`` changes: (parameter, delta) pairs and, for SD1.5, the attention processors to install."""

    changes: List[Tuple[object, object]]
    processors: List[Tuple[object, object]] = field(default_factory=list)  # (attention, processor)


def prepare(unet, arch: str, state: Dict[str, "object"]) -> Prepared:
    """Check the transparency weights ``state`` of ``arch`` against the UNet and work out the changes; ValueError
    saying what does not fit."""
    params = dict(unet.named_parameters())
    if arch == "sdxl":
        changes = []
        for key, delta in sdxl_deltas(state).items():
            if key not in params and key.endswith(".weight"):  # a loaded LoRA wraps the layer (peft's base_layer)
                key = key[: -len("weight")] + "base_layer.weight"
            if key not in params or tuple(params[key].shape) != tuple(delta.shape):
                raise ValueError(f"the patch of {key} does not fit this UNet")
            changes.append((params[key], delta))
        return Prepared(changes)
    units = sd15_units(state)
    modules = attention_modules(unet)
    if sorted(units) != list(range(len(modules))):
        raise ValueError(f"it holds {len(units)} units; this UNet has {len(modules)} attentions")
    like = next(unet.parameters())
    out = Prepared([])
    for n, attn in enumerate(modules):
        try:
            out.changes += _unit_deltas(attn, units[n])
            out.processors.append((attn, SharedAttention(attn.processor, units[n], like)))
        except KeyError as err:
            raise ValueError(f"unit {n} lacks {err.args[0]}") from None
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"unit {n} does not fit this UNet: {err}") from None
    return out


@contextlib.contextmanager
def applied(unet, prepared: Prepared, weight: float = 1.0) -> Iterator[None]:
    """The UNet with the ``prepared`` changes while the block runs; exactly as it was afterwards."""
    import torch

    before = unet.attn_processors if prepared.processors else None
    kept = [(p, p.detach().clone()) for p, _ in prepared.changes]
    try:
        for attn, processor in prepared.processors:
            attn.set_processor(processor)
        with torch.no_grad():
            for p, delta in prepared.changes:
                p.add_(delta.to(p) * weight)
        yield
    finally:
        with torch.no_grad():
            for p, old in kept:
                p.copy_(old)
        if before is not None:
            unet.set_attn_processor(before)
