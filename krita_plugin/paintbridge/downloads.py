"""The panel's model downloads, without widgets and without Krita: what each preset (starter set) has and lacks for the
panel's mode or first control type, and a download through the server (the files land on the server's machine) with
progress and cancel. Owned by the ``Session`` (``session.downloads``) with narrow parts instead of the session: the
connection, the (mode, first control type) the status is about, the panel's message line; the view binds its Models
section to it."""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from .model import Event
from .wire import client


class Downloads:
    """Preset status and the download in flight; runs on the UI thread (the session forwards the connection's
    callbacks)."""

    def __init__(self, connection, scope: Callable[[], Tuple[str, str]], show_message: Callable[..., None]) -> None:
        self.connection, self._scope, self.show_message = connection, scope, show_message
        self.presets: Optional[list] = None  # client.downloads.PresetStatus of the server; None: unknown or unsupported
        self.pull_id: Optional[str] = None  # the download in flight
        self.progress = (0, "")  # percent, text
        self.presets_changed = Event()  # () the status changed (or the mode / first control type did)
        self.pull_changed = Event()  # () a download started, progressed or ended

    def scope(self) -> tuple:
        """(mode, control type) the status is about: the panel's mode and its first control layer's type."""
        return self._scope()

    def lines(self) -> List[str]:
        """One line per preset about the current mode / control type, then which one to use or download."""
        if self.presets is None:
            return ["This server cannot download models (or is not connected)."] if self.connection.connected else []
        mode, control = self.scope()
        return [p.line(mode, control) for p in self.presets] + [client.downloads.summary(self.presets, mode, control)]

    def suggested(self) -> str:
        """The preset to offer for the current mode: one that lacks files for it, the smallest download first."""
        mode, control = self.scope()
        lacking = [p for p in self.presets or [] if p.missing_for(mode, control)]
        if not lacking:
            return ""
        return min(lacking, key=lambda p: sum(f.size for f in p.missing_for(mode, control))).name

    def on_presets(self, presets) -> None:
        self.presets = list(presets) if presets is not None else None
        self.presets_changed.emit()

    def pull(self, names) -> Optional[str]:
        """Start downloading presets (or catalogue files); returns the download's id, or None when it could not start
        (the panel says why)."""
        try:
            return self._pull(names)
        except client.errors.PaintbridgeError as err:
            self.show_message(str(err), error=True)
            return None

    def _pull(self, names) -> str:
        if isinstance(names, str):
            names = [names] if names else []
        if not names:
            raise client.errors.JobInputError("Choose a preset to download.")
        if self.pull_id is not None:
            raise client.errors.JobInputError("A download is already running: wait for it or cancel it.")
        connection = self.connection
        if not connection.connected:
            raise client.errors.ServerUnavailable(f"Not connected to the Paintbridge server ({connection.detail}).")
        if self.presets is None:
            raise client.errors.JobError(
                "unsupported",
                "This Paintbridge server cannot download models: update it, "
                "or run 'paintbridge models pull NAME' on its machine.",
            )
        self.pull_id = connection.pull(list(names))
        self._state(0, f"Downloading {', '.join(names)}: waiting for the server…")
        return self.pull_id

    def cancel(self) -> None:
        """Stop the download (what was fetched is kept; downloading again continues)."""
        if self.pull_id is not None:
            self.connection.cancel(self.pull_id)
            self._state(self.progress[0], "Cancelling the download…")

    # The connection's callbacks about the download (each returns True when ``job_id`` is the download's).
    def on_event(self, job_id: str, msg) -> bool:
        if job_id != self.pull_id:
            return False
        fraction, text = client.downloads.describe_pull(msg)
        if text is not None:
            self._state(int(100 * fraction) if fraction is not None else self.progress[0], text)
        return True

    def on_failed(self, job_id: str, message: str) -> bool:
        if job_id != self.pull_id:
            return False
        self._end("Download failed", f"The download did not complete: {message}", error=True)
        return True

    def on_cancelled(self, job_id: str) -> bool:
        if job_id != self.pull_id:
            return False
        self._end(
            "Download cancelled",
            "Download cancelled; what was fetched is kept, and downloading again continues where it stopped.",
            error=False,
        )
        return True

    def on_done(self, pull_id: str, msg) -> None:
        if pull_id == self.pull_id:
            fetched = [f for f in msg.files if f.get("downloaded")]
            self._end(
                "Download complete", f"Downloaded {len(fetched)} file(s); the models are ready.", error=False, value=100
            )

    def _state(self, value: int, text: str) -> None:
        self.progress = (value, text)
        self.pull_changed.emit()

    def _end(self, status: str, message: str, error: bool, value: int = 0) -> None:
        self.pull_id = None
        self._state(value, status)
        self.show_message(message, error=error)
