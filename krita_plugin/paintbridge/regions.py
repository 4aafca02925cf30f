"""The panel's regions, without widgets: prompts bound to layers (paint layers or groups, by uniqueId) of the active
document, kept in the document (``save_document_data(doc, "regions", ...)``: saved in the .kra) and read as masks
(the layer's opacity over the job's box) when a job runs; every change is a change for live mode. Owned by the
``Session`` (``session.regions``) with narrow parts instead of the session: the document door, "a job setting
changed" (live mode) and the panel's message line; the view's Regions section binds to it."""

from __future__ import annotations

from typing import Callable, List, Optional

from .model import Event
from .wire import client

KEY = client.regions.DOCUMENT_KEY


class Regions:
    """The region list of the active document; every change is written into that document at once."""

    def __init__(self, host, touched: Callable[[], None], show_message: Callable[..., None]) -> None:
        self.host, self._touched, self.show_message = host, touched, show_message
        self.doc = None
        self.list = client.regions.RegionList()
        self.selected = -1
        self.changed = Event()  # () the list, a prompt or the document changed

    def refresh(self) -> None:
        """Follow the active document: load its regions (when it changed), forget regions of deleted layers."""
        doc = self.host.active_document_or_none()
        if doc is not self.doc:
            self.doc = doc
            self.list = self._load(doc)
            self.selected = 0 if len(self.list) else -1
        if doc is not None:
            before = len(self.list)
            self.list.keep_layers([layer_id for _name, layer_id in self.host.paint_layers()])
            if len(self.list) != before:
                self._save()
        self.changed.emit()

    def _load(self, doc) -> "client.regions.RegionList":
        if doc is None:
            return client.regions.RegionList()
        try:
            found = client.regions.RegionList.from_bytes(self.host.load_document_data(doc, KEY))
        except client.docdata.DocumentDataError as err:
            self.show_message(f"The regions kept in this document cannot be read: {err}", error=True)
            return client.regions.RegionList()
        if found.damaged:
            self.show_message(
                "Some regions kept in this document are damaged and left out: " + "; ".join(found.damaged), error=True
            )
        return found

    def _save(self) -> None:
        """Write the list into the document; live mode hears of it like of a prompt edit."""
        if self.doc is not None:
            self.host.save_document_data(self.doc, KEY, self.list.to_bytes() if len(self.list) else None)
        self._touched()

    def _current(self):
        doc = self.host.active_document()
        if doc is not self.doc:
            self.refresh()
        return doc

    def bind_active(self, prompt: str = "") -> int:
        """Bind the active layer (its opacity is the region's mask) with ``prompt``; its index in the list."""
        doc = self._current()
        layer_id = self.host.active_layer_id(doc)
        names = {layer_id_: name for name, layer_id_ in self.host.paint_layers()}
        if not layer_id or layer_id not in names:
            raise client.errors.JobInputError("Select a paint layer or group to bind a region prompt to.")
        index = self.list.find(layer_id)
        if index is not None and not prompt:
            prompt = self.list.items[index].prompt
        self.selected = self.list.bind(layer_id, prompt, name=names[layer_id])
        self._save()
        self.changed.emit()
        return self.selected

    def set_prompt(self, index: int, prompt: str, negative_prompt: Optional[str] = None) -> None:
        changes = {"prompt": prompt}
        if negative_prompt is not None:
            changes["negative_prompt"] = negative_prompt
        self._edit(index, **changes)

    def set_strength(self, index: int, strength: float) -> None:
        self._edit(index, strength=strength)

    def _edit(self, index: int, **changes) -> None:
        self._current()
        if 0 <= index < len(self.list):
            self.list.update(index, **changes)
            self._save()

    def remove(self, index: int) -> None:
        self._current()
        if 0 <= index < len(self.list):
            self.list.remove(index)
            self.selected = min(index, len(self.list) - 1)
            self._save()
            self.changed.emit()

    def move(self, index: int, offset: int) -> None:
        self._current()
        if 0 <= index < len(self.list):
            self.selected = self.list.move(index, offset)
            self._save()
            self.changed.emit()

    def sources(self, doc) -> List["client.jobs.RegionSource"]:
        """The regions of ``doc`` for a job (layer ids; layers deleted since are left out)."""
        if doc is not self.doc:
            self.doc, self.list = doc, self._load(doc)
        alive = {layer_id for _name, layer_id in self.host.paint_layers()}
        return [
            client.jobs.RegionSource(b.layer, b.prompt, b.negative_prompt, b.strength)
            for b in self.list.items
            if b.layer in alive and b.prompt.strip()
        ]

    def labels(self) -> List[str]:
        """One line per region for the list: the layer's current name and the prompt."""
        names = {layer_id: name for name, layer_id in self.host.paint_layers()} if self.doc is not None else {}
        return [f"{names.get(b.layer, b.name) or '?'}: {b.prompt or '(no prompt)'}" for b in self.list.items]
