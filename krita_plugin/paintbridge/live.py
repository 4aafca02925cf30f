"""Live mode's decisions, without Qt: when has the input changed enough, and settled long enough, to start a job.

The docker feeds a cheap signature of the selection and of the pixels under the context box on a timer; this module
debounces it and keeps one job in flight.
"""

from __future__ import annotations

import zlib
from typing import Hashable, Iterable, Optional


def signature(parts: Iterable[object]) -> int:
    """A cheap, order-sensitive checksum of byte strings and small values (CRC-32 runs at C speed)."""
    crc = 0
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview)):
            crc = zlib.crc32(part, crc)
        else:
            crc = zlib.crc32(repr(part).encode(), crc)
    return crc


class LiveScheduler:
    """Decides when live mode starts a job.

    ``observe(sig, now)`` is called on every poll with the current input signature and time (seconds); it returns True
    when a job should start: the signature differs from the one the last job was built from, it has not changed for
    ``debounce`` seconds, and no job is in flight. ``started`` / ``finished`` bracket each job.
    """

    def __init__(self, debounce: float = 0.6) -> None:
        self.debounce = debounce
        self._seen: Optional[Hashable] = None
        self._seen_since = 0.0
        self._done: Optional[Hashable] = None
        self._in_flight = False

    @property
    def in_flight(self) -> bool:
        return self._in_flight

    def observe(self, sig: Hashable, now: float) -> bool:
        if sig != self._seen:
            self._seen, self._seen_since = sig, now
            return False
        if self._in_flight or sig == self._done:
            return False
        return now - self._seen_since >= self.debounce

    def started(self, sig: Hashable) -> None:
        """A job was started from input with signature ``sig``."""
        self._in_flight = True
        self._done = sig

    def finished(self) -> None:
        """The job in flight ended (result, error or cancel)."""
        self._in_flight = False

    def forget(self) -> None:
        """Start afresh (live mode switched on again, or the document changed)."""
        self._seen = self._done = None
        self._in_flight = False
