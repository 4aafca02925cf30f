"""Client sessions: a client's jobs outlive a dropped connection for a grace period, and a reconnect with the same
session id (``hello.session``) picks them up where they were.

A ``Link`` is one websocket connection's sending side: an outbox drained in order through the sans-I/O
``protocol.connection.Connection``. While more than ``max_bytes`` wait in it, the session's next job does not start (the
job queue holds it): a client that reads slowly is throttled, never dropped for the volume waiting; a client that reads
nothing for ``write_timeout`` s is disconnected. A ``ClientSession`` owns the client's open jobs and is attached to at
most one link; while it is detached, final messages are kept (not those of live frames) and other events are dropped. On
attach the session answers ``welcome`` with ``resumed`` = its open job ids, then re-sends each job's state: ``queued``
or ``started`` for the ones still waiting or running, the kept final message for the finished ones (whatever their size:
they are sent one after another, and the session's next job waits until they are read).

A ``FinalKeeper`` (optional; the cluster front end has one outside its process) also holds each final message of a
named session until the client confirms it, so a restarted server can ``restore`` the finished jobs of its sessions.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Awaitable, Callable, Dict, List, Optional, Protocol, Set, Tuple, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from protocol.codec import fragments
from protocol.connection import Connection
from protocol import errors
from protocol.errors import LocalProtocolError
from protocol.messages import (
    Cancelled,
    Error,
    Message,
    Progress,
    Queued,
    Result,
    Started,
    Welcome,
    error_from,
)

from . import events, payloads
from .jobs import JobQueue, QueuedJob
from .netlog import peer_of
from .outbox import Outbox, is_final

log = logging.getLogger("paintbridge.server")
T = TypeVar("T")


class FinalKeeper(Protocol):
    """Holds final messages outside the server's process until the client has them (fire-and-forget calls)."""

    def keep(self, session_id: str, client: str, msg: Message) -> None: ...

    def delivered(self, session_id: str, job_id: str) -> None: ...

    def forget(self, session_id: str) -> None: ...

    def opened(self, session_id: str, client: str, job_id: str) -> None: ...


class ClientNotReading(Exception):
    """The client does not read what the server sends it."""


class Link:
    """One connection's ordered outgoing side, bounded: a client that reads slowly is throttled, one that does not read
    is disconnected.

    The outbox coalesces progress (the newest wins) and counts bytes. While more than ``max_bytes`` wait, the session
    attached to the link starts no new job (``SessionTable.attach`` wires ``outbox.on_behind`` to the job queue), so
    results pile up no further than the jobs already running. The connection is closed with code 1008 and a reason
    when a send makes no progress for ``write_timeout`` s (the client's socket stays full), or when more than
    ``max_bytes`` of messages other than results wait (a client that keeps asking without reading the answers); what it
    held is given back (final messages go to the session, which keeps them for a reconnect like after any dropped
    connection).
    """

    def __init__(
        self, ws: ServerConnection, conn: Connection, max_bytes: int = 256 * 1024 * 1024, write_timeout: float = 60.0
    ) -> None:
        self.ws = ws
        self.conn = conn
        self.outbox = Outbox(max_bytes)
        self.write_timeout = write_timeout
        self.session: Optional["ClientSession"] = None
        self.closed_because: Optional[str] = None
        self._unsent: List[Message] = []
        self._unconfirmed: List[Message] = []  # finals written to the socket, not yet confirmed by a pong
        self.on_confirmed: Optional[Callable[[Message], None]] = None  # a final the client has for sure

    def put(self, msg: Message) -> None:
        if self.closed_because is not None:
            if is_final(msg):
                self._unsent.append(msg)  # the session keeps it when the link is unhooked
            return
        self.outbox.put(msg)
        if self.outbox.flooded:
            self.shut(
                f"the client does not read: over {self.outbox.max_bytes / (1024 * 1024):g} MiB of answers wait for it"
            )

    async def pump(self) -> None:
        """Send queued messages in order until the connection closes. A final message counts as delivered only when
        the client's websocket answers a ping sent after it: written to a socket is not received (a connection that
        drops takes what it held with it), and an unconfirmed final is kept for the session's reconnect."""
        while True:
            msg = await self.outbox.get()
            written = self.conn.shared.written if self.conn.shared is not None else 0
            try:
                if isinstance(msg, Result) and self.conn.shared is not None:
                    # (its layers are written into the shared folder: tens of MB, off the event loop)
                    frame = await asyncio.to_thread(self.conn.send_pieces, msg)
                else:
                    frame = self.conn.send_pieces(msg)
            except LocalProtocolError as err:
                log.error("not sending %s: %s", msg.type, err)  # a server bug; the connection stays usable
                continue
            except asyncio.CancelledError:
                self._keep_unsent(msg)
                raise
            if self.conn.shared is not None and self.conn.shared.written > written:
                log.info(
                    "%s %s: %d payload(s) written to shared memory",
                    msg.type,
                    getattr(msg, "id", "?"),
                    self.conn.shared.written - written,
                )
            try:
                await self._watched(self.ws.send(fragments(frame)))
                if is_final(msg):
                    self._unconfirmed.append(msg)
                    pong = await self._watched(self.ws.ping())  # its pong confirms every final sent before it
                    asyncio.ensure_future(self._confirm(pong, list(self._unconfirmed)))
            except ClientNotReading as err:
                self._keep_unsent(msg)
                self.shut(str(err))
                return
            except (ConnectionClosed, asyncio.CancelledError):
                self._keep_unsent(msg)
                raise

    def _keep_unsent(self, msg: Message) -> None:
        if all(m is not msg for m in self._unconfirmed):  # (a final whose ping failed is already kept)
            self._unsent.append(msg)

    async def _confirm(self, pong: "asyncio.Future[float]", finals: List[Message]) -> None:
        try:
            await pong
        except (ConnectionClosed, asyncio.CancelledError):
            return
        self._unconfirmed = [m for m in self._unconfirmed if all(m is not f for f in finals)]
        if self.on_confirmed is not None:
            for msg in finals:
                self.on_confirmed(msg)

    async def _watched(self, sending: Awaitable[T]) -> T:
        """Await a send (or ping) watching the socket: no byte leaving for ``write_timeout`` s is ClientNotReading."""
        task = asyncio.ensure_future(sending)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # the caller handles a closed connection
        loop = asyncio.get_running_loop()
        transport = self.ws.transport
        check = max(0.01, min(1.0, self.write_timeout / 4))
        left, since = transport.get_write_buffer_size(), loop.time()
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=check)
                if done:
                    return task.result()
                now, size = loop.time(), transport.get_write_buffer_size()
                if size < left:
                    left, since = size, now
                elif now - since >= self.write_timeout:
                    raise ClientNotReading(f"the client read nothing for {self.write_timeout:g} s")
        finally:
            if not task.done():
                task.cancel()

    def shut(self, reason: str) -> None:
        """Close the connection because of ``reason`` (once): close frame with code 1008, then the socket."""
        if self.closed_because is not None:
            return
        self.closed_because = reason
        for msg in self.outbox.drain():  # give the memory back; final messages go to the session
            if is_final(msg):
                self._unsent.append(msg)
        client = self.session.client if self.session is not None else "?"
        log.warning("closing the connection of %s (%s): %s", client, peer_of(self.ws), reason)
        asyncio.ensure_future(self._close(reason))

    async def _close(self, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(1008, reason[:120]), timeout=2.0)
        except (asyncio.TimeoutError, ConnectionClosed, OSError):
            pass
        finally:
            self.ws.transport.abort()

    def drain(self) -> List[Message]:
        """What this link did not send (it is closing): the caller keeps the final messages."""
        left = self._unconfirmed + self._unsent
        self._unconfirmed, self._unsent = [], []
        return left + self.outbox.drain()


class ClientSession:
    """A client's jobs across connections."""

    def __init__(self, session_id: str, client: str, named: bool, keeper: Optional[FinalKeeper] = None) -> None:
        self.id = session_id
        self.keeper = keeper if named else None
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

    def queued(self, item: QueuedJob) -> None:
        """``item`` was accepted into the queue: the keeper notes it open until its final message (a restarted server
        answers a job still open as lost). Live frames are not noted: their answers are never kept."""
        if self.keeper is not None and not item.live:
            self.keeper.opened(self.id, self.client, item.id)

    def forget(self, items: List[QueuedJob]) -> None:
        """These jobs were dropped (live frames of a lost connection, an expired session): no message about them."""
        for item in items:
            self.jobs.pop(item.id, None)
            self.live.discard(item.id)
            if item.running:
                self.forgotten.add(item.id)  # it stops at its next step and answers; that answer is swallowed

    async def on_event(self, event: events.Event) -> None:
        """What the queue says about one of this session's jobs, sent as its wire message."""
        await self.send(await message_of(event))

    async def send(self, msg: Message) -> None:
        """A message about one of this session's jobs or downloads (or about a request of its link)."""
        if is_final(msg):
            job_id = msg.id  # type: ignore[attr-defined]
            self.jobs.pop(job_id, None)
            if self.keeper is not None and job_id not in self.forgotten and job_id not in self.live:
                self.keeper.keep(self.id, self.client, msg)
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


async def message_of(event: events.Event) -> Message:
    """The wire message of a queue event; a result's pixels are encoded off the event loop."""
    if isinstance(event, events.Progress):
        preview = payloads.preview_payload(event.preview) if event.preview is not None else None
        return Progress(event.id, event.step, event.total, preview)
    if isinstance(event, events.Finished):
        item = event.item
        try:
            return await asyncio.to_thread(
                payloads.result_message,
                item.id,
                event.layers,
                item.result_format,
                event.seconds,
                item.job.params.as_dict(),
                event.text,
            )
        except Exception as err:  # a bug: the client still gets an answer for its job
            log.exception("could not encode the result of job %s", item.id)
            return Error(errors.INTERNAL, f"internal error: {type(err).__name__}: {err}", id=item.id)
    if isinstance(event, events.Failed):
        return error_from(event.error)
    if isinstance(event, events.Queued):
        return Queued(event.id, event.position)
    if isinstance(event, events.Started):
        return Started(event.id)
    if isinstance(event, events.Cancelled):
        return Cancelled(event.id)
    raise TypeError(f"no message for {type(event).__name__}")


class SessionTable:
    """Every session the server holds, by id; attaches links and expires detached sessions after ``grace`` s."""

    def __init__(self, queue: JobQueue, grace: float, keeper: Optional[FinalKeeper] = None) -> None:
        self.queue = queue
        self.grace = grace
        self.keeper = keeper
        self.sessions: Dict[str, ClientSession] = {}

    def restore(self, kept: Dict[str, Tuple[str, List[Message]]]) -> None:
        """Sessions with finished jobs a previous run of the server kept (``{session id: (client, finals)}``): each
        waits ``grace`` s for its client, like a session whose connection dropped."""
        for session_id, (client, finals) in kept.items():
            session = ClientSession(session_id, client, True, self.keeper)
            session.finals = {m.id: m for m in finals}  # type: ignore[attr-defined]
            self.sessions[session_id] = session
            session.expiry = asyncio.get_running_loop().call_later(self.grace, self._expire, session)
        if kept:
            log.info(
                "restored %d session(s) with %d finished job(s) kept for their clients",
                len(kept),
                sum(len(f) for _, f in kept.values()),
            )

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(18)

    def attach(self, link: Link, session_id: Optional[str], client: str, welcome: Callable[..., Welcome]) -> None:
        """Bind ``link`` to the session ``session_id`` (a new one when unknown or None) and queue its ``welcome``
        (made by ``welcome(session=..., resumed=...)``) followed by the resumed jobs' state. From now on the job queue
        holds the session's next job while the link's outbox is behind (kept results count: they wait in it too)."""
        named = session_id is not None
        session = self.sessions.get(session_id) if named else None
        if session is None:
            session = ClientSession(session_id or self.new_id(), client, named, self.keeper)
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
        link.outbox.on_behind = lambda behind: (self.queue.hold if behind else self.queue.release)(session)
        if session.keeper is not None:
            keeper, sid = session.keeper, session.id
            link.on_confirmed = lambda msg: keeper.delivered(sid, msg.id)  # type: ignore[attr-defined]
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

    def _unhook(self, link: Link) -> None:
        session = link.session
        if session is None:
            return
        session.link = None
        link.session = None
        link.outbox.on_behind = None
        self.queue.release(session)  # a detached session's results are kept, at most one per job it may hold
        for msg in link.drain():
            if is_final(msg):
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
        if session.keeper is not None:
            session.keeper.forget(session.id)
