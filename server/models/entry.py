"""One installed model as the registry knows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .identify import DIFFUSERS
from .kinds import CONFIG_SUFFIX
from .listing import entry_listing


@dataclass
class ModelEntry:
    """One installed model. ``format``: "safetensors", "pickle" or "diffusers" (a folder)."""

    name: str
    kind: str
    path: Path
    format: str
    arch: Optional[str] = None
    inpaint: bool = False
    info: dict = field(default_factory=dict)
    problem: Optional[str] = None  # why it cannot be used, if it cannot

    @property
    def config_dir(self) -> Optional[Path]:
        """The ``<name>.config/`` folder beside a single-file model, if there is one."""
        if self.format == DIFFUSERS:
            return None
        candidate = self.path.with_name(self.path.stem + CONFIG_SUFFIX)
        wanted = "model_index.json" if self.kind in ("checkpoint", "refiner") else "config.json"
        return candidate if (candidate / wanted).is_file() else None

    def listing(self) -> dict:
        """This model as the ``welcome`` and ``models`` messages list it."""
        return entry_listing(self)
