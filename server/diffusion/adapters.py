"""LoRAs (from ``<lora:name:weight>`` tags) and textual-inversion embeddings (triggered by name) on a loaded pipeline.

Both live in the shared modules of a checkpoint's pipeline, so every mode's pipeline (``from_pipe``) sees them.
LoRAs are loaded once and switched per job with adapter weights; embeddings stay loaded until the checkpoint changes.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Dict, List, Set

from protocol.errors import UNSUPPORTED, ProtocolError

from ..core import Job
from ..models import lorafit
from ..models.registry import ModelEntry, ModelRegistry
from .prompts import LoraTag, extract_loras
from .regions import texts as region_texts


def check_loras(job: Job, checkpoint: ModelEntry, registry: ModelRegistry) -> None:
    """Refuse, before ``checkpoint`` loads, a LoRA tag of ``job`` (in its prompts or its regions') that names no
    installed LoRA or one of a family ``checkpoint`` does not take: ``lorafit.get_lora``'s errors, by name."""
    _, tags = extract_loras(job.prompt)
    _, negative_tags = extract_loras(job.negative_prompt)
    _, tagged_regions = region_texts(job.regions, "", "")
    for tag in tags + negative_tags + tagged_regions:
        lorafit.get_lora(registry, tag.name, checkpoint)


def _stem(entry: ModelEntry) -> str:
    return entry.name.rsplit("/", 1)[-1]


class Adapters:
    """The LoRAs and embeddings applied to one loaded checkpoint."""

    def __init__(self, pipe, checkpoint: ModelEntry, registry: ModelRegistry) -> None:
        self.pipe = pipe
        self.checkpoint = checkpoint
        self.registry = registry
        self.loras: Dict[str, str] = {}  # lora path -> adapter name
        self.active: List[tuple] = []
        self.embeddings: Set[str] = set()

    # --- embeddings ---

    def triggered_embeddings(self, *prompts: str) -> List[ModelEntry]:
        """Installed embeddings of this checkpoint's architecture whose name appears as a word in a prompt."""
        found = []
        for entry in self.registry.entries("embedding"):
            if entry.problem or entry.arch != self.checkpoint.arch:
                continue
            word = re.compile(r"(?<![\w-])" + re.escape(_stem(entry)) + r"(?![\w-])")
            if any(word.search(p) for p in prompts):
                found.append(entry)
        return found

    def load_embeddings(self, *prompts: str) -> List[str]:
        """Load the embeddings the prompts trigger (once each); returns their names."""
        names = []
        for entry in self.triggered_embeddings(*prompts):
            token = _stem(entry)
            names.append(entry.name)
            if token in self.embeddings:
                continue
            try:
                self._load_embedding(entry, token)
            except ProtocolError:
                raise
            except Exception as err:
                raise ProtocolError(UNSUPPORTED, f"cannot load embedding '{entry.name}': {err}") from err
            self.embeddings.add(token)
        return names

    def _load_embedding(self, entry: ModelEntry, token: str) -> None:
        pipe = self.pipe
        if entry.arch == "sdxl":
            from safetensors.torch import load_file

            state = load_file(str(entry.path))
            pipe.load_textual_inversion(
                {"emb_params": state["clip_l"]}, token=token, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
            )
            pipe.load_textual_inversion(
                {"emb_params": state["clip_g"]},
                token=token,
                text_encoder=pipe.text_encoder_2,
                tokenizer=pipe.tokenizer_2,
            )
        else:
            pipe.load_textual_inversion(str(entry.path), token=token)

    # --- LoRAs ---

    def apply_loras(self, tags: List[LoraTag]) -> List[dict]:
        """Make exactly the tagged LoRAs active at their weights; returns what was applied."""
        wanted = []
        for tag in tags:
            wanted.append((lorafit.get_lora(self.registry, tag.name, self.checkpoint), tag.weight))
        key = [(str(e.path), w) for e, w in wanted]
        if key == self.active:
            return [{"name": e.name, "weight": w} for e, w in wanted]
        if wanted and importlib.util.find_spec("peft") is None:
            raise ProtocolError(
                UNSUPPORTED,
                "LoRAs need the 'peft' package, which is not installed in the server's "
                "environment: run install.py again (or pip install peft)",
                field="prompt",
            )
        for entry, _ in wanted:
            if str(entry.path) not in self.loras:
                name = f"lora{len(self.loras)}"
                try:
                    self.pipe.load_lora_weights(str(entry.path), adapter_name=name)
                except Exception as err:
                    raise ProtocolError(UNSUPPORTED, f"cannot load LoRA '{entry.name}': {err}", field="prompt") from err
                self.loras[str(entry.path)] = name
        if self.loras:
            if wanted:
                self.pipe.enable_lora()
                self.pipe.set_adapters(
                    [self.loras[str(e.path)] for e, _ in wanted], adapter_weights=[w for _, w in wanted]
                )
            else:
                self.pipe.disable_lora()
        self.active = key
        return [{"name": e.name, "weight": w} for e, w in wanted]
