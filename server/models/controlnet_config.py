"""The diffusers config of a single-file ControlNet with diffusers key names (how most SDXL ControlNets ship, e.g.
"full", "mid", "small" and union variants), read off its tensor shapes on top of the shipped architecture config.

Shapes give the widths, depths, block types and conditioning sizes. What no shape shows (attention head counts, the
width of SDXL's time-id embedding) comes from the UNet the ControlNet will run beside, when its widths match, else
from the architecture's convention (SDXL: 64 channels per head, 256-wide time ids; SD1.5: 8 heads).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Tuple

Shapes = Dict[str, Tuple[int, ...]]
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

_CONTROLNET_KEYS = (
    "act_fn",
    "attention_head_dim",
    "block_out_channels",
    "cross_attention_dim",
    "down_block_types",
    "downsample_padding",
    "flip_sin_to_cos",
    "freq_shift",
    "in_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "norm_eps",
    "norm_num_groups",
    "resnet_time_scale_shift",
    "upcast_attention",
    "use_linear_projection",
    "addition_embed_type",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
    "transformer_layers_per_block",
    "class_embed_type",
    "num_class_embeds",
    "only_cross_attention",
)


def _base(arch: str) -> dict:
    if arch == "sdxl":
        unet = json.loads((CONFIGS_DIR / "sdxl" / "unet" / "config.json").read_text(encoding="utf-8"))
        config = {k: v for k, v in unet.items() if k in _CONTROLNET_KEYS}
        config.update(
            conditioning_embedding_out_channels=[16, 32, 96, 256], controlnet_conditioning_channel_order="rgb"
        )
        return config
    return json.loads((CONFIGS_DIR / "controlnet-sd15" / "config.json").read_text(encoding="utf-8"))


def _count(shapes: Shapes, pattern: str) -> int:
    found = {int(m.group(1)) for k in shapes if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def infer(shapes: Shapes, arch: str, union: bool, unet_config=None) -> dict:
    """A ControlNetModel / ControlNetUnionModel config for ``shapes`` (diffusers key names) of ``arch``;
    ``unet_config`` is the config of the checkpoint's UNet it will steer, if known."""
    config = _base(arch)
    levels = _count(shapes, r"down_blocks\.(\d+)\.")
    widths = [shapes[f"down_blocks.{i}.resnets.0.conv1.weight"][0] for i in range(levels)]
    attention = [
        _count(shapes, rf"down_blocks\.{i}\.attentions\.0\.transformer_blocks\.(\d+)\.") for i in range(levels)
    ]
    config["block_out_channels"] = widths
    config["layers_per_block"] = _count(shapes, r"down_blocks\.0\.resnets\.(\d+)\.")
    config["down_block_types"] = ["CrossAttnDownBlock2D" if n else "DownBlock2D" for n in attention]
    mid = _count(shapes, r"mid_block\.attentions\.0\.transformer_blocks\.(\d+)\.")
    config["transformer_layers_per_block"] = [n or 1 for n in attention[:-1]] + [mid or attention[-1] or 1]
    to_k = next((v for k, v in shapes.items() if k.endswith("attn2.to_k.weight")), None)
    if to_k is not None:
        config["cross_attention_dim"] = to_k[1]
    proj_in = next((v for k, v in shapes.items() if re.search(r"attentions\.0\.proj_in\.weight$", k)), None)
    if proj_in is not None:
        config["use_linear_projection"] = len(proj_in) == 2
    if arch == "sdxl":
        config["attention_head_dim"] = [max(1, w // 64) for w in widths]
        add = shapes.get("add_embedding.linear_1.weight")
        if add is not None:
            config["projection_class_embeddings_input_dim"] = add[1]
    if unet_config is not None and list(unet_config.get("block_out_channels", [])) == widths:
        for key in ("attention_head_dim", "num_attention_heads", "addition_time_embed_dim"):
            if unet_config.get(key) is not None:
                config[key] = unet_config[key]
    conv_in = shapes["controlnet_cond_embedding.conv_in.weight"]
    hint = [conv_in[0]] + [
        shapes[f"controlnet_cond_embedding.blocks.{i}.weight"][0]
        for i in range(1, _count(shapes, r"controlnet_cond_embedding\.blocks\.(\d+)\."), 2)
    ]
    config["conditioning_embedding_out_channels"] = hint
    config["conditioning_channels"] = conv_in[1]
    config["in_channels"] = shapes["conv_in.weight"][1]
    config["_class_name"] = "ControlNetUnionModel" if union else "ControlNetModel"
    if union:
        task = shapes.get("task_embedding")
        if task is not None:
            config["num_control_type"] = task[0]
            config["num_trans_channel"] = task[1]
        proj = next((v for k, v in shapes.items() if k.startswith("spatial_ch_projs") and k.endswith("weight")), None)
        if proj is not None:
            config["num_proj_channel"] = proj[0]
        config["num_trans_layer"] = max(1, _count(shapes, r"transformer_layes\.(\d+)\."))
        config["num_trans_head"] = max(1, config.get("num_trans_channel", 320) // 40)
    return config
