"""The results history of a GIMP image (``client.history``), kept inside the image as the parasite
``paintbridge-history`` (saved with the .xcf) through ``host.load_document_data``/``save_document_data``.

Every run of a Paintbridge procedure records its results here (also when they were undone later); the History
procedure lists them, applies an entry again (its layers inserted where they were made, in one undo step; an upscale
into a new image as the first time), reuses an entry's settings (runs its mode's procedure with them) and deletes
entries. How many MB each image keeps is remembered in GIMP's profile (``LIMIT_FILE``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from client import history as ch
from client import history_search
from client.errors import JobInputError, PaintbridgeError
from client.settings import Settings

from . import host

LIMIT_FILE = "paintbridge-history.json"


def limit_mb(profile: Path) -> int:
    """The remembered limit in MB (``client.history.DEFAULT_LIMIT_MB`` when none is)."""
    try:
        value = json.loads((Path(profile) / LIMIT_FILE).read_text(encoding="utf-8")).get("history_limit_mb")
    except (OSError, ValueError, AttributeError):
        value = None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else ch.DEFAULT_LIMIT_MB


def set_limit_mb(profile: Path, mb: int) -> None:
    Path(profile).mkdir(parents=True, exist_ok=True)
    (Path(profile) / LIMIT_FILE).write_text(json.dumps({"history_limit_mb": int(mb)}), encoding="utf-8")


def of(image, profile: Optional[Path] = None) -> ch.DocumentHistory:
    """``image``'s history (empty, with ``problem`` set, when what the image holds cannot be read)."""
    mb = limit_mb(profile if profile is not None else host.profile_dir())
    return ch.DocumentHistory(
        lambda: host.load_document_data(image, ch.KEY),
        lambda data: host.save_document_data(image, ch.KEY, data),
        mb * 1_000_000,
    )


def record(image, s: Settings, layers: Sequence[Any], names: Sequence[str], params: Dict[str, Any]) -> str:
    """Keep a run's results in ``image``; returns a note for the painter when they could not be kept ("" if kept)."""
    if s.mode == "preprocess":
        return ""
    try:
        kept = of(image)
        entry = kept.record(s, layers, names, params)
    except (PaintbridgeError, ValueError) as err:
        return f"the results could not be kept in the image's history: {err}"
    if entry is None and kept.history.limit_bytes > 0:  # a limit of 0 keeps nothing, silently
        return f"these results are larger than the history keeps ({kept.history.limit_bytes // 1_000_000} MB)"
    return ""


def newest_first(kept: ch.DocumentHistory, search: str = "") -> List[ch.Entry]:
    """The entries that match ``search`` (``client.history_search``; all for ""), the newest first; a query that
    cannot be read is a ``JobInputError`` saying why."""
    try:
        return list(reversed(history_search.search(kept.entries, search)))
    except history_search.SearchError as err:
        raise JobInputError(f"The history search cannot be read: {err}") from None


def pick(kept: ch.DocumentHistory, index: int, search: str = "") -> ch.Entry:
    """Entry ``index`` counted from the newest (0) among those that match ``search``."""
    entries = newest_first(kept, search)
    if not entries:
        raise JobInputError(
            f"No result in this image's history matches '{search}'"
            if search.strip() and kept.entries
            else "This image has no Paintbridge results in its history"
        )
    if not 0 <= index < len(entries):
        found = f" that match '{search}'" if search.strip() else ""
        raise JobInputError(
            f"The history of this image has {len(entries)} entries{found} (0 = the newest); there is no entry {index}"
        )
    return entries[index]


def apply_again(image, drawable, entry: ch.Entry, layer: int = -1):
    """Insert the entry's layers (or only layer ``layer``; a layer of a decomposition brings its whole layer group,
    ``Entry.applied``) again, a group's layers into a new layer group as the first time; returns the new image of an
    upscale into a new image, else None."""
    if layer >= len(entry.layers):
        raise JobInputError(f"The entry has {len(entry.layers)} layer(s); there is no layer {layer}")
    chosen = entry.applied(layer)
    names = [stored.name for stored in chosen]
    if entry.mode == "upscale":  # as Krita does: the upscaled image opens as a new image
        return host.new_image_with(image, chosen, names)
    host.insert_results(image, drawable, chosen, names)
    return None


def listing(kept: ch.DocumentHistory, search: str = "") -> str:
    """The entries that match ``search`` (newest first) as JSON, for scripts."""
    return json.dumps(
        [
            {
                "index": i,
                "id": e.id,
                "time": e.time,
                "mode": e.mode,
                "model": e.model,
                "prompt": e.prompt,
                "seeds": e.seeds,
                "layers": [[l.name, l.x, l.y, l.width, l.height] for l in e.layers],
                "stored_bytes": e.stored_bytes,
                "settings": e.settings,
                "params": e.params,
            }
            for i, e in enumerate(newest_first(kept, search))
        ],
        default=str,
    )
