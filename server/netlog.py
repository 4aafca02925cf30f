"""The logger handed to websockets: expected network noise becomes one line without a traceback.

Port probes (connect and close), plain HTTP requests, TLS handshakes and connections reset mid-handshake make
websockets log ``opening handshake failed`` at ERROR with a traceback. Those are facts about the network, not bugs:
they are logged as one INFO line naming the peer. Anything else (an exception in the server's own code) keeps its
traceback. websockets' routine INFO lines (``connection open``, ``connection rejected``, ...) go to DEBUG: the server
logs its own line for each refused connection.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, MutableMapping, Optional, Tuple

from websockets.exceptions import ConnectionClosed, InvalidHandshake

NOISE = (InvalidHandshake, ConnectionClosed, EOFError, OSError, TimeoutError)


def is_network_noise(exc: Optional[BaseException]) -> bool:
    """True for failures a peer on the network causes (bad or cut-off requests), not bugs."""
    return isinstance(exc, NOISE)


def peer_of(connection: Any) -> str:
    """``host:port`` of a websockets connection's peer, or ``?``."""
    try:
        address = connection.remote_address
    except Exception:  # noqa: BLE001 - the transport may be gone
        return "?"
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return "?"


def describe(exc: BaseException) -> str:
    """The exception and its cause in one short printable line."""
    text = f"{exc}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= 160 else text[:157] + "..."


class NetworkLog(logging.LoggerAdapter):
    """A LoggerAdapter for ``websockets.asyncio.server.serve(logger=...)`` that turns network noise into one line."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> Tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs  # keep websockets' own ``extra`` (the connection)

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info and level >= logging.WARNING:
            if exc_info is True:
                exc = sys.exc_info()[1]
            elif isinstance(exc_info, tuple):
                exc = exc_info[1]
            else:
                exc = exc_info if isinstance(exc_info, BaseException) else None
            if is_network_noise(exc):
                connection = (kwargs.get("extra") or {}).get("websocket")
                self.logger.info("%s from %s: %s", msg, peer_of(connection), describe(exc))
                return
        if level < logging.WARNING:
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)
