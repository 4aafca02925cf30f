"""Tiny random-weight models for tests, built offline and cached.

Everything is built with diffusers/transformers from configs written here (no downloads) and cached under
``${PAINTBRIDGE_CACHE:-~/.cache/paintbridge}/tiny-models/<version>/``; a missing or half-built entry is rebuilt.
The models keep the real block layout (so key conversions and the 8x VAE factor behave as in real models) and the real
CLIP tokenizer, at 64 px native size.

``make_models_dir(path, which=(...))`` lays out a models folder (ComfyUI names) with the chosen entries:

==========================  ===============================================================================
``sd15`` / ``sdxl``          diffusers folders ``checkpoints/tiny-sd15``, ``checkpoints/tiny-sdxl``
``sd15-inpaint`` ...         9-channel inpainting variants (``tiny-sd15-inpaint``, ``tiny-sdxl-inpaint``)
``sd15-file`` ...            the same models as single-file checkpoints with original key names
                             (``checkpoints/tiny-sd15-file.safetensors`` + ``tiny-sd15-file.config/``: the tiny
                             sizes differ from the real architectures, so a weightless config folder goes beside it)
``cn-sd15-canny``            ControlNet for SD1.5 in lllyasviel's original single-file layout
``cn-sd15-depth``            ControlNet for SD1.5 as a diffusers folder (any ``cn-<arch>-<type>`` is built this way,
                             e.g. ``cn-sd15-inpaint``)
``cn-sdxl-canny``            ControlNet for SDXL as one ``.safetensors`` with diffusers key names and no config
                             (as most SDXL ControlNets ship)
``cn-sdxl-union``            union ControlNet for SDXL (ControlNetUnionModel) as a diffusers folder
``lora-sd15`` / ``lora-sdxl`` a kohya-format LoRA (``loras/tiny-lora-sd15.safetensors``)
``emb-sd15`` / ``emb-sdxl``  an A1111-format textual-inversion embedding (``embeddings/tinystyle.safetensors``)
``flux`` / ``flux-fill`` /   Flux.1 dev / Fill / Kontext and an SD3.5-medium-like model (qk norm, dual attention) as
``flux-kontext`` / ``sd3``   diffusers folders (``checkpoints/tiny-flux`` ...)
``flux-split`` ...           the same model split as ComfyUI users keep it: the transformer alone in
                             ``diffusion_models/tiny-<name>-split.safetensors`` (+ ``.config/``), its text encoders in
                             ``text_encoders/`` (``tiny-<name>-clip_l``, ``-clip_g``, ``-t5xxl``) and its VAE
                             (original key names) in ``vae/tiny-<name>-ae.safetensors``
``ipa-sd15-plus``            reference images (issue 15): an IP-Adapter Plus (Resampler) for SD1.5 as ComfyUI keeps it,
                             ``ipadapter/ip-adapter-plus_tiny_sd15.safetensors``, with its image encoder as a single
                             file ``clip_vision/CLIP-tiny-vit-a.safetensors`` (+ ``.config/``: a tiny size)
``ipa-sd15-face``            a Plus face adapter for SD1.5 (``ipadapter/ip-adapter-plus-face_tiny_sd15.safetensors``)
``ipa-sd15-bin``             a base IP-Adapter for SD1.5 pickled as h94 once shipped them (``ip-adapter_tiny_sd15.bin``,
                             nested ``{"image_proj", "ip_adapter"}``; read weights-only)
``ipa-sdxl``                 a base IP-Adapter for SDXL in a copy of h94's repository layout:
                             ``ipadapter/IP-Adapter/sdxl_models/ip-adapter_tiny_sdxl.safetensors`` and its encoder as a
                             Hugging Face folder ``.../sdxl_models/image_encoder/``
``sdxl-refiner``             an SDXL refiner (OpenCLIP-G-like text encoder only, aesthetic-score time ids) as the
                             diffusers folder ``checkpoints/tiny-sdxl-refiner``; ``sdxl-refiner-file``: the same as
                             one original-layout ``.safetensors`` (+ ``.config/``)
``vae-file`` / ``vae-folder`` a stand-alone VAE (other weights than the checkpoints' own): one ``.safetensors`` with
                             original key names (``vae/tiny-vae-ft-mse.safetensors``, as VAEs ship) or a diffusers
                             folder (``vae/tiny-vae-diffusers``)
``pose-annotators``          the pose preprocessor's OpenPose files in ``annotators/`` (tests/tiny_pose.py: the real
                             layer shapes, weights with which the body model finds nobody)
``redux-file`` /             Flux Redux (tests/tiny_redux.py): ComfyUI's ``style_models/`` file + a SigLIP file in
``redux-folder``             ``clip_vision/``, or a diffusers FluxPriorReduxPipeline folder in ``style_models/``
``flux-full`` / ``sd3-full`` one ComfyUI-style full checkpoint: ``model.diffusion_model.*`` + ``text_encoders.<role>.
                             transformer.*`` + ``first_stage_model.*`` (``checkpoints/tiny-<name>-full.safetensors``)
==========================  ===============================================================================
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple

CACHE_VERSION = "v3"
TRANSFORMER_CHECKPOINTS = ("flux", "flux-fill", "flux-kontext", "sd3")
NATIVE_SIZE = 64  # px: UNet sample size 8 x VAE factor 8

SD15_CHECKPOINTS = ("sd15", "sd15-inpaint")
SDXL_CHECKPOINTS = ("sdxl", "sdxl-inpaint")
DEFAULT_WHICH = ("sd15",)


def cache_root() -> Path:
    """``$PAINTBRIDGE_CACHE`` or ``~/.cache/paintbridge``."""
    return Path(os.environ.get("PAINTBRIDGE_CACHE") or Path.home() / ".cache" / "paintbridge")


def _ldm_layout():
    """``tests/ldm_layout.py``, importable whether this file was imported as ``tests.factory`` or ``factory``."""
    import sys

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import ldm_layout

    return ldm_layout


def tiny_root() -> Path:
    return cache_root() / "tiny-models" / CACHE_VERSION


# --- building blocks -------------------------------------------------------------------------------------------------


def _torch():
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return torch


def _clip_config(hidden: int, act: str):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        projection_dim=32,
        hidden_act=act,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=NATIVE_SIZE,
        layers_per_block=1,
        block_out_channels=(32, 32, 64, 64),
        norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )


def _sd_scheduler_config() -> dict:
    return dict(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1
    )


def build_sd15(inpaint: bool = False, seed: int = 0):
    """A tiny SD1.5-class pipeline (inpainting variant: 9-channel UNet) with random weights."""
    torch = _torch()
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from server.models.tokenizers import clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=NATIVE_SIZE // 8,
        in_channels=9 if inpaint else 4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 32, 64, 64),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    return cls(
        vae=_vae(),
        text_encoder=CLIPTextModel(_clip_config(32, "quick_gelu")),
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, **_sd_scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sdxl(inpaint: bool = False, seed: int = 0):
    """A tiny SDXL-class pipeline (two text encoders of different widths, text_time embedding) with random weights."""
    torch = _torch()
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from server.models.tokenizers import clip_tokenizer

    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(
        sample_size=NATIVE_SIZE // 8,
        in_channels=9 if inpaint else 4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64, 64),
        cross_attention_dim=80,
        attention_head_dim=(2, 4, 4),
        transformer_layers_per_block=(1, 1, 2),
        use_linear_projection=True,
        norm_num_groups=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
    )
    scheduler = EulerDiscreteScheduler(timestep_spacing="leading", **_sd_scheduler_config())
    kwargs = dict(
        vae=_vae(),
        text_encoder=CLIPTextModel(_clip_config(32, "quick_gelu")),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(48, "gelu")),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer("!"),
        unet=unet,
        scheduler=scheduler,
    )
    if inpaint:
        return StableDiffusionXLInpaintPipeline(
            **kwargs, requires_aesthetics_score=False, force_zeros_for_empty_prompt=True
        )
    return StableDiffusionXLPipeline(**kwargs, force_zeros_for_empty_prompt=True, add_watermarker=False)


def build_sdxl_refiner(seed: int = 0):
    """A tiny SDXL refiner: only the second (OpenCLIP-G-like, width 48) text encoder, UNet conditioned on it alone
    with five time ids of 8 (size, crop, aesthetic score) + the pooled projection (32)."""
    torch = _torch()
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    from server.models.tokenizers import clip_tokenizer

    torch.manual_seed(seed + 7)
    unet = UNet2DConditionModel(
        sample_size=NATIVE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64, 64),
        cross_attention_dim=48,
        attention_head_dim=(2, 4, 4),
        transformer_layers_per_block=(1, 1, 2),
        use_linear_projection=True,
        norm_num_groups=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=5 * 8 + 32,
    )
    return StableDiffusionXLImg2ImgPipeline(
        vae=_vae(),
        text_encoder=None,
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(48, "gelu")),
        tokenizer=None,
        tokenizer_2=clip_tokenizer("!"),
        unet=unet,
        scheduler=EulerDiscreteScheduler(timestep_spacing="leading", **_sd_scheduler_config()),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
        add_watermarker=False,
    )


def refiner_folder() -> Path:
    """The cached tiny SDXL refiner (diffusers folder ``tiny-sdxl-refiner``)."""

    def build(tmp: Path) -> None:
        build_sdxl_refiner().save_pretrained(tmp / "tiny-sdxl-refiner", safe_serialization=True)

    return _cached("sdxl-refiner", build) / "tiny-sdxl-refiner"


def refiner_file() -> Path:
    """The cached tiny SDXL refiner as one original-layout file (``model.diffusion_model.*``, OpenCLIP-G under
    ``conditioner.embedders.0.model.*``, ``first_stage_model.*``) with its weightless ``.config`` folder beside it."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline

    layout = _ldm_layout()
    folder = refiner_folder()

    def build(tmp: Path) -> None:
        pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        state = layout.unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config.layers_per_block)
        state.update(layout.vae_to_ldm(pipe.vae.state_dict()))
        state.update(layout.open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.0.model."))
        _save_file(state, tmp / "tiny-sdxl-refiner-file.safetensors", {"format": "pt"})
        weightless_config(folder, tmp / "tiny-sdxl-refiner-file.config")

    return _cached("file-sdxl-refiner", build) / "tiny-sdxl-refiner-file.safetensors"


def vae_path(layout: str) -> Path:
    """The cached stand-alone tiny VAE (random weights of its own, the checkpoints' VAE layout): ``"file"`` one
    ``.safetensors`` with original key names, ``"folder"`` a diffusers folder."""

    def build(tmp: Path) -> None:
        _torch().manual_seed(99)
        vae = _vae()
        if layout == "file":
            _save_file(_ldm_layout().vae_to_ldm(vae.state_dict(), prefix=""), tmp / "tiny-vae-ft-mse.safetensors")
        else:
            vae.save_pretrained(tmp / "tiny-vae-diffusers", safe_serialization=True)

    built = _cached(f"vae-{layout}", build)
    return next(p for p in built.iterdir() if not p.name.startswith("."))


def _randomize_zero_modules(model, seed: int) -> None:
    """ControlNets start with zero convolutions (no effect); give them random weights so tests see their effect."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.abs().max() == 0 and ("controlnet_" in name or "conv_out" in name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def build_controlnet(arch: str, seed: int = 0, union: bool = False):
    """A tiny ControlNet (or union ControlNet) matching the tiny ``arch`` ("sd15"/"sdxl") UNet."""
    torch = _torch()
    from diffusers import ControlNetModel, ControlNetUnionModel

    unet = (build_sd15() if arch == "sd15" else build_sdxl()).unet
    torch.manual_seed(seed + 7)
    cls = ControlNetUnionModel if union else ControlNetModel
    kwargs = dict(conditioning_embedding_out_channels=(16, 16, 32, 32))
    if union:
        kwargs.update(num_trans_channel=32, num_trans_head=2, num_proj_channel=32)
        net = cls(**{**_unet_to_controlnet_kwargs(unet.config), **kwargs})
        net.load_state_dict(unet.state_dict(), strict=False)
    else:
        net = cls.from_unet(unet, **kwargs)
    _randomize_zero_modules(net, seed)
    return net


def _unet_to_controlnet_kwargs(config) -> dict:
    import inspect

    from diffusers import ControlNetUnionModel

    allowed = set(inspect.signature(ControlNetUnionModel.__init__).parameters)
    return {k: v for k, v in dict(config).items() if k in allowed}


def kohya_lora_state(pipe, rank: int = 4, seed: int = 0) -> Dict[str, "object"]:
    """A kohya-format LoRA for ``pipe``'s attention projections (UNet and first text encoder), as users' files are."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed + 11)
    out = {}

    def add(prefix: str, module_name: str, linear) -> None:
        key = prefix + module_name.replace(".", "_")
        out[key + ".lora_down.weight"] = torch.randn(rank, linear.in_features, generator=gen) * 0.3
        out[key + ".lora_up.weight"] = torch.randn(linear.out_features, rank, generator=gen) * 0.3
        out[key + ".alpha"] = torch.tensor(float(rank))

    for name, module in pipe.unet.named_modules():
        if name.endswith(
            (
                "attn1.to_q",
                "attn1.to_k",
                "attn1.to_v",
                "attn2.to_q",
                "attn2.to_k",
                "attn2.to_v",
                "attn1.to_out.0",
                "attn2.to_out.0",
            )
        ):
            add("lora_unet_", name, module)
    for name, module in pipe.text_encoder.named_modules():
        if name.endswith(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")):
            full = name if name.startswith("text_model.") else "text_model." + name
            add("lora_te1_" if getattr(pipe, "text_encoder_2", None) is not None else "lora_te_", full, module)
    return out


def embedding_state(arch: str, vectors: int = 2, seed: int = 0) -> dict:
    """An A1111-format textual-inversion embedding: ``emb_params`` (SD1.5) or ``clip_l`` + ``clip_g`` (SDXL)."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed + 13)
    if arch == "sd15":
        return {"emb_params": torch.randn(vectors, 32, generator=gen)}
    return {"clip_l": torch.randn(vectors, 32, generator=gen), "clip_g": torch.randn(vectors, 48, generator=gen)}


# --- Flux and SD3 ----------------------------------------------------------------------------------------------------


def _vae16(scale: float, shift: float):
    """A tiny 16-channel VAE without quant convolutions, as Flux and SD3 have."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        sample_size=NATIVE_SIZE,
        layers_per_block=1,
        block_out_channels=(32, 32, 64, 64),
        norm_num_groups=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        scaling_factor=scale,
        shift_factor=shift,
    )


def _t5(width: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=32128,
            d_model=width,
            d_ff=width * 2,
            d_kv=8,
            num_heads=4,
            num_layers=2,
            feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=8,
            is_encoder_decoder=False,
            use_cache=False,
        )
    )


def build_flux(variant: str = "dev", seed: int = 0):
    """A tiny Flux.1 pipeline: ``dev`` (FluxPipeline), ``fill`` (384 input channels) or ``kontext``."""
    torch = _torch()
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel

    from server.families.loading import t5_tokenizer
    from server.models.tokenizers import clip_tokenizer

    torch.manual_seed(seed + 21)
    fill = variant == "fill"
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=384 if fill else 64,
        out_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_image_seq_len=256,
        max_image_seq_len=4096,
        base_shift=0.5,
        max_shift=1.15,
    )
    cls = {"dev": "FluxPipeline", "fill": "FluxFillPipeline", "kontext": "FluxKontextPipeline"}[variant]
    return getattr(diffusers, cls)(
        transformer=transformer,
        vae=_vae16(0.3611, 0.1159),
        text_encoder=CLIPTextModel(_clip_config(32, "quick_gelu")),
        text_encoder_2=_t5(32),
        tokenizer=clip_tokenizer(),
        tokenizer_2=t5_tokenizer(),
        scheduler=scheduler,
    )


def build_sd3(seed: int = 0):
    """A tiny SD3.5-medium-like pipeline (qk RMS norm, dual attention in the first layer; CLIP-L 32, CLIP-G 48, T5 96)."""
    torch = _torch()
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    from server.families.loading import t5_tokenizer
    from server.models.tokenizers import clip_tokenizer

    torch.manual_seed(seed + 31)
    transformer = SD3Transformer2DModel(
        sample_size=NATIVE_SIZE // 8,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=96,
        caption_projection_dim=32,
        pooled_projection_dim=64,
        pos_embed_max_size=16,
        qk_norm="rms_norm",
        dual_attention_layers=(0,),
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        vae=_vae16(1.5305, 0.0609),
        text_encoder=CLIPTextModelWithProjection(_clip_config(32, "quick_gelu")),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(48, "gelu")),
        text_encoder_3=_t5(96),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer("!"),
        tokenizer_3=t5_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )


def _build_transformer_pipeline(name: str):
    return (
        build_sd3()
        if name == "sd3"
        else build_flux({"flux": "dev", "flux-fill": "fill", "flux-kontext": "kontext"}[name])
    )


def _mark_native(folder: Path) -> None:
    """Tiny models are native at 64 px (the real ones at 1024 px): say so in ``model_index.json``."""
    index = folder / "model_index.json"
    data = json.loads(index.read_text())
    data["_paintbridge_native_px"] = NATIVE_SIZE
    index.write_text(json.dumps(data, indent=2))


def _roles(name: str) -> Dict[str, str]:
    """Pipeline text-encoder slot → ComfyUI role name."""
    if name == "sd3":
        return {"text_encoder": "clip_l", "text_encoder_2": "clip_g", "text_encoder_3": "t5xxl"}
    return {"text_encoder": "clip_l", "text_encoder_2": "t5xxl"}


def _split_state(name: str):
    """(transformer state, {role: text-encoder state}, VAE state in the original layout) of a tiny folder model."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(checkpoint_folder(name), local_files_only=True, dtype=torch.float32)
    encoders = {role: getattr(pipe, slot).state_dict() for slot, role in _roles(name).items()}
    return pipe.transformer.state_dict(), encoders, _ldm_layout().vae_to_ldm(pipe.vae.state_dict(), prefix="")


def split_files(name: str) -> Path:
    """The cached ComfyUI-style split files of ``name`` (``diffusion_models/``, ``text_encoders/``, ``vae/``)."""
    folder = checkpoint_folder(name)

    def build(tmp: Path) -> None:
        transformer, encoders, vae = _split_state(name)
        (tmp / "diffusion_models").mkdir()
        _save_file(transformer, tmp / "diffusion_models" / f"tiny-{name}-split.safetensors")
        weightless_config(folder, tmp / "diffusion_models" / f"tiny-{name}-split.config")
        (tmp / "text_encoders").mkdir()
        for role, state in encoders.items():
            _save_file(state, tmp / "text_encoders" / f"tiny-{name}-{role}.safetensors")
        (tmp / "vae").mkdir()
        _save_file(vae, tmp / "vae" / f"tiny-{name}-ae.safetensors")

    return _cached(f"split-{name}", build)


def full_checkpoint(name: str) -> Path:
    """The cached ComfyUI-style full checkpoint of ``name`` (+ its ``.config`` folder beside it)."""
    folder = checkpoint_folder(name)

    def build(tmp: Path) -> None:
        transformer, encoders, vae = _split_state(name)
        state = {"model.diffusion_model." + k: v for k, v in transformer.items()}
        for role, enc in encoders.items():
            state.update({f"text_encoders.{role}.transformer.{k}": v for k, v in enc.items()})
        state.update({"first_stage_model." + k: v for k, v in vae.items()})
        _save_file(state, tmp / f"tiny-{name}-full.safetensors")
        weightless_config(folder, tmp / f"tiny-{name}-full.config")

    return _cached(f"full-{name}", build) / f"tiny-{name}-full.safetensors"


# --- cache -----------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(name: str, build: Callable[[Path], None]) -> Path:
    """``tiny_root()/name`` (a folder), built by ``build(tmp_folder)`` when missing or incomplete."""
    root = tiny_root()
    target = root / name
    if (target / ".complete").exists():
        return target
    with _locked(root):
        if (target / ".complete").exists():
            return target
        tmp = root / (name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        tmp.rename(target)
    return target


def lora_state(transformer, targets: Callable[[str], bool], seed: int, rank: int = 4) -> dict:
    """A diffusers/PEFT-named LoRA (``transformer.<module>.lora_A/B.weight``, random, x0.5) on every linear module of
    ``transformer`` whose name ``targets`` accepts."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and targets(name):
            state[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=gen) * 0.5
            state[f"transformer.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=gen) * 0.5
    return state


def _save_file(state: dict, path: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(path), metadata=metadata)


def _build_pipeline(arch: str, inpaint: bool):
    return build_sd15(inpaint) if arch == "sd15" else build_sdxl(inpaint)


def _parse_checkpoint(name: str) -> Tuple[str, bool, bool]:
    arch = name.split("-")[0]
    return arch, "-inpaint" in name, name.endswith("-file")


def checkpoint_folder(name: str) -> Path:
    """The cached diffusers folder of checkpoint ``name`` ("sd15", "sd15-inpaint", "sdxl", "sdxl-inpaint")."""
    arch, inpaint, _ = _parse_checkpoint(name)

    def build(tmp: Path) -> None:
        if name in TRANSFORMER_CHECKPOINTS:
            _build_transformer_pipeline(name).save_pretrained(tmp / f"tiny-{name}", safe_serialization=True)
            _mark_native(tmp / f"tiny-{name}")
        else:
            _build_pipeline(arch, inpaint).save_pretrained(tmp / f"tiny-{name}", safe_serialization=True)

    return _cached(f"diffusers-{name}", build) / f"tiny-{name}"


def weightless_config(folder: Path, dest: Path) -> None:
    """Copy a diffusers folder's configs (model_index, component configs, scheduler; no weights, no tokenizer)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "model_index.json", dest / "model_index.json")
    for sub in folder.iterdir():
        if sub.is_dir() and not sub.name.startswith("tokenizer"):
            (dest / sub.name).mkdir(exist_ok=True)
            for f in sub.glob("*.json"):
                shutil.copy(f, dest / sub.name / f.name)


def checkpoint_file(name: str) -> Path:
    """The cached single-file checkpoint (original key names) of checkpoint ``name``; its ``.config`` folder is beside it."""
    import torch
    from diffusers import DiffusionPipeline

    pipeline_to_ldm = _ldm_layout().pipeline_to_ldm

    folder = checkpoint_folder(name)

    def build(tmp: Path) -> None:
        pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        _save_file(pipeline_to_ldm(pipe), tmp / f"tiny-{name}-file.safetensors", {"format": "pt"})
        weightless_config(folder, tmp / f"tiny-{name}-file.config")

    return _cached(f"file-{name}", build) / f"tiny-{name}-file.safetensors"


def gguf_transformer(name: str, folder: Optional[Path] = None, cls_name: str = "FluxTransformer2DModel") -> Path:
    """The tiny checkpoint's transformer (``folder``'s, else ``checkpoint_folder(name)``'s) as a GGUF file (diffusers
    key names): 2-D weights whose rows are a multiple of 32 quantized to Q8_0 as city96's GGUFs do, the rest F32."""

    def build(tmp: Path) -> None:
        import diffusers

        transformer = getattr(diffusers, cls_name).from_pretrained(
            folder or checkpoint_folder(name), subfolder="transformer", local_files_only=True
        )
        write_gguf_q8(transformer.state_dict(), tmp / f"tiny-{name}-Q8_0.gguf", name)

    return _cached(f"gguf-{name}", build) / f"tiny-{name}-Q8_0.gguf"


def write_gguf_q8(state: dict, path: Path, arch: str) -> None:
    """``state`` as a GGUF file: 2-D weights whose rows are a multiple of 32 quantized to Q8_0 as city96's GGUFs do,
    the rest F32."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch=arch)
    q8 = gguf.GGMLQuantizationType.Q8_0
    for key, tensor in state.items():
        array = tensor.float().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0:
            quantized = gguf.quants.quantize(array, q8)
            writer.add_tensor(key, quantized, raw_shape=quantized.shape, raw_dtype=q8)
        else:
            writer.add_tensor(key, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def build_transformer_controlnet(family: str, union: bool = False, seed: int = 0):
    """A tiny Flux.1 (``FluxControlNetModel``, ``union``: 10 control modes) or SD3 (``SD3ControlNetModel``) ControlNet
    made from the tiny checkpoint's transformer; its zero-initialised output layers get random weights, so it changes
    the result as a trained one does."""
    import torch
    from diffusers import FluxControlNetModel, FluxTransformer2DModel, SD3ControlNetModel, SD3Transformer2DModel

    if family == "flux":
        transformer = FluxTransformer2DModel.from_pretrained(
            checkpoint_folder("flux"), subfolder="transformer", local_files_only=True
        )
        keep = (
            "patch_size",
            "in_channels",
            "attention_head_dim",
            "num_attention_heads",
            "joint_attention_dim",
            "pooled_projection_dim",
            "guidance_embeds",
            "axes_dims_rope",
        )
        net = FluxControlNetModel(
            **{k: transformer.config[k] for k in keep},
            num_layers=1,
            num_single_layers=1,
            num_mode=10 if union else None,
        )
    else:
        transformer = SD3Transformer2DModel.from_pretrained(
            checkpoint_folder("sd3"), subfolder="transformer", local_files_only=True
        )
        keep = (
            "sample_size",
            "patch_size",
            "in_channels",
            "attention_head_dim",
            "num_attention_heads",
            "joint_attention_dim",
            "caption_projection_dim",
            "pooled_projection_dim",
            "out_channels",
            "pos_embed_max_size",
            "qk_norm",
            "dual_attention_layers",
        )
        net = SD3ControlNetModel(**{k: transformer.config[k] for k in keep}, num_layers=1)
    net.load_state_dict(transformer.state_dict(), strict=False)  # the trunk starts as the transformer's
    generator = torch.Generator().manual_seed(seed + 41)
    with torch.no_grad():
        for key, tensor in net.state_dict().items():
            if key.startswith(
                ("controlnet_blocks.", "controlnet_x_embedder.", "controlnet_single_blocks.", "pos_embed_input.")
            ):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
    return net


def controlnet_path(name: str) -> Path:
    """The cached tiny ControlNet ``name`` ("cn-sd15-canny", "cn-sd15-depth", "cn-sdxl-canny", "cn-sdxl-union";
    Flux/SD3: "cn-flux-union" and "cn-sd3-canny" as diffusers folders, "cn-flux-canny" one file with diffusers key
    names and no config, as a renamed ``diffusion_pytorch_model.safetensors`` comes)."""
    if name in ("cn-flux-union", "cn-flux-canny", "cn-sd3-canny"):
        family, kind = name.split("-")[1:]

        def build_family(tmp: Path) -> None:
            net = build_transformer_controlnet(family, union=kind == "union", seed=len(name))
            if name == "cn-flux-canny":
                _save_file(net.state_dict(), tmp / "flux-controlnet-canny-tiny.safetensors")
            else:
                net.save_pretrained(tmp / f"{family}-controlnet-{kind}-tiny", safe_serialization=True)

        built = _cached(name, build_family)
        return next(p for p in built.iterdir() if not p.name.startswith("."))
    controlnet_to_ldm = _ldm_layout().controlnet_to_ldm

    arch = name.split("-")[1]
    kind = name.split("-")[2]

    def build(tmp: Path) -> None:
        net = build_controlnet(arch, seed=len(name), union=kind == "union")
        if name == "cn-sd15-canny":
            _save_file(
                controlnet_to_ldm(net.state_dict(), net.config.layers_per_block),
                tmp / "control_tiny_sd15_canny.safetensors",
            )
            net.save_config(tmp / "control_tiny_sd15_canny.config")
        elif name == "cn-sdxl-canny":  # diffusers key names in one file, no config: read off the shapes
            _save_file(net.state_dict(), tmp / "controlnet-canny-tiny-sdxl.safetensors")
        else:
            net.save_pretrained(tmp / f"controlnet-{kind}-tiny-{arch}", safe_serialization=True)

    built = _cached(name, build)
    return next(p for p in built.iterdir() if not p.name.startswith(".") and not p.name.endswith(".config"))


def lora_path(arch: str) -> Path:
    """The cached kohya-format tiny LoRA for ``arch`` (Flux: diffusers/PEFT format on the transformer)."""
    if arch == "flux":
        return _flux_lora()

    def build(tmp: Path) -> None:
        _save_file(
            kohya_lora_state(_build_pipeline(arch, False)),
            tmp / f"tiny-lora-{arch}.safetensors",
            {"ss_network_module": "networks.lora"},
        )

    return _cached(f"lora-{arch}", build) / f"tiny-lora-{arch}.safetensors"


def random_lora(pipe, targets: list, scale: float, seed: int, dest: Path, weight_name: str) -> None:
    """Save a random LoRA (rank 4, up weights scaled by ``scale``: visible on a tiny model after two steps) on
    ``pipe``'s transformer modules named ``targets``, as diffusers saves it."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=targets))
    with torch.no_grad():
        for name, p in pipe.transformer.named_parameters():
            if "lora_B" in name:
                p.mul_(scale)
    type(pipe).save_lora_weights(
        dest, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer), weight_name=weight_name
    )


def _flux_lora() -> Path:
    """A tiny Flux LoRA (random, non-zero up weights) on every attention projection, as diffusers saves it."""

    def build(tmp: Path) -> None:
        import torch
        from diffusers import FluxPipeline

        pipe = FluxPipeline.from_pretrained(checkpoint_folder("flux"), local_files_only=True, dtype=torch.float32)
        random_lora(pipe, ["to_q", "to_k", "to_v", "to_out.0"], 20.0, 41, tmp, "tiny-lora-flux.safetensors")

    return _cached("lora-flux", build) / "tiny-lora-flux.safetensors"


def embedding_path(arch: str) -> Path:
    """The cached A1111-format embedding for ``arch`` (trigger word: its file name, ``tinystyle``)."""

    def build(tmp: Path) -> None:
        _save_file(embedding_state(arch), tmp / "tinystyle.safetensors")

    return _cached(f"emb-{arch}", build) / "tinystyle.safetensors"


# --- reference images (issue 15) --------------------------------------------------------------------------------

# tiny image encoders: (hidden size, projection dim); the two differ so each adapter matches exactly one
TINY_ENCODERS = {"a": (32, 24), "b": (40, 16)}
IPADAPTER_GAIN = 0.5  # std of the random ip_adapter projections: large enough to move a tiny model's pixels


def build_image_encoder(which: str = "a", seed: int = 0):
    """A tiny CLIPVisionModelWithProjection (32 px input, 8 px patches) with random weights."""
    torch = _torch()
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    hidden, projection = TINY_ENCODERS[which]
    torch.manual_seed(seed + 11)
    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=projection,
        )
    )


def ipadapter_state(arch: str, variant: str, encoder_dim: int, seed: int = 0) -> Dict[str, "object"]:
    """An IP-Adapter for the tiny ``arch`` UNet in the original file layout (``image_proj.*``, ``ip_adapter.N.*``):
    ``base`` (ImageProjection on the projected embedding) or ``plus`` (a 4-layer Resampler on the penultimate
    hidden states). The ip_adapter ids are 1, 3, 5, ... over the UNet's cross-attention layers, as in h94's files."""
    torch = _torch()
    unet = _build_pipeline(arch, False).unet
    gen = torch.Generator().manual_seed(seed + 23)

    def rand(*shape, std=0.2):
        return torch.randn(shape, generator=gen) * std

    cross = unet.config.cross_attention_dim
    state: Dict[str, object] = {}
    if variant == "base":
        state.update(
            {
                "image_proj.proj.weight": rand(4 * cross, encoder_dim),
                "image_proj.proj.bias": rand(4 * cross),
                "image_proj.norm.weight": torch.ones(cross),
                "image_proj.norm.bias": torch.zeros(cross),
            }
        )
    else:
        dim, queries = 64, 4  # to_q width / 64 = 1 head
        state.update(
            {
                "image_proj.latents": rand(1, queries, dim, std=1.0),
                "image_proj.proj_in.weight": rand(dim, encoder_dim),
                "image_proj.proj_in.bias": rand(dim),
                "image_proj.proj_out.weight": rand(cross, dim),
                "image_proj.proj_out.bias": rand(cross),
                "image_proj.norm_out.weight": torch.ones(cross),
                "image_proj.norm_out.bias": torch.zeros(cross),
            }
        )
        for i in range(4):
            pre = f"image_proj.layers.{i}."
            for norm in ("0.norm1", "0.norm2", "1.0"):
                state[pre + norm + ".weight"], state[pre + norm + ".bias"] = torch.ones(dim), torch.zeros(dim)
            state.update(
                {
                    pre + "0.to_q.weight": rand(dim, dim),
                    pre + "0.to_kv.weight": rand(2 * dim, dim),
                    pre + "0.to_out.weight": rand(dim, dim),
                    pre + "1.1.weight": rand(4 * dim, dim),
                    pre + "1.3.weight": rand(dim, 4 * dim),
                }
            )
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        attn = unet.get_submodule(name[: -len(".processor")])
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(attn.to_k.out_features, cross, std=IPADAPTER_GAIN)
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(attn.to_v.out_features, cross, std=IPADAPTER_GAIN)
        key_id += 2
    return state


def reference_models(name: str) -> Path:
    """The cached tiny reference-image models ``name`` (see the table at the top), laid out as users download them."""

    def build(tmp: Path) -> None:
        import torch

        if name == "ipa-sdxl":
            folder = tmp / "IP-Adapter" / "sdxl_models"
            folder.mkdir(parents=True)
            encoder = build_image_encoder("b")
            encoder.save_pretrained(folder / "image_encoder", safe_serialization=True)
            _save_file(
                ipadapter_state("sdxl", "base", TINY_ENCODERS["b"][1]), folder / "ip-adapter_tiny_sdxl.safetensors"
            )
            return
        adapters = tmp / "ipadapter"
        adapters.mkdir()
        if name == "ipa-sd15-bin":
            flat = ipadapter_state("sd15", "base", TINY_ENCODERS["a"][1], seed=3)
            nested = {"image_proj": {}, "ip_adapter": {}}
            for key, value in flat.items():
                part, rest = key.split(".", 1)
                nested[part][rest] = value.contiguous()
            torch.save(nested, adapters / "ip-adapter_tiny_sd15.bin")
            return
        face = name == "ipa-sd15-face"
        file = "ip-adapter-plus-face_tiny_sd15" if face else "ip-adapter-plus_tiny_sd15"
        _save_file(
            ipadapter_state("sd15", "plus", TINY_ENCODERS["a"][0], seed=5 if face else 0),
            adapters / f"{file}.safetensors",
        )
        vision = tmp / "clip_vision"
        vision.mkdir()
        encoder = build_image_encoder("a")
        _save_file(encoder.state_dict(), vision / "CLIP-tiny-vit-a.safetensors")
        encoder.config.save_pretrained(vision / "CLIP-tiny-vit-a.config")

    return _cached(name, build)


# --- real size ---------------------------------------------------------------------------------------------------


def _stream_safetensors(shapes: Dict[str, "object"], path: Path, make) -> None:
    """Write a ``.safetensors`` file one tensor at a time (``make(key, meta_tensor)`` → CPU tensor), so a
    multi-GB checkpoint never sits in memory whole."""
    import struct

    dtypes = {"torch.float16": "F16", "torch.float32": "F32", "torch.bfloat16": "BF16"}
    header, offset = {}, 0
    for key, meta in shapes.items():
        size = meta.numel() * meta.element_size()
        header[key] = {
            "dtype": dtypes[str(meta.dtype)],
            "shape": list(meta.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for key, meta in shapes.items():
            tensor = make(key, meta).contiguous()
            fh.write(tensor.view(-1).view(_torch().uint8).numpy().tobytes())


def real_sd15_checkpoint() -> Path:
    """A real-size SD1.5 single-file checkpoint (original key names, fp16, random weights, ~2 GB), cached.

    Shapes come from the server's shipped SD1.5 configs through models built on the meta device; each tensor is drawn
    and written on its own."""
    torch = _torch()

    def build(tmp: Path) -> None:
        from accelerate import init_empty_weights
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel
        from types import SimpleNamespace

        from server.models.loading import CONFIGS_DIR

        configs = CONFIGS_DIR / "sd15"
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(json.loads((configs / "unet" / "config.json").read_text()))
            vae = AutoencoderKL.from_config(json.loads((configs / "vae" / "config.json").read_text()))
            text = CLIPTextModel(CLIPTextConfig.from_json_file(str(configs / "text_encoder" / "config.json")))
        meta = SimpleNamespace(unet=unet.half(), vae=vae.half(), text_encoder=text.half(), text_encoder_2=None)
        shapes = _ldm_layout().pipeline_to_ldm(meta)
        gen = torch.Generator().manual_seed(1234)

        def make(key: str, t) -> "torch.Tensor":
            if t.ndim == 1 and key.endswith(".weight"):
                return torch.ones(t.shape, dtype=t.dtype)
            if t.ndim == 1:
                return torch.zeros(t.shape, dtype=t.dtype)
            return (torch.randn(t.shape, generator=gen) * 0.02).to(t.dtype)

        _stream_safetensors(shapes, tmp / "random-sd15-full.safetensors", make)

    return _cached("real-sd15", build) / "random-sd15-full.safetensors"


# --- models folder ---------------------------------------------------------------------------------------------------


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        return
    dest.symlink_to(src, target_is_directory=src.is_dir())


def make_models_dir(path: Path, which: Iterable[str] = DEFAULT_WHICH) -> Path:
    """Lay out a ComfyUI-style models folder at ``path`` with the chosen tiny models (links into the cache)."""
    path = Path(path)
    for item in which:
        if item in SD15_CHECKPOINTS + SDXL_CHECKPOINTS + TRANSFORMER_CHECKPOINTS:
            folder = checkpoint_folder(item)
            _link(folder, path / "checkpoints" / folder.name)
        elif item.endswith("-file") and item[:-5] in SD15_CHECKPOINTS + SDXL_CHECKPOINTS:
            f = checkpoint_file(item[:-5])
            _link(f, path / "checkpoints" / f.name)
            config = f.with_name(f.name[: -len(".safetensors")] + ".config")
            _link(config, path / "checkpoints" / config.name)
        elif item.endswith("-split") and item[:-6] in TRANSFORMER_CHECKPOINTS:
            built = split_files(item[:-6])
            for sub in ("diffusion_models", "text_encoders", "vae"):
                for f in (built / sub).iterdir():
                    _link(f, path / sub / f.name)
        elif item == "flux-gguf":  # a Q8_0 GGUF transformer in diffusion_models/, its parts beside it
            _link(gguf_transformer("flux"), path / "diffusion_models" / "tiny-flux-Q8_0.gguf")
            built = split_files("flux")
            _link(
                built / "diffusion_models" / "tiny-flux-split.config",
                path / "diffusion_models" / "tiny-flux-Q8_0.config",
            )
            for sub in ("text_encoders", "vae"):
                for f in (built / sub).iterdir():
                    _link(f, path / sub / f.name)
        elif item.endswith("-full") and item[:-5] in TRANSFORMER_CHECKPOINTS:
            f = full_checkpoint(item[:-5])
            _link(f, path / "checkpoints" / f.name)
            config = f.with_name(f.name[: -len(".safetensors")] + ".config")
            _link(config, path / "checkpoints" / config.name)
        elif item == "sdxl-refiner":
            folder = refiner_folder()
            _link(folder, path / "checkpoints" / folder.name)
        elif item == "sdxl-refiner-file":
            f = refiner_file()
            _link(f, path / "checkpoints" / f.name)
            _link(f.with_name(f.stem + ".config"), path / "checkpoints" / (f.stem + ".config"))
        elif item in ("vae-file", "vae-folder"):
            p = vae_path(item[4:])
            _link(p, path / "vae" / p.name)
        elif item.startswith("cn-"):
            p = controlnet_path(item)
            _link(p, path / "controlnet" / p.name)
            config = p.with_name(p.stem + ".config")
            if config.is_dir():
                _link(config, path / "controlnet" / config.name)
        elif item in ("klein", "klein-file", "klein-gguf", "lora-klein"):  # Flux.2 Klein: tests/tiny_klein.py
            import tiny_klein

            tiny_klein.link_into(path, item)
        elif item in ("zimage", "zimage-file", "lora-zimage", "zimage-controlnet"):  # Z-Image: tests/tiny_zimage.py
            import tiny_zimage

            tiny_zimage.link_into(path, item)
        elif item in (
            "chroma",
            "chroma-file",
            "chroma-full",
            "chroma-gguf",
            "lora-chroma",
        ):  # Chroma: tests/tiny_chroma.py
            import tiny_chroma

            tiny_chroma.link_into(path, item)
        elif item.startswith("lora-"):
            p = lora_path(item[5:])
            _link(p, path / "loras" / p.name)
        elif item.startswith("ipa-"):  # reference images (issue 15)
            built = reference_models(item)
            if item == "ipa-sdxl":
                _link(built / "IP-Adapter", path / "ipadapter" / "IP-Adapter")
            else:
                for sub in ("ipadapter", "clip_vision"):
                    for f in (built / sub).iterdir() if (built / sub).is_dir() else ():
                        _link(f, path / sub / f.name)
        elif item.startswith("qwen"):  # Qwen-Image family: tests/tiny_qwen.py
            import tiny_qwen

            tiny_qwen.link_into(path, item)
        elif item.startswith("redux-"):  # reference images on Flux (issue 15): tests/tiny_redux.py
            import tiny_redux

            tiny_redux.link_into(path, item)
        elif item == "pose-annotators":  # the pose preprocessor's three files: tests/tiny_pose.py
            import tiny_pose

            built = tiny_pose.build_pose_models(cache_root() / "pose-models") / "annotators"
            for name in tiny_pose.POSE_FILES.values():
                _link(built / name, path / "annotators" / name)
        elif item.startswith("emb-"):
            p = embedding_path(item[4:])
            _link(p, path / "embeddings" / item[4:] / p.name)
        else:
            raise ValueError(f"unknown tiny model {item!r}")
    path.mkdir(parents=True, exist_ok=True)
    return path
