"""Flux.2 Klein (4B, 9B; distilled and base) recognised from its transformer's tensor names and shapes.

Layouts: Black Forest Labs' release (``double_blocks.*``, ``single_blocks.*``, ``single_stream_modulation.lin``), the
same under ComfyUI's ``model.diffusion_model.`` prefix, and diffusers names (``single_stream_modulation.linear``). The
model's width tells the sizes apart: 3072 (24 heads) is Klein 4B, 4096 (32 heads) Klein 9B; the 6144-wide Flux.2 dev is
listed with the reason it does not run. Its text encoder is a Qwen3 (``model.layers.*`` with ``q_norm``), its VAE the
32-channel Flux.2 VAE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from .identify import DetectError, Shapes

KLEIN = "flux2-klein"
NAME = "Flux.2 Klein"
WIDTHS = {3072: "klein-4b", 4096: "klein-9b"}
VARIANT_NAMES = {
    "klein-4b": "Flux.2 Klein 4B",
    "klein-9b": "Flux.2 Klein 9B",
    "klein-4b-base": "Flux.2 Klein 4B base",
    "klein-9b-base": "Flux.2 Klein 9B base",
}
VARIANT_CONFIGS = {v: "flux2-" + v.removesuffix("-base") for v in VARIANT_NAMES}
MODULATION = ("single_stream_modulation.lin.weight", "single_stream_modulation.linear.weight")
QWEN3_PROBE = "layers.0.self_attn.q_norm.weight"  # Qwen3 normalises queries per head; Qwen2/2.5 do not
QWEN3_EMBED = "embed_tokens.weight"
REFERENCE_TYPES = ("content",)  # references are pictures Klein sees: what they hold, not a style or a layout
FLUX1_SINGLE_OUT_INPUTS = 15360  # Flux.1's single blocks: attention 3072 + MLP 12288 into linear2


def is_flux2(t: Shapes) -> bool:
    """Whether un-prefixed transformer tensors are a Flux.2 transformer (its shared modulation layers)."""
    return any(k in t for k in MODULATION)


def variant(t: Shapes, name: str) -> Tuple[str, dict]:
    """(variant, facts) of a Flux.2 transformer; facts carry ``unsupported`` for a size Paintbridge does not run.
    A base (undistilled) release is told by its file name, as the tensors are the same."""
    img_in = t.get("img_in.weight") or t.get("x_embedder.weight")
    if img_in is None:
        raise DetectError(
            "a Flux.2 transformer without its input projection (img_in / x_embedder): the file is damaged"
        )
    hidden, channels = img_in[0], img_in[1]
    facts = {"hidden": hidden, "in_channels": channels, "layout": "bfl" if "img_in.weight" in t else "diffusers"}
    found = next((v for width, v in sorted(WIDTHS.items()) if hidden <= width), None)  # small test models: 4B
    if found is None:
        facts["unsupported"] = (
            f"a Flux.2 transformer {hidden} wide (Flux.2 dev is 6144): Paintbridge runs Flux.2 Klein 4B (3072) and "
            "9B (4096)"
        )
        return "klein-4b", facts
    if channels != 128:
        facts["unsupported"] = f"its transformer takes {channels} input channels; Flux.2 Klein takes 128"
    base = "base" in Path(name).stem.lower()
    facts["distilled"] = not base
    return found + ("-base" if base else ""), facts


def qwen3_encoder(shapes: Shapes) -> Optional[dict]:
    """``info`` of a Qwen3 text-encoder file (width, layers, key prefix before ``layers.``), None if it is not one."""
    for key in shapes:
        if key.endswith(QWEN3_PROBE):
            prefix = key[: -len(QWEN3_PROBE)]
            embed = shapes.get(prefix + QWEN3_EMBED)
            if embed is None:
                return None
            layers = {k[len(prefix) + 7 :].split(".", 1)[0] for k in shapes if k.startswith(prefix + "layers.")}
            return {"width": embed[1], "vocab": embed[0], "layers": len(layers), "prefix": prefix}
    return None


def is_klein_lora(shapes: Shapes) -> bool:
    """Whether a LoRA is made for Flux.2 Klein: diffusers names of Flux.2's own layers (the fused single-block
    projection, the SwiGLU ``ff.linear_in``), or, in Black Forest Labs' / Kohya names shared with Flux.1, a single
    block's output projection that does not read Flux.1's 15360 inputs (Klein 4B: 12288, 9B: 16384)."""
    for key, shape in shapes.items():
        if ".to_qkv_mlp_proj." in key or ".ff.linear_in." in key:
            return True
        down = "lora_A" in key or "lora_down" in key
        if down and "single_blocks" in key and "linear2" in key and len(shape) == 2:
            return shape[1] != FLUX1_SINGLE_OUT_INPUTS
    return False
