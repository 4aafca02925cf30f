"""The protocol's state machine, sans I/O: frames in, typed messages out, and the order rules in one place.

``Connection(role)`` knows no socket. ``receive_data(frame)`` decodes and validates one frame from the peer and returns
the messages it holds (raising ProtocolError, ready to be answered as an ``error``, when the frame breaks the rules);
``send(message)`` checks that this side may send ``message`` now and returns the frame to write. The rules:

- the client speaks first with ``hello``; the server answers ``welcome`` or ``error`` (a handshake ``error`` ends the
  connection); nothing else goes either way before that;
- a job id is *open* from the client's ``job`` until the server's one final message for it (``result``, ``cancelled``,
  or ``error`` carrying the id); a ``pull`` id likewise, its final message being ``pull_done``, ``cancelled`` or
  ``error`` (jobs and pulls share one space of open ids); ``welcome.resumed`` opens the ids the server still holds;
- ``queued``/``started``/``progress``/``pull_progress`` and final messages are only about open ids; a second ``job`` with an open id and
  a ``cancel`` of an id that is not open are refused with an ``error`` that carries no id (``field: "id"``): an error
  carries an id only as the final message of exactly that job.

Payloads through shared memory (``shared``): once the handshake offered a folder, the transport gives the connection
its ``SharedFolder`` (the client only when it can use the folder); ``send``/``send_pieces`` then write large payloads
there and carry handles - the client's jobs, marked ``job.shared_memory``, and the server's answers to jobs so marked
(a client that could not use the folder never gets a handle) - and ``receive_data`` reads the handles it finds back into
bytes before validating (``protocol.shared``). Files this side wrote are removed when the peer answers about that id
(it has read them by then) or on ``release``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set

from .codec import decode, encode, encode_pieces
from .errors import BAD_REQUEST, LocalProtocolError, ProtocolError, bad_field
from .messages import (
    CLIENT_TYPES,
    FINAL_TYPES,
    JOB_EVENT_TYPES,
    OPENING_TYPES,
    SERVER_TYPES,
    Cancel,
    Error,
    Hello,
    Job,
    Limits,
    Message,
    UNLIMITED,
    Welcome,
    check_compatible,
    parse_client_message,
    parse_server_message,
)
from .shared import SharedFolder, export, resolve

CLIENT = "client"
SERVER = "server"

HANDSHAKE = "handshake"  # before hello (server) / before welcome (client)
OPEN = "open"
CLOSED = "closed"  # the handshake was refused


class Connection:
    """One side of one Paintbridge connection: ``role`` is ``"client"`` or ``"server"``."""

    def __init__(self, role: str, limits: Optional[Limits] = None) -> None:
        if role not in (CLIENT, SERVER):
            raise ValueError(f"role must be 'client' or 'server', got {role!r}")
        self.role = role
        self.limits = limits or (Limits() if role == SERVER else UNLIMITED)
        self.state = HANDSHAKE
        self.hello: Optional[Hello] = None
        self.welcome: Optional[Welcome] = None
        self.open_jobs: Set[str] = set()
        self._hello_sent = False
        self.shared: Optional[SharedFolder] = None  # set by the transport when both sides share memory
        self._written: Dict[str, List[str]] = {}  # message id -> payload files written for it, not known read yet
        self._shared_jobs: Set[str] = set()  # (server) open jobs whose client takes results through the folder

    def is_open(self, job_id: str) -> bool:
        """True while ``job_id`` waits for its final message."""
        return job_id in self.open_jobs

    # --- receiving --------------------------------------------------------------------------------------------------
    def receive_data(self, frame: Any) -> List[Message]:
        """Decode, validate and order-check one frame from the peer; returns its messages (one per frame)."""
        if self.state == CLOSED:
            raise ProtocolError(BAD_REQUEST, "the handshake was refused; this connection takes no more messages")
        value = decode(frame, self.limits.max_frame_bytes)
        if self.role == SERVER:
            return [self._receive_client(value)]
        return [self._receive_server(value)]

    def _resolve(self, value: Any) -> Any:
        return resolve(value, self.shared, self.limits.max_pixels, self.limits.max_frame_bytes)

    def release(self, message_id: Optional[str] = None) -> None:
        """Remove the payload files written for ``message_id`` that the peer did not read; None: all of them and this
        side's spares (the connection is closing)."""
        if message_id is None and self.shared is not None:
            self.shared.drop_spares()
        ids = list(self._written) if message_id is None else [message_id]
        for key in ids:
            names = self._written.pop(key, None)
            if names and self.shared is not None:
                self.shared.discard(names)

    def _receive_client(self, value: Any) -> Message:
        try:
            msg = parse_client_message(value, self.limits, self._resolve)
        except ProtocolError as err:
            if self.hello is None:
                err.job_id = None
            elif err.job_id is not None:
                if err.job_id in self.open_jobs:
                    err.job_id = None  # the id belongs to another job still running: never end that one
                else:
                    self.open_jobs.add(err.job_id)  # the refusal is this job's one final message
            raise
        if self.hello is None:
            if not isinstance(msg, Hello):
                raise ProtocolError(BAD_REQUEST, f"the first message must be 'hello', got '{msg.type}'", field="type")
            check_compatible(msg.protocol)
            self.hello = msg
            return msg
        if isinstance(msg, Hello):
            raise ProtocolError(BAD_REQUEST, "'hello' was already received on this connection", field="type")
        if isinstance(msg, OPENING_TYPES):
            if msg.id in self.open_jobs:
                raise ProtocolError(
                    BAD_REQUEST, f"id {msg.id!r} is already queued or running (a job or a pull)", field="id"
                )
            self.open_jobs.add(msg.id)
            if isinstance(msg, Job) and msg.shared_memory and self.shared is not None:
                self._shared_jobs.add(msg.id)
        elif isinstance(msg, Cancel) and msg.id not in self.open_jobs:
            raise ProtocolError(BAD_REQUEST, f"no queued or running job with id {msg.id!r}", field="id")
        return msg

    def _receive_server(self, value: Any) -> Message:
        msg = parse_server_message(self._resolve(value), self.limits)
        if self._written and isinstance(getattr(msg, "id", None), str):
            self.release(msg.id)  # the server answered about it: it has read the job's files
        if self.state == HANDSHAKE:
            if isinstance(msg, Welcome):
                check_compatible(msg.protocol, peer="server")
                self.state, self.welcome = OPEN, msg
                self.open_jobs.update(msg.resumed)
            elif isinstance(msg, Error):
                self.state = CLOSED
            else:
                raise ProtocolError(BAD_REQUEST, f"the server answered '{msg.type}' instead of 'welcome'", field="type")
            return msg
        if isinstance(msg, Welcome):
            raise ProtocolError(BAD_REQUEST, "'welcome' was already received on this connection", field="type")
        job_id = getattr(msg, "id", None)
        if isinstance(msg, JOB_EVENT_TYPES) or (isinstance(msg, Error) and job_id is not None):
            if job_id not in self.open_jobs:
                raise bad_field("id", f"names job {job_id!r}, which is not open: '{msg.type}' is not allowed")
            if isinstance(msg, FINAL_TYPES):
                self.open_jobs.discard(job_id)
        return msg

    # --- sending ----------------------------------------------------------------------------------------------------
    def send(self, message: Message) -> bytes:
        """The frame for ``message``; LocalProtocolError when this side may not send it now."""
        self._check_send(message)
        return encode(self._outgoing(message))

    def send_pieces(self, message: Message) -> List[Any]:
        """``send`` without copying large payloads: the frame as ``codec.encode_pieces`` gives it (for
        ``codec.fragments``); LocalProtocolError when this side may not send ``message`` now."""
        self._check_send(message)
        return encode_pieces(self._outgoing(message))

    def _outgoing(self, message: Message) -> Any:
        """The wire map of ``message``, large payloads written to the shared folder when the peer takes them."""
        value = message.to_wire()
        if self.shared is None:
            return value
        message_id = getattr(message, "id", None)
        if self.role == SERVER:
            if message_id not in self._shared_jobs:
                return value
            if isinstance(message, FINAL_TYPES):
                self._shared_jobs.discard(message_id)
            return export(value, self.shared)[0]  # (read by the client, or removed with the folder)
        if isinstance(message, Job):
            value["shared_memory"] = True
        value, names = export(value, self.shared)
        if names:
            self._written.setdefault(str(message_id), []).extend(names)
        return value

    def _check_send(self, message: Message) -> None:
        if self.role == CLIENT:
            self._send_client(message)
        else:
            self._send_server(message)

    def _send_client(self, msg: Message) -> None:
        if msg.type not in CLIENT_TYPES:
            raise LocalProtocolError(f"a client cannot send '{msg.type}'")
        if self.state == CLOSED:
            raise LocalProtocolError("the server refused the handshake; open a new connection")
        if isinstance(msg, Hello):
            if self._hello_sent:
                raise LocalProtocolError("'hello' was already sent on this connection")
            self._hello_sent = True
            return
        if not self._hello_sent:
            raise LocalProtocolError(f"send 'hello' before '{msg.type}'")
        if isinstance(msg, OPENING_TYPES):
            if msg.id in self.open_jobs:
                raise LocalProtocolError(f"id {msg.id!r} is still open: each open job or pull needs its own id")
            self.open_jobs.add(msg.id)
        elif isinstance(msg, Cancel) and msg.id not in self.open_jobs:
            raise LocalProtocolError(f"job {msg.id!r} is not open: nothing to cancel")

    def _send_server(self, msg: Message) -> None:
        if msg.type not in SERVER_TYPES:
            raise LocalProtocolError(f"a server cannot send '{msg.type}'")
        if self.state == CLOSED:
            raise LocalProtocolError("the handshake was refused; this connection sends nothing more")
        if self.state == HANDSHAKE:
            if isinstance(msg, Welcome):
                if self.hello is None:
                    raise LocalProtocolError("'welcome' before the client's 'hello'")
                self.state, self.welcome = OPEN, msg
                self.open_jobs.update(msg.resumed)
            elif isinstance(msg, Error):
                if msg.id is not None:
                    raise LocalProtocolError("a handshake error carries no job id")
                self.state = CLOSED
            else:
                raise LocalProtocolError(f"'{msg.type}' before 'welcome'")
            return
        if isinstance(msg, Welcome):
            raise LocalProtocolError("'welcome' was already sent")
        job_id = getattr(msg, "id", None)
        if isinstance(msg, JOB_EVENT_TYPES) or (isinstance(msg, Error) and job_id is not None):
            if job_id not in self.open_jobs:
                raise LocalProtocolError(f"'{msg.type}' for job {job_id!r}, which is not open")
            if isinstance(msg, FINAL_TYPES):
                self.open_jobs.discard(job_id)
