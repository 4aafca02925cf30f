"""The panel's state and behaviour without widgets and without Krita: the session.

One ``Session`` per docker: job settings, the connection, the job in flight, results and live mode (downloads, regions,
history, references, LoRAs and styles in helpers it owns; LoRAs and styles get narrow callables, not the session). It reaches Krita only through ``host`` (``document.KritaHost``) and asks ``client`` for
every rule (boxes, job messages, defaults, names, connection, live scheduler). The view calls its methods and listens
to its ``Event`` attributes; all runs on the UI thread (the worker thread uses ``post``).
"""

from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from . import references, settings_store
from .controls import Controls
from .downloads import Downloads
from .forward import Forward
from .live import LiveLoop
from .loras import Loras
from .model import ControlSpec, DocumentError, Event, ResultImage, RunningJob
from .progress_preview import preview_of
from .regions import Regions
from .results_history import ResultsHistory
from .styles import SHOWN_FIELDS, Styles, first_installed
from .wire import client, protocol

CLIENT_NAME = "Paintbridge for Krita"
CLIENT_VERSION = "0.2.0"
PLUGIN_DIR = Path(__file__).resolve().parent
cs, cjobs, cres, cconnect = client.settings, client.jobs, client.results, client.connect


def guarded(method: Callable) -> Callable:
    """Run an action so that no exception escapes into Krita (which would open a modal dialog): say it instead."""

    @functools.wraps(method)
    def wrapper(self: "Session", *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (DocumentError, client.errors.PaintbridgeError) as err:
            self.show_message(str(err), error=True)
        except Exception as err:  # noqa: BLE001 - a bug: keep Krita usable and say what happened
            traceback.print_exc(file=sys.stderr)
            self.show_message(
                f"Internal error ({type(err).__name__}: {err}). Details are on Krita's console.", error=True
            )
        return None

    return wrapper


class Session:
    """Everything the Paintbridge panel knows and does, for whichever document is active."""

    def __init__(
        self,
        host,
        store: settings_store.Store,
        post: Callable[[Callable[[], None]], None],
        schedule: Callable[[float, Callable[[], None]], None],
        server: Optional[client.server.LocalServer] = None,
    ) -> None:
        self.host = host
        self.store = store
        self.server = (
            server
            if server is not None
            else client.server.LocalServer(client.server.read_server_command(PLUGIN_DIR), PLUGIN_DIR / "server.log")
        )
        self.conn_settings = settings_store.load_connection(store)
        self.settings: cs.Settings = settings_store.load_job_settings(store)
        self.fixed_seed = settings_store.load_fixed_seed(store)
        self.defaults = cs.Defaults()
        self.models: list = []
        self.device = ""
        self.controls = Controls(
            lambda: self.host.active_layer_id(self.host.active_document_or_none()),
            lambda: self.live.settings_changed(),
            lambda: self.downloads.presets_changed.emit(),
        )
        self.job: Optional[RunningJob] = None
        self.results: List[ResultImage] = []
        self.result_job: Optional[RunningJob] = None
        self.selected_result = -1
        self.message, self.message_is_error = "", False
        self.progress = (0, "")  # percent, text
        self.last_progress = (0, 0)
        # Signals for the view.
        self.connection_changed = Event()  # (state, detail)
        self.models_changed = Event()  # ()
        self.settings_changed = Event()  # (name, value)
        self.job_changed = Event()  # () busy, progress, live
        self.progress_preview = Event()  # (progress_preview.Preview)
        self.progress_preview_ended = Event()  # ()
        self.results_changed = Event()  # ()
        self.result_selected = Event()  # (index)
        self.message_changed = Event()  # (text, error)
        self.controls_changed = self.controls.changed  # () a control layer came or went
        self.connection = cconnect.Connector(
            Forward(self, post),
            CLIENT_NAME,
            CLIENT_VERSION,
            self.server,
            client.server.Autostart() if self.conn_settings.autostart else None,
        )
        self.live = LiveLoop(self, schedule)
        self.loras = Loras(store, lambda: self.offers().loras if self.entry() is not None else ())
        self.loras.changed.connect(self.live.settings_changed)
        self.default_styles: dict = {}  # family -> the style the server suggests first (welcome.defaults.styles)
        self.capabilities: dict = {}  # welcome.capabilities: what each model family can run (``offers``)
        self.styles = Styles(
            store,
            lambda action, arg: self.connection.styles(action, arg),
            lambda: self.default_styles,
            lambda: (self.entry() or {}).get("arch"),
        )
        self.styles.chosen_changed.connect(self._follow_style)
        self.styles.refused.connect(lambda text: self.show_message(text, error=True))
        self.result_info: dict = {}  # the last result's ``info`` and its first layer's (style, inpaint method, live)
        self.downloads = Downloads(self)
        self.regions = Regions(self)  # regions: prompts bound to layers, kept in the document
        self.history, self.references = ResultsHistory(self), references.References(self)

    def start(self) -> None:
        """Connect to the configured server (after the view has bound itself)."""
        self.connection.configure(*self.conn_settings.target())

    # --- settings -----------------------------------------------------------------------------------------------------
    def shown(self) -> cs.Settings:
        """The settings with every "default" filled from the chosen style, else from the server's ``welcome`` (what
        the widgets show)."""
        out = cs.apply_defaults(self.settings.replace(style=""), self.defaults, self.entry())
        style = self.styles.current()
        for name in SHOWN_FIELDS if style is not None else ():
            value = getattr(style, name)
            if value not in (0, "", None) and getattr(self.settings, name) in (0, 0.0, "", None):
                setattr(out, name, value)
        out.speed = self.offers().speed_runs(self.settings.speed, style.speed if style is not None else "")
        return out

    def _follow_style(self, name: str) -> None:
        """A style was chosen: its first installed checkpoint becomes the model, its values show in the widgets."""
        style = self.styles.style(name)
        model = first_installed(style, [m["name"] for m in self.checkpoints()]) if style is not None else ""
        if model and model != self.settings.model:
            self.set_option("model", model)
        shown = self.shown()
        for field in SHOWN_FIELDS + ("strength", "speed"):
            self.settings_changed.emit(field, getattr(shown, field))
        self.settings_changed.emit("style", name)
        self.live.settings_changed()

    def entry(self, model: Optional[str] = None) -> Optional[dict]:
        """The listing entry of ``model`` (default: the chosen one); None when the server does not list it."""
        return cs.model_entry(self.models, self.settings.model if model is None else model)

    def job_settings(self) -> cs.Settings:
        """The settings a job sends: the chosen style (its sampling is then the server's to fill where the painter
        left the default), the prompt followed by the tags of the LoRAs picked from the list."""
        style = self.styles.chosen if self.styles.available else ""
        speed = self.offers().speed_sent(self.settings.speed)  # a level the model cannot run is not sent (not shown)
        return self.settings.replace(prompt=self.loras.prompt(self.settings.prompt), style=style, speed=speed)

    @property
    def random_seed(self) -> bool:
        return self.settings.seed < 0

    def _set(self, name: str, value) -> None:
        if getattr(self.settings, name) != value:
            setattr(self.settings, name, value)
            self.settings_changed.emit(name, getattr(self.shown(), name))
            self.live.settings_changed()

    @guarded
    def set_mode(self, mode: str) -> None:
        """Switch to ``mode`` (generate, inpaint, img2img, outpaint, upscale, edit where the model can); the strength
        goes to its default."""
        client.modes.check_offered(mode, self.entry())
        self.settings.mode = mode
        self.settings_changed.emit("mode", mode)
        self.downloads.presets_changed.emit()
        self._set("strength", None)
        self.settings_changed.emit("strength", self.shown().strength)

    @guarded
    def set_prompt(self, prompt: str, negative: Optional[str] = None) -> None:
        self._set("prompt", prompt.strip())
        if negative is not None:
            self._set("negative_prompt", negative.strip())

    @guarded
    def set_option(self, name: str, value) -> None:
        """Set one job setting by its ``Settings`` name (e.g. ``steps``, ``seed``, ``extend_left``), or
        ``random_seed`` (the seed field's "Random" box)."""
        if name == "random_seed":
            self._set("seed", -1 if value else self.fixed_seed)
            self.settings_changed.emit("random_seed", bool(value))
            return
        if name in ("mode", "prompt", "negative_prompt") or not hasattr(self.settings, name):
            raise client.errors.JobInputError(f"unknown option {name!r}")
        client.sampling.check_choice(
            self.defaults.sampling,
            self.models,
            self.shown(),
            name,
            value,
            {"model": self.model_names, "upscaler": self.upscaler_names, "speed": lambda: self.offers().speed_levels},
        )
        if name == "seed":
            self.fixed_seed = int(value)
            settings_store.save_fixed_seed(self.store, self.fixed_seed)
            if self.random_seed:
                return
        current = getattr(self.settings, name)
        value = float(value) if isinstance(current, float) or name == "strength" else type(current)(value)
        self._set(name, value)
        if name == "model":  # the new model's family defaults
            for field in ("steps", "cfg", "sampler"):
                self._set(field, type(getattr(self.settings, field))())
                self.settings_changed.emit(field, getattr(self.shown(), field))
            self.settings_changed.emit("speed", self.shown().speed)  # the level the new model runs at
            self._leave_mode_not_offered()
        if name == "speed":
            self._show_speed(value)
        if self.settings.scheduler:  # one chosen that the sampler cannot take goes; a style's shown one stays unset
            self._set("scheduler", client.sampling.fitting_scheduler(self.defaults.sampling, self.shown()))

    def _show_speed(self, chosen: str) -> None:
        """Show the level jobs will run at; say so when the chosen style's level wins over ``chosen``."""
        runs = self.shown().speed
        self.settings_changed.emit("speed", runs)
        if runs != chosen:
            label = cs.SPEED_LABELS.get(runs, runs)
            self.show_message(f"The style '{self.styles.chosen}' runs at {label}: choose another style to change it")

    def _leave_mode_not_offered(self) -> None:
        if not client.modes.offered(self.settings.mode, self.entry()):  # e.g. edit, and the model cannot
            self.set_mode(client.modes.fallback_mode(self.entry()))  # inpaint, or the one mode the model runs

    def offers(self) -> "client.offers.Offers":
        """What the chosen model can run (modes, control types, techniques, detailer targets, regions, reference
        types, sampling options), from the server's capabilities and its current model listing."""
        caps = dict(self.capabilities)  # the welcome's, with the detectors the current listing holds (a pulled one)
        found = set(caps.get("detail_targets") or ()) | set(client.jobs.offered_detail_targets(self.models))
        caps["detail_targets"] = sorted(found)
        listing = protocol.Welcome(
            protocol=protocol.PROTOCOL_VERSION, server_version="", capabilities=caps, models=tuple(self.models)
        )
        return client.offers.offers(listing, self.settings.model)

    def model_names(self) -> List[str]:
        """The values the model option takes: "" (the server's default), each checkpoint, the classical engine."""
        return [""] + [m["name"] for m in self.checkpoints()] + [cs.CLASSICAL]

    def upscaler_names(self) -> List[str]:
        return [""] + [m["name"] for m in self.models if m.get("kind") == "upscaler"]

    def checkpoints(self) -> List[dict]:
        return [m for m in self.models if m.get("kind") == "checkpoint"]

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

    def on_state(self, state: str, detail: str) -> None:
        self.connection_changed.emit(state, detail)
        self.job_changed.emit()

    def on_welcome(self, welcome) -> None:
        self.device = welcome.device
        self.defaults = cs.Defaults.from_welcome(welcome)
        self.default_styles = dict(welcome.defaults.get("styles") or {})
        self.capabilities = dict(welcome.capabilities)

    @guarded
    def on_models(self, models: list) -> None:
        self.models = list(models or [])
        for name, choices in (
            ("model", self.model_names()),
            ("upscaler", self.upscaler_names()),
        ) + client.sampling.listed_choices(self.defaults.sampling, self.models):
            if getattr(self.settings, name) not in choices:
                self._set(name, "")
        self.models_changed.emit()
        if self.styles.available and self.connected:  # a pulled few-step LoRA makes live fast: ask again
            self.connection.styles("list")
        self._leave_mode_not_offered()
        for name in ("strength", "steps", "cfg", "sampler", "speed"):
            self.settings_changed.emit(name, getattr(self.shown(), name))
        if self.connected:
            self.connection_changed.emit(cconnect.CONNECTED, self.connection.detail)

    # --- jobs ---------------------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None

    def _check_ready(self) -> None:
        if self.job is not None:
            raise client.errors.JobInputError("A job is already running: wait for it or cancel it.")
        if not self.connected:
            raise client.errors.ServerUnavailable(
                f"Not connected to the Paintbridge server ({self.connection.detail})."
            )

    @guarded
    def run(self) -> Optional[str]:
        """Start a job with the session's settings; returns its id (None when it could not start, with a message)."""
        self._check_ready()
        settings_store.save_job_settings(self.store, self.settings)
        doc = self.host.active_document()
        settings = self.job_settings().replace(controls=self.control_settings())  # kept with the job (history)
        inputs = self.host.capture(doc, settings, list(self.controls), self.regions.sources(doc))
        job_id = self.send(doc, settings, inputs, "job")
        self.show_message("")
        return job_id

    def send(self, doc, settings: cs.Settings, inputs, kind: str) -> str:
        """Build the job for ``inputs`` read from ``doc`` and send it; the session then waits for its events."""
        job_id = cconnect.new_job_id("krita")
        job = cjobs.build_job(
            settings,
            inputs,
            self.defaults,
            self.entry(settings.model),
            job_id=job_id,
            previews=kind not in ("preprocess", "caption"),
            live=kind == "live",
        )
        self.connection.submit(job)
        self.job = RunningJob(
            job_id,
            kind,
            settings,
            doc,
            self.host.active_layer_id(doc),
            inputs.box,
            control_type=settings.preprocessor if kind == "preprocess" else "",
        )
        self._progress(
            0, {"preprocess": "Preparing the control image…", "caption": "Describing the picture…"}.get(kind, "Queued…")
        )
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
            self.live.frame_sent(job)

    @guarded
    def on_job_event(self, job_id: str, msg) -> None:
        if self.downloads.on_event(job_id, msg) or self._current(job_id) is None:
            return
        fraction, text = cconnect.describe_event(msg)
        if isinstance(msg, protocol.Progress):
            self.last_progress = (msg.step, msg.total)
        if text is not None:
            self._progress(int(100 * fraction) if fraction is not None else self.progress[0], text)
        preview = preview_of(msg)
        if preview is not None:
            self.progress_preview.emit(preview)

    @guarded
    def on_job_result(self, job_id: str, msg) -> None:
        job = self._current(job_id)
        if job is None:
            return
        self.progress_preview_ended.emit()
        try:  # the job stays "in flight" until its result is in the document (Krita may run events meanwhile)
            if job.kind == "caption":
                self._take_caption(client.wire.result_text(msg))
                return
            layers = list(msg.layers)
            if not layers:
                raise client.errors.JobError("internal", "The server returned no image.")
            names = cres.layer_names(job.settings.mode, job.settings.prompt, layers, self.defaults.layer_name_length)
            images = [
                ResultImage(cres.box_of(layer), cres.pixels_in(layer, protocol.BGRA8), layer.seed, name)
                for layer, name in zip(layers, names)
            ]
            if not self.host.is_open(job.doc):
                raise DocumentError("The image this job was made for was closed; the result was dropped.")
            if job.kind == "preprocess":
                layer_id = self.host.insert_control_image(job.doc, images[0], job.above_id)
                self.controls.attach(layer_id, job.control_type)
                self.show_message(f"Added a {job.control_type} control layer (hidden; its eye shows it).")
                return
            groups = cres.groups(layers)
            if groups:  # a decomposition: its layers go straight into a group, bottom first
                self.history.record(job, layers, names, dict(msg.params))
                for group in groups:
                    self.host.apply_group(job.doc, group.name, [images[i] for i in group.members], job.above_id)
                count = sum(len(g.members) for g in groups)
                self.show_message(f"Added {count} layers in the group '{groups[0].name}' ({msg.elapsed:.1f} s).")
                return
            self.history.record(job, layers, names, dict(msg.params))
            self.result_info = {**dict(msg.info), **dict(layers[0].info or {})}
            self.results, self.result_job = images, job
            self.results_changed.emit()
            self.select_result(0)
            if job.settings.mode != "upscale":  # an upscale is shown wrapped once it opens as a new document
                self._show_wrapped(job.settings)
            if job.kind != "live":
                count = len(images)
                elapsed = msg.elapsed
                self.show_message(
                    f"{count} result{'s' if count > 1 else ''} in {elapsed:.1f} s: pick one, then Apply or Discard."
                )
        finally:
            self.job = None
            self._progress(100, "Done")
            self.live.frame_ended(job, client.live.RESULT)

    @guarded
    def on_job_failed(self, job_id: str, code: str, message: str) -> None:
        if not self.downloads.on_failed(job_id, message):
            self._end_unfinished_job(job_id, "Failed", message, error=True)

    @guarded
    def on_job_cancelled(self, job_id: str) -> None:
        if not self.downloads.on_cancelled(job_id):
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
        self.live.frame_ended(job, client.live.FAILED if error else client.live.CANCELLED)

    # --- results ------------------------------------------------------------------------------------------------------
    @guarded
    def select_result(self, index: int) -> None:
        """Show result ``index`` of the batch in the preview layer."""
        if not 0 <= index < len(self.results):
            raise client.errors.JobInputError(f"there is no result {index + 1}; the batch has {len(self.results)}")
        self.selected_result = index
        self.result_selected.emit(index)
        job = self.result_job
        if job is not None and job.settings.mode != "upscale" and self.host.is_open(job.doc):
            self.host.show_preview(job.doc, self.results[index], job.above_id)

    @guarded
    def apply(self, index: Optional[int] = None) -> bool:
        """Insert the chosen result as a new layer (named by ``client.results``); True when one was inserted."""
        job = self.result_job
        index = self.selected_result if index is None else index
        if job is None or not 0 <= index < len(self.results):
            raise client.errors.JobInputError("There is no result to apply.")
        if not self.host.is_open(job.doc):
            raise DocumentError("The image this result was made for was closed.")
        image = self.results[index]
        if job.settings.mode == "upscale":
            self.host.open_as_new_document(image, f"Upscaled {image.box.width}x{image.box.height}", job.doc)
            self._show_wrapped(job.settings)
        else:
            self.host.apply_result(job.doc, image, job.above_id)
        self._clear_results()
        self.show_message(
            "Applied as a new layer."
            if job.settings.mode != "upscale"
            else "Opened the upscaled image as a new document."
        )
        return True

    def _show_wrapped(self, settings: cs.Settings) -> None:
        """A seamless texture (``tileable``) is shown in Krita's wrap-around mode when the painter asks for it."""
        if settings.tileable and settings.wrap_view and settings.mode in protocol.TILEABLE_MODES:
            if not self.host.show_wrap_around():
                self.show_message("Krita has no wrap-around mode here (View > Wrap Around Mode).", error=True)

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
        if on and self.settings.mode not in client.modes.LIVE_MODES:
            self.set_mode("inpaint")
        self.live.switch(on)
        self.history.keep_live_result() if not on else None  # the last live frame, not applied, stays reachable
        self.job_changed.emit()
        self.show_message("Live: change the selection or paint under it to repaint." if on else "Live mode is off.")

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

    @guarded
    def control_from_image(self, control_type: Optional[str] = None, index: Optional[int] = None) -> Optional[str]:
        """Run a ``preprocess`` job on the image (the selection's box, or the canvas) and insert the control image as
        a new layer."""
        self._check_ready()
        if control_type is None:
            control_type = self.controls[index].type if index is not None else "canny"
        doc = self.host.active_document()
        settings = self.settings.replace(mode="preprocess", preprocessor=control_type)
        inputs = self.host.capture(doc, settings, [])
        self.controls.pending = index
        return self.send(doc, settings, inputs, "preprocess")

    # --- prompt from the picture --------------------------------------------------------------------------------------
    @guarded
    def describe(self) -> Optional[str]:
        """Describe the selection (or the whole image) with the server's captioner, in the chosen caption style; the
        words replace the prompt when they arrive. Returns the job's id (None when it could not start)."""
        self._check_ready()
        doc = self.host.active_document()
        settings = self.settings.replace(mode="caption")
        inputs = self.host.capture(doc, settings, [])
        return self.send(doc, settings, inputs, "caption")

    def _take_caption(self, text: str) -> None:
        if not text:
            raise client.errors.JobError("internal", "The captioner found no words for this picture.")
        self._set("prompt", text)
        settings_store.save_job_settings(self.store, self.settings)
        self.show_message("The prompt now describes the picture: edit it, then Generate.")

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
