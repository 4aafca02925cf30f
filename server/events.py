"""What the job queue says about a job, in order: ``Queued``, ``Started``, any number of ``Progress``, then one final
event: ``Finished``, ``Failed`` or ``Cancelled``. The queue hands each to the job's owner (a client session,
``sessions.ClientSession.on_event``), which turns it into its wire message through ``payloads``; the queue itself
knows no message class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

import numpy as np

from protocol.errors import ProtocolError

from .core import Layer

if TYPE_CHECKING:
    from .jobs import QueuedJob


@dataclass(frozen=True, eq=False)
class Event:
    """Something that happened to ``item``, a job of the queue."""

    item: "QueuedJob"

    @property
    def id(self) -> str:
        return self.item.id


@dataclass(frozen=True, eq=False)
class Queued(Event):
    position: int  # jobs that run before this one


@dataclass(frozen=True, eq=False)
class Started(Event):
    pass


@dataclass(frozen=True, eq=False)
class Progress(Event):
    step: int
    total: int
    preview: Optional[np.ndarray] = None  # a small RGB or RGBA picture, only when the job asked for previews


@dataclass(frozen=True, eq=False)
class Finished(Event):
    layers: List[Layer]
    seconds: float  # from start to the last layer
    text: str = ""  # what a job that answers in words says (mode caption)


@dataclass(frozen=True, eq=False)
class Failed(Event):
    error: ProtocolError  # its ``job_id`` is the job's


@dataclass(frozen=True, eq=False)
class Cancelled(Event):
    pass


FINAL = (Finished, Failed, Cancelled)
"""The events that end a job."""
