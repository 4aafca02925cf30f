"""What every engine sees and returns: a decoded job, a context for progress and cancellation, result layers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Protocol

import numpy as np


class JobCancelled(Exception):
    """Raised inside an engine (by ``JobContext.check``) when its job was cancelled."""


class EngineError(Exception):
    """A job an engine cannot do; ``code`` is one of the protocol's error codes."""

    def __init__(self, code: str, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass
class Control:
    """A control layer at the job's context size: ``image`` is H x W x 3 uint8 RGB, or H x W x 4 RGBA when
    ``preprocess`` is set (the preprocessor turns it into the RGB control image)."""

    type: str
    image: np.ndarray
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: bool = False
    model: str = ""


@dataclass
class Job:
    """A validated job with its pixels decoded.

    ``image`` is H x W x 4 uint8 RGBA (None only for ``generate`` without an image, then ``width``/``height`` hold the
    size); ``mask`` is H x W uint8, 255 = change, soft values kept, None = the whole image. ``x``/``y`` place the image in
    the client's document. ``params`` is the protocol's params map with defaults filled in.
    """

    id: str
    mode: str
    model: str
    prompt: str
    negative_prompt: str
    image: Optional[np.ndarray]
    mask: Optional[np.ndarray]
    params: dict
    controls: List[Control] = field(default_factory=list)
    x: int = 0
    y: int = 0
    previews: bool = False

    @property
    def width(self) -> int:
        return self.image.shape[1] if self.image is not None else self.params["width"]

    @property
    def height(self) -> int:
        return self.image.shape[0] if self.image is not None else self.params["height"]


@dataclass
class Layer:
    """One result layer: ``rgba`` is H x W x 4 uint8, placed at (x, y) in the client's document."""

    name: str
    rgba: np.ndarray
    x: int
    y: int
    seed: int = -1
    info: dict = field(default_factory=dict)


ProgressFn = Callable[[int, int, Optional[np.ndarray]], None]


class JobContext:
    """Handed to an engine with its job: report progress, and check for cancellation between steps."""

    def __init__(self, report: Optional[ProgressFn] = None) -> None:
        self._report = report
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        self.cancel_event.set()

    def quiet(self) -> "JobContext":
        """A context that shares this one's cancellation but reports no progress (for sub-jobs such as tiles)."""
        child = JobContext(None)
        child.cancel_event = self.cancel_event
        return child

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        """Raise JobCancelled if the job was cancelled."""
        if self.cancel_event.is_set():
            raise JobCancelled()

    def progress(self, step: int, total: int, preview: Optional[np.ndarray] = None) -> None:
        """Report ``step`` of ``total`` (optionally with a small RGB/RGBA preview), then check for cancellation."""
        if self._report is not None:
            self._report(step, total, preview)
        self.check()


class Engine(Protocol):
    """An engine runs jobs of some modes for some models."""

    name: str

    def models(self) -> List[dict]:
        """Model listing entries (name, kind, arch, ...) this engine serves."""
        ...

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        """Run the job; raise EngineError for a job it cannot do, JobCancelled when cancelled."""
        ...
