"""Tiny random-weight Flux Redux models (reference images on Flux, issue 15), in the layouts users download, cached
like the other tiny models (``factory._cached``).

- ``redux-file``: ComfyUI's layout: the Redux embedder alone in ``style_models/flux1-redux-tiny.safetensors``
  (``redux_up.*``, ``redux_down.*``) and the SigLIP tower as one file with Hugging Face key names (``vision_model.*``)
  in ``clip_vision/sigclip_vision_tiny.safetensors``, with a ``.config/`` folder beside it (the tiny size has no
  shipped config).
- ``redux-folder``: a diffusers ``FluxPriorReduxPipeline`` folder ``style_models/FLUX.1-Redux-tiny`` (image_encoder/,
  feature_extractor/, image_embedder/) holding the same weights.

The embedder turns 24-wide SigLIP states into 32-wide tokens: the tiny Flux transformer's ``joint_attention_dim``.
"""

from __future__ import annotations

from pathlib import Path

import factory

SIGLIP_WIDTH = 24
TXT_DIM = 32  # tests/factory.build_flux: joint_attention_dim
IMAGE_SIZE = 32
EMBEDDER_GAIN = 30.0  # the random embedder's output scale: large enough to move a tiny model's pixels


def build_parts(seed: int = 0):
    """(SiglipVisionModel, SiglipImageProcessor, ReduxImageEncoder) with random weights."""
    import torch
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed + 51)
    encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=SIGLIP_WIDTH,
            intermediate_size=SIGLIP_WIDTH * 2,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=8,
        )
    )
    embedder = ReduxImageEncoder(redux_dim=SIGLIP_WIDTH, txt_in_features=TXT_DIM)
    with torch.no_grad():
        embedder.redux_down.weight.mul_(EMBEDDER_GAIN)
    processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return encoder, processor, embedder


def redux_models(name: str) -> Path:
    """The cached tiny Redux layout ``name`` (``redux-file`` or ``redux-folder``); both hold the same weights."""

    def build(tmp: Path) -> None:
        from diffusers import FluxPriorReduxPipeline

        encoder, processor, embedder = build_parts()
        if name == "redux-folder":
            pipe = FluxPriorReduxPipeline(image_encoder=encoder, feature_extractor=processor, image_embedder=embedder)
            pipe.save_pretrained(tmp / "style_models" / "FLUX.1-Redux-tiny", safe_serialization=True)
            return
        (tmp / "style_models").mkdir()
        factory._save_file(embedder.state_dict(), tmp / "style_models" / "flux1-redux-tiny.safetensors")
        vision = tmp / "clip_vision"
        vision.mkdir()
        factory._save_file(
            {"vision_model." + k: v for k, v in encoder.state_dict().items()},
            vision / "sigclip_vision_tiny.safetensors",
        )
        encoder.config.save_pretrained(vision / "sigclip_vision_tiny.config")
        processor.save_pretrained(vision / "sigclip_vision_tiny.config")

    if name not in ("redux-file", "redux-folder"):
        raise ValueError(f"unknown tiny Redux layout {name!r}")
    return factory._cached(name, build)


def link_into(path: Path, name: str) -> None:
    """Link the cached layout ``name`` into the models folder ``path``."""
    built = redux_models(name)
    for sub in ("style_models", "clip_vision"):
        for f in (built / sub).iterdir() if (built / sub).is_dir() else ():
            factory._link(f, path / sub / f.name)
