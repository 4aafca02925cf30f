"""What is installed compared with the catalogue: each preset's missing files, and what a catalogue file on disk is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from .catalogue import Catalogue, CatalogueFile, Preset


@dataclass
class PresetStatus:
    preset: Preset
    missing: List[CatalogueFile]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def missing_bytes(self) -> int:
        return sum(f.expected_bytes for f in self.missing)


def installed_path(item: CatalogueFile, roots: Sequence[Path]) -> Optional[Path]:
    """Where ``item`` is installed in any of ``roots`` (the first), or None."""
    for root in roots:
        path = item.path_in(root)
        if path.exists():
            return path
    return None


def preset_status(catalogue: Catalogue, roots: Sequence[Path]) -> List[PresetStatus]:
    """Each preset with the files it still lacks in ``roots``."""
    return [
        PresetStatus(p, [f for f in p.files if installed_path(f, roots) is None]) for p in catalogue.presets.values()
    ]


def catalogue_entry_for(path: Path, catalogue: Catalogue, roots: Sequence[Path]) -> Optional[CatalogueFile]:
    """The catalogue file that ``path`` (a file, or a folder holding catalogue files) is, if any."""
    path = Path(path)
    for root in roots:
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            continue
        targets = catalogue.by_target()
        if rel in targets:
            return targets[rel]
        inside = [f for t, f in targets.items() if t.startswith(rel + "/")]
        if inside:
            return max(inside, key=lambda f: f.expected_bytes)
    return None


def disk_size(path: Path) -> int:
    """Bytes of a file, or of everything in a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
