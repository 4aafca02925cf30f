"""Tiny random-weight Qwen-Image models (generate/img2img/inpaint, Edit, Edit Plus), built offline and cached like the
other tiny models (``factory._cached``).

The text encoder is a real ``Qwen2_5_VLForConditionalGeneration`` (text and vision towers, 16 wide, 2 layers) with a
byte-level tokenizer written here: the 256 byte symbols, no merges, and Qwen's chat and vision special tokens right after
them; the model's config names those tokens' ids (the real tokenizer has 151,643 regular tokens before them). The
processor pairs it with a ``Qwen2VLImageProcessor`` (patch 14, merge 2), as Qwen-Image-Edit ships.

Layouts (``link_into``):

- ``qwen`` / ``qwen-edit`` / ``qwen-edit-plus`` / ``qwen-layered``: diffusers folders ``checkpoints/tiny-<name>``
  (``QwenImagePipeline``, ``QwenImageEditPipeline``, ``QwenImageEditPlusPipeline``, ``QwenImageLayeredPipeline``:
  its transformer's RGB/RGBA condition and layered RoPE, its VAE 4 channels in and out).
- ``qwen-file``: ComfyUI's one-file-per-part layout (``comfy_files``), the VAE from ``qwen-split``.
- ``qwen-gguf``: the transformer as a Q8_0 GGUF in ``diffusion_models/`` (city96's layout), parts as ``qwen-split``.
- ``qwen-layered-split``: ``tiny-qwen-layered`` in ComfyUI's split layout (``layered_split_files``), with
  ``qwen-split`` for its text encoder.
- ``qwen-controlnet``: a tiny union ControlNet folder in ``controlnet/``.
- ``qwen-lora``: a tiny LoRA in ``loras/`` (diffusers/PEFT names on the transformer).
- ``qwen-split``: ComfyUI's split layout: the transformer alone in ``diffusion_models/tiny-qwen-split.safetensors``
  (diffusers key names, as Comfy-Org ships it) with a ``.config/`` folder beside it (the tiny size and its tokenizer:
  the real size loads with the shipped config), the text encoder in ``text_encoders/tiny-qwen_2.5_vl.safetensors``
  (transformers key names) and the VAE in ``vae/tiny-qwen_image_vae.safetensors`` (diffusers key names).
"""

from __future__ import annotations

import json
from pathlib import Path

import factory

VOCAB = 256
SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TOKEN_ID = {t: VOCAB + i for i, t in enumerate(SPECIAL)}
WIDTH = 16  # the text encoder's hidden size = the transformer's joint_attention_dim
Z_DIM = 4
PIPELINES = {
    "qwen": "QwenImagePipeline",
    "qwen-edit": "QwenImageEditPipeline",
    "qwen-edit-plus": "QwenImageEditPlusPipeline",
    "qwen-layered": "QwenImageLayeredPipeline",
}
LAYERED = "qwen-layered"  # Qwen-Image-Layered: its transformer's layer condition and 3-D RoPE, an RGBA VAE
CHECKPOINTS = tuple(PIPELINES)


def tokenizer():
    """A byte-level Qwen2 tokenizer: one token per byte, then Qwen's special tokens."""
    from transformers import Qwen2Tokenizer

    from server.models.tokenizers import _byte_symbols

    vocab = {s: i for i, s in enumerate(_byte_symbols().values())}
    vocab.update(TOKEN_ID)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=1024)
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL[1:])})
    assert tok.convert_tokens_to_ids("<|image_pad|>") == TOKEN_ID["<|image_pad|>"]
    return tok


def processor(tok):
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    images = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    return Qwen2VLProcessor(image_processor=images, tokenizer=tok, video_processor=Qwen2VLVideoProcessor())


def text_encoder(seed: int = 0):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed + 61)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": WIDTH,
            "intermediate_size": WIDTH * 2,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "vocab_size": VOCAB + len(SPECIAL),
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={
            "depth": 2,
            "hidden_size": WIDTH,
            "intermediate_size": WIDTH,
            "num_heads": 2,
            "out_hidden_size": WIDTH,
        },
        hidden_size=WIDTH,
        vocab_size=VOCAB + len(SPECIAL),
        image_token_id=TOKEN_ID["<|image_pad|>"],
        video_token_id=TOKEN_ID["<|video_pad|>"],
        vision_start_token_id=TOKEN_ID["<|vision_start|>"],
        vision_end_token_id=TOKEN_ID["<|vision_end|>"],
        vision_token_id=TOKEN_ID["<|vision_pad|>"],
        bos_token_id=TOKEN_ID["<|endoftext|>"],
        eos_token_id=TOKEN_ID["<|im_end|>"],
        pad_token_id=TOKEN_ID["<|endoftext|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def build(name: str = "qwen", seed: int = 0):
    """A tiny Qwen-Image pipeline of kind ``name`` (``qwen``, ``qwen-edit``, ``qwen-edit-plus``, ``qwen-layered``)."""
    import diffusers
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    torch.manual_seed(seed + 71)
    # the layered pipeline reads a 4-channel picture as latents when the latents have 4 channels: give it more
    z_dim = Z_DIM * 2 if name == LAYERED else Z_DIM
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=z_dim * 4,
        out_channels=z_dim,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=WIDTH,
        axes_dims_rope=(4, 6, 6),
        **({"use_additional_t_cond": True, "use_layer3d_rope": True} if name == LAYERED else {}),
    )
    vae = AutoencoderKLQwenImage(
        base_dim=Z_DIM * 6,
        z_dim=z_dim,
        dim_mult=[1, 2, 4, 4],  # three 2x downsamples: the real model's 8x latent factor
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
        input_channels=4 if name == LAYERED else 3,  # Qwen-Image-Layered's VAE reads and writes RGBA
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        base_shift=0.5,
        max_shift=0.9,
        shift_terminal=0.02,
        time_shift_type="exponential",
    )
    tok = tokenizer()
    parts = dict(transformer=transformer, vae=vae, text_encoder=text_encoder(seed), tokenizer=tok, scheduler=scheduler)
    if name != "qwen":
        parts["processor"] = processor(tok)
    return getattr(diffusers, PIPELINES[name])(**parts)


def checkpoint_folder(name: str) -> Path:
    """The cached diffusers folder ``tiny-<name>``."""

    def make(tmp: Path) -> None:
        folder = tmp / f"tiny-{name}"
        build(name).save_pretrained(folder, safe_serialization=True)
        index = json.loads((folder / "model_index.json").read_text())
        index["_paintbridge_native_px"] = factory.NATIVE_SIZE
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))

    return factory._cached(f"diffusers-{name}-v2", make) / f"tiny-{name}"


def split_files() -> Path:
    """The cached ComfyUI-style split files of ``tiny-qwen``."""
    folder = checkpoint_folder("qwen")

    def make(tmp: Path) -> None:
        import shutil

        import torch
        from diffusers import QwenImagePipeline

        pipe = QwenImagePipeline.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        for sub in ("diffusion_models", "text_encoders", "vae"):
            (tmp / sub).mkdir()
        factory._save_file(pipe.transformer.state_dict(), tmp / "diffusion_models" / "tiny-qwen-split.safetensors")
        config = tmp / "diffusion_models" / "tiny-qwen-split.config"
        factory.weightless_config(folder, config)
        shutil.copytree(folder / "tokenizer", config / "tokenizer")
        factory._save_file(pipe.text_encoder.state_dict(), tmp / "text_encoders" / "tiny-qwen_2.5_vl.safetensors")
        factory._save_file(pipe.vae.state_dict(), tmp / "vae" / "tiny-qwen_image_vae.safetensors")

    return factory._cached("split-qwen-v2", make)


def layered_split_files() -> Path:
    """The cached ComfyUI-style split files of ``tiny-qwen-layered``: its transformer alone in ``diffusion_models/``
    with its release's configs (tokenizer and processor included) in a ``.config/`` folder beside it, and its RGBA VAE
    in ``vae/``; the text encoder is tiny-qwen's (the same seed builds the same one)."""
    folder = checkpoint_folder(LAYERED)

    def make(tmp: Path) -> None:
        import shutil

        import torch
        from diffusers import QwenImageLayeredPipeline

        pipe = QwenImageLayeredPipeline.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        for sub in ("diffusion_models", "vae"):
            (tmp / sub).mkdir()
        factory._save_file(
            pipe.transformer.state_dict(), tmp / "diffusion_models" / "tiny-qwen-layered-split.safetensors"
        )
        config = tmp / "diffusion_models" / "tiny-qwen-layered-split.config"
        factory.weightless_config(folder, config)
        shutil.copytree(folder / "tokenizer", config / "tokenizer")
        factory._save_file(pipe.vae.state_dict(), tmp / "vae" / "tiny-qwen_image_layered_vae.safetensors")

    return factory._cached("split-qwen-layered", make)


def comfy_files() -> Path:
    """``tiny-qwen`` as ComfyUI users keep it in one file per part: the transformer under ``model.diffusion_model.`` in
    ``checkpoints/comfy-qwen.safetensors`` (its ``.config/`` beside it) and the text encoder with ComfyUI's names
    (``model.layers.*``, ``visual.*``) in ``text_encoders/comfy-qwen_2.5_vl.safetensors``."""
    split = split_files()

    def make(tmp: Path) -> None:
        import shutil

        from safetensors.torch import load_file

        (tmp / "checkpoints").mkdir()
        (tmp / "text_encoders").mkdir()
        transformer = load_file(str(split / "diffusion_models" / "tiny-qwen-split.safetensors"))
        prefixed = {"model.diffusion_model." + k: v for k, v in transformer.items()}
        factory._save_file(prefixed, tmp / "checkpoints" / "comfy-qwen.safetensors")
        shutil.copytree(
            split / "diffusion_models" / "tiny-qwen-split.config", tmp / "checkpoints" / "comfy-qwen.config"
        )
        encoder = load_file(str(split / "text_encoders" / "tiny-qwen_2.5_vl.safetensors"))
        renamed = {
            k.replace("model.language_model.", "model.", 1).replace("model.visual.", "visual.", 1): v
            for k, v in encoder.items()
        }
        factory._save_file(renamed, tmp / "text_encoders" / "comfy-qwen_2.5_vl.safetensors")

    return factory._cached("comfy-qwen", make)


def controlnet_folder() -> Path:
    """A tiny Qwen-Image union ControlNet (InstantX's layout: a diffusers folder) made from ``tiny-qwen``'s
    transformer, its zero-initialised projections filled with random weights so that it changes the picture."""

    def make(tmp: Path) -> None:
        import torch
        from diffusers import QwenImageControlNetModel, QwenImageTransformer2DModel

        transformer = QwenImageTransformer2DModel.from_pretrained(
            checkpoint_folder("qwen"), subfolder="transformer", local_files_only=True
        )
        sizes = ("patch_size", "in_channels", "out_channels", "attention_head_dim", "num_attention_heads")
        config = {k: transformer.config[k] for k in sizes + ("joint_attention_dim", "axes_dims_rope")}
        net = QwenImageControlNetModel(num_layers=1, **config)  # from_transformer keeps the default sizes
        net.load_state_dict(transformer.state_dict(), strict=False)  # the shared blocks start as the model's
        torch.manual_seed(47)
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name.startswith(("controlnet_blocks", "controlnet_x_embedder")):
                    p.normal_(0.0, 0.5)
        net.save_pretrained(tmp / "tiny-qwen-controlnet-union", safe_serialization=True)

    return factory._cached("cn-qwen-union", make) / "tiny-qwen-controlnet-union"


def lora() -> Path:
    """A tiny Qwen-Image LoRA (random, non-zero up weights) on the image stream's MLP and attention, as diffusers
    saves it (``transformer.transformer_blocks.N.img_mlp...``)."""

    def make(tmp: Path) -> None:
        import torch
        from diffusers import QwenImagePipeline

        pipe = QwenImagePipeline.from_pretrained(checkpoint_folder("qwen"), local_files_only=True, dtype=torch.float32)
        targets = ["to_q", "to_k", "to_v", "img_mlp.net.0.proj", "img_mlp.net.2"]
        factory.random_lora(pipe, targets, 40.0, 43, tmp, "tiny-lora-qwen.safetensors")

    return factory._cached("lora-qwen", make) / "tiny-lora-qwen.safetensors"


def link_into(path: Path, item: str) -> None:
    """Lay out ``item`` (see the module docstring) under the models folder ``path``."""
    if item in CHECKPOINTS:
        folder = checkpoint_folder(item)
        factory._link(folder, path / "checkpoints" / folder.name)
    elif item == "qwen-file":
        built = comfy_files()
        for sub in ("checkpoints", "text_encoders"):
            for f in (built / sub).iterdir():
                factory._link(f, path / sub / f.name)
        vae = split_files() / "vae" / "tiny-qwen_image_vae.safetensors"
        factory._link(vae, path / "vae" / vae.name)
    elif item == "qwen-gguf":  # a Q8_0 GGUF transformer in diffusion_models/, its parts from qwen-split
        gguf = factory.gguf_transformer("qwen", checkpoint_folder("qwen"), "QwenImageTransformer2DModel")
        factory._link(gguf, path / "diffusion_models" / gguf.name)
        built = split_files()
        config = built / "diffusion_models" / "tiny-qwen-split.config"
        factory._link(config, path / "diffusion_models" / "tiny-qwen-Q8_0.config")
        for sub in ("text_encoders", "vae"):
            for f in (built / sub).iterdir():
                factory._link(f, path / sub / f.name)
    elif item == "qwen-controlnet":
        factory._link(controlnet_folder(), path / "controlnet" / "tiny-qwen-controlnet-union")
    elif item == "qwen-lora":
        factory._link(lora(), path / "loras" / "tiny-lora-qwen.safetensors")
    elif item == "qwen-layered-split":  # needs qwen-split's text encoder beside it
        built = layered_split_files()
        for sub in ("diffusion_models", "vae"):
            for f in (built / sub).iterdir():
                factory._link(f, path / sub / f.name)
    elif item == "qwen-split":
        built = split_files()
        for sub in ("diffusion_models", "text_encoders", "vae"):
            for f in (built / sub).iterdir():
                factory._link(f, path / sub / f.name)
    else:
        raise ValueError(f"unknown tiny Qwen-Image model {item!r}")
