"""The one door to Krita: the only module that imports ``krita``.

It reads a job's inputs from a document (only the context box), writes the preview layer and results, keeps the
panel's settings in ``kritarc``, registers the docker, and watches a document for changes (live mode) without reading
pixels. ``KritaHost`` bundles what the session needs. Runs on the UI thread and stays short. The user's own layers
are never written to; results go into new layers.
"""

from __future__ import annotations

import time
from typing import Callable, List, Optional

from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Krita  # type: ignore  # noqa: F401

from . import pixels
from .pixels import ColorInfo
from .model import ControlSpec, DocumentError, ResultImage
from .qt_compat import QtCore, QtWidgets, byte_array, byte_view, set_pixel_data, to_bytes
from .wire import Box, client, protocol

Settings = client.settings.Settings
PREVIEW_NAME = client.results.PREVIEW_NAME

MASK_TYPES = ("selectionmask", "transparencymask")
SETTINGS_GROUP = "paintbridge"


def _pixels(source, box: Box) -> bytes:
    """``source.pixelData`` over ``box`` (a node, a selection or the document)."""
    return to_bytes(source.pixelData(box.x, box.y, box.width, box.height))


def _pixel_view(source, box: Box):
    """``_pixels`` without the copy into ``bytes``: a view of the QByteArray Krita filled (a full-size image read)."""
    return byte_view(source.pixelData(box.x, box.y, box.width, box.height))


def wait_idle(doc, timeout: float = 15.0) -> None:
    """Wait until Krita has updated ``doc``, letting Qt process events (unlike ``waitForDone`` this cannot dead-lock
    with Krita's own UI-thread work); after ``timeout`` seconds it gives up with a message instead of freezing."""
    if not hasattr(doc, "tryBarrierLock"):
        doc.waitForDone()
        return
    app = QtWidgets.QApplication.instance()
    deadline = time.monotonic() + timeout
    while not doc.tryBarrierLock():
        if time.monotonic() > deadline:
            raise DocumentError("Krita is still busy updating the image; try again in a moment.")
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents, 20)
        time.sleep(0.002)
    doc.unlock()


def refresh(doc) -> None:
    """Recompute the composited image and wait for it."""
    doc.refreshProjection()
    wait_idle(doc)


def active_document():
    doc = Krita.instance().activeDocument()
    if doc is None:
        raise DocumentError("Open or create an image first.")
    return doc


def color_info(doc) -> ColorInfo:
    """The document's color space, refused with a clear message when it is not RGBA."""
    try:
        pixels.check_color_space(doc.colorModel(), doc.colorDepth())
    except pixels.UnsupportedColorSpace as err:
        raise DocumentError(str(err)) from None
    depth = doc.colorDepth()
    return ColorInfo(doc.colorModel(), depth, depth != "U8" and pixels.is_linear_profile(doc.colorProfile()))


def layer_for(node):
    """The paint layer a node belongs to: the node itself, or the parent of a mask."""
    if node is not None and node.type() in MASK_TYPES + ("filtermask", "transformmask", "colorizemask"):
        return node.parentNode()
    return node


def selection_box(doc) -> Optional[Box]:
    """Bounds of the active selection, or None when nothing is selected."""
    sel = doc.selection()
    if sel is None or sel.width() <= 0 or sel.height() <= 0:
        return None
    return Box(sel.x(), sel.y(), sel.width(), sel.height())


def _mask_node(doc):
    node = doc.activeNode()
    return node if node is not None and node.type() in MASK_TYPES else None


def mask_bounds(doc, settings: Settings) -> Optional[Box]:
    """Bounds of whatever serves as the mask: a selected mask node, the selection, or None."""
    if settings.mask_source == "alpha":
        layer = layer_for(doc.activeNode())
        if layer is None:
            return None
        b = layer.bounds()
        return Box(b.x(), b.y(), b.width(), b.height())
    node = _mask_node(doc)
    if node is not None:
        b = node.bounds()
        return Box(b.x(), b.y(), b.width(), b.height())
    return selection_box(doc)


def read_mask(doc, settings: Settings, box: Box, info: ColorInfo) -> Optional[bytes]:
    """``gray8`` mask over ``box``: a selected selection/transparency mask, the selection, or the layer's alpha."""
    if settings.mask_source == "alpha":
        layer = layer_for(doc.activeNode())
        if layer is None:
            raise DocumentError("Select the layer whose transparency should serve as the mask.")
        raw = _pixels(layer, box)
        return pixels.alpha_of_bgra8(pixels.to_bgra8(raw, info.depth, info.linear))
    node = _mask_node(doc)
    if node is not None:
        if node.type() == "selectionmask" and hasattr(node, "selection") and node.selection() is not None:
            return _pixels(node.selection(), box)
        return _pixels(node, box)
    sel = doc.selection()
    if sel is None:
        return None
    return _pixels(sel, box)


def read_image(doc, settings: Settings, box: Box, info: ColorInfo) -> pixels.BytesLike:
    """``bgra8`` pixels of ``box``: the visible image (without the preview) or the active layer; for a U8 document a
    view of what Krita returned, not a copy."""
    if settings.image_source == "layer":
        layer = layer_for(doc.activeNode())
        if layer is None:
            raise DocumentError("Select a layer to use as input, or choose 'Visible image'.")
        raw = _pixel_view(layer, box)
    else:
        hidden = []
        for node in preview_nodes(doc):
            if node.visible():
                node.setVisible(False)
                hidden.append(node)
        refresh(doc)
        raw = _pixel_view(doc, box)
        for node in hidden:
            node.setVisible(True)
        if hidden:
            doc.refreshProjection()
    return pixels.to_bgra8(raw, info.depth, info.linear)


class _Reader:
    """``client.jobs.DocumentReader`` over one Krita document: Krita's native ``bgra8``, only the box asked for."""

    image_format = protocol.BGRA8

    def __init__(self, doc, settings: Settings, info: ColorInfo) -> None:
        self.doc, self.settings, self.info = doc, settings, info

    def read_image(self, box: Box) -> pixels.BytesLike:
        return read_image(self.doc, self.settings, box, self.info)

    def read_mask(self, box: Box) -> bytes:
        mask = read_mask(self.doc, self.settings, box, self.info)
        return mask if mask is not None else bytes(box.width * box.height)

    def read_layer(self, layer_id: str, box: Box) -> bytes:
        node = find_node(self.doc, layer_id)
        if node is None:
            raise DocumentError("A control or region layer was deleted: pick another layer or remove it.")
        return pixels.to_bgra8(_pixels(node, box), self.info.depth, self.info.linear)


def capture(doc, settings: Settings, controls: List[ControlSpec], regions=()):
    """Read what a job of ``settings.mode`` needs from ``doc`` (``client.jobs.JobInputs``): the box, mask and image
    ``client.modes`` plans for, and each region layer's opacity (regions' and region-bound references' masks)."""
    info = color_info(doc)
    bounds = mask_bounds(doc, settings) or Box(0, 0, 0, 0)
    sources = [client.jobs.ControlSource(c.layer_id, c.type, c.strength, c.start, c.end) for c in controls]
    exists = lambda node_id: node_id if find_node(doc, node_id) else None  # noqa: E731  layers by uniqueId
    refs = client.jobs.reference_sources(settings, exists, exists)  # a region's layer masks its references
    return client.jobs.capture(
        settings, bounds, doc.width(), doc.height(), _Reader(doc, settings, info), sources, refs, regions
    )


def find_node(doc, node_id: str):
    """The node with this uniqueId string, or None."""
    if not node_id:
        return None
    for node in walk(doc.rootNode()):
        if node.uniqueId().toString() == node_id:
            return node
    return None


def walk(node):
    for child in node.childNodes():
        yield from (child, *walk(child))


def paint_layers(doc) -> list:
    """(name, uniqueId string) of every paint-like layer, top first, for pickers."""
    out = []
    for node in reversed(list(walk(doc.rootNode()))):
        if node.type() in ("paintlayer", "grouplayer", "filelayer", "vectorlayer") and node.name() != PREVIEW_NAME:
            out.append((node.name(), node.uniqueId().toString()))
    return out


def active_layer_id(doc) -> str:
    layer = layer_for(doc.activeNode())
    return layer.uniqueId().toString() if layer is not None else ""


def preview_nodes(doc) -> list:
    return [n for n in doc.topLevelNodes() if n.name() == PREVIEW_NAME and n.type() == "paintlayer"] + [
        n
        for n in walk(doc.rootNode())
        if n.name() == PREVIEW_NAME and n.parentNode() != doc.rootNode() and n.type() == "paintlayer"
    ]


def _place(doc, node, above_id: str) -> None:
    """Add ``node`` above the layer ``above_id`` (same parent), or at the top of the stack."""
    above = find_node(doc, above_id)
    if above is not None and above.parentNode() is not None:
        above.parentNode().addChildNode(node, above)
    else:
        doc.rootNode().addChildNode(node, None)


def _write(node, image: ResultImage, info: ColorInfo, canvas: Optional[Box] = None) -> None:
    data, box = image.data, image.box
    if canvas is not None:
        part = box.intersect(canvas)
        if part.is_empty:
            return
        if part != box:
            data, box = client.results.crop(data, box, part, 4), part
    raw = pixels.from_bgra8(data, info.depth, info.linear)
    set_pixel_data(node, raw, box.x, box.y, box.width, box.height)


def _clear(node, info: ColorInfo) -> None:
    """Make a layer fully transparent (only its non-empty extent is written)."""
    b = node.bounds()
    if b.width() > 0 and b.height() > 0:
        size = pixels.bytes_per_pixel(info.depth) * b.width() * b.height()
        node.setPixelData(byte_array(bytes(size)), b.x(), b.y(), b.width(), b.height())


def _preview_node(doc):
    """The document's preview layer (duplicates, e.g. brought back by undo, are removed), or None."""
    nodes = preview_nodes(doc)
    for extra in nodes[1:]:
        extra.remove()
    return nodes[0] if nodes else None


def show_preview(doc, image: ResultImage, above_id: str) -> None:
    """Show ``image`` in the document's single preview layer, created above ``above_id`` or updated in place."""
    info = color_info(doc)
    canvas = Box(0, 0, doc.width(), doc.height())
    node = _preview_node(doc)
    if node is not None:
        _clear(node, info)
        _write(node, image, info, canvas)
        node.setVisible(True)
    else:
        node = doc.createNode(PREVIEW_NAME, "paintlayer")
        _write(node, image, info, canvas)
        _place(doc, node, above_id)
    doc.refreshProjection()


def remove_preview(doc) -> bool:
    """Remove the preview layer; True when there was one."""
    nodes = preview_nodes(doc)
    for node in nodes:
        node.remove()
    if nodes:
        doc.refreshProjection()
    return bool(nodes)


def apply_result(doc, image: ResultImage, above_id: str):
    """Keep ``image`` as a new paint layer named ``image.name``; returns the node.

    The preview layer becomes that layer (renamed and filled with the chosen result), so the layer's only undo step is
    the one that added it: one undo removes it and no stale preview comes back. For outpaint the canvas grows first.
    """
    info = color_info(doc)
    growth = client.results.canvas_growth([image.box], doc.width(), doc.height())
    if growth.any:
        doc.resizeImage(*growth.resize_args(doc.width(), doc.height()))
        wait_idle(doc)
        image = ResultImage(growth.shifted(image.box), image.data, image.seed, image.name)
    name = image.name
    node = _preview_node(doc)
    if node is not None:
        _clear(node, info)
        _write(node, image, info)
        node.setName(name)
        node.setVisible(True)
    else:
        node = doc.createNode(name, "paintlayer")
        _write(node, image, info)
        _place(doc, node, above_id)
    doc.refreshProjection()
    return node


def apply_group(doc, name: str, images: List[ResultImage], above_id: str):
    """Keep ``images`` (bottom first) as paint layers with their names and alpha inside a new group layer ``name``,
    placed above the layer ``above_id``; returns the group node. The painter's layers are not touched."""
    info = color_info(doc)
    canvas = Box(0, 0, doc.width(), doc.height())
    remove_preview(doc)
    group = doc.createGroupLayer(name)
    _place(doc, group, above_id)
    below = None
    for image in images:
        node = doc.createNode(image.name, "paintlayer")
        _write(node, image, info, canvas)
        group.addChildNode(node, below)  # above the one before: the first is the bottom
        below = node
    doc.refreshProjection()
    return group


def open_as_new_document(image: ResultImage, name: str, source=None):
    """Open ``image`` (an upscale) as a new document, leaving the original untouched."""
    app = Krita.instance()
    res = source.resolution() if source is not None else 72.0
    doc = app.createDocument(image.box.width, image.box.height, name, "RGBA", "U8", "", float(res))
    node = doc.createNode(name, "paintlayer")
    set_pixel_data(node, image.data, 0, 0, image.box.width, image.box.height)
    doc.rootNode().addChildNode(node, None)
    window = app.activeWindow()
    if window is not None:
        window.addView(doc)
    doc.refreshProjection()
    return doc


def show_wrap_around() -> bool:
    """Turn on View > Wrap Around Mode (the canvas repeated all around: a seam would show); True when it is on."""
    action = Krita.instance().action("wrap_around_mode")  # checkable, Shift+W
    if action is not None and not action.isChecked():
        action.trigger()
    return action is not None and action.isChecked()


def insert_control_image(doc, image: ResultImage, above_id: str) -> str:
    """Insert a preprocessed control image as a new (hidden) layer named ``image.name``; returns its uniqueId."""
    info = color_info(doc)
    node = doc.createNode(image.name, "paintlayer")
    _write(node, image, info, Box(0, 0, doc.width(), doc.height()))
    _place(doc, node, above_id)
    node.setVisible(False)
    doc.refreshProjection()
    return node.uniqueId().toString()


def load_document_data(doc, key: str) -> Optional[bytes]:
    """``key``'s data in ``doc`` (annotation ``paintbridge/<key>``, in the .kra) or None; DocumentDataError if bad."""
    kind = client.docdata.KRITA_PREFIX + client.docdata.check_key(key)
    return client.docdata.unpack(key, to_bytes(doc.annotation(kind))) if kind in doc.annotationTypes() else None


def save_document_data(doc, key: str, data: Optional[bytes]) -> None:
    """Store ``data`` under ``key`` in ``doc`` (saved with the .kra; marks the document modified); None removes it."""
    kind = client.docdata.KRITA_PREFIX + client.docdata.check_key(key)
    if data is not None:
        doc.setAnnotation(kind, f"Paintbridge {key}", byte_array(client.docdata.pack(key, data)))
    elif kind in doc.annotationTypes():
        doc.removeAnnotation(kind)


# --- live mode: knowing that something changed, without reading pixels -----------------------------------------------

HISTORY_DOCKER = "History"  # Krita's undo history docker: its model is reset whenever the undo stack moves
POLL_MS = 50  # the cheap state poll (no pixels): selection bounds, active layer, size, layer visibility


def history_model():
    """The item model of Krita's undo history docker (reset on every undo-stack change), or None without it."""
    for dock in Krita.instance().dockers():
        if dock.objectName() == HISTORY_DOCKER:
            views = dock.findChildren(QtWidgets.QAbstractItemView)
            if views and views[0].model() is not None:
                return views[0].model()
    return None


def cheap_state(doc) -> tuple:
    """What can change without a stroke and is cheap to read (no pixels): the document, its size, the selection's
    bounds, the active node, each layer's visibility and opacity."""
    if doc is None:
        return (None,)
    sel = doc.selection()
    bounds = (sel.x(), sel.y(), sel.width(), sel.height()) if sel is not None else None
    active = doc.activeNode()
    layers = tuple(
        (n.uniqueId().toString(), n.visible(), n.opacity()) for n in walk(doc.rootNode()) if n.name() != PREVIEW_NAME
    )
    return (
        doc.rootNode().uniqueId().toString(),
        doc.width(),
        doc.height(),
        bounds,
        active.uniqueId().toString() if active is not None else "",
        layers,
    )


class ChangeWatch:
    """Calls ``callback()`` on the UI thread when the active document may have changed: on undo-stack moves (the undo
    history's model is reset), and on a cheap poll of ``cheap_state`` (no pixels) for changes without an undo step.
    Without the history docker (``event_driven`` False) every ``fallback_ms`` counts as a possible change."""

    def __init__(self, callback: Callable[[], None], fallback_ms: int = 400) -> None:
        self.callback = callback
        self.events = 0  # undo-stack notifications seen
        self._pending = False
        self._model = history_model()
        self.event_driven = self._model is not None
        if self._model is not None:
            self._model.modelReset.connect(self._on_history)
        self._state = cheap_state(Krita.instance().activeDocument())
        self._fallback_every = max(1, fallback_ms // POLL_MS)
        self._ticks = 0
        self._timer = QtCore.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._timer.start()

    def _on_history(self) -> None:
        self.events += 1
        self._notify()

    def _notify(self) -> None:
        """Call back once, from the event loop (never inside Krita's own signal; two resets in a row: one call)."""
        if not self._pending:
            self._pending = True
            QtCore.QTimer.singleShot(0, self._deliver)

    def _deliver(self) -> None:
        self._pending = False
        if self._timer is not None:
            self.callback()

    def _poll(self) -> None:
        try:
            state = cheap_state(Krita.instance().activeDocument())
        except RuntimeError:  # a node went away between two calls
            return
        if state != self._state:
            self._state = state
            self._notify()
            return
        self._ticks += 1
        if not self.event_driven and self._ticks % self._fallback_every == 0:
            self._notify()

    def stop(self) -> None:
        self._timer.stop()
        self._timer = None
        if self._model is not None:
            try:
                self._model.modelReset.disconnect(self._on_history)
            except (TypeError, RuntimeError):
                pass
            self._model = None


# --- the door as the session sees it ---------------------------------------------------------------------------------


class KritaStore:
    """The panel's settings in Krita's own configuration (``kritarc``, group ``paintbridge``)."""

    def read(self, key: str, default: str) -> str:
        value = Krita.instance().readSetting(SETTINGS_GROUP, key, default)
        return value if isinstance(value, str) else default

    def write(self, key: str, value: str) -> None:
        Krita.instance().writeSetting(SETTINGS_GROUP, key, value)


class KritaHost:
    """What the session asks of Krita, in one object (a unit test gives the session another one)."""

    def active_document_or_none(self):
        return Krita.instance().activeDocument()

    def is_open(self, doc) -> bool:
        return any(d == doc for d in Krita.instance().documents())

    def active_layer_id(self, doc) -> str:
        return active_layer_id(doc) if doc is not None else ""

    def paint_layers(self) -> list:
        doc = Krita.instance().activeDocument()
        return paint_layers(doc) if doc is not None else []

    # the door's functions, as they are
    active_document = staticmethod(active_document)
    capture = staticmethod(capture)
    mask_bounds = staticmethod(mask_bounds)
    show_preview = staticmethod(show_preview)
    remove_preview = staticmethod(remove_preview)
    apply_result = staticmethod(apply_result)
    apply_group = staticmethod(apply_group)
    open_as_new_document = staticmethod(open_as_new_document)
    insert_control_image = staticmethod(insert_control_image)
    load_document_data = staticmethod(load_document_data)
    save_document_data = staticmethod(save_document_data)
    show_wrap_around = staticmethod(show_wrap_around)

    def watch_changes(self, callback: Callable[[], None], settings: Optional[Callable[[], Settings]] = None):
        """Start a ``ChangeWatch`` on the active document; ``stop()`` ends it."""
        return ChangeWatch(callback)


def register_docker(docker_id: str, docker_class) -> None:
    """Register the Paintbridge docker with Krita (at plugin import)."""
    Krita.instance().addDockWidgetFactory(
        DockWidgetFactory(docker_id, DockWidgetFactoryBase.DockPosition.DockRight, docker_class)
    )


def on_application_closing(callback: Callable[[], None]) -> None:
    Krita.instance().notifier().applicationClosing.connect(callback)
