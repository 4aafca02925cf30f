"""The connection to a server, for both editors: connect (starting the local server when it is down and the install
recorded how), run jobs with progress, reconnect with the transport's back-off (``protocol.Backoff``), one session id per plugin
session. Server messages arrive typed (``protocol`` classes) and are told apart by their class.

- One-shot (a GIMP procedure run): ``open_client(...)`` then ``run_job(client, job, on_status)``.
- Long-lived (Krita's panel, GIMP's live dialog): ``Connector`` runs a worker thread that owns the client; the editor
  calls ``configure``/``submit``/``cancel`` from its UI thread and gets ``Listener`` callbacks on the worker thread
  (an adapter forwards them to its UI thread: Qt signals, ``GLib.idle_add``).
Every failure becomes a ``client.errors`` exception (or a callback) whose message the painter can act on.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .errors import Cancelled, JobError, ServerStartError, ServerUnavailable
from .server import Autostart, LocalServer, is_local
from .downloads import presets_from
from .wire import client_module, make_client, protocol, result_text

START_TIMEOUT = 180.0  # a first start may import torch and scan model folders
StatusFn = Callable[[Optional[float], Optional[str]], None]

DISCONNECTED = "disconnected"
CONNECTING = "connecting"
CONNECTED = "connected"
REFUSED = "refused"


def new_session_id() -> str:
    """A client session id (``hello.session``), made once per plugin session."""
    return client_module().new_session_id()


def new_job_id(prefix: str) -> str:
    """A job id unique within this process (and very likely across processes)."""
    return client_module().new_job_id(prefix)


def describe_event(msg: "protocol.Message") -> Tuple[Optional[float], Optional[str]]:
    """(progress fraction or None, status text or None) for one job event (a typed server message)."""
    if isinstance(msg, protocol.Queued):
        ahead = msg.position
        return 0.0, f"Waiting for the server: {ahead} job{'s' if ahead != 1 else ''} ahead" if ahead else "Queued"
    if isinstance(msg, protocol.Started):
        return 0.0, "Running on the server"
    if isinstance(msg, protocol.Progress):
        total = max(1, msg.total)
        step = min(total, msg.step)
        return step / total, f"Step {step} of {total}"
    if isinstance(msg, protocol.Result):
        return 1.0, "Inserting the result"
    return None, None


def unavailable_message(url: str, reason: str) -> str:
    return (
        f"Cannot reach the Paintbridge server at {url} ({reason}). Start it with 'paintbridge serve' "
        "(or run install.py) and try again, or check the server address."
    )


def _reason(err: Exception) -> str:
    text = str(err)
    return text.split(": ", 1)[1] if text.startswith("cannot reach") and ": " in text else text


def handshake(client) -> Any:
    """Connect ``client``; returns the welcome. ConnectionFailed passes through; a refusal becomes JobError."""
    cm = client_module()
    try:
        return client.connect()
    except cm.JobFailed as err:
        client.close()
        hint = " Check the token." if err.code == "unauthorized" else ""
        raise JobError(
            err.code, f"The Paintbridge server at {client.url} refused the connection: {err}.{hint}"
        ) from None
    except protocol.ProtocolError as err:
        client.close()
        raise JobError(err.code, f"The Paintbridge server at {client.url} cannot be used: {err.message}") from None


def open_client(
    url: str,
    token: Optional[str],
    client_name: str,
    client_version: str,
    server: Optional[LocalServer] = None,
    on_status: Optional[StatusFn] = None,
    start_timeout: float = START_TIMEOUT,
    session_id: Optional[str] = None,
):
    """A connected client. A local server that is down is started with ``server`` when it has a command."""
    cm = client_module()
    client = make_client(url, token, client_name, client_version, session_id)
    try:
        handshake(client)
        return client
    except cm.ConnectionFailed as err:
        if server is None or not server.available or not is_local(url):
            raise ServerUnavailable(unavailable_message(url, _reason(err))) from None
        first_error = err
    if on_status:
        on_status(None, "Starting the Paintbridge server (the first start takes a while)")
    server.start(url, token)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if not server.running:
            raise ServerStartError(server.failure())
        time.sleep(0.5)
        try:
            handshake(client)
            return client
        except cm.ConnectionFailed:
            continue
    raise ServerUnavailable(
        unavailable_message(
            url,
            f"{_reason(first_error)}; started it, but it did not answer "
            f"within {start_timeout:.0f} s: see {server.log_path}",
        )
    )


def run_job(
    client, job: Any, on_status: Optional[StatusFn] = None, timeout: Optional[float] = None
) -> Tuple[list, dict]:
    """Run ``job`` to its end: (result layers, the parameters the server used). Failures raise PaintbridgeError."""
    result = _finished(client, job, on_status, timeout)
    if not result.layers:
        raise JobError("internal", "The server finished the job but sent no layer back.")
    return list(result.layers), dict(result.params)


def run_caption(client, job: Any, on_status: Optional[StatusFn] = None, timeout: Optional[float] = None) -> str:
    """Run a ``caption`` job to its end: the words describing the picture. Failures raise PaintbridgeError."""
    text = result_text(_finished(client, job, on_status, timeout))
    if not text:
        raise JobError("internal", "The captioner found no words for this picture.")
    return text


def _finished(client, job: Any, on_status: Optional[StatusFn], timeout: Optional[float]) -> "protocol.Result":
    """The ``result`` of ``job`` (progress to ``on_status``); a failure, cancel or lost connection raises the
    matching PaintbridgeError."""
    cm = client_module()

    def on_event(msg: "protocol.Message") -> None:
        if on_status is not None:
            fraction, text = describe_event(msg)
            if fraction is not None or text is not None:
                on_status(fraction, text)

    try:
        result = client.run(job, on_event=on_event, timeout=timeout)
    except cm.JobFailed as err:
        where = f" (field '{err.field}')" if err.field else ""
        raise JobError(err.code, f"The Paintbridge server could not do this job{where}: {err}") from None
    except cm.JobCancelled:
        raise Cancelled("The job was cancelled.") from None
    except cm.ConnectionFailed as err:
        raise ServerUnavailable(f"The connection to the Paintbridge server broke off during the job: {err}") from None
    except TimeoutError as err:
        raise ServerUnavailable(f"The Paintbridge server did not finish the job: {err}") from None
    return result


def fetch_models(
    url: str, token: Optional[str], client_name: str, client_version: str, timeout: float = 2.0
) -> Optional[List[dict]]:
    """The server's model listing, or None when it does not answer within ``timeout`` (for hints only)."""
    welcome = fetch_welcome(url, token, client_name, client_version, timeout)
    return None if welcome is None else list(welcome.models)


def fetch_welcome(
    url: str, token: Optional[str], client_name: str, client_version: str, timeout: float = 2.0
) -> Optional["protocol.Welcome"]:
    """The server's ``welcome`` (models, styles, capabilities), or None when it does not answer within ``timeout``."""
    cm = client_module()
    client = make_client(url, token, client_name, client_version, open_timeout=timeout)
    try:
        return client.connect()
    except (cm.ConnectionFailed, cm.JobFailed, protocol.ProtocolError, TimeoutError, OSError):
        return None
    finally:
        client.close()


class Listener:
    """Callbacks of a ``Connector`` (called on its worker thread); override what you need."""

    def state_changed(self, state: str, detail: str) -> None: ...
    def welcomed(self, welcome: "protocol.Welcome") -> None: ...
    def models_changed(self, models: list) -> None: ...
    def job_sent(self, job_id: str, at: float) -> None:
        """The job's frame left the plugin (``time.monotonic()`` just after it was written to the socket)."""

    def job_event(self, job_id: str, msg: "protocol.Message") -> None: ...
    def job_result(self, job_id: str, msg: "protocol.Result") -> None: ...
    def job_failed(self, job_id: str, code: str, message: str) -> None: ...
    def job_cancelled(self, job_id: str) -> None: ...
    def presets_changed(self, presets: Optional[list]) -> None:
        """The server's starter sets (``client.downloads.PresetStatus`` list) after connecting, after a pull and on
        ``Connector.refresh_presets``; None when the server cannot download models."""

    def styles_changed(self, styles: Optional["protocol.Styles"], error: str) -> None:
        """The server's styles (a ``protocol.Styles``) after connecting and after each ``Connector.styles`` request;
        ``error`` says why a save or delete was refused (the styles then are the server's, unchanged). ``styles`` is
        None when the server keeps no styles or could not answer."""

    def pull_done(self, pull_id: str, msg: "protocol.PullDone") -> None:
        """A pull (``Connector.pull``) finished; ``msg.models`` is the server's listing afterwards. Its progress comes
        through ``job_event``, a cancel through ``job_cancelled``, a failure through ``job_failed``."""


class Connector:
    """A self-healing connection to one server, owned by a worker thread.

    Jobs run one at a time in submission order. While disconnected, submitted jobs fail at once with a clear message;
    the worker reconnects with back-off (and starts the local server through ``server``/``autostart`` when allowed),
    with the same session id, and polls the model list while idle (which is also how it notices a dead server).
    A job whose connection drops goes on if the server is back within ``resume_for`` seconds (the server re-sends what
    was missed), and fails with a clear message otherwise.
    """

    HEARTBEAT = 2.0
    SERVER_WATCH = 0.5  # s between looks at the local server's process

    def __init__(
        self,
        listener: Listener,
        client_name: str,
        client_version: str,
        server: Optional[LocalServer] = None,
        autostart: Optional[Autostart] = None,
        backoff: Optional["protocol.Backoff"] = None,
        resume_for: float = 10.0,
    ) -> None:
        self.listener = listener
        self.client_name, self.client_version = client_name, client_version
        self.server, self.autostart = server, autostart
        self.backoff = backoff or protocol.Backoff()  # the transport's own policy, for reconnecting between jobs
        self.resume_for = resume_for
        self.session_id = new_session_id()
        self.state, self.detail = DISCONNECTED, "not connected"
        self.welcome: Optional["protocol.Welcome"] = None
        self._target: Tuple[str, Optional[str]] = ("", None)
        self._commands: "queue.Queue[tuple]" = queue.Queue()
        self._client = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self._autostart_lock = threading.Lock()

    # --- any thread ---------------------------------------------------------------------------------------------------
    def configure(self, url: str, token: Optional[str]) -> None:
        """Connect to ``url`` (reconnecting when it or the token changed); starts the worker on first use."""
        target = (url.strip(), token or None)
        if target == self._target and self._thread is not None:
            return
        self._target = target
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="paintbridge-session", daemon=True)
            self._thread.start()
            threading.Thread(target=self._watch_server, name="paintbridge-server-watch", daemon=True).start()
        else:
            self._commands.put(("reconnect",))

    def refresh_presets(self) -> None:
        """Ask the server again what each preset has (answered through ``Listener.presets_changed``)."""
        self._commands.put(("presets",))

    def styles(self, action: str = "list", arg: Any = None) -> None:
        """Ask for the server's styles (``list``), save one (``save``, ``arg`` a ``protocol.Style``) or delete one
        (``delete``, ``arg`` its name); answered through ``Listener.styles_changed``."""
        if action not in ("list", "save", "delete"):
            raise ValueError(f"unknown styles action {action!r}")
        self._commands.put(("styles", action, arg))

    def reconnect_now(self) -> None:
        self.backoff.reset()
        self._commands.put(("reconnect",))

    def submit(self, job: "protocol.Job") -> str:
        """Queue ``job`` (a ``protocol.Job``); returns its id. Events arrive through the listener."""
        job_id = job.id
        self._commands.put(("job", job, job_id))
        return job_id

    def pull(self, names: Sequence[str]) -> str:
        """Queue a model download onto the server's machine (``client.downloads``); returns the pull's id. Cancel it
        with ``cancel``."""
        msg = protocol.Pull(new_job_id("pull"), tuple(names))
        self._commands.put(("job", msg, msg.id))
        return msg.id

    def cancel(self, job_id: str) -> None:
        """Ask the server to cancel a job (from a short-lived thread: never blocks the caller)."""
        client = self._client
        if client is None:
            return

        def send() -> None:
            try:
                client.cancel(job_id)
            except Exception:  # noqa: BLE001 - the connection died; the job's own stream reports that
                pass

        threading.Thread(target=send, name="paintbridge-cancel", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        self._commands.put(("stop",))

    @property
    def connected(self) -> bool:
        return self.state == CONNECTED

    # --- worker thread ------------------------------------------------------------------------------------------------
    def _set_state(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail
        self.listener.state_changed(state, detail)

    def _run(self) -> None:
        cm = client_module()
        while not self._stopping:
            url, token = self._target
            if not url:
                self._set_state(DISCONNECTED, "no server address set")
                self._idle_wait(self.backoff.longest)
                continue
            self._set_state(CONNECTING, f"connecting to {url}")
            client = make_client(
                url, token, self.client_name, self.client_version, self.session_id, 3.0, self.resume_for
            )
            try:
                welcome = handshake(client)
            except JobError as err:
                self._set_state(REFUSED, str(err))
                self._idle_wait(self.backoff.longest)
                continue
            except Exception as err:  # noqa: BLE001 - ConnectionFailed, timeouts
                self._set_state(DISCONNECTED, _short(str(err)) or f"cannot reach {url}")
                self._maybe_autostart(url, token)
                self._idle_wait(self.backoff.next())
                continue
            self.backoff.reset()
            if self.autostart is not None:
                self.autostart.welcomed()
            self._client, self.welcome = client, welcome
            self.listener.welcomed(welcome)
            models = list(welcome.models)
            self.listener.models_changed(models)
            self._set_state(CONNECTED, f"connected to {url}")
            self._report_presets(client)
            self._report_styles(client, cm)
            try:
                self._serve(client, models, cm)
            finally:
                self._client = None
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing a broken connection: nothing to report
                    pass

    def _watch_server(self) -> None:
        """Restart a local server this session started as soon as its process ends, even while a job waits (the
        transport keeps reconnecting then; on the new server the lost job ends with a clear error at once)."""
        while not self._stopping:
            time.sleep(self.SERVER_WATCH)
            server = self.server
            if server is not None and server.process is not None and not server.running:
                self._maybe_autostart(*self._target)

    def _maybe_autostart(self, url: str, token: Optional[str]) -> None:
        server, policy = self.server, self.autostart
        if server is None or policy is None or not server.available or not url or not is_local(url):
            return
        with self._autostart_lock:
            if server.running or not policy.should_start(time.monotonic()):
                return
            try:
                server.start(url, token)
                self._set_state(CONNECTING, "starting the local server")
            except ServerStartError as err:
                self._set_state(DISCONNECTED, str(err))

    def _idle_wait(self, seconds: float) -> None:
        """Wait while disconnected; jobs that arrive meanwhile fail at once with a clear message."""
        try:
            cmd = self._commands.get(timeout=seconds)
        except queue.Empty:
            return
        if cmd[0] == "job":
            self.listener.job_failed(
                cmd[2], "not_connected", f"Not connected to the Paintbridge server at {self._target[0]}: {self.detail}"
            )

    def _serve(self, client, models: list, cm) -> None:
        while not self._stopping:
            try:
                cmd = self._commands.get(timeout=self.HEARTBEAT)
            except queue.Empty:
                try:
                    fresh = client.list_models(timeout=10.0)
                except Exception as err:  # noqa: BLE001 - any failure of the connection: the session reconnects
                    self._set_state(DISCONNECTED, f"lost the connection: {_short(str(err))}")
                    return
                if fresh != models:
                    models = fresh
                    self.listener.models_changed(fresh)
                continue
            if cmd[0] in ("reconnect", "stop"):
                return
            if cmd[0] == "presets":
                self._report_presets(client)
                continue
            if cmd[0] == "styles":
                self._report_styles(client, cm, cmd[1], cmd[2])
                continue
            if cmd[0] == "job" and not self._run_one(client, cmd[1], cmd[2], cm):
                return

    def _run_one(self, client, job: Any, job_id: str, cm) -> bool:
        """Run one job, reporting its events; False when the connection broke."""
        try:
            client.submit(job)
            self.listener.job_sent(job_id, time.monotonic())
            for msg in client.events(job_id):
                if isinstance(msg, protocol.Result):
                    self.listener.job_result(job_id, msg)
                elif isinstance(msg, protocol.PullDone):
                    self.listener.models_changed(list(msg.models))
                    self.listener.pull_done(job_id, msg)
                    self._report_presets(client)
                elif isinstance(msg, protocol.Cancelled):
                    self.listener.job_cancelled(job_id)
                elif isinstance(msg, protocol.Error):
                    self.listener.job_failed(job_id, msg.code, msg.message)
                else:
                    self.listener.job_event(job_id, msg)
        except cm.ConnectionFailed as err:
            self.listener.job_failed(
                job_id,
                "connection_lost",
                f"The server stopped while working on this job ({_short(str(err))}). "
                "Nothing was changed in your image.",
            )
            self._set_state(DISCONNECTED, f"lost the connection: {_short(str(err))}")
            return False
        except Exception as err:  # noqa: BLE001 - a bug or a malformed frame: report it, keep the session alive
            self.listener.job_failed(job_id, "internal", f"{type(err).__name__}: {_short(str(err))}")
        return True

    def _report_presets(self, client) -> None:
        """Tell the listener what each preset has (None: this server cannot download models, or did not say)."""
        statuses = None
        if self.welcome is not None and self.welcome.capabilities.get("pulls"):
            try:
                statuses = presets_from(client.list_presets(timeout=30.0))
            except Exception:  # noqa: BLE001 - an old or failing server: the panel says it cannot download
                statuses = None
        self.listener.presets_changed(statuses)

    def _report_styles(self, client, cm, action: str = "list", arg: Any = None) -> None:
        """Run one styles request and tell the listener the styles (None: this server keeps none, or failed)."""
        if self.welcome is None or not self.welcome.capabilities.get("styles"):
            refused = "" if action == "list" else "This server keeps no styles: update it to save or delete one."
            self.listener.styles_changed(None, refused)
            return
        error = ""
        try:
            if action == "save":
                styles = client.save_style(arg, timeout=30.0)
            elif action == "delete":
                styles = client.delete_style(arg, timeout=30.0)
            else:
                styles = client.list_styles(timeout=30.0)
        except cm.JobFailed as err:  # a refused style: say why, show the server's styles as they are
            error = str(err)
            try:
                styles = client.list_styles(timeout=30.0)
            except Exception:  # noqa: BLE001 - the connection's own failure shows at the next heartbeat
                styles = None
        except Exception as err:  # noqa: BLE001 - an old or failing server: the panel keeps what it has
            styles, error = None, _short(str(err))
        self.listener.styles_changed(styles, error)


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
