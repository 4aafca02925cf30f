"""An in-memory document host for the Krita session (what ``document.KritaHost`` does, on bytes in a dict), a
settings store in a dict (what ``document.KritaStore`` does on kritarc), and a UI-thread stand-in: ``post`` queues
calls that ``pump`` runs, ``schedule`` runs them once their time has come.

The session then runs without Krita and without Qt against a real server.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from client import docdata, jobs as cjobs
from krita_plugin.paintbridge.model import DocumentError, ResultImage
from protocol import BGRA8, Box


class MemoryStore:
    """A ``settings_store.Store`` kept in a dict."""

    def __init__(self, values: Optional[Dict[str, str]] = None) -> None:
        self.values = dict(values or {})

    def read(self, key: str, default: str) -> str:
        value = self.values.get(key, default)
        return value if isinstance(value, str) else default

    def write(self, key: str, value: str) -> None:
        self.values[key] = value


def crop(data: bytes, width: int, bpp: int, box: Box) -> bytes:
    stride = width * bpp
    return b"".join(
        data[(box.y + r) * stride + box.x * bpp : (box.y + r) * stride + box.right * bpp] for r in range(box.height)
    )


@dataclass
class MemoryDocument:
    width: int
    height: int
    image: bytes  # bgra8, the visible image
    selection: Optional[bytes] = None  # gray8 over the canvas
    preview: Optional[ResultImage] = None
    layers: List[tuple] = field(default_factory=list)  # (name, ResultImage) applied
    annotations: dict = field(default_factory=dict)  # what Krita keeps as document annotations (in the .kra)
    extra: dict = field(default_factory=dict)  # layer id -> (name, bgra8 over the canvas): the painter's other layers
    groups: List[tuple] = field(default_factory=list)  # (group name, [(name, ResultImage)] bottom first) applied


class MemoryHost:
    """The document door's interface over ``MemoryDocument`` s; it counts its pixel reads and its writes of a result
    into the preview layer (the host tests count Krita's door the same way, from outside the plug-in)."""

    def __init__(self, doc: Optional[MemoryDocument] = None) -> None:
        self.doc = doc
        self.pixel_reads = 0
        self.preview_writes = 0
        self.watchers: List["MemoryWatch"] = []
        self.active = "paint"  # the active layer's id

    def active_document(self) -> MemoryDocument:
        if self.doc is None:
            raise DocumentError("Open or create an image first.")
        return self.doc

    def active_document_or_none(self):
        return self.doc

    def is_open(self, doc) -> bool:
        return doc is self.doc

    def mask_bounds(self, doc: MemoryDocument, settings) -> Optional[Box]:
        if doc.selection is None:
            return None
        xs = [i % doc.width for i, v in enumerate(doc.selection) if v]
        ys = [i // doc.width for i, v in enumerate(doc.selection) if v]
        return Box(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1) if xs else None

    def capture(self, doc: MemoryDocument, settings, controls, regions=()) -> cjobs.JobInputs:
        """What the mode needs, read the way ``client.jobs.capture`` plans it (the Krita door does the same)."""
        bounds = self.mask_bounds(doc, settings) or Box(0, 0, 0, 0)
        sources = [cjobs.ControlSource(c.layer_id, c.type, c.strength, c.start, c.end) for c in controls]
        ids = {layer_id for _name, layer_id in self.paint_layers()}
        exists = lambda layer_id: layer_id if layer_id in ids else None  # noqa: E731
        refs = cjobs.reference_sources(settings, exists, exists)
        return cjobs.capture(settings, bounds, doc.width, doc.height, _Reader(self, doc), sources, refs, regions)

    def active_layer_id(self, doc) -> str:
        return self.active if doc is not None else ""

    def paint_layers(self) -> list:
        extra = self.doc.extra if self.doc is not None else {}
        return [("Paint", "paint")] + [(name, layer_id) for layer_id, (name, _data) in extra.items()]

    def show_preview(self, doc: MemoryDocument, image: ResultImage, above_id: str) -> None:
        doc.preview = image
        self.preview_writes += 1

    def remove_preview(self, doc: MemoryDocument) -> bool:
        had, doc.preview = doc.preview is not None, None
        return had

    def apply_result(self, doc: MemoryDocument, image: ResultImage, above_id: str) -> str:
        doc.preview = None
        doc.layers.append((image.name, image))
        return image.name

    def apply_group(self, doc: MemoryDocument, name: str, images: List[ResultImage], above_id: str) -> str:
        doc.preview = None
        doc.groups.append((name, [(image.name, image) for image in images]))
        return name

    def open_as_new_document(self, image: ResultImage, name: str, source=None) -> None:
        self.doc = MemoryDocument(image.box.width, image.box.height, image.data)

    def show_wrap_around(self) -> bool:
        self.wrap_around = True
        return True

    def insert_control_image(self, doc: MemoryDocument, image: ResultImage, above_id: str) -> str:
        doc.layers.append((image.name, image))
        return f"layer-{len(doc.layers)}"

    def load_document_data(self, doc: MemoryDocument, key: str) -> Optional[bytes]:
        blob = doc.annotations.get(docdata.KRITA_PREFIX + docdata.check_key(key))
        return None if blob is None else docdata.unpack(key, blob)

    def save_document_data(self, doc: MemoryDocument, key: str, data: Optional[bytes]) -> None:
        kind = docdata.KRITA_PREFIX + docdata.check_key(key)
        if data is None:
            doc.annotations.pop(kind, None)
        else:
            doc.annotations[kind] = docdata.pack(key, data)

    def watch_changes(self, callback: Callable[[], None], settings=None) -> "MemoryWatch":
        watch = MemoryWatch(self, callback)
        self.watchers.append(watch)
        return watch

    def changed(self) -> None:
        """The painter did something (a stroke, a selection): tell the watches, as Krita's undo stack would."""
        for watch in list(self.watchers):
            watch.callback()


class _Reader:
    """``client.jobs.DocumentReader`` over a ``MemoryDocument`` (bgra8, Krita's order), counting reads."""

    image_format = BGRA8

    def __init__(self, host: MemoryHost, doc: MemoryDocument) -> None:
        self.host, self.doc = host, doc

    def read_image(self, box: Box) -> bytes:
        self.host.pixel_reads += 1
        return crop(self.doc.image, self.doc.width, 4, box)

    def read_mask(self, box: Box) -> bytes:
        self.host.pixel_reads += 1
        return crop(self.doc.selection, self.doc.width, 1, box)

    def read_layer(self, layer, box: Box) -> bytes:
        if layer in self.doc.extra:
            self.host.pixel_reads += 1
            return crop(self.doc.extra[layer][1], self.doc.width, 4, box)
        return self.read_image(box)


class MemoryWatch:
    def __init__(self, host: MemoryHost, callback: Callable[[], None]) -> None:
        self.host, self.callback = host, callback

    def stop(self) -> None:
        self.host.watchers.remove(self)


class UiLoop:
    """The UI thread of a test: ``post`` from any thread, ``schedule`` timers, ``pump_until`` runs them in order."""

    def __init__(self) -> None:
        self.calls: "queue.Queue[Callable[[], None]]" = queue.Queue()
        self.timers: List[tuple] = []

    def post(self, fn: Callable[[], None]) -> None:
        self.calls.put(fn)

    def schedule(self, seconds: float, fn: Callable[[], None]) -> None:
        self.timers.append((time.monotonic() + seconds, fn))

    def pump(self, seconds: float) -> None:
        self.pump_until(lambda: False, seconds)

    def pump_until(self, cond: Callable[[], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            now = time.monotonic()
            due = [t for t in self.timers if t[0] <= now]
            for timer in due:
                self.timers.remove(timer)
                timer[1]()
            try:
                self.calls.get(timeout=0.01)()
            except queue.Empty:
                pass
        return cond()
