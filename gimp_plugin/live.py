"""Live inpaint: a dialog that stays open and repaints the selection whenever it (or a setting) changes.

Each result replaces one preview layer above the active layer; the preview is kept out of the undo history (undo is
frozen while it changes) and out of what the model sees. OK keeps the latest result as a normal layer in one undo step;
Cancel removes the preview. Network work runs in a worker thread; every GIMP call stays on the main thread.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GLib, GimpUi, Gtk  # noqa: E402

from protocol.client import new_job_id  # noqa: E402
from protocol.messages import ResultLayer  # noqa: E402

from . import capture, connection, host, settings  # noqa: E402
from .arguments import ProcedureSpec  # noqa: E402
from .dialog import add_models_hint, fill_dialog  # noqa: E402
from .errors import Cancelled, PaintbridgeError, ServerUnavailable  # noqa: E402
from .livestate import CANCEL, START, LiveScheduler, signature  # noqa: E402
from .results import layer_names  # noqa: E402

POLL_MS = 400
PREVIEW_NAME = "Paintbridge live preview"


class LiveInpaint:
    """The live dialog for one image."""

    def __init__(self, procedure, config, image, drawables: list, spec: ProcedureSpec) -> None:
        self.procedure = procedure
        self.config = config
        self.image = image
        self.fallback_active = drawables[0] if drawables else None
        self.spec = spec
        self.scheduler = LiveScheduler()
        self.preview = None
        self.latest: Optional[tuple] = None  # (signature, job, result layer)
        self.keep_when_ready = False
        self.kept = False
        self.client = None
        self.job_id: Optional[str] = None

    # --- inputs -------------------------------------------------------------------------------------------------------
    def _values(self) -> Dict[str, Any]:
        values = {arg.name: self.config.get_property(arg.name) for arg in self.spec.args}
        values["batch"] = 1
        return values

    def _active(self):
        selected = self.image.get_selected_drawables()
        for drawable in selected:
            if self.preview is None or drawable.get_id() != self.preview.get_id():
                return drawable
        return self.fallback_active

    def _signature(self, values: Dict[str, Any], active) -> Optional[tuple]:
        bounds = host.selection_bounds(self.image)
        if bounds.is_empty:
            return None
        mask = host.read_selection(self.image, bounds)
        plain = {k: (v.get_id() if hasattr(v, "get_id") else v) for k, v in values.items()}
        return signature((bounds.x, bounds.y, bounds.width, bounds.height), mask, plain,
                         active.get_id() if active is not None else -1)

    # --- the loop -----------------------------------------------------------------------------------------------------
    def _tick(self) -> bool:
        if not self.image.is_valid():
            self._close(keep=False)
            return False
        values = self._values()
        active = self._active()
        sig = self._signature(values, active)
        if sig is None and not self.scheduler.running:
            self.keep_when_ready = False
            self._set_status("Select the area to repaint", None)
        action = self.scheduler.tick(sig)
        if action == START:
            self._start(sig, values, active)
        elif action == CANCEL and self.client is not None and self.job_id is not None:
            try:
                self.client.cancel(self.job_id)
            except PaintbridgeError:
                pass
            except Exception:  # noqa: BLE001 - a dropped connection shows up in the worker
                pass
        return True

    def _start(self, sig: tuple, values: Dict[str, Any], active) -> None:
        try:
            job = capture.capture_job(self.spec, self.image, active, values,
                                      hide=[self.preview] if self.preview is not None else [])
            url, token = capture.server_target(values)
        except PaintbridgeError as err:
            self.scheduler.started(sig)
            self.scheduler.finished(sig)
            self._set_status(str(err), None)
            return
        job["id"] = self.job_id = new_job_id("gimp-live")
        self.scheduler.started(sig)
        self._set_status("Painting…", 0.0)
        threading.Thread(target=self._work, args=(sig, job, url, token, active), daemon=True).start()

    def _work(self, sig: tuple, job: dict, url: str, token: Optional[str], active) -> None:
        def status(fraction, text):
            GLib.idle_add(self._set_status, text, fraction)

        try:
            if self.client is None or not self.client.connected:
                self.client = connection.connect(url, token, capture.server_command(),
                                                 capture.profile_dir() / "paintbridge-server.log", status)
            results, _used = connection.run_job(self.client, job, status)
            GLib.idle_add(self._done, sig, job, results, None, active, url, token)
        except Cancelled:
            GLib.idle_add(self._done, sig, job, None, None, active, url, token)
        except PaintbridgeError as err:
            if isinstance(err, ServerUnavailable) and self.client is not None:
                self.client.close()
                self.client = None
            GLib.idle_add(self._done, sig, job, None, err, active, url, token)
        except Exception as err:  # noqa: BLE001 - shown in the dialog, never a traceback dialog
            GLib.idle_add(self._done, sig, job, None, PaintbridgeError(f"Unexpected error: {err}"), active, url, token)

    def _done(self, sig, job, results: Optional[List[ResultLayer]], error, active, url, token) -> bool:
        self.job_id = None
        self.scheduler.finished(sig, answered=results is not None or error is not None)
        if error is not None:
            self.keep_when_ready = False  # stay open: the message is in the dialog, OK tries again
            self._set_status(str(error), None)
            return False
        if results is None:
            self._set_status("Restarting for the new selection…", None)
            return False
        settings.remember(capture.profile_dir(), url, token)
        if not self.image.is_valid():
            return False
        self.latest = (sig, job, results[0])
        self.preview = host.replace_preview(self.image, active, self.preview, results[0], PREVIEW_NAME)
        self._set_status("Ready: OK keeps this result as a layer", 1.0)
        if self.keep_when_ready:
            self._close(keep=True)
        return False

    # --- closing ------------------------------------------------------------------------------------------------------
    def _on_response(self, dialog, response) -> None:
        if response == Gtk.ResponseType.OK:
            self.keep_when_ready = True
            values, active = self._values(), self._active()
            sig = self._signature(values, active)
            if self.latest is not None and self.latest[0] == sig and not self.scheduler.running:
                self._close(keep=True)
            else:
                self.scheduler.forget()
                self._set_status("Finishing the result for the current selection…", None)
        elif response in (Gtk.ResponseType.CANCEL, Gtk.ResponseType.DELETE_EVENT, Gtk.ResponseType.CLOSE):
            self._close(keep=False)

    def _close(self, keep: bool) -> None:
        if self.job_id is not None and self.client is not None:
            try:
                self.client.cancel(self.job_id)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if self.image.is_valid():
            host.remove_preview(self.image, self.preview)
            self.preview = None
            if keep and self.latest is not None:
                _sig, job, result = self.latest
                names = layer_names(self.spec.mode, job["prompt"], [result])
                host.insert_results(self.image, self._active(), [result], names)
                self.kept = True
        if self.client is not None:
            self.client.close()
        Gtk.main_quit()

    # --- widgets ------------------------------------------------------------------------------------------------------
    def _set_status(self, text: Optional[str], fraction: Optional[float]) -> bool:
        if text:
            self.status.set_text(text)
        if fraction is not None:
            self.bar.set_fraction(max(0.0, min(1.0, fraction)))
        return False

    def run(self) -> bool:
        """Show the dialog until OK or Cancel; True when a result was kept."""
        GimpUi.init("paintbridge-live")
        dialog = GimpUi.ProcedureDialog.new(self.procedure, self.config, self.spec.title)
        fill_dialog(dialog, self.spec)
        add_models_hint(dialog, self.spec, str(self.config.get_property("server") or ""),
                        str(self.config.get_property("token") or ""))
        self.status = Gtk.Label(label="Select the area to repaint")
        self.status.set_line_wrap(True)
        self.status.set_xalign(0.0)
        self.bar = Gtk.ProgressBar()
        area = dialog.get_content_area()
        area.pack_end(self.bar, False, False, 4)
        area.pack_end(self.status, False, False, 4)
        self.status.show()
        self.bar.show()
        dialog.connect("response", self._on_response)
        dialog.show()
        GLib.timeout_add(POLL_MS, self._tick)
        Gtk.main()
        dialog.destroy()
        return self.kept


def run_live(procedure, config, image, drawables: list, spec: ProcedureSpec) -> bool:
    """Open the live dialog; True when the user kept a result."""
    return LiveInpaint(procedure, config, image, drawables, spec).run()
