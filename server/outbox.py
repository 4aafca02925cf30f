"""A connection's unsent messages: in order, progress coalesced per job (the newest wins), bytes counted.

Two bounds of ``max_bytes`` (``Link`` and the job queue act on them):

- ``behind``: more than ``max_bytes`` wait. The client reads slower than its jobs finish; its next job waits until
  the outbox drains below the bound (``on_behind`` hears each change), so a slow reader is throttled, never dropped.
  Results only come from jobs that started, so what waits stays within ``max_bytes`` plus the results of the jobs
  already running, plus the one message being sent.
- ``flooded``: more than ``max_bytes`` of messages other than results wait (answers to requests, progress, ...). No
  job bounds those, so a client that keeps asking without reading is disconnected.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable, Deque, Dict, List, Optional

from protocol.messages import FINAL_TYPES, Message, Models, Progress, Result, Welcome

SMALL_MESSAGE = 256  # bytes counted for a message without pixels
LISTING_MESSAGE = 8192  # welcome / models


def message_bytes(msg: Message) -> int:
    """About how many bytes ``msg`` takes on the wire (exact enough for a memory bound: pixels dominate)."""
    if isinstance(msg, Result):
        return SMALL_MESSAGE + sum(len(layer.data) for layer in msg.layers)
    if isinstance(msg, Progress):
        return SMALL_MESSAGE + (len(msg.preview.data) if msg.preview is not None else 0)
    if isinstance(msg, (Welcome, Models)):
        return LISTING_MESSAGE
    return SMALL_MESSAGE


def is_final(msg: Message) -> bool:
    """The last message about a job (result, error, cancelled, pull done): a session keeps it for a reconnect."""
    return isinstance(msg, FINAL_TYPES) and getattr(msg, "id", None) is not None


class Outbox:
    """FIFO of messages for one connection; a newer ``progress`` for a job replaces the unsent older one in place."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.result_bytes = 0  # of ``bytes``: the results'
        self.peak_bytes = 0
        self.on_behind: Optional[Callable[[bool], None]] = None  # told when ``behind`` turns true, then false
        self._behind = False
        self._items: Deque[List[Message]] = deque()  # one-element lists, so a progress can be replaced in place
        self._progress: Dict[str, List[Message]] = {}
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, msg: Message) -> None:
        """Append ``msg`` (or replace this job's unsent progress with it)."""
        if isinstance(msg, Progress):
            slot = self._progress.get(msg.id)
            if slot is not None:
                self._add(message_bytes(msg) - message_bytes(slot[0]))
                slot[0] = msg
                return
            slot = [msg]
            self._progress[msg.id] = slot
        else:
            slot = [msg]
        self._items.append(slot)
        self._add(message_bytes(msg), isinstance(msg, Result))
        self._ready.set()

    @property
    def behind(self) -> bool:
        """More than ``max_bytes`` wait: the client's next job must wait until it has read them."""
        return self.bytes > self.max_bytes

    @property
    def flooded(self) -> bool:
        """More than ``max_bytes`` of messages other than results wait: the client asks without reading answers."""
        return self.bytes - self.result_bytes > self.max_bytes

    def take(self) -> Message:
        """The next message (the outbox must not be empty)."""
        (msg,) = self._items.popleft()
        if isinstance(msg, Progress) and self._progress.get(msg.id) is not None and self._progress[msg.id][0] is msg:
            del self._progress[msg.id]
        self._add(-message_bytes(msg), isinstance(msg, Result))
        if not self._items:
            self._ready.clear()
        return msg

    async def get(self) -> Message:
        """Wait for and take the next message."""
        while not self._items:
            await self._ready.wait()
        return self.take()

    def drain(self) -> List[Message]:
        """Take everything left."""
        return [self.take() for _ in range(len(self._items))]

    def _add(self, size: int, result: bool = False) -> None:
        """Count ``size`` more bytes (fewer when negative); tell ``on_behind`` when ``behind`` changes."""
        self.bytes += size
        if result:
            self.result_bytes += size
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        if self.behind != self._behind:
            self._behind = self.behind
            if self.on_behind is not None:
                self.on_behind(self._behind)
