"""Live mode in Krita: change notifications in, frames out, scheduled by ``client.live.LiveScheduler`` (the one
scheduler both editors use: latest wins, debounce only for slow frames, stale slow frames cancelled).

The document door says *that* something may have changed (``host.watch_changes``: Krita's undo stack moved — a
stroke ended, a selection tool, a filter, an undo —, or the cheap document state changed: selection bounds, active
layer, size, layer visibility); no pixel is read to find out. Only then does the loop read the context box, once,
turn it into the scheduler's signature, and keep those inputs for the frame, so a frame costs one read and nothing
is read while nothing changes. Inputs equal to the last answered frame's send nothing.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Callable, List, Optional

from .model import DocumentError
from .wire import client

if TYPE_CHECKING:  # pragma: no cover
    from .jobs import Jobs

clive = client.live


class LiveLoop:
    """Live mode of one panel: ``switch(on)``, ``changed()`` from the watch, frames out through ``jobs.send``.

    It gets narrow parts, not the session: the document door (``host``), the jobs (the job in flight, ``capture``,
    ``send``, ``cancel``), the panel's settings and a frame's settings (callables), the message line and a timer."""

    def __init__(
        self,
        host,
        jobs: "Jobs",
        settings: Callable[[], "client.settings.Settings"],
        frame_settings: Callable[[], "client.settings.Settings"],
        show_message: Callable[..., None],
        schedule: Callable[[float, Callable[[], None]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.jobs = host, jobs
        self._settings, self._frame_settings, self._say = settings, frame_settings, show_message
        self.schedule = schedule
        self.clock = clock
        self.scheduler = clive.LiveScheduler()
        self.on = False
        self.seed = 0
        self.changes = 0  # change notifications acted on
        self.frames: List[dict] = []  # per frame sent: change, sent, ended times (monotonic) and the outcome
        self._inputs: Optional[tuple] = None  # (signature, doc, settings, inputs, changed_at) of the latest read
        self._watch = None
        self._waiting_until = 0.0
        self._reading = False  # reading lets Krita run events; a change meanwhile is read again afterwards
        self._again = False

    def switch(self, on: bool) -> None:
        if on == self.on:
            return
        self.on = on
        if on:
            seed = self._settings().seed
            self.seed = seed if seed >= 0 else random.randrange(0, 2**31)
            self.scheduler = clive.LiveScheduler()
            self._watch = self.host.watch_changes(self.changed, self._settings)
            self.changed()
        else:
            if self._watch is not None:
                self._watch.stop()
                self._watch = None
            self._inputs = None
            if self.jobs.job is not None and self.jobs.job.kind == "live":
                self.jobs.cancel()

    def settings_changed(self) -> None:
        """A job setting changed (prompt, strength, model, control layers, references, regions): worth a new frame."""
        if self.on:
            self.changed()

    def changed(self) -> None:
        """Something in the document or the settings may have changed (UI thread): read once, tell the scheduler."""
        if not self.on:
            return
        if self._reading:
            self._again = True
            return
        self._reading = True
        try:
            self._read_and_tell()
        finally:
            self._reading = False
        if self._again:
            self._again = False
            self.changed()

    def _read_and_tell(self) -> None:
        self.changes += 1
        now = self.clock()
        host = self.host
        doc = host.active_document_or_none()
        settings = clive.live_settings(self._frame_settings(), self.seed)
        if doc is None or host.mask_bounds(doc, settings) is None:
            self._inputs = None
            self.scheduler.changed(None, now)  # nothing to repaint until a selection appears
            return
        try:
            inputs = self.jobs.capture(doc, settings)
        except (DocumentError, client.errors.PaintbridgeError) as err:
            self._say(str(err), error=True)
            self.scheduler.changed(None, now)
            return
        sig = clive.frame_signature(settings, inputs)
        self._inputs = (sig, doc, settings, inputs, now)
        self.scheduler.changed(sig, now)
        self.step()

    def step(self) -> None:
        """Do what the scheduler says now: start a frame, cancel the stale one, or wait."""
        if not self.on:
            return
        now = self.clock()
        action = self.scheduler.next_action(now)
        jobs = self.jobs
        if action.kind == clive.CANCEL:
            if jobs.job is not None and jobs.job.id == action.job_id:
                jobs.cancel()
        elif action.kind == clive.WAIT:
            if action.at > self._waiting_until:  # one timer per deadline
                self._waiting_until = action.at
                self.schedule(action.at - now, self._wake)
        elif action.kind == clive.START and self._inputs is not None and self._inputs[0] == action.signature:
            if jobs.job is not None or not jobs.connected:
                return  # a panel job or no connection: the next event or (re)connection asks again
            sig, doc, settings, inputs, changed_at = self._inputs
            try:
                job_id = jobs.send(doc, settings, inputs, "live")
            except client.errors.PaintbridgeError as err:
                self._say(str(err), error=True)
                self.scheduler.changed(None, now)
                return
            self.scheduler.started(job_id, sig, now)
            self.frames.append({"id": job_id, "change": changed_at, "sent": 0.0, "ended": 0.0, "outcome": ""})

    def _wake(self) -> None:
        """A debounce timer fired: ask again; a timer that fired early (Qt's coarse timers may) arms a new one."""
        self._waiting_until = 0.0
        self.step()

    def _frame(self, job) -> Optional[dict]:
        return next((f for f in reversed(self.frames) if f["id"] == job.id), None)

    def frame_sent(self, job) -> None:
        frame = self._frame(job)
        if frame is not None:
            frame["sent"] = job.sent

    def frame_ended(self, job, outcome: str) -> None:
        """A job ended (any kind) with ``client.live`` RESULT, FAILED or CANCELLED: a live frame's end goes to the
        scheduler; then the next frame may start."""
        frame = self._frame(job) if job.kind == "live" else None
        if frame is not None:
            frame["ended"], frame["outcome"] = self.clock(), outcome
            self.scheduler.finished(job.id, self.clock(), outcome)
        self.step()
