"""Z-Image (Tongyi-MAI's single-stream DiT: Turbo and base) recognised from its transformer's tensor names and shapes.

Layouts: the original release and ComfyUI files (``x_embedder``, fused ``attention.qkv``, optionally under
``model.diffusion_model.``) and diffusers names (``all_x_embedder.2-1``, ``attention.to_q``); both carry the refiners
(``noise_refiner.*``, ``context_refiner.*``) and the padding tokens (``x_pad_token``, ``cap_pad_token``) that tell it
from Lumina 2, which shares its block names. Its text encoder is a Qwen3-4B read through its second-to-last hidden
state (``cap_embedder`` takes 2560), its VAE Flux.1's 16-channel one. Turbo and base share their tensors: the file
name tells them apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

from .identify import DetectError, Shapes

ZIMAGE = "z-image"
NAME = "Z-Image"
VARIANT_NAMES = {"z-image-turbo": "Z-Image Turbo", "z-image": "Z-Image base"}
VARIANT_CONFIGS = {"z-image-turbo": "z-image-turbo", "z-image": "z-image-turbo"}  # one architecture
PAD_TOKENS = ("x_pad_token", "cap_pad_token")


def is_zimage(t: Shapes) -> bool:
    """Whether un-prefixed transformer tensors are a Z-Image transformer."""
    return all(k in t for k in PAD_TOKENS) and any(k.startswith("context_refiner.") for k in t)


def variant(t: Shapes, name: str) -> Tuple[str, dict]:
    """(variant, facts) of a Z-Image transformer."""
    embed = t.get("x_embedder.weight") or t.get("all_x_embedder.2-1.weight")
    caption = t.get("cap_embedder.1.weight")
    if embed is None or caption is None:
        raise DetectError("a Z-Image transformer without its input or caption projection: the file is damaged")
    facts = {
        "hidden": embed[0],
        "caption_width": caption[1],
        "layout": "original" if "x_embedder.weight" in t else "diffusers",
    }
    return ("z-image" if "turbo" not in Path(name).stem.lower() else "z-image-turbo"), facts


LORA_MARKS = ("attention.to_q", "attention_to_q", "attention.qkv", "feed_forward.w1", "feed_forward_w1")


def is_zimage_lora(shapes: Shapes) -> bool:
    """Whether a LoRA is made for Z-Image: its blocks' names (``layers.N.attention.to_q``, ``feed_forward.w1``, fused
    ``attention.qkv``) in diffusers, original (``diffusion_model.``) or Kohya (``lora_unet_layers_N_...``) naming."""
    for key in shapes:
        name = key.removeprefix("diffusion_model.").removeprefix("transformer.").removeprefix("lora_unet_")
        if name.startswith(("layers", "noise_refiner", "context_refiner")) and any(m in name for m in LORA_MARKS):
            return True
    return False


# alibaba-pai's Z-Image-Turbo-Fun-Controlnet-Union files keep diffusers' names (``control_layers.N.``,
# ``control_all_x_embedder.2-1.``, ``control_noise_refiner.N.``); the ControlNet borrows the transformer's embedders
# and refiners, so none of those travel with it.
CONTROL_EMBEDDER = "control_all_x_embedder."
# The control types the union ControlNets were trained on (model cards: Canny, HED, Depth, Pose, MLSD; 2.x adds
# scribble and gray). HED and MLSD pictures are edge maps like the protocol's soft edges and line art.
CONTROL_TYPES = ("canny", "lineart", "softedge", "scribble", "depth", "pose")


def is_controlnet(shapes: Shapes) -> bool:
    """Whether a file holds a Z-Image union ControlNet (diffusers names)."""
    return any(k.startswith(CONTROL_EMBEDDER) for k in shapes) and "control_layers.0.after_proj.weight" in shapes


def controlnet_info(shapes: Shapes) -> dict:
    """What a Z-Image ControlNet's config needs, read off its tensors: width, control input channels, patch sizes,
    how many control layers, and its noise-refiner kind (``refiner``: "blocks" for the first release's plain refiner
    blocks, "control" for 2.x's control blocks, whose weights decide at load time whether they run, "none")."""
    patches = sorted({k[len(CONTROL_EMBEDDER) :].rsplit(".", 1)[0] for k in shapes if k.startswith(CONTROL_EMBEDDER)})
    if not patches or any(not _patch(p) for p in patches):
        raise DetectError(f"a Z-Image ControlNet with unreadable patch embedders ({', '.join(patches)})")
    embed = shapes.get(f"{CONTROL_EMBEDDER}{patches[0]}.weight", ())
    patch, frames = _patch(patches[0])
    if len(embed) != 2 or embed[1] % (patch * patch * frames):
        raise DetectError(f"a Z-Image ControlNet whose patch embedder has shape {tuple(embed)}: the file is damaged")
    width, fan_in = embed
    refiner = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("control_noise_refiner.")})
    if not refiner:
        kind = "none"
    elif "control_noise_refiner.0.after_proj.weight" in shapes:
        kind = "control"
    else:
        kind = "blocks"
    return {
        "layout": "diffusers",
        "union": True,
        "hidden": width,
        "control_in_dim": fan_in // (patch * patch * frames),
        "patches": [list(_patch(p)) for p in patches],
        "layers": len({k.split(".")[1] for k in shapes if k.startswith("control_layers.")}),
        "refiner": kind,
        "refiner_layers": len(refiner),
    }


def _patch(name: str):
    """(patch size, frame patch size) of an embedder named ``"2-1"``; None when the name is not that."""
    parts = name.split("-")
    if len(parts) != 2 or not all(p.isdigit() and 0 < int(p) <= 16 for p in parts):
        return None
    return int(parts[0]), int(parts[1])
