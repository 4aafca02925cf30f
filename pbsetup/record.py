"""The install record (``<data>/paintbridge/install-record.json``): what install.py put where.

A second install merges into it (no duplicates); ``--uninstall`` removes exactly what it lists: the plugin folders
and files, the ``enable_paintbridge`` line it added to kritarc, the venv when install.py created it, and the folders
it created when they are empty (downloaded models are the painter's and stay).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

VERSION = 1


@dataclass
class Record:
    path: Path
    venv: Optional[str] = None
    venv_created: bool = False
    files: List[str] = field(default_factory=list)  # plugin folders and files: removed whole
    kritarcs: List[str] = field(default_factory=list)  # kritarc files where enable_paintbridge=true was set
    created_dirs: List[str] = field(default_factory=list)  # removed when empty

    @classmethod
    def load(cls, path: Path) -> "Record":
        """The record at ``path``, or an empty one when there is none."""
        path = Path(path)
        if not path.is_file():
            return cls(path)
        data: Dict = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            path,
            data.get("venv"),
            bool(data.get("venv_created")),
            list(data.get("files", [])),
            list(data.get("kritarcs", [])),
            list(data.get("created_dirs", [])),
        )

    def add(self, kind: str, value: Path) -> None:
        """Add ``value`` to the list ``kind`` ("files", "kritarcs", "created_dirs") unless it is there already."""
        items: List[str] = getattr(self, kind)
        text = str(value)
        if text not in items:
            items.append(text)

    def save(self) -> None:
        """Write the record; folders made for it are recorded too (so uninstall removes them when empty)."""
        folder = self.path.parent
        while not folder.exists() and folder.parent != folder:
            self.add("created_dirs", folder)
            folder = folder.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": VERSION,
            "venv": self.venv,
            "venv_created": self.venv_created,
            "files": self.files,
            "kritarcs": self.kritarcs,
            "created_dirs": self.created_dirs,
        }
        self.path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @property
    def empty(self) -> bool:
        return not (self.files or self.kritarcs or self.created_dirs or self.venv_created)


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree; nothing when it is gone already."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def remove_if_empty(path: Path) -> bool:
    """Remove folder ``path`` when it exists and is empty; True when it was removed."""
    try:
        path.rmdir()
        return True
    except OSError:
        return False


def disable_in_kritarc(kritarc: Path, name: str = "paintbridge") -> None:
    """Remove ``enable_<name>=...`` from ``kritarc``'s ``[python]`` group, keeping every other line; a group left
    empty goes too, and a file left empty is deleted (it was ours)."""
    if not kritarc.is_file():
        return
    key = f"enable_{name}"
    groups: List[List[str]] = [[]]
    for line in kritarc.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            groups.append([line])
        elif not (groups[-1] and groups[-1][0].strip() == "[python]" and stripped.split("=", 1)[0].strip() == key):
            groups[-1].append(line)
    kept = [g for g in groups if not (g and g[0].strip() == "[python]" and not any(x.strip() for x in g[1:]))]
    lines = [line for group in kept for line in group]
    while lines and not lines[-1].strip():
        lines.pop()
    if lines:
        kritarc.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        kritarc.unlink()
