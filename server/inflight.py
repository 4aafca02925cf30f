"""A server-wide budget for incoming frame bytes (``limits.max_bytes_in_flight``), across all connections.

The per-frame limit alone lets memory grow with the number of connections: six clients each sending a frame near
``max_frame_bytes`` at once make the server hold six. ``FrameBudget`` counts the bytes every connection has received
and not yet handled (a frame being received, or received and being parsed and queued); a connection whose bytes would
take the total over the budget stops being read (asyncio ``pause_reading``: the client's send waits on TCP
back-pressure) until others have handled theirs. The connection that has held bytes longest is never paused, so one
frame always completes and memory stays within the budget plus one frame (and one socket read per connection); no
connection is dropped, and every frame is eventually read.

``BudgetedConnection`` is the websockets server connection that reports to it (``serve(create_connection=...)``): the
app calls ``handled(frame)`` when it is done with a frame.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

from websockets.asyncio.server import ServerConnection

FRAME_OVERHEAD = 14  # a frame's header at most: released with its payload


class FrameBudget:
    """Bytes of incoming frames held across all connections: ``used`` (now) and ``peak``, within ``limit`` plus one
    frame."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.used = 0
        self.peak = 0
        self.pauses = 0  # how many times a connection waited for the budget
        self._held: "OrderedDict[BudgetedConnection, int]" = OrderedDict()  # holders, the longest first
        self._paused: "OrderedDict[BudgetedConnection, None]" = OrderedDict()

    def held(self, conn: "BudgetedConnection") -> int:
        return self._held.get(conn, 0)

    def received(self, conn: "BudgetedConnection", size: int) -> bool:
        """``conn`` read ``size`` bytes; whether it may read on (False: it waits until ``wake`` resumes it)."""
        self._held[conn] = self._held.get(conn, 0) + size
        self.used += size
        self.peak = max(self.peak, self.used)
        if self.used <= self.limit or next(iter(self._held)) is conn:
            return True
        if conn not in self._paused:
            self._paused[conn] = None
            self.pauses += 1
        return False

    def release(self, conn: "BudgetedConnection", size: Optional[int] = None) -> None:
        """``conn`` is done with ``size`` of its bytes (all of them when None: it is idle or closed)."""
        have = self._held.get(conn, 0)
        size = have if size is None else min(have, size)
        self.used -= size
        if have - size > 0:
            self._held[conn] = have - size
        else:
            self._held.pop(conn, None)
        self.wake()

    def forget(self, conn: "BudgetedConnection") -> None:
        """``conn`` closed: its bytes are gone."""
        self._paused.pop(conn, None)
        self.release(conn)

    def wake(self) -> None:
        """Resume waiting connections, the longest waiting first, while the budget allows (the longest holder
        always)."""
        head = next(iter(self._held), None)
        for conn in list(self._paused):
            if self.used < self.limit or conn is head:
                del self._paused[conn]
                conn.resume_for_budget()


class BudgetedConnection(ServerConnection):
    """A websockets server connection whose reading follows a ``FrameBudget`` (``budget`` set by the factory)."""

    budget: FrameBudget

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._assembler_paused = False
        self._budget_paused = False
        self._handling = 0  # frames the app has and has not handled yet

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        messages = self.recv_messages  # its own back-pressure (max_queue frames) and ours share the transport
        messages.pause, messages.resume = self._assembler_pause, self._assembler_resume

    def _assembler_pause(self) -> None:
        self._assembler_paused = True
        self._apply()

    def _assembler_resume(self) -> None:
        self._assembler_paused = False
        self._apply()

    def resume_for_budget(self) -> None:
        self._budget_paused = False
        self._apply()

    def _apply(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self._assembler_paused or self._budget_paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if not self.budget.received(self, len(data)):
            self._budget_paused = True
            self._apply()
        super().data_received(data)
        self._settle()

    def taken(self) -> None:
        """The app has a frame from ``recv`` (it calls ``handled`` when done with it)."""
        self._handling += 1

    def handled(self, frame: Any) -> None:
        """The app is done with ``frame``: its bytes leave the budget."""
        self._handling = max(0, self._handling - 1)
        self.budget.release(self, len(frame) + FRAME_OVERHEAD)
        self._settle()

    def _settle(self) -> None:
        """Nothing received is waiting anywhere (no partial frame, no message whose fragments are still coming, no
        queued frame, none with the app): the count is exactly zero (control frames and headers leave no residue)."""
        partial = getattr(getattr(self.protocol, "reader", None), "buffer", b"x")
        assembling = getattr(self.protocol, "cur_size", 0) is not None
        if (
            self.budget.held(self)
            and not partial
            and not assembling
            and not len(self.recv_messages.frames)
            and not self._handling
        ):
            self.budget.release(self)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.budget.forget(self)
        super().connection_lost(exc)


def connection_factory(budget: FrameBudget) -> type:
    """A ``BudgetedConnection`` class bound to ``budget`` (for ``serve(create_connection=...)``)."""
    return type("Budgeted", (BudgetedConnection,), {"budget": budget})
