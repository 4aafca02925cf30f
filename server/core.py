"""The bottom layer of the server: what every engine sees and returns, and the interface every engine has.

A decoded ``Job`` (typed parameters, numpy pixels), a ``JobContext`` for progress and cancellation, result ``Layer``s,
and the ``Engine`` interface. Engines report a job they cannot do with ``protocol.errors.ProtocolError`` (the one error
type: code, message, field); ``JobCancelled`` ends a cancelled job. Nothing here imports other server modules.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field, replace
from typing import Callable, List, Mapping, Optional, Sequence, TypeVar

import numpy as np

from protocol.errors import UNSUPPORTED, ProtocolError
from protocol.messages import Extend, Params

__all__ = [
    "Control",
    "Engine",
    "Extend",
    "Job",
    "JobCancelled",
    "JobContext",
    "Layer",
    "Params",
    "ProtocolError",
    "Reference",
    "Region",
]

T = TypeVar("T")
# How often a wait on uninterruptible work looks at the cancel flag.
CANCEL_POLL_SECONDS = 0.02


class JobCancelled(Exception):
    """Raised inside an engine (by ``JobContext.check``) when its job was cancelled."""


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


# reference images
@dataclass
class Reference:
    """A reference image: ``image`` H x W x 3 uint8 RGB (any size), ``mask`` H x W uint8 at the job's size or None."""

    image: np.ndarray
    type: str = "content"
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    mask: Optional[np.ndarray] = None
    model: str = ""


# regions
@dataclass
class Region:
    """An area of the job with its own prompt: ``mask`` is H x W uint8 at the job's context size (255 = the region)."""

    prompt: str
    mask: np.ndarray
    negative_prompt: str = ""
    strength: float = 1.0


@dataclass
class Job:
    """A validated job with its pixels decoded.

    ``image`` is H x W x 4 uint8 RGBA (None only for ``generate`` without an image, then ``params.width``/``height``
    hold the size); ``mask`` is H x W uint8, 255 = change, soft values kept, None = the whole image. ``x``/``y`` place
    the image in the client's document. ``image_bgra``: ``image`` still holds the client's ``bgra8`` order (B, G, R,
    A), for an engine whose work does not depend on the channel order (``Router.run`` gives every other one RGBA).
    """

    id: str
    mode: str
    model: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    image: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    params: Params = field(default_factory=Params)
    controls: List[Control] = field(default_factory=list)
    x: int = 0
    y: int = 0
    previews: bool = False
    # reference images
    references: List[Reference] = field(default_factory=list)
    # regions
    regions: List[Region] = field(default_factory=list)
    style: str = ""  # a style by name, applied by the router before the engine runs
    live: bool = False  # a live frame (the style's live settings; engines may decode faster)
    image_bgra: bool = False

    @property
    def width(self) -> int:
        return self.image.shape[1] if self.image is not None else self.params.width

    @property
    def height(self) -> int:
        return self.image.shape[0] if self.image is not None else self.params.height

    def without_pixels(self) -> "Job":
        """This job without its pixel arrays (image, mask, controls, references, regions): what is kept of a job once
        its engine is done with it."""
        return replace(self, image=None, mask=None, controls=[], references=[], regions=[])


@dataclass
class Layer:
    """One result layer: ``rgba`` is H x W x 4 uint8, placed at (x, y) in the client's document."""

    name: str
    rgba: np.ndarray
    x: int
    y: int
    seed: int = -1
    info: dict = field(default_factory=dict)
    group: Optional[str] = None  # the layer group it belongs in (a decomposition's layers, bottom first)
    bgra: bool = False  # ``rgba`` holds B, G, R, A (made from a job's ``bgra8`` image without swapping it)


ProgressFn = Callable[[int, int, Optional[np.ndarray]], None]


class JobContext:
    """Handed to an engine with its job: report progress, and check for cancellation between steps."""

    def __init__(self, report: Optional[ProgressFn] = None) -> None:
        self._report = report
        self.cancel_event = threading.Event()
        self.text: Optional[str] = None  # what a job that answers in words (mode caption) says

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

    def interruptible(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` for a call that cannot check for cancellation itself (one long OpenCV call).

        It runs in a helper thread while this one watches the cancel flag: a cancel raises JobCancelled at once, and the
        abandoned call finishes in the background (its result is dropped). ``fn`` must not change shared state
        (a lock-protected cache is fine).
        """
        self.check()
        done = threading.Event()
        lock = threading.Lock()
        box: dict = {"waiting": True}

        def call() -> None:
            try:
                outcome = ("value", fn(*args, **kwargs))
            except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
                outcome = ("error", err)
            with lock:
                if box["waiting"]:
                    box[outcome[0]] = outcome[1]
            del outcome
            done.set()

        threading.Thread(target=call, name="paintbridge-interruptible", daemon=True).start()
        try:
            while not done.wait(CANCEL_POLL_SECONDS):
                self.check()
        except BaseException:
            # Abandoned: what the call ends with is dropped as soon as it ends. (Kept here, an error would hold its
            # frames, and the arrays they use, in a reference cycle until the garbage collector runs.)
            with lock:
                box["waiting"] = False
            raise
        error = box.pop("error", None)
        if error is not None:
            try:
                raise error
            finally:
                del error  # (no cycle through this frame either)
        return box.pop("value")


class Engine(abc.ABC):
    """An engine runs jobs of some modes; the router picks the engine for each job."""

    #: The engine's name (the model name of a built-in engine, ``diffusers`` for the diffusers engine).
    name: str = ""
    #: The job modes this engine does.
    modes: Sequence[str] = ()
    #: Whether the engine can use a job's control layers (ControlNets); the router refuses controls otherwise.
    uses_controls: bool = False
    #: The model families (archs) whose jobs may carry reference images; the router refuses them otherwise.
    reference_families: Sequence[str] = ()
    #: regions: the model families whose checkpoints this engine runs with regions (none: refused).
    region_families: Sequence[str] = ()
    #: The model families whose jobs this engine runs at each speed level other than "quality" (level → families).
    speed_families: Mapping[str, Sequence[str]] = {}

    def models(self) -> List[dict]:
        """Model listing entries (name, kind, arch, ...) this engine adds to the server's listing."""
        return []

    @abc.abstractmethod
    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        """Run the job; raise ProtocolError for a job it cannot do, JobCancelled when cancelled."""

    def refuse_mode(self, job: Job, hint: str = "") -> ProtocolError:
        """The ``unsupported`` error for a job of a mode this engine does not do."""
        return ProtocolError(
            UNSUPPORTED,
            f"the {self.name} engine cannot do '{job.mode}': it does "
            f"{', '.join(self.modes)}{'; ' + hint if hint else ''}",
            field="mode",
        )

    def refuse_regions(self, job: Job, family: str = "", model: str = "", takes: Sequence[str] = ()) -> ProtocolError:
        """regions: the ``unsupported`` error for a job with regions on a model that cannot take them; ``takes``
        names the families that do (else ``welcome.capabilities.regions`` is pointed at)."""
        what = f"checkpoint '{model}' ({family})" if model else f"the {self.name} engine"
        where = f"{', '.join(takes[:-1])} and {takes[-1]}" if len(takes) > 1 else "".join(takes)
        return ProtocolError(
            UNSUPPORTED,
            f"regions cannot be used with {what}: they work on "
            f"{where + ' checkpoints' if where else 'the families welcome.capabilities.regions lists'} "
            "(send the job without regions, or choose such a model)",
            field="regions",
        )

    def refuse_controls(self, job: Job) -> ProtocolError:
        """The ``unsupported`` error for a job with control layers on an engine that cannot use them; it names the
        first control's ``model`` when one names a ControlNet, else ``controls``."""
        named = [i for i, c in enumerate(job.controls) if c.model]
        field = f"controls[{named[0]}].model" if named else "controls"
        what = f"ControlNet '{job.controls[named[0]].model}'" if named else "control layers"
        return ProtocolError(
            UNSUPPORTED,
            f"the {self.name} engine cannot use {what} (mode '{job.mode}'): send the job "
            "without control layers, or choose a diffusion checkpoint as the model for "
            "generate, img2img, inpaint and outpaint",
            field=field,
        )

    def refuse_speed(self, job: Job, family: str = "") -> ProtocolError:
        """The ``unsupported`` error for a speed level this engine (or this family) does not offer."""
        what = f"{family} models" if family else f"the {self.name} engine"
        takes = ", ".join(self.speed_families.get(job.params.speed, ())) or "none"
        return ProtocolError(
            UNSUPPORTED,
            f"speed level '{job.params.speed}' is not offered for {what}: send the job "
            f"with speed 'quality' (families that take '{job.params.speed}': {takes})",
            field="params.speed",
        )

    def refuse_references(self, job: Job, family: str = "") -> ProtocolError:
        """The ``unsupported`` error for a job with reference images this engine (or this family) cannot use."""
        what = f"{family} models" if family else f"the {self.name} engine"
        takes = ", ".join(self.reference_families) or "none"
        return ProtocolError(
            UNSUPPORTED,
            f"reference images are not supported for {what} (mode '{job.mode}'): send "
            f"the job without references, or choose a checkpoint of a family that takes them "
            f"(this server: {takes})",
            field="references",
        )
