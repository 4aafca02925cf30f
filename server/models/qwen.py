"""The Qwen-Image family (Qwen-Image, Qwen-Image-Edit, Qwen-Image-Edit 2509/2511 "Plus", Qwen-Image-Layered),
recognised from tensor names and shapes (never their weights).

Layouts met in the wild: diffusers folders (``QwenImage*Pipeline``), ComfyUI's split files (the transformer in
``diffusion_models/`` with diffusers key names, optionally under ``model.diffusion_model.``; the Qwen2.5-VL text
encoder in ``text_encoders/``; the VAE in ``vae/``) and single transformer files. The Edit models share the base
model's transformer layout: which one a file is comes from its name (as Kontext's does), a folder's from its pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

from .identify import Detected, DetectError, Shapes

QWEN = "qwen-image"
QWEN_EDIT = "qwen-image-edit"
QWEN_EDIT_PLUS = "qwen-image-edit-plus"  # 2509 / 2511: several reference images
QWEN_LAYERED = "qwen-image-layered"  # one picture into RGBA layers (mode "decompose")
FAMILIES = (QWEN, QWEN_EDIT, QWEN_EDIT_PLUS, QWEN_LAYERED)
EDIT_FAMILIES = (QWEN_EDIT, QWEN_EDIT_PLUS)
TEXT_ENCODER = "qwen2.5-vl"  # a text encoder entry's arch

NAMES = {
    QWEN: "Qwen-Image",
    QWEN_EDIT: "Qwen-Image-Edit",
    QWEN_EDIT_PLUS: "Qwen-Image-Edit Plus",
    QWEN_LAYERED: "Qwen-Image-Layered",
}
VARIANT_CONFIGS = {
    "qwen-image": "qwen-image",
    "edit": "qwen-image-edit",
    "edit-2509": "qwen-image-edit-plus",
    "edit-2511": "qwen-image-edit-2511",
}
VARIANT_NAMES = {
    "qwen-image": "Qwen-Image",
    "edit": "Qwen-Image-Edit",
    "edit-2509": "Qwen-Image-Edit 2509",
    "edit-2511": "Qwen-Image-Edit 2511",
    "layered": "Qwen-Image-Layered",
}
PIPELINE_FAMILIES = {
    "QwenImagePipeline": QWEN,
    "QwenImageImg2ImgPipeline": QWEN,
    "QwenImageInpaintPipeline": QWEN,
    "QwenImageEditPipeline": QWEN_EDIT,
    "QwenImageEditInpaintPipeline": QWEN_EDIT,
    "QwenImageEditPlusPipeline": QWEN_EDIT_PLUS,
    "QwenImageLayeredPipeline": QWEN_LAYERED,
}
# the configs a lone Qwen-Image-Layered transformer loads with: its release's, copied beside it (none ship with the
# server: its RGBA VAE's latent statistics are its own)
LAYERED_CONFIGS = "model_index.json, transformer/, vae/, scheduler/, text_encoder/, tokenizer/ and processor/"
LAYERED_PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "processor", "scheduler")
PREFIX = "model.diffusion_model."
PROBE = "transformer_blocks.0.img_mod.1.weight"
TEXT_PROBE = "layers.0.self_attn.q_proj.weight"


def _strip(shapes: Shapes) -> Tuple[Shapes, str]:
    if any(k.startswith(PREFIX) for k in shapes):
        return {k[len(PREFIX) :]: v for k, v in shapes.items() if k.startswith(PREFIX)}, PREFIX
    return shapes, ""


def looks_like_transformer(shapes: Shapes) -> bool:
    """Whether a file holds a Qwen-Image transformer (its text norm and modulated image blocks)."""
    t, _ = _strip(shapes)
    return "txt_norm.weight" in t and PROBE in t


def _variant(name: str) -> Tuple[str, str]:
    """(family, variant) of an Edit model told by its file or folder name."""
    low = name.lower()
    if "edit" not in low:
        return QWEN, "qwen-image"
    if "2511" in low:
        return QWEN_EDIT_PLUS, "edit-2511"
    if "2509" in low or "plus" in low:
        return QWEN_EDIT_PLUS, "edit-2509"
    return QWEN_EDIT, "edit"


def checkpoint(shapes: Shapes, name: str) -> Detected:
    """A Qwen-Image transformer file (ComfyUI's ``diffusion_models/`` layout); its text encoder and VAE are separate."""
    t, prefix = _strip(shapes)
    img_in, txt_in = t.get("img_in.weight"), t.get("txt_in.weight")
    if img_in is None or txt_in is None:
        raise DetectError(
            "a Qwen-Image transformer without its input projections (img_in / txt_in): the file is damaged"
        )
    family, variant = _variant(name)
    info = {
        "variant": variant,
        "config": VARIANT_CONFIGS[variant],
        "transformer_prefix": prefix,
        "hidden": img_in[0],
        "in_channels": img_in[1],
        "joint_attention_dim": txt_in[1],
        "layout": "diffusers",
        "encoders": {},
    }
    if is_layered(t):  # its configs come from its release, in <name>.config/ (``families.qwen.layered_config``)
        return Detected(QWEN_LAYERED, info=dict(info, variant="layered", config=""))
    return Detected(family, info=info)


def is_layered(transformer: Shapes) -> bool:
    """Whether a Qwen-Image transformer's tensors are Qwen-Image-Layered's: its extra timestep condition (RGB picture
    or RGBA layer) is an embedding the other variants lack."""
    return "time_text_embed.addition_t_embedding.weight" in transformer


def diffusers_folder(folder: Path, index: dict, config: dict) -> Detected:
    """A diffusers folder of a Qwen-Image pipeline (``index``: its model_index.json, ``config``: its transformer's)."""
    pipeline = str(index.get("_class_name", ""))
    info = {"pipeline": pipeline, "layout": "diffusers-folder"}
    if "Layered" in pipeline or config.get("use_layer3d_rope") or config.get("use_additional_t_cond"):
        missing = layered_missing(folder)
        if missing:
            info["unsupported"] = f"a Qwen-Image-Layered folder without {missing}: copy it from the diffusers release"
        return Detected(QWEN_LAYERED, info=dict(info, variant="layered"))
    family = PIPELINE_FAMILIES.get(pipeline) or _variant(folder.name)[0]
    variant = {QWEN: "qwen-image", QWEN_EDIT: "edit"}.get(family) or (
        "edit-2511" if config.get("zero_cond_t") or "2511" in folder.name else "edit-2509"
    )
    return Detected(family, info=dict(info, variant=variant))


def layered_missing(folder: Path) -> str:
    """What a Qwen-Image-Layered diffusers folder lacks to run, in words ("" when nothing): its parts, and an RGBA VAE
    (4 channels in and out) rather than Qwen-Image's RGB one."""
    missing = [p for p in LAYERED_PARTS if not (folder / p).is_dir()]
    if missing:
        return "its " + ", ".join(p + "/" for p in missing)
    try:
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "a readable vae/config.json"
    if vae.get("input_channels", 3) != 4:
        return f"its RGBA VAE (vae/ takes {vae.get('input_channels', 3)} channels, the layered model's takes 4)"
    return ""


def is_folder(folder: Path) -> Optional[Tuple[dict, dict]]:
    """(model_index, transformer config) when ``folder`` is a Qwen-Image diffusers folder, else None."""
    try:
        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
        if config.get("_class_name") != "QwenImageTransformer2DModel":
            return None
        return json.loads((folder / "model_index.json").read_text(encoding="utf-8")), config
    except (OSError, ValueError):
        return None


def text_encoder_prefix(shapes: Shapes) -> Optional[str]:
    """The key prefix before the language model's ``layers.`` of a Qwen2.5-VL text encoder file, None if it is not
    one (its vision tower, ``visual.``, tells it from a text-only Qwen2)."""
    if not any(".visual." in k or k.startswith("visual.") for k in shapes):
        return None
    for key in shapes:
        if key.endswith(TEXT_PROBE):
            return key[: -len(TEXT_PROBE)]
    return None


def text_encoder(shapes: Shapes) -> Detected:
    """A separate Qwen2.5-VL text encoder (transformers names, or ComfyUI's ``model.layers``/``visual`` names)."""
    prefix = text_encoder_prefix(shapes)
    if prefix is None:
        raise DetectError("not a Qwen2.5-VL text encoder")
    width = shapes[prefix + TEXT_PROBE][1]
    return Detected(TEXT_ENCODER, info={"width": width, "prefix": ""})


def is_lora(keys) -> bool:
    """Whether LoRA keys name Qwen-Image's blocks: its per-stream MLPs and modulations (``img_mlp``, ``txt_mod``),
    in diffusers, kohya (``lora_unet_transformer_blocks_0_img_mlp``) or ComfyUI names; Flux's original names use the
    same words under ``double_blocks``, which the caller checks first."""
    return any(("img_mlp" in k or "txt_mlp" in k or "img_mod" in k or "txt_mod" in k) for k in keys)


def controlnet_folder(config: dict) -> Detected:
    """A Qwen-Image ControlNet folder (``QwenImageControlNetModel``): InstantX's union model reads the control type
    off the picture; the inpainting one (extra condition channels) is listed with why it does not run."""
    info = {
        "layout": "diffusers-folder",
        "union": True,
        "hidden": config.get("num_attention_heads", 24) * config.get("attention_head_dim", 128),
    }
    if config.get("extra_condition_channels"):
        info["unsupported"] = (
            "a Qwen-Image inpainting ControlNet (extra condition channels), which Paintbridge does not run; "
            "Qwen-Image's union ControlNet (canny, soft edge, depth, pose) works"
        )
    return Detected(QWEN, info=info)


def encoder_label(width: int) -> str:
    return f"Qwen2.5-VL{' 7B' if width == 3584 else ''} text encoder ({width} wide)"
