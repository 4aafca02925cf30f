"""The nested maps of ``params`` for the hires fix and the detailer."""

from __future__ import annotations

import dataclasses
from typing import Any, Tuple

from .errors import bad_field
from .schema import WireModel, sub_path, wire

HIRES_UPSCALERS = ("latent", "lanczos")  # or an upscale model's name (hires fix)
DETAIL_TARGETS = ("face", "hand")  # what the detailer looks for
MAX_PROMPT_LENGTH = 8192


@dataclasses.dataclass(frozen=True)
class Hires(WireModel):
    """Hires fix (two passes): generate at the model's native area, upscale, then sample again at the full size."""

    enabled: bool = wire(False, doc="off: one pass at the native area, scaled to the box")
    upscaler: str = wire("latent", max_length=256, doc='`"latent"`, `"lanczos"` or an upscale model\'s name')
    strength: float = wire(0.4, minimum=0.0, maximum=1.0, doc="denoise of the second pass")
    steps: int = wire(0, minimum=0, maximum=150, doc="steps of the second pass; 0 = the job's steps")
    scale: float = wire(0.0, minimum=0.0, maximum=8.0, doc="second pass size = scale x the first; 0 = the box's size")


@dataclasses.dataclass(frozen=True)
class Detail(WireModel):
    """Detailer: find faces (hands where a detector exists), inpaint each at the model's native area, blend back."""

    enabled: bool = wire(False, doc="run after the job (mode `detail` runs it on its own)")
    targets: Tuple[str, ...] = wire(("face",), max_items=len(DETAIL_TARGETS), doc="`face`, `hand`")
    prompt: str = wire("", max_length=MAX_PROMPT_LENGTH, doc='`""`: the job\'s prompt')
    negative_prompt: str = wire("", max_length=MAX_PROMPT_LENGTH, doc='`""`: the job\'s negative prompt')
    strength: float = wire(0.4, minimum=0.0, maximum=1.0, doc="denoise of each region")
    steps: int = wire(0, minimum=0, maximum=150, doc="0 = the job's steps")
    padding: int = wire(32, minimum=0, maximum=1024, doc="px of context around each detection")
    confidence: float = wire(0.5, minimum=0.0, maximum=1.0, doc="detections scored below are ignored")
    separate: bool = wire(False, doc="one result layer per detection")

    def check(self, path: str, limits: Any) -> None:
        for i, target in enumerate(self.targets):
            if target not in DETAIL_TARGETS:
                raise bad_field(
                    sub_path(path, f"targets[{i}]"), f"must be one of {', '.join(DETAIL_TARGETS)}, got {target!r}"
                )
        if self.enabled and not self.targets:
            raise bad_field(sub_path(path, "targets"), "is empty; name at least one of " + ", ".join(DETAIL_TARGETS))
