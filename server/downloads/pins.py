"""Trust-on-first-use digests for catalogue files that have no published pin.

Most catalogue files carry the sha256 of their content (and the commit they are fetched at), found in public
sources; for the few where none could be found the catalogue says why, and the sha256 of the first download is
recorded here (``<models>/.paintbridge-pins.json``, a hidden file the registry never lists). Every later download
of that file into the same models folder must match it, so an upstream file that changes after the first download
is refused like a file that differs from its catalogue pin.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

from .catalogue import CatalogueFile

PINS_FILE = ".paintbridge-pins.json"


def _path(root: Path) -> Path:
    return Path(root) / PINS_FILE


def _load(root: Path) -> dict:
    try:
        data = json.loads(_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded(root: Path, item: CatalogueFile) -> Optional[dict]:
    """The record of ``item``'s first download into ``root`` ({"sha256", "size", "recorded"}), or None."""
    entry = _load(root).get(f"{item.repo}/{item.file}")
    if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
        return entry
    return None


def record(root: Path, item: CatalogueFile, sha256: str, size: int) -> None:
    """Remember the digest of ``item``'s first download (written atomically beside the models)."""
    data = _load(root)
    data[f"{item.repo}/{item.file}"] = {
        "sha256": sha256,
        "size": size,
        "revision": item.revision,
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    target = _path(root)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)
