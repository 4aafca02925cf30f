"""The registry's vocabulary: the kinds of model, the folders each kind lives in, the file suffixes of weights, and the
architecture ids with their human names.

Folders follow ComfyUI's names (``checkpoints/``, ``vae/``, ``loras/``, ``embeddings/``, ``controlnet/``,
``upscale_models/``); AUTOMATIC1111's (``Stable-diffusion/``, ``VAE/``, ``Lora/``, ``ControlNet/``, ``ESRGAN/``,
``../embeddings``) are recognised too.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from . import captioners, identify_dit, qwen

KINDS = (
    "checkpoint",
    "refiner",
    "vae",
    "text_encoder",
    "lora",
    "embedding",
    "controlnet",
    "upscaler",
    "ipadapter",
    "clip_vision",  # reference images: IP-Adapters and their image encoders
    "redux",  # reference images on Flux: Flux Redux image embedders (SigLIP towers: clip_vision)
    "inpainter",  # inpainter: LaMa-class fill networks (fill "lama")
    "captioner",  # image-to-text models for mode "caption" (transformers folders)
    "layerdiffuse",
)  # LayerDiffuse transparency weights and decoders (params.transparent)
SUPPORTED_ARCHS = ("sd15", "sdxl") + identify_dit.FAMILIES
ARCH_NAMES = {
    "sd15": "SD1.5",
    "sdxl": "SDXL",
    "sd2": "SD2",
    "sdxl-refiner": "SDXL refiner",
    **identify_dit.NAMES,
    "clip": "CLIP",
    "t5": "T5",
    qwen.TEXT_ENCODER: "Qwen2.5-VL",
    "qwen3": "Qwen3",
    **captioners.ARCH_NAMES,
    None: "unknown",
}

KIND_FOLDERS: Dict[str, Tuple[str, ...]] = {
    "checkpoint": ("checkpoints", "Stable-diffusion", "diffusers", "diffusion_models", "unet"),
    "refiner": (),  # SDXL refiners sit among the checkpoints and are recognised from their tensors
    "vae": ("vae", "VAE"),
    "text_encoder": ("text_encoders", "clip"),
    "lora": ("loras", "Lora", "LyCORIS"),
    "embedding": ("embeddings",),
    "controlnet": ("controlnet", "ControlNet"),
    "upscaler": ("upscale_models", "ESRGAN", "RealESRGAN"),
    # reference images; image encoders inside an IP-Adapter folder (h94's ``image_encoder/``) count too
    "ipadapter": ("ipadapter", "ip_adapter", "IP-Adapter"),
    "clip_vision": ("clip_vision", "image_encoders"),
    "redux": ("style_models", "redux"),  # ComfyUI's style_models/; FluxPriorReduxPipeline folders also in checkpoints/
    "inpainter": ("inpaint", "lama"),
    "captioner": ("captioners", "caption"),
    "layerdiffuse": ("layer_model", "layerdiffuse"),
}
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
CONFIG_SUFFIX = ".config"
LINK_OUT = "link"  # the format of a linked folder outside the models folders: listed with the reason, not searched
REFINER_ARCH = "sdxl-refiner"


def arch_name(arch: Optional[str]) -> str:
    """Human name of an architecture id ("sdxl" → "SDXL")."""
    return ARCH_NAMES.get(arch, str(arch))
