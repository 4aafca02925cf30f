"""Tiny random-weight Flux Redux models (reference images on Flux, issue 15) in the layouts users download.

- ``redux-comfy``: ComfyUI's ``style_models/tiny-flux1-redux.safetensors`` (``redux_up.*``/``redux_down.*``) and the
  SigLIP tower as a single file ``clip_vision/tiny-sigclip-vision.safetensors`` (Hugging Face key names) with its
  ``.config/`` beside it (a tiny size Paintbridge ships no config for).
- ``redux-diffusers``: a ``FluxPriorReduxPipeline`` folder ``tiny-flux-redux/`` (image_encoder/, feature_extractor/,
  image_embedder/), as black-forest-labs/FLUX.1-Redux-dev is laid out.

Both read 24-wide SigLIP features and feed the tiny Flux's 32-wide T5 stream (``tests.factory.build_flux``).
"""

from __future__ import annotations

from pathlib import Path

from tests import factory

SIGLIP_WIDTH = 24  # tiny SigLIP hidden size (the real one is 1152)
TXT_WIDTH = 32  # the tiny Flux transformer's joint_attention_dim (T5 width; the real one is 4096)


def build_siglip(seed: int = 0):
    """A tiny SiglipVisionModel (32 px input, 8 px patches: 16 image tokens) with random weights."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed + 31)
    return SiglipVisionModel(SiglipVisionConfig(hidden_size=SIGLIP_WIDTH, intermediate_size=48, num_hidden_layers=2,
                                                num_attention_heads=4, image_size=32, patch_size=8))


def siglip_processor():
    """SigLIP's image processor at the tiny tower's 32 px."""
    from transformers import SiglipImageProcessor

    return SiglipImageProcessor(size={"height": 32, "width": 32})


def build_embedder(seed: int = 0):
    """A tiny diffusers ReduxImageEncoder (SigLIP width → 3 x T5 width → T5 width) with random weights."""
    import torch
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder

    torch.manual_seed(seed + 37)
    return ReduxImageEncoder(redux_dim=SIGLIP_WIDTH, txt_in_features=TXT_WIDTH)


def redux_models(layout: str) -> Path:
    """The cached tiny Redux models in ``layout`` (``redux-comfy`` or ``redux-diffusers``): a models-folder root."""
    def build(tmp: Path) -> None:
        if layout == "redux-diffusers":
            from diffusers import FluxPriorReduxPipeline

            pipe = FluxPriorReduxPipeline(image_encoder=build_siglip(), feature_extractor=siglip_processor(),
                                          image_embedder=build_embedder())
            pipe.save_pretrained(tmp / "style_models" / "tiny-flux-redux", safe_serialization=True)
            return
        if layout != "redux-comfy":
            raise ValueError(f"unknown tiny Redux layout {layout!r}")
        (tmp / "style_models").mkdir()
        factory._save_file({k: v.contiguous() for k, v in build_embedder(seed=1).state_dict().items()},
                           tmp / "style_models" / "tiny-flux1-redux.safetensors")
        (tmp / "clip_vision").mkdir()
        tower = build_siglip(seed=1)
        factory._save_file({k: v.contiguous() for k, v in tower.state_dict().items()},
                           tmp / "clip_vision" / "tiny-sigclip-vision.safetensors")
        tower.config.save_pretrained(tmp / "clip_vision" / "tiny-sigclip-vision.config")
        siglip_processor().save_pretrained(tmp / "clip_vision" / "tiny-sigclip-vision.config")
    return factory._cached(layout, build)


def add_to(models: Path, layout: str) -> None:
    """Link the tiny Redux models of ``layout`` into the models folder ``models``."""
    built = redux_models(layout)
    for sub in (s for s in built.iterdir() if s.is_dir()):
        for item in sub.iterdir():
            factory._link(item, Path(models) / sub.name / item.name)
