"""The panel's results history, without widgets and without Krita (``session.history``; narrow parts instead of the
session: the document door, the settings binding, the jobs' results strip, "put these settings back in the panel"
and the panel's message line).

Every finished job's results (applied or not; live frames and control images excepted) are kept in their document by
``client.history`` through the door's ``load_document_data``/``save_document_data`` (annotation ``paintbridge/history``,
saved in the ``.kra``). The panel lists the active document's entries; "apply again" inserts an entry's layer as a
new layer (an upscale opens a new document, a decomposition's layer group comes back whole, as the first time), "reuse settings" puts the job's settings (with that
result's seed) back into the panel, "delete" forgets an entry. A search (``set_query``, ``client.history_search``)
narrows the listed entries by prompt, model, seed, mode or date.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from .guard import guarded
from .model import Event, ResultImage, RunningJob
from .wire import client, protocol

ch = client.history


class _ImageLayer:
    """A ``ResultImage`` (what the session keeps of a result) as ``client.history`` reads a result layer."""

    format = protocol.BGRA8

    def __init__(self, image: ResultImage) -> None:
        box = image.box
        self.x, self.y, self.width, self.height = box.x, box.y, box.width, box.height
        self.data, self.seed, self.info = image.data, image.seed, {}


class ResultsHistory:
    """The history of the documents the session has seen; ``entries`` are the active document's (oldest first)."""

    def __init__(
        self,
        host,
        binding,
        jobs,
        put_back: Callable[["client.settings.Settings", Optional[tuple]], None],
        show_message: Callable[..., None],
    ) -> None:
        self.host, self.binding, self.jobs, self._put_back = host, binding, jobs, put_back
        self.show_message = show_message
        self.changed = Event()  # () the shown list changed
        self._docs: List[Tuple[Any, "ch.DocumentHistory"]] = []
        self.doc: Any = None
        self.query = ""  # the search field's text: ``shown`` lists the entries that match it
        self.query_problem = ""  # why the query cannot be read ("" when it can)

    @property
    def entries(self) -> List["ch.Entry"]:
        current = self._find(self.doc) if self.doc is not None else None
        return list(current.entries) if current is not None else []

    @property
    def shown(self) -> List["ch.Entry"]:
        """The active document's entries that match the search (all of them without one; none when the query
        cannot be read), oldest first."""
        try:
            return client.history_search.search(self.entries, self.query)
        except client.history_search.SearchError:
            return []

    def set_query(self, text: str) -> None:
        """Search the kept results (``client.history_search``'s query language); the list follows."""
        self.query = str(text or "")
        try:
            client.history_search.parse(self.query)
            self.query_problem = ""
        except client.history_search.SearchError as err:
            self.query_problem = f"Search: {err}"
        self.changed.emit()

    def _limit(self) -> int:
        return ch.limit_bytes(self.binding.settings)

    def _find(self, doc) -> Optional["ch.DocumentHistory"]:
        return next((kept for d, kept in self._docs if d == doc), None)

    def of(self, doc) -> "ch.DocumentHistory":
        """``doc``'s history, read from the document the first time (a message says when it could not be read)."""
        self._docs = [(d, kept) for d, kept in self._docs if self.host.is_open(d)]
        kept = self._find(doc)
        if kept is None:
            kept = ch.DocumentHistory(
                lambda: self.host.load_document_data(doc, ch.KEY),
                lambda data: self.host.save_document_data(doc, ch.KEY, data),
                self._limit(),
            )
            self._docs.append((doc, kept))
            if kept.problem:
                self.show_message(kept.problem, error=True)
        return kept

    def show(self, doc) -> None:
        """List ``doc``'s entries (the active document; None: nothing)."""
        if doc is not None:
            self.of(doc)
        self.doc = doc
        self.changed.emit()

    @guarded
    def show_active(self) -> None:
        self.show(self.host.active_document_or_none())

    def record(self, job: RunningJob, layers: list, names: List[str], params: dict) -> None:
        """Keep a job's results in its document (a failure to keep them is said, never fatal to the result). Live
        frames are not kept one by one: ``keep_live_result`` keeps the last one when live mode ends."""
        if job.kind == "job" and job.settings.mode != "preprocess":
            self._keep(job, layers, names, params)

    @guarded
    def keep_live_result(self) -> None:
        """Live mode was switched off: keep the frame it showed last (applied or not) in its document."""
        jobs, job = self.jobs, self.jobs.result_job
        if job is not None and job.kind == "live" and jobs.results and self.host.is_open(job.doc):
            layers = [_ImageLayer(image) for image in jobs.results]
            self._keep(job, layers, [image.name for image in jobs.results], {})

    def _keep(self, job: RunningJob, layers: list, names: List[str], params: dict) -> None:
        if self.binding.settings.history_limit_mb <= 0:  # the painter keeps no history
            return
        try:
            entry = self.of(job.doc).record(job.settings, layers, names, params)
        except (client.errors.PaintbridgeError, ValueError, RuntimeError) as err:
            self.show_message(f"The results could not be kept in the image's history: {err}", error=True)
            return
        if entry is None:
            self.show_message(
                "These results are larger than the history limit "
                f"({self.binding.settings.history_limit_mb} MB): not kept in the history."
            )
        self.show(job.doc)

    def _entry(self, entry_id: str) -> "ch.Entry":
        try:
            return self.of(self._active()).get(entry_id)
        except KeyError:
            raise client.errors.JobInputError("That history entry is gone.") from None

    def _active(self):
        doc = self.host.active_document()
        if self.doc is None or not self.doc == doc:
            self.show(doc)
        return doc

    @guarded
    def apply_again(self, entry_id: str, layer: int = 0) -> None:
        """Insert layer ``layer`` of an entry into the active document as a new layer, where it was first placed; a
        layer of a decomposition brings its whole layer group back, as the first time (``Entry.applied``)."""
        doc = self._active()
        entry = self._entry(entry_id)
        if not 0 <= layer < len(entry.layers):
            raise client.errors.JobInputError(f"That entry has {len(entry.layers)} layer(s), not {layer + 1}.")
        chosen = entry.applied(layer)
        images = [
            ResultImage(client.results.box_of(s), client.results.pixels_in(s, protocol.BGRA8), s.seed, s.name)
            for s in chosen
        ]
        jobs = self.jobs
        if jobs.result_job is not None and jobs.result_job.doc == doc:
            jobs.discard()  # the pending results are in the history too; their preview layer goes
        groups = client.results.groups(chosen)
        if entry.mode == "upscale":
            image = images[0]
            self.host.open_as_new_document(image, f"Upscaled {image.box.width}x{image.box.height}", doc)
            self.show_message("Opened the upscaled image from the history as a new document.")
        elif groups:
            above = self.host.active_layer_id(doc)
            for group in groups:
                self.host.apply_group(doc, group.name, [images[i] for i in group.members], above)
            count = sum(len(g.members) for g in groups)
            self.show_message(f"Applied the group '{groups[0].name}' ({count} layers) from the history.")
        else:
            self.host.apply_result(doc, images[0], self.host.active_layer_id(doc))
            self.show_message(f"Applied '{images[0].name}' from the history as a new layer.")

    @guarded
    def reuse_settings(self, entry_id: str, layer: int = 0) -> None:
        """Put an entry's job settings, with layer ``layer``'s seed, into the panel."""
        binding = self.binding
        entry = self._entry(entry_id)
        new = entry.reuse_settings(layer, binding.settings)
        if binding.models and new.model not in binding.model_names():
            self.show_message(f"The model '{new.model}' is not on this server; the server's default is used.")
            new.model = ""
        # the job's control layers (entries kept before they were have none)
        self._put_back(new, new.controls if "controls" in entry.settings else None)

    @guarded
    def delete(self, entry_id: str) -> None:
        doc = self._active()
        self.of(doc).delete(entry_id)
        self.changed.emit()

    @guarded
    def set_limit(self, mb: int) -> None:
        """Change how many MB each document keeps (``Settings.history_limit_mb``); trims the active document's."""
        self.binding.set_option("history_limit_mb", max(0, int(mb)))
        self.binding.save()
        for _doc, kept in self._docs:
            kept.set_limit(self._limit())
        self.changed.emit()
