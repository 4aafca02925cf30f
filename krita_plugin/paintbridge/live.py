"""Live mode without Qt and without Krita: when to send the next frame, and whether it is worth sending.

The document door tells the loop *that* something changed (``host.watch_changes``: Krita's undo stack moved — a
stroke ended, a selection tool or a filter ran —, or the cheap document state changed: selection bounds, active layer,
size); the loop never reads pixels to find out. Only when something changed does it read the context box (to build
the frame) and drops the frame if its inputs equal the last frame's (e.g. after its own preview layer was added).
One frame is in flight at a time: changes that arrive meanwhile make the next frame start as soon as it ends, and a
frame that runs long while the input changed again is cancelled (latest wins). The debounce follows the measured
frame time: none while frames are fast, some while they are slow.
"""

from __future__ import annotations

import random
import time
import zlib
from typing import Callable, Iterable, List, Optional

FAST_FRAME_S = 0.5  # frames quicker than this start without any debounce
MAX_DEBOUNCE_S = 0.6
STALE_FACTOR = 1.5  # a running frame is cancelled when the input changed and it ran this many average frames


def signature(parts: Iterable[object]) -> int:
    """A cheap, order-sensitive checksum of byte strings and small values (CRC-32 runs at C speed)."""
    crc = 0
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview)):
            crc = zlib.crc32(part, crc)
        else:
            crc = zlib.crc32(repr(part).encode(), crc)
    return crc


class LiveLoop:
    """Live mode of one session: ``switch(on)``, change notifications in, ``session.run(live=True)`` out."""

    def __init__(self, session, schedule: Callable[[float, Callable[[], None]], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.schedule = schedule
        self.clock = clock
        self.on = False
        self.seed = 0
        self.dirty = False
        self.changed_at = 0.0
        self.changes = 0  # change notifications received
        self.frames: List[dict] = []  # per frame sent: change, sent, ended times (monotonic) and the outcome
        self.skipped = 0  # frames read but not sent (inputs as before)
        self._last_sent: Optional[int] = None
        self._watch = None
        self._timer_due = 0.0

    # --- switching ----------------------------------------------------------------------------------------------------
    def switch(self, on: bool) -> None:
        if on == self.on:
            return
        self.on = on
        session = self.session
        if on:
            s = session.settings
            self.seed = s.seed if not s.random_seed else random.randrange(0, 2**31)
            self._last_sent = None
            self._watch = session.host.watch_changes(self.changed, lambda: session.settings)
            self.changed()
        else:
            if self._watch is not None:
                self._watch.stop()
                self._watch = None
            self.dirty = False
            if session.job is not None and session.job.kind == "live":
                session.cancel()

    def settings_changed(self) -> None:
        """A job setting changed (prompt, strength, model, control layers): worth a new frame."""
        if self.on:
            self.changed()

    # --- the loop -----------------------------------------------------------------------------------------------------
    def changed(self) -> None:
        """Something in the document or the settings changed (called by the watch, on the UI thread)."""
        if not self.on:
            return
        self.changes += 1
        self.dirty, self.changed_at = True, self.clock()
        job = self.session.job
        if job is not None and job.kind == "live" and job.sent:
            average = self.average_frame_s()
            if average and self.changed_at - job.sent > max(FAST_FRAME_S, STALE_FACTOR * average):
                self.session.cancel()  # stale, and the model is slow: don't wait for it
        self.kick()

    def debounce_s(self) -> float:
        """How long the input must rest before a frame starts: none while frames are fast."""
        average = self.average_frame_s()
        if average is None or average < FAST_FRAME_S:
            return 0.0
        return min(MAX_DEBOUNCE_S, 0.25 * average)

    def average_frame_s(self) -> Optional[float]:
        done = [f["ended"] - f["sent"] for f in self.frames[-5:] if f.get("ended") and f.get("finished")]
        return sum(done) / len(done) if done else None

    def kick(self) -> None:
        """Start the next frame when one is due (and nothing is in flight)."""
        session = self.session
        if not self.on or not self.dirty or session.busy or not session.connected:
            return
        wait = self.changed_at + self.debounce_s() - self.clock()
        if wait > 0:
            due = self.clock() + wait
            if due > self._timer_due:
                self._timer_due = due
                self.schedule(wait, self.kick)
            return
        doc = session.host.active_document_or_none()
        if doc is None or session.host.mask_bounds(doc, session.settings) is None:
            self.dirty = False  # nothing to repaint; the next change tries again
            return
        self.dirty = False
        change = self.changed_at
        job_id = session.run(live=True)
        if job_id is not None and session.job is not None:
            self.frames.append({"id": job_id, "change": change, "sent": 0.0, "ended": 0.0, "finished": False})

    def frame_settings(self, settings):
        """The settings of a live frame: inpaint or refine, one image, the loop's fixed seed."""
        if settings.mode not in ("inpaint", "img2img"):
            settings.mode = "inpaint"
        settings.batch, settings.random_seed, settings.seed = 1, False, self.seed
        return settings

    def worth_sending(self, settings, inputs) -> bool:
        """Whether a frame with these inputs differs from the last one sent (read, but equal: not sent)."""
        controls = [(c.type, c.strength, c.start, c.end, c.image) for c in inputs.controls]
        sig = signature([repr(settings.to_dict()), inputs.box, inputs.image or b"", inputs.mask or b""] + controls)
        if sig == self._last_sent:
            self.skipped += 1
            return False
        self._last_sent = sig
        return True

    def _frame(self, job) -> Optional[dict]:
        return next((f for f in reversed(self.frames) if f["id"] == job.id), None)

    def frame_sent(self, job) -> None:
        frame = self._frame(job)
        if frame is not None:
            frame["sent"] = job.sent

    def frame_ended(self, job, finished: bool) -> None:
        frame = self._frame(job)
        if frame is not None:
            frame["ended"], frame["finished"] = self.clock(), finished
        if not finished:
            self._last_sent = None  # the frame never showed: the same input is worth sending again
        self.kick()
