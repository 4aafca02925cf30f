"""The Qwen parts of Flux.2 Klein and Z-Image: the Qwen3 text encoder from a file with transformers names, and the
Qwen tokenizer (not shipped: beside the checkpoint, or where the catalogue's sets put it)."""

from __future__ import annotations

from pathlib import Path

from protocol.errors import MODEL_NOT_FOUND, ProtocolError

from ..models.configcheck import check_folder
from ..models.loading import empty_transformers_model
from ..models.registry import ModelEntry, ModelRegistry, arch_name
from ..models.tensors import read_tensors

PRESETS = {"flux2-klein": "flux2-klein-4b", "z-image": "z-image-turbo"}  # the catalogue set with the tokenizer

TOKENIZER_FOLDER = ("tokenizers", "qwen")  # under a models folder: where the catalogue's Qwen tokenizer lands


def tokenizer(entry: ModelEntry, config: Path, registry: ModelRegistry):
    """The Qwen tokenizer of a single-file Flux.2 Klein or Z-Image: ``tokenizer/`` in its config folder
    (``<name>.config/``), else ``tokenizers/qwen/`` in a models folder (the family's ``paintbridge models pull`` set
    puts it there), else ``model_not_found`` naming where to put it (it is not shipped)."""
    from transformers import AutoTokenizer

    places = [config / "tokenizer"] + [d.joinpath(*TOKENIZER_FOLDER) for d in registry.dirs]
    for folder in places:
        if (folder / "tokenizer.json").is_file():
            check_folder(folder)
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    raise ProtocolError(
        MODEL_NOT_FOUND,
        f"checkpoint '{entry.name}' ({arch_name(entry.arch)}) needs the Qwen tokenizer, which is not installed: run "
        f"'paintbridge models pull {PRESETS.get(entry.arch, 'flux2-klein-4b')}', or copy tokenizer.json and tokenizer_config.json of the Hugging "
        f"Face repository Qwen/Qwen3-4B to {' or '.join(str(p) for p in places[1:]) or 'tokenizers/qwen/'}",
        field="model",
    )


def text_encoder(path: Path, prefix: str, config: Path, dtype):
    """The Qwen3 text encoder from a file with transformers names (``model.`` stripped or not); only its hidden states
    are read, so a missing output head (tied to the embeddings in Qwen3-4B) is the embedding matrix."""
    model = empty_transformers_model(config)
    wanted = set(model.state_dict())
    state = {"model." + k: v for k, v in read_tensors(path, dtype, prefix).items()}
    state = {k[len("model.") :] if k[len("model.") :] in wanted else k: v for k, v in state.items()}
    if "lm_head.weight" in wanted and "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing = sorted(wanted - set(state))
    if missing:
        raise ValueError(f"the Qwen3 text encoder file lacks {len(missing)} tensors, e.g. {missing[0]}")
    model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=True, assign=True)
    return model.to(dtype).eval()
