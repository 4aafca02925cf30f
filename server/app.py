"""The websocket application: handshake, message dispatch, client sessions, the job worker.

Each connection runs a sans-I/O ``protocol.connection.Connection`` (validation and the order rules) and a
``sessions.Link`` (its ordered outbox); jobs belong to a ``sessions.ClientSession``, which outlives the connection for
``config.grace`` seconds so a client that reconnects with the same session id gets what it missed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import http
import logging
import threading
from typing import Callable, Dict, List, Optional, Tuple

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from protocol import errors, shared
from protocol.connection import SERVER, Connection
from protocol.errors import ProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
    Cancel,
    Error,
    Hello,
    Job as JobMessage,
    ListModels,
    ListPresets,
    Message,
    Models,
    Pull,
    Welcome,
    error_from,
)

from . import __version__
from .access import AccessRules, GuessThrottle
from .config import ServerConfig, is_loopback
from .defaults import welcome_defaults, with_family
from .router import Router
from .jobs import JobQueue, QueuedJob
from .payloads import job_from_message
from .inflight import BudgetedConnection, FrameBudget, connection_factory
from .netlog import NetworkLog, peer_of
from .pulls import PullManager
from .sessions import FinalKeeper, Link, SessionTable

log = logging.getLogger("paintbridge.server")


class PaintbridgeServer:
    """The server: accepts connections, checks the handshake, validates and queues jobs."""

    def __init__(self, config: ServerConfig, router: Optional[Router] = None) -> None:
        config.validate()
        self.config = config
        self.router = router or Router(config)
        self.queue: Optional[JobQueue] = None
        self.sessions: Optional[SessionTable] = None
        self.keeper: Optional[FinalKeeper] = None  # keeps finals outside this process (cluster mode)
        self.kept: Dict[str, Tuple[str, List[Message]]] = {}  # what a previous run kept, restored at start
        self.device = ""
        self.dtypes: dict = {}  # welcome.dtypes
        self.access = AccessRules(config.host, config.allow_origins, config.allow_hosts)
        self.throttle = GuessThrottle(config.guess_delay, config.guess_delay_max)
        self.pulls = PullManager(config.model_dirs, self.router.rescan, self.models)
        self.budget = FrameBudget(config.limits.max_bytes_in_flight)  # incoming frame bytes, all connections

    def models(self) -> List[dict]:
        """The model listing for the wire, each entry with its ``family``; without ``path`` (where the user's files
        are is nobody else's business: no client uses it, and a remote client must not learn it)."""
        return [{k: v for k, v in m.items() if k != "path"} for m in with_family(self.router.models())]

    def check_request(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        """websockets' ``process_request`` hook: refuse a browser ``Origin`` that is not allowed and a ``Host`` that
        is not this server (DNS rebinding) with 403 and the reason, before any websocket message."""
        reason = self.access.refusal(request.headers.get_all("Origin"), request.headers.get_all("Host"))
        if reason is None:
            return None
        log.warning("refused connection from %s: %s", peer_of(connection), reason)
        return connection.respond(http.HTTPStatus.FORBIDDEN, reason + "\n")

    async def _check_token(self, ws: ServerConnection, hello: Hello) -> None:
        """Compare the token; wrong tokens from one address are answered ever more slowly (``GuessThrottle``)."""
        if self.config.token is None:
            return
        address = str(ws.remote_address[0]) if ws.remote_address else "?"
        async with self.throttle.lock(address):
            wait = self.throttle.wait_time(address)
            if wait > 0:
                await asyncio.sleep(wait)
            if not hmac.compare_digest((hello.token or "").encode(), self.config.token.encode()):
                delay = self.throttle.failed(address)
                raise ProtocolError(
                    errors.UNAUTHORIZED,
                    "wrong or missing token: this server requires the token it was started with"
                    + (f" (the next try from this address is checked after {delay:g} s)" if delay >= 1 else ""),
                )
            self.throttle.succeeded(address)

    def welcome(self, session: Optional[str] = None, resumed: tuple = ()) -> Welcome:
        return Welcome(
            protocol=PROTOCOL_VERSION,
            server_version=__version__,
            device=self.device,
            models=tuple(self.models()),
            capabilities=dict(self.router.capabilities(), pulls=True),
            limits=self.config.limits,
            defaults=welcome_defaults(),
            session=session,
            resumed=resumed,
            dtypes=self.dtypes,
        )

    def _shared_folder(self, ws: ServerConnection, hello: Hello) -> Optional[shared.SharedFolder]:
        """A private folder for this connection's payloads when the client asked for one and connected over
        loopback (so it shares this machine; ``SharedFolder.join`` on its side checks it is the same user)."""
        address = ws.remote_address
        peer = str(address[0]) if isinstance(address, tuple) and address else ""
        if not (hello.shared_memory and self.config.shared_memory and shared.AVAILABLE and is_loopback(peer)):
            return None
        try:
            return shared.SharedFolder.create()
        except OSError as err:
            log.warning("no shared folder for %s (payloads go on the wire): %s", peer_of(ws), err)
            return None

    async def _handshake(self, ws: BudgetedConnection, link: Link) -> Optional[Hello]:
        """Read and check ``hello``; on success the session is attached and ``welcome`` queued. Every refusal is
        answered with an ``error`` message."""
        conn = link.conn
        try:
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=self.config.handshake_timeout)
            except asyncio.TimeoutError:
                raise ProtocolError(
                    errors.BAD_REQUEST, f"no 'hello' within {self.config.handshake_timeout:g} s"
                ) from None
            ws.taken()
            try:
                (hello,) = conn.receive_data(frame)
            finally:
                ws.handled(frame)
            assert isinstance(hello, Hello)
            await self._check_token(ws, hello)
            base = await asyncio.to_thread(self.welcome)
        except ProtocolError as err:
            err.job_id = None
            log.info("refused connection from %s in the handshake: %s: %s", peer_of(ws), err.code, err.message)
            await ws.send(conn.send(error_from(err)))
            return None
        except ConnectionClosed:
            raise
        except Exception as err:  # a bug: still an error message, never a bare 1011
            log.exception("handshake failed")
            await ws.send(
                conn.send(Error(errors.INTERNAL, f"internal error in the handshake: {type(err).__name__}: {err}"))
            )
            return None
        client = f"{hello.client} {hello.client_version}".strip()
        conn.shared = self._shared_folder(ws, hello)
        folder = conn.shared.path if conn.shared is not None else None

        def welcome(session: str, resumed: tuple) -> Welcome:
            return dataclasses.replace(base, session=session, resumed=resumed, shared_folder=folder)

        self.sessions.attach(link, hello.session, client, welcome)
        return hello

    async def handler(self, ws: BudgetedConnection) -> None:
        link = Link(ws, Connection(SERVER, self.config.limits), self.config.max_outbox_bytes, self.config.write_timeout)
        try:
            hello = await self._handshake(ws, link)
        except ConnectionClosed:
            return
        if hello is None:
            await ws.close(1008, "handshake refused")
            return
        pump = asyncio.create_task(link.pump())
        try:
            async for frame in ws:
                ws.taken()
                try:
                    await self._dispatch(link, frame)
                finally:
                    ws.handled(frame)
        except ConnectionClosed:
            pass
        finally:
            pump.cancel()
            try:
                await pump
            except (asyncio.CancelledError, ConnectionClosed):
                pass
            self.sessions.detach(link)
            if link.conn.shared is not None:
                link.conn.shared.remove()

    async def _dispatch(self, link: Link, frame) -> None:
        session = link.session
        msg = None
        try:
            before = link.conn.shared.read if link.conn.shared is not None else 0
            (msg,) = link.conn.receive_data(frame)
            if session is None:  # replaced by a newer connection of the same session
                return
            if link.conn.shared is not None and link.conn.shared.read > before:
                log.info(
                    "job %s: %d payload(s) read from shared memory",
                    getattr(msg, "id", "?"),
                    link.conn.shared.read - before,
                )
            if isinstance(msg, JobMessage):
                job = job_from_message(msg)
                item = QueuedJob(job, session, msg.result_format, live=msg.live)
                session.add(item)
                try:
                    await self.queue.submit(item)
                except BaseException:  # refused (busy) or a bug: the job is not held, its answer carries its id
                    self.queue.withdraw(item)
                    session.jobs.pop(item.id, None)
                    raise
                session.queued(item)
            elif isinstance(msg, Pull):  # model downloads: server/pulls.py
                session.add(await self.pulls.start(session, msg))
            elif isinstance(msg, ListPresets):
                link.put(await asyncio.to_thread(self.pulls.presets))
            elif isinstance(msg, Cancel):
                if not await self.queue.cancel(session, msg.id) and not self.pulls.cancel(session, msg.id):
                    raise ProtocolError(errors.BAD_REQUEST, f"no queued or running job with id {msg.id!r}", field="id")
            elif isinstance(msg, ListModels):
                await asyncio.to_thread(self.router.rescan)
                link.put(Models(tuple(self.models())))
        except ProtocolError as err:
            link.put(error_from(err))
        except Exception as err:  # a bug: answer it and keep the connection
            log.exception("could not handle a message")
            job_id = (
                msg.id
                if isinstance(msg, JobMessage)
                and session is not None
                and msg.id not in session.jobs
                and link.conn.is_open(msg.id)
                else None
            )
            link.put(Error(errors.INTERNAL, f"internal error: {type(err).__name__}: {err}", id=job_id))

    async def prepare(self) -> None:
        """Before listening: the device description and the job queue (the cluster front end connects its pool)."""
        await asyncio.to_thread(self.router.calibrate)
        self.device = await asyncio.to_thread(self.router.device_description)
        if self.config.shared_memory and shared.AVAILABLE:
            swept = await asyncio.to_thread(shared.sweep)
            if swept:
                log.info("removed %d shared folder(s) left by server processes that are gone", swept)
        self.dtypes = await asyncio.to_thread(self.router.dtype_report)
        self.queue = JobQueue(self.router.run, self.config.limits.max_queue)
        if self.config.preload:
            threading.Thread(target=self.router.preload, name="paintbridge-preload", daemon=True).start()

    async def run(self, on_ready: Optional[Callable[[int], None]] = None, stop: Optional[asyncio.Event] = None) -> None:
        """Serve until ``stop`` is set (forever without one); ``on_ready(port)`` is called once listening."""
        await self.prepare()
        self.sessions = SessionTable(self.queue, self.config.grace, self.keeper)
        self.sessions.restore(self.kept)
        worker = asyncio.create_task(self.queue.worker())
        async with serve(
            self.handler,
            self.config.host,
            self.config.port,
            max_size=self.config.limits.max_frame_bytes,
            compression=None,
            process_request=self.check_request,
            create_connection=connection_factory(self.budget),
            logger=NetworkLog(logging.getLogger("paintbridge.network")),
        ) as server:
            if on_ready is not None:
                on_ready(next(iter(server.sockets)).getsockname()[1])
            await (stop.wait() if stop is not None else asyncio.Future())
        worker.cancel()
        self.queue.stop_running()


class ServerThread:
    """Run a server in a background thread (tests, the CLI's self-started server). Use as a context manager."""

    def __init__(
        self, config: ServerConfig, router: Optional[Router] = None, server: Optional[PaintbridgeServer] = None
    ) -> None:
        self.server = server or PaintbridgeServer(config, router)
        self.port = 0
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._error: Optional[BaseException] = None

    @property
    def url(self) -> str:
        return f"ws://{self.server.config.host}:{self.port}"

    def start(self, timeout: float = 120.0) -> "ServerThread":
        ready, bound = threading.Event(), []

        def on_ready(port: int) -> None:
            bound.append(port)
            ready.set()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._stop = asyncio.Event()
            try:
                self._loop.run_until_complete(self.server.run(on_ready, self._stop))
            except BaseException as err:  # noqa: BLE001 - reported by start()
                self._error = err
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=main, name="paintbridge-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the server did not start in time")
        if self._error is not None:
            raise self._error
        self.port = bound[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
