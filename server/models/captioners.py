"""Captioners (mode ``caption``): transformers image-to-text models kept as folders under ``captioners/``.

A captioner is a folder as published in the transformers format: ``config.json``, ``model.safetensors``, the image
processor's ``preprocessor_config.json`` and the tokenizer's files. Everything loads from the folder alone, never from
the hub. Supported: BLIP captioning models (``BlipForConditionalGeneration``, e.g.
Salesforce/blip-image-captioning-large).
"""

from __future__ import annotations

import json
from pathlib import Path

from .identify import Detected

BLIP = "blip"
ARCH_NAMES = {BLIP: "BLIP"}
CAPTIONING_CLASSES = {BLIP: "BlipForConditionalGeneration"}
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")  # as published; as transformers 5 saves
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # either one holds the vocabulary
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PULL_HINT = "paintbridge models pull captioner"


def folder_info(path: Path) -> Detected:
    """The architecture of the captioner folder ``path``; ``info["unsupported"]`` says why one cannot run here."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return Detected(None, info={"unsupported": f"its config.json cannot be read ({err})"})
    if not isinstance(config, dict):
        return Detected(None, info={"unsupported": "its config.json is not a JSON object"})
    model_type = str(config.get("model_type") or "")
    if model_type not in CAPTIONING_CLASSES:
        return Detected(
            model_type or None,
            info={
                "unsupported": f"a '{model_type or 'unknown'}' model; captioners of type "
                f"{', '.join(ARCH_NAMES.values())} are supported"
            },
        )
    wanted = CAPTIONING_CLASSES[model_type]
    classes = config.get("architectures") or [wanted]
    if wanted not in classes:
        return Detected(
            model_type,
            info={
                "unsupported": f"a {ARCH_NAMES[model_type]} model for {', '.join(map(str, classes))}, not for captioning "
                f"({wanted}); `{PULL_HINT}` fetches a captioning one"
            },
        )
    missing = (
        []
        if any((path / name).is_file() for name in WEIGHT_FILES)
        else ["model.safetensors (a pickled pytorch_model.bin is never read)"]
    )
    if not any((path / name).is_file() for name in PROCESSOR_FILES):
        missing.append(PROCESSOR_FILES[0])
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        return Detected(
            model_type,
            info={
                "unsupported": f"the folder lacks {', '.join(missing)} (the image processor "
                "and tokenizer files published with the model)"
            },
        )
    return Detected(model_type)
