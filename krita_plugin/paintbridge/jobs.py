"""The panel's jobs and results, without widgets and without Krita: submitting a job read from the document, its
progress and previews, the results strip (select, apply, discard) and the hand-off of finished results to the history.
Owned by the ``Session`` (``session.jobs``) with narrow parts instead of the session: the document door (``host``),
the connection, the settings binding, the control layers, the regions' sources, the history's ``record`` and the
panel's message line. Live mode hears of each job through ``sent(job)`` and ``ended(job, outcome)``."""

from __future__ import annotations

from typing import Callable, List, Optional

from .guard import guarded
from .model import DocumentError, Event, ResultImage, RunningJob
from .progress_preview import preview_of
from .wire import client, protocol

cs, cjobs, cres, cconnect = client.settings, client.jobs, client.results, client.connect
FIRST_WORDS = {"preprocess": "Preparing the control image…", "caption": "Describing the picture…"}


class Jobs:
    """The job in flight (at most one) and the last job's results; every change is an ``Event`` for the view."""

    def __init__(
        self,
        host,
        connection: "cconnect.Connector",
        binding,
        controls,
        region_sources: Callable[[object], list],
        record: Callable[[RunningJob, list, List[str], dict], None],
        show_message: Callable[..., None],
    ) -> None:
        self.host, self.connection, self.binding, self.controls = host, connection, binding, controls
        self._region_sources, self._record, self.show_message = region_sources, record, show_message
        self.job: Optional[RunningJob] = None
        self.results: List[ResultImage] = []
        self.result_job: Optional[RunningJob] = None
        self.selected_result = -1
        self.result_info: dict = {}  # the last result's ``info`` and its first layer's (style, inpaint method, live)
        self.progress = (0, "")  # percent, text
        self.last_progress = (0, 0)
        self.changed = Event()  # () busy, progress, live
        self.preview = Event()  # (progress_preview.Preview)
        self.preview_ended = Event()  # ()
        self.results_changed = Event()  # ()
        self.result_selected = Event()  # (index)
        self.sent = Event()  # (RunningJob) it left the plugin
        self.ended = Event()  # (RunningJob, client.live RESULT / FAILED / CANCELLED)

    @property
    def busy(self) -> bool:
        return self.job is not None

    @property
    def connected(self) -> bool:
        return self.connection.connected

    def check_ready(self) -> None:
        if self.job is not None:
            raise client.errors.JobInputError("A job is already running: wait for it or cancel it.")
        if not self.connected:
            raise client.errors.ServerUnavailable(
                f"Not connected to the Paintbridge server ({self.connection.detail})."
            )

    def capture(self, doc, settings: cs.Settings):
        """Read a job's inputs from ``doc``: the context, the control layers and the regions."""
        return self.host.capture(doc, settings, list(self.controls), self._region_sources(doc))

    @guarded
    def run(self) -> Optional[str]:
        """Start a job with the panel's settings; returns its id (None when it could not start, with a message)."""
        self.check_ready()
        self.binding.save()
        doc = self.host.active_document()
        settings = self.binding.job_settings().replace(controls=self.controls.settings())  # kept with the job
        job_id = self.send(doc, settings, self.capture(doc, settings), "job")
        self.show_message("")
        return job_id

    @guarded
    def control_from_image(self, control_type: Optional[str] = None, index: Optional[int] = None) -> Optional[str]:
        """Run a ``preprocess`` job on the image (the selection's box, or the canvas) and insert the control image as
        a new layer."""
        self.check_ready()
        if control_type is None:
            control_type = self.controls[index].type if index is not None else "canny"
        doc = self.host.active_document()
        settings = self.binding.settings.replace(mode="preprocess", preprocessor=control_type)
        inputs = self.host.capture(doc, settings, [])
        self.controls.pending = index
        return self.send(doc, settings, inputs, "preprocess")

    @guarded
    def describe(self) -> Optional[str]:
        """Describe the selection (or the whole image) with the server's captioner, in the chosen caption style; the
        words replace the prompt when they arrive. Returns the job's id (None when it could not start)."""
        self.check_ready()
        doc = self.host.active_document()
        settings = self.binding.settings.replace(mode="caption")
        inputs = self.host.capture(doc, settings, [])
        return self.send(doc, settings, inputs, "caption")

    def send(self, doc, settings: cs.Settings, inputs, kind: str) -> str:
        """Build the job for ``inputs`` read from ``doc`` and send it; then wait for its events."""
        job_id = cconnect.new_job_id("krita")
        job = cjobs.build_job(
            settings,
            inputs,
            self.binding.defaults,
            self.binding.entry(settings.model),
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
        self._progress(0, FIRST_WORDS.get(kind, "Queued…"))
        return job_id

    @guarded
    def cancel(self) -> None:
        """Cancel the running job (the image stays as it was)."""
        if self.job is not None:
            self.connection.cancel(self.job.id)
            self._progress(self.progress[0], "Cancelling…")

    def _progress(self, value: int, text: str) -> None:
        self.progress = (value, text)
        self.changed.emit()

    def _current(self, job_id: str) -> Optional[RunningJob]:
        return self.job if self.job is not None and self.job.id == job_id else None

    # --- the connection's callbacks (the session hands over those that are not a download's) --------------------------
    def on_sent(self, job_id: str, at: float) -> None:
        job = self._current(job_id)
        if job is not None:
            job.sent = at
            self.sent.emit(job)

    def on_event(self, job_id: str, msg) -> None:
        if self._current(job_id) is None:
            return
        fraction, text = cconnect.describe_event(msg)
        if isinstance(msg, protocol.Progress):
            self.last_progress = (msg.step, msg.total)
        if text is not None:
            self._progress(int(100 * fraction) if fraction is not None else self.progress[0], text)
        preview = preview_of(msg)
        if preview is not None:
            self.preview.emit(preview)

    def on_result(self, job_id: str, msg) -> None:
        job = self._current(job_id)
        if job is None:
            return
        self.preview_ended.emit()
        try:  # the job stays "in flight" until its result is in the document (Krita may run events meanwhile)
            if job.kind == "caption":
                self._take_caption(client.wire.result_text(msg))
                return
            layers = list(msg.layers)
            if not layers:
                raise client.errors.JobError("internal", "The server returned no image.")
            length = self.binding.defaults.layer_name_length
            names = cres.layer_names(job.settings.mode, job.settings.prompt, layers, length)
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
                self._record(job, layers, names, dict(msg.params))
                for group in groups:
                    self.host.apply_group(job.doc, group.name, [images[i] for i in group.members], job.above_id)
                count = sum(len(g.members) for g in groups)
                self.show_message(f"Added {count} layers in the group '{groups[0].name}' ({msg.elapsed:.1f} s).")
                return
            self._record(job, layers, names, dict(msg.params))
            self.result_info = {**dict(msg.info), **dict(layers[0].info or {})}
            self.results, self.result_job = images, job
            self.results_changed.emit()
            self.select_result(0)
            if job.settings.mode != "upscale":  # an upscale is shown wrapped once it opens as a new document
                self._show_wrapped(job.settings)
            if job.kind != "live":
                count = len(images)
                self.show_message(
                    f"{count} result{'s' if count > 1 else ''} in {msg.elapsed:.1f} s: pick one, then Apply or Discard."
                )
        finally:
            self.job = None
            self._progress(100, "Done")
            self.ended.emit(job, client.live.RESULT)

    def on_failed(self, job_id: str, message: str) -> None:
        self._end_unfinished(job_id, "Failed", message, error=True)

    def on_cancelled(self, job_id: str) -> None:
        self._end_unfinished(job_id, "Cancelled", "Cancelled; nothing was changed.", error=False)

    def _end_unfinished(self, job_id: str, status: str, message: str, error: bool) -> None:
        """A job ended without a result: reset progress, free live mode for the next job, say why."""
        job = self._current(job_id)
        if job is None:
            return
        self.job = None
        self.preview_ended.emit()
        self._progress(0, status)
        if job.kind != "live" or error:
            self.show_message(message, error=error)
        self.ended.emit(job, client.live.FAILED if error else client.live.CANCELLED)

    def _take_caption(self, text: str) -> None:
        if not text:
            raise client.errors.JobError("internal", "The captioner found no words for this picture.")
        self.binding.set("prompt", text)
        self.binding.save()
        self.show_message("The prompt now describes the picture: edit it, then Generate.")

    # --- the results strip --------------------------------------------------------------------------------------------
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
