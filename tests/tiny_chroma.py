"""Tiny random-weight Chroma models in the layouts painters have, built offline.

- ``chroma``: a diffusers folder (ChromaPipeline: a Chroma transformer 32 wide with a one-layer approximator, the
  Flux tests' T5 32 wide and the shipped T5 tokenizer, a Flux.1-like 16-channel VAE), its configs as Chroma1-HD's
  (no timestep shift; ``guidance_embeds`` false in the transformer's).
- ``chroma-file``: the transformer alone in the original names (``img_in``, ``double_blocks.*``, fused
  ``single_blocks.N.linear1``, ``distilled_guidance_layer.layers.N.in_layer``) in ``diffusion_models/`` with its
  ``.config`` folder beside it, its T5 (transformers names) in ``text_encoders/`` and its VAE (original
  ``encoder.down.*`` names) in ``vae/``, as ComfyUI lays them out.
- ``chroma-full``: ComfyUI's all-in-one checkpoint in ``checkpoints/``: the original transformer under
  ``model.diffusion_model.``, the T5 under ``text_encoders.t5xxl.transformer.``, the VAE under ``first_stage_model.``.
- ``chroma-gguf``: the transformer in the original names as a Q8_0 GGUF in ``diffusion_models/``, beside
  ``chroma-file``'s parts.
- ``lora-chroma``: a diffusers-named LoRA on the transformer's attention projections (double and single blocks).
"""

from __future__ import annotations

from pathlib import Path

import factory


def build(seed: int = 0):
    torch = factory._torch()
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    from server.families.loading import t5_tokenizer

    torch.manual_seed(seed + 61)
    transformer = ChromaTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 6, 6),
        approximator_num_channels=64,
        approximator_hidden_dim=32,
        approximator_layers=1,
    )
    return ChromaPipeline(
        transformer=transformer,
        vae=factory._vae16(0.3611, 0.1159),
        text_encoder=factory._t5(32),
        tokenizer=t5_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(),  # as Chroma1-HD's: no shift
    )


def folder() -> Path:
    def make(tmp: Path) -> None:
        pipe = build()
        # Chroma1-HD's released transformer config carries Flux's ``guidance_embeds`` (false), which diffusers'
        # Chroma inpaint pipeline reads; the model class does not declare it
        pipe.transformer.register_to_config(guidance_embeds=False)
        pipe.save_pretrained(tmp / "tiny-chroma", safe_serialization=True)
        factory._mark_native(tmp / "tiny-chroma")

    return factory._cached("diffusers-chroma", make) / "tiny-chroma"


DOUBLE = {  # diffusers name in a double block → the original's (q, k and v are fused there)
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
}
SINGLE = {
    "attn.norm_q.weight": "norm.query_norm.scale",
    "attn.norm_k.weight": "norm.key_norm.scale",
    "proj_out": "linear2",
}
TOP = {"x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer.linear"}


def _rename(rest: str, table: dict) -> str:
    for new, old in table.items():
        if rest == new:
            return old
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    raise KeyError(rest)


FUSED_DOUBLE = {"img": ("to_q", "to_k", "to_v"), "txt": ("add_q_proj", "add_k_proj", "add_v_proj")}
FUSED_SINGLE = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")  # one ``linear1`` in the original


def to_original(state: dict) -> dict:
    """A diffusers Chroma transformer state in the original release's names (the inverse of diffusers' converter)."""
    import torch

    fused_double = {f"attn.{p}" for names in FUSED_DOUBLE.values() for p in names}
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        n, _, part = rest.partition(".")
        module, _, leaf = part.rpartition(".")
        if head == "distilled_guidance_layer":
            rest = rest.replace(".linear_1.", ".in_layer.").replace(".linear_2.", ".out_layer.")
            out[f"{head}.{rest.replace('.weight', '.scale') if rest.startswith('norms.') else rest}"] = value
        elif head == "transformer_blocks" and module in fused_double:
            for side, names in FUSED_DOUBLE.items():
                if module == f"attn.{names[0]}":
                    fused = torch.cat([state[f"{head}.{n}.attn.{p}.{leaf}"] for p in names], 0)
                    out[f"double_blocks.{n}.{side}_attn.qkv.{leaf}"] = fused
        elif head == "transformer_blocks":
            out[f"double_blocks.{n}.{_rename(part, DOUBLE)}"] = value
        elif head == "single_transformer_blocks" and module in FUSED_SINGLE:
            if module == FUSED_SINGLE[0]:
                fused = torch.cat([state[f"{head}.{n}.{p}.{leaf}"] for p in FUSED_SINGLE], 0)
                out[f"single_blocks.{n}.linear1.{leaf}"] = fused
        elif head == "single_transformer_blocks":
            out[f"single_blocks.{n}.{_rename(part, SINGLE)}"] = value
        else:
            out[_rename(key, TOP)] = value
    return out


def split_files() -> Path:
    def make(tmp: Path) -> None:
        import torch
        from diffusers import ChromaPipeline

        src = folder()
        pipe = ChromaPipeline.from_pretrained(src, local_files_only=True, dtype=torch.float32)
        (tmp / "diffusion_models").mkdir()
        factory._save_file(
            to_original(pipe.transformer.state_dict()), tmp / "diffusion_models" / "tiny-chroma-file.safetensors"
        )
        factory.weightless_config(src, tmp / "diffusion_models" / "tiny-chroma-file.config")
        (tmp / "text_encoders").mkdir()
        factory._save_file(pipe.text_encoder.state_dict(), tmp / "text_encoders" / "tiny-chroma-t5xxl.safetensors")
        (tmp / "vae").mkdir()
        vae = factory._ldm_layout().vae_to_ldm(pipe.vae.state_dict(), prefix="")
        factory._save_file(vae, tmp / "vae" / "tiny-chroma-ae.safetensors")

    return factory._cached("split-chroma", make)


def full_checkpoint() -> Path:
    def make(tmp: Path) -> None:
        import torch
        from diffusers import ChromaPipeline

        src = folder()
        pipe = ChromaPipeline.from_pretrained(src, local_files_only=True, dtype=torch.float32)
        state = {"model.diffusion_model." + k: v for k, v in to_original(pipe.transformer.state_dict()).items()}
        state.update({"text_encoders.t5xxl.transformer." + k: v for k, v in pipe.text_encoder.state_dict().items()})
        vae = factory._ldm_layout().vae_to_ldm(pipe.vae.state_dict(), prefix="")
        state.update({"first_stage_model." + k: v for k, v in vae.items()})
        factory._save_file(state, tmp / "tiny-chroma-full.safetensors")
        factory.weightless_config(src, tmp / "tiny-chroma-full.config")

    return factory._cached("full-chroma", make) / "tiny-chroma-full.safetensors"


def gguf_file() -> Path:
    """The tiny transformer in the original names as a Q8_0 GGUF (as the published Chroma GGUFs)."""

    def make(tmp: Path) -> None:
        from diffusers import ChromaTransformer2DModel

        transformer = ChromaTransformer2DModel.from_pretrained(folder(), subfolder="transformer", local_files_only=True)
        factory.write_gguf_q8(to_original(transformer.state_dict()), tmp / "tiny-chroma-Q8_0.gguf", "chroma")

    return factory._cached("gguf-chroma", make) / "tiny-chroma-Q8_0.gguf"


def lora() -> Path:
    """A diffusers-named LoRA (rank 4) on every attention projection of the tiny Chroma transformer."""

    def make(tmp: Path) -> None:
        from diffusers import ChromaTransformer2DModel

        transformer = ChromaTransformer2DModel.from_pretrained(folder(), subfolder="transformer", local_files_only=True)
        state = factory.lora_state(transformer, lambda name: ".attn.to_" in name, seed=7)
        factory._save_file(state, tmp / "tiny-lora-chroma.safetensors")

    return factory._cached("chroma-lora", make) / "tiny-lora-chroma.safetensors"


def link_into(path: Path, item: str) -> None:
    """Put tiny Chroma model ``item`` into models folder ``path``."""
    if item == "chroma":
        src = folder()
        factory._link(src, path / "checkpoints" / src.name)
    elif item == "chroma-file":
        built = split_files()
        for sub in ("diffusion_models", "text_encoders", "vae"):
            for f in (built / sub).iterdir():
                factory._link(f, path / sub / f.name)
    elif item == "chroma-full":
        f = full_checkpoint()
        factory._link(f, path / "checkpoints" / f.name)
        factory._link(f.with_name("tiny-chroma-full.config"), path / "checkpoints" / "tiny-chroma-full.config")
    elif item == "chroma-gguf":  # beside the single file's parts, with its config folder
        built = split_files()
        factory._link(gguf_file(), path / "diffusion_models" / "tiny-chroma-Q8_0.gguf")
        config = built / "diffusion_models" / "tiny-chroma-file.config"
        factory._link(config, path / "diffusion_models" / "tiny-chroma-Q8_0.config")
    elif item == "lora-chroma":
        f = lora()
        factory._link(f, path / "loras" / f.name)
    else:
        raise ValueError(f"unknown tiny Chroma model {item!r}")
