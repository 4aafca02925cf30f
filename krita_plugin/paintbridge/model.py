"""Small value types the session, the document door and the view share (no Qt, no Krita)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List

from .wire import Box, client

Settings = client.settings.Settings


class DocumentError(ValueError):
    """The document cannot serve this job; the message tells the painter what to do."""


@dataclass
class ResultImage:
    """One result as it arrived: ``bgra8`` pixels placed at (x, y) in document coordinates (before any growth), and
    the layer name ``client.results`` gives it."""

    box: Box
    data: bytes  # or a read-only view of the result's shared file (``client.results.pixels_in``)
    seed: int
    name: str = ""


@dataclass
class ControlSpec:
    """A control layer as the panel lists it."""

    layer_id: str  # the node's uniqueId as a string
    type: str = "scribble"
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0


@dataclass
class RunningJob:
    """What the session remembers about a job in flight."""

    id: str
    kind: str  # "job", "live" or "preprocess"
    settings: Settings
    doc: object
    above_id: str
    box: Box
    control_type: str = ""
    started: float = field(default_factory=time.monotonic)
    sent: float = 0.0  # when the frame left the plugin (monotonic), 0 until then


class Event:
    """A list of callbacks: ``connect(fn)``, ``emit(*args)`` (the session's signals, without Qt)."""

    def __init__(self) -> None:
        self._slots: List[Callable] = []

    def connect(self, slot: Callable) -> None:
        self._slots.append(slot)

    def disconnect(self, slot: Callable) -> None:
        self._slots.remove(slot)

    def emit(self, *args) -> None:
        for slot in list(self._slots):
            slot(*args)
