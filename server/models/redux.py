"""Recognise Flux Redux models and SigLIP image encoders from their tensors (reference images on Flux).

Layouts users download:

- ComfyUI's ``style_models/flux1-redux-dev.safetensors``: the Redux image embedder alone (``redux_up.*``,
  ``redux_down.*``: SigLIP width → 3 x T5 width → T5 width), with the SigLIP vision tower as a single file in
  ``clip_vision/`` (``sigclip_vision_patch14_384.safetensors``, Hugging Face key names, ``vision_model.*``), which loads
  with the shipped weightless config ``server/configs/siglip-so400m-patch14-384`` or a ``<name>.config/`` beside it.
- A copy of black-forest-labs/FLUX.1-Redux-dev: a ``FluxPriorReduxPipeline`` folder (``model_index.json``,
  ``image_encoder/``, ``feature_extractor/``, ``image_embedder/``), in ``style_models/`` or among the checkpoints.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Optional

from .identify import Detected, DetectError, Shapes
from .identify_dit import FLUX, FLUX_FILL, FLUX_KONTEXT

REDUX_FAMILIES = (FLUX, FLUX_FILL, FLUX_KONTEXT)  # checkpoint families whose jobs take Redux references
REDUX_TYPES = ("content", "style")  # the reference types a Redux reference serves
REDUX_PIPELINE = "FluxPriorReduxPipeline"
SIGLIP = "siglip"  # the arch of a SigLIP image encoder entry (kind clip_vision)
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
# (hidden size, layers, patch, position count) of the standard tower -> (shipped config folder, image size); the
# image size is not in the tensors exactly: 384 px in 14 px patches is 27 x 27 positions, as 378 px would be
STANDARD_SIGLIP = {(1152, 27, 14, 729): ("siglip-so400m-patch14-384", 384)}
SIGLIP_NAMES = {"siglip-so400m-patch14-384": "SigLIP so400m/14 at 384 px"}


def _unprefixed(shapes: Shapes) -> Shapes:
    return {k[len("vision_model.") :] if k.startswith("vision_model.") else k: v for k, v in shapes.items()}


def looks_like_siglip(shapes: Shapes) -> bool:
    """A vision tower with SigLIP's layout: patch embedding with a bias, no class embedding and no pre-layernorm (CLIP
    has both), or SigLIP's attention-pooling head (``head.probe``)."""
    keys = _unprefixed(shapes)
    if "head.probe" in keys:
        return True
    return (
        "embeddings.patch_embedding.bias" in keys
        and "embeddings.class_embedding" not in keys
        and "pre_layrnorm.weight" not in keys
    )


def siglip_info(shapes: Shapes) -> Detected:
    """A SigLIP vision tower's ``hidden_size``, ``layers``, ``patch_size``, ``image_size`` (the standard tower's, else
    positions per side x patch), whether it has its pooling ``head``, and the shipped ``config`` that fits it (None
    for other sizes)."""
    keys = _unprefixed(shapes)
    patch, positions = keys.get("embeddings.patch_embedding.weight"), keys.get("embeddings.position_embedding.weight")
    if patch is None or positions is None:
        raise DetectError("not a SigLIP image encoder (no embeddings.patch_embedding / position_embedding tensors)")
    layers = 1 + max((int(m.group(1)) for k in keys if (m := re.match(r"encoder\.layers\.(\d+)\.", k))), default=-1)
    side = math.isqrt(int(positions[0]))
    info = {
        "encoder": SIGLIP,
        "hidden_size": int(patch[0]),
        "layers": layers,
        "patch_size": int(patch[-1]),
        "image_size": side * int(patch[-1]),
        "head": "head.probe" in keys,
    }
    standard = STANDARD_SIGLIP.get((info["hidden_size"], layers, info["patch_size"], int(positions[0])))
    info["config"] = standard[0] if standard else None
    if standard:
        info["image_size"] = standard[1]
    return Detected(SIGLIP, info=info)


def siglip_folder_info(config: dict) -> Detected:
    """A Hugging Face SigLIP vision folder from its ``config.json`` (a SiglipVisionModel's, or a SiglipModel's)."""
    config = config.get("vision_config", config)
    patch, image = int(config.get("patch_size", 16)), int(config.get("image_size", 224))
    info = {
        "encoder": SIGLIP,
        "hidden_size": int(config.get("hidden_size", 768)),
        "layers": int(config.get("num_hidden_layers", 12)),
        "patch_size": patch,
        "image_size": image,
        "head": bool(config.get("vision_use_head", True)),
        "config": None,
    }
    return Detected(SIGLIP, info=info)


def siglip_folder(folder: Path) -> Optional[Detected]:
    """A Hugging Face image-encoder folder whose ``config.json`` is a SigLIP one; None for other (CLIP) folders."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return siglip_folder_info(config) if str(config.get("model_type", "")).startswith("siglip") else None


def describe_siglip(info: dict) -> str:
    """'SigLIP so400m/14 at 384 px' for the standard tower, else its sizes."""
    return SIGLIP_NAMES.get(
        info.get("config") or "",
        f"SigLIP {info.get('hidden_size')}-wide, {info.get('layers')} layers, {info.get('image_size')} px",
    )


def standard_siglip_config(info: dict) -> Optional[Path]:
    """The shipped config folder for a SigLIP tower of standard size."""
    name = info.get("config")
    return CONFIGS_DIR / name if name else None


def redux_info(shapes: Shapes) -> Detected:
    """A Redux image embedder file: ``redux_dim`` (the SigLIP width it reads) and ``txt_dim`` (the T5 width of the
    Flux transformer it feeds)."""
    up, down = shapes.get("redux_up.weight"), shapes.get("redux_down.weight")
    if up is None or down is None:
        raise DetectError("not a Flux Redux model (no redux_up.weight and redux_down.weight tensors)")
    if down[1] != up[0]:
        raise DetectError(f"a Redux model whose layers do not fit each other (redux_up {up}, redux_down {down})")
    return Detected(FLUX, info={"redux_dim": int(up[1]), "txt_dim": int(down[0])})


def is_redux_pipeline(folder: Path) -> bool:
    """Whether ``folder`` is a diffusers ``FluxPriorReduxPipeline`` folder."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return index.get("_class_name") == REDUX_PIPELINE


def redux_folder_info(folder: Path) -> Detected:
    """A ``FluxPriorReduxPipeline`` folder: its embedder's sizes and its own SigLIP tower."""
    try:
        embedder = json.loads((folder / "image_embedder" / "config.json").read_text(encoding="utf-8"))
        encoder = json.loads((folder / "image_encoder" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DetectError(
            f"a FluxPriorReduxPipeline folder without readable image_embedder/ and image_encoder/ configs: {err}"
        ) from err
    tower = siglip_folder_info(encoder).info
    info = {
        "redux_dim": int(embedder.get("redux_dim", 1152)),
        "txt_dim": int(embedder.get("txt_in_features", 4096)),
        "encoder_inside": describe_siglip(tower),
    }
    if tower["hidden_size"] != info["redux_dim"]:
        info["unsupported"] = (
            f"its image encoder is {tower['hidden_size']} wide but its embedder reads {info['redux_dim']}"
        )
    return Detected(FLUX, info=info)
