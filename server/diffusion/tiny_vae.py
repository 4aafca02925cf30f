"""Tiny VAEs (the TAESD family, diffusers' ``AutoencoderTiny``): fast previews, and a fast final decode for live frames.

Looked up in each models folder's ``vae_approx/`` (ComfyUI's name) and ``vae/``:
- a diffusers folder whose ``config.json`` names ``AutoencoderTiny`` (``taesd/``, ``taesdxl/``), or
- the original single files ``taesd_decoder.safetensors`` / ``taesdxl_decoder.safetensors`` (``.pth`` with
  ``--allow-pickle``): decoder weights in madebyollin's layout, loaded into an ``AutoencoderTiny`` of the standard size.
A name with "xl" in it serves SDXL, any other SD1.5. TAESD decodes the latents as the UNet sees them (no scaling).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import numpy as np

from ..models import pickles

log = logging.getLogger(__name__)

FOLDERS = ("vae_approx", "vae", "VAE")
PREVIEW_SIDE = 128  # px: previews are decoded from latents pooled down to PREVIEW_SIDE / 8


def _arch_of(name: str) -> str:
    return "sdxl" if "xl" in name.lower() else "sd15"


def _is_tiny_folder(path: Path) -> bool:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("_class_name") == "AutoencoderTiny"


def find(dirs: Iterable[Path], arch: str, allow_pickle: bool = False) -> Optional[Path]:
    """The first tiny VAE for ``arch`` in the models folders (a diffusers folder or a decoder file), or None."""
    for root in dirs:
        for folder in FOLDERS:
            base = Path(root) / folder
            if not base.is_dir():
                continue
            for path in sorted(base.iterdir()):
                if _arch_of(path.name) != arch:
                    continue
                if path.is_dir() and _is_tiny_folder(path):
                    return path
                suffixes = (".safetensors", ".pth") if allow_pickle else (".safetensors",)
                if (
                    path.is_file()
                    and path.name.lower().startswith("taesd")
                    and "decoder" in path.name.lower()
                    and path.suffix.lower() in suffixes
                ):
                    return path
    return None


def decoder_keys(state: dict) -> dict:
    """madebyollin's decoder keys ("3.conv.0.weight"; index 0 is a clamp without weights) as AutoencoderTiny keys."""
    out = {}
    for key, value in state.items():
        m = re.match(r"(?:decoder\.)?(\d+)\.(.+)", key)
        if m is None:
            if key.startswith("decoder.layers."):
                out[key] = value
            continue
        out[f"decoder.layers.{int(m.group(1)) - 1}.{m.group(2)}"] = value
    return out


def load(path: Path, device, dtype):
    """An ``AutoencoderTiny`` from a diffusers folder or an original decoder file, on ``device`` in ``dtype``."""
    from diffusers import AutoencoderTiny

    if path.is_dir():
        vae = AutoencoderTiny.from_pretrained(str(path), local_files_only=True, dtype=dtype)
    else:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = pickles.load_weights_only(path, "tiny VAE")
            if not isinstance(state, dict):
                raise ValueError(f"{path.name} holds a {type(state).__name__}, not a state dict")
        vae = AutoencoderTiny()
        wanted = decoder_keys(state)
        missing, unexpected = vae.load_state_dict(wanted, strict=False)
        decoder_missing = [k for k in missing if k.startswith("decoder.")]
        if decoder_missing or unexpected:
            raise ValueError(
                f"{path.name} is not a TAESD decoder: "
                f"{len(decoder_missing)} decoder tensors missing, {len(unexpected)} unexpected"
            )
        vae = vae.to(dtype)
    return vae.to(device).eval()


def decode(vae, latents) -> "object":
    """Latents [B, 4, h, w] → images [B, 3, 8h, 8w] in [0, 1] (float32)."""
    import torch

    with torch.inference_mode():
        out = vae.decode(latents.to(vae.device, vae.dtype)).sample
    return ((out.float() + 1) / 2).clamp(0, 1)


def preview(vae, latents) -> np.ndarray:
    """The first latent image as an RGB uint8 preview of at most PREVIEW_SIDE px (latents pooled down first, so a
    preview costs the same at any size)."""
    import torch.nn.functional as F

    lat = latents[:1, :4].float()
    side = PREVIEW_SIDE // 8
    h, w = lat.shape[-2:]
    if max(h, w) > side:
        scale = side / max(h, w)
        lat = F.interpolate(lat, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")
    rgb = decode(vae, lat)[0].permute(1, 2, 0)
    return (rgb * 255).round().byte().cpu().numpy()


def to_uint8(images) -> List[np.ndarray]:
    """[B, 3, H, W] floats in [0, 1] → list of H x W x 3 uint8 arrays."""
    arr = (images.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
    return [arr[i] for i in range(arr.shape[0])]


def describe(path: Optional[Path]) -> Tuple[str, str]:
    """("tiny", name) when a tiny VAE decodes previews, else ("linear", "")."""
    return ("tiny", path.name) if path is not None else ("linear", "")
