"""The one reconnect policy of a Paintbridge client: how long to wait before each try after a connection failed.

``protocol.client.Client`` uses it to resume a job whose connection dropped; a long-lived client session (the plugins'
``client.connect.Connector``) uses the same policy to reconnect between jobs. Pure Python, no I/O.
"""

from __future__ import annotations

FIRST_DELAY = 0.1  # s before the first try: a server that restarts is often back at once
LONGEST_DELAY = 4.0  # s between tries once the delays have grown


class Backoff:
    """Reconnect delays: ``first`` seconds, doubling up to ``longest``; ``reset`` after a success."""

    def __init__(self, first: float = FIRST_DELAY, longest: float = LONGEST_DELAY) -> None:
        if not 0 < first <= longest:
            raise ValueError(f"back-off delays must satisfy 0 < first <= longest, got {first} and {longest}")
        self.first, self.longest = first, longest
        self._next = first

    def next(self) -> float:
        """The delay before the next try (each one twice the last, at most ``longest``)."""
        delay, self._next = self._next, min(self.longest, self._next * 2)
        return delay

    def reset(self) -> None:
        """Start from ``first`` again (after a connection succeeded)."""
        self._next = self.first
