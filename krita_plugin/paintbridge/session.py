"""The panel's state and behaviour without widgets and without Krita: the session.

One ``Session`` per docker. It holds the job settings, the connection and its state, the job in flight, the results
and live mode, and it talks to Krita only through ``host`` (the document door, ``document.KritaHost``). The view binds
widgets to it: it calls the public methods below and listens to the ``Event`` attributes. Every method runs on the UI
thread; the connection's worker thread reaches the session through ``post``.
"""

from __future__ import annotations

import functools
import random
import sys
import time
import traceback
from typing import Callable, List, Optional

from . import settings_store
from .connection import CONNECTED, Connection
from .jobs import CLASSICAL, MODE_STRENGTH, MODES, JobError, Settings, build_job, build_preprocess_job, defaults_for
from .live import LiveLoop
from .model import ControlSpec, DocumentError, Event, ResultImage, RunningJob
from .placement import masked
from .progress_preview import Preview, preview_of
from .server_process import LocalServer, ServerStartError, local_address
from .wire import Box, protocol

AUTOSTART_PAUSE = 8.0
AUTOSTART_TRIES = 3


def guarded(method: Callable) -> Callable:
    """Run an action so that no exception escapes into Krita (which would open a modal dialog): say it instead."""

    @functools.wraps(method)
    def wrapper(self: "Session", *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (DocumentError, JobError, ServerStartError) as err:
            self.show_message(str(err), error=True)
        except Exception as err:  # a bug: keep Krita usable and say what happened
            traceback.print_exc(file=sys.stderr)
            self.show_message(f"Internal error ({type(err).__name__}: {err}). Details are on Krita's console.",
                              error=True)
        return None

    return wrapper


class Session:
    """Everything the Paintbridge panel knows and does, for whichever document is active."""

    def __init__(self, host, store: settings_store.Store, post: Callable[[Callable[[], None]], None],
                 schedule: Callable[[float, Callable[[], None]], None], server: Optional[LocalServer] = None) -> None:
        self.host = host
        self.store = store
        self.server = server if server is not None else LocalServer()
        self.conn_settings = settings_store.load_connection(store)
        self.settings: Settings = settings_store.load_job_settings(store)
        self.models: list = []
        self.device = ""
        self.controls: List[ControlSpec] = []
        self.job: Optional[RunningJob] = None
        self.results: List[ResultImage] = []
        self.result_job: Optional[RunningJob] = None
        self.selected_result = -1
        self.message, self.message_is_error = "", False
        self.progress = (0, "")  # percent, text
        self.last_progress = (0, 0)
        self.preview_updates = 0  # writes of a result into the document's preview layer
        self._last_autostart = -AUTOSTART_PAUSE
        self._autostart_failures = 0
        self._pending_control: Optional[int] = None
        # Signals for the view.
        self.connection_changed = Event()  # (state, detail)
        self.models_changed = Event()  # ()
        self.settings_changed = Event()  # (name, value); name "*" after a reload
        self.job_changed = Event()  # () busy, progress
        self.progress_preview = Event()  # (Preview)
        self.progress_preview_ended = Event()  # ()
        self.results_changed = Event()  # ()
        self.result_selected = Event()  # (index)
        self.message_changed = Event()  # (text, error)
        self.controls_changed = Event()  # ()
        self.status_hint = Event()  # (text, tooltip): "starting the local server…" and the like
        self.connection = Connection(self, post)
        self.live = LiveLoop(self, schedule)
        self.set_mode(self.settings.mode, strength=self.settings.strength)

    def start(self) -> None:
        """Connect to the configured server (after the view has bound itself)."""
        self.connection.configure(self.conn_settings.url, self.conn_settings.token or None)

    # --- settings -----------------------------------------------------------------------------------------------------
    def _set(self, name: str, value) -> None:
        if getattr(self.settings, name) != value:
            setattr(self.settings, name, value)
            self.settings_changed.emit(name, value)
            self.live.settings_changed()

    @guarded
    def set_mode(self, mode: str, strength: Optional[float] = None) -> None:
        """Switch to ``mode`` (generate, inpaint, img2img, outpaint, upscale); the strength goes to its default."""
        if mode not in MODES:
            raise JobError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.settings.mode = mode
        self.settings_changed.emit("mode", mode)
        self._set("strength", float(strength if strength is not None else MODE_STRENGTH[mode]))

    @guarded
    def set_prompt(self, prompt: str, negative: Optional[str] = None) -> None:
        self._set("prompt", prompt.strip())
        if negative is not None:
            self._set("negative_prompt", negative.strip())

    @guarded
    def set_option(self, name: str, value) -> None:
        """Set one job setting by its ``Settings`` name (e.g. ``steps``, ``seed``, ``random_seed``, ``extend_left``)."""
        if name in ("mode", "prompt", "negative_prompt") or not hasattr(self.settings, name):
            raise JobError(f"unknown option {name!r}")
        current = getattr(self.settings, name)
        if name == "model" and value not in self.model_names():
            raise JobError(f"{value!r} is not available for model")
        if name == "upscaler" and value not in self.upscaler_names():
            raise JobError(f"{value!r} is not available for upscaler")
        value = type(current)(value) if not isinstance(current, bool) else bool(value)
        self._set(name, value)
        if name == "model":
            self._apply_model_defaults(value)

    def model_names(self) -> List[str]:
        """The values the model option takes: "" (the default), each checkpoint, the classical engine."""
        return [""] + [m["name"] for m in self.checkpoints()] + [CLASSICAL]

    def upscaler_names(self) -> List[str]:
        return [""] + [m["name"] for m in self.models if m.get("kind") == "upscaler"]

    def checkpoints(self) -> List[dict]:
        return [m for m in self.models if m.get("kind") == "checkpoint"]

    def _model_entry(self, name: str) -> Optional[dict]:
        checkpoints = self.checkpoints()
        if name == "":
            return checkpoints[0] if checkpoints else None
        return next((m for m in checkpoints if m.get("name") == name), {"name": name})

    def _apply_model_defaults(self, name: str) -> None:
        defaults = defaults_for(self._model_entry(name))
        if defaults.steps > 1:
            self._set("steps", defaults.steps)
            self._set("cfg", defaults.cfg)
            self._set("sampler", defaults.sampler)

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
        self.conn_settings = settings_store.ConnectionSettings(
            url=url.strip() or settings_store.DEFAULT_URL, token=token,
            autostart=self.conn_settings.autostart if autostart is None else autostart)
        settings_store.save_connection(self.store, self.conn_settings)
        self._autostart_failures = 0
        self.connection.configure(self.conn_settings.url, self.conn_settings.token or None)
        self.connection.reconnect_now()

    @guarded
    def start_local_server(self) -> None:
        """Start the local server recorded by install.py for the configured address."""
        if self.server.running:
            self.show_message("The local server is already running.")
            return
        self._autostart_failures = 0
        self._last_autostart = time.monotonic()
        self.server.start(self.conn_settings.url, self.conn_settings.token or None)
        self.status_hint.emit("Starting the local server…", "")
        self.connection.reconnect_now()

    @guarded
    def on_state(self, state: str, detail: str) -> None:
        self.connection_changed.emit(state, detail)
        if state not in (CONNECTED, "connecting"):
            self._maybe_autostart(detail)
        self.job_changed.emit()

    def _maybe_autostart(self, detail: str) -> None:
        """Start (or restart) the local server when the connection fails and the painter allows it.

        At most one start per ``AUTOSTART_PAUSE`` seconds, and no more after ``AUTOSTART_TRIES`` starts that never
        reached a welcome (a broken install would otherwise restart for ever).
        """
        if not (self.conn_settings.autostart and self.server.available
                and local_address(self.conn_settings.url) is not None):
            return
        if self.server.running:
            if not self.server.ready.is_set():
                self.status_hint.emit("Starting the local server…", "")
            return
        now = time.monotonic()
        if now - self._last_autostart < AUTOSTART_PAUSE:
            return
        if self._autostart_failures >= AUTOSTART_TRIES:
            self.status_hint.emit("Not connected · the local server does not start",
                                  self.server.last_output(12) or detail)
            return
        self._last_autostart = now
        self._autostart_failures += 1
        try:
            self.server.start(self.conn_settings.url, self.conn_settings.token or None)
        except ServerStartError as err:
            self.show_message(str(err), error=True)
            return
        self.status_hint.emit("Starting the local server…", "")

    @guarded
    def on_welcome(self, welcome: dict) -> None:
        self.device = welcome.get("device", "")
        self._autostart_failures = 0

    @guarded
    def on_models(self, models: list) -> None:
        self.models = list(models or [])
        for name, choices in (("model", self.model_names()), ("upscaler", self.upscaler_names())):
            if getattr(self.settings, name) not in choices:
                self._set(name, "")
        self.models_changed.emit()
        if self.connected:
            self.connection_changed.emit(CONNECTED, self.connection.detail)

    # --- jobs ---------------------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None

    @guarded
    def run(self, live: bool = False) -> Optional[str]:
        """Start a job with the session's settings; returns its id (None when it could not start, with a message)."""
        if self.job is not None:
            self.show_message("A job is already running: wait for it or cancel it.", error=True)
            return None
        if not self.connected:
            raise JobError(f"Not connected to the Paintbridge server ({self.connection.detail}).")
        doc = self.host.active_document()
        settings = Settings.from_dict(self.settings.to_dict())
        if live:
            settings = self.live.frame_settings(settings)
        else:
            settings_store.save_job_settings(self.store, settings)
        inputs = self.host.read_inputs(doc, settings, list(self.controls))
        if live and not self.live.worth_sending(settings, inputs):
            return None
        seed = random.randrange(0, 2**31) if settings.random_seed else settings.seed
        job_id = self.connection.submit(build_job(settings, inputs, seed, previews=True))
        self.job = RunningJob(job_id, "live" if live else "job", settings, doc, self.host.active_layer_id(doc),
                              inputs.box, shape=inputs.mask if settings.mode == "generate" else None)
        self._progress(0, "Queued…")
        if not live:
            self.show_message("")
        return job_id

    @guarded
    def cancel(self) -> None:
        """Cancel the running job (the image stays as it was)."""
        if self.job is not None:
            self.connection.cancel(self.job.id)
            self._progress(self.progress[0], "Cancelling…")

    def _progress(self, value: int, text: str) -> None:
        self.progress = (value, text)
        self.job_changed.emit()

    def _current(self, job_id: str) -> Optional[RunningJob]:
        return self.job if self.job is not None and self.job.id == job_id else None

    def on_job_sent(self, job_id: str, at: float) -> None:
        job = self._current(job_id)
        if job is not None:
            job.sent = at
            if job.kind == "live":
                self.live.frame_sent(job)

    @guarded
    def on_job_event(self, job_id: str, msg: dict) -> None:
        if self._current(job_id) is None:
            return
        kind = msg["type"]
        if kind == "progress" and msg.get("total"):
            self.last_progress = (msg["step"], msg["total"])
            self._progress(int(100 * msg["step"] / max(1, msg["total"])), f"Step {msg['step']} of {msg['total']}")
        elif kind == "started":
            self._progress(self.progress[0], "Working…")
        elif kind == "queued" and msg.get("position"):
            self._progress(self.progress[0], f"Queued (position {msg['position']})")
        preview: Optional[Preview] = preview_of(msg) if kind == "progress" else None
        if preview is not None:
            self.progress_preview.emit(preview)

    @guarded
    def on_job_result(self, job_id: str, msg: dict) -> None:
        job = self._current(job_id)
        if job is None:
            return
        self.job = None
        self.progress_preview_ended.emit()
        try:
            images = [_result_image(layer) for layer in msg.get("layers", [])]
            if not images:
                raise JobError("The server returned no image.")
            if job.shape is not None:
                images = [_shaped(image, job.box, job.shape) for image in images]
            if not self.host.is_open(job.doc):
                raise JobError("The image this job was made for was closed; the result was dropped.")
            if job.kind == "preprocess":
                layer_id = self.host.insert_control_image(job.doc, images[0], f"Control: {job.control_type}",
                                                          job.above_id)
                self._attach_control(layer_id, job.control_type)
                self.show_message(f"Added a {job.control_type} control layer (hidden; its eye shows it).")
                return
            self.results, self.result_job = images, job
            self.results_changed.emit()
            self.select_result(0)
            if job.kind != "live":
                count = len(images)
                self.show_message(f"{count} result{'s' if count > 1 else ''} in {msg.get('elapsed', 0.0):.1f} s: "
                                  "pick one, then Apply or Discard.")
        finally:
            self._progress(100, "Done")
            if job.kind == "live":
                self.live.frame_ended(job, finished=True)

    @guarded
    def on_job_failed(self, job_id: str, code: str, message: str) -> None:
        self._end_unfinished_job(job_id, "Failed", message, error=True)

    @guarded
    def on_job_cancelled(self, job_id: str) -> None:
        self._end_unfinished_job(job_id, "Cancelled", "Cancelled; nothing was changed.", error=False)

    def _end_unfinished_job(self, job_id: str, status: str, message: str, error: bool) -> None:
        """A job ended without a result: reset progress, free live mode for the next job, say why."""
        job = self._current(job_id)
        if job is None:
            return
        self.job = None
        self.progress_preview_ended.emit()
        self._progress(0, status)
        if job.kind != "live" or error:
            self.show_message(message, error=error)
        if job.kind == "live":
            self.live.frame_ended(job, finished=False)

    # --- results ------------------------------------------------------------------------------------------------------
    @guarded
    def select_result(self, index: int) -> None:
        """Show result ``index`` of the batch in the preview layer."""
        if not 0 <= index < len(self.results):
            raise JobError(f"there is no result {index + 1}; the batch has {len(self.results)}")
        self.selected_result = index
        self.result_selected.emit(index)
        job = self.result_job
        if job is not None and job.settings.mode != "upscale" and self.host.is_open(job.doc):
            self.host.show_preview(job.doc, self.results[index], job.above_id)
            self.preview_updates += 1

    @guarded
    def apply(self, index: Optional[int] = None) -> bool:
        """Insert the chosen result as a new layer named after the prompt and seed; True when one was inserted."""
        job = self.result_job
        index = self.selected_result if index is None else index
        if job is None or not 0 <= index < len(self.results):
            raise JobError("There is no result to apply.")
        if not self.host.is_open(job.doc):
            raise JobError("The image this result was made for was closed.")
        image = self.results[index]
        if job.settings.mode == "upscale":
            self.host.open_as_new_document(image, f"Upscaled {image.box.width}x{image.box.height}", job.doc)
        else:
            self.host.apply_result(job.doc, image, job.settings.prompt, job.settings.mode, job.above_id)
        self._clear_results()
        self.show_message("Applied as a new layer." if job.settings.mode != "upscale"
                          else "Opened the upscaled image as a new document.")
        return True

    @guarded
    def discard(self) -> None:
        """Drop the results and remove the preview layer."""
        job = self.result_job
        if job is not None and self.host.is_open(job.doc):
            self.host.remove_preview(job.doc)
        self._clear_results()

    def _clear_results(self) -> None:
        self.results, self.result_job, self.selected_result = [], None, -1
        self.results_changed.emit()

    # --- live mode ----------------------------------------------------------------------------------------------------
    @guarded
    def set_live(self, on: bool) -> None:
        """Turn live inpainting on or off (off stops cleanly: the job in flight is cancelled, the preview stays)."""
        if on and self.settings.mode not in ("inpaint", "img2img"):
            self.set_mode("inpaint")
        self.live.switch(on)
        self.job_changed.emit()
        self.show_message("Live: change the selection or paint under it to repaint." if on else "Live mode is off.")

    # --- control layers -----------------------------------------------------------------------------------------------
    @guarded
    def add_control(self, layer_id: Optional[str] = None, type: str = "scribble", strength: float = 1.0,
                    start: float = 0.0, end: float = 1.0) -> Optional[ControlSpec]:
        """Add a control layer (``layer_id``: a node's uniqueId string; default: the active layer)."""
        if type not in protocol.CONTROL_TYPES:
            raise JobError(f"unknown control type {type!r}; choose one of {', '.join(protocol.CONTROL_TYPES)}")
        if layer_id is None:
            doc = self.host.active_document_or_none()
            layer_id = self.host.active_layer_id(doc) if doc is not None else ""
        spec = ControlSpec(layer_id or "", type, strength, start, end)
        self.controls.append(spec)
        self.controls_changed.emit()
        return spec

    @guarded
    def update_control(self, index: int, **fields) -> None:
        """Change fields of control ``index`` (layer_id, type, strength, start, end)."""
        spec = self.controls[index]
        for name, value in fields.items():
            if not hasattr(spec, name):
                raise JobError(f"a control layer has no field {name!r}")
            setattr(spec, name, value)
        self.live.settings_changed()

    @guarded
    def remove_control(self, index: int) -> None:
        if 0 <= index < len(self.controls):
            del self.controls[index]
            self.controls_changed.emit()

    def _attach_control(self, layer_id: str, control_type: str) -> None:
        index, self._pending_control = self._pending_control, None
        if index is None or not 0 <= index < len(self.controls):
            self.controls.append(ControlSpec(layer_id, control_type))
        else:
            self.controls[index].layer_id = layer_id
            self.controls[index].type = control_type
        self.controls_changed.emit()

    @guarded
    def control_from_image(self, control_type: Optional[str] = None, index: Optional[int] = None) -> Optional[str]:
        """Run a ``preprocess`` job on the image and insert the control image as a new layer."""
        if self.job is not None:
            raise JobError("A job is already running: wait for it or cancel it.")
        if not self.connected:
            raise JobError(f"Not connected to the Paintbridge server ({self.connection.detail}).")
        if control_type is None:
            control_type = self.controls[index].type if index is not None else "canny"
        doc = self.host.active_document()
        settings = Settings.from_dict(self.settings.to_dict())
        box, image = self.host.read_canvas(doc, settings)
        job_id = self.connection.submit(build_preprocess_job(control_type, box, image))
        self._pending_control = index
        self.job = RunningJob(job_id, "preprocess", settings, doc, self.host.active_layer_id(doc), box,
                              control_type=control_type)
        self._progress(0, "Preparing the control image…")
        return job_id

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


def _result_image(layer: dict) -> ResultImage:
    parsed = protocol.ResultLayer.from_wire(layer)
    data = parsed.data
    if parsed.format == protocol.RGBA8:
        data = protocol.convert_pixels(data, protocol.RGBA8, protocol.BGRA8)
    elif parsed.format != protocol.BGRA8:
        raise JobError(f"the server sent a {parsed.format} layer; expected bgra8")
    return ResultImage(Box(parsed.x, parsed.y, parsed.width, parsed.height), data, parsed.seed, parsed.name)


def _shaped(image: ResultImage, box: Box, mask: bytes) -> ResultImage:
    """A generated image cut to the selection it was made for (soft edges kept)."""
    if image.box != box:
        return image
    return ResultImage(image.box, masked(image.data, mask), image.seed, image.name)
