"""Which LoRAs a checkpoint of each family takes, by the family the LoRA is listed as (its ``arch``): the one table
the engines refuse a LoRA by, style jobs skip a style's LoRA by, and ``welcome.capabilities.families`` announces
(``lora_families``), so an editor lists only the LoRAs that run.

A checkpoint takes the LoRAs of its own family; a variant that keeps its base model's blocks takes the base's
(LoRAs are trained on the base and recognised by its block names: a Chroma LoRA is listed as Flux.1).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from protocol.errors import UNSUPPORTED, ProtocolError

from . import qwen
from .identify_dit import CHROMA, FLUX, FLUX_FILL, FLUX_KONTEXT
from .registry import ModelEntry, ModelRegistry, arch_name

BASE: Dict[str, str] = {
    FLUX_FILL: FLUX,
    FLUX_KONTEXT: FLUX,
    CHROMA: FLUX,  # Flux.1's block names, without the guidance and pooled-text layers Chroma replaced
    qwen.QWEN_EDIT: qwen.QWEN,
    qwen.QWEN_EDIT_PLUS: qwen.QWEN,
    qwen.QWEN_LAYERED: qwen.QWEN,
}
"""Checkpoint family → the family of the LoRAs it takes, where that is not its own."""


def lora_families(arch: Optional[str]) -> Tuple[str, ...]:
    """The LoRA families a checkpoint of ``arch`` takes (none for a checkpoint of no known family)."""
    return (BASE.get(arch, arch),) if arch else ()


def fits(lora: ModelEntry, checkpoint: ModelEntry) -> bool:
    """Whether ``checkpoint`` takes ``lora`` (by their families)."""
    return lora.arch in lora_families(checkpoint.arch)


def get_lora(registry: ModelRegistry, name: str, checkpoint: ModelEntry) -> ModelEntry:
    """The installed LoRA ``name`` for ``checkpoint``; one of a family the checkpoint does not take is refused
    (``unsupported``, naming both families and the one to pick)."""
    wanted = lora_families(checkpoint.arch)
    entry = registry.get(name, "lora", wanted[0] if wanted else None)
    if not fits(entry, checkpoint):
        takes = " or ".join(arch_name(a) for a in wanted)
        which = "" if wanted == (checkpoint.arch,) else f", which takes {takes or 'no'} LoRAs"
        raise ProtocolError(
            UNSUPPORTED,
            f"LoRA '{entry.name}' is made for {arch_name(entry.arch)} but checkpoint '{checkpoint.name}' is "
            f"{arch_name(checkpoint.arch)}{which}: remove the tag" + (f" or pick a {takes} LoRA" if takes else ""),
            field="prompt",
        )
    return entry
