"""Diffusers state dicts → the original Stable Diffusion ("LDM") key layout that users' single-file checkpoints have.

Test and benchmark helper: it turns models built with diffusers into ``.safetensors`` files named and shaped like the
ones people download (SD1.5 / SDXL checkpoints, lllyasviel-style ControlNets), so the server's detection and its
``from_single_file`` loading are exercised on the real layout. The inverse of diffusers' own LDM → diffusers conversion.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Tuple

import torch

Tensor = torch.Tensor

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}


def _rename_resnet(rest: str, table: dict) -> str:
    for new, old in table.items():
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def _unet_block_key(key: str, layers: int, has_attention: Dict[int, bool]) -> str:
    """One UNet/ControlNet key (diffusers name) in the LDM layout, without prefix; raises KeyError if unknown."""
    for new, old in _TOP.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = 1 + i * (layers + 1) + j
        if kind == "resnets":
            return f"input_blocks.{idx}.0.{_rename_resnet(rest, _RESNET)}"
        return f"input_blocks.{idx}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"input_blocks.{1 + int(m[1]) * (layers + 1) + layers}.0.op.{m[2]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        if m[1] == "attentions":
            return f"middle_block.1.{m[3]}"
        return f"middle_block.{2 * int(m[2])}.{_rename_resnet(m[3], _RESNET)}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = i * (layers + 1) + j  # each up level holds layers + 1 resnets
        if kind == "resnets":
            return f"output_blocks.{idx}.0.{_rename_resnet(rest, _RESNET)}"
        return f"output_blocks.{idx}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
    if m:
        i = int(m[1])
        return f"output_blocks.{i * (layers + 1) + layers}.{2 if has_attention[i] else 1}.conv.{m[2]}"
    raise KeyError(key)


def unet_to_ldm(
    state: Dict[str, Tensor], layers_per_block: int, prefix: str = "model.diffusion_model."
) -> Dict[str, Tensor]:
    """A diffusers UNet2DConditionModel state dict in the LDM layout (``model.diffusion_model.*``)."""
    has_attention: Dict[int, bool] = {}
    for key in state:
        m = re.match(r"up_blocks\.(\d+)\.", key)
        if m:
            has_attention[int(m[1])] = has_attention.get(int(m[1]), False) or ".attentions." in key
    return {prefix + _unet_block_key(k, layers_per_block, has_attention): v for k, v in state.items()}


def vae_to_ldm(state: Dict[str, Tensor], prefix: str = "first_stage_model.") -> Dict[str, Tensor]:
    """A diffusers AutoencoderKL state dict in the LDM layout (``first_stage_model.*``); attention weights become
    1x1 convolutions as in the original files."""
    levels = 1 + max(int(m[1]) for k in state if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out")
        m = re.match(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            part, kind, j, rest = m[1], m[2], int(m[3]), m[4]
            if kind == "resnets":
                new = f"{part}.mid.block_{j + 1}.{_rename_resnet(rest, _VAE_RESNET)}"
            else:
                new = f"{part}.mid.attn_1.{_rename_resnet(rest, _VAE_ATTENTION)}"
                if value.ndim == 2:
                    value = value[:, :, None, None]
        m = re.match(r"encoder\.down_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers\.0)\.(.*)", key)
        if m:
            i = int(m[1])
            if m[3] is not None:
                new = f"encoder.down.{i}.block.{m[3]}.{_rename_resnet(m[4], _VAE_RESNET)}"
            else:
                new = f"encoder.down.{i}.downsample.{m[4]}"
        m = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)|upsamplers\.0)\.(.*)", key)
        if m:
            i = levels - 1 - int(m[1])
            if m[3] is not None:
                new = f"decoder.up.{i}.block.{m[3]}.{_rename_resnet(m[4], _VAE_RESNET)}"
            else:
                new = f"decoder.up.{i}.upsample.{m[4]}"
        out[prefix + new] = value
    return out


def clip_to_ldm(state: Dict[str, Tensor], prefix: str) -> Dict[str, Tensor]:
    """A transformers CLIPTextModel state dict under ``prefix`` with the ``text_model.`` names the originals use."""
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        name = key if key.startswith("text_model.") else "text_model." + key
        out[prefix + name] = value
    return out


def open_clip_to_ldm(state: Dict[str, Tensor], prefix: str = "conditioner.embedders.1.model.") -> Dict[str, Tensor]:
    """A transformers CLIPTextModelWithProjection state dict in OpenCLIP's layout (SDXL's second text encoder):
    fused q/k/v ``in_proj``, ``resblocks``, and the transposed ``text_projection`` matrix."""
    state = {(k[len("text_model.") :] if k.startswith("text_model.") else k): v for k, v in state.items()}
    out: Dict[str, Tensor] = {
        prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
        prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": state["final_layer_norm.weight"],
        prefix + "ln_final.bias": state["final_layer_norm.bias"],
        prefix + "text_projection": state["text_projection.weight"].T.contiguous(),
    }
    names = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    layers = sorted({int(m[1]) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [state[src + f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0
            )
            for new, old in names.items():
                out[dst + f"{old}.{kind}"] = state[src + f"{new}.{kind}"]
    out[prefix + "logit_scale"] = torch.tensor(4.6052)
    return out


def controlnet_to_ldm(state: Dict[str, Tensor], layers_per_block: int, prefix: str = "") -> Dict[str, Tensor]:
    """A diffusers ControlNetModel state dict in lllyasviel's original layout (``input_hint_block``, ``zero_convs``,
    ``middle_block_out``), as the published ``control_v11*`` files have it (``prefix`` "" or "control_model.")."""
    hint_blocks = 1 + max(int(m[1]) for k in state if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k)))
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        m = re.match(r"controlnet_down_blocks\.(\d+)\.(.*)", key)
        if m:
            out[f"{prefix}zero_convs.{m[1]}.0.{m[2]}"] = value
            continue
        if key.startswith("controlnet_mid_block."):
            out[prefix + "middle_block_out.0." + key.split(".", 1)[1]] = value
            continue
        m = re.match(r"controlnet_cond_embedding\.(conv_in|conv_out|blocks\.(\d+))\.(.*)", key)
        if m:
            idx = 0 if m[1] == "conv_in" else 2 * (hint_blocks + 1) if m[1] == "conv_out" else 2 * (int(m[2]) + 1)
            out[f"{prefix}input_hint_block.{idx}.{m[3]}"] = value
            continue
        out[prefix + _unet_block_key(key, layers_per_block, {})] = value
    return out


def pipeline_to_ldm(pipe) -> Dict[str, Tensor]:
    """A whole SD1.5-class or SDXL-class diffusers pipeline as one original-layout checkpoint state dict."""
    out = unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config.layers_per_block)
    out.update(vae_to_ldm(pipe.vae.state_dict()))
    if getattr(pipe, "text_encoder_2", None) is not None:
        out.update(clip_to_ldm(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        out.update(open_clip_to_ldm(pipe.text_encoder_2.state_dict()))
    else:
        out.update(clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    return out


def contiguous(items: Iterable[Tuple[str, Tensor]]) -> Dict[str, Tensor]:
    """Contiguous, unshared copies, as ``safetensors.torch.save_file`` needs."""
    return {k: v.detach().contiguous().clone() for k, v in items}
