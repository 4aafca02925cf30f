"""Tiny random-weight Flux.2 Klein models in the layouts painters have, built offline.

- ``klein``: a diffusers folder (Flux2KleinPipeline: Flux2 transformer 32 wide, a 28-layer Qwen3 16 wide — Klein reads
  its hidden states 9, 18 and 27 —, a tiny byte-level Qwen tokenizer with Qwen3's chat template, a 32-channel Flux.2 VAE).
- ``klein-file``: the transformer alone in Black Forest Labs' names (``double_blocks.*``), with its ``.config`` folder
  (configs and tokenizer) beside it, its text encoder and VAE as separate files in ``text_encoders/`` and ``vae/``
  (the VAE in the original ``encoder.down.*`` names), as ComfyUI users lay them out.
- ``klein-gguf``: the transformer in Black Forest Labs' names as a Q8_0 GGUF (as city96's GGUFs), beside the parts of
  ``klein-file`` and a copy of its ``.config`` folder.
- ``lora-klein``: a diffusers-named LoRA on the transformer's attention and fused single-block projections.
"""

from __future__ import annotations

from pathlib import Path

import factory

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# Qwen3's chat template, cut to what Klein's prompt encoding uses (one user turn, no thinking)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}"
)


def tokenizer():
    """A byte-level BPE tokenizer (256 byte tokens + Qwen's special tokens, no merges) as a Qwen2 tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    from server.models.tokenizers import _byte_symbols

    vocab = {s: i for i, s in enumerate(_byte_symbols().values())}
    vocab.update({t: 256 + i for i, t in enumerate(SPECIAL)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    out = Qwen2TokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None
    )
    out.chat_template = CHAT_TEMPLATE
    return out


def text_encoder():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=256 + len(SPECIAL),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=28,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=1024,
            tie_word_embeddings=True,
        )
    )


def vae():
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=32,
        sample_size=factory.NATIVE_SIZE,
    )


def build(seed: int = 0):
    """The tiny distilled Klein pipeline."""
    torch = factory._torch()
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel

    torch.manual_seed(seed + 41)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,  # 3 hidden states x 16
        guidance_embeds=False,
        axes_dims_rope=(4, 4, 4, 4),
    )
    model = vae()
    with torch.no_grad():  # trained statistics, not the identity: the normalisation must be applied to matter
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096
    )
    return Flux2KleinPipeline(
        transformer=transformer,
        vae=model,
        text_encoder=text_encoder(),
        tokenizer=tokenizer(),
        scheduler=scheduler,
        is_distilled=True,
    )


def folder() -> Path:
    def make(tmp: Path) -> None:
        pipe = build()
        pipe.save_pretrained(tmp / "tiny-klein", safe_serialization=True)
        factory._mark_native(tmp / "tiny-klein")

    return factory._cached("diffusers-klein", make) / "tiny-klein"


def to_bfl(state: dict) -> dict:
    """A diffusers Flux2 transformer state in Black Forest Labs' names (fused qkv, ``.scale`` norms, shift first)."""
    import torch

    renames = {
        "x_embedder.": "img_in.",
        "context_embedder.": "txt_in.",
        "time_guidance_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
        "time_guidance_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
        "double_stream_modulation_img.linear.": "double_stream_modulation_img.lin.",
        "double_stream_modulation_txt.linear.": "double_stream_modulation_txt.lin.",
        "single_stream_modulation.linear.": "single_stream_modulation.lin.",
        "proj_out.": "final_layer.linear.",
    }
    double = {
        "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
        "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
        "attn.to_out.0.weight": "img_attn.proj.weight",
        "ff.linear_in.weight": "img_mlp.0.weight",
        "ff.linear_out.weight": "img_mlp.2.weight",
        "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
        "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
        "attn.to_add_out.weight": "txt_attn.proj.weight",
        "ff_context.linear_in.weight": "txt_mlp.0.weight",
        "ff_context.linear_out.weight": "txt_mlp.2.weight",
    }
    single = {
        "attn.to_qkv_mlp_proj.weight": "linear1.weight",
        "attn.to_out.weight": "linear2.weight",
        "attn.norm_q.weight": "norm.query_norm.scale",
        "attn.norm_k.weight": "norm.key_norm.scale",
    }
    out = {}
    for key, value in state.items():
        if key.startswith("transformer_blocks."):
            _, n, rest = key.split(".", 2)
            if rest in ("attn.to_q.weight", "attn.add_q_proj.weight"):
                names = ("to_q", "to_k", "to_v") if "to_q" in rest else ("add_q_proj", "add_k_proj", "add_v_proj")
                parts = [state[f"transformer_blocks.{n}.attn.{p}.weight"] for p in names]
                side = "img" if "to_q" in rest else "txt"
                out[f"double_blocks.{n}.{side}_attn.qkv.weight"] = torch.cat(parts, 0)
            elif rest in double:
                out[f"double_blocks.{n}.{double[rest]}"] = value
        elif key.startswith("single_transformer_blocks."):
            _, n, rest = key.split(".", 2)
            out[f"single_blocks.{n}.{single[rest]}"] = value
        elif key == "norm_out.linear.weight":
            scale, shift = value.chunk(2, 0)
            out["final_layer.adaLN_modulation.1.weight"] = torch.cat([shift, scale], 0)
        else:
            prefix = next(p for p in renames if key.startswith(p))
            out[renames[prefix] + key[len(prefix) :]] = value
    return out


def split_files() -> Path:
    def make(tmp: Path) -> None:
        import torch
        from diffusers import Flux2KleinPipeline

        src = folder()
        pipe = Flux2KleinPipeline.from_pretrained(src, local_files_only=True, dtype=torch.float32)
        (tmp / "diffusion_models").mkdir()
        factory._save_file(
            {"model.diffusion_model." + k: v for k, v in to_bfl(pipe.transformer.state_dict()).items()},
            tmp / "diffusion_models" / "tiny-klein-file.safetensors",
        )
        config = tmp / "diffusion_models" / "tiny-klein-file.config"
        factory.weightless_config(src, config)
        pipe.tokenizer.save_pretrained(config / "tokenizer")
        (tmp / "text_encoders").mkdir()
        encoder = {k: v for k, v in pipe.text_encoder.state_dict().items() if k != "lm_head.weight"}
        factory._save_file(encoder, tmp / "text_encoders" / "tiny-klein-qwen_3.safetensors")
        (tmp / "vae").mkdir()
        state = pipe.vae.state_dict()
        bn = {k: v for k, v in state.items() if k.startswith("bn.")}
        ldm = factory._ldm_layout().vae_to_ldm({k: v for k, v in state.items() if k not in bn}, prefix="")
        factory._save_file({**ldm, **bn}, tmp / "vae" / "tiny-flux2-vae.safetensors")

    return factory._cached("split-klein", make)


def gguf_file() -> Path:
    """The tiny transformer as a GGUF file: 2-D weights whose rows are a multiple of 32 quantized to Q8_0, the rest
    F32."""

    def make(tmp: Path) -> None:
        from diffusers import Flux2Transformer2DModel

        transformer = Flux2Transformer2DModel.from_pretrained(folder(), subfolder="transformer", local_files_only=True)
        factory.write_gguf_q8(to_bfl(transformer.state_dict()), tmp / "tiny-klein-Q8_0.gguf", "flux")

    return factory._cached("gguf-klein", make) / "tiny-klein-Q8_0.gguf"


def lora() -> Path:
    """A diffusers-named LoRA (rank 4) on every attention projection of the tiny Klein transformer."""

    def make(tmp: Path) -> None:
        from diffusers import Flux2Transformer2DModel

        transformer = Flux2Transformer2DModel.from_pretrained(folder(), subfolder="transformer", local_files_only=True)
        state = factory.lora_state(transformer, lambda name: "attn." in name or name.endswith("ff.linear_in"), seed=5)
        factory._save_file(state, tmp / "tiny-lora-klein.safetensors")

    return factory._cached("klein-lora", make) / "tiny-lora-klein.safetensors"


def link_into(path: Path, item: str) -> None:
    """Put tiny Klein model ``item`` into models folder ``path``."""
    if item == "klein":
        src = folder()
        factory._link(src, path / "checkpoints" / src.name)
    elif item == "klein-file":
        built = split_files()
        for sub in ("diffusion_models", "text_encoders", "vae"):
            for f in (built / sub).iterdir():
                factory._link(f, path / sub / f.name)
    elif item == "klein-gguf":
        built = split_files()
        factory._link(gguf_file(), path / "diffusion_models" / "tiny-klein-Q8_0.gguf")
        config = built / "diffusion_models" / "tiny-klein-file.config"
        factory._link(config, path / "diffusion_models" / "tiny-klein-Q8_0.config")
    elif item == "lora-klein":
        f = lora()
        factory._link(f, path / "loras" / f.name)
    else:
        raise ValueError(f"unknown tiny Klein model {item!r}")
