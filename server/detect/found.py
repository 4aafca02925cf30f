"""What a detector finds: a box with its target and score."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Detection:
    """One found object: its box in the image's pixels and its score (0-1)."""

    target: str
    x: int
    y: int
    width: int
    height: int
    score: float
