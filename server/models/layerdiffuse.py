"""LayerDiffuse (transparent layers) files in the models folder's ``layer_model/`` (the folder name Forge and ComfyUI
use), recognised by their tensors: the SDXL attention patch (``layer_xl_transparent_attn.safetensors``), the SD1.5
attention-sharing units (``layer_sd15_transparent_attn.safetensors``), the transparent VAE decoders
(``vae_transparent_decoder.safetensors`` for SDXL, ``layer_sd15_vae_transparent_decoder.safetensors`` for SD1.5) and
the latent transparency encoders. Variants Paintbridge does not run (SDXL conv injection, the SD1.5 two- and
three-frame models) are listed with the reason."""

from __future__ import annotations

import re
from typing import Dict, Tuple

from .identify import Detected

KIND = "layerdiffuse"
ATTENTION, DECODER, ENCODER = "attention", "decoder", "encoder"
FAMILIES = ("sd15", "sdxl")
PRESETS = {"sd15": "layerdiffuse-sd15", "sdxl": "layerdiffuse-sdxl"}
FILES = {
    ("sd15", ATTENTION): "layer_sd15_transparent_attn.safetensors",
    ("sd15", DECODER): "layer_sd15_vae_transparent_decoder.safetensors",
    ("sdxl", ATTENTION): "layer_xl_transparent_attn.safetensors",
    ("sdxl", DECODER): "vae_transparent_decoder.safetensors",
    ("sd15", ENCODER): "layer_sd15_vae_transparent_encoder.safetensors",
    ("sdxl", ENCODER): "vae_transparent_encoder.safetensors",
}

Shapes = Dict[str, Tuple[int, ...]]


def info(shapes: Shapes, filename: str) -> Detected:
    """What a LayerDiffuse file is: ``arch`` (sd15/sdxl) and ``info["role"]``; ``info["unsupported"]`` when it is one
    Paintbridge does not run."""
    keys = list(shapes)
    sd15_named = "sd15" in filename.lower()
    if keys and all("::" in k for k in keys):
        if any(k.startswith("diffusion_model.input_blocks.0.0.") for k in keys):
            return Detected(
                "sdxl",
                info={
                    "role": "conv",
                    "unsupported": "LayerDiffuse's conv injection (use the "
                    "attention injection, layer_xl_transparent_attn.safetensors)",
                },
            )
        if not any("transformer_blocks" in k for k in keys):
            return Detected(
                "sdxl",
                info={
                    "role": "patch",
                    "unsupported": "a LayerDiffuse model that needs a "
                    "foreground or background image (only transparent generation runs here)",
                },
            )
        return Detected("sdxl", info={"role": ATTENTION})
    if keys and all(k.startswith("hookers.layers.") for k in keys):
        frames = {int(m[1]) for k in keys for m in [re.search(r"\.to_q_lora\.(\d+)\.", k)] if m}
        if frames != {0}:
            return Detected(
                "sd15",
                info={
                    "role": "frames",
                    "unsupported": f"a {len(frames)}-frame LayerDiffuse model "
                    "(foreground/background/joint); only transparent generation runs here",
                },
            )
        return Detected("sd15", info={"role": ATTENTION})
    if "latent_conv_in.weight" in shapes:
        return Detected("sd15" if sd15_named else "sdxl", info={"role": DECODER})
    if "blocks.0.weight" in shapes and shapes["blocks.0.weight"][1:2] == (4,):
        return Detected("sd15" if sd15_named else "sdxl", info={"role": ENCODER})
    return Detected(None, info={"unsupported": "not a LayerDiffuse file Paintbridge knows"})
