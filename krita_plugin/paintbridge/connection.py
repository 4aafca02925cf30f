"""The connection to the server: a worker thread owns the ``protocol.client.Client``; results reach the UI as signals.

All network I/O happens on the worker thread. The UI thread only calls ``configure``, ``submit`` and ``cancel``, which
queue commands and return at once. The worker reconnects on its own after the server goes away, and polls the model
list while idle (which is also how it notices a dead server).
"""

from __future__ import annotations

import queue
import threading
from typing import Optional

from .qt_compat import QtCore, Signal
from .wire import client_module

CLIENT_NAME = "Paintbridge for Krita"
CLIENT_VERSION = "0.1.0"
RETRY_SECONDS = 1.5
HEARTBEAT_SECONDS = 2.0

DISCONNECTED = "disconnected"
CONNECTING = "connecting"
CONNECTED = "connected"
REFUSED = "refused"


class Connection(QtCore.QObject):
    """A self-healing connection to one Paintbridge server (``configure`` points it elsewhere)."""

    state_changed = Signal(str, str)  # state, detail (a sentence for the status line)
    welcomed = Signal(object)  # the welcome map
    models_changed = Signal(object)  # list of model entries
    job_event = Signal(str, object)  # job id, queued/started/progress message
    job_result = Signal(str, object)  # job id, result message
    job_failed = Signal(str, str, str)  # job id, error code, message
    job_cancelled = Signal(str)

    def __init__(self, parent: Optional[QtCore.QObject] = None) -> None:
        super().__init__(parent)
        self._commands: "queue.Queue[tuple]" = queue.Queue()
        self._target: tuple = ("", None)
        self._client = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self.state = DISCONNECTED
        self.detail = "not connected"
        self.welcome: Optional[dict] = None
        self.state_changed.connect(self._remember_state)

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

    def _remember_state(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail

    # --- worker thread ------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        cm = client_module()
        while not self._stopping:
            url, token = self._target
            if not url:
                self.state_changed.emit(DISCONNECTED, "no server address set")
                self._idle_wait(RETRY_SECONDS)
                continue
            self.state_changed.emit(CONNECTING, f"connecting to {url}")
            client = cm.Client(url, client_name=CLIENT_NAME, client_version=CLIENT_VERSION, token=token,
                               open_timeout=3.0, resume_for=0.0)  # this worker reconnects on its own
            try:
                welcome = client.connect()
            except cm.JobFailed as err:
                self.state_changed.emit(REFUSED, f"the server at {url} refused the connection: {err}")
                self._idle_wait(RETRY_SECONDS * 4)
                continue
            except Exception as err:  # ConnectionFailed, ProtocolError (version), timeouts
                self.state_changed.emit(DISCONNECTED, _short(str(err)) or f"cannot reach {url}")
                self._idle_wait(RETRY_SECONDS)
                continue
            self._client = client
            welcome = welcome.to_wire()  # the panel reads wire maps
            self.welcome = welcome
            self.welcomed.emit(welcome)
            self.models_changed.emit(welcome.get("models", []))
            self.state_changed.emit(CONNECTED, f"connected to {url}")
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
            self.job_failed.emit(cmd[1]["id"], "not_connected",
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
                    self.state_changed.emit(DISCONNECTED, f"lost the connection: {_short(str(err))}")
                    return
                if fresh != models:
                    models = fresh
                    self.models_changed.emit(fresh)
                continue
            if cmd[0] in ("reconnect", "stop"):
                return
            if cmd[0] != "job":
                continue
            job = cmd[1]
            try:
                client.submit(job)
                for event in client.events(job["id"]):
                    msg = event.to_wire()  # the panel reads wire maps
                    kind = msg["type"]
                    if kind == "result":
                        self.job_result.emit(job["id"], msg)
                    elif kind == "cancelled":
                        self.job_cancelled.emit(job["id"])
                    elif kind == "error":
                        self.job_failed.emit(job["id"], msg["code"], msg["message"])
                    else:
                        self.job_event.emit(job["id"], msg)
            except cm.ConnectionFailed as err:
                self.job_failed.emit(job["id"], "connection_lost",
                                     f"The server stopped while working on this job ({_short(str(err))}). "
                                     "Nothing was changed in your image.")
                self.state_changed.emit(DISCONNECTED, f"lost the connection: {_short(str(err))}")
                return
            except Exception as err:  # a bug or a malformed frame: report it, keep the panel alive
                self.job_failed.emit(job["id"], "internal", f"{type(err).__name__}: {_short(str(err))}")


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
