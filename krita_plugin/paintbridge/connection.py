"""The connection to the server: a worker thread owns the ``protocol.client.Client``; events reach the UI thread
through ``post`` (in Krita a queued Qt signal, in tests a queue the test drains). No Qt here.

All network I/O happens on the worker thread. The UI thread only calls ``configure``, ``submit`` and ``cancel``, which
queue commands and return at once. The worker reconnects on its own after the server goes away, and polls the model
list while idle (which is also how it notices a dead server).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Optional, Protocol

from .wire import client_module

CLIENT_NAME = "Paintbridge for Krita"
CLIENT_VERSION = "0.1.0"
RETRY_SECONDS = 1.5
HEARTBEAT_SECONDS = 2.0

DISCONNECTED = "disconnected"
CONNECTING = "connecting"
CONNECTED = "connected"
REFUSED = "refused"


class Listener(Protocol):
    """What the connection reports; every call arrives on the UI thread (through ``post``)."""

    def on_state(self, state: str, detail: str) -> None: ...
    def on_welcome(self, welcome: dict) -> None: ...
    def on_models(self, models: list) -> None: ...
    def on_job_sent(self, job_id: str, at: float) -> None: ...
    def on_job_event(self, job_id: str, msg: dict) -> None: ...
    def on_job_result(self, job_id: str, msg: dict) -> None: ...
    def on_job_failed(self, job_id: str, code: str, message: str) -> None: ...
    def on_job_cancelled(self, job_id: str) -> None: ...


class Connection:
    """A self-healing connection to one Paintbridge server (``configure`` points it elsewhere).

    ``post(fn)`` must run ``fn`` later on the UI thread; ``listener`` gets every event there.
    """

    def __init__(self, listener: Listener, post: Callable[[Callable[[], None]], None]) -> None:
        self._listener = listener
        self._post = post
        self._commands: "queue.Queue[tuple]" = queue.Queue()
        self._target: tuple = ("", None)
        self._client = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self.state = DISCONNECTED
        self.detail = "not connected"
        self.welcome: Optional[dict] = None

    # --- UI thread API ------------------------------------------------------------------------------------------------
    def configure(self, url: str, token: Optional[str]) -> None:
        """Connect to ``url`` (reconnecting if it or the token changed); starts the worker on first use."""
        target = (url.strip(), token or None)
        if target == self._target and self._thread is not None:
            return
        self._target = target
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="paintbridge-connection", daemon=True)
            self._thread.start()
        else:
            self._commands.put(("reconnect",))

    def reconnect_now(self) -> None:
        """Skip the retry pause and try to connect at once."""
        self._commands.put(("reconnect",))

    def submit(self, job: dict) -> str:
        """Queue a job; returns its id. Events arrive through the job signals."""
        job = dict(job)
        job.setdefault("id", client_module().new_job_id("krita"))
        self._commands.put(("job", job))
        return job["id"]

    def cancel(self, job_id: str) -> None:
        """Ask the server to cancel a job (sent from a short-lived thread, never blocking the UI)."""
        client = self._client
        if client is None:
            return

        def send() -> None:
            try:
                client.cancel(job_id)
            except Exception:  # the connection died; the job's own stream reports that
                pass

        threading.Thread(target=send, name="paintbridge-cancel", daemon=True).start()

    def stop(self) -> None:
        """Stop the worker and close the connection."""
        self._stopping = True
        self._commands.put(("stop",))

    @property
    def connected(self) -> bool:
        return self.state == CONNECTED

    # --- worker thread -> UI thread -------------------------------------------------------------------------------------
    def _emit(self, name: str, *args) -> None:
        self._post(lambda: getattr(self._listener, name)(*args))

    def _state(self, state: str, detail: str) -> None:
        def deliver() -> None:
            self.state, self.detail = state, detail
            self._listener.on_state(state, detail)

        self._post(deliver)

    # --- worker thread ------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        cm = client_module()
        while not self._stopping:
            url, token = self._target
            if not url:
                self._state(DISCONNECTED, "no server address set")
                self._idle_wait(RETRY_SECONDS)
                continue
            self._state(CONNECTING, f"connecting to {url}")
            client = cm.Client(url, client_name=CLIENT_NAME, client_version=CLIENT_VERSION, token=token,
                               open_timeout=3.0)
            try:
                welcome = client.connect()
            except cm.JobFailed as err:
                self._state(REFUSED, f"the server at {url} refused the connection: {err}")
                self._idle_wait(RETRY_SECONDS * 4)
                continue
            except Exception as err:  # ConnectionFailed, ProtocolError (version), timeouts
                self._state(DISCONNECTED, _short(str(err)) or f"cannot reach {url}")
                self._idle_wait(RETRY_SECONDS)
                continue
            self._client = client
            self.welcome = welcome
            self._emit("on_welcome", welcome)
            self._emit("on_models", welcome.get("models", []))
            self._state(CONNECTED, f"connected to {url}")
            try:
                self._serve(client, welcome.get("models", []))
            finally:
                self._client = None
                try:
                    client.close()
                except Exception:
                    pass

    def _idle_wait(self, seconds: float) -> None:
        """Wait while disconnected; jobs that arrive meanwhile fail at once with a clear message."""
        try:
            cmd = self._commands.get(timeout=seconds)
        except queue.Empty:
            return
        if cmd[0] == "job":
            url = self._target[0]
            self._emit("on_job_failed", cmd[1]["id"], "not_connected",
                                 f"Not connected to the Paintbridge server at {url}: {self.detail}")

    def _serve(self, client, models: list) -> None:
        cm = client_module()
        while not self._stopping:
            try:
                cmd = self._commands.get(timeout=HEARTBEAT_SECONDS)
            except queue.Empty:
                try:
                    fresh = client.list_models(timeout=10.0)
                except Exception as err:
                    self._state(DISCONNECTED, f"lost the connection: {_short(str(err))}")
                    return
                if fresh != models:
                    models = fresh
                    self._emit("on_models", fresh)
                continue
            if cmd[0] in ("reconnect", "stop"):
                return
            if cmd[0] != "job":
                continue
            job = cmd[1]
            try:
                client.submit(job)
                self._emit("on_job_sent", job["id"], time.monotonic())
                for msg in client.events(job["id"]):
                    kind = msg["type"]
                    if kind == "result":
                        self._emit("on_job_result", job["id"], msg)
                    elif kind == "cancelled":
                        self._emit("on_job_cancelled", job["id"])
                    elif kind == "error":
                        self._emit("on_job_failed", job["id"], msg["code"], msg["message"])
                    else:
                        self._emit("on_job_event", job["id"], msg)
            except cm.ConnectionFailed as err:
                self._emit("on_job_failed", job["id"], "connection_lost",
                                     f"The server stopped while working on this job ({_short(str(err))}). "
                                     "Nothing was changed in your image.")
                self._state(DISCONNECTED, f"lost the connection: {_short(str(err))}")
                return
            except Exception as err:  # a bug or a malformed frame: report it, keep the panel alive
                self._emit("on_job_failed", job["id"], "internal", f"{type(err).__name__}: {_short(str(err))}")


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
