"""Chroma (lodestones' Chroma1-HD, a Flux.1-schnell derivative) recognised from its transformer's tensor names.

Chroma keeps Flux.1's double and single blocks but replaces their modulation layers with one small MLP, the
approximator (``distilled_guidance_layer.*``, the same name in the original release and in diffusers), which is what
tells it from Flux.1. Layouts: the original single file (``img_in``, ``double_blocks.*``, optionally under ComfyUI's
``model.diffusion_model.``), diffusers names (``x_embedder``, ``transformer_blocks.*``) and diffusers folders
(``ChromaTransformer2DModel``). Its only text encoder is a T5-XXL read with its padding mask, its VAE Flux.1's
16-channel one; it runs real classifier-free guidance with a negative prompt.
"""

from __future__ import annotations

from typing import Tuple

from .identify import DetectError, Shapes

CHROMA = "chroma"
NAME = "Chroma"
VARIANT_NAMES = {"chroma": "Chroma1"}
VARIANT_CONFIGS = {"chroma": "chroma1-hd"}  # Chroma1-HD, -Base and -Flash share one architecture
APPROXIMATOR = "distilled_guidance_layer.in_proj.weight"
LATENT_INPUTS = 64  # 16 latent channels packed 2 x 2, as Flux.1's
RADIANCE = ("nerf_", "img_in_patch.")  # Chroma Radiance's pixel-space head and patch embedding


def is_chroma(t: Shapes) -> bool:
    """Whether un-prefixed transformer tensors are a Chroma transformer (its approximator)."""
    return APPROXIMATOR in t


def variant(t: Shapes) -> Tuple[str, dict]:
    """(variant, facts) of a Chroma transformer; facts carry ``unsupported`` for a pixel-space (Radiance) one."""
    if any(k.startswith(RADIANCE) for k in t):
        return "chroma", {
            "layout": "original",
            "unsupported": "it is Chroma Radiance, which draws in pixels without a VAE (diffusers has no pipeline "
            "for it); Paintbridge runs the latent Chroma1 releases (HD, Base, Flash)",
        }
    embed = t.get("img_in.weight") or t.get("x_embedder.weight")
    if embed is None or len(embed) != 2 or len(t[APPROXIMATOR]) != 2:
        raise DetectError(
            "a Chroma transformer without a 2-D input projection (img_in / x_embedder) and approximator: the file "
            "is damaged"
        )
    facts = {
        "hidden": embed[0],
        "in_channels": embed[1],
        "approximator": t[APPROXIMATOR][0],
        "layout": "original" if "img_in.weight" in t else "diffusers",
    }
    if embed[1] != LATENT_INPUTS:
        facts["unsupported"] = (
            f"its transformer takes {embed[1]} input channels; Paintbridge runs Chroma on Flux.1's latents "
            f"({LATENT_INPUTS}: Chroma1-HD, -Base, -Flash)"
        )
    return "chroma", facts
