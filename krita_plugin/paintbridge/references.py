"""The panel's reference images, without widgets and without Krita: an ordered list of reference layers,
each with a type (style, composition, content, face), a strength, a step range and optionally a region it belongs to
(the region layer's opacity masks it), kept in the session's settings (``settings.references``; layers and regions by
their uniqueId). Owned by the ``Session`` (``session.references``) with narrow parts instead of the session: the
settings binding (whose ``settings`` hold the list), the document door, the regions, "a job setting changed" (live
mode) and the panel's message line; the view binds its "Reference images" section to it."""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Tuple

from .model import Event
from .wire import client, protocol

FIELDS = ("layer", "type", "strength", "start", "end", "region")
WHOLE_IMAGE = "— whole image —"  # the region chooser's entry for "no region" (``ReferenceSetting.region`` "")


class References:
    """Add, change, reorder and remove the session's reference images; ``changed`` tells the view."""

    def __init__(self, binding, host, regions, touched: Callable[[], None], show_message: Callable[..., None]) -> None:
        self.binding, self.host, self.regions = binding, host, regions
        self._touched, self.show_message = touched, show_message
        self.changed = Event()  # () a reference was added, removed, moved or changed
        # layer ids of another session's documents mean nothing here: a session starts with no references
        binding.settings = binding.settings.replace(references=())
        regions.changed.connect(self._follow_regions)

    @property
    def items(self) -> tuple:
        return self.binding.settings.references

    def _set(self, items, emit: bool = True) -> None:
        self.binding.settings = self.binding.settings.replace(references=tuple(items))
        self._touched()
        if emit:  # a changed value keeps its row (the row itself changed it)
            self.changed.emit()

    def _say(self, err: Exception) -> None:
        self.show_message(str(err), error=True)

    def add(
        self,
        layer_id: Optional[str] = None,
        type: str = "content",
        strength: float = 1.0,
        start: float = 0.0,
        end: float = 1.0,
    ) -> Optional[client.settings.ReferenceSetting]:
        """Add a reference (``layer_id``: a node's uniqueId string; default: the active layer) at the end."""
        if type not in protocol.REFERENCE_TYPES:
            self._say(
                client.errors.JobInputError(
                    f"unknown reference type {type!r}; choose one of {', '.join(protocol.REFERENCE_TYPES)}"
                )
            )
            return None
        if layer_id is None:
            layer_id = self.host.active_layer_id(self.host.active_document_or_none()) or ""
        ref = client.settings.ReferenceSetting(layer_id, type, float(strength), float(start), float(end))
        self._set(self.items + (ref,))
        return ref

    def update(self, index: int, **fields) -> None:
        """Change fields of reference ``index`` (layer, type, strength, start, end, region: a bound region's layer id
        or "" for the whole image)."""
        unknown = [name for name in fields if name not in FIELDS]
        if unknown or not 0 <= index < len(self.items):
            self._say(
                client.errors.JobInputError(
                    f"a reference has no field {unknown[0]!r}" if unknown else f"there is no reference {index + 1}"
                )
            )
            return
        if fields.get("region") and fields["region"] not in self._region_ids():
            self._say(
                client.errors.JobInputError(
                    "That layer is not a bound region: bind it in the Regions section first, or choose the whole image"
                )
            )
            return
        items = list(self.items)
        items[index] = dataclasses.replace(items[index], **fields)
        self._set(items, emit=False)

    def remove(self, index: int) -> None:
        if 0 <= index < len(self.items):
            self._set(self.items[:index] + self.items[index + 1 :])

    def move(self, index: int, delta: int) -> None:
        """Move reference ``index`` up (-1) or down (+1) in the list."""
        target = index + delta
        if 0 <= index < len(self.items) and 0 <= target < len(self.items):
            items = list(self.items)
            items[index], items[target] = items[target], items[index]
            self._set(items)

    # --- the region a reference belongs to ----------------------------------------------------------------------------
    def region_choices(self) -> List[Tuple[str, str]]:
        """(label, region id) for the region chooser: the whole image (""), then each bound region by its layer's
        current name."""
        names = {layer_id: name for name, layer_id in self.host.paint_layers()}
        return [(WHOLE_IMAGE, "")] + [(names.get(b.layer, b.name) or "?", b.layer) for b in self.regions.list.items]

    def _region_ids(self) -> set:
        return {b.layer for b in self.regions.list.items}

    def _follow_regions(self) -> None:
        """The regions changed: a reference whose region is no longer bound (removed, its layer deleted, another
        document) falls back to the whole image."""
        alive = self._region_ids()
        if any(ref.region and ref.region not in alive for ref in self.items):
            self._set(ref if ref.region in alive else dataclasses.replace(ref, region="") for ref in self.items)
