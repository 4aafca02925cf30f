"""The live loop's one scheduler, for both editors: latest wins, debounce only when frames are slow, cancel a stale
frame when waiting for it would cost more than it gives.

The adapter tells the scheduler what happened and asks it what to do, passing the time (``time.monotonic()``; tests pass
a fake clock). It detects changes itself, as cheaply as the host allows, and calls ``changed(signature, now)`` with
a hashable summary of everything a frame depends on (``signature(...)``; None = nothing to work on, e.g. no selection).

Rules:
- One frame in flight. While it runs, newer inputs wait as the one *pending* frame; a newer change replaces the
  pending one (latest wins: intermediate states are never sent).
- The running frame is cancelled when its inputs are stale (the pending inputs differ) and the model is slow: the
  measured frame time is at least ``slow`` seconds and more than ``fast`` seconds of it are still to go.
- Debounce adapts to the measured frame time (the median of the last few frames with a result): none while frames take
  at most ``fast`` seconds (or nothing is measured yet), else half the frame time, at most ``max_debounce``.
- Inputs that already produced an answer (a result or an error) are not sent again until they change or ``forget``.
"""

from __future__ import annotations

import statistics
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Hashable, Iterable, List, Optional

from .modes import LIVE_MODES
from .settings import Settings
from .wire import protocol

IDLE = "idle"  # nothing to do until the inputs change
WAIT = "wait"  # ask again at ``Action.at``
START = "start"  # start a frame for ``Action.signature``
CANCEL = "cancel"  # cancel the running frame ``Action.job_id``

RESULT = "result"  # a frame ended with a result (its time is measured)
FAILED = "failed"  # a frame ended with an error (answered: not sent again until the inputs change)
CANCELLED = "cancelled"  # a frame was cancelled or its connection lost (sent again if its inputs are still the latest)


@dataclass(frozen=True)
class Action:
    """What the adapter should do now."""

    kind: str
    signature: Optional[Hashable] = None
    job_id: Optional[str] = None
    at: Optional[float] = None  # WAIT: when to ask again


@dataclass
class _Frame:
    job_id: str
    signature: Hashable
    started_at: float
    cancel_sent: bool = False


class LiveScheduler:
    """Decides when live mode starts and cancels frames (no clock, no threads, no host of its own)."""

    def __init__(self, fast: float = 0.25, slow: float = 1.0, max_debounce: float = 0.6, history: int = 5) -> None:
        self.fast = fast
        self.slow = slow
        self.max_debounce = max_debounce
        self._times: Deque[float] = deque(maxlen=history)
        self._latest: Optional[Hashable] = None
        self._changed_at = 0.0
        self._answered: Optional[Hashable] = None
        self._running: Optional[_Frame] = None

    # --- what happened ------------------------------------------------------------------------------------------------
    def changed(self, signature: Optional[Hashable], now: float) -> None:
        """The inputs now have ``signature`` (None: nothing to work on). Repeating the same signature is harmless."""
        if signature != self._latest:
            self._latest, self._changed_at = signature, now

    def started(self, job_id: str, signature: Hashable, now: float) -> None:
        """A frame for ``signature`` was sent as ``job_id``."""
        self._running = _Frame(job_id, signature, now)

    def finished(self, job_id: str, now: float, outcome: str = RESULT) -> None:
        """Frame ``job_id`` ended with ``outcome``: RESULT, FAILED or CANCELLED."""
        if outcome not in (RESULT, FAILED, CANCELLED):
            raise ValueError(f"unknown outcome {outcome!r}; one of {RESULT}, {FAILED}, {CANCELLED}")
        frame = self._running
        if frame is None or frame.job_id != job_id:
            return
        self._running = None
        if outcome != CANCELLED:
            self._answered = frame.signature
        if outcome == RESULT:
            self._times.append(max(0.0, now - frame.started_at))

    def forget(self) -> None:
        """Start afresh (live mode switched on again, the document changed, or "run again" was asked)."""
        self._answered = None
        self._latest = None

    def rerun(self) -> None:
        """Send the current inputs again even though they were answered."""
        self._answered = None

    # --- what to do ---------------------------------------------------------------------------------------------------
    @property
    def frame_time(self) -> Optional[float]:
        """The median time of the last frames that ended with a result (None before the first)."""
        return statistics.median(self._times) if self._times else None

    @property
    def debounce(self) -> float:
        t = self.frame_time
        if t is None or t <= self.fast:
            return 0.0
        return min(self.max_debounce, t / 2)

    @property
    def running(self) -> Optional[str]:
        """The job id of the frame in flight."""
        return self._running.job_id if self._running is not None else None

    @property
    def latest(self) -> Optional[Hashable]:
        return self._latest

    def next_action(self, now: float) -> Action:
        """What to do at ``now``: START a frame, CANCEL the running one, WAIT until ``at``, or stay IDLE."""
        frame = self._running
        if frame is not None:
            stale = self._latest is not None and self._latest != frame.signature
            if stale and not frame.cancel_sent and self._worth_cancelling(frame, now):
                frame.cancel_sent = True
                return Action(CANCEL, job_id=frame.job_id)
            return Action(IDLE)  # the frame's end (``finished``) is the next event
        if self._latest is None or self._latest == self._answered:
            return Action(IDLE)
        due = self._changed_at + self.debounce
        if now < due:
            return Action(WAIT, at=due)
        return Action(START, signature=self._latest)

    def _worth_cancelling(self, frame: _Frame, now: float) -> bool:
        t = self.frame_time
        if t is None or t < self.slow:
            return False
        return t - (now - frame.started_at) > self.fast


def signature(parts: Iterable[object]) -> int:
    """A cheap, order-sensitive checksum of byte strings and small values (CRC-32 runs at C speed)."""
    crc = 0
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview)):
            crc = zlib.crc32(b"b%d:" % len(part), crc)
            crc = zlib.crc32(part, crc)
        else:
            crc = zlib.crc32(b"v" + repr(part).encode(), crc)
    return crc


def frame_signature(settings: Settings, inputs: Any) -> int:
    """The signature of one live frame: its settings and what ``jobs.capture`` read (``JobInputs``), the pixels of
    each control layer, reference image and region included."""
    parts: List[object] = [
        repr(sorted(settings.to_dict().items())),
        inputs.box,
        inputs.image or b"",
        inputs.mask or b"",
    ]
    for item in (*inputs.controls, *inputs.references, *inputs.regions):
        for spec in item.specs():
            value = getattr(item, spec.name)
            parts.append(value.data if isinstance(value, protocol.ImagePayload) else value)
    return signature(parts)


def live_settings(settings: Settings, seed: int) -> Settings:
    """The settings of a live frame: a live mode (inpaint unless img2img was chosen), one result, a fixed seed so
    frames differ only where the inputs did."""
    mode = settings.mode if settings.mode in LIVE_MODES else "inpaint"
    return settings.replace(mode=mode, batch=1, seed=seed)
