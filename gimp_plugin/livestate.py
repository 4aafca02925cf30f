"""When the live inpaint dialog starts, cancels or leaves a job (no GIMP needed).

The dialog polls its inputs (selection, settings, active layer) a few times a second and hands a hashable
``signature`` of them to ``LiveScheduler.tick``. A job starts once the inputs held still for one tick (debounce),
one job at a time, never twice for the same inputs (a failed job is not retried until something changes); a running job
whose inputs changed and held still is cancelled so the next one can start.
"""

from __future__ import annotations

import zlib
from typing import Any, Hashable, Mapping, Optional, Sequence

WAIT = "wait"
START = "start"
CANCEL = "cancel"


class LiveScheduler:
    """Debounce and single-flight for the live dialog's jobs."""

    def __init__(self) -> None:
        self._last: Optional[Hashable] = None
        self.running: Optional[Hashable] = None
        self.answered: Optional[Hashable] = None
        self._cancel_sent = False

    def tick(self, signature: Optional[Hashable]) -> str:
        """What to do now for these inputs (None = nothing to work on): WAIT, START or CANCEL."""
        stable = signature == self._last
        self._last = signature
        if self.running is not None:
            if stable and signature != self.running and not self._cancel_sent:
                self._cancel_sent = True
                return CANCEL
            return WAIT
        if signature is None or signature == self.answered or not stable:
            return WAIT
        return START

    def started(self, signature: Hashable) -> None:
        self.running = signature
        self._cancel_sent = False

    def finished(self, signature: Hashable, answered: bool = True) -> None:
        """The job for ``signature`` ended; ``answered`` = it produced a result or a final error (not cancelled)."""
        self.running = None
        if answered:
            self.answered = signature

    def forget(self) -> None:
        """Run again for the current inputs (e.g. after the user asked to refresh)."""
        self.answered = None


def signature(selection_bounds: Sequence[int], selection_bytes: bytes, values: Mapping[str, Any],
              active_id: int) -> Optional[tuple]:
    """A hashable summary of everything a live job depends on; None when nothing is selected."""
    if not selection_bounds or selection_bounds[2] <= 0 or selection_bounds[3] <= 0:
        return None
    settings = tuple(sorted((k, v if isinstance(v, (str, int, float, bool, type(None))) else repr(v))
                            for k, v in values.items()))
    return (tuple(selection_bounds), zlib.crc32(selection_bytes), settings, active_id)
