"""A thin synchronous transport over ``protocol.connection.Connection``: connect, handshake, submit jobs, follow their
events (typed messages), cancel, and resume after a dropped connection.

Built on ``websockets.sync`` so it runs in any Python thread (the Krita plugin runs it off the UI thread, GIMP's plug-in
runs it directly). ``cancel`` may be called from another thread while one thread reads events.

Every ``Client`` carries a session id (``hello.session``). When the connection drops while ``run`` or ``events`` waits
for a job, the client reconnects with back-off and the same session id; the server answers with the jobs it still holds
(``welcome.resumed``) and re-sends what was missed, so the job goes on. A job the server no longer holds ends with
``ConnectionFailed``.

When the server offers a shared folder (``welcome.shared_folder``: same machine, same user), large payloads travel
as files there instead of through the websocket (``protocol.shared``); ``shared_memory=False`` keeps the wire path.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterator, List, Mapping, Optional, Union

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect as ws_connect

from .codec import fragments
from .connection import CLIENT, Connection
from .errors import INTERNAL, UNSUPPORTED, LocalProtocolError, ProtocolError
from .reconnect import Backoff
from .shared import AVAILABLE as SHARED_AVAILABLE, SharedFolder
from .messages import (
    FINAL_TYPES,
    Cancel,
    Cancelled,
    DeleteStyle,
    Error,
    Job,
    ListModels,
    ListPresets,
    ListStyles,
    Message,
    Models,
    Presets,
    Pull,
    PullDone,
    Result,
    SaveStyle,
    Style,
    Styles,
    Welcome,
    error_from,
    hello,
)

DEFAULT_URL = "ws://127.0.0.1:7860"


class ConnectionFailed(Exception):
    """The server could not be reached or the connection dropped; the message says which and where."""


class JobFailed(Exception):
    """A job (or the handshake) ended with an ``error`` message."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.code = error.code or INTERNAL
        self.field = error.field
        self.error = error


class JobCancelled(Exception):
    """A job ended with ``cancelled``."""


_ids = itertools.count(1)


def new_job_id(prefix: str = "job") -> str:
    """A job id unique within this process (and very likely across processes)."""
    return f"{prefix}-{os.getpid()}-{next(_ids)}-{int(time.time() * 1000) % 10**8}"


def new_session_id() -> str:
    """A fresh client session id (made once per plugin session)."""
    return secrets.token_urlsafe(18)


class Client:
    """One client session with a Paintbridge server, over one connection at a time."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        client_name: str = "paintbridge-client",
        client_version: str = "",
        token: Optional[str] = None,
        open_timeout: float = 5.0,
        max_frame_bytes: int = 512 * 1024 * 1024,
        session: Optional[str] = None,
        resume_for: float = 60.0,
        shared_memory: bool = True,
        close_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.client_name = client_name
        self.client_version = client_version
        self.token = token
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout  # s ``close`` waits for the server's side of the closing handshake
        self.max_frame_bytes = max_frame_bytes
        self.session = session or new_session_id()
        self.resume_for = resume_for  # s to keep reconnecting while a job waits; 0 = never
        self.shared_memory = shared_memory and SHARED_AVAILABLE  # offer to pass payloads through shared memory
        self.welcome: Optional[Welcome] = None
        self.reconnects = 0
        self._closed = False  # closed by the user: no automatic reconnect
        self._ws: Any = None
        self._conn: Optional[Connection] = None
        self._pending: Dict[str, Deque[Message]] = {}
        self._other: Deque[Message] = deque()
        self._lock = threading.Lock()  # the Connection's state, and the order of frames written
        self._recv_lock = threading.Lock()

    # --- connection ---------------------------------------------------------------------------------------------
    def connect(self) -> Welcome:
        """Open the connection and handshake; returns ``welcome``. Raises ConnectionFailed (unreachable), JobFailed
        (refused: token, bad hello) or ProtocolError (``version_mismatch``)."""
        try:
            ws = ws_connect(
                self.url,
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
                max_size=self.max_frame_bytes,
                compression=None,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as err:
            raise ConnectionFailed(f"cannot reach the Paintbridge server at {self.url}: {err}") from err
        conn = Connection(CLIENT)
        try:
            ws.send(
                conn.send(hello(self.client_name, self.client_version, self.token, self.session, self.shared_memory))
            )
            (reply,) = conn.receive_data(ws.recv(timeout=self.open_timeout + 25))
        except (ConnectionClosed, OSError, TimeoutError) as err:
            ws.close()
            raise ConnectionFailed(
                f"the Paintbridge server at {self.url} did not complete the handshake: {err}"
            ) from err
        except ProtocolError:
            ws.close()
            raise
        if isinstance(reply, Error):
            ws.close()
            raise JobFailed(reply)
        assert isinstance(reply, Welcome)
        if self.shared_memory and reply.shared_folder:
            conn.shared = SharedFolder.join(reply.shared_folder)  # None: not this machine's; the wire path
        with self._lock:
            self._ws, self._conn, self.welcome, self._closed = ws, conn, reply, False
        return reply

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def shared_folder(self) -> Optional[SharedFolder]:
        """The folder payloads travel through on this connection (its ``written``/``read`` count them); None when
        they travel on the wire."""
        conn = self._conn
        return conn.shared if conn is not None else None

    def close(self) -> None:
        """Close the connection; a closed client does not reconnect on its own (``connect`` opens it again)."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        if self._conn is not None:
            self._conn.release()

    def __enter__(self) -> "Client":
        if self._ws is None:
            self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _may_resume(self) -> bool:
        return self.resume_for > 0 and self.welcome is not None and not self._closed

    def _resume(self) -> None:
        """Reconnect after a drop, with the back-off of ``reconnect.Backoff`` and the same session id, for up to
        ``resume_for`` s."""
        if self._ws is not None:
            self._drop(self._ws)
        deadline = time.monotonic() + self.resume_for
        backoff = Backoff()
        last: Optional[Exception] = None
        while time.monotonic() < deadline:
            time.sleep(min(backoff.next(), max(0.0, deadline - time.monotonic())))
            try:
                self.connect()
                self.reconnects += 1
                return
            except ConnectionFailed as err:
                last = err
        raise ConnectionFailed(
            f"lost the connection to {self.url} and could not reconnect within {self.resume_for:g} s: {last}"
        )

    # --- jobs ---------------------------------------------------------------------------------------------------
    def submit(self, job: Union[Job, Pull, Mapping[str, Any]]) -> str:
        """Send a job (a ``Job``, or its wire map: an id is added when missing, and it is validated here) or a
        ``Pull``; returns its id. Events are read with ``events``. A job this side finds invalid raises JobFailed."""
        if not isinstance(job, (Job, Pull)):
            raw = dict(job, type="job")
            raw["id"] = raw.get("id") or new_job_id()
            limits = self.welcome.limits if self.welcome is not None else None
            try:
                job = Job.from_wire(raw, limits) if limits is not None else Job.from_wire(raw)
            except ProtocolError as err:
                raise JobFailed(error_from(err)) from None
        if self._is_open(job.id):
            raise LocalProtocolError(f"job id {job.id!r} is still open: each open job needs its own id")
        self._pending[job.id] = deque()
        try:
            self._send(job)
        except ConnectionFailed:
            if not self._may_resume():
                raise
            self._resume()
            if not self._is_open(job.id):
                self._send(job)
        return job.id

    def cancel(self, job_id: str) -> None:
        """Ask the server to cancel a job (thread-safe); nothing is sent for a job that already ended."""
        if self._is_open(job_id):
            self._send(Cancel(job_id))

    def _is_open(self, job_id: str) -> bool:
        with self._lock:
            return self._conn is not None and self._conn.is_open(job_id)

    def events(self, job_id: str, timeout: Optional[float] = None) -> Iterator[Message]:
        """Yield the job's messages (queued, started, progress ...) up to and including the final one, reconnecting
        when the connection drops."""
        queue = self._pending.setdefault(job_id, deque())
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                while queue:
                    msg = queue.popleft()
                    yield msg
                    if isinstance(msg, FINAL_TYPES):
                        return
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if left == 0.0:
                    raise TimeoutError(f"no answer for job {job_id} within {timeout} s")
                try:
                    msg = self._recv(timeout=left)
                except ConnectionFailed:
                    if not self._may_resume():
                        raise
                    self._resume()
                    if not self._is_open(job_id):
                        raise ConnectionFailed(
                            f"the server at {self.url} no longer holds job {job_id} (it restarted, "
                            "or the connection was down longer than its grace period)"
                        ) from None
                    continue
                self._route(msg)
        finally:
            self._pending.pop(job_id, None)

    def run(
        self,
        job: Union[Job, Mapping[str, Any]],
        on_event: Optional[Callable[[Message], None]] = None,
        timeout: Optional[float] = None,
    ) -> Result:
        """Submit a job and wait for its ``result`` (raises JobFailed or JobCancelled). ``on_event`` sees every event."""
        job_id = self.submit(job)
        for msg in self.events(job_id, timeout=timeout):
            if on_event is not None:
                on_event(msg)
            if isinstance(msg, Result):
                return msg
            if isinstance(msg, Cancelled):
                raise JobCancelled(job_id)
            if isinstance(msg, Error):
                raise JobFailed(msg)
        raise ConnectionFailed("the event stream ended without a result")

    def list_models(self, timeout: float = 30.0) -> List[dict]:
        """The server's installed models (it looks at its folders again)."""
        return [dict(m) for m in self._ask(ListModels(), Models, timeout).models]

    def list_presets(self, timeout: float = 30.0) -> List[dict]:
        """The catalogue's starter sets and what the server has of each (``presets``). A server without model
        downloads raises JobFailed (``unsupported``)."""
        self._require_pulls()
        return [dict(p) for p in self._ask(ListPresets(), Presets, timeout).presets]

    def list_styles(self, timeout: float = 30.0) -> Styles:
        """The server's styles, the style files it could not read, and the few-step status per family."""
        return self._ask(ListStyles(), Styles, timeout)

    def save_style(self, style: Style, timeout: float = 30.0) -> Styles:
        """Create or replace a style by name; a refused style raises JobFailed whose error names the field."""
        return self._ask(SaveStyle(style), Styles, timeout, refusable=True)

    def delete_style(self, name: str, timeout: float = 30.0) -> Styles:
        """Remove a style the user saved; a shipped or unknown one raises JobFailed."""
        return self._ask(DeleteStyle(name), Styles, timeout, refusable=True)

    def pull(
        self,
        names: List[str],
        pull_id: Optional[str] = None,
        on_event: Optional[Callable[[Message], None]] = None,
        timeout: Optional[float] = None,
    ) -> PullDone:
        """Download catalogue presets or files onto the server's machine and wait for ``pull_done`` (raises
        JobFailed or JobCancelled); ``on_event`` sees each ``pull_progress``. Cancel with ``cancel(pull_id)``."""
        self._require_pulls()
        msg = Pull(pull_id or new_job_id("pull"), tuple(names))
        self.submit(msg)
        for event in self.events(msg.id, timeout=timeout):
            if on_event is not None:
                on_event(event)
            if isinstance(event, PullDone):
                return event
            if isinstance(event, Cancelled):
                raise JobCancelled(msg.id)
            if isinstance(event, Error):
                raise JobFailed(event)
        raise ConnectionFailed("the event stream ended without an answer to the pull")

    def _require_pulls(self) -> None:
        welcome = self.welcome
        if welcome is not None and not welcome.capabilities.get("pulls"):
            raise JobFailed(
                Error(
                    UNSUPPORTED,
                    f"the Paintbridge server at {self.url} (version "
                    f"{welcome.server_version}) cannot download models: update it, or run "
                    "'paintbridge models pull NAME' on the server's machine",
                )
            )

    def _ask(self, request: Message, answer: type, timeout: float, refusable: bool = False) -> Any:
        """Send a request without an id and wait for its answer; an id-less ``error`` about the message type (a
        server that does not know the request) raises JobFailed, and so does any id-less ``error`` when the request
        is ``refusable`` (the server answers it with an error naming the field)."""
        self._send(request)
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self._other):
                if isinstance(msg, answer):
                    del self._other[i]
                    return msg
                if isinstance(msg, Error) and msg.id is None and (refusable or msg.field == "type"):
                    del self._other[i]
                    raise JobFailed(msg)
            self._route(self._recv(timeout=max(0.0, deadline - time.monotonic())))

    def _route(self, msg: Message) -> None:
        target = getattr(msg, "id", None)
        if target is not None and target in self._pending:
            self._pending[target].append(msg)
        else:
            self._other.append(msg)  # models, notices (errors about no job), events of jobs nobody reads now

    # --- transport ----------------------------------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        with self._lock:
            ws, conn = self._ws, self._conn
            if ws is None or conn is None:
                raise ConnectionFailed("not connected to the Paintbridge server")
            frame = conn.send_pieces(msg)
            try:
                ws.send(fragments(frame))
            except (ConnectionClosed, OSError) as err:
                self._drop(ws)
                raise ConnectionFailed(f"connection to {self.url} lost: {err}") from err

    def _drop(self, ws: Any) -> None:
        """Forget a connection that failed (closing what is left of it)."""
        if self._ws is ws:
            self._ws = None
        try:
            ws.close()
        except Exception:  # noqa: BLE001 - it is already broken
            pass
        if self._conn is not None:
            self._conn.release()  # files the server did not read: it will not now

    def _recv(self, timeout: Optional[float] = None) -> Message:
        ws = self._ws
        if ws is None or self._conn is None:
            raise ConnectionFailed("not connected to the Paintbridge server")
        with self._recv_lock:
            try:
                frame = ws.recv(timeout=timeout)
            except TimeoutError:
                raise
            except (ConnectionClosed, OSError) as err:
                self._drop(ws)
                raise ConnectionFailed(f"connection to {self.url} lost: {err}") from err
        try:
            with self._lock:
                (msg,) = self._conn.receive_data(frame)
        except ProtocolError as err:
            raise ConnectionFailed(f"the server sent a message this client cannot read: {err.message}") from err
        return msg
