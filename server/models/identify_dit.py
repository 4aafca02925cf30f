"""The diffusion-transformer families (Flux.1, SD3/SD3.5, Flux.2 Klein, Z-Image, Chroma, Qwen-Image: names, variants,
shipped configs), recognised from files' tensor names and shapes (never their weights).

Layouts met in the wild: the original releases (Black Forest Labs' ``double_blocks.*``, Stability's ``joint_blocks.*``),
ComfyUI full checkpoints (``model.diffusion_model.*`` + ``text_encoders.<clip_l|clip_g|t5xxl>.transformer.*`` + a VAE
under ``first_stage_model.*`` or ``vae.*``), transformer files with diffusers key names, and diffusers folders.
Text encoders (CLIP-L, CLIP-G, T5-XXL) as separate files keep Hugging Face transformers key names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import chroma, klein, qwen, zimage
from .identify import Detected, DetectError, Shapes

FLUX = "flux"
FLUX_FILL = "flux-fill"
FLUX_KONTEXT = "flux-kontext"
SD3 = "sd3"
FLUX2_KLEIN = klein.KLEIN
ZIMAGE = zimage.ZIMAGE
CHROMA = chroma.CHROMA
FAMILIES = (FLUX, FLUX_FILL, FLUX_KONTEXT, SD3, FLUX2_KLEIN, ZIMAGE, CHROMA) + qwen.FAMILIES
EDIT_FAMILIES = (
    FLUX_KONTEXT,
    FLUX2_KLEIN,
) + qwen.EDIT_FAMILIES  # instruction edit (mode "edit"); their listing entries say ``"edit": true``
DECOMPOSE_FAMILIES = (
    qwen.QWEN_LAYERED,
)  # picture into layers (mode "decompose", their only one): ``"decompose": true``

NAMES = {
    FLUX: "Flux.1",
    FLUX_FILL: "Flux.1 Fill",
    FLUX_KONTEXT: "Flux.1 Kontext",
    SD3: "SD3",
    FLUX2_KLEIN: klein.NAME,
    ZIMAGE: zimage.NAME,
    CHROMA: chroma.NAME,
    **qwen.NAMES,
}

# Variant → the shipped weightless config folder in server/configs (real-size single files load with it).
VARIANT_CONFIGS = {
    "dev": "flux-dev",
    "schnell": "flux-schnell",
    "fill": "flux-fill",
    "kontext": "flux-kontext",
    "3-medium": "sd3-medium",
    "3.5-medium": "sd35-medium",
    "3.5-large": "sd35-large",
    "3.5-large-turbo": "sd35-large",
    **klein.VARIANT_CONFIGS,
    **zimage.VARIANT_CONFIGS,
    **chroma.VARIANT_CONFIGS,
    **qwen.VARIANT_CONFIGS,
}
VARIANT_NAMES = {
    "dev": "Flux.1 dev",
    "schnell": "Flux.1 schnell",
    "fill": "Flux.1 Fill",
    "kontext": "Flux.1 Kontext",
    "3-medium": "SD3 medium",
    "3.5-medium": "SD3.5 medium",
    "3.5-large": "SD3.5 large",
    "3.5-large-turbo": "SD3.5 large turbo",
    **klein.VARIANT_NAMES,
    **zimage.VARIANT_NAMES,
    **chroma.VARIANT_NAMES,
    **qwen.VARIANT_NAMES,
}

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "")
VAE_PREFIXES = ("first_stage_model.", "vae.")
ENCODER_PREFIXES = {
    "clip_l": "text_encoders.clip_l.transformer.",
    "clip_g": "text_encoders.clip_g.transformer.",
    "t5": "text_encoders.t5xxl.transformer.",
}
T5_PROBE = "encoder.block.0.layer.0.SelfAttention.q.weight"
CLIP_PROBE = "encoder.layers.0.self_attn.q_proj.weight"
T5_VOCAB = 32128


def _strip(shapes: Shapes, prefix: str) -> Shapes:
    return {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)}


def looks_like_transformer(shapes: Shapes) -> bool:
    """Whether a file holds a Flux.1, Flux.2 Klein, SD3, Z-Image, Chroma or Qwen-Image transformer (any known layout,
    with or without a prefix)."""
    if qwen.looks_like_transformer(shapes):
        return True
    heads = ("double_blocks", "single_blocks", "joint_blocks", "single_transformer_blocks", "context_refiner")
    for key in shapes:
        key = key[len("model.diffusion_model.") :] if key.startswith("model.diffusion_model.") else key
        if key.split(".", 1)[0] in heads or key == "pos_embed.proj.weight":
            return True
    return False


def _transformer_prefix(shapes: Shapes) -> str:
    return "model.diffusion_model." if any(k.startswith("model.diffusion_model.") for k in shapes) else ""


def _flux(t: Shapes, name: str) -> Tuple[str, str, dict]:
    """(family, variant, facts) of a Flux transformer's tensors (BFL or diffusers names)."""
    img_in = t.get("img_in.weight") or t.get("x_embedder.weight")
    if img_in is None:
        raise DetectError("a Flux transformer without its input projection (img_in / x_embedder): the file is damaged")
    channels = img_in[1]
    guidance = "guidance_in.in_layer.weight" in t or "time_text_embed.guidance_embedder.linear_1.weight" in t
    facts = {
        "in_channels": channels,
        "hidden": img_in[0],
        "guidance": guidance,
        "layout": "bfl" if "img_in.weight" in t else "diffusers",
    }
    if channels == 64 * 6:
        return FLUX_FILL, "fill", facts
    if channels != 64:
        facts["unsupported"] = (
            f"its transformer takes {channels} input channels: a Flux.1 Depth/Canny-style model, "
            "which Paintbridge does not run (64 = Flux.1 dev/schnell/Kontext, 384 = Fill)"
        )
    if "kontext" in name.lower():
        return FLUX_KONTEXT, "kontext", facts
    return FLUX, "dev" if guidance else "schnell", facts


def _sd3(t: Shapes, name: str) -> Tuple[str, str, dict]:
    """(family, variant, facts) of an SD3/SD3.5 MMDiT's tensors (Stability or diffusers names)."""
    context = t.get("context_embedder.weight")
    if context is None:
        raise DetectError("an SD3 transformer without its context embedder: the file is damaged")
    hidden = context[0]
    qk_norm = any(k.endswith((".attn.ln_q.weight", ".attn.norm_q.weight")) for k in t)
    dual = any(".x_block.attn2." in k or ".attn2.to_q." in k for k in t)
    facts = {
        "hidden": hidden,
        "qk_norm": qk_norm,
        "dual_attention": dual,
        "layout": "sai" if any(k.startswith("joint_blocks.") for k in t) else "diffusers",
    }
    if not qk_norm:
        variant = "3-medium"
    elif dual:
        variant = "3.5-medium"
    else:
        variant = "3.5-large-turbo" if "turbo" in name.lower() else "3.5-large"
    return SD3, variant, facts


def _encoders_inside(shapes: Shapes) -> Dict[str, str]:
    """Text encoders a full checkpoint carries: role (clip_l, clip_g, t5) → key prefix."""
    found = {}
    for role, prefix in ENCODER_PREFIXES.items():
        probe = T5_PROBE if role == "t5" else CLIP_PROBE
        if any(k.startswith(prefix) and k.endswith(probe) for k in shapes):
            found[role] = prefix
    return found


def vae_prefix(shapes: Shapes) -> Optional[str]:
    """The key prefix of a VAE inside a full checkpoint, None when it has none."""
    for prefix in VAE_PREFIXES:
        if any(k.startswith(prefix + "decoder.") for k in shapes):
            return prefix
    return None


def checkpoint(shapes: Shapes, name: str) -> Detected:
    """A Flux.1, Flux.2 Klein, SD3, Z-Image, Chroma or Qwen-Image checkpoint file (transformer only, or full with text
    encoders and VAE)."""
    if qwen.looks_like_transformer(shapes):
        return qwen.checkpoint(shapes, name)
    prefix = _transformer_prefix(shapes)
    t = _strip(shapes, prefix) if prefix else shapes
    if klein.is_flux2(t):
        family = FLUX2_KLEIN
        variant, facts = klein.variant(t, name)
    elif zimage.is_zimage(t):
        family = ZIMAGE
        variant, facts = zimage.variant(t, name)
    elif chroma.is_chroma(t):
        family = CHROMA
        variant, facts = chroma.variant(t)
    elif any(k.startswith(("double_blocks.", "single_transformer_blocks.")) for k in t):
        family, variant, facts = _flux(t, name)
    elif any(k.startswith("joint_blocks.") for k in t) or "pos_embed.proj.weight" in t:
        family, variant, facts = _sd3(t, name)
    else:
        raise DetectError("not a Flux or SD3 transformer")
    info = dict(
        facts,
        variant=variant,
        config=VARIANT_CONFIGS[variant],
        transformer_prefix=prefix,
        encoders=_encoders_inside(shapes),
    )
    vae = vae_prefix(shapes)
    if vae is not None:
        info["vae_prefix"] = vae
    unsupported = info.pop("unsupported", None)
    if unsupported:
        info["unsupported"] = unsupported
    return Detected(family, inpaint=family == FLUX_FILL, info=info)


def diffusers_folder(folder: Path) -> Detected:
    """A diffusers pipeline folder of a Flux or SD3 model (``model_index.json`` + ``transformer/``)."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DetectError(f"{folder.name} is not a readable diffusers folder: {err}") from err
    pipeline = str(index.get("_class_name", ""))
    cls = str(config.get("_class_name", ""))
    if cls == "QwenImageTransformer2DModel":
        return qwen.diffusers_folder(folder, index, config)
    if cls.startswith("SD3"):
        family = SD3
        variant = (
            "3-medium"
            if not config.get("qk_norm")
            else (
                "3.5-medium"
                if config.get("dual_attention_layers")
                else "3.5-large-turbo"
                if "turbo" in folder.name.lower()
                else "3.5-large"
            )
        )
    elif cls == "Flux2Transformer2DModel":
        family = FLUX2_KLEIN
        hidden = int(config.get("num_attention_heads", 24)) * int(config.get("attention_head_dim", 128))
        if hidden > max(klein.WIDTHS):
            raise DetectError(
                f"{folder.name}: a Flux.2 transformer {hidden} wide; Paintbridge runs Flux.2 Klein 4B and 9B"
            )
        size = next(v for width, v in sorted(klein.WIDTHS.items()) if hidden <= width)
        variant = size + ("" if index.get("is_distilled", True) else "-base")
    elif cls == "ZImageTransformer2DModel":
        family, variant = ZIMAGE, "z-image-turbo" if "turbo" in folder.name.lower() else "z-image"
    elif cls == "ChromaTransformer2DModel":
        family, variant = CHROMA, "chroma"
    elif cls == "FluxTransformer2DModel":
        channels = int(config.get("in_channels", 64))
        if channels == 384 or "Fill" in pipeline:
            family, variant = FLUX_FILL, "fill"
        elif "Kontext" in pipeline or "kontext" in folder.name.lower():
            family, variant = FLUX_KONTEXT, "kontext"
        else:
            family, variant = FLUX, "dev" if config.get("guidance_embeds", True) else "schnell"
    else:
        raise DetectError(
            f"{folder.name}: a {pipeline or 'pipeline'} with a {cls or 'transformer'} is not a model "
            "family Paintbridge runs"
        )
    return Detected(
        family,
        inpaint=family == FLUX_FILL,
        info={"variant": variant, "pipeline": pipeline, "layout": "diffusers-folder"},
    )


def text_encoder(shapes: Shapes) -> Detected:
    """A separate text-encoder file: CLIP (``arch`` "clip"), T5 (``arch`` "t5"), Qwen2.5-VL (Qwen-Image's) or Qwen3
    (``arch`` "qwen3", Flux.2 Klein's and Z-Image's), with its width."""
    if qwen.text_encoder_prefix(shapes) is not None:
        return qwen.text_encoder(shapes)
    qwen3 = klein.qwen3_encoder(shapes)
    if qwen3 is not None:
        return Detected("qwen3", info=qwen3)
    for key, shape in shapes.items():
        if key.endswith(T5_PROBE):
            prefix = key[: -len(T5_PROBE)]
            vocab = (
                shapes.get(prefix + "shared.weight") or shapes.get(prefix + "encoder.embed_tokens.weight") or (0,)
            )[0]
            info = {"width": shape[1], "prefix": prefix}
            if vocab and vocab != T5_VOCAB:
                info["unsupported"] = (
                    f"a T5 with a {vocab}-token vocabulary (UMT5 or another T5): Flux and SD3 use T5 v1.1"
                )
            return Detected("t5", info=info)
        if key.endswith(CLIP_PROBE):
            prefix = key[: -len(CLIP_PROBE)]
            if prefix.endswith("text_model."):
                prefix = prefix[: -len("text_model.")]
            projection = any(k.endswith("text_projection.weight") for k in shapes)
            return Detected("clip", info={"width": shape[1], "prefix": prefix, "projection": projection})
    raise DetectError("not a CLIP or T5 text encoder (no encoder.layers.0.self_attn / encoder.block.0 tensors)")


def vae_latent_channels(shapes: Shapes) -> Optional[int]:
    """Latent channels of a VAE file (4 for SD1.5/SDXL, 16 for Flux/SD3 and Qwen-Image's 3-D VAE), from its decoder's
    first convolution."""
    for key, shape in shapes.items():
        if key.endswith("decoder.conv_in.weight") and len(shape) in (4, 5):
            return shape[1]
    return None


def encoder_label(kind: str, width: int) -> str:
    """A text encoder as users know it: "CLIP-L (768 wide)", "T5-XXL (4096 wide)"."""
    if kind == qwen.TEXT_ENCODER:
        return qwen.encoder_label(width)
    if kind == "t5":
        return f"T5{'-XXL' if width == 4096 else ''} text encoder ({width} wide)"
    if kind == "qwen3":
        known = {2560: "Qwen3-4B", 4096: "Qwen3-8B"}
        return f"{known.get(width, 'Qwen3')} text encoder ({width} wide)"
    known = {768: "CLIP-L", 1280: "CLIP-G"}
    return f"{known.get(width, 'CLIP')} text encoder ({width} wide)"


def encoder_roles(kind: str, width: int) -> List[str]:
    """Role names a text encoder of this kind and width answers to inside full checkpoints."""
    if kind == "t5":
        return ["t5"]
    return ["clip_g"] if width == 1280 else ["clip_l"] if width == 768 else ["clip_l", "clip_g"]


def lora_family(shapes: Shapes) -> Optional[str]:
    """The family a LoRA is made for ("flux", "sd3", "flux2-klein", "z-image", "qwen-image"), None when it is none
    of theirs. Kohya (``lora_unet_double_blocks_*``), ComfyUI/XLabs (``double_blocks.*``) and diffusers/PEFT (``transformer.single_transformer_blocks.*``)
    names; a diffusers LoRA touching only joint blocks is told apart by its width (Flux 3072, SD3 1536/2432)."""
    keys = list(shapes)
    if klein.is_klein_lora(shapes):
        return FLUX2_KLEIN
    if zimage.is_zimage_lora(shapes):
        return ZIMAGE
    if any(("double_blocks" in k or "single_blocks" in k or "single_transformer_blocks" in k) for k in keys):
        return FLUX
    if any("joint_blocks" in k for k in keys):
        return SD3
    if qwen.is_lora(keys):
        return qwen.QWEN
    for key, shape in shapes.items():
        if key.startswith("transformer.transformer_blocks.") and ".attn.to_q.lora_A" in key and len(shape) == 2:
            return FLUX if shape[1] == 3072 else SD3
    return None


# --- ControlNets -----------------------------------------------------------------------------------------------------


def _block_count(shapes: Shapes, prefix: str) -> int:
    """How many numbered blocks ``prefix<N>.`` a state holds."""
    found = {k[len(prefix) :].split(".", 1)[0] for k in shapes if k.startswith(prefix)}
    return len([n for n in found if n.isdigit()])


def looks_like_controlnet(shapes: Shapes) -> bool:
    """Whether a file holds a Flux.1, SD3 or Z-Image ControlNet (diffusers names, or XLabs' Flux layout)."""
    return (
        zimage.is_controlnet(shapes)
        or "controlnet_blocks.0.weight" in shapes
        and (
            "x_embedder.weight" in shapes
            or "pos_embed_input.proj.weight" in shapes
            or any(k.startswith("double_blocks.") for k in shapes)
        )
    )


def controlnet(shapes: Shapes) -> Detected:
    """A Flux.1 (InstantX / Shakker-Labs, union or single type) or SD3/SD3.5 ControlNet with diffusers key names;
    ``info`` holds what its config needs (widths, block counts, union modes). XLabs' Flux layout is listed with the
    reason it cannot run. Z-Image's union ControlNets (alibaba-pai) too (``models.zimage.controlnet_info``)."""
    if zimage.is_controlnet(shapes):
        return Detected(ZIMAGE, info=zimage.controlnet_info(shapes))
    if any(k.startswith("double_blocks.") for k in shapes):
        return Detected(
            FLUX,
            info={
                "layout": "xlabs",
                "unsupported": (
                    "an XLabs-format Flux ControlNet, which diffusers cannot load: use a diffusers-format one (e.g. InstantX "
                    "or Shakker-Labs FLUX.1-dev-ControlNet-Union-Pro: config.json + diffusion_pytorch_model.safetensors)"
                ),
            },
        )
    if "x_embedder.weight" in shapes:
        hidden, channels = shapes["x_embedder.weight"]
        norm = (
            shapes.get("transformer_blocks.0.attn.norm_q.weight")
            or shapes.get("single_transformer_blocks.0.attn.norm_q.weight")
            or (128,)
        )
        mode = shapes.get("controlnet_mode_embedder.weight")
        hint = shapes.get("input_hint_block.conv_out.weight")
        info = {
            "layout": "diffusers",
            "hidden": hidden,
            "in_channels": channels,
            "head_dim": norm[0],
            "layers": _block_count(shapes, "transformer_blocks."),
            "single_layers": _block_count(shapes, "single_transformer_blocks."),
            "joint_attention_dim": shapes["context_embedder.weight"][1],
            "pooled_projection_dim": shapes["time_text_embed.text_embedder.linear_1.weight"][1],
            "guidance": "time_text_embed.guidance_embedder.linear_1.weight" in shapes,
            "num_mode": mode[0] if mode else None,
            "conditioning_channels": hint[0] if hint else None,
            "union": mode is not None,
        }
        return Detected(FLUX, info=info)
    if "pos_embed_input.proj.weight" in shapes:
        hidden, channels, patch, _ = shapes["pos_embed_input.proj.weight"]
        norm = shapes.get("transformer_blocks.0.attn.norm_q.weight")
        context = shapes.get("context_embedder.weight")
        pooled = shapes.get("time_text_embed.text_embedder.linear_1.weight")
        table = shapes.get("pos_embed.pos_embed")
        layers = _block_count(shapes, "transformer_blocks.")
        info = {
            "layout": "diffusers",
            "hidden": hidden,
            "in_channels": channels,
            "patch": patch,
            "head_dim": norm[0] if norm else None,
            "layers": layers,
            "dual_attention_layers": [
                i for i in range(layers) if f"transformer_blocks.{i}.attn2.to_q.weight" in shapes
            ],
            "qk_norm": norm is not None,
            "use_pos_embed": "pos_embed.proj.weight" in shapes,
            "pos_embed_max_size": int(round((table[1]) ** 0.5)) if table else None,
            "joint_attention_dim": context[1] if context else None,
            "caption_projection_dim": context[0] if context else None,
            "pooled_projection_dim": pooled[1] if pooled else None,
            "union": False,
        }
        return Detected(SD3, info=info)
    raise DetectError("not a Flux, SD3 or Z-Image ControlNet")


def controlnet_folder(config: dict) -> Optional[Detected]:
    """A diffusers ControlNet folder of Flux.1 or SD3 from its ``config.json``; None for other ControlNets."""
    cls = str(config.get("_class_name", ""))
    if cls == "FluxControlNetModel":
        return Detected(
            FLUX,
            info={
                "layout": "diffusers-folder",
                "union": bool(config.get("num_mode")),
                "hidden": config.get("num_attention_heads", 24) * config.get("attention_head_dim", 128),
            },
        )
    if cls == "QwenImageControlNetModel":
        return qwen.controlnet_folder(config)
    if cls == "SD3ControlNetModel":
        info = {
            "layout": "diffusers-folder",
            "union": False,
            "hidden": config.get("num_attention_heads", 18) * config.get("attention_head_dim", 64),
        }
        if config.get("extra_conditioning_channels"):
            info["unsupported"] = (
                "an SD3 inpainting ControlNet (extra conditioning channels), which Paintbridge "
                "does not run; SD3 ControlNets for canny, depth, tile, pose work"
            )
        return Detected(SD3, info=info)
    return None
