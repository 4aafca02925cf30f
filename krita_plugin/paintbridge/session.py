"""The panel's state and behaviour without widgets and without Krita: the session, a small facade over its parts.

One ``Session`` per docker. Each concern is a part of its own that gets narrow callables or parts, never the session:
``binding`` (``settings_binding``: the job settings, the server's listing they are checked against, persistence),
``jobs`` (``jobs``: submitting, progress, the results strip, the hand-off to the history), ``live`` (``live``: live
mode's loop), ``controls``, ``loras`` and ``styles``; downloads, regions, history and references are its helpers too.
The session holds the connection and the message line, wires the parts together and is the one object the widgets
talk to: its attributes below are the parts' own (read and written there). It reaches Krita only through ``host``
(``document.KritaHost``) and asks ``client`` for every rule; all runs on the UI thread (the worker thread uses
``post``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Tuple

from . import references, settings_store
from .controls import Controls
from .downloads import Downloads
from .forward import Forward
from .guard import guarded
from .jobs import Jobs
from .live import LiveLoop
from .loras import Loras
from .model import ControlSpec, Event
from .regions import Regions
from .results_history import ResultsHistory
from .settings_binding import SettingsBinding
from .styles import Styles
from .wire import client

CLIENT_NAME = "Paintbridge for Krita"
CLIENT_VERSION = "0.2.0"
PLUGIN_DIR = Path(__file__).resolve().parent
cs, cconnect = client.settings, client.connect


class _Part:
    """An attribute of the session that is one of its parts' (read and written there)."""

    def __init__(self, part: str) -> None:
        self.part, self.name = part, ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, session, owner=None):
        return self if session is None else getattr(getattr(session, self.part), self.name)

    def __set__(self, session, value) -> None:
        setattr(getattr(session, self.part), self.name, value)


class Session:
    """Everything the Paintbridge panel knows and does, for whichever document is active."""

    # The settings binding's: the job settings and the server's listing.
    settings = _Part("binding")
    fixed_seed = _Part("binding")
    random_seed = _Part("binding")
    store = _Part("binding")
    defaults = _Part("binding")
    models = _Part("binding")
    device = _Part("binding")
    capabilities = _Part("binding")
    default_styles = _Part("binding")
    shown = _Part("binding")
    entry = _Part("binding")
    job_settings = _Part("binding")
    offers = _Part("binding")
    style_speed = _Part("binding")
    model_names = _Part("binding")
    upscaler_names = _Part("binding")
    checkpoints = _Part("binding")
    set_mode = _Part("binding")
    set_prompt = _Part("binding")
    set_option = _Part("binding")
    # The jobs': the job in flight and the results strip.
    job = _Part("jobs")
    busy = _Part("jobs")
    progress = _Part("jobs")
    last_progress = _Part("jobs")
    results = _Part("jobs")
    result_job = _Part("jobs")
    selected_result = _Part("jobs")
    result_info = _Part("jobs")
    run = _Part("jobs")
    describe = _Part("jobs")
    control_from_image = _Part("jobs")
    send = _Part("jobs")
    cancel = _Part("jobs")
    select_result = _Part("jobs")
    apply = _Part("jobs")
    discard = _Part("jobs")

    def __init__(
        self,
        host,
        store: settings_store.Store,
        post: Callable[[Callable[[], None]], None],
        schedule: Callable[[float, Callable[[], None]], None],
        server: Optional[client.server.LocalServer] = None,
    ) -> None:
        self.host = host
        self.server = (
            server
            if server is not None
            else client.server.LocalServer(client.server.read_server_command(PLUGIN_DIR), PLUGIN_DIR / "server.log")
        )
        self.conn_settings = settings_store.load_connection(store)
        self.message, self.message_is_error = "", False
        self.connection_changed = Event()  # (state, detail)
        self.message_changed = Event()  # (text, error)
        self.binding = SettingsBinding(
            store,
            lambda: self.styles.current(),
            lambda: self.styles.chosen if self.styles.available else "",
            lambda prompt: self.loras.prompt(prompt),
            lambda: self.live.settings_changed(),
            lambda: self.downloads.presets_changed.emit(),
            self.show_message,
        )
        self.controls = Controls(
            lambda: host.active_layer_id(host.active_document_or_none()),
            lambda: self.live.settings_changed(),
            lambda: self.downloads.presets_changed.emit(),
        )
        self.connection = cconnect.Connector(
            Forward(self, post),
            CLIENT_NAME,
            CLIENT_VERSION,
            self.server,
            client.server.Autostart() if self.conn_settings.autostart else None,
        )
        self.jobs = Jobs(
            host,
            self.connection,
            self.binding,
            self.controls,
            lambda doc: self.regions.sources(doc),
            lambda *job_results: self.history.record(*job_results),
            self.show_message,
        )
        self.live = LiveLoop(
            host, self.jobs, lambda: self.binding.settings, self.binding.job_settings, self.show_message, schedule
        )
        self.jobs.sent.connect(self.live.frame_sent)
        self.jobs.ended.connect(self.live.frame_ended)
        self.loras = Loras(store, lambda: self.offers().loras if self.entry() is not None else ())
        self.loras.changed.connect(self.live.settings_changed)
        self.styles = Styles(
            store,
            lambda action, arg: self.connection.styles(action, arg),
            lambda: self.binding.default_styles,
            lambda: (self.entry() or {}).get("arch"),
        )
        self.styles.chosen_changed.connect(lambda name: self.binding.follow_style(name, self.styles.style(name)))
        self.styles.refused.connect(lambda text: self.show_message(text, error=True))
        touched = self.live.settings_changed
        self.downloads = Downloads(
            self.connection,
            lambda: (self.settings.mode, self.controls[0].type if self.controls else ""),
            self.show_message,
        )
        self.regions = Regions(host, touched, self.show_message)  # prompts bound to layers, kept in the document
        self.history = ResultsHistory(host, self.binding, self.jobs, self._put_back, self.show_message)
        self.references = references.References(self.binding, host, self.regions, touched, self.show_message)
        # Signals for the view: the parts' own.
        self.settings_changed = self.binding.changed  # (name, value)
        self.models_changed = self.binding.models_changed  # ()
        self.job_changed = self.jobs.changed  # () busy, progress, live
        self.progress_preview = self.jobs.preview  # (progress_preview.Preview)
        self.progress_preview_ended = self.jobs.preview_ended  # ()
        self.results_changed = self.jobs.results_changed  # ()
        self.result_selected = self.jobs.result_selected  # (index)
        self.controls_changed = self.controls.changed  # () a control layer came or went

    def start(self) -> None:
        """Connect to the configured server (after the view has bound itself)."""
        self.connection.configure(*self.conn_settings.target())

    # --- connection ---------------------------------------------------------------------------------------------------
    @property
    def connection_state(self) -> str:
        return self.connection.state

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @guarded
    def set_server(self, url: str, token: str = "", autostart: Optional[bool] = None) -> None:
        """Point the session at another server (kept in the host's settings) and connect at once."""
        conn = self.conn_settings
        conn.remember(url or settings_store.DEFAULT_URL, token)
        if autostart is not None:
            conn.autostart = autostart
        settings_store.save_connection(self.store, conn)
        self.connection.autostart = client.server.Autostart() if conn.autostart else None
        self.connection.configure(*conn.target())
        self.connection.reconnect_now()

    @guarded
    def start_local_server(self) -> None:
        """Start the local server recorded by install.py for the configured address."""
        if self.server.running:
            self.show_message("The local server is already running.")
            return
        url, token = self.conn_settings.target()
        if not client.server.is_local(url):
            raise client.errors.AddressError(f"{url} is not on this machine; start that server where it runs")
        self.server.start(url, token)
        self.connection_changed.emit("connecting", "starting the local server")
        self.connection.reconnect_now()

    # The connection's callbacks (``Forward`` brings them to the UI thread): a download's go to ``downloads``.
    def on_state(self, state: str, detail: str) -> None:
        self.connection_changed.emit(state, detail)
        self.job_changed.emit()

    def on_welcome(self, welcome) -> None:
        self.binding.on_welcome(welcome)

    @guarded
    def on_models(self, models: list) -> None:
        self.binding.take_models(models)
        self.models_changed.emit()
        if self.styles.available and self.connected:  # a pulled few-step LoRA makes live fast: ask again
            self.connection.styles("list")
        self.binding.leave_mode_not_offered()
        for name in ("strength", "steps", "cfg", "sampler", "speed"):
            self.settings_changed.emit(name, getattr(self.shown(), name))
        if self.connected:
            self.connection_changed.emit(cconnect.CONNECTED, self.connection.detail)

    def on_job_sent(self, job_id: str, at: float) -> None:
        self.jobs.on_sent(job_id, at)

    @guarded
    def on_job_event(self, job_id: str, msg) -> None:
        if not self.downloads.on_event(job_id, msg):
            self.jobs.on_event(job_id, msg)

    @guarded
    def on_job_result(self, job_id: str, msg) -> None:
        self.jobs.on_result(job_id, msg)

    @guarded
    def on_job_failed(self, job_id: str, code: str, message: str) -> None:
        if not self.downloads.on_failed(job_id, message):
            self.jobs.on_failed(job_id, message)

    @guarded
    def on_job_cancelled(self, job_id: str) -> None:
        if not self.downloads.on_cancelled(job_id):
            self.jobs.on_cancelled(job_id)

    # --- live mode ----------------------------------------------------------------------------------------------------
    @guarded
    def set_live(self, on: bool) -> None:
        """Turn live inpainting on or off (off stops cleanly: the job in flight is cancelled, the preview stays)."""
        if on and self.settings.mode not in client.modes.LIVE_MODES:
            self.set_mode("inpaint")
        self.live.switch(on)
        self.history.keep_live_result() if not on else None  # the last live frame, not applied, stays reachable
        self.job_changed.emit()
        self.show_message("Live: change the selection or paint under it to repaint." if on else "Live mode is off.")

    def _put_back(self, kept: cs.Settings, controls: Optional[tuple]) -> None:
        """Put a kept job's settings (with ``controls``, its control layers, unless None) back in the panel (results
        history: "reuse settings")."""
        self.set_mode(kept.mode)
        if controls is not None:
            self.controls.restore(controls)
        kept.controls = ()  # the panel keeps its control layers itself
        self.settings = kept
        self.references.changed.emit()  # the job's reference images are the panel's again
        self.binding.show_all()
        if not self.message_is_error:
            self.show_message("The panel has this result's settings and seed again.")

    # --- control layers (``controls.Controls``; these are the view's doors to it, errors said in the panel) ----------
    @guarded
    def add_control(
        self,
        layer_id: Optional[str] = None,
        type: str = "scribble",
        strength: float = 1.0,
        start: float = 0.0,
        end: float = 1.0,
    ) -> Optional[ControlSpec]:
        """Add a control layer (``layer_id``: a node's uniqueId string; default: the active layer)."""
        return self.controls.add(layer_id, type, strength, start, end)

    @guarded
    def update_control(self, index: int, **fields) -> None:
        """Change fields of control ``index`` (layer_id, type, strength, start, end)."""
        self.controls.update(index, **fields)

    def control_settings(self) -> Tuple["cs.ControlSetting", ...]:
        """The control layers as a job's settings keep them (``client.settings.ControlSetting``, by uniqueId)."""
        return self.controls.settings()

    def set_controls(self, kept) -> None:
        """Put kept control layers (``ControlSetting`` s, results history: "reuse settings") back in the panel."""
        self.controls.restore(kept)

    @guarded
    def remove_control(self, index: int) -> None:
        self.controls.remove(index)

    # --- messages and shutdown ----------------------------------------------------------------------------------------
    def show_message(self, text: str, error: bool = False) -> None:
        """Show a message in the panel (errors in red); never a dialog."""
        self.message, self.message_is_error = text, error and bool(text)
        self.message_changed.emit(self.message, self.message_is_error)

    def shutdown(self) -> None:
        """Stop live mode, the connection and a server this session started."""
        self.live.switch(False)
        self.connection.stop()
        self.server.stop(timeout=3.0)
