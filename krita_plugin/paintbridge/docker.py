"""The "Paintbridge" docker Krita shows: it makes the session (state), the view (widgets) and the Qt glue between
the connection's worker thread and the UI thread."""

from __future__ import annotations

import math
from typing import Callable

from . import document
from .qt_compat import QtCore, QtWidgets, Signal
from .session import Session
from .view import PaintbridgePanel

DOCKER_ID = "paintbridge_docker"


class UiThread(QtCore.QObject):
    """``post(fn)`` from any thread runs ``fn`` on the UI thread (a queued signal); ``schedule`` runs it later."""

    _call = Signal(object)

    def __init__(self, parent: QtCore.QObject) -> None:
        super().__init__(parent)
        self._call.connect(self._run, QtCore.Qt.ConnectionType.QueuedConnection)

    def _run(self, fn: Callable[[], None]) -> None:
        fn()

    def post(self, fn: Callable[[], None]) -> None:
        self._call.emit(fn)

    def schedule(self, seconds: float, fn: Callable[[], None]) -> None:
        QtCore.QTimer.singleShot(max(0, math.ceil(seconds * 1000)), fn)  # never before ``seconds``


class PaintbridgeDocker(document.DockWidget):
    """The docker; ``panel`` is the view and ``panel.session`` everything it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Paintbridge")
        self.ui_thread = UiThread(self)
        session = Session(document.KritaHost(), document.KritaStore(), self.ui_thread.post, self.ui_thread.schedule)
        self.panel = PaintbridgePanel(session, self)
        self.setWidget(self.panel)
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(session.shutdown)
        document.on_application_closing(session.shutdown)
        session.start()

    def canvasChanged(self, canvas) -> None:  # noqa: N802 (Krita's name)
        try:
            self.panel.refresh_layers()
        except Exception as err:  # noqa: BLE001 - never let Krita open an error dialog for this
            self.panel.session.show_message(f"Could not list the layers: {err}", error=True)
        self.panel.session.history.show_active()  # another document: its results history (guarded)
