"""Client sessions: a client's jobs outlive a dropped connection for a grace period, and a reconnect with the same
session id (``hello.session``) picks them up where they were.

A ``Link`` is one websocket connection's sending side: an outbox drained in order through the sans-I/O
``protocol.connection.Connection``. A ``ClientSession`` owns the client's open jobs and is attached to at most one link;
while it is detached, final messages are kept (not those of live frames) and other events are dropped. On attach the
session answers ``welcome`` with ``resumed`` = its open job ids, then re-sends each job's state: ``queued`` or
``started`` for the ones still waiting or running, the kept final message for the finished ones.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Callable, Dict, List, Optional, Set

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from protocol.codec import fragments
from protocol.connection import Connection
from protocol.errors import LocalProtocolError
from protocol.messages import FINAL_TYPES, Message, Queued, Started, Welcome

from .jobs import JobQueue, QueuedJob

log = logging.getLogger("paintbridge.server")


def _is_final(msg: Message) -> bool:
    return isinstance(msg, FINAL_TYPES) and getattr(msg, "id", None) is not None


class Link:
    """One connection's ordered outgoing side."""

    def __init__(self, ws: ServerConnection, conn: Connection) -> None:
        self.ws = ws
        self.conn = conn
        self.outbox: "asyncio.Queue[Message]" = asyncio.Queue()
        self.session: Optional["ClientSession"] = None
        self._unsent: List[Message] = []

    def put(self, msg: Message) -> None:
        self.outbox.put_nowait(msg)

    async def pump(self) -> None:
        """Send queued messages in order until the connection closes."""
        while True:
            msg = await self.outbox.get()
            try:
                frame = self.conn.send(msg)
            except LocalProtocolError as err:
                log.error("not sending %s: %s", msg.type, err)  # a server bug; the connection stays usable
                continue
            try:
                await self.ws.send(fragments(frame))
            except (ConnectionClosed, asyncio.CancelledError):
                self._unsent.append(msg)
                raise

    def drain(self) -> List[Message]:
        """What this link did not send (it is closing): the caller keeps the final messages."""
        left, self._unsent = self._unsent, []
        while not self.outbox.empty():
            left.append(self.outbox.get_nowait())
        return left


class ClientSession:
    """A client's jobs across connections."""

    def __init__(self, session_id: str, client: str, named: bool) -> None:
        self.id = session_id
        self.client = client
        self.named = named  # the client chose the id (and can resume); else the session ends with its connection
        self.link: Optional[Link] = None
        self.jobs: Dict[str, QueuedJob] = {}  # queued or running
        self.finals: Dict[str, Message] = {}  # finished while detached, not yet delivered
        self.live: Set[str] = set()  # open live frames
        self.forgotten: Set[str] = set()  # jobs dropped without a message: their final answer goes nowhere
        self.expiry: Optional[asyncio.TimerHandle] = None

    def open_ids(self) -> List[str]:
        return list(self.jobs) + [i for i in self.finals if i not in self.jobs]

    def add(self, item: QueuedJob) -> None:
        self.jobs[item.id] = item
        self.forgotten.discard(item.id)
        if item.live:
            self.live.add(item.id)

    def forget(self, items: List[QueuedJob]) -> None:
        """These jobs were dropped (live frames of a lost connection, an expired session): no message about them."""
        for item in items:
            self.jobs.pop(item.id, None)
            self.live.discard(item.id)
            if item.running:
                self.forgotten.add(item.id)  # it stops at its next step and answers; that answer is swallowed

    async def send(self, msg: Message) -> None:
        """A message from the queue about one of this session's jobs (or about a request of its link)."""
        if _is_final(msg):
            self.jobs.pop(msg.id, None)  # type: ignore[attr-defined]
            self.keep_final(msg)
        elif self.link is not None and getattr(msg, "id", None) not in self.forgotten:
            self.link.put(msg)

    def keep_final(self, msg: Message) -> None:
        """Deliver a final message now, or keep it until the client is back (a live frame's is not kept)."""
        job_id = msg.id  # type: ignore[attr-defined]
        if job_id in self.forgotten:
            self.forgotten.discard(job_id)
            return
        live = job_id in self.live
        self.live.discard(job_id)
        if self.link is not None:
            self.link.put(msg)
        elif not live:
            self.finals[job_id] = msg


class SessionTable:
    """Every session the server holds, by id; attaches links and expires detached sessions after ``grace`` s."""

    def __init__(self, queue: JobQueue, grace: float) -> None:
        self.queue = queue
        self.grace = grace
        self.sessions: Dict[str, ClientSession] = {}

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(18)

    def attach(self, link: Link, session_id: Optional[str], client: str, welcome: Callable[..., Welcome]) -> None:
        """Bind ``link`` to the session ``session_id`` (a new one when unknown or None) and queue its ``welcome``
        (made by ``welcome(session=..., resumed=...)``) followed by the resumed jobs' state."""
        named = session_id is not None
        session = self.sessions.get(session_id) if named else None
        if session is None:
            session = ClientSession(session_id or self.new_id(), client, named)
            self.sessions[session.id] = session
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        old = session.link
        if old is not None:  # the same client again while its old connection looks alive: that one is gone
            log.info("session %s: a new connection replaces the old one", session.id)
            self._unhook(old)
            asyncio.ensure_future(old.ws.close(1001, "replaced by a new connection of the same session"))
        session.client = client
        link.session = session
        resumed = session.open_ids()
        link.put(welcome(session=session.id, resumed=tuple(resumed)))
        for job_id in resumed:
            item = session.jobs.get(job_id)
            if item is not None:
                link.put(Started(job_id) if item.running else Queued(job_id, self.queue.position(item)))
        session.link = link
        for job_id in resumed:
            if job_id in session.finals:
                link.put(session.finals.pop(job_id))
        if resumed:
            log.info("session %s resumed with %d open job(s)", session.id, len(resumed))

    def detach(self, link: Link) -> None:
        """The link's connection ended: drop its session's live frames now, the rest after the grace period (at
        once for a session the client did not name, which it cannot resume)."""
        session = link.session
        if session is None or session.link is not link:
            return
        self._unhook(link)
        session.forget(self.queue.drop(session, live_only=True))
        if session.named and self.grace > 0 and (session.jobs or session.finals):
            session.expiry = asyncio.get_running_loop().call_later(self.grace, self._expire, session)
        else:
            self._expire(session)

    @staticmethod
    def _unhook(link: Link) -> None:
        session = link.session
        if session is None:
            return
        session.link = None
        link.session = None
        for msg in link.drain():
            if _is_final(msg):
                session.keep_final(msg)

    def _expire(self, session: ClientSession) -> None:
        if session.link is not None:
            return
        dropped = self.queue.drop(session)
        if dropped:
            log.info("client %s gone; %d job(s) cancelled", session.client, len(dropped))
        session.forget(dropped)
        session.finals.clear()
        self.sessions.pop(session.id, None)
