"""Live inpaint: a dialog that stays open and repaints the selection whenever it (or a setting) changes.

When to start, and when to cancel a stale frame, is the client core's one live scheduler (``client.live``); this
dialog feeds it a signature of its inputs on a timer and does what it says. The signature is made of GIMP's
thumbnails (the selection over its bounds; over the job's box the source pixels, the control and reference layers and
their regions), which GIMP drops as soon as a pixel changes: painting under the selection starts a frame, and nothing
is read in full while nothing changes (each frame logs to stderr the full reads made since the last one). Each result
replaces one preview layer above the active layer; the preview is kept out of the undo history (undo is frozen while
it changes) and out of what the model sees. OK keeps the result for the current inputs as a normal layer in one undo
step; Cancel removes the preview. Network work runs in a worker thread; every GIMP call stays on the main thread.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GLib, GimpUi, Gtk  # noqa: E402

from client import live  # noqa: E402
from client.errors import Cancelled, PaintbridgeError, ServerUnavailable  # noqa: E402
from client.results import PREVIEW_NAME, layer_names  # noqa: E402
from client.connect import new_job_id  # noqa: E402
from client.settings import Defaults  # noqa: E402

from . import capture, connection, history, host, settings  # noqa: E402
from .argspec import ProcedureSpec  # noqa: E402
from .dialog import add_models_hint, fill_dialog, follow_offers  # noqa: E402

POLL_MS = 150


class LiveInpaint:
    """The live dialog for one image."""

    def __init__(self, procedure, config, image, drawables: list, spec: ProcedureSpec) -> None:
        self.procedure = procedure
        self.config = config
        self.image = image
        self.fallback_active = drawables[0] if drawables else None
        self.spec = spec
        self.scheduler = live.LiveScheduler()
        self.preview = None
        self.latest: Optional[tuple] = None  # (signature, settings, result layer)
        self.welcome: Any = None
        self.keep_when_ready = False
        self.kept = False
        self.client = None
        self.reads_seen = host.pixel_reads()
        seed = int(config.get_property("seed"))
        self.live_seed = seed if seed >= 0 else random.randrange(2**31)  # one seed per dialog: frames differ only
        # where the inputs did

    # --- inputs -------------------------------------------------------------------------------------------------------
    def _values(self) -> Dict[str, Any]:
        values = {arg.name: self.config.get_property(arg.name) for arg in self.spec.args}
        values["batch"] = 1
        return values

    def _active(self):
        return host.selected_drawable(self.image, self.preview) or self.fallback_active

    def _signature(self, values: Dict[str, Any], active) -> Optional[int]:
        """Everything a frame depends on, from GIMP's thumbnails (no pixel read): the selection, the settings, the
        active layer and the pixels the job would read (source, masks, controls, references, regions)."""
        bounds = host.selection_bounds(self.image)
        if bounds.is_empty:
            return None
        plain = sorted((k, host.item_id(v) if host.is_item(v) else v) for k, v in values.items())
        parts: List[object] = [bounds.x, bounds.y, bounds.width, bounds.height, plain, host.item_id(active)]
        hide = [self.preview] if self.preview is not None else []
        for token in capture.live_state(self.spec, self.image, active, values, bounds, hide):
            parts.extend(token if isinstance(token, tuple) else (token,))  # thumbnails as bytes: checksummed as is
        return live.signature(parts)

    # --- the loop -----------------------------------------------------------------------------------------------------
    def _tick(self) -> bool:
        if not host.is_valid(self.image):
            self._close(keep=False)
            return False
        values = self._values()
        active = self._active()
        sig = self._signature(values, active)
        now = time.monotonic()
        self.scheduler.changed(sig, now)
        if sig is None and self.scheduler.running is None:
            self.keep_when_ready = False
            self._set_status("Select the area to repaint", None)
        action = self.scheduler.next_action(now)
        if action.kind == live.START:
            self._start(action.signature, values, active)
        elif action.kind == live.CANCEL and self.client is not None:
            try:
                self.client.cancel(action.job_id)
            except Exception:  # noqa: BLE001 - a dropped connection shows up in the worker
                pass
        return True

    def _start(self, sig: int, values: Dict[str, Any], active) -> None:
        job_id = new_job_id("gimp-live")
        now = time.monotonic()
        # the cost of watching: full pixel reads since the last frame read its inputs (none while nothing changed)
        print(
            f"paintbridge live: frame {job_id} after {host.pixel_reads() - self.reads_seen} pixel reads while idle",
            file=sys.stderr,
            flush=True,
        )
        try:
            job_settings, inputs = capture.read_inputs(
                self.spec, self.image, active, values, hide=[self.preview] if self.preview is not None else []
            )
            url, token = capture.server_target(values)
            job_settings = live.live_settings(job_settings, self.live_seed)
        except PaintbridgeError as err:
            self.reads_seen = host.pixel_reads()
            self.scheduler.started(job_id, sig, now)
            self.scheduler.finished(job_id, now, live.FAILED)  # not again until something changes
            self._set_status(str(err), None)
            return
        self.reads_seen = host.pixel_reads()
        self.scheduler.started(job_id, sig, now)
        self._set_status("Painting…", 0.0)
        threading.Thread(
            target=self._work,
            args=(job_id, sig, job_settings, inputs, url, token, active, host.profile_dir()),
            daemon=True,
        ).start()

    def _work(
        self, job_id: str, sig: int, job_settings, inputs, url: str, token: Optional[str], active, profile
    ) -> None:
        def status(fraction, text):
            GLib.idle_add(self._set_status, text, fraction)

        def done(results, error) -> None:
            GLib.idle_add(self._done, job_id, sig, job_settings, results, error, active, url, token)

        try:
            if self.client is None or not self.client.connected:
                self.client = connection.connect(url, token, profile, status)
                self.welcome = self.client.welcome
            job = capture.make_job(job_settings, inputs, self.welcome, job_id, live=True)
            results, _used = connection.run_job(self.client, job, status)
            done(results, None)
        except Cancelled:
            done(None, None)
        except PaintbridgeError as err:
            if isinstance(err, ServerUnavailable) and self.client is not None:
                self.client.close()
                self.client = None
            done(None, err)
        except Exception as err:  # noqa: BLE001 - shown in the dialog, never a traceback dialog
            done(None, PaintbridgeError(f"Unexpected error: {err}"))

    def _done(self, job_id: str, sig, job_settings, results: Optional[List[Any]], error, active, url, token) -> bool:
        outcome = live.FAILED if error is not None else live.CANCELLED if results is None else live.RESULT
        self.scheduler.finished(job_id, time.monotonic(), outcome)
        if error is not None:
            self.keep_when_ready = False  # stay open: the message is in the dialog, OK tries again
            self._set_status(str(error), None)
            return False
        if results is None:
            self._set_status("Restarting for the new selection…", None)
            return False
        settings.remember(host.profile_dir(), url, token)
        if not host.is_valid(self.image):
            return False
        self.latest = (sig, job_settings, results[0])
        self.preview = host.replace_preview(self.image, active, self.preview, results[0], PREVIEW_NAME)
        self._set_status("Ready: OK keeps this result as a layer", 1.0)
        if self.keep_when_ready and sig == self.scheduler.latest:
            self._close(keep=True)
        return False

    # --- closing ------------------------------------------------------------------------------------------------------
    def _on_response(self, dialog, response) -> None:
        if response == Gtk.ResponseType.OK:
            self.keep_when_ready = True
            values, active = self._values(), self._active()
            sig = self._signature(values, active)
            if self.latest is not None and self.latest[0] == sig and self.scheduler.running is None:
                self._close(keep=True)
            else:
                self.scheduler.changed(sig, time.monotonic())
                self.scheduler.rerun()
                self._set_status("Finishing the result for the current selection…", None)
        elif response in (Gtk.ResponseType.CANCEL, Gtk.ResponseType.DELETE_EVENT, Gtk.ResponseType.CLOSE):
            self._close(keep=False)

    def _close(self, keep: bool) -> None:
        if self.scheduler.running is not None and self.client is not None:
            try:
                self.client.cancel(self.scheduler.running)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if host.is_valid(self.image):
            host.remove_preview(self.image, self.preview)
            self.preview = None
            if self.latest is not None:
                _sig, job_settings, result = self.latest
                names = layer_names(
                    self.spec.mode, job_settings.prompt, [result], Defaults.from_welcome(self.welcome).layer_name_length
                )
                if keep:
                    host.insert_results(self.image, self._active(), [result], names)
                    self.kept = True
                # results history: the last frame shown stays reachable, kept or not
                note = history.record(self.image, job_settings, [result], names, {})
                if note:
                    host.show_message(f"Paintbridge: {note}")
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
        follow_offers(self.procedure, self.spec, self.config)
        add_models_hint(
            dialog,
            self.spec,
            str(self.config.get_property("server") or ""),
            str(self.config.get_property("token") or ""),
        )
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
