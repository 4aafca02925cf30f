"""Recognise IP-Adapters and CLIP image encoders from their tensors' names and shapes (reference images).

Layouts users download: IP-Adapters as single files (``ipadapter/ip-adapter-plus_sd15.safetensors``, ComfyUI's folder;
or inside a copy of the h94/IP-Adapter repository, ``models/`` / ``sdxl_models/``), with keys ``image_proj.*`` and
``ip_adapter.*``; image encoders as Hugging Face folders (``image_encoder/`` with ``config.json``) or single files in
ComfyUI's ``clip_vision/`` (``vision_model.*`` + ``visual_projection.weight``), which load with a shipped weightless
config (ViT-H/14 or ViT-bigG/14, ``server/configs/clip-vision-*``) or a ``<name>.config/`` folder beside the file.
Pickled ``.bin`` adapters are read only with ``torch.load(weights_only=True)`` and only when pickles are allowed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Optional, Tuple

from . import pickles
from .identify import Detected, DetectError, Shapes

REFERENCE_FAMILIES = ("sd15", "sdxl")  # checkpoint families whose jobs take reference images
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
# (hidden size, layers, projection dim) of the standard encoders -> shipped config folder
STANDARD_ENCODERS = {(1280, 32, 1024): "clip-vision-vit-h", (1664, 48, 1280): "clip-vision-vit-bigg"}
ENCODER_NAMES = {"clip-vision-vit-h": "ViT-H/14", "clip-vision-vit-bigg": "ViT-bigG/14"}
# cross-attention width of the UNet an adapter was trained for -> family
CONTEXT_FAMILIES = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
SD15_CROSS_ATTENTION_LAYERS = 16


def adapter_info(shapes: Shapes, name: str) -> Detected:
    """An IP-Adapter's family and what it needs: ``variant`` (``base``, ``plus``, ``full``), ``encoder_output``
    (``image_embeds`` = the projected embedding, ``hidden_states`` = the penultimate layer), ``encoder_dim`` (its
    width), ``face`` (a face adapter, by name or structure). FaceID adapters (insightface embeddings) are flagged
    unsupported."""
    proj = {k[len("image_proj.") :]: v for k, v in shapes.items() if k.startswith("image_proj.")}
    layers = sorted(int(m.group(1)) for k in shapes if (m := re.match(r"ip_adapter\.(\d+)\.to_k_ip\.weight$", k)))
    if not proj or not layers:
        raise DetectError("not an IP-Adapter (no image_proj.* and ip_adapter.*.to_k_ip tensors)")
    context = shapes[f"ip_adapter.{layers[0]}.to_k_ip.weight"][1]
    arch = CONTEXT_FAMILIES.get(context) or ("sd15" if len(layers) == SD15_CROSS_ATTENTION_LAYERS else "sdxl")
    low = name.lower()
    info: dict = {"face": "face" in low, "layers": len(layers)}
    if (
        "faceid" in low
        or "perceiver_resampler.proj_in.weight" in proj
        or any(k.startswith("ip_adapter.") and "lora" in k for k in shapes)
    ):
        info["unsupported"] = "FaceID adapters need insightface face embeddings, which Paintbridge does not compute"
        return Detected(arch, info=info)
    if "latents" in proj:
        info.update(variant="plus", encoder_output="hidden_states", encoder_dim=proj["proj_in.weight"][1])
    elif "proj.0.weight" in proj:
        info.update(variant="full", encoder_output="hidden_states", encoder_dim=proj["proj.0.weight"][1], face=True)
    elif "proj.weight" in proj:
        info.update(variant="base", encoder_output="image_embeds", encoder_dim=proj["proj.weight"][1])
    else:
        info["unsupported"] = "its image projection has a layout diffusers does not know"
    return Detected(arch, info=info)


def encoder_info(shapes: Shapes) -> Detected:
    """A CLIP image encoder with Hugging Face key names: its ``hidden_size``, ``projection_dim``, ``layers`` and
    the shipped ``config`` that fits it (None for other sizes)."""
    keys = {k[len("clip_vision.") :] if k.startswith("clip_vision.") else k: v for k, v in shapes.items()}
    patch = keys.get("vision_model.embeddings.patch_embedding.weight")
    if patch is None:
        if any(k.startswith(("visual.transformer.", "visual.conv1")) for k in keys):
            raise DetectError(
                "an OpenCLIP-layout image encoder: use the Hugging Face layout (the catalogue's "
                "clip-vision-vit-h / clip-vision-vit-bigg files)"
            )
        raise DetectError("not a CLIP image encoder (no vision_model.embeddings.patch_embedding.weight)")
    projection = keys.get("visual_projection.weight")
    if projection is None:
        raise DetectError("a CLIP image encoder without visual_projection.weight: IP-Adapters need the projection")
    layers = 1 + max(int(m.group(1)) for k in keys if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k)))
    hidden = patch[0]
    info = {
        "hidden_size": hidden,
        "projection_dim": projection[0],
        "layers": layers,
        "patch_size": patch[-1],
        "config": STANDARD_ENCODERS.get((hidden, layers, projection[0])),
    }
    return Detected("clip", info=info)


def encoder_folder_info(folder: Path) -> Detected:
    """A Hugging Face image-encoder folder (``config.json`` of a CLIPVisionModelWithProjection)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DetectError(f"{folder.name} has no readable config.json: {err}") from err
    config = config.get("vision_config", config)
    hidden, layers = int(config.get("hidden_size", 0)), int(config.get("num_hidden_layers", 0))
    return Detected(
        "clip",
        info={
            "hidden_size": hidden,
            "projection_dim": int(config.get("projection_dim", 0)),
            "layers": layers,
            "config": None,
        },
    )


def encoder_dim(info: dict, output: str) -> int:
    """The width of an encoder's ``output`` (``image_embeds`` or ``hidden_states``)."""
    return int(info.get("projection_dim" if output == "image_embeds" else "hidden_size") or 0)


def nested_pickle_shapes(path: Path) -> Shapes:
    """Shapes of a pickled IP-Adapter (``{"image_proj": {...}, "ip_adapter": {...}}``), read weights-only."""
    try:
        state = pickles.load_weights_only(path, "IP-Adapter", mmap=True)
    except pickles.PickleRefused as err:
        raise DetectError(str(err)) from None
    if not isinstance(state, dict):
        raise DetectError(f"{path.name} holds a {type(state).__name__}, not a dict of tensors")
    return {k: tuple(v.shape) for k, v in flatten(state).items() if hasattr(v, "shape")}


def flatten(state: dict) -> Dict[str, object]:
    """``{"image_proj": {"a": t}}`` → ``{"image_proj.a": t}``; flat maps stay as they are."""
    out: Dict[str, object] = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in flatten(value).items()})
        else:
            out[key] = value
    return out


def standard_config(info: dict) -> Optional[Path]:
    """The shipped config folder for an encoder of standard size."""
    name = info.get("config")
    return CONFIGS_DIR / name if name else None


def describe_encoder(info: dict) -> str:
    """'ViT-H/14' for a standard encoder, else its sizes."""
    return ENCODER_NAMES.get(info.get("config") or "", f"{info.get('hidden_size')}-wide, {info.get('layers')} layers")


def split_adapter_state(flat: Dict[str, object]) -> Tuple[dict, dict]:
    """A flat adapter state (``image_proj.x``, ``ip_adapter.y``) as diffusers' two maps."""
    proj = {k[len("image_proj.") :]: v for k, v in flat.items() if k.startswith("image_proj.")}
    layers = {k[len("ip_adapter.") :]: v for k, v in flat.items() if k.startswith("ip_adapter.")}
    return proj, layers
