"""A connection's unsent messages: in order, progress coalesced per job (the newest wins), bytes counted.

The byte count lets the link refuse to hold more for a client that does not read (``over_limit``): the messages a
slow reader has not taken yet are bounded by ``max_bytes`` plus the one message being sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Deque, Dict, List

from protocol.messages import Message, Models, Progress, Result, Welcome

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


class Outbox:
    """FIFO of messages for one connection; a newer ``progress`` for a job replaces the unsent older one in place."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.peak_bytes = 0
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
                self.bytes += message_bytes(msg) - message_bytes(slot[0])
                slot[0] = msg
                return
            slot = [msg]
            self._progress[msg.id] = slot
        else:
            slot = [msg]
        self._items.append(slot)
        self.bytes += message_bytes(msg)
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        self._ready.set()

    @property
    def over_limit(self) -> bool:
        """More than ``max_bytes`` waiting, beyond a single message (one message of any size is always allowed)."""
        return self.bytes > self.max_bytes and len(self._items) > 1

    def take(self) -> Message:
        """The next message (the outbox must not be empty)."""
        (msg,) = self._items.popleft()
        if isinstance(msg, Progress) and self._progress.get(msg.id) is not None and self._progress[msg.id][0] is msg:
            del self._progress[msg.id]
        self.bytes -= message_bytes(msg)
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
