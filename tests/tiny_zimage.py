"""Tiny random-weight Z-Image models in the layouts painters have, built offline.

- ``zimage``: a diffusers folder (ZImagePipeline: a Z-Image transformer 32 wide, a 2-layer Qwen3 16 wide read through
  its second-to-last hidden state, the tiny Qwen tokenizer of ``tiny_klein``, a Flux.1-like 16-channel VAE).
- ``zimage-file``: the transformer alone in the original names (``x_embedder``, fused ``attention.qkv``) under
  ComfyUI's ``model.diffusion_model.`` prefix, with its ``.config`` folder (configs and tokenizer) beside it, its text
  encoder and VAE (original ``encoder.down.*`` names) as separate files in ``text_encoders/`` and ``vae/``.
- ``lora-zimage``: a diffusers-named LoRA on the transformer's attention projections.
- ``zimage-controlnet``: a union ControlNet in alibaba-pai's single-file layout (diffusers names, no config), shaped
  like the 2.1 release (control noise refiner, 33 control input channels) at the tiny transformer's size.
"""

from __future__ import annotations

from pathlib import Path

import factory
import tiny_klein


def build(seed: int = 0):
    torch = factory._torch()
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed + 51)
    transformer = ZImageTransformer2DModel(
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=16,
        axes_dims=[4, 6, 6],
        axes_lens=[1024, 128, 128],
    )
    with torch.no_grad():  # padding tokens start at zero; random ones make a missing tensor show
        transformer.x_pad_token.normal_()
        transformer.cap_pad_token.normal_()
    encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=256 + len(tiny_klein.SPECIAL),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=1024,
        )
    )
    return ZImagePipeline(
        transformer=transformer,
        vae=factory._vae16(0.3611, 0.1159),
        text_encoder=encoder,
        tokenizer=tiny_klein.tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )


def folder() -> Path:
    def make(tmp: Path) -> None:
        build().save_pretrained(tmp / "tiny-z-image", safe_serialization=True)
        factory._mark_native(tmp / "tiny-z-image")

    return factory._cached("diffusers-zimage", make) / "tiny-z-image"


def to_original(state: dict) -> dict:
    """A diffusers Z-Image transformer state in the original names (fused qkv, ``q_norm``, ``attention.out``)."""
    import torch

    out = {}
    for key, value in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            parts = [state[key.replace(".to_q.", f".to_{p}.")] for p in "qkv"]
            out[key.replace(".to_q.", ".qkv.")] = torch.cat(parts, 0)
            continue
        new = key.replace("all_x_embedder.2-1.", "x_embedder.").replace("all_final_layer.2-1.", "final_layer.")
        new = new.replace(".attention.to_out.0.", ".attention.out.")
        new = new.replace(".attention.norm_q.", ".attention.q_norm.").replace(
            ".attention.norm_k.", ".attention.k_norm."
        )
        out[new] = value
    return out


def split_files() -> Path:
    def make(tmp: Path) -> None:
        import torch
        from diffusers import ZImagePipeline

        src = folder()
        pipe = ZImagePipeline.from_pretrained(src, local_files_only=True, dtype=torch.float32)
        (tmp / "diffusion_models").mkdir()
        original = to_original(pipe.transformer.state_dict())
        factory._save_file(
            {"model.diffusion_model." + k: v for k, v in original.items()},
            tmp / "diffusion_models" / "tiny-z-image-file.safetensors",
        )
        config = tmp / "diffusion_models" / "tiny-z-image-file.config"
        factory.weightless_config(src, config)
        pipe.tokenizer.save_pretrained(config / "tokenizer")
        (tmp / "text_encoders").mkdir()
        encoder = {"model." + k: v for k, v in pipe.text_encoder.state_dict().items()}
        factory._save_file(encoder, tmp / "text_encoders" / "tiny-z-image-qwen_3.safetensors")
        (tmp / "vae").mkdir()
        vae = factory._ldm_layout().vae_to_ldm(pipe.vae.state_dict(), prefix="")
        factory._save_file(vae, tmp / "vae" / "tiny-z-image-ae.safetensors")

    return factory._cached("split-zimage", make)


def lora() -> Path:
    """A diffusers-named LoRA (rank 4) on every attention projection of the tiny Z-Image transformer."""

    def make(tmp: Path) -> None:
        from diffusers import ZImageTransformer2DModel

        transformer = ZImageTransformer2DModel.from_pretrained(folder(), subfolder="transformer", local_files_only=True)
        state = factory.lora_state(transformer, lambda name: ".attention.to_" in name, seed=6)
        factory._save_file(state, tmp / "tiny-lora-zimage.safetensors")

    return factory._cached("zimage-lora", make) / "tiny-lora-zimage.safetensors"


def controlnet_model(seed: int = 0, **config):
    """A tiny random ``ZImageControlNetModel`` 32 wide (the tiny transformer's heads) with ``config`` on top of the 2.1
    layout; its zero-initialised projections filled so that it changes the picture."""
    import torch
    from diffusers import ZImageControlNetModel

    base = dict(
        control_layers_places=[0, 1],
        control_refiner_layers_places=[0],
        control_in_dim=33,
        add_control_noise_refiner="control_noise_refiner",
        dim=32,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
    )
    torch.manual_seed(seed + 53)
    net = ZImageControlNetModel(**{**base, **config})
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "before_proj" in name or "after_proj" in name:
                p.normal_(0.0, 0.3)
    return net


def controlnet_file() -> Path:
    def make(tmp: Path) -> None:
        state = {k: v.contiguous() for k, v in controlnet_model().state_dict().items()}
        factory._save_file(state, tmp / "tiny-z-image-controlnet-union.safetensors")

    return factory._cached("zimage-controlnet", make) / "tiny-z-image-controlnet-union.safetensors"


def link_into(path: Path, item: str) -> None:
    """Put tiny Z-Image model ``item`` into models folder ``path``."""
    if item == "zimage":
        src = folder()
        factory._link(src, path / "checkpoints" / src.name)
    elif item == "zimage-file":
        built = split_files()
        for sub in ("diffusion_models", "text_encoders", "vae"):
            for f in (built / sub).iterdir():
                factory._link(f, path / sub / f.name)
    elif item == "zimage-controlnet":
        f = controlnet_file()
        factory._link(f, path / "controlnet" / f.name)
    elif item == "lora-zimage":
        f = lora()
        factory._link(f, path / "loras" / f.name)
    else:
        raise ValueError(f"unknown tiny Z-Image model {item!r}")
