"""A pykrita test-driver plugin (installed by the host tests next to Paintbridge) that drives the Paintbridge docker.

It runs a scenario, a generator of steps: each ``yield`` hands control back to Krita's event loop (``yield 300``
waits 300 ms, ``yield Until(cond, timeout)`` polls ``cond``), so every Krita call happens on the UI thread, one step per
``QTimer.singleShot``. It reads Krita's own layers back, writes raw pixels to ``$PB_DRIVER_OUT/<name>.bin`` and a
``result.json``, then quits with ``file_quit``. Any exception is recorded and the run quits instead of hanging.

``PB_DRIVER_CONFIG`` holds one scenario's settings, or ``{"scenarios": [...]}``: a list of them that one Krita start
runs in order, each into its own ``out`` folder with its own ``result.json``. Between two scenarios the driver does what
a painter would: it closes the documents, docks the panel again, puts the panel's settings back as they were when it
first appeared, and points it at the next scenario's ``server_url`` when that differs. A failure ends only its own
scenario; the next one still runs.
"""

import json
import math
import os
import shutil
import signal
import sys
import time
import traceback

from krita import Krita, Selection

try:  # Krita 5: PyQt5; Krita 6: PyQt6 (the names below are spelt the way both accept: scoped enums)
    from PyQt5 import QtCore, QtGui, QtWidgets
except ImportError:
    from PyQt6 import QtCore, QtGui, QtWidgets
QByteArray, QTimer = QtCore.QByteArray, QtCore.QTimer

LOADED = time.monotonic()  # when Krita loaded this plugin
K = Krita.instance()
_GIVEN = json.loads(os.environ["PB_DRIVER_CONFIG"])
PLAN = _GIVEN.get("scenarios") or [_GIVEN]  # the scenarios of this Krita start, in order
# The running scenario's settings, output folder, result and document size (rebound by ``_begin`` for each scenario).
CONFIG = PLAN[0]
OUT = CONFIG["out"]
RESULT = {"steps": [], "errors": [], "qt": QtCore.__name__.split(".")[0]}
W, H = CONFIG.get("width", 128), CONFIG.get("height", 96)
CURRENT = {"index": 0, "done": False}


def _excepthook(kind, value, tb):
    RESULT["errors"].append("".join(traceback.format_exception(kind, value, tb)))
    _finish()


sys.excepthook = _excepthook


class Until:
    def __init__(self, cond, timeout, poll=100):
        self.cond, self.timeout, self.poll = cond, timeout, poll


def _finish():
    """End the running scenario: write its result, then start the next scenario, or quit Krita after the last."""
    if CURRENT["done"]:
        return
    CURRENT["done"] = True
    PENDING.clear()  # a step still scheduled belongs to the scenario that ended
    last = CURRENT["index"] + 1 >= len(PLAN)
    RESULT["scenario_s"] = round(time.monotonic() - T0, 2)  # this scenario's own time (with the steps between)
    try:
        for doc in K.documents():
            doc.setModified(False)
        with open(os.path.join(OUT, "result.json.tmp"), "w") as f:
            json.dump(RESULT, f, indent=1, default=str)
        os.replace(os.path.join(OUT, "result.json.tmp"), os.path.join(OUT, "result.json"))
    finally:
        if last:
            K.action("file_quit").trigger()
            QTimer.singleShot(15000, lambda: os._exit(4))
        else:
            QTimer.singleShot(0, lambda: _begin(CURRENT["index"] + 1))


LAST_STEP = [time.monotonic()]


def _watchdog():
    """A plain thread: when no step has run for the running scenario's ``stall_s`` seconds (60 unless given), record
    where the UI thread is and give up (Krita quits: the scenarios after it do not run)."""
    import threading

    main = threading.main_thread().ident
    while True:
        time.sleep(2)
        stall_s = CONFIG.get("stall_s", 60)
        if time.monotonic() - LAST_STEP[0] > stall_s:
            frame = sys._current_frames().get(main)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "?"
            RESULT["errors"].append(f"no driver step for {stall_s} s; UI thread at:\n{stack}")
            with open(os.path.join(OUT, "result.json"), "w") as f:
                json.dump(RESULT, f, indent=1, default=str)
            os._exit(5)


PENDING = {}  # the one scheduled callback: {"due": monotonic time, "fn": callable}


def schedule(ms, fn):
    """Run ``fn`` after ``ms`` on the UI thread (QTimer.singleShot). A repeating back-up timer runs it should the
    single shot not have fired two seconds after it was due (seen rarely on loaded machines; each rescue is recorded)."""
    token = object()
    PENDING.clear()
    PENDING.update(due=time.monotonic() + ms / 1000.0, fn=fn, token=token)

    def fire():
        if PENDING.get("token") is token:
            PENDING.clear()
            fn()

    PENDING["fire"] = fire
    QTimer.singleShot(int(ms), fire)


def _rescue():
    if PENDING and time.monotonic() > PENDING["due"] + 2.0:
        RESULT.setdefault("rescued", []).append(RESULT.get("last_step"))
        PENDING["fire"]()


BACKUP = QTimer()
BACKUP.setInterval(500)
BACKUP.timeout.connect(_rescue)


class Runner:
    def __init__(self, gen):
        self.gen = gen

    def step(self, value=None):
        LAST_STEP[0] = time.monotonic()
        try:
            cmd = self.gen.send(value)
            frame = self.gen.gi_frame
            while frame is not None and getattr(frame, "f_lineno", None) is not None:  # innermost ``yield from``
                RESULT["last_step"] = f"line {frame.f_lineno}"
                inner = getattr(frame.f_code, "co_name", "")
                RESULT["last_step"] += f" in {inner}"
                break
        except StopIteration:
            _finish()
            return
        except Exception:  # noqa: BLE001 - every failure of a step goes into the result
            RESULT["errors"].append(traceback.format_exc())
            _finish()
            return
        if isinstance(cmd, Until):
            deadline = time.monotonic() + cmd.timeout

            def poll():
                LAST_STEP[0] = time.monotonic()
                try:
                    ok = bool(cmd.cond())
                except Exception:  # noqa: BLE001 - every failure of a condition goes into the result
                    RESULT["errors"].append(traceback.format_exc())
                    ok = False
                    return self.step(False)
                if ok:
                    self.step(True)
                elif time.monotonic() > deadline:
                    self.step(False)
                else:
                    schedule(cmd.poll, poll)

            schedule(cmd.poll, poll)
        else:
            schedule(int(cmd or 0), self.step)


# --- helpers -------------------------------------------------------------------------------------------------------

COUNTS = {}  # what the plug-in did, counted from outside it: "pixel_reads", "preview_writes"


def _counted(key, fn):
    def counted(*args, **kwargs):
        COUNTS[key] += 1
        return fn(*args, **kwargs)

    return counted


def count(key):
    """How often the plug-in has read a document's pixels (``pixel_reads``) or written a result into the preview
    layer (``preview_writes``) since the first call: its one door to Krita (``paintbridge.document``) is wrapped then."""
    if not COUNTS:
        from paintbridge import document as door

        COUNTS.update(pixel_reads=0, preview_writes=0)
        door._pixels = _counted("pixel_reads", door._pixels)
        door.KritaHost.show_preview = staticmethod(_counted("preview_writes", door.show_preview))
    return COUNTS[key]


def dump(name, data):
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(bytes(data))
    return name


def walk(node):
    for child in node.childNodes():
        yield child
        yield from walk(child)


def layers(doc):
    out = []
    for node in walk(doc.rootNode()):
        b = node.bounds()
        out.append(
            {
                "name": node.name(),
                "type": node.type(),
                "id": node.uniqueId().toString(),
                "visible": node.visible(),
                "bounds": [b.x(), b.y(), b.width(), b.height()],
                "parent": node.parentNode().name() if node.parentNode() is not None else None,
            }
        )
    return out


def find(doc, name):
    return next((n for n in walk(doc.rootNode()) if n.name() == name), None)


def snapshot(doc, tag, names):
    """Dump the full-canvas pixels of the named layers; returns {name: file}."""
    return {n: dump(f"{tag}-{n}", find(doc, n).pixelData(0, 0, doc.width(), doc.height())) for n in names}


def composite(doc, tag):
    from paintbridge.document import refresh

    refresh(doc)  # the plugin's own wait, which never dead-locks the UI thread
    return dump(tag, doc.pixelData(0, 0, doc.width(), doc.height()))


def pattern(w, h, depth="U8"):
    """A smooth colourful BGRA8 pattern, converted to the document's depth by the plugin's own code."""
    data = bytearray(w * h * 4)
    for y in range(h):
        for x in range(w):
            i = (y * w + x) * 4
            data[i] = (x * 255) // max(1, w - 1)
            data[i + 1] = (y * 255) // max(1, h - 1)
            data[i + 2] = 128 + int(100 * math.sin(x / 9.0) * math.cos(y / 7.0))
            data[i + 3] = 255
            if (x // 12 + y // 12) % 5 == 0:  # hard-edged dark squares, so edge detectors find something
                data[i : i + 3] = b"\x20\x20\x20"
    return bytes(data)


def native(data, depth, linear):
    from paintbridge import pixels  # the plugin's conversions

    return pixels.from_bgra8(data, depth, linear)


def new_doc(name, depth="U8", model="RGBA", w=None, h=None):
    """A new document shown in the window (the running scenario's size unless ``w``, ``h`` are given)."""
    doc = K.createDocument(w or W, h or H, name, model, depth, "", 72.0)
    K.activeWindow().addView(doc)
    return doc


def add_paint(doc, name, depth="U8"):
    from paintbridge import pixels

    node = doc.createNode(name, "paintlayer")
    doc.rootNode().addChildNode(node, None)
    linear = depth != "U8" and pixels.is_linear_profile(doc.colorProfile())
    node.setPixelData(
        QByteArray(native(pattern(doc.width(), doc.height()), depth, linear)), 0, 0, doc.width(), doc.height()
    )
    return node


def select_rect(doc, x, y, w, h):
    sel = Selection()
    sel.select(x, y, w, h, 255)
    doc.setSelection(sel)


def select_soft_ellipse(doc, cx, cy, rx, ry, soft):
    data = bytearray(doc.width() * doc.height())
    for y in range(doc.height()):
        for x in range(doc.width()):
            d = math.hypot((x + 0.5 - cx) / rx, (y + 0.5 - cy) / ry)
            edge = (1.0 - d) * min(rx, ry) / soft  # 1 at `soft` px inside the rim, 0 on the rim
            data[y * doc.width() + x] = max(0, min(255, int(round(edge * 255))))
    sel = Selection()
    sel.select(0, 0, doc.width(), doc.height(), 0)
    sel.setPixelData(QByteArray(bytes(data)), 0, 0, doc.width(), doc.height())
    doc.setSelection(sel)
    return dump("ellipse-selection", doc.selection().pixelData(0, 0, doc.width(), doc.height()))


def deselect(doc):
    doc.setSelection(Selection())
    K.action("deselect").trigger()


def panel_state(ses):
    return {
        "busy": ses.busy,
        "message": ses.message,
        "error": ses.message_is_error,
        "results": len(ses.results),
        "preview_updates": count("preview_writes"),
        "state": ses.connection_state,
    }


def mark(label):
    RESULT.setdefault("timeline", []).append([label, round(time.monotonic() - T0, 2)])


T0 = time.monotonic()


FIRST_SETTINGS = []  # the panel's settings when a scenario first found it (put back between scenarios)


def find_panel():
    for dock in K.dockers():
        if dock.objectName() == "paintbridge_docker":
            if dock.widget() is not None and not FIRST_SETTINGS:
                import copy

                FIRST_SETTINGS.append(copy.deepcopy(dock.widget().session.settings))
            return dock, dock.widget()
    return None, None


def apply_result(ses, doc, rec, dump_name, w, h, wait_ms=400):
    """Apply the chosen result, then record the layers, the new ones, and the one new layer's pixels (w x h; the
    document's size when None)."""
    rec["applied"] = ses.apply()
    yield wait_ms
    rec["layers_applied"] = layers(doc)
    before_ids = {m["id"] for m in rec["layers_before"]}
    rec["new_layers"] = [l for l in rec["layers_applied"] if l["id"] not in before_ids]
    if len(rec["new_layers"]) == 1:
        w, h = (doc.width(), doc.height()) if w is None else (w, h)
        rec["new_layer_pixels"] = dump(dump_name, find(doc, rec["new_layers"][0]["name"]).pixelData(0, 0, w, h))


def run_job(ses, record, timeout=120):
    """Start a job with the panel's settings and wait for it; fills ``record``."""
    t0 = time.monotonic()
    record["job_id"] = ses.run()
    record["start_message"] = ses.message
    yield Until(lambda: not ses.busy, timeout)
    record["seconds"] = round(time.monotonic() - t0, 2)
    record.update(panel_state(ses))
    record["results_meta"] = [
        {"box": [r.box.x, r.box.y, r.box.width, r.box.height], "seed": r.seed} for r in ses.results
    ]


def watch_progress_previews(panel, doc):
    """Record, at each in-progress preview the session hands the panel (after the panel has shown it: the watch
    connects after the panel), which step it was, what the panel showed and the document's layer stack."""
    watch = {
        "shown": 0,
        "steps": [],
        "tooltips": [],
        "stacks": [],
        "sizes": [],
        "label_visible": [],
        "thumbnails_hidden": [],
        "preview_layer_writes": [],
    }
    writes_before = count("preview_writes")

    def slot(preview):
        watch["shown"] += 1
        watch["steps"].append([preview.step, preview.total])
        watch["tooltips"].append(panel.progress_preview.toolTip())
        stack = layers(doc)
        if stack not in watch["stacks"]:
            watch["stacks"].append(stack)
        pixmap = panel.progress_preview.pixmap()
        watch["sizes"].append([pixmap.width(), pixmap.height()] if pixmap is not None else None)
        watch["label_visible"].append(panel.progress_preview.isVisible())
        watch["thumbnails_hidden"].append(not panel.results_list.isVisible())
        watch["preview_layer_writes"].append(count("preview_writes") - writes_before)
        if watch["shown"] in (1, 4):  # the panel with a preview of the job in progress
            panel.grab().save(os.path.join(OUT, "panel-preview.png"))

    watch["slot"] = slot
    panel.session.progress_preview.connect(slot)
    return watch


def inpaint_apply_undo(ses, doc, tag, record):
    """Inpaint the current selection, apply, read back, undo."""
    record["composite_before"] = composite(doc, f"{tag}-composite-before")
    record["layers_before"] = layers(doc)
    yield from run_job(ses, record)
    record["layers_preview"] = layers(doc)
    preview = find(doc, "Paintbridge preview")
    record["preview"] = dump(f"{tag}-preview", preview.pixelData(0, 0, doc.width(), doc.height())) if preview else None
    if ses.results:
        r = ses.results[ses.selected_result]
        record["result"] = dump(f"{tag}-result", r.data)
        record["result_box"] = [r.box.x, r.box.y, r.box.width, r.box.height]
        record["result_seed"] = r.seed
    record["applied"] = ses.apply()
    yield 400
    record["layers_applied"] = layers(doc)
    new = [l for l in record["layers_applied"] if l["id"] not in {m["id"] for m in record["layers_before"]}]
    record["new_layers"] = new
    if len(new) == 1:
        node = find(doc, new[0]["name"])
        record["new_layer_pixels"] = dump(f"{tag}-new", node.pixelData(0, 0, doc.width(), doc.height()))
    record["composite_applied"] = composite(doc, f"{tag}-composite-applied")
    K.action("edit_undo").trigger()
    yield 600
    record["layers_undone"] = layers(doc)


def server_pid(ses):
    process = ses.server.process
    return process.pid if process is not None and ses.server.running else None


def native_to_bgra8(doc, raw):
    from paintbridge import pixels

    linear = doc.colorDepth() != "U8" and pixels.is_linear_profile(doc.colorProfile())
    return pixels.to_bgra8(bytes(raw), doc.colorDepth(), linear)


def activate(doc):
    """Make ``doc`` the active document again (show its view)."""
    window = K.activeWindow()
    for view in window.views():
        if view.document() == doc:
            window.showView(view)
            view.setVisible()
            break
    yield 400


# --- real brush strokes on the canvas ------------------------------------------------------------------------------

CANVAS = {}  # widget, and the document -> widget map: (x0, y0, scale)


def canvas_widget():
    for widget in K.activeWindow().qwindow().findChildren(QtWidgets.QWidget):
        if widget.metaObject().className() in ("KisQPainterCanvas", "KisOpenGLCanvas2") and widget.isVisible():
            return widget
    return None


def mouse(widget, kind, x, y, pressed):
    """Send one mouse event to the canvas widget (widget coordinates), as the painter's pen would."""
    QEvent, QPoint, QPointF, Qt = QtCore.QEvent, QtCore.QPoint, QtCore.QPointF, QtCore.Qt
    QMouseEvent, QApplication = QtGui.QMouseEvent, QtWidgets.QApplication
    kinds = {
        "press": QEvent.Type.MouseButtonPress,
        "move": QEvent.Type.MouseMove,
        "release": QEvent.Type.MouseButtonRelease,
    }
    button = Qt.MouseButton.LeftButton if kind in ("press", "release") else Qt.MouseButton.NoButton
    event = QMouseEvent(
        kinds[kind],
        QPointF(x, y),
        QPointF(widget.mapToGlobal(QPoint(int(x), int(y)))),
        button,
        Qt.MouseButton.LeftButton if pressed else Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, event)


def stroke(points):
    """A brush stroke through document points (the active tool, the active layer); returns the time just before
    the pen is lifted."""
    widget, (x0, y0, scale) = CANVAS["widget"], CANVAS["map"]
    pts = [(x0 + x * scale, y0 + y * scale) for x, y in points]
    mouse(widget, "move", *pts[0], False)
    mouse(widget, "press", *pts[0], True)
    for x, y in pts[1:]:
        mouse(widget, "move", x, y, True)
    lifted = time.monotonic()
    mouse(widget, "release", *pts[-1], False)
    return lifted


def _centroid(node, doc):
    raw = bytes(node.pixelData(0, 0, doc.width(), doc.height()))
    pts = [(i // 4 % doc.width(), i // 4 // doc.width()) for i in range(3, len(raw), 4) if raw[i]]
    return (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)) if pts else None


def calibrate_canvas(doc, R):
    """Two dabs on a scratch layer at known widget points give the document -> widget map; the layer goes again."""
    from paintbridge.document import wait_idle

    widget = canvas_widget()
    CANVAS["widget"] = widget
    active = doc.activeNode()
    scratch = doc.createNode("pb-calibrate", "paintlayer")
    doc.rootNode().addChildNode(scratch, None)
    yield 300
    doc.setActiveNode(scratch)
    yield 300
    found = []
    for wx, wy in (
        (widget.width() / 2 - 60, widget.height() / 2 - 40),
        (widget.width() / 2 + 60, widget.height() / 2 + 40),
    ):
        mouse(widget, "move", wx, wy, False)
        mouse(widget, "press", wx, wy, True)
        mouse(widget, "move", wx + 0.5, wy, True)
        mouse(widget, "release", wx + 0.5, wy, False)
        yield 400
        wait_idle(doc)
        found.append(((wx, wy), _centroid(scratch, doc)))
        R.setdefault("calibration", []).append(found[-1])
        scratch.setPixelData(QByteArray(bytes(doc.width() * doc.height() * 4)), 0, 0, doc.width(), doc.height())
        yield 200
    (w1, d1), (w2, d2) = found
    scale = (w2[0] - w1[0]) / (d2[0] - d1[0])
    CANVAS["map"] = (w1[0] - d1[0] * scale, w1[1] - d1[1] * scale, scale)
    R["canvas_map"] = CANVAS["map"]
    scratch.remove()
    doc.setActiveNode(active)
    yield 400


def frame_after(ses, t):
    """The first live frame started by a change after ``t``: its notification and send delays in ms."""
    for frame in ses.live.frames:
        if frame["change"] >= t:
            return {
                "notified_ms": round(1000 * (frame["change"] - t), 1),
                "sent_ms": round(1000 * (frame["sent"] - t), 1) if frame["sent"] else None,
            }
    return None


def live_stroke(ses, doc, rec, tag, points, updates):
    """Paint a stroke in live mode; wait for the frame it starts; record the stroke-to-job-sent latency."""
    paint = find(doc, "Paint")
    doc.setActiveNode(paint)
    yield 300
    before = bytes(paint.pixelData(0, 0, doc.width(), doc.height()))
    changes, events = ses.live.changes, ses.live._watch.events
    rec[f"{tag}_active"] = doc.activeNode().name()
    lifted = stroke(points)
    yield Until(lambda: count("preview_writes") >= updates and not ses.busy, 20, poll=5)
    after = bytes(paint.pixelData(0, 0, doc.width(), doc.height()))
    rec[f"{tag}_painted"] = sum(1 for i in range(3, len(after), 4) if after[i - 3 : i + 1] != before[i - 3 : i + 1])
    rec[f"{tag}_changes"] = [ses.live.changes - changes, ses.live._watch.events - events]
    rec[f"{tag}_frame"] = frame_after(ses, lifted)


# --- scenarios -----------------------------------------------------------------------------------------------------


def scenario_classical():
    R = RESULT
    dock = panel = None
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    R["docker_found"] = panel is not None
    dock.show()
    dock.raise_()
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    mark("connected")
    R["connected"] = ses.connection_state
    R["status_text"] = panel.status_label.text()
    R["device"] = ses.device
    R["server_pid"] = server_pid(ses)
    R["server_started_by_plugin"] = ses.server.running

    doc = new_doc("pb-classical")
    yield 400
    paint = add_paint(doc, "Paint")
    doc.setActiveNode(paint)
    yield 400
    user = [n["name"] for n in layers(doc)]
    R["user_layers"] = user
    R["user_before"] = snapshot(doc, "user-before", user)

    ses.set_mode("inpaint")
    ses.set_option("model", "classical")
    ses.set_option("batch", 2)
    ses.set_prompt("a red fox", "blurry")

    # Rectangular selection.
    select_rect(doc, 40, 30, 24, 20)
    yield 300
    mark("rect")
    R["rect"] = rec = {"selection": [40, 30, 24, 20]}
    rec["selection_pixels"] = dump("rect-selection", doc.selection().pixelData(0, 0, W, H))
    rec["composite_before"] = composite(doc, "rect-composite-before")
    rec["layers_before"] = layers(doc)
    yield from run_job(ses, rec)
    rec["layers_preview"] = layers(doc)
    # The panel with its results: the screenshot artifact (docker floated to a typical sidebar size).
    dock.setFloating(True)
    dock.resize(330, 900)
    panel.advanced_button.setChecked(True)
    yield 500
    panel.grab().save(os.path.join(OUT, "panel.png"))
    panel.advanced_button.setChecked(False)
    K.activeWindow().qwindow().grab().save(os.path.join(OUT, "window.png"))
    preview = find(doc, "Paintbridge preview")
    rec["preview"] = dump("rect-preview", preview.pixelData(0, 0, W, H)) if preview else None
    if len(ses.results) > 1:
        ses.select_result(1)
        yield 200
        rec["flipped_to"] = ses.selected_result
    r = ses.results[ses.selected_result] if ses.results else None
    if r is not None:
        rec["result"] = dump("rect-result", r.data)
        rec["result_box"] = [r.box.x, r.box.y, r.box.width, r.box.height]
        rec["result_seed"] = r.seed
    yield from apply_result(ses, doc, rec, "rect-new", W, H)
    rec["composite_applied"] = composite(doc, "rect-composite-applied")
    K.action("edit_undo").trigger()
    yield 600
    rec["layers_undone"] = layers(doc)

    # Elliptical soft selection.
    ses.set_option("batch", 1)
    mark("ellipse")
    R["ellipse"] = rec = {}
    rec["selection_pixels"] = select_soft_ellipse(doc, 84, 50, 22, 16, 6)
    yield 300
    yield from inpaint_apply_undo(ses, doc, "ellipse", rec)

    # Discard removes the preview.
    select_rect(doc, 8, 8, 16, 16)
    mark("discard")
    R["discard"] = rec = {}
    yield from run_job(ses, rec)
    rec["preview_present"] = find(doc, "Paintbridge preview") is not None
    ses.discard()
    yield 300
    rec["layers_after"] = layers(doc)

    # Inpaint without a selection: a clear message in the panel, no job.
    deselect(doc)
    yield 300
    R["no_selection"] = {"job_id": ses.run(), **panel_state(ses)}

    # Where the canvas widget shows the document (for real brush strokes in live mode).
    yield from calibrate_canvas(doc, R)

    # Live mode: two selection changes, two preview updates, no extra layers.
    mark("live")
    R["live"] = rec = {}
    select_rect(doc, 16, 16, 16, 16)
    yield 300
    base = count("preview_writes")
    ses.set_live(True)
    yield Until(lambda: count("preview_writes") >= base + 1 and not ses.busy, 60)
    rec["first"] = count("preview_writes") - base
    rec["first_preview"] = (
        dump("live-1", find(doc, "Paintbridge preview").pixelData(0, 0, W, H))
        if find(doc, "Paintbridge preview")
        else None
    )
    select_rect(doc, 80, 56, 20, 20)
    yield Until(lambda: count("preview_writes") >= base + 2 and not ses.busy, 60)
    rec["second"] = count("preview_writes") - base
    rec["second_preview"] = (
        dump("live-2", find(doc, "Paintbridge preview").pixelData(0, 0, W, H))
        if find(doc, "Paintbridge preview")
        else None
    )
    reads, changes = count("pixel_reads"), ses.live.changes
    yield 2500  # nothing changes now: no further jobs, and no pixel reads
    rec["settled"] = count("preview_writes") - base
    rec["idle_reads"], rec["idle_changes"] = count("pixel_reads") - reads, ses.live.changes - changes
    rec["event_driven"] = ses.live._watch.event_driven if ses.live._watch is not None else None
    # A real brush stroke on the canvas under the context box triggers a frame; undoing it triggers another.
    yield from live_stroke(ses, doc, rec, "paint", [(84, 62), (88, 64), (92, 66), (96, 70)], base + 3)
    rec["after_paint"] = count("preview_writes") - base
    t_undo = time.monotonic()
    K.action("edit_undo").trigger()
    yield Until(lambda: count("preview_writes") >= base + 4 and not ses.busy, 60, poll=5)
    rec["after_restore"] = count("preview_writes") - base
    rec["undo_frame"] = frame_after(ses, t_undo)
    rec["reads_after_idle"] = count("pixel_reads") - reads  # the stroke and its undo
    rec["changes_after_idle"] = ses.live.changes - changes
    rec["frames"] = ses.live.frames
    rec["layers"] = layers(doc)
    ses.set_live(False)
    rec["live_off"] = not ses.live.on
    ses.discard()
    yield 300
    rec["layers_after_discard"] = layers(doc)

    # A selected selection mask serves as the mask; so can the active layer's transparency.
    mark("mask_node")
    R["mask_node"] = rec = {}
    deselect(doc)
    mask_sel = Selection()
    mask_sel.select(70, 10, 20, 16, 255)
    mask = doc.createSelectionMask("pb-test-mask")
    mask.setSelection(mask_sel)
    find(doc, "Paint").addChildNode(mask, None)
    yield 300
    doc.setActiveNode(mask)
    yield 300
    rec["active"] = doc.activeNode().name()
    rec["layers_before"] = layers(doc)
    yield from run_job(ses, rec)
    preview = find(doc, "Paintbridge preview")
    rec["preview"] = dump("masknode-preview", preview.pixelData(0, 0, W, H)) if preview else None
    rec["parent_of_preview"] = preview.parentNode().name() if preview else None
    ses.discard()
    mask.remove()
    doc.setActiveNode(find(doc, "Paint"))
    yield 300
    R["alpha_mask"] = rec = {}
    shape = doc.createNode("pb-test-shape", "paintlayer")
    doc.rootNode().addChildNode(shape, None)
    shape.setPixelData(QByteArray(b"\x10\x80\x10\xff" * (12 * 10)), 10, 60, 12, 10)
    yield 300
    doc.setActiveNode(shape)
    ses.set_option("mask_source", "alpha")
    yield 300
    yield from run_job(ses, rec)
    preview = find(doc, "Paintbridge preview")
    rec["preview"] = dump("alphamask-preview", preview.pixelData(0, 0, W, H)) if preview else None
    ses.discard()
    ses.set_option("mask_source", "selection")
    shape.remove()
    doc.setActiveNode(find(doc, "Paint"))
    yield 300

    # Control layer from the image (a preprocess job), inserted as a new hidden layer.
    mark("control")
    R["control"] = rec = {}
    deselect(doc)
    doc.setActiveNode(find(doc, "Paint"))
    yield 300
    rec["layers_before"] = layers(doc)
    rec["job_id"] = ses.control_from_image("canny")
    yield Until(lambda: not ses.busy, 60)
    rec.update(panel_state(ses))
    rec["layers_after"] = layers(doc)
    rec["rows"] = [dict(spec.__dict__) for spec in ses.controls]
    node = find(doc, "Control: canny")
    if node is not None:
        rec["pixels"] = dump("control-canny", node.pixelData(0, 0, W, H))
    while ses.controls:
        ses.remove_control(0)
    if node is not None:
        node.remove()  # our own test layer, so that the user-layer comparison below sees only the user's
    yield 300

    # The server stops mid-job: an error in the panel, the document untouched; then it comes back.
    mark("crash")
    R["crash"] = rec = {}
    select_rect(doc, 40, 30, 24, 20)
    yield 300
    rec["layers_before"] = layers(doc)
    pid = server_pid(ses)
    rec["pid"] = pid
    if pid:
        os.kill(pid, signal.SIGSTOP)
        yield 200
        rec["job_id"] = ses.run()
        yield 1000
        rec["busy_while_stopped"] = ses.busy
        os.kill(pid, signal.SIGKILL)
        yield Until(lambda: not ses.busy, 30)
        rec.update(panel_state(ses))
        rec["layers_after"] = layers(doc)
        yield Until(lambda: ses.connection_state != "connected", 20)
        yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
        rec["reconnected"] = ses.connection_state == "connected"
        rec["new_pid"] = server_pid(ses)
        rec["status_text"] = panel.status_label.text()
        yield from run_job(ses, rec.setdefault("after", {}))
        ses.discard()
        yield 300

    mark("user_after")
    R["user_after"] = snapshot(doc, "user-after", user)
    R["final_layers"] = layers(doc)

    # Outpaint grows the canvas (on its own document, since growing moves every layer).
    odoc = new_doc("pb-outpaint", w=64, h=48)
    yield 400
    onode = add_paint(odoc, "Paint")
    odoc.setActiveNode(onode)
    yield 300
    mark("outpaint")
    R["outpaint"] = rec = {"user_before": dump("out-user-before", onode.pixelData(0, 0, 64, 48))}
    ses.set_mode("outpaint")
    ses.set_option("extend_left", 16)
    ses.set_option("extend_bottom", 8)
    rec["layers_before"] = layers(odoc)
    yield from run_job(ses, rec)
    yield from apply_result(ses, odoc, rec, "out-new", None, None, wait_ms=600)
    rec["size"] = [odoc.width(), odoc.height()]
    rec["user_after"] = dump("out-user-after", onode.pixelData(0, 0, odoc.width(), odoc.height()))
    ses.set_option("extend_left", 0)
    ses.set_option("extend_bottom", 0)

    # 16-bit integer and 32-bit float documents: converted on the way in and out.
    for depth in ("U16", "F32"):
        ddoc = new_doc(f"pb-{depth}", depth=depth, w=64, h=48)
        yield 400
        dnode = add_paint(ddoc, "Paint", depth)
        ddoc.setActiveNode(dnode)
        select_rect(ddoc, 20, 16, 16, 12)
        yield 300
        mark(depth)
        R[depth] = rec = {
            "profile": ddoc.colorProfile(),
            "user_before": dump(f"{depth}-user-before", dnode.pixelData(0, 0, 64, 48)),
        }
        ses.set_mode("inpaint")
        rec["layers_before"] = layers(ddoc)
        yield from run_job(ses, rec)
        if ses.results:
            rec["result"] = dump(f"{depth}-result", ses.results[0].data)
            rec["result_box"] = [
                ses.results[0].box.x,
                ses.results[0].box.y,
                ses.results[0].box.width,
                ses.results[0].box.height,
            ]
        yield from apply_result(ses, ddoc, rec, f"{depth}-new", 64, 48)
        rec["user_after"] = dump(f"{depth}-user-after", dnode.pixelData(0, 0, 64, 48))

    # Upscale opens the result as a new document; the original stays as it was. Without a selection the whole
    # canvas is upscaled, with one only the selection's box (the same rule as in GIMP).
    mark("upscale")
    R["upscale"] = rec = {"documents_before": len(K.documents())}
    udoc = K.activeDocument()
    deselect(udoc)
    yield 300
    rec["source"] = [udoc.name(), udoc.width(), udoc.height()]
    rec["source_layers"] = layers(udoc)
    ses.set_mode("upscale")
    ses.set_option("scale", 2.0)
    yield from run_job(ses, rec)
    rec["applied"] = ses.apply()
    yield 600
    docs = K.documents()
    rec["documents_after"] = len(docs)
    newest = docs[-1]
    rec["new_document"] = [newest.name(), newest.width(), newest.height()]
    rec["source_layers_after"] = layers(udoc)
    # Upscale of a selection on the shared document (tests/ellipse_case.py), as GIMP's host test does it too.
    case = CONFIG["ellipse"]
    udoc = new_doc("pb-upscale", w=case["width"], h=case["height"])
    yield 400
    unode = udoc.createNode("Paint", "paintlayer")
    udoc.rootNode().addChildNode(unode, None)
    unode.setPixelData(QByteArray(open(case["image"], "rb").read()), 0, 0, case["width"], case["height"])
    udoc.setActiveNode(unode)
    yield 300
    mark("upscale_selection")
    R["upscale_selection"] = rec = {"documents_before": len(K.documents())}
    ux, uy, uw, uh = case["upscale_box"]
    select_rect(udoc, ux, uy, uw, uh)
    ses.set_option("scale", case["upscale_scale"])
    yield 300
    rec["active"] = K.activeDocument().name()
    rec["source_layers"] = layers(udoc)
    rec["source_pixels"] = dump("upscale-source", native_to_bgra8(udoc, unode.pixelData(ux, uy, uw, uh)))
    yield from run_job(ses, rec)
    rec["applied"] = ses.apply()
    yield 600
    newest = K.documents()[-1]
    rec["documents_after"] = len(K.documents())
    rec["new_document"] = [newest.name(), newest.width(), newest.height()]
    newest.refreshProjection()
    yield 300
    rec["new_pixels"] = dump("upscale-selection-new", newest.pixelData(0, 0, newest.width(), newest.height()))
    rec["source_layers_after"] = layers(udoc)
    deselect(udoc)

    # Other colour models are refused with a message, not a dialog.
    cdoc = new_doc("pb-cmyk", model="CMYKA", depth="U8", w=32, h=32)
    yield 400
    select_rect(cdoc, 4, 4, 8, 8)
    yield 200
    mark("cmyk")
    R["cmyk"] = {"job_id": ses.run(), **panel_state(ses), "layers": layers(cdoc)}


def scenario_diffusion():
    """The tiny SD1.5 model: img2img of the whole canvas with a batch, a control layer in an inpaint job, cancel."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    mark("connected")
    R["connected"] = ses.connection_state
    R["server_pid"] = server_pid(ses)
    R["models"] = [panel.model_box.itemData(i) for i in range(panel.model_box.count())]
    doc = new_doc("pb-diffusion")
    yield 400
    paint = add_paint(doc, "Paint")
    doc.setActiveNode(paint)
    yield 300
    user = [n["name"] for n in layers(doc)]
    R["user_layers"] = user
    R["user_before"] = snapshot(doc, "user-before", user)

    # img2img without a selection: the whole canvas, a batch of two to flip through.
    mark("img2img")
    deselect(doc)
    ses.set_mode("img2img")
    ses.set_option("model", CONFIG["model"])
    ses.set_prompt("a castle on a hill", "")
    ses.set_option("steps", 4)
    ses.set_option("strength", 0.6)
    ses.set_option("batch", 2)
    ses.set_option("random_seed", False)
    ses.set_option("seed", 77)
    yield 300
    # The docker floated to a typical sidebar size, for the screenshots.
    dock.setFloating(True)
    dock.resize(330, 900)
    yield 500
    R["img2img"] = rec = {"layers_before": layers(doc)}
    rec["composite_before"] = composite(doc, "img2img-composite-before")
    watch = watch_progress_previews(panel, doc)
    yield from run_job(ses, rec, timeout=300)
    panel.session.progress_preview.disconnect(watch["slot"])
    del watch["slot"]
    rec["progress_previews"] = watch
    rec["preview_label_after"] = panel.progress_preview.isVisible()
    rec["thumbnails_visible_after"] = panel.results_list.isVisible()
    rec["progress"] = list(ses.last_progress)
    rec["layers_preview"] = layers(doc)
    rec["thumbnails"] = panel.results_list.count()
    if len(ses.results) > 1:
        ses.select_result(1)
        yield 300
    rec["selected"] = ses.selected_result
    preview = find(doc, "Paintbridge preview")
    rec["preview"] = dump("img2img-preview", preview.pixelData(0, 0, W, H)) if preview else None
    if ses.results:
        r = ses.results[ses.selected_result]
        rec["result"] = dump("img2img-result", r.data)
        rec["result_box"] = [r.box.x, r.box.y, r.box.width, r.box.height]
        rec["seeds"] = [x.seed for x in ses.results]
    yield from apply_result(ses, doc, rec, "img2img-new", W, H)
    K.action("edit_undo").trigger()
    yield 500
    rec["layers_undone"] = layers(doc)

    # A control layer made from the image guides an inpaint job.
    mark("control")
    ses.set_option("batch", 1)
    doc.setActiveNode(find(doc, "Paint"))
    yield 300
    R["control"] = rec = {}
    rec["preprocess_job"] = ses.control_from_image("canny")
    yield Until(lambda: not ses.busy, 120)
    rec["preprocess"] = panel_state(ses)
    rec["rows"] = [dict(spec.__dict__) for spec in ses.controls]
    doc.setActiveNode(find(doc, "Paint"))
    ses.set_mode("inpaint")
    select_rect(doc, 40, 30, 32, 24)
    yield 300
    yield from run_job(ses, rec, timeout=300)
    rec["layers_preview"] = layers(doc)
    dock.setFloating(True)
    dock.resize(330, 900)
    yield 500
    panel.grab().save(os.path.join(OUT, "panel.png"))
    QWidget = QtWidgets.QWidget
    R["wide_widgets"] = sorted(
        (
            (
                w.minimumSizeHint().width(),
                type(w).__name__,
                w.objectName() or (w.text() if hasattr(w, "text") and isinstance(w.text(), str) else ""),
            )
            for w in panel.findChildren(QWidget)
            if w.minimumSizeHint().width() > 150
        ),
        reverse=True,
    )[:12]
    ses.discard()
    while ses.controls:
        ses.remove_control(0)
    node = find(doc, "Control: canny")
    if node is not None:
        node.remove()
    yield 300

    # Generate into the selection's context box.
    mark("generate")
    R["generate"] = rec = {}
    select_rect(doc, 8, 8, 24, 24)
    ses.set_mode("generate")
    yield 300
    rec["layers_before"] = layers(doc)
    yield from run_job(ses, rec, timeout=300)
    yield from apply_result(ses, doc, rec, "generate-new", W, H)
    K.action("edit_undo").trigger()
    yield 500

    # Speed: Fast picked in the panel's Sampling section (shown for SD1.5); the result says the job ran fast.
    mark("speed")
    R["speed"] = rec = {"row_visible": not panel.speed_box.isHidden()}
    index = panel.speed_box.findData("fast")
    panel.speed_box.setCurrentIndex(index)
    panel.speed_box.activated.emit(index)
    rec["setting"] = ses.settings.speed
    yield from run_job(ses, rec, timeout=300)
    rec["info_speed"] = dict(ses.result_info.get("speed") or {})
    ses.discard()
    ses.set_option("speed", "")  # back to the style's choice
    yield 300
    ses.set_mode("inpaint")

    # Cancel a long job: the panel says so and nothing is added.
    mark("cancel")
    R["cancel"] = rec = {"layers_before": layers(doc)}
    ses.set_option("steps", 150)
    rec["job_id"] = ses.run()
    yield Until(lambda: ses.last_progress[0] >= 1 or not ses.busy, 120, poll=50)
    ses.cancel()
    yield Until(lambda: not ses.busy, 60)
    rec.update(panel_state(ses))
    rec["layers_after"] = layers(doc)
    R["user_after"] = snapshot(doc, "user-after", user)

    # Generate into a soft elliptical selection on the document GIMP's host test uses too (tests/ellipse_case.py).
    mark("generate_ellipse")
    case = CONFIG["ellipse"]
    R["generate_ellipse"] = rec = {}
    w, h = case["width"], case["height"]
    edoc = new_doc("pb-ellipse", w=w, h=h)
    yield 400
    enode = edoc.createNode("Paint", "paintlayer")
    edoc.rootNode().addChildNode(enode, None)
    enode.setPixelData(QByteArray(open(case["image"], "rb").read()), 0, 0, w, h)
    edoc.setActiveNode(enode)
    yield 300
    sel = Selection()
    sel.select(0, 0, w, h, 0)
    sel.setPixelData(QByteArray(open(case["selection"], "rb").read()), 0, 0, w, h)
    edoc.setSelection(sel)
    yield 300
    rec["selection_pixels"] = dump("ellipse-case-selection", edoc.selection().pixelData(0, 0, w, h))
    rec["composite_before"] = composite(edoc, "ellipse-case-composite")
    ses.set_mode("generate")
    ses.set_option("model", case["model"])
    ses.set_prompt(case["prompt"], "")
    ses.set_option("steps", case["steps"])
    ses.set_option("batch", 1)
    ses.set_option("random_seed", False)
    ses.set_option("seed", case["seed"])
    rec["layers_before"] = layers(edoc)
    yield from run_job(ses, rec, timeout=300)
    yield from apply_result(ses, edoc, rec, "ellipse-case-new", w, h)
    mark("done")


def scenario_flaky():
    """The connection is cut once mid-job (a proxy between the plugin and the server, started by the test): the panel
    reconnects with its session id and still gets its layer."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    dock.show()
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    mark("connected")
    R["connected"] = ses.connection_state
    doc = new_doc("pb-flaky")
    yield 400
    paint = add_paint(doc, "Paint")
    doc.setActiveNode(paint)
    yield 400
    ses.set_mode("inpaint")
    ses.set_option("model", "classical")
    ses.set_prompt("over a flaky network", "")
    select_rect(doc, 40, 30, 24, 20)
    yield 300
    R["flaky"] = rec = {"layers_before": layers(doc)}
    yield from run_job(ses, rec)
    yield from apply_result(ses, doc, rec, "flaky-new", W, H)
    mark("done")


def scenario_flux():
    """A tiny Flux.1 model kept as ComfyUI users keep it: generate into a rectangular selection, apply."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    R["connected"] = ses.connection_state
    R["server_pid"] = server_pid(ses)
    R["models"] = [panel.model_box.itemData(i) for i in range(panel.model_box.count())]
    doc = new_doc("pb-flux")
    yield 400
    paint = add_paint(doc, "Paint")
    doc.setActiveNode(paint)
    yield 300
    mark("generate")
    ses.set_mode("generate")
    ses.set_option("model", CONFIG["model"])
    ses.set_prompt("a castle on a hill", "")
    ses.set_option("steps", 2)
    ses.set_option("batch", 1)
    ses.set_option("random_seed", False)
    ses.set_option("seed", 5)
    ses.set_option("grow", 0)
    ses.set_option("feather", 0)
    select_rect(doc, 16, 8, 48, 40)
    yield 300
    R["generate"] = rec = {"layers_before": layers(doc)}
    rec["composite_before"] = composite(doc, "flux-composite-before")
    yield from run_job(ses, rec, timeout=300)
    yield from apply_result(ses, doc, rec, "flux-new", W, H)


def scenario_pull():
    """Download a preset from the panel's Models section: the server pulls it from the hub stand-in."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    dock.show()
    dock.raise_()
    yield Until(lambda: ses.connection_state == "connected" and ses.downloads.presets is not None, 150, poll=200)
    mark("connected")
    ses.set_mode("upscale")
    yield 200
    R["lines_before"] = panel.presets_label.text()
    R["suggested"] = panel.preset_box.currentData()
    R["upscalers_before"] = ses.upscaler_names()
    R["button_enabled"] = panel.pull_button.isEnabled()
    progress = []
    ses.downloads.pull_changed.connect(lambda: progress.append(list(ses.downloads.progress)))
    panel.pull_button.click()  # the preset the panel suggests for the mode
    yield Until(lambda: ses.downloads.pull_id is None and progress, 120, poll=200)
    yield Until(lambda: "upscaler: complete" in panel.presets_label.text(), 30, poll=200)
    mark("pulled")
    R["progress"] = progress
    R["message"] = ses.message
    R["error"] = ses.message_is_error
    R["lines_after"] = panel.presets_label.text()
    R["upscalers_after"] = ses.upscaler_names()
    R["upscaler_items"] = [panel.upscaler_box.itemData(i) for i in range(panel.upscaler_box.count())]


def scenario_references():
    """Reference images (issue 15): a reference layer added from the panel (active layer, + Add), its type changed in
    its row; generate with and without it (same seed); a second reference moved up and removed."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    R["connected"] = ses.connection_state
    doc = new_doc("pb-references")
    yield 400
    paint = add_paint(doc, "Paint")
    ref = add_paint(doc, "Reference")
    flipped = bytearray(ref.pixelData(0, 0, doc.width(), doc.height()))
    flipped[0::4], flipped[2::4] = bytes(255 - v for v in flipped[2::4]), bytes(flipped[0::4])
    ref.setPixelData(QByteArray(bytes(flipped)), 0, 0, doc.width(), doc.height())
    doc.setActiveNode(paint)
    yield 300
    ses.set_mode("generate")
    ses.set_option("model", CONFIG["model"])
    ses.set_prompt("a castle on a hill", "")
    for name, value in (("steps", 3), ("batch", 1), ("random_seed", False), ("seed", 5), ("grow", 0), ("feather", 0)):
        ses.set_option(name, value)
    select_rect(doc, 16, 8, 48, 40)
    yield 300
    R["plain"] = rec = {}
    yield from run_job(ses, rec, timeout=300)
    rec["pixels"] = dump("references-plain", ses.results[0].data) if ses.results else None
    ses.discard()
    yield 300
    doc.setActiveNode(ref)
    yield 300
    panel.add_reference_button.click()  # the active layer becomes the reference
    yield 300
    row = panel.reference_rows[0]
    row.type_box.setCurrentText("style")
    row.strength.setValue(1.5)
    yield 200
    R["rows"] = [{"layer": r.layer, "type": r.type, "strength": r.strength} for r in ses.references.items]
    R["reference_id"] = ref.uniqueId().toString()
    R["row_layer"] = row.layer_box.currentData()
    doc.setActiveNode(paint)
    yield 300
    R["with_reference"] = rec = {}
    yield from run_job(ses, rec, timeout=300)
    rec["pixels"] = dump("references-with", ses.results[0].data) if ses.results else None
    ses.discard()
    yield 300
    panel.add_reference_button.click()  # a second one (the active layer: Paint), then up, then removed
    yield 300
    panel.reference_rows[1].up_button.click()
    yield 300
    R["moved"] = [r.layer for r in ses.references.items]
    panel.reference_rows[0].remove_button.click()
    yield 300
    R["after_remove"] = [r.layer for r in ses.references.items]
    R["rows_shown"] = len(panel.reference_rows)
    R["paint_id"] = paint.uniqueId().toString()


def large_photo(w, h):
    """A BGRA8 "photo" of w x h built at C speed: a red ramp across, other channels varying, rows shifted."""
    row = b"".join(bytes(((x * 7) % 256, (x * 13) % 251, (x * 255) // (w - 1), 255)) for x in range(w))
    return b"".join(row[(y % 509) * 4 :] + row[: (y % 509) * 4] for y in range(h))


def scenario_large():
    """A 6000 x 4000 document (the size of a camera photo): outpaint grows its canvas, upscale opens it 2x larger.
    Pixels are compared inside Krita (byte strings), only the verdicts and sizes are recorded."""
    R = RESULT
    w, h = CONFIG["width"], CONFIG["height"]
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    R["connected"] = ses.connection_state
    R["server_pid"] = server_pid(ses)
    photo = large_photo(w, h)
    doc = new_doc("pb-large", w=w, h=h)
    yield 400
    node = doc.createNode("Photo", "paintlayer")
    doc.rootNode().addChildNode(node, None)
    node.setPixelData(QByteArray(photo), 0, 0, w, h)
    doc.setActiveNode(node)
    deselect(doc)
    yield 300
    mark("large_outpaint")
    R["outpaint"] = rec = {"layers_before": layers(doc)}
    ses.set_mode("outpaint")
    ses.set_option("model", "classical")
    ses.set_option("extend_left", 16)
    ses.set_option("extend_bottom", 8)
    # The same job through shared memory (the default on one machine), then on the wire (the plugin reconnected
    # without offering it): both results are kept as digests, the wire one is applied.
    import hashlib
    from paintbridge.wire import protocol as vendored

    client = ses.connection._client
    folder = client.shared_folder if client is not None else None
    before = (folder.written, folder.read) if folder is not None else None
    yield from run_job(ses, rec, timeout=300)
    rec["shared"] = {
        "folder": folder is not None,
        "before": before,
        "after": (folder.written, folder.read) if folder is not None else None,
        "digests": [hashlib.sha256(r.data).hexdigest() for r in ses.results],
        "boxes": [[r.box.x, r.box.y, r.box.width, r.box.height] for r in ses.results],
    }
    ses.discard()
    yield 500
    shared_client_module = sys.modules[vendored.__name__ + ".client"]
    shared_client_module.SHARED_AVAILABLE = False
    ses.connection.reconnect_now()
    yield Until(
        lambda: (
            ses.connection._client is not None
            and ses.connection._client is not client
            and ses.connection_state == "connected"
        ),
        60,
        poll=200,
    )
    rec["wire"] = {"folder": ses.connection._client.shared_folder is not None}
    yield from run_job(ses, rec, timeout=300)
    rec["wire"]["digests"] = [hashlib.sha256(r.data).hexdigest() for r in ses.results]
    shared_client_module.SHARED_AVAILABLE = True
    rec["applied"] = ses.apply()
    yield 1500
    rec["size"] = [doc.width(), doc.height()]
    before_ids = {m["id"] for m in rec["layers_before"]}
    rec["new_layers"] = [l for l in layers(doc) if l["id"] not in before_ids]
    rec["user_kept"] = bytes(node.pixelData(16, 0, w, h)) == photo
    doc.refreshProjection()
    yield 1500
    rec["composite_kept"] = bytes(doc.pixelData(16, 0, w, h)) == photo
    band = bytes(doc.pixelData(0, 0, 16, h + 8)) + bytes(doc.pixelData(16, h, w, 8))
    rec["band_opaque"] = band[3::4].count(255) == len(band) // 4
    ses.set_option("extend_left", 0)
    ses.set_option("extend_bottom", 0)

    mark("large_upscale")
    R["upscale"] = rec = {"documents_before": len(K.documents())}
    ses.set_mode("upscale")
    ses.set_option("scale", 2.0)
    yield from run_job(ses, rec, timeout=600)
    rec["applied"] = ses.apply()
    yield 3000
    newest = K.documents()[-1]
    rec["documents_after"] = len(K.documents())
    rec["new_document"] = [newest.name(), newest.width(), newest.height()]
    newest.refreshProjection()
    yield 1500
    line = bytes(newest.pixelData(0, 4000, newest.width(), 1))
    rec["red_samples"] = [line[x * 4 + 2] for x in range(1000, newest.width() - 1000, 1000)]
    rec["row_opaque"] = line[3::4].count(255) == newest.width()


def scenario_edit():
    """Instruction edit on a tiny Flux.1 Kontext model: the Edit tab is offered only for a model whose listing says it
    can edit; the edit of a selection comes back as one layer composited by the selection."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected" and ses.models, 150, poll=200)
    R["connected"] = ses.connection_state
    R["server_pid"] = server_pid(ses)
    edit_tab = list(panel_modes()).index("edit")
    doc = new_doc("pb-edit")
    yield 400
    paint = add_paint(doc, "Paint")
    doc.setActiveNode(paint)
    yield 300
    ses.set_option("model", "tiny-flux")
    yield 200
    R["tab_enabled_flux"] = mode_offered(panel, edit_tab)
    R["flux_sections_hidden"] = {key: section.isHidden() for key, section in panel.sections.items()}
    R["flux_mode"] = ses.settings.mode
    ses.set_mode("edit")
    R["mode_after_refused"], R["refused_message"] = ses.settings.mode, ses.message
    ses.set_option("model", CONFIG["model"])
    yield 200
    R["tab_enabled_kontext"] = mode_offered(panel, edit_tab)
    choose_mode(panel, edit_tab)
    yield 200
    R["mode"] = ses.settings.mode
    R["run_button"] = panel.run_button.text()
    ses.set_prompt("make the roof red", "")
    ses.set_option("steps", 2)
    ses.set_option("batch", 1)
    ses.set_option("random_seed", False)
    ses.set_option("seed", 9)
    ses.set_option("grow", 0)
    ses.set_option("feather", 0)
    select_rect(doc, 16, 8, 48, 40)
    yield 300
    mark("edit")
    R["edit"] = rec = {"layers_before": layers(doc)}
    rec["composite_before"] = composite(doc, "edit-composite-before")
    yield from run_job(ses, rec, timeout=300)
    yield from apply_result(ses, doc, rec, "edit-new", W, H)
    ses.set_option("model", "tiny-flux")  # a model that cannot edit: the panel leaves the Edit mode
    yield 200
    R["mode_after_switch"] = ses.settings.mode
    R["tab_enabled_after_switch"] = mode_offered(panel, edit_tab)


def scenario_decompose():
    """Picture into layers on a tiny Qwen-Image-Layered model: the Layers tab is offered only for it; the selection
    comes back as a group layer holding the layers, named, bottom first, with their alpha, above the active layer."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected" and ses.models, 150, poll=200)
    R["connected"] = ses.connection_state
    tab = list(panel_modes()).index("decompose")
    doc = new_doc("pb-decompose")
    yield 400
    paint = add_paint(doc, "Paint")
    top = doc.createNode("Top", "paintlayer")  # a layer above the active one: the group goes between them
    doc.rootNode().addChildNode(top, paint)
    yield 300
    doc.setActiveNode(paint)
    yield 300
    R["paint_before"] = dump("decompose-paint-before", paint.pixelData(0, 0, doc.width(), doc.height()))
    ses.set_option("model", "tiny-qwen")
    yield 200
    R["tab_enabled_qwen"] = mode_offered(panel, tab)
    ses.set_mode("decompose")
    R["mode_after_refused"], R["refused_message"] = ses.settings.mode, ses.message
    ses.set_option("model", CONFIG["model"])
    yield 200
    R["tab_enabled_layered"] = mode_offered(panel, tab)
    R["mode_with_layered"] = ses.settings.mode  # the panel moved to the one mode the model runs
    R["inpaint_enabled_layered"] = mode_offered(panel, list(panel_modes()).index("inpaint"))
    choose_mode(panel, tab)
    yield 200
    R["mode"], R["run_button"] = ses.settings.mode, panel.run_button.text()
    R["layer_count_shown"] = panel.decompose_box.isVisibleTo(panel)
    panel.layer_count_spin.setValue(3)  # as the painter sets it
    ses.set_prompt("a house with a red roof", "")
    ses.set_option("steps", 2)
    ses.set_option("random_seed", False)
    ses.set_option("seed", 9)
    select_rect(doc, 16, 8, 48, 40)
    yield 300
    mark("decompose")
    R["decompose"] = rec = {"layers_before": layers(doc), "active_before": doc.activeNode().name()}
    yield from run_job(ses, rec, timeout=300)
    yield 400
    rec["layers_after"] = layers(doc)
    rec["root_order"] = [n.name() for n in doc.rootNode().childNodes()]  # bottom first
    group = next((n for n in doc.rootNode().childNodes() if n.type() == "grouplayer"), None)
    rec["group"] = None if group is None else group.name()
    rec["children"] = []
    for i, child in enumerate(group.childNodes() if group is not None else []):  # bottom first
        data = dump(f"decompose-child-{i}", child.pixelData(16, 8, 48, 40))
        rec["children"].append({"name": child.name(), "type": child.type(), "pixels": data})
    R["paint_after"] = dump("decompose-paint-after", paint.pixelData(0, 0, doc.width(), doc.height()))
    R["active_after"] = doc.activeNode().name() if doc.activeNode() is not None else None
    ses.set_option("model", "tiny-qwen")  # a model that cannot decompose: the panel leaves the Layers mode
    yield 200
    R["mode_after_switch"] = ses.settings.mode
    doc.setModified(False)


def panel_modes():
    from paintbridge.widgets import MODES  # the panel's own order of modes

    return MODES


def mode_offered(panel, index):
    """Whether the panel's mode list lets the painter pick mode ``index``."""
    return panel.mode_box.model().item(index).isEnabled()


def choose_mode(panel, index):
    """Pick mode ``index`` in the panel's mode list, as a painter's click does."""
    panel.mode_box.setCurrentIndex(index)
    panel.mode_box.activated.emit(index)


def load_photo(doc, path):
    """A paint layer holding the PNG at ``path`` (read by Qt; ARGB32 is BGRA in memory)."""
    QImage = QtGui.QImage
    image = QImage(path).convertToFormat(QImage.Format.Format_ARGB32)
    bits = image.constBits()
    bits.setsize(image.sizeInBytes())
    node = doc.createNode("Photo", "paintlayer")
    doc.rootNode().addChildNode(node, None)
    node.setPixelData(QByteArray(bytes(bits)), 0, 0, image.width(), image.height())
    return node


def scenario_techniques():
    """Hires fix and detailer (issue 13) from the panel's own widgets: the detailer on its own on a photo (mode tab
    "Detail"), applied; then generate with the hires fix on (Lanczos, 2x the first pass)."""
    from paintbridge.widgets import MODES

    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    R["connected"] = ses.connection_state
    R["server_pid"] = server_pid(ses)
    R["mode_tabs"] = [panel.mode_box.itemText(i) for i in range(panel.mode_box.count())]
    panel.sections["techniques"].set_open(True)  # the painter opens the folded section
    doc = new_doc("pb-techniques")
    yield 400
    photo = load_photo(doc, CONFIG["photo"])
    doc.setActiveNode(photo)
    yield 300
    ses.set_option("model", CONFIG["model"])
    ses.set_prompt("a portrait", "")
    ses.set_option("steps", 4)
    ses.set_option("random_seed", False)
    ses.set_option("seed", 5)
    t = panel.techniques
    mark("detail")
    choose_mode(panel, MODES.index("detail"))
    yield 200
    t.detail_strength.setValue(0.6)
    t.detail_prompt.setText("a smiling face")
    yield 200
    offered_before = {"faces": t.detail_faces.isVisible(), "hands": t.detail_hands.isVisible()}
    hand = CONFIG["hand_detector"]  # the hand detector arrives while Krita runs: the panel offers hands then
    shutil.copyfile(hand["from"], hand["to"])
    yield Until(lambda: t.detail_hands.isVisible(), 30)
    t.detail_hands.setChecked(True)
    yield 200
    R["detail"] = rec = {
        "layers_before": layers(doc),
        "mode": ses.settings.mode,
        "detail_visible": t.detail_box.isVisible(),
        "hires_visible": t.hires_box.isVisible(),
        "detail_checkable": t.detail_box.isCheckable(),
        "prompt": ses.settings.detail_prompt,
        "strength": ses.settings.detail_strength,
        "run_label": panel.run_button.text(),
        "offered_before": offered_before,
        "hands_offered": t.detail_hands.isVisible(),
        "targets": ses.settings.detail_targets,
    }
    rec["composite_before"] = composite(doc, "techniques-before")
    yield from run_job(ses, rec, timeout=300)
    rec["last_progress"] = list(ses.last_progress)
    yield from apply_result(ses, doc, rec, "techniques-detail", W, H)
    mark("hires")
    choose_mode(panel, MODES.index("generate"))
    yield 200
    t.hires_box.setChecked(True)
    t.hires_scale.setValue(2.0)
    t.hires_strength.setValue(0.5)
    ses.set_option("hires_upscaler", "lanczos")
    yield 200
    R["hires"] = rec = {
        "layers_before": layers(doc),
        "hires": ses.settings.hires,
        "detail": ses.settings.detail,
        "scale": ses.settings.hires_scale,
        "strength": ses.settings.hires_strength,
        "upscaler_shown": t.hires_upscaler.currentData(),
        "hires_visible": t.hires_box.isVisible(),
        "detail_checkable": t.detail_box.isCheckable(),
    }
    yield from run_job(ses, rec, timeout=300)
    rec["last_progress"] = list(ses.last_progress)
    mark("done")


def save_close_reopen(doc, path):
    """Save ``doc`` as a .kra at ``path``, close it, open the file again (shown in the window); yields, returns it."""
    doc.setBatchmode(True)
    saved = doc.saveAs(path)
    doc.close()
    yield 500
    again = K.openDocument(path)
    K.activeWindow().addView(again)
    yield 600
    return saved, again


def scenario_history():
    """Paintbridge data inside the .kra (document annotations) survives save, close and reopen; then the history of
    a classical job that was never applied comes back with the document and applies again."""
    from paintbridge import document as door
    from paintbridge.wire import client as pbc

    R = RESULT
    R["docdata"] = rec = {}
    doc = new_doc("pb-docdata")
    yield 400
    payload = os.urandom(2_000_000) + bytes(1000)
    door.save_document_data(doc, "history", payload)
    door.save_document_data(doc, "regions", b"region prompts")
    door.save_document_data(doc, "gone", b"removed before saving")
    door.save_document_data(doc, "gone", None)
    doc.setAnnotation("paintbridge/foreign", "not ours", QByteArray(b"written by another program"))
    rec["types_before"] = list(doc.annotationTypes())
    path = os.path.join(OUT, "docdata.kra")
    rec["saved"], doc = yield from save_close_reopen(doc, path)
    rec["kra_bytes"] = os.path.getsize(path)
    rec["types_after"] = list(doc.annotationTypes())
    rec["history_same"] = door.load_document_data(doc, "history") == payload
    rec["regions"] = door.load_document_data(doc, "regions").decode()
    rec["gone"] = door.load_document_data(doc, "gone")
    rec["never_set"] = door.load_document_data(doc, "never")
    try:
        door.load_document_data(doc, "foreign")
        rec["foreign_error"] = None
    except pbc.docdata.DocumentDataError as err:
        rec["foreign_error"] = str(err)
    rec["size"] = [doc.width(), doc.height()]
    doc.setModified(False)

    # A classical inpaint whose result is discarded (never applied) stays in the document's history.
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    dock.show()
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    R["connected"] = ses.connection_state
    R["server_pid"] = server_pid(ses)
    R["history"] = rec = {}
    doc = new_doc("pb-history")
    yield 400
    paint = add_paint(doc, "Paint")
    doc.setActiveNode(paint)
    yield 400
    ses.set_mode("inpaint")
    ses.set_option("model", "classical")
    ses.set_prompt("kept for later", "")
    select_rect(doc, 40, 30, 24, 20)
    yield 300
    rec["layers_before"] = layers(doc)
    yield from run_job(ses, rec)
    result = ses.results[0]
    rec["result"] = {
        "box": [result.box.x, result.box.y, result.box.width, result.box.height],
        "name": result.name,
        "seed": result.seed,
    }
    dump("history-result", result.data)
    ses.discard()
    yield 300
    rec["entries_before"] = [e.id for e in ses.history.entries]
    rec["list_before"] = panel.history_list.count()
    rec["layers_discarded"] = layers(doc)
    path = os.path.join(OUT, "history.kra")
    rec["saved"], doc = yield from save_close_reopen(doc, path)
    rec["kra_bytes"] = os.path.getsize(path)
    stored = doc.annotation("paintbridge/history")
    rec["annotation_bytes"] = len(bytes(stored))
    yield Until(lambda: panel.history_list.count() > 0, 20)  # the panel follows the active document
    rec["list_after"] = panel.history_list.count()
    rec["entries_after"] = [e.id for e in ses.history.entries]
    rec["tooltip"] = panel.history_list.item(0).toolTip() if panel.history_list.count() else ""
    K.activeWindow().qwindow().grab().save(os.path.join(OUT, "window.png"))
    doc.setActiveNode(find(doc, "Paint"))
    yield 300
    panel.history_list.setCurrentRow(0)
    panel.history_apply_button.click()
    yield 600
    rec["message_apply"] = [ses.message, ses.message_is_error]
    rec["new_layers"] = [l for l in layers(doc) if l["name"] == result.name]
    node = find(doc, result.name)
    box = result.box
    again = bytes(node.pixelData(box.x, box.y, box.width, box.height)) if node is not None else b""
    rec["same_pixels"] = again == result.data
    dump("history-again", again)
    ses.set_prompt("something else", "")
    panel.history_reuse_button.click()
    yield 300
    rec["reused_prompt"] = ses.settings.prompt
    rec["reused_widget"] = panel.prompt_edit.toPlainText()
    # the History section's search field, typed into as a painter does
    searched = rec["search"] = {}
    for query in ("LATER", "zebra", "mode:inpaint model:classical kept", ""):
        panel.history_search.setText(query)
        yield 200
        searched[query] = {
            "count": panel.history_list.count(),
            "label": panel.history_size_label.text(),
            "apply": panel.history_apply_button.isEnabled(),
        }
    panel.history_delete_button.click()
    yield 300
    rec["list_deleted"] = panel.history_list.count()
    rec["types_deleted"] = list(doc.annotationTypes())
    doc.setModified(False)

    # Seamless textures: the panel's checkboxes; an upscaled (Lanczos) texture opens shown in wrap-around mode.
    R["seamless"] = rec = {"wrap_before": K.action("wrap_around_mode").isChecked()}
    rec["row_in_inpaint"] = panel.tileable_row.isVisibleTo(panel)
    ses.set_mode("upscale")
    yield 200
    rec["row_in_upscale"] = panel.tileable_row.isVisibleTo(panel)
    rec["wrap_enabled_before"] = panel.wrap_view_check.isEnabled()
    panel.tileable_check.click()
    yield 200
    rec["settings"] = [ses.settings.tileable, ses.settings.wrap_view, panel.wrap_view_check.isEnabled()]
    deselect(doc)
    yield 200
    yield from run_job(ses, rec)
    rec["applied"] = ses.apply()
    yield 800
    rec["wrap_after"] = K.action("wrap_around_mode").isChecked()
    rec["active"] = K.activeDocument().name() if K.activeDocument() is not None else None
    K.activeWindow().qwindow().grab().save(os.path.join(OUT, "wrapped.png"))


def peak_rss():
    """Krita's peak resident memory so far, in bytes (``VmHWM``)."""
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def scenario_history_bomb():
    """A .kra whose history holds zlib bombs (a thumbnail and a layer that would each inflate to 1 GiB, written by
    the test: out/bomb-history.bin) opens; the panel lists the good result, says which part is damaged, and Krita's
    peak memory does not grow by the bombs."""
    R = RESULT
    R["bomb"] = rec = {}
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    dock.show()
    messages = rec["messages"] = []
    ses.message_changed.connect(lambda text, error: messages.append([text, bool(error)]))
    doc = new_doc("pb-bomb")
    yield 400
    rec["peak_before"] = peak_rss()
    blob = open(os.path.join(OUT, "bomb-history.bin"), "rb").read()
    doc.setAnnotation("paintbridge/history", "Paintbridge history", QByteArray(blob))
    path = os.path.join(OUT, "bomb.kra")
    rec["saved"], doc = yield from save_close_reopen(doc, path)
    rec["kra_bytes"] = os.path.getsize(path)
    yield Until(lambda: panel.history_list.count() > 0, 30)
    yield 500
    rec["list"] = panel.history_list.count()
    rec["prompts"] = [e.prompt for e in ses.history.entries]
    rec["tooltip"] = panel.history_list.item(0).toolTip() if panel.history_list.count() else ""
    rec["peak_after"] = peak_rss()
    K.activeWindow().qwindow().grab().save(os.path.join(OUT, "window.png"))
    doc.setModified(False)


def pick(box, value):
    """Choose ``value`` in a panel combo box as a painter does (the ``activated`` signal); False when not offered."""
    index = box.findData(value)
    if index >= 0:
        box.setCurrentIndex(index)
        box.activated.emit(index)
    return index >= 0


def items(box):
    return [box.itemData(i) for i in range(box.count())]


def scenario_sampling():
    """Issue 13 in the panel: sampler and schedule picked separately, batch count, a VAE, CLIP skip; generate."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    R["connected"] = ses.connection_state
    R["server_pid"] = server_pid(ses)
    doc = new_doc("pb-sampling")
    yield 400
    doc.setActiveNode(add_paint(doc, "Paint"))
    yield 300
    deselect(doc)
    ses.set_mode("generate")
    ses.set_prompt("a castle on a hill", "")
    R["rec"] = rec = {"picked": {}}
    rec["picked"]["model"] = pick(panel.model_box, CONFIG["model"])
    rec["samplers"], rec["vaes"] = items(panel.sampler_box), items(panel.vae_box)
    rec["picked"]["ddim"] = pick(panel.sampler_box, "DDIM")
    yield 200
    rec["ddim_schedules"] = items(panel.scheduler_box)
    rec["picked"]["sampler"] = pick(panel.sampler_box, "Euler")
    yield 200
    rec["euler_schedules"] = items(panel.scheduler_box)
    rec["picked"]["scheduler"] = pick(panel.scheduler_box, "Karras")
    rec["picked"]["vae"] = pick(panel.vae_box, "tiny-vae-ft-mse")
    panel.batch_count_spin.setValue(2)
    panel.clip_skip_spin.setValue(2)
    panel.steps_spin.setValue(3)
    ses.set_option("batch", 1)
    ses.set_option("random_seed", False)
    ses.set_option("seed", 11)
    yield 300
    shown = ses.shown()
    rec["settings"] = {
        k: getattr(shown, k)
        for k in ("sampler", "scheduler", "batch_count", "vae", "clip_skip", "steps", "cfg", "seed")
    }
    # DDIM cannot run with Karras: choosing it puts the schedule back to the sampler's own
    pick(panel.sampler_box, "DDIM")
    yield 200
    rec["ddim_resets"] = ses.settings.scheduler
    pick(panel.sampler_box, "Euler")
    pick(panel.scheduler_box, "Karras")
    yield 200
    rec["layers_before"] = layers(doc)
    yield from run_job(ses, rec, timeout=300)
    rec["seeds"] = [x.seed for x in ses.results]
    rec["results_data"] = [dump(f"sampling-{i}", r.data) for i, r in enumerate(ses.results)]
    rec["boxes"] = [[r.box.x, r.box.y, r.box.width, r.box.height] for r in ses.results]
    rec["job_settings"] = dict(ses.result_job.settings.__dict__) if ses.result_job else None
    dock.setFloating(True)
    dock.resize(330, 1000)
    panel.advanced_button.setChecked(True)
    yield 500
    K.activeWindow().qwindow().grab().save(os.path.join(OUT, "window.png"))


def bind_region(doc, section, name, x0, x1, prompt, bgra=b"\x00\x00\xff\xff"):
    """A new paint layer ``name`` painted ``bgra`` (red, opaque) in the columns ``x0``..``x1`` of the document, made
    active and bound in the panel's Regions section (``section``) with ``prompt``, as a painter does; returns it."""
    node = doc.createNode(name, "paintlayer")
    doc.rootNode().addChildNode(node, None)
    raw = bytearray(W * H * 4)
    for y in range(H):
        raw[(y * W + x0) * 4 : (y * W + x1) * 4] = bgra * (x1 - x0)
    node.setPixelData(QByteArray(bytes(raw)), 0, 0, W, H)
    doc.setActiveNode(node)
    yield 400
    section.refresh()
    section.bind_button.click()
    yield 200
    section.prompt_edit.setText(prompt)
    section.prompt_edit.textEdited.emit(prompt)
    yield 200
    return node


def job_result(ses, name):
    """Run a job with the panel's settings, dump its first result's pixels as ``name`` and discard the results."""
    out = {}
    yield from run_job(ses, out, timeout=300)
    out["data"] = dump(name, ses.results[0].data) if ses.results else None
    ses.discard()
    yield 300
    return out


def street_generate(ses, seed):
    """The panel set to generate "a street" on the chosen model: 3 steps, one result, ``seed``, no grow or feather."""
    ses.set_mode("generate")
    ses.set_option("model", CONFIG["model"])
    ses.set_prompt("a street", "")
    for name, value in (
        ("steps", 3),
        ("batch", 1),
        ("random_seed", False),
        ("seed", seed),
        ("grow", 0),
        ("feather", 0),
    ):
        ses.set_option(name, value)


def scenario_regions():
    """regions (issue 15): bind a prompt to a layer in the panel's Regions section, inpaint with it, save the .kra,
    close, reopen: the region comes back and the same job gives the same pixels; without it they differ."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    R["regions"] = rec = {}
    doc = new_doc("pb-regions")
    yield 400
    add_paint(doc, "Paint")
    section = panel.regions_section
    car = yield from bind_region(doc, section, "Car", 0, W // 2, "a red sports car")
    rec["labels"] = [section.list.item(i).text() for i in range(section.list.count())]
    rec["car_id"] = car.uniqueId().toString()
    ses.set_mode("inpaint")
    ses.set_option("model", CONFIG["model"])
    ses.set_prompt("a street", "")
    ses.set_option("steps", 3)
    ses.set_option("random_seed", False)
    ses.set_option("seed", 11)
    doc.setActiveNode(find(doc, "Paint"))
    select_rect(doc, 8, 8, W - 16, H - 16)
    yield 300
    rec["with"] = yield from job_result(ses, "regions-with")
    path = os.path.join(OUT, "regions.kra")
    doc.setModified(False)
    rec["saved"], doc = yield from save_close_reopen(doc, path)
    yield 300
    section.refresh()
    yield 200
    rec["labels_after"] = [section.list.item(i).text() for i in range(section.list.count())]
    rec["car_id_after"] = find(doc, "Car").uniqueId().toString()
    doc.setActiveNode(find(doc, "Paint"))
    select_rect(doc, 8, 8, W - 16, H - 16)
    yield 300
    rec["reopened"] = yield from job_result(ses, "regions-reopened")
    section.list.setCurrentRow(0)
    section.remove_button.click()
    yield 200
    rec["labels_removed"] = [section.list.item(i).text() for i in range(section.list.count())]
    rec["without"] = yield from job_result(ses, "regions-without")
    doc.setModified(False)


def scenario_region_references():
    """A reference that belongs to a region (issue 15): bind a region in the panel, add a reference, generate with it
    for the whole image, then choose the region in its row and generate again (same seed); live mode with a region
    prompt edited in the panel; the region removed sends the reference back to the whole image."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    R["connected"] = ses.connection_state
    doc = new_doc("pb-region-references")
    yield 400
    paint = add_paint(doc, "Paint")
    ref = add_paint(doc, "Reference")
    flipped = bytearray(ref.pixelData(0, 0, W, H))
    flipped[0::4], flipped[2::4] = bytes(255 - v for v in flipped[2::4]), bytes(flipped[0::4])
    ref.setPixelData(QByteArray(bytes(flipped)), 0, 0, W, H)
    section = panel.regions_section
    soft_red = b"\x00\x00\xff\xb4"  # red, 70 % opaque: a soft region
    car = yield from bind_region(doc, section, "Car", 0, W // 2, "a red sports car", soft_red)
    R["car_id"], R["reference_id"] = car.uniqueId().toString(), ref.uniqueId().toString()
    R["car_alpha"] = dump("car-alpha", bytes(car.pixelData(0, 0, W, H))[3::4])
    street_generate(ses, seed=5)
    doc.setActiveNode(ref)
    yield 300
    panel.add_reference_button.click()  # the active layer becomes the reference, for the whole image
    yield 300
    row = panel.reference_rows[0]
    R["choices"] = [row.region_box.itemText(i) for i in range(row.region_box.count())]
    doc.setActiveNode(paint)
    select_rect(doc, 8, 8, W - 16, H - 16)
    yield 300
    for tag in ("unbound", "bound"):
        if tag == "bound":  # the painter picks the region in the reference's row
            row = panel.reference_rows[0]
            row.region_box.setCurrentIndex(row.region_box.findData(R["car_id"]))
            row.region_box.activated.emit(row.region_box.currentIndex())
            yield 200
            R["region_setting"] = ses.references.items[0].region
        R[tag] = rec = {}
        yield from run_job(ses, rec, timeout=300)
        rec["pixels"] = dump(f"region-references-{tag}", ses.results[0].data) if ses.results else None
        ses.discard()
        yield 300
    frames = ses.live.frames  # live: the region's prompt edited in the panel makes a new frame
    ses.set_live(True)
    yield Until(lambda: frames and frames[-1]["ended"] and not ses.busy, 300, poll=200)
    yield 1000  # the preview layer's own change settles (same inputs: no frame)
    before, changes = len(frames), ses.live.changes
    section.list.setCurrentRow(0)
    section.prompt_edit.setText("a blue boat")
    section.prompt_edit.textEdited.emit("a blue boat")
    yield Until(lambda: len(frames) > before and frames[-1]["ended"] and not ses.busy, 120, poll=200)
    sched = ses.live.scheduler
    R["live"] = {
        "before": [f["id"] for f in frames[:before]],
        "after": [f["id"] for f in frames[before:]],
        "outcomes": [f["outcome"] for f in frames],
        "message": ses.message,
        "changes": ses.live.changes - changes,
        "prompts": [b.prompt for b in ses.regions.list.items],
        "scheduler": [sched.latest, sched._answered, sched.running],
        "busy": ses.busy,
    }
    ses.set_live(False)
    yield 300
    ses.discard()
    yield 300
    section.list.setCurrentRow(0)
    section.remove_button.click()  # the region goes: its reference falls back to the whole image
    yield 300
    R["region_after_remove"] = ses.references.items[0].region
    R["row_after_remove"] = panel.reference_rows[0].region_box.currentText()
    doc.setModified(False)


def scenario_flux_regions():
    """Two region layers (Car: the left half, Lake: the right half) bound in the Regions section drive a tiny Flux.1
    generating the whole document; then only Car's prompt is edited in the panel and the same job runs again."""
    R = RESULT
    dock, panel, doc = yield from connected_panel_and_document("pb-flux-regions")
    ses, paint, section = panel.session, doc.activeNode(), panel.regions_section
    car = yield from bind_region(doc, section, "Car", 0, W // 2, "a red sports car")
    lake = yield from bind_region(doc, section, "Lake", W // 2, W, "a calm blue lake")
    R["labels"] = [section.list.item(i).text() for i in range(section.list.count())]
    R["alpha"] = {n.name(): dump(f"{n.name()}-alpha", bytes(n.pixelData(0, 0, W, H))[3::4]) for n in (car, lake)}
    street_generate(ses, seed=11)
    doc.setActiveNode(paint)
    select_rect(doc, 0, 0, W, H)
    yield 300
    R["first"] = yield from job_result(ses, "flux-regions-first")
    section.list.setCurrentRow(R["labels"].index("Car: a red sports car"))
    section.prompt_edit.setText("a green tree in the snow")
    section.prompt_edit.textEdited.emit("a green tree in the snow")
    yield 200
    R["labels_edited"] = [section.list.item(i).text() for i in range(section.list.count())]
    R["second"] = yield from job_result(ses, "flux-regions-second")
    doc.setModified(False)


def scenario_pose():
    """A pose control layer: the control row's *From image* on a pose control makes the layer from the picture, a job
    uses it; the painter paints on the pose layer and the same job (same seed) follows the edited layer."""
    R = RESULT
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected", 150, poll=200)
    mark("connected")
    R["server_pid"] = server_pid(ses)
    doc = new_doc("pb-pose")
    yield 400
    photo = add_paint(doc, "Paint")
    doc.setActiveNode(photo)
    yield 300
    R["user_before"] = snapshot(doc, "user-before", ["Paint"])
    ses.set_mode("img2img")
    ses.set_option("model", CONFIG["model"])
    ses.set_prompt("a dancer", "")
    for key, value in (("steps", 3), ("strength", 0.8), ("batch", 1), ("random_seed", False), ("seed", 11)):
        ses.set_option(key, value)
    ses.add_control(type="pose")
    yield 300
    row = panel.control_rows[0]
    R["row_type"] = row.type_box.currentText()
    mark("from_image")
    row.from_image.click()  # the row's own button, as the painter presses it
    yield Until(lambda: not ses.busy, 240)
    R["from_image"] = panel_state(ses)
    node = find(doc, "Control: pose")
    R["layers"] = layers(doc)
    R["rows"] = [dict(spec.__dict__) for spec in ses.controls]
    R["pose_layer_id"] = node.uniqueId().toString() if node is not None else None
    if node is None:
        return
    R["pose_layer"] = dump("pose-layer", node.pixelData(0, 0, W, H))
    doc.setActiveNode(photo)
    yield 300
    deselect(doc)
    R["made"] = rec = {}
    yield from run_job(ses, rec, timeout=300)
    rec["result"] = dump("pose-made-result", ses.results[0].data) if ses.results else None
    ses.discard()
    yield 300
    R["again"] = rec = {}  # the same job again: the same pixels (so a change below comes from the edit)
    yield from run_job(ses, rec, timeout=300)
    rec["result"] = dump("pose-again-result", ses.results[0].data) if ses.results else None
    ses.discard()
    yield 300
    # The painter paints into the pose layer: a green block over the middle.
    bar_w, bar_h = W // 2, H // 3
    node.setPixelData(QByteArray(bytes([0, 255, 0, 255]) * (bar_w * bar_h)), W // 4, H // 3, bar_w, bar_h)
    doc.refreshProjection()
    yield 300
    R["pose_layer_edited"] = dump("pose-layer-edited", node.pixelData(0, 0, W, H))
    R["edited"] = rec = {}
    yield from run_job(ses, rec, timeout=300)
    rec["result"] = dump("pose-edited-result", ses.results[0].data) if ses.results else None
    ses.discard()
    yield 300
    R["user_after"] = snapshot(doc, "user-after", ["Paint"])
    mark("done")


def scenario_caption():
    """Prompt from the picture: the Describe button beside the prompt fills it with the server captioner's words for
    the selection's box, in the caption style chosen beside it; the document's layers stay as they were."""
    R = RESULT
    dock, panel, doc = yield from connected_panel_and_document("pb-caption")
    ses = panel.session
    R["captioners"] = [m["name"] for m in ses.models if m.get("kind") == "captioner"]
    ses.set_prompt("an old prompt", "")
    yield 100
    select_rect(doc, 20, 10, 64, 48)
    yield 300
    R["layers_before"] = layers(doc)
    doc.refreshProjection()
    doc.waitForDone()
    dump("caption-box", doc.pixelData(20, 10, 64, 48))
    button, edit = panel.describe_button.geometry(), panel.prompt_edit.geometry()  # the same parent widget
    R["button"] = {
        "text": panel.describe_button.text(),
        "enabled": panel.describe_button.isEnabled(),
        "beside_prompt": button.left() >= edit.right()
        and button.top() < edit.bottom()
        and button.bottom() > edit.top()
        and panel.describe_button.isVisible(),
    }
    for style in ("sentence", "tags"):
        R[f"picked_{style}"] = pick(panel.caption_style_box, style)
        yield 200
        mark(f"describe {style}")
        panel.describe_button.click()
        R[f"busy_{style}"] = ses.busy
        yield Until(lambda: not ses.busy, 120)
        R[style] = {
            "prompt_edit": panel.prompt_edit.toPlainText(),
            "prompt": ses.settings.prompt,
            "style": ses.settings.caption_style,
            "message": ses.message,
            "error": ses.message_is_error,
        }
    R["layers_after"] = layers(doc)
    dock.raise_()
    yield 200
    K.activeWindow().qwindow().grab().save(os.path.join(OUT, "window.png"))
    doc.setModified(False)


def connected_panel_and_document(name):
    """Steps: wait for the panel and its connection (with models), then a new document with a painted layer,
    active; returns (dock, panel, document) and records the connection state."""
    yield Until(lambda: find_panel()[1] is not None, 30)
    dock, panel = find_panel()
    ses = panel.session
    yield Until(lambda: ses.connection_state == "connected" and ses.models, 150, poll=200)
    RESULT["connected"] = ses.connection_state
    doc = new_doc(name)
    yield 400
    doc.setActiveNode(add_paint(doc, "Paint"))
    yield 300
    return dock, panel, doc


def scenario_transparent():
    """Transparent layers: Generate with the panel's "Transparent layer" box ticked on a tiny SD1.5 model with
    LayerDiffuse files; the applied layer carries the decoder's alpha inside the selection and nothing outside."""
    R = RESULT
    dock, panel, doc = yield from connected_panel_and_document("pb-transparent")
    ses = panel.session
    ses.set_option("model", CONFIG["model"])
    choose_mode(panel, list(panel_modes()).index("generate"))
    yield 200
    R["mode"] = ses.settings.mode
    R["check_visible"] = panel.transparent_check.isVisible()
    panel.transparent_check.click()
    yield 200
    R["transparent_setting"] = ses.settings.transparent
    ses.set_prompt("a glass bottle", "")
    for name, value in (("steps", 2), ("batch", 1), ("random_seed", False), ("seed", 3), ("grow", 0), ("feather", 0)):
        ses.set_option(name, value)
    select_rect(doc, 16, 8, 48, 40)
    yield 300
    mark("transparent")
    R["transparent"] = rec = {"layers_before": layers(doc)}
    yield from run_job(ses, rec, timeout=300)
    yield from apply_result(ses, doc, rec, "transparent-new", W, H)
    doc.setModified(False)


def geometry_in_view(panel, widget):
    """Where ``widget`` sits in the panel's scroll viewport: its rectangle there, whether it is shown, and whether the
    whole of it is inside the visible area (no scrolling needed)."""
    viewport = panel.scroll.viewport()
    top_left = widget.mapTo(viewport, QtCore.QPoint(0, 0))
    rect = [top_left.x(), top_left.y(), widget.width(), widget.height()]
    inside = (
        top_left.x() >= 0
        and top_left.y() >= 0
        and top_left.x() + widget.width() <= viewport.width()
        and top_left.y() + widget.height() <= viewport.height()
    )
    return {"rect": rect, "visible": widget.isVisible(), "inside": bool(inside and widget.isVisible())}


def widest_widgets(panel, count=4):
    """What needs the most width in the panel when the body does not fit the docker: the widest minimum sizes of
    the body's rows (by index) and of the panel's shown widgets (by attribute name)."""
    body = panel.scroll.widget()
    layout = body.layout()
    rows = sorted(((layout.itemAt(i).minimumSize().width(), f"row {i}") for i in range(layout.count())), reverse=True)
    widgets = sorted(
        (
            (widget.minimumSizeHint().width(), name)
            for name, widget in vars(panel).items()
            if isinstance(widget, QtWidgets.QWidget) and widget.isVisible() and body.isAncestorOf(widget)
        ),
        reverse=True,
    )
    return [[name, width] for width, name in rows[:count] + widgets[:count]]


def scenario_first_screen():
    """The painter's loop on the first screen: the docker floated at 330 x 600 px on default settings; where the
    style picker, prompt, strength, Generate, Live and (after an inpaint) the results strip sit in the visible area;
    the folded sections stay closed; a screenshot of the panel."""
    R = RESULT
    dock, panel, doc = yield from connected_panel_and_document("pb-first-screen")
    ses = panel.session
    R["server_pid"] = server_pid(ses)
    dock.setFloating(True)
    dock.resize(330, 600)
    yield 600
    viewport = panel.scroll.viewport()
    R["dock_size"] = [dock.width(), dock.height()]
    R["viewport"] = [viewport.width(), viewport.height()]
    R["mode"] = ses.settings.mode
    R["scrolled"] = panel.scroll.verticalScrollBar().value()
    R["body_width"] = panel.scroll.widget().width()
    R["sections_open"] = {key: section.is_open for key, section in panel.sections.items()}
    R["widest"] = widest_widgets(panel)
    names = ("style_box", "prompt_edit", "strength_slider", "run_button", "live_button")
    R["before"] = {name: geometry_in_view(panel, getattr(panel, name)) for name in names if hasattr(panel, name)}
    select_rect(doc, 40, 30, 24, 20)
    yield 300
    R["job"] = rec = {}
    yield from run_job(ses, rec)
    yield 400
    R["after"] = {
        name: geometry_in_view(panel, getattr(panel, name)) for name in ("run_button", "results_list", "apply_button")
    }
    panel.grab().save(os.path.join(OUT, "panel.png"))
    K.activeWindow().qwindow().grab().save(os.path.join(OUT, "window.png"))
    ses.discard()
    yield 300
    doc.setModified(False)


def scenario_good_defaults():
    """Good by default: the panel as it is after connecting to a server whose models folder holds the SD1.5 starter
    set's files (pulled); only a prompt, a fixed seed and a selection are given. Inpaint, then one Live frame: the
    result's ``info`` and pixels of each are recorded (the test replays the same jobs on the plain path)."""
    R = RESULT
    dock, panel, doc = yield from connected_panel_and_document("pb-good-defaults")
    ses = panel.session
    R["server_pid"] = server_pid(ses)
    yield Until(lambda: ses.styles.available and ses.styles.chosen and ses.settings.model, 60)
    R["panel"] = {
        "mode": ses.settings.mode,
        "style": ses.styles.chosen,
        "model": ses.settings.model,
        "fast_live": list(ses.styles.fast_live("sd15")),
    }
    ses.set_prompt("a bird", "")
    ses.set_option("random_seed", False)
    ses.set_option("seed", 7)
    select_rect(doc, 24, 16, 40, 32)
    yield 300
    mark("inpaint")
    R["inpaint"] = rec = {}
    yield from run_job(ses, rec, timeout=300)
    rec["info"] = dict(ses.result_info)
    if ses.results:
        rec["pixels"] = dump("good-inpaint", ses.results[0].data)
    ses.discard()
    yield 300
    mark("live")
    R["live"] = rec = {}
    base = count("preview_writes")
    ses.set_live(True)
    yield Until(lambda: count("preview_writes") >= base + 1 and not ses.busy, 300)
    rec["frames"] = count("preview_writes") - base
    rec["info"] = dict(ses.result_info)
    rec["message"], rec["error"] = ses.message, ses.message_is_error
    if ses.results:
        r = ses.results[0]
        rec["pixels"] = dump("good-live", r.data)
        rec["box"] = [r.box.x, r.box.y, r.box.width, r.box.height]
    ses.set_live(False)
    yield 300
    ses.discard()
    yield 300
    doc.setModified(False)


def scenario_save_style():
    """A style made and edited in the panel's style state (what the ✎ editor calls): New… "krita-look" for SD1.5, then
    its checkpoint, LoRA, steps and prompt template saved; the server's answer lists it, chosen in the panel."""
    R = RESULT
    dock, panel, doc = yield from connected_panel_and_document("pb-save-style")
    ses = panel.session
    R["server_pid"] = server_pid(ses)
    yield Until(lambda: ses.styles.available, 60)
    from paintbridge.styles import edited
    from paintbridge.wire import protocol as vendored

    look = ses.styles.new("krita-look", "sd15")
    yield Until(lambda: "krita-look" in ses.styles.names(), 60)
    ses.styles.save(
        edited(
            look,
            title="Krita look",
            checkpoints=("tiny-sd15",),
            loras=(vendored.styles.StyleLora(name="tiny-lora-sd15", weight=0.8),),
            steps=3,
            prompt="{prompt}, oil painting",
        )
    )
    yield Until(lambda: (ses.styles.style("krita-look") or look).steps == 3, 60)
    saved = ses.styles.style("krita-look")
    R["saved"] = saved.to_wire() if saved is not None else None
    R["chosen"] = ses.styles.chosen
    doc.setModified(False)


def scenario_fail_on_purpose():
    """Fails at once (the host tests check that a failure ends only its own scenario of a group)."""
    yield 100
    raise RuntimeError("failing on purpose")


def scenario_stall_on_purpose():
    """Blocks Krita's UI thread past the watchdog's ``stall_s`` (the host tests check the stall retry of a group)."""
    yield 100
    time.sleep(CONFIG["stall_s"] + 30)


SCENARIOS = {
    "fail_on_purpose": scenario_fail_on_purpose,
    "stall_on_purpose": scenario_stall_on_purpose,
    "save_style": scenario_save_style,
    "good_defaults": scenario_good_defaults,
    "first_screen": scenario_first_screen,
    "transparent": scenario_transparent,
    "caption": scenario_caption,
    "pose": scenario_pose,
    "classical": scenario_classical,
    "diffusion": scenario_diffusion,
    "flux": scenario_flux,
    "flaky": scenario_flaky,
    "pull": scenario_pull,
    "large": scenario_large,
    "references": scenario_references,
    "history": scenario_history,
    "edit": scenario_edit,
    "decompose": scenario_decompose,
    "sampling": scenario_sampling,
    "regions": scenario_regions,
    "flux_regions": scenario_flux_regions,
    "techniques": scenario_techniques,
    "region_references": scenario_region_references,
    "history_bomb": scenario_history_bomb,
}


def between_scenarios(server_url):
    """Steps a painter takes before the next task: stop Live, close every document, dock the panel again, put its
    settings back as they first were, and connect to ``server_url`` (when given and not the one in use)."""
    dock, panel = find_panel()
    if panel is not None:
        ses = panel.session
        if ses.live.on:
            ses.set_live(False)
        yield Until(lambda: not ses.busy, 60)
    for doc in list(K.documents()):
        doc.setModified(False)
        doc.close()
    yield 500
    if panel is None:
        return
    dock.setFloating(False)
    dock.show()
    if FIRST_SETTINGS:
        import copy

        ses._put_back(copy.deepcopy(FIRST_SETTINGS[0]), ())
    if server_url and ses.conn_settings.target()[0] != server_url:
        states = []  # the states the connection goes through from now: "connected" again is the new server
        seen = lambda state, detail: states.append(state)  # noqa: E731 - connected, then disconnected again
        ses.connection_changed.connect(seen)
        ses.set_server(server_url, autostart=False)
        yield Until(lambda: "connected" in states and ses.models, 150, poll=200)
        ses.connection_changed.disconnect(seen)
        RESULT["reconnected"] = [server_url, states[:]]
    yield 300


DEADLINE = QTimer()
DEADLINE.setSingleShot(True)
DEADLINE.timeout.connect(lambda: (RESULT["errors"].append("driver deadline"), _finish()))


def _begin(index):
    """Start scenario ``index`` of the plan with its own settings, output folder, result and deadline."""
    global CONFIG, OUT, RESULT, W, H, T0
    CONFIG = PLAN[index]
    OUT = CONFIG["out"]
    RESULT = {"steps": [], "errors": [], "qt": QtCore.__name__.split(".")[0], "group_index": index}
    W, H = CONFIG.get("width", 128), CONFIG.get("height", 96)
    T0 = time.monotonic()
    RESULT["began_s"] = round(T0 - LOADED, 2)  # since Krita loaded the driver
    CURRENT.update(index=index, done=False)
    for key in COUNTS:
        COUNTS[key] = 0
    DEADLINE.start(int(CONFIG.get("deadline_s", 240) * 1000))
    scenario = SCENARIOS[CONFIG["scenario"]]

    def steps():
        if index > 0:
            yield from between_scenarios(CONFIG.get("server_url", ""))
            RESULT["between_s"] = round(time.monotonic() - T0, 2)
        yield from scenario()

    Runner(steps()).step()


def _start():
    import threading

    threading.Thread(target=_watchdog, daemon=True).start()
    BACKUP.start()
    _begin(0)


K.notifier().windowCreated.connect(lambda: QTimer.singleShot(800, _start))
DEADLINE.start(int(CONFIG.get("deadline_s", 240) * 1000))  # Krita's own start counts towards the first scenario's
