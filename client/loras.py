"""LoRAs picked from the server's list travel as ``<lora:name:w>`` tags after the prompt (the form the server reads);
a tag typed into the prompt keeps working and wins over a pick of the same LoRA."""

from __future__ import annotations

import re
from typing import Sequence, Tuple

MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0  # what the editors offer
_TAG_NAME = re.compile(r"<lora:([^:>]+)", re.IGNORECASE)
BAD_NAME = re.compile(r"[:<>]")  # characters a tag cannot carry


def tagged(prompt: str, picks: Sequence[Tuple[str, float]]) -> str:
    """``prompt`` followed by a ``<lora:name:w>`` tag per pick (weight 0: left out) that the prompt does not already
    name; ValueError for a name a tag cannot carry."""
    typed = {name.strip().lower() for name in _TAG_NAME.findall(prompt)}
    tags = []
    for name, weight in picks:
        name = name.strip()
        if BAD_NAME.search(name):
            raise ValueError(f"LoRA name {name!r} cannot travel in a prompt tag (it holds ':', '<' or '>')")
        if name and weight and name.lower() not in typed:
            tags.append(f"<lora:{name}:{weight:g}>")
            typed.add(name.lower())
    return " ".join([prompt.strip(), *tags]).strip() if tags else prompt
