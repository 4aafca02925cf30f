"""Build a Flux/SD3/Klein/Z-Image/Chroma/Qwen-Image pipeline fully offline: diffusers folders as they are, single files
from their parts.

A single-file checkpoint loads with a weightless config folder (``<name>.config/`` beside it, else the shipped
``server/configs/<variant>``); its transformer is converted by diffusers (Chroma's original names through
``chroma.to_diffusers``), its text encoders and VAE come from inside it or from the files ``parts.find`` picked. Only
the tensors of each part are read (a full checkpoint's T5 is not read for its transformer). Tensors stored in another
precision (fp8, fp16, bf16) are cast to the engine's dtype as they are read; a GGUF transformer keeps its quantized
weights (diffusers' GGUF support, with the optional ``gguf`` package).
Tokenizers are the shipped ones (CLIP BPE, T5 SentencePiece), so nothing is fetched; the Qwen tokenizers are not
shipped and come from the user's folders (``qwen`` for Qwen-Image, ``qwen3`` for Flux.2 Klein and Z-Image).
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache, partial
from pathlib import Path
from typing import List, Optional, Tuple

from protocol.errors import UNSUPPORTED, ProtocolError

from ..models import configcheck
from ..models.identify import DIFFUSERS, GGUF, PICKLE
from ..models.loading import CONFIGS_DIR, check_no_meta, empty_transformers_model
from ..models.tensors import read_tensors
from ..models.registry import ModelEntry, ModelRegistry
from ..models.tokenizers import clip_tokenizer, folder_tokenizers
from . import chroma, klein, qwen, qwen3, specs
from . import parts as part_finder

T5_TOKENIZER = CONFIGS_DIR / "t5-tokenizer" / "tokenizer.json.gz"
T5_MAX_LENGTH = 512


def config_dir(entry: ModelEntry) -> Path:
    """The weightless config folder a single-file checkpoint loads with (a user's ``<name>.config/`` is checked
    again: it may have changed since the models were listed)."""
    if entry.config_dir is not None:
        try:
            configcheck.check_folder(entry.config_dir)
        except configcheck.ConfigError as err:
            raise ProtocolError(
                UNSUPPORTED, f"{entry.kind} '{entry.name}' cannot be used: {err}", field="model"
            ) from None
        return entry.config_dir
    return CONFIGS_DIR / entry.info.get("config", specs.VARIANT_CONFIGS["dev"])


def transformer_files(entry: ModelEntry) -> List[Path]:
    """The safetensors files holding ``entry``'s transformer (a diffusers folder's shards, or the single file)."""
    if entry.format == DIFFUSERS:
        return sorted((entry.path / "transformer").glob("*.safetensors"))
    return [entry.path]


def transformer_prefix(entry: ModelEntry) -> str:
    """The key prefix of the transformer's tensors in ``transformer_files``."""
    return "" if entry.format == DIFFUSERS else entry.info.get("transformer_prefix", "")


def weight_files(entry: ModelEntry, registry: ModelRegistry) -> List[Path]:
    """Every safetensors file ``entry`` loads weights from: a diffusers folder's, or the single file and the text
    encoders and VAE ``parts.find`` picks for it (``model_not_found`` naming a missing part)."""
    if entry.format == DIFFUSERS:
        return sorted(entry.path.rglob("*.safetensors"))
    found = part_finder.find(entry, config_dir(entry), registry)
    sources = list(found.encoders.values()) + ([found.vae] if found.vae is not None else [])
    files = {entry.path}
    for src in sources:
        files.update(sorted(src.path.rglob("*.safetensors")) if src.folder else [src.path])
    return sorted(files)


@lru_cache(maxsize=1)
def _t5_backend():
    """The shipped T5 ``tokenizers.Tokenizer``, parsed once per process and never handed out: ``T5TokenizerFast``
    gives each tokenizer built on it a deep copy of its own."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(gzip.decompress(T5_TOKENIZER.read_bytes()).decode("utf-8"))


def t5_tokenizer():
    """A new T5 v1.1 tokenizer (Flux, SD3 and Chroma use it) from the shipped ``tokenizer.json``: ~80 ms of CPU a
    tokenizer, half of parsing the file again for each (AMD EPYC)."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(
        tokenizer_object=_t5_backend(),
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=T5_MAX_LENGTH,
    )


def tokenizers(family: str, folder: Optional[Path] = None) -> dict:
    """The shipped tokenizers for a family's pipeline (CLIP pads SD3's CLIP-G with "!", as the originals do): with a
    diffusers ``folder``, only those it has no sub-folder for."""
    if family == specs.SD3:
        makers = {"tokenizer": clip_tokenizer, "tokenizer_2": partial(clip_tokenizer, "!"), "tokenizer_3": t5_tokenizer}
    elif family == specs.CHROMA:
        makers = {"tokenizer": t5_tokenizer}
    elif family in specs.QWEN3_FAMILIES or qwen.is_qwen(family):
        # not shipped: a diffusers folder carries its own; a split Qwen-Image checkpoint its config folder's, a
        # single-file Klein or Z-Image the one ``qwen3.tokenizer`` finds
        makers = {}
    else:
        makers = {"tokenizer": clip_tokenizer, "tokenizer_2": t5_tokenizer}
    return {part: make() for part, make in makers.items() if folder is None or not (folder / part).is_dir()}


def _text_encoder(source: part_finder.Source, config: Path, dtype):
    """A CLIP or T5 text encoder from a file with transformers key names (missing CLIP projection: identity)."""
    import torch

    model = empty_transformers_model(config)
    wanted = set(model.state_dict())
    state = read_tensors(source.path, dtype, source.prefix)
    if not any(k.startswith("text_model.") for k in wanted):  # transformers 5 may drop the prefix
        state = {k[len("text_model.") :] if k.startswith("text_model.") else k: v for k, v in state.items()}
    elif not any(k.startswith("text_model.") for k in state):
        state = {("text_model." + k if k != "text_projection.weight" else k): v for k, v in state.items()}
    if "shared.weight" in wanted and "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    if (
        "encoder.embed_tokens.weight" in wanted
        and "encoder.embed_tokens.weight" not in state
        and "shared.weight" in state
    ):
        state["encoder.embed_tokens.weight"] = state["shared.weight"]
    if "text_projection.weight" in wanted and "text_projection.weight" not in state:
        width = model.config.hidden_size
        state["text_projection.weight"] = torch.eye(width, dtype=dtype)
    state = {k: v for k, v in state.items() if k in wanted}
    model.load_state_dict(state, strict=False, assign=True)
    return model.to(dtype).eval()


def _vae(source: part_finder.Source, config: Path, dtype):
    from diffusers import AutoencoderKL

    if source.folder:
        return AutoencoderKL.from_pretrained(str(source.path), dtype=dtype, local_files_only=True)
    state = read_tensors(source.path, dtype, source.prefix)
    return AutoencoderKL.from_single_file(
        state, config=str(config), subfolder="vae", torch_dtype=dtype, local_files_only=True
    )


def _transformer(entry: ModelEntry, config: Path, dtype):
    import diffusers

    cls_name = json.loads((config / "transformer" / "config.json").read_text(encoding="utf-8"))["_class_name"]
    chroma_names = entry.arch == specs.CHROMA and entry.info.get("layout") == "original"
    if entry.format == GGUF:  # quantized weights stay quantized; diffusers dequantizes each layer as it runs
        from diffusers import GGUFQuantizationConfig

        source = str(entry.path)
        if chroma_names:  # renamed here, the quantized blocks untouched (their rows split as the float ones)
            from diffusers.models.model_loading_utils import load_gguf_checkpoint

            prefix = entry.info.get("transformer_prefix", "")
            quantized = load_gguf_checkpoint(source, return_tensors=True)
            source = chroma.to_diffusers({k[len(prefix) :]: v for k, v in quantized.items() if k.startswith(prefix)})
        return getattr(diffusers, cls_name).from_single_file(
            source,
            config=str(config),
            subfolder="transformer",
            torch_dtype=dtype,
            local_files_only=True,
            quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
        )
    state = read_tensors(entry.path, dtype, entry.info.get("transformer_prefix", ""))
    state = {k: v for k, v in state.items() if not k.startswith(("text_encoders.", "first_stage_model.", "vae."))}
    if chroma_names:
        state = chroma.to_diffusers(state)
    return getattr(diffusers, cls_name).from_single_file(
        state, config=str(config), subfolder="transformer", torch_dtype=dtype, local_files_only=True
    )


def _qwen3_parts(entry: ModelEntry, found: part_finder.Parts, config: Path, dtype, registry: ModelRegistry) -> dict:
    """A single-file Flux.2 Klein's or Z-Image's other pipeline parts: the Qwen3 encoder, the Qwen tokenizer, the VAE
    (Klein's 32-channel Flux.2 one, Z-Image's Flux.1 one), and whether a Klein is a distilled release."""
    src = found.encoders["text_encoder"]
    parts = {
        "text_encoder": qwen3.text_encoder(src.path, src.prefix, config / "text_encoder", dtype),
        "tokenizer": qwen3.tokenizer(entry, config, registry),
    }
    if entry.arch == specs.ZIMAGE:
        return dict(parts, vae=_vae(found.vae, config, dtype))
    vae = klein.vae(found.vae.path, found.vae.prefix, found.vae.folder, config, dtype)
    return dict(parts, vae=vae, is_distilled=bool(entry.info.get("distilled", True)))


def load(entry: ModelEntry, dtype, registry: ModelRegistry) -> Tuple[object, dict]:
    """(pipeline for the family's text-to-image kind, facts for the result's info), weights on the CPU."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    spec = specs.SPECS[entry.arch]
    # edit models: with their processor; Qwen-Image-Layered: its decomposition pipeline, its only one
    cls = getattr(diffusers, spec.pipeline("edit") or spec.pipeline("txt2img") or spec.pipeline("decompose"))
    facts: dict = {"variant": entry.info.get("variant", "")}
    try:
        if entry.format == DIFFUSERS:
            configcheck.check_folder(entry.path)
            parts = {**tokenizers(entry.arch, entry.path), **folder_tokenizers(entry.path)}
            pipe = cls.from_pretrained(str(entry.path), dtype=dtype, local_files_only=True, **parts)
        else:
            if entry.format == PICKLE:
                raise ProtocolError(
                    UNSUPPORTED,
                    f"'{entry.name}' is a pickle file; Flux and SD3 checkpoints load from .safetensors only",
                    field="model",
                )
            qwen.check_layered_config(entry)
            config = config_dir(entry)
            found = part_finder.find(entry, config, registry)
            if qwen.is_qwen(entry.arch):
                parts = {s: qwen.text_encoder(e.path, e.prefix, config / s, dtype) for s, e in found.encoders.items()}
                parts.update(vae=qwen.vae(found.vae.path, config / "vae", dtype), **qwen.preprocessors(entry, config))
            elif entry.arch in specs.QWEN3_FAMILIES:
                parts = _qwen3_parts(entry, found, config, dtype, registry)
            else:
                parts = {slot: _text_encoder(src, config / slot, dtype) for slot, src in found.encoders.items()}
                parts.update(vae=_vae(found.vae, config, dtype), **tokenizers(entry.arch))
            pipe = cls(
                transformer=_transformer(entry, config, dtype),
                scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(config), subfolder="scheduler"),
                **parts,
            )
            facts["parts"] = {**{slot: src.name for slot, src in found.encoders.items()}, "vae": found.vae.name}
    except ProtocolError:
        raise
    except Exception as err:  # loader errors vary; the user needs the model name and the reason
        raise ProtocolError(
            UNSUPPORTED,
            f"cannot load checkpoint '{entry.name}' "
            f"({specs.VARIANT_NAMES.get(entry.info.get('variant', ''), entry.arch)}): {err}",
            field="model",
        ) from err
    if entry.arch == specs.CHROMA:
        chroma.complete_config(pipe.transformer)
    check_no_meta(
        entry, pipe.transformer, pipe.vae, *(getattr(pipe, slot, None) for slot in specs.text_encoder_slots(entry.arch))
    )
    return pipe, facts
