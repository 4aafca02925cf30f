"""Recognise what a model file is from its tensors' names and shapes, without loading the weights.

Safetensors and GGUF headers are read and validated by ``headers`` (bounded, checked against the file). Pickles
(``.ckpt``/``.pt``/``.pth``/``.bin``) are read only when the caller allows it, and then through ``pickles``
(``torch.load(weights_only=True)``, which refuses code).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from . import headers, pickles

Shapes = Dict[str, Tuple[int, ...]]

SAFETENSORS = "safetensors"
PICKLE = "pickle"
DIFFUSERS = "diffusers"
GGUF = "gguf"  # quantized transformer files (city96's Flux GGUFs); read with the ``gguf`` package

UNET = "model.diffusion_model."
SDXL_CLIP_G = "conditioner.embedders.1.model."
SDXL_CLIP_L = "conditioner.embedders.0.transformer."
SD15_CLIP = "cond_stage_model.transformer."
SD2_CLIP = "cond_stage_model.model."


class DetectError(ValueError):
    """A model file that cannot be read or recognised; the message says why."""


@dataclass
class Detected:
    """What a file or folder holds: architecture ("sd15", "sdxl", other names for unsupported ones, None if unknown),
    whether a checkpoint is an inpainting variant, and kind-specific facts (``info``)."""

    arch: Optional[str]
    inpaint: bool = False
    info: dict = field(default_factory=dict)


def safetensors_shapes(path: Path) -> Shapes:
    """Tensor names → shapes from a ``.safetensors`` header, validated against the file (reads the header only)."""
    try:
        return headers.safetensors_header(path)[0]
    except headers.HeaderError as err:
        raise DetectError(str(err)) from None


def pickle_shapes(path: Path) -> Shapes:
    """Tensor names → shapes from a PyTorch pickle, loaded with ``weights_only=True`` (no code runs)."""
    try:
        state = pickles.load_weights_only(path, mmap=True)
    except pickles.PickleRefused as err:
        raise DetectError(str(err)) from None
    for key in ("state_dict", "params_ema", "params", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise DetectError(f"{path.name} holds a {type(state).__name__}, not a dict of tensors")
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def gguf_shapes(path: Path) -> Shapes:
    """Tensor names and (torch-order) shapes of a GGUF file, from its header (counts checked against the file size
    first, every tensor's data checked to lie inside the file); a DetectError when the optional ``gguf`` package is
    missing."""
    try:
        headers.check_gguf_counts(path)
    except headers.HeaderError as err:
        raise DetectError(str(err)) from None
    try:
        import gguf
    except ImportError as err:
        raise DetectError(
            f"{path.name} is a GGUF file, which needs the gguf package: pip install gguf (or "
            "paintbridge[gguf]) where the server runs"
        ) from err
    try:
        reader = gguf.GGUFReader(str(path))
        size = path.stat().st_size
        shapes = {}
        for t in reader.tensors:
            if int(t.data_offset) + int(t.n_bytes) > size:
                raise ValueError(f"tensor {t.name[:60]!r} lies beyond the end of the file")
            shapes[t.name] = tuple(int(d) for d in reversed(t.shape.tolist()))
    except Exception as err:  # noqa: BLE001 - any parse failure means a damaged file
        raise DetectError(f"{path.name} is not a readable GGUF file: {str(err)[:200]}") from None
    return shapes


def file_shapes(path: Path, allow_pickle: bool) -> Shapes:
    if path.suffix.lower() == ".safetensors":
        return safetensors_shapes(path)
    if path.suffix.lower() == ".gguf":
        return gguf_shapes(path)
    if not allow_pickle:
        raise DetectError(
            f"{path.name} is a pickle file, which can run code when loaded; convert it to .safetensors, or start the "
            "server with --allow-pickle to read it (weights only)"
        )
    return pickle_shapes(path)


# --- checkpoints -----------------------------------------------------------------------------------------------------


def checkpoint_arch(shapes: Shapes) -> Detected:
    """A single-file checkpoint in the original layout: SD1.5-class, SDXL-class (base), inpainting or not."""
    has = lambda prefix: any(k.startswith(prefix) for k in shapes)  # noqa: E731
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight")
    if conv_in is None:
        if any(
            k.startswith(
                (
                    "unet.",
                    "down_blocks.",
                    "model.diffusion_model.double_blocks",
                    "double_blocks.",
                    "transformer_blocks.",
                    "joint_blocks.",
                )
            )
            for k in shapes
        ):
            raise DetectError(
                "this is not a Stable Diffusion 1.5/XL checkpoint in the original layout "
                "(a UNet-only file, or another model family)"
            )
        raise DetectError(
            "no UNet found (model.diffusion_model.input_blocks.0.0.weight is missing): not an SD checkpoint"
        )
    channels = conv_in[1] if len(conv_in) == 4 else 0
    info = {"in_channels": channels}
    if has(SDXL_CLIP_G) and has(SDXL_CLIP_L):
        arch = "sdxl"
    elif has("conditioner.embedders.0.model."):
        arch = "sdxl-refiner"
    elif has(SD15_CLIP):
        arch = "sd15"
    elif has(SD2_CLIP):
        arch = "sd2"
    elif UNET + "label_emb.0.0.weight" in shapes:
        arch = "sdxl"
        info["missing"] = "text encoders"
    else:
        arch = "sd15"
        info["missing"] = "text encoder"
    if channels not in (4, 9):
        info["unsupported"] = f"its UNet takes {channels} input channels (4 = regular, 9 = inpainting)"
    context = shapes.get(UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight") or shapes.get(
        UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    )
    if context is not None:
        info["context_dim"] = context[1]
    return Detected(arch, inpaint=channels == 9, info=info)


def diffusers_folder_arch(folder: Path) -> Detected:
    """A diffusers pipeline folder, recognised from its UNet and text-encoder configs."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DetectError(f"{folder.name} is not a readable diffusers folder: {err}") from err
    channels = int(unet.get("in_channels", 4))
    if "text_encoder_2" in index and index["text_encoder_2"][0] is not None:
        arch = "sdxl" if "text_encoder" in index and index["text_encoder"][0] is not None else "sdxl-refiner"
    elif unet.get("addition_embed_type") == "text_time":
        arch = "sdxl"
    elif int(unet.get("cross_attention_dim", 768) or 768) == 1024:
        arch = "sd2"
    else:
        arch = "sd15"
    info = {"in_channels": channels, "pipeline": index.get("_class_name", "")}
    if channels not in (4, 9):
        info["unsupported"] = f"its UNet takes {channels} input channels (4 = regular, 9 = inpainting)"
    return Detected(arch, inpaint=channels == 9, info=info)


# --- ControlNets -----------------------------------------------------------------------------------------------------

CONTROL_KEYWORDS = {
    "canny": ("canny",),
    "depth": ("depth", "midas", "zoe"),
    "pose": ("openpose", "pose", "dwpose"),
    "lineart": ("lineart", "line_art", "anime"),
    "scribble": ("scribble", "sketch"),
    "softedge": ("softedge", "soft_edge", "hed", "pidi"),
    "normal": ("normal", "normalbae"),
    "tile": ("tile", "blur"),
    "inpaint": ("inpaint",),
    "shuffle": ("shuffle",),
    "reference": ("reference", "ip-adapter", "ipadapter"),
}


def control_types_from_name(name: str) -> list:
    """Control types a ControlNet serves, from the keywords users' file names carry ("control_v11p_sd15_canny")."""
    low = name.lower()
    return [t for t, words in CONTROL_KEYWORDS.items() if any(w in low for w in words)]


def _first(shapes: Shapes, pattern: str) -> Optional[Tuple[int, ...]]:
    """The shape of the first tensor whose name matches ``pattern``."""
    return next((v for k, v in shapes.items() if re.match(pattern, k)), None)


def controlnet_arch(shapes: Shapes) -> Detected:
    """A ControlNet in lllyasviel's original layout or with diffusers keys; union models are flagged."""
    keys = {k[len("control_model.") :] if k.startswith("control_model.") else k: v for k, v in shapes.items()}
    union = any(
        k.startswith(
            ("task_embedding", "control_type_proj", "transformer_layes", "spatial_ch_projs", "control_add_embedding")
        )
        for k in keys
    )
    layouts = (
        (
            "original",
            "input_hint_block.0.weight",
            "label_emb.0.0.weight",
            r"input_blocks\.\d+\.1\.transformer_blocks\.0\.attn2\.to_k\.weight",
        ),
        (
            "diffusers",
            "controlnet_cond_embedding.conv_in.weight",
            "add_embedding.linear_1.weight",
            r"down_blocks\.\d+\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.weight",
        ),
    )
    for layout, hint_key, sdxl_key, context_pattern in layouts:
        if hint_key not in keys:
            continue
        context = _first(keys, context_pattern)
        if sdxl_key in keys:
            arch = "sdxl"
        elif context is not None and context[1] == 1024:
            arch = "sd2"
        else:
            arch = "sd15"
        info = {"layout": layout, "union": union}
        task = keys.get("task_embedding")
        if union and task:
            info["num_control_type"] = int(task[0])  # the modes it was trained on: 6 (union), 8 (promax)
        return Detected(arch, info=info)
    raise DetectError("not a ControlNet (no input_hint_block / controlnet_cond_embedding tensors)")


def controlnet_folder_arch(folder: Path) -> Detected:
    """A diffusers ControlNet folder, from its config.json."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DetectError(f"{folder.name} has no readable config.json: {err}") from err
    union = "Union" in str(config.get("_class_name", ""))
    if config.get("addition_embed_type") == "text_time":
        arch = "sdxl"
    elif int(config.get("cross_attention_dim", 768) or 768) == 1024:
        arch = "sd2"
    else:
        arch = "sd15"
    info = {"layout": "diffusers-folder", "union": union}
    if union:
        info["num_control_type"] = int(config.get("num_control_type") or 6)  # diffusers' default: the first union
    return Detected(arch, info=info)


# --- LoRAs, embeddings, VAEs -----------------------------------------------------------------------------------------


def lora_arch(shapes: Shapes) -> Detected:
    """A LoRA (kohya/A1111 or diffusers/PEFT keys): SDXL when it touches a second text encoder or SDXL's UNet."""
    keys = list(shapes)
    if not any(("lora" in k.lower() or ".alpha" in k or "hada_" in k or "lokr_" in k) for k in keys):
        raise DetectError("not a LoRA (no lora_down/lora_up, lora_A/lora_B, LoHa or LoKr tensors)")
    if any(k.startswith(("lora_te2_", "lora_te1_", "text_encoder_2.", "te2.")) for k in keys):
        return Detected("sdxl")
    for k, shape in shapes.items():
        if "attn2" in k and "to_k" in k and ("lora_down" in k or "lora_A" in k) and len(shape) == 2:
            if shape[1] == 2048:
                return Detected("sdxl")
            if shape[1] == 1024:
                return Detected("sd2")
            if shape[1] == 768:
                return Detected("sd15")
    if any(k.startswith("lora_unet_input_blocks_") or "label_emb" in k or "add_embedding" in k for k in keys):
        return Detected("sdxl")
    return Detected("sd15")


def embedding_arch(shapes: Shapes) -> Detected:
    """An A1111 textual-inversion embedding: ``clip_l``/``clip_g`` pairs are SDXL, single ``emb_params`` SD1.5."""
    if "clip_g" in shapes and "clip_l" in shapes:
        return Detected("sdxl", info={"vectors": shapes["clip_l"][0]})
    vec = shapes.get("emb_params") or next((v for k, v in shapes.items() if k.startswith("string_to_param")), None)
    if vec is None and len(shapes) == 1:
        vec = next(iter(shapes.values()))  # diffusers' learned_embeds: {token: vector}
    if vec is None:
        raise DetectError("not a textual-inversion embedding (no emb_params, string_to_param or clip_l/clip_g)")
    width = vec[-1]
    return Detected("sd2" if width == 1024 else "sd15", info={"vectors": vec[0] if len(vec) == 2 else 1})


def vae_check(shapes: Shapes) -> Detected:
    """A VAE (original or diffusers keys). SD1.5 and SDXL VAEs share one layout, so the arch is left open."""
    if not any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in shapes):
        raise DetectError("not a VAE (no encoder/decoder tensors)")
    return Detected(None, info={"layout": "diffusers" if any("down_blocks" in k for k in shapes) else "original"})
