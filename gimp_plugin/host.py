"""Reading pixels from and writing layers into a GIMP 3 image: the plug-in's only door to GIMP's document API.

Everything is read in image coordinates through GEGL buffers (``R'G'B'A u8`` and ``Y u8``); areas outside a drawable
read as transparent / unselected. New layers are created, filled and inserted; existing layers are never written to.
"""

from __future__ import annotations

import ctypes
import sys
from array import array
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from client import docdata  # noqa: E402
from client.errors import JobInputError as InputError  # noqa: E402
from client.results import box_of, canvas_growth, groups, pixels_in  # noqa: E402
from protocol.geometry import Box, selection_bounds_from_mask  # noqa: E402
from protocol.images import RGBA8  # noqa: E402

RGBA_FORMAT = "R'G'B'A u8"
GRAY_FORMAT = "Y u8"


READS = [0]  # full pixel reads (``_read``): what the live loop must not pay while nothing changes, counted


def pixel_reads() -> int:
    """How many full pixel reads this plug-in process has made so far."""
    return READS[0]


def _read(drawable, box: Box, fmt: str) -> bytes:
    """``box`` (image coordinates) of a drawable's pixels; outside the drawable reads as zeros. Counted in ``READS``."""
    READS[0] += 1
    _ok, off_x, off_y = drawable.get_offsets()
    rect = Gegl.Rectangle.new(box.x - off_x, box.y - off_y, box.width, box.height)
    data = drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE)
    return bytes(data)


def layer_of(drawable):
    """The layer a drawable belongs to (a layer mask's layer, or the layer itself)."""
    if isinstance(drawable, Gimp.LayerMask):
        return Gimp.Layer.from_mask(drawable)
    if isinstance(drawable, Gimp.Layer):
        return drawable
    raise InputError("Select a layer (not a channel or path) before running Paintbridge")


def read_layer(drawable, box: Box) -> bytes:
    """A layer's pixels in ``box`` as ``rgba8``."""
    return _read(drawable, box, RGBA_FORMAT)


def _twin(image, copy, layer):
    """The layer of ``copy`` (a duplicate of ``image``) that corresponds to ``layer`` (same place in the tree;
    duplicates do not keep tattoos)."""
    if layer is None or not layer.is_valid() or layer.get_image() != image:
        return None
    path = []
    item = layer
    while item is not None:
        path.append(image.get_item_position(item))
        item = item.get_parent()
    items = copy.get_layers()
    twin = None
    for position in reversed(path):
        if position >= len(items):
            return None
        twin = items[position]
        items = twin.get_children() if hasattr(twin, "get_children") else []
    return twin


def read_visible(image, box: Box, hide: Sequence[object] = ()) -> bytes:
    """The visible image (all visible layers composited) in ``box`` as ``rgba8``, without the layers in ``hide``."""
    copy = image.duplicate()
    try:
        copy.undo_disable()
        for layer in hide:
            twin = _twin(image, copy, layer)
            if twin is not None:
                twin.set_visible(False)
        if not any(layer.get_visible() for layer in copy.get_layers()):
            raise InputError(
                "No layer is visible: show the layers Paintbridge should see, or use Source = Active layer"
            )
        merged = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        return _read(merged, box, RGBA_FORMAT)
    finally:
        copy.delete()


# --- change tokens: what the live loop compares instead of reading pixels ---------------------------------------------

# A thumbnail's longest side. GIMP keeps thumbnails in its mipmap pyramid and drops them as soon as a pixel changes, so
# a live tick compares thumbnails instead of reading pixels. Measured in GIMP 3.0.4 (benchmarks/gimp_live_watch.py: a
# 1448 x 1248 box, the selection and 5 layers): 128 px take 3 ms a tick (0.3 MB over the plug-in pipe) against 29 ms
# for full reads, 256 px take 12 ms; the box-filtered 128 px thumbnail still sees a single black pixel at 11x
# downsampling (and a 3x3 dab), while a much smaller one would start to miss faint single-pixel changes.
THUMB_SIDE = 128


def _thumbnail(drawable, x: int, y: int, width: int, height: int) -> bytes:
    """GIMP's thumbnail of a drawable's own area (drawable-local coordinates, inside the drawable), at most
    ``THUMB_SIDE`` px a side."""
    scale = min(1.0, THUMB_SIDE / max(width, height))
    data, w, h, bpp = drawable.get_sub_thumbnail_data(
        x, y, width, height, max(1, round(width * scale)), max(1, round(height * scale))
    )
    raw = data.get_data() if hasattr(data, "get_data") else data
    return b"%d,%d,%d:" % (w, h, bpp) + bytes(raw or b"")


def change_token(drawable, box: Box) -> Tuple[object, ...]:
    """A cheap fingerprint of ``drawable`` over ``box`` (image coordinates): its place, size, visibility, opacity and
    mode and GIMP's thumbnail of the part of ``box`` it covers; no pixel read. Equal tokens: no change a frame would
    see (up to the thumbnail's resolution)."""
    _ok, off_x, off_y = drawable.get_offsets()
    width, height = drawable.get_width(), drawable.get_height()
    head: Tuple[object, ...] = (drawable.get_id(), off_x, off_y, width, height)
    if isinstance(drawable, Gimp.Layer):
        head += (drawable.get_visible(), drawable.get_opacity(), int(drawable.get_mode()))
    x1, y1 = max(box.x - off_x, 0), max(box.y - off_y, 0)
    x2, y2 = min(box.x + box.width - off_x, width), min(box.y + box.height - off_y, height)
    if x2 <= x1 or y2 <= y1:
        return head
    return head + (_thumbnail(drawable, x1, y1, x2 - x1, y2 - y1),)


def selection_token(image, bounds: Box) -> Tuple[object, ...]:
    """A cheap fingerprint of the selection mask over its ``bounds`` (its thumbnail), no pixel read."""
    if bounds.is_empty:
        return ()
    return change_token(image.get_selection(), bounds)


def layer_mask_of(drawable):
    """The layer mask of the active drawable's layer, or None."""
    if drawable is None:
        return None
    if isinstance(drawable, Gimp.LayerMask):
        return drawable
    return drawable.get_mask() if isinstance(drawable, Gimp.Layer) else None


def visible_tokens(image, box: Box, hide: Sequence[object] = ()) -> List[Tuple[object, ...]]:
    """``change_token`` over ``box`` of every layer the visible image is made of there: visible layers (inside
    visible groups) that reach into ``box``, with their applied layer masks; a group by its place, opacity and mode
    only (its own projection would show the items in ``hide``: the live preview, which is skipped)."""
    hidden = {item.get_id() for item in hide if item is not None and item.is_valid()}
    out: List[Tuple[object, ...]] = []

    def walk(items) -> None:
        for item in items:
            if item.get_id() in hidden or not item.get_visible():
                continue
            if item.is_group():
                out.append(change_token(item, Box(0, 0, 0, 0)))
                walk(item.get_children())
                continue
            _ok, off_x, off_y = item.get_offsets()
            if not Box(off_x, off_y, item.get_width(), item.get_height()).intersect(box).is_empty:
                out.append(change_token(item, box))
                mask = item.get_mask()
                if mask is not None and item.get_apply_mask():
                    out.append(change_token(mask, box))

    walk(image.get_layers())
    return out


def selection_bounds(image) -> Box:
    """The selection's bounds (soft edges included); an empty Box when nothing is selected."""
    _ok, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    if not non_empty:
        return Box(0, 0, 0, 0)
    return Box(x1, y1, x2 - x1, y2 - y1)


def read_selection(image, box: Box) -> bytes:
    """The selection mask in ``box`` as ``gray8`` (soft values kept)."""
    return _read(image.get_selection(), box, GRAY_FORMAT)


def read_layer_mask(drawable, width: int, height: int) -> Tuple[bytes, Box]:
    """The active layer's mask over the whole canvas as ``gray8`` and the bounds of its non-zero part."""
    layer = layer_of(drawable)
    mask = drawable if isinstance(drawable, Gimp.LayerMask) else layer.get_mask()
    if mask is None:
        raise InputError(
            f"Layer '{layer.get_name()}' has no layer mask: add one (white = repaint) or use Mask = Selection"
        )
    full = _read(mask, Box(0, 0, width, height), GRAY_FORMAT)
    return full, selection_bounds_from_mask(full, width, height)


def _layer_type(image):
    if image.get_base_type() == Gimp.ImageBaseType.GRAY:
        return Gimp.ImageType.GRAYA_IMAGE
    return Gimp.ImageType.RGBA_IMAGE


def canvas_size(image) -> Tuple[int, int]:
    return image.get_width(), image.get_height()


def has_floating_selection(image) -> bool:
    return image.get_floating_sel() is not None


def is_valid(item) -> bool:
    """Whether an image or item still exists (the user may close it while a dialog is open)."""
    return item is not None and item.is_valid()


def is_item(value) -> bool:
    return isinstance(value, Gimp.Item)


def item_id(item) -> int:
    """A stable id of a layer (or other item) for signatures; -1 for None."""
    return item.get_id() if item is not None else -1


def stable_id(item) -> str:
    """The id of a layer or channel that survives saving and reopening the .xcf (its tattoo), as text."""
    if not item.is_valid():
        raise InputError("A layer or channel picked in the dialog was deleted: pick another one")
    return str(item.get_tattoo())


def layer_by_stable_id(image, ident: str):
    """The layer whose ``stable_id`` is ``ident``, or None."""
    return image.get_layer_by_tattoo(int(ident)) if ident.isdigit() else None


def item_by_stable_id(image, ident: str):
    """The layer, channel or layer mask whose ``stable_id`` is ``ident``, or None (regions)."""
    if not ident.isdigit():
        return None
    tattoo = int(ident)
    found = image.get_layer_by_tattoo(tattoo) or image.get_channel_by_tattoo(tattoo)
    if found is None:  # a layer mask picked as a reference's region
        masks = (layer.get_mask() for layer in _all_layers(image))
        found = next((mask for mask in masks if mask is not None and mask.get_tattoo() == tattoo), None)
    return found


def selected_drawable(image, exclude=None):
    """The first selected drawable that is not ``exclude`` (the live preview), or None."""
    for drawable in image.get_selected_drawables():
        if exclude is None or drawable.get_id() != exclude.get_id():
            return drawable
    return None


def profile_dir() -> Path:
    """GIMP's profile folder, where the remembered server settings and the server's log live."""
    return Path(Gimp.directory())


def image_value(image):
    """An image as a procedure's return value."""
    from gi.repository import GObject

    return GObject.Value(Gimp.Image, image)


def show_image(image) -> None:
    """Open a display for a new image (interactive runs)."""
    Gimp.Display.new(image)
    Gimp.displays_flush()


def _new_layer(image, result, name: str, x: int, y: int):
    layer = Gimp.Layer.new(image, name, result.width, result.height, _layer_type(image), 100.0, Gimp.LayerMode.NORMAL)
    layer.set_offsets(x, y)
    return layer


def _fill(layer, result) -> None:
    buffer = layer.get_buffer()
    set_rgba8(buffer, result.width, result.height, pixels_in(result, RGBA8))
    buffer.flush()
    layer.update(0, 0, result.width, result.height)


def set_rgba8(buffer, width: int, height: int, data) -> None:
    """Write ``rgba8`` pixels (any bytes-like: a result's view of a shared file included) into ``buffer`` at (0, 0).
    ``Gegl.Buffer.set`` takes ``bytes`` at C speed but reads anything else item by item (45x slower), so the pixels
    go to GEGL's own ``gegl_buffer_set`` straight from their memory (``_direct_set``); where that library call is not
    available, through one copy into ``bytes``."""
    if not isinstance(data, bytes) and _direct_set(buffer, width, height, RGBA_FORMAT, data):
        return
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), RGBA_FORMAT, bytes(data))


class _Rect(ctypes.Structure):  # GeglRectangle
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int)]


class _PyBuffer(ctypes.Structure):  # CPython's Py_buffer, to read a read-only buffer's address
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_GEGL_LIBRARIES = {"linux": ("libgegl-0.4.so.0", "libbabl-0.1.so.0")}
_calls: list = []  # [gegl_buffer_set, babl_format, PyCapsule_GetPointer, PyObject_GetBuffer, PyBuffer_Release] or [None]


def _library_calls() -> Optional[list]:
    """The C calls ``_direct_set`` makes, bound once; None where they cannot be (another platform's library names, a
    Python without ``pythonapi``)."""
    if not _calls:
        try:
            gegl_name, babl_name = _GEGL_LIBRARIES[sys.platform]
            gegl, babl, api = ctypes.CDLL(gegl_name), ctypes.CDLL(babl_name), ctypes.pythonapi
            buffer_set, babl_format = gegl.gegl_buffer_set, babl.babl_format
            buffer_set.restype, babl_format.restype = None, ctypes.c_void_p
            buffer_set.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Rect), ctypes.c_int, ctypes.c_void_p]
            buffer_set.argtypes += [ctypes.c_void_p, ctypes.c_int]
            babl_format.argtypes = [ctypes.c_char_p]
            capsule = api.PyCapsule_GetPointer
            capsule.restype, capsule.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
            get_buffer, release = api.PyObject_GetBuffer, api.PyBuffer_Release
            get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
            release.argtypes = [ctypes.POINTER(_PyBuffer)]
            _calls.extend([buffer_set, babl_format, capsule, get_buffer, release])
        except (KeyError, OSError, AttributeError):
            _calls.append(None)
    return _calls if _calls[0] is not None else None


def _direct_set(buffer, width: int, height: int, fmt: str, data) -> bool:
    """``gegl_buffer_set`` of ``data``'s own memory (C-contiguous, exactly ``width`` x ``height`` x 4 bytes) into
    ``buffer`` at (0, 0); False (nothing written) when the call is not available or ``data`` does not fit."""
    calls = _library_calls()
    if calls is None or memoryview(data).nbytes != width * height * 4 or not memoryview(data).c_contiguous:
        return False
    buffer_set, babl_format, capsule, get_buffer, release = calls
    view = _PyBuffer()
    get_buffer(data, ctypes.byref(view), 0)  # (PyBUF_SIMPLE: read-only is fine)
    try:
        target = capsule(buffer.__gpointer__, None)  # the GeglBuffer behind PyGObject's wrapper
        buffer_set(target, ctypes.byref(_Rect(0, 0, width, height)), 0, babl_format(fmt.encode()), view.buf, 0)
    finally:
        release(ctypes.byref(view))
    return True


def insertion_point(image, drawable) -> Tuple[Optional[object], int]:
    """(parent group or None, position) just above the active layer; the top of the stack without one."""
    try:
        anchor = layer_of(drawable) if drawable is not None else None
    except InputError:
        anchor = None
    if anchor is None or anchor.get_image() != image:
        return None, 0
    return anchor.get_parent(), image.get_item_position(anchor)


def insert_results(
    image,
    drawable,
    results: Sequence[object],
    names: Sequence[str],
    canvas: Optional[Tuple[int, int]] = None,
) -> List[object]:
    """Insert the results as new layers above the active layer, in one undo step, enlarging the canvas when a
    result reaches past it (or to ``canvas`` = (width, height) when given). The first result ends on top; results
    that carry a ``group`` go into a new layer group of that name instead (``client.results.groups``), the first
    of them at the bottom. Returns the new layers and groups (a group's layers are inside it).
    On failure every change is taken back before the error propagates."""
    old_w, old_h = image.get_width(), image.get_height()
    growth = canvas_growth([box_of(r) for r in results], old_w, old_h, canvas)
    (new_w, new_h), (off_x, off_y) = growth.new_size(old_w, old_h), growth.offsets()
    created: List[object] = []
    resized = False
    image.undo_group_start()
    try:
        if (new_w, new_h, off_x, off_y) != (old_w, old_h, 0, 0):
            image.resize(new_w, new_h, off_x, off_y)
            resized = True
        parent, position = insertion_point(image, drawable)
        grouped = {i for g in groups(results) for i in g.members}
        for result, name in reversed([(r, n) for i, (r, n) in enumerate(zip(results, names)) if i not in grouped]):
            layer = _new_layer(image, result, name, result.x + off_x, result.y + off_y)
            image.insert_layer(layer, parent, position)
            created.append(layer)
            _fill(layer, result)
        for group in reversed(groups(results)):  # a layer group each, its layers bottom first as they arrived
            folder = Gimp.GroupLayer.new(image, group.name)
            image.insert_layer(folder, parent, position)
            created.append(folder)
            for i in group.members:
                layer = _new_layer(image, results[i], names[i], results[i].x + off_x, results[i].y + off_y)
                image.insert_layer(layer, folder, 0)  # above the one before
                _fill(layer, results[i])
    except BaseException:
        for layer in created:
            try:
                image.remove_layer(layer)
            except Exception:  # noqa: BLE001 - best effort while unwinding
                pass
        if resized:
            image.resize(old_w, old_h, -off_x, -off_y)
        raise
    finally:
        image.undo_group_end()
    Gimp.displays_flush()
    return list(reversed(created))


def replace_preview(image, drawable, old, result, name: str):
    """Show ``result`` as the preview layer above the active layer, replacing ``old``; not recorded in the undo
    history (undo is frozen meanwhile, as GIMP's own in-canvas previews do)."""
    selected = [item for item in image.get_selected_layers() if old is None or item.get_id() != old.get_id()]
    image.undo_freeze()
    try:
        if old is not None and old.is_valid():
            image.remove_layer(old)
        parent, position = insertion_point(image, drawable)
        layer = _new_layer(image, result, name, result.x, result.y)
        image.insert_layer(layer, parent, position)
        _fill(layer, result)
        if selected:  # the painter's layer stays the one they paint on, not the preview
            image.set_selected_layers([item for item in selected if item.is_valid()])
    finally:
        image.undo_thaw()
    Gimp.displays_flush()
    return layer


def remove_preview(image, layer) -> None:
    """Remove a preview layer without an undo step."""
    if layer is None or not layer.is_valid():
        return
    image.undo_freeze()
    try:
        image.remove_layer(layer)
    finally:
        image.undo_thaw()
    Gimp.displays_flush()


def new_image_with(source_image, results: Sequence[object], names: Sequence[str]):
    """A new image holding the results as layers at (0, 0) (for upscale); the source image is not touched."""
    width = max(r.width for r in results)
    height = max(r.height for r in results)
    base = (
        Gimp.ImageBaseType.GRAY if source_image.get_base_type() == Gimp.ImageBaseType.GRAY else Gimp.ImageBaseType.RGB
    )
    image = Gimp.Image.new(width, height, base)
    try:
        profile = source_image.get_color_profile()
        if profile is not None:
            image.set_color_profile(profile)
        image.undo_disable()
        for result, name in reversed(list(zip(results, names))):
            layer = _new_layer(image, result, name, 0, 0)
            image.insert_layer(layer, None, 0)
            _fill(layer, result)
        image.undo_enable()
    except BaseException:
        image.delete()
        raise
    return image


# --- Paintbridge data kept in the image (saved in the .xcf) ----------------------------------------------------------


def load_document_data(image, key: str) -> Optional[bytes]:
    """The data stored under ``key`` in ``image`` (image parasite ``paintbridge-<key>``), None when there is none.
    Damaged or foreign data raises ``client.docdata.DocumentDataError`` (the image itself is not affected)."""
    parasite = image.get_parasite(docdata.GIMP_PREFIX + docdata.check_key(key))
    if parasite is None:
        return None
    raw = parasite.get_data()  # GIMP hands parasite bytes to Python as signed chars
    blob = array("b", raw).tobytes() if isinstance(raw, list) else bytes(raw)
    return docdata.unpack(key, blob)


def save_document_data(image, key: str, data: Optional[bytes]) -> None:
    """Store ``data`` under ``key`` in ``image`` as a PERSISTENT parasite (kept in the .xcf); None removes it.
    Not an undo step."""
    name = docdata.GIMP_PREFIX + docdata.check_key(key)
    if data is None:
        if image.get_parasite(name) is not None:
            image.detach_parasite(name)
        return
    signed = array("b", docdata.pack(key, data)).tolist()  # the binding takes parasite data as signed chars
    image.attach_parasite(Gimp.Parasite.new(name, Gimp.PARASITE_PERSISTENT, signed))


# --- regions: a prompt kept on a layer or channel itself (PERSISTENT parasite, saved in the .xcf) --------

REGION_KEY = "region"


def _parasite_bytes(parasite) -> bytes:
    raw = parasite.get_data()  # GIMP hands parasite bytes to Python as signed chars
    return array("b", raw).tobytes() if isinstance(raw, list) else bytes(raw)


def load_region(item) -> Optional[bytes]:
    """The region data stored on a layer or channel (parasite ``paintbridge-region``), None when it has none.
    Damaged or foreign data raises ``client.docdata.DocumentDataError``."""
    parasite = item.get_parasite(docdata.GIMP_PREFIX + REGION_KEY)
    return None if parasite is None else docdata.unpack(REGION_KEY, _parasite_bytes(parasite))


def save_region(item, data: Optional[bytes]) -> None:
    """Store region data on a layer or channel as a PERSISTENT parasite (kept in the .xcf); None removes it."""
    name = docdata.GIMP_PREFIX + REGION_KEY
    if data is None:
        if item.get_parasite(name) is not None:
            item.detach_parasite(name)
        return
    signed = array("b", docdata.pack(REGION_KEY, data)).tolist()
    item.attach_parasite(Gimp.Parasite.new(name, Gimp.PARASITE_PERSISTENT, signed))


def region_items(image) -> List[object]:
    """Every layer (inside groups too, top first) and channel of ``image`` that carries region data."""
    name = docdata.GIMP_PREFIX + REGION_KEY
    return [item for item in _all_layers(image) + list(image.get_channels()) if item.get_parasite(name) is not None]


def _all_layers(image) -> List[object]:
    """Every layer of ``image``, inside groups too, top first."""

    def walk(items):
        for item in items:
            yield item
            if item.is_group():
                yield from walk(item.get_children())

    return list(walk(image.get_layers()))


def read_opacity(item, box: Box) -> bytes:
    """A region's mask over ``box`` as gray8: a channel's value, a layer's alpha (a group's: of its projection)."""
    return _read(item, box, "Y u8" if isinstance(item, Gimp.Channel) else "A u8")


def run_interactively(procedure: str, image, drawables: list) -> None:
    """Run a Paintbridge procedure as if chosen from the menu (its dialog opens) on ``image``."""
    proc = Gimp.get_pdb().lookup_procedure(procedure)
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", list(drawables))
    proc.run(config)


def flush_displays() -> None:
    Gimp.displays_flush()


def show_message(text: str) -> None:
    Gimp.message(text)
