"""The panel's reference images (issue 15), without widgets and without Krita: an ordered list of reference layers,
each with a type (style, composition, content, face), a strength and a step range, kept in the session's settings
(``settings.references``; layers by their uniqueId). Owned by the ``Session`` (``session.references``); the view binds
its "Reference images" section to it."""

from __future__ import annotations

import dataclasses
from typing import Optional

from .model import Event
from .wire import client, protocol

FIELDS = ("layer", "type", "strength", "start", "end")


class References:
    """Add, change, reorder and remove the session's reference images; ``changed`` tells the view."""

    def __init__(self, session) -> None:
        self.session = session
        self.changed = Event()  # () a reference was added, removed, moved or changed
        # layer ids of another session's documents mean nothing here: a session starts with no references
        session.settings = session.settings.replace(references=())

    @property
    def items(self) -> tuple:
        return self.session.settings.references

    def _set(self, items, emit: bool = True) -> None:
        self.session.settings = self.session.settings.replace(references=tuple(items))
        self.session.live.settings_changed()
        if emit:  # a changed value keeps its row (the row itself changed it)
            self.changed.emit()

    def _say(self, err: Exception) -> None:
        self.session.show_message(str(err), error=True)

    def add(self, layer_id: Optional[str] = None, type: str = "content", strength: float = 1.0, start: float = 0.0,
            end: float = 1.0) -> Optional[client.settings.ReferenceSetting]:
        """Add a reference (``layer_id``: a node's uniqueId string; default: the active layer) at the end."""
        if type not in protocol.REFERENCE_TYPES:
            self._say(client.errors.JobInputError(f"unknown reference type {type!r}; choose one of "
                                                  f"{', '.join(protocol.REFERENCE_TYPES)}"))
            return None
        if layer_id is None:
            layer_id = self.session.host.active_layer_id(self.session.host.active_document_or_none()) or ""
        ref = client.settings.ReferenceSetting(layer_id, type, float(strength), float(start), float(end))
        self._set(self.items + (ref,))
        return ref

    def update(self, index: int, **fields) -> None:
        """Change fields of reference ``index`` (layer, type, strength, start, end)."""
        unknown = [name for name in fields if name not in FIELDS]
        if unknown or not 0 <= index < len(self.items):
            self._say(client.errors.JobInputError(f"a reference has no field {unknown[0]!r}" if unknown else
                                                  f"there is no reference {index + 1}"))
            return
        items = list(self.items)
        items[index] = dataclasses.replace(items[index], **fields)
        self._set(items, emit=False)

    def remove(self, index: int) -> None:
        if 0 <= index < len(self.items):
            self._set(self.items[:index] + self.items[index + 1:])

    def move(self, index: int, delta: int) -> None:
        """Move reference ``index`` up (-1) or down (+1) in the list."""
        target = index + delta
        if 0 <= index < len(self.items) and 0 <= target < len(self.items):
            items = list(self.items)
            items[index], items[target] = items[target], items[index]
            self._set(items)
