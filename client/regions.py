"""Regions for both editors: prompts bound to layers, kept with the document, read as masks for a job.

A ``RegionBinding`` says "layer L carries prompt P": the layer's opacity over the job's box is the region's mask (in
Krita a paint layer or group, in GIMP a layer — its alpha — or a channel — its value). ``RegionList`` is the ordered
list of one document; ``to_bytes``/``from_bytes`` is what the adapters keep in the document under ``DOCUMENT_KEY``
(``client.docdata`` wraps it). ``opacity`` turns pixels an adapter read into the gray8 mask a job carries.
The limits are the protocol's.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, List, Optional, Sequence

from .docdata import DocumentDataError
from .errors import JobInputError
from .wire import protocol

DOCUMENT_KEY = "regions"
FORMAT = 1
MAX_REGIONS = protocol.MAX_REGIONS
MAX_PROMPT = protocol.messages.MAX_PROMPT_LENGTH


@dataclass(frozen=True)
class RegionBinding:
    """A prompt bound to a layer (``layer``: the editor's stable id of it — Krita's uniqueId, GIMP's tattoo)."""

    layer: str
    prompt: str = ""
    negative_prompt: str = ""
    strength: float = 1.0
    name: str = ""  # the layer's name when bound, for lists (the id is what counts)

    def checked(self) -> "RegionBinding":
        """This binding with a usable strength (0–1) and prompts cut to the protocol's length."""
        strength = min(1.0, max(0.0, float(self.strength)))
        return replace(
            self, prompt=self.prompt[:MAX_PROMPT], negative_prompt=self.negative_prompt[:MAX_PROMPT], strength=strength
        )


class RegionList:
    """The regions of one document, in order (the first is listed on top); at most ``MAX_REGIONS``."""

    def __init__(self, bindings: Sequence[RegionBinding] = ()) -> None:
        self.items: List[RegionBinding] = [b.checked() for b in bindings][:MAX_REGIONS]
        self.damaged: List[str] = []  # why each stored region that could not be read was left out (``from_bytes``)

    def __len__(self) -> int:
        return len(self.items)

    def find(self, layer: str) -> Optional[int]:
        return next((i for i, b in enumerate(self.items) if b.layer == layer), None)

    def bind(
        self, layer: str, prompt: str = "", name: str = "", negative_prompt: str = "", strength: float = 1.0
    ) -> int:
        """Bind ``layer`` (a layer already bound keeps its place and gets the new prompt); its index."""
        index = self.find(layer)
        binding = RegionBinding(layer, prompt, negative_prompt, strength, name).checked()
        if index is not None:
            self.items[index] = binding
            return index
        if len(self.items) >= MAX_REGIONS:
            raise JobInputError(f"A job takes at most {MAX_REGIONS} regions: remove one before adding another")
        self.items.append(binding)
        return len(self.items) - 1

    def update(self, index: int, **changes: Any) -> None:
        self.items[index] = replace(self.items[index], **changes).checked()

    def remove(self, index: int) -> None:
        del self.items[index]

    def move(self, index: int, offset: int) -> int:
        """Move a region up (-1) or down (+1); its new index."""
        target = min(len(self.items) - 1, max(0, index + offset))
        self.items.insert(target, self.items.pop(index))
        return target

    def keep_layers(self, existing: Sequence[str]) -> None:
        """Forget regions whose layer no longer exists."""
        alive = set(existing)
        self.items = [b for b in self.items if b.layer in alive]

    def to_bytes(self) -> bytes:
        """The stored form (UTF-8 JSON with a format number)."""
        return json.dumps({"format": FORMAT, "regions": [asdict(b) for b in self.items]}).encode()

    @classmethod
    def from_bytes(cls, data: Optional[bytes]) -> "RegionList":
        """The list stored in a document (None or b"": an empty list). ``DocumentDataError`` naming the fault when the
        stored list cannot be read at all; a damaged region is left out (``damaged`` says which and why)."""
        if not data:
            return cls()
        what = "The region prompts kept in this document"
        try:
            raw = json.loads(bytes(data).decode())
        except (ValueError, RecursionError) as err:
            raise DocumentDataError(f"{what} are damaged (not readable JSON: {type(err).__name__})") from None
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("format"), int)
            or not isinstance(raw.get("regions"), list)
        ):
            raise DocumentDataError(f"{what} are not in a format Paintbridge writes")
        if raw["format"] > FORMAT:
            raise DocumentDataError(
                f"{what} have format {raw['format']}, newer than this plugin reads ({FORMAT}): "
                "update Paintbridge to use them"
            )
        out, damaged = [], []
        for index, r in enumerate(raw["regions"]):
            try:
                out.append(
                    RegionBinding(
                        str(r["layer"]),
                        str(r.get("prompt", "")),
                        str(r.get("negative_prompt", "")),
                        _strength(r.get("strength", 1.0)),
                        str(r.get("name", "")),
                    )
                )
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                damaged.append(f"region {index + 1} is damaged ({type(err).__name__}: {err})")
        if len(out) > MAX_REGIONS:
            damaged.append(f"{len(out) - MAX_REGIONS} region(s) beyond the {MAX_REGIONS} a job takes")
        found = cls(out)
        found.damaged = damaged
        return found


def _strength(value: Any) -> float:
    """A stored strength: a finite number (``RegionBinding.checked`` brings it within 0-1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"strength {value!r} is not a number")
    return float(value)


def binding_to_bytes(binding: RegionBinding) -> bytes:
    """One region's stored form where the editor keeps it on the layer itself (GIMP: a parasite on the item)."""
    b = binding.checked()
    return json.dumps(
        {"format": FORMAT, "prompt": b.prompt, "negative_prompt": b.negative_prompt, "strength": b.strength}
    ).encode()


def binding_from_bytes(data: Optional[bytes], layer: str = "") -> Optional[RegionBinding]:
    """The region stored on a layer (None when it has none); ``DocumentDataError`` naming the layer and the fault
    when the stored region cannot be read."""
    if not data:
        return None
    what = f"The region prompt kept on layer {layer!r}" if layer else "A region prompt kept on a layer"
    try:
        raw = json.loads(bytes(data).decode())
    except (ValueError, RecursionError) as err:
        raise DocumentDataError(f"{what} is damaged (not readable JSON: {type(err).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DocumentDataError(f"{what} is not in a format this Paintbridge reads")
    try:
        return RegionBinding(
            layer, str(raw.get("prompt", "")), str(raw.get("negative_prompt", "")), _strength(raw.get("strength", 1.0))
        ).checked()
    except ValueError as err:
        raise DocumentDataError(f"{what} is damaged ({err})") from None


def opacity(pixels: bytes, fmt: str) -> bytes:
    """A layer's opacity as gray8: the alpha of ``rgba8``/``bgra8`` pixels (both keep it 4th), ``gray8`` as it is."""
    if fmt == "gray8":
        return bytes(pixels)
    if fmt not in ("rgba8", "bgra8"):
        raise JobInputError(f"cannot read a region's opacity from {fmt!r} pixels")
    return bytes(memoryview(pixels)[3::4])


__all__ = [
    "DOCUMENT_KEY",
    "MAX_REGIONS",
    "RegionBinding",
    "RegionList",
    "binding_from_bytes",
    "binding_to_bytes",
    "opacity",
]
