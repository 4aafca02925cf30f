"""The panel's control layers, without widgets and without Krita: an ordered list of layers (by uniqueId) with a type,
a strength and a step range. Owned by the ``Session`` (``session.controls``; it reads like a list of ``ControlSpec``)
with narrow callables instead of the session: the active layer, "a job setting changed" (live mode) and "the first
control's type changed" (the models box names what that type needs)."""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Tuple

from .model import ControlSpec, Event
from .wire import client, protocol

FIELDS = ("layer_id", "type", "strength", "start", "end")


class Controls:
    """Add, change, remove and restore control layers; ``changed`` tells the view a row came or went."""

    def __init__(
        self,
        active_layer_id: Callable[[], Optional[str]],
        touched: Callable[[], None],
        first_type_changed: Callable[[], None],
    ) -> None:
        self._active_layer_id, self._touched, self._first_type_changed = active_layer_id, touched, first_type_changed
        self.items: List[ControlSpec] = []
        self.changed = Event()  # ()
        self.pending: Optional[int] = None  # the row a running "From image" job fills (None: a new row)

    def __iter__(self) -> Iterator[ControlSpec]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> ControlSpec:
        return self.items[index]

    def add(
        self,
        layer_id: Optional[str] = None,
        type: str = "scribble",
        strength: float = 1.0,
        start: float = 0.0,
        end: float = 1.0,
    ) -> ControlSpec:
        """Add a control layer (``layer_id``: a node's uniqueId string; default: the active layer)."""
        if type not in protocol.CONTROL_TYPES:
            raise client.errors.JobInputError(
                f"unknown control type {type!r}; choose one of {', '.join(protocol.CONTROL_TYPES)}"
            )
        if layer_id is None:
            layer_id = self._active_layer_id()
        spec = ControlSpec(layer_id or "", type, strength, start, end)
        self.items.append(spec)
        self.changed.emit()
        return spec

    def update(self, index: int, **fields) -> None:
        """Change fields of control ``index`` (layer_id, type, strength, start, end)."""
        spec = self.items[index]
        for name, value in fields.items():
            if name not in FIELDS:
                raise client.errors.JobInputError(f"a control layer has no field {name!r}")
            setattr(spec, name, value)
        self._touched()
        if "type" in fields and index == 0:
            self._first_type_changed()

    def remove(self, index: int) -> None:
        if 0 <= index < len(self.items):
            del self.items[index]
            self.changed.emit()

    def settings(self) -> Tuple["client.settings.ControlSetting", ...]:
        """The control layers as a job's settings keep them (``client.settings.ControlSetting``, by uniqueId)."""
        return tuple(
            client.settings.ControlSetting(c.layer_id, c.type, c.strength, c.start, c.end)
            for c in self.items
            if c.layer_id
        )

    def restore(self, kept) -> None:
        """Put kept control layers (``ControlSetting`` s, results history: "reuse settings") back."""
        self.items[:] = [ControlSpec(c.layer, c.type, c.strength, c.start, c.end) for c in kept]
        self.changed.emit()
        self._touched()

    def attach(self, layer_id: str, control_type: str) -> None:
        """A "From image" job's new layer: into the row it was asked for, else a new row."""
        index, self.pending = self.pending, None
        if index is None or not 0 <= index < len(self.items):
            self.items.append(ControlSpec(layer_id, control_type))
        else:
            self.items[index].layer_id, self.items[index].type = layer_id, control_type
        self.changed.emit()
