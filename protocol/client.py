"""A small synchronous client: connect, handshake, submit jobs, follow their events, cancel.

Built on ``websockets.sync`` so it runs in any Python thread (the Krita plugin runs it off the UI thread, GIMP's plug-in
runs it directly). ``send`` is thread-safe, so ``cancel`` may be called from another thread while one thread reads events.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Dict, Iterator, Optional

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect as ws_connect

from . import messages
from .codec import decode, encode
from .errors import INTERNAL, ProtocolError

DEFAULT_URL = "ws://127.0.0.1:7860"
TERMINAL = ("result", "cancelled", "error")


class ConnectionFailed(Exception):
    """The server could not be reached or the connection dropped; the message says which and where."""


class JobFailed(Exception):
    """A job ended with an ``error`` message."""

    def __init__(self, error: dict) -> None:
        super().__init__(error.get("message", "job failed"))
        self.code = error.get("code", INTERNAL)
        self.field = error.get("field")
        self.error = error


class JobCancelled(Exception):
    """A job ended with ``cancelled``."""


_ids = itertools.count(1)


def new_job_id(prefix: str = "job") -> str:
    """A job id unique within this process (and very likely across processes)."""
    return f"{prefix}-{os.getpid()}-{next(_ids)}-{int(time.time() * 1000) % 10**8}"


class Client:
    """One connection to a Paintbridge server."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        client_name: str = "paintbridge-client",
        client_version: str = "",
        token: Optional[str] = None,
        open_timeout: float = 5.0,
        max_frame_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.client_name = client_name
        self.client_version = client_version
        self.token = token
        self.open_timeout = open_timeout
        self.max_frame_bytes = max_frame_bytes
        self.welcome: Optional[dict] = None
        self._ws: Any = None
        self._pending: Dict[str, deque] = {}
        self._other: deque = deque()
        self._recv_lock = threading.Lock()

    # --- connection ---------------------------------------------------------------------------------------------------
    def connect(self) -> dict:
        """Open the connection and handshake; returns the ``welcome`` message (raises ConnectionFailed, JobFailed)."""
        try:
            self._ws = ws_connect(
                self.url, open_timeout=self.open_timeout, max_size=self.max_frame_bytes, compression=None,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as err:
            raise ConnectionFailed(f"cannot reach the Paintbridge server at {self.url}: {err}") from err
        self._send(messages.hello(self.client_name, self.client_version, self.token))
        reply = self._recv(timeout=self.open_timeout + 25)
        if reply["type"] == "error":
            self.close()
            raise JobFailed(reply)
        if reply["type"] != "welcome":
            self.close()
            raise ConnectionFailed(f"server answered {reply['type']!r} instead of 'welcome'")
        messages.check_compatible(reply["protocol"], peer="server")
        self.welcome = reply
        return reply

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def __enter__(self) -> "Client":
        if self._ws is None:
            self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- jobs ---------------------------------------------------------------------------------------------------------
    def submit(self, job: dict) -> str:
        """Send a ``job`` (an id is added when missing); returns its id. Events are read with ``events``."""
        job = dict(job, type="job")
        job.setdefault("id", new_job_id())
        self._pending[job["id"]] = deque()
        self._send(job)
        return job["id"]

    def cancel(self, job_id: str) -> None:
        """Ask the server to cancel a job (thread-safe)."""
        self._send({"type": "cancel", "id": job_id})

    def events(self, job_id: str, timeout: Optional[float] = None) -> Iterator[dict]:
        """Yield the job's messages (queued, started, progress ...) up to and including the final one."""
        queue = self._pending.setdefault(job_id, deque())
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                while queue:
                    msg = queue.popleft()
                    yield msg
                    if msg["type"] in TERMINAL:
                        return
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if left == 0.0:
                    raise TimeoutError(f"no answer for job {job_id} within {timeout} s")
                msg = self._recv(timeout=left)
                target = msg.get("id")
                if target in self._pending:
                    self._pending[target].append(msg)
                elif msg["type"] == "error" and target is None:
                    queue.append(msg)  # a connection-level error concerns whoever is waiting
                else:
                    self._other.append(msg)
        finally:
            self._pending.pop(job_id, None)

    def run(
        self,
        job: dict,
        on_event: Optional[Callable[[dict], None]] = None,
        timeout: Optional[float] = None,
    ) -> dict:
        """Submit a job and wait for its ``result`` (raises JobFailed or JobCancelled). ``on_event`` sees every event."""
        job_id = self.submit(job)
        for msg in self.events(job_id, timeout=timeout):
            if on_event is not None:
                on_event(msg)
            if msg["type"] == "result":
                return msg
            if msg["type"] == "cancelled":
                raise JobCancelled(job_id)
            if msg["type"] == "error":
                raise JobFailed(msg)
        raise ConnectionFailed("the event stream ended without a result")

    def list_models(self, timeout: float = 30.0) -> list:
        """The server's installed models."""
        self._send({"type": "list_models"})
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self._other):
                if msg["type"] == "models":
                    del self._other[i]
                    return msg["models"]
            msg = self._recv(timeout=max(0.0, deadline - time.monotonic()))
            if msg["type"] == "error" and msg.get("id") is None:
                raise JobFailed(msg)
            target = msg.get("id")
            (self._pending[target] if target in self._pending else self._other).append(msg)

    # --- transport ----------------------------------------------------------------------------------------------------
    def _send(self, msg: dict) -> None:
        if self._ws is None:
            raise ConnectionFailed("not connected to the Paintbridge server")
        try:
            self._ws.send(encode(msg))
        except (ConnectionClosed, OSError) as err:
            self._ws = None
            raise ConnectionFailed(f"connection to {self.url} lost: {err}") from err

    def _recv(self, timeout: Optional[float] = None) -> dict:
        if self._ws is None:
            raise ConnectionFailed("not connected to the Paintbridge server")
        with self._recv_lock:
            try:
                frame = self._ws.recv(timeout=timeout)
            except TimeoutError:
                raise
            except (ConnectionClosed, OSError) as err:
                self._ws = None
                raise ConnectionFailed(f"connection to {self.url} lost: {err}") from err
        try:
            return messages.parse_server_message(decode(frame))
        except ProtocolError as err:
            raise ConnectionFailed(f"the server sent a message this client cannot read: {err.message}") from err
