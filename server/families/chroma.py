"""Chroma's transformer: from its original single file by diffusers' own converter at any width, and its config
completed for diffusers' inpaint pipeline.

diffusers' ``convert_chroma_transformer_checkpoint_to_diffusers`` splits each single block's fused projection
(q, k, v and the MLP in one ``linear1``) at Chroma1's width, 3072, whatever the file holds. A transformer of another
width has its fused projection zero-padded to that width's row counts before the converter runs, and the split parts
cut back after; at 3072 the state goes through untouched.

diffusers' ``ChromaInpaintPipeline`` reads ``transformer.config.guidance_embeds``, which ``ChromaTransformer2DModel``
does not declare: Chroma1-HD's released config carries it (``false``: Chroma has no guidance embedding), a transformer
built from another config gets it here.
"""

from __future__ import annotations

from typing import Dict

CONVERTER_WIDTH = 3072  # the width diffusers' converter splits the single blocks at
MLP_RATIO = 4
SINGLE_PARTS = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")  # linear1's parts, in order


def to_diffusers(state: Dict[str, object]) -> Dict[str, object]:
    """A Chroma transformer state in the original names (no prefix) in diffusers names."""
    import torch
    from diffusers.loaders.single_file_utils import convert_chroma_transformer_checkpoint_to_diffusers

    hidden = int(state["img_in.weight"].shape[0])
    state = dict(state)  # the converter pops what it converts
    if hidden == CONVERTER_WIDTH:
        return convert_chroma_transformer_checkpoint_to_diffusers(state)
    rows = (hidden,) * 3 + (hidden * MLP_RATIO,)
    padded_rows = (CONVERTER_WIDTH,) * 3 + (CONVERTER_WIDTH * MLP_RATIO,)
    fused = [k for k in state if k.startswith("single_blocks.") and ".linear1." in k]
    for key in fused:
        parts = torch.split(state[key], rows, dim=0)
        state[key] = torch.cat(
            [torch.cat([p, p.new_zeros((n - p.shape[0], *p.shape[1:]))]) for p, n in zip(parts, padded_rows)]
        )
    out = convert_chroma_transformer_checkpoint_to_diffusers(state)
    for key in fused:
        block, leaf = key.split(".")[1], key.rsplit(".", 1)[1]
        for part, n in zip(SINGLE_PARTS, rows):
            name = f"single_transformer_blocks.{block}.{part}.{leaf}"
            out[name] = out[name][:n].contiguous()
    return out


def complete_config(transformer) -> None:
    """Give a Chroma transformer's config the ``guidance_embeds`` (False) diffusers' inpaint pipeline reads."""
    if "guidance_embeds" not in transformer.config:
        transformer.register_to_config(guidance_embeds=False)
