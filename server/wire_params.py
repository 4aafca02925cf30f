"""TEMPORARY stand-in for ``protocol.Params`` / ``protocol.Extend`` until the typed protocol lands (branch ``proto``).

Same attribute names and defaults as the wire ``params`` map; ``from_wire`` takes a map validated by
``protocol.messages.parse_client_message``. Deleted when ``protocol.Params`` exists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Mapping, Optional


@dataclass(frozen=True)
class Extend:
    """How far outpaint extends the canvas on each side, in px."""

    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0


@dataclass(frozen=True)
class Params:
    """A job's parameters, one attribute per wire field of ``params``."""

    steps: int = 20
    strength: Optional[float] = None
    cfg: Optional[float] = None
    sampler: str = ""
    seed: int = -1
    batch: int = 1
    grow: int = -1
    feather: int = -1
    fill: str = "telea"
    scale: float = 2.0
    upscaler: str = ""
    refine: float = 0.0
    tile: int = 0
    extend: Extend = field(default_factory=Extend)
    width: int = 0
    height: int = 0
    preprocessor: str = ""
    low_threshold: int = 100
    high_threshold: int = 200

    @classmethod
    def from_wire(cls, value: Mapping) -> "Params":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in value.items() if k in known}
        if isinstance(kwargs.get("extend"), Mapping):
            kwargs["extend"] = Extend(**kwargs["extend"])
        return cls(**kwargs)

    def to_wire(self) -> dict:
        return asdict(self)
