"""The curated catalogue (``server/catalogue.json``): starter sets of models per family, and what each file is."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "catalogue.json"


@dataclass(frozen=True)
class CatalogueFile:
    """One file of the catalogue: ``repo``/``file`` at ``revision`` (a commit where one is known) on the hub, saved as
    ``target`` (relative to the models folder). ``size`` and ``sha256`` are exact values or None (none published:
    ``unpinned`` says why); ``pinned_from`` names the public sources of the pin; ``size_estimate`` is for
    display and the disk-space check only."""

    id: str
    repo: str
    file: str
    target: str
    family: str
    kind: str
    what: str
    revision: str = "main"
    size: Optional[int] = None
    sha256: Optional[str] = None
    size_estimate: Optional[int] = None
    to_confirm: Tuple[str, ...] = ()
    licence: str = ""
    modes: Tuple[str, ...] = ()  # the modes that need this file
    controls: Tuple[str, ...] = ()  # the control types that need this file
    pinned_from: str = ""  # the public sources the revision and sha256 were taken from
    unpinned: str = ""  # why no sha256 (or no commit revision) could be found, when one is missing

    def serves(self, mode: str = "", control: str = "") -> bool:
        """True when ``mode`` (or the control type ``control``) needs this file; both empty: every file."""
        if not mode and not control:
            return True
        return (bool(mode) and mode in self.modes) or (bool(control) and control in self.controls)

    @property
    def expected_bytes(self) -> int:
        """The best known size: exact, else the estimate, else 0."""
        return self.size or self.size_estimate or 0

    def path_in(self, root: Path) -> Path:
        return Path(root) / self.target


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    files: Tuple[CatalogueFile, ...]

    @property
    def expected_bytes(self) -> int:
        return sum(f.expected_bytes for f in self.files)


class CatalogueError(ValueError):
    """A name that is neither a preset nor a file of the catalogue, or a malformed catalogue."""


def is_commit(revision: str) -> bool:
    """Whether ``revision`` names a commit (40 hex digits) rather than a branch that can move."""
    return bool(_COMMIT.match(revision))


def _check_pin(path: Path, item: CatalogueFile) -> None:
    """A file's pin is well-formed, and a file without a sha256 or a commit revision says why."""
    if item.sha256 is not None and not _SHA256.match(item.sha256):
        raise CatalogueError(f"{path}: file '{item.id}' has a malformed sha256 {item.sha256!r}")
    if (item.sha256 is None or not is_commit(item.revision)) and not item.unpinned.strip():
        raise CatalogueError(
            f"{path}: file '{item.id}' is not pinned to a commit and a sha256, and does not say why ('unpinned')"
        )


class Catalogue:
    """Files by id and presets by name, read from a catalogue JSON file."""

    def __init__(self, files: Dict[str, CatalogueFile], presets: Dict[str, Preset]) -> None:
        self.files = files
        self.presets = presets

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "Catalogue":
        """The catalogue at ``path``; by default ``$PAINTBRIDGE_CATALOGUE`` (a catalogue of one's own, e.g. a studio's
        mirror) or the shipped one."""
        path = Path(path or os.environ.get("PAINTBRIDGE_CATALOGUE") or CATALOGUE_PATH)
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        files: Dict[str, CatalogueFile] = {}
        for key, entry in data.get("files", {}).items():
            try:
                files[key] = CatalogueFile(
                    id=key,
                    repo=entry["repo"],
                    file=entry["file"],
                    target=entry["target"],
                    family=entry["family"],
                    kind=entry["kind"],
                    what=entry.get("what", ""),
                    revision=entry.get("revision", "main"),
                    size=entry.get("size"),
                    sha256=(entry.get("sha256") or None),
                    size_estimate=entry.get("size_estimate"),
                    to_confirm=tuple(entry.get("to_confirm", ())),
                    licence=entry.get("licence", ""),
                    modes=tuple(entry.get("modes", ())),
                    controls=tuple(entry.get("controls", ())),
                    pinned_from=entry.get("pinned_from", ""),
                    unpinned=entry.get("unpinned", ""),
                )
            except KeyError as err:
                raise CatalogueError(f"{path}: file '{key}' lacks the field {err}") from None
            _check_pin(path, files[key])
        presets: Dict[str, Preset] = {}
        for name, entry in data.get("presets", {}).items():
            unknown = [f for f in entry["files"] if f not in files]
            if unknown:
                raise CatalogueError(f"{path}: preset '{name}' names unknown files: {', '.join(unknown)}")
            presets[name] = Preset(name, entry.get("title", name), tuple(files[f] for f in entry["files"]))
        return cls(files, presets)

    def resolve(self, name: str) -> List[CatalogueFile]:
        """The files a preset name or a file id stands for."""
        if name in self.presets:
            return list(self.presets[name].files)
        if name in self.files:
            return [self.files[name]]
        raise CatalogueError(
            f"'{name}' is not in the catalogue; presets: {', '.join(self.presets)}; files: {', '.join(self.files)}"
        )

    def by_target(self) -> Dict[str, CatalogueFile]:
        """Catalogue files by their target path (``checkpoints/x.safetensors``)."""
        return {f.target: f for f in self.files.values()}
