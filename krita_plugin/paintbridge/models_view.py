"""The panel's Models section: what each preset (starter set) has and lacks for the panel's mode, and a download of
one preset onto the server's machine with its progress and a Cancel button. Its widgets live on the panel (as every
section's do); the state is ``session.downloads`` (``downloads.Downloads``)."""

from __future__ import annotations

from typing import Callable

from .basic_widgets import combo as _combo
from .qt_compat import QtWidgets, Qt


class ModelsView:
    """Builds the Models box under the results (``panel.after_results``) and binds it to ``downloads``."""

    def __init__(self, panel: QtWidgets.QWidget, downloads, connected: Callable[[], bool]) -> None:
        self.panel, self.downloads, self._connected = panel, downloads, connected
        panel.models_box = QtWidgets.QGroupBox("Models")
        box = QtWidgets.QVBoxLayout(panel.models_box)
        panel.presets_label = QtWidgets.QLabel("")
        panel.presets_label.setWordWrap(True)
        panel.presets_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # long file names have no break: the label may cut them rather than widen the panel past the docker
        panel.presets_label.setMinimumWidth(1)
        box.addWidget(panel.presets_label)
        row = QtWidgets.QHBoxLayout()
        panel.preset_box = _combo(5)
        panel.preset_box.setToolTip(
            "A starter set of models from the catalogue; the files land on the server's machine"
        )
        panel.pull_button = QtWidgets.QPushButton("Download")
        panel.pull_cancel_button = QtWidgets.QPushButton("Cancel")
        panel.pull_cancel_button.setEnabled(False)
        row.addWidget(panel.preset_box, 2)
        row.addWidget(panel.pull_button, 1)
        row.addWidget(panel.pull_cancel_button, 1)
        box.addLayout(row)
        panel.pull_progress = QtWidgets.QProgressBar()
        panel.pull_progress.setRange(0, 100)
        panel.pull_progress.setTextVisible(True)
        panel.pull_progress.setMaximumHeight(14)
        panel.pull_progress.setVisible(False)
        box.addWidget(panel.pull_progress)
        panel.models_box.setVisible(False)
        panel.after_results.addWidget(panel.models_box)

    def bind(self, connection_changed, controls_changed) -> None:
        """Download and Cancel act; the status follows the presets, the first control layer and the connection."""
        panel, d = self.panel, self.downloads
        panel.pull_button.clicked.connect(lambda: d.pull(panel.preset_box.currentData() or ""))
        panel.pull_cancel_button.clicked.connect(d.cancel)
        d.presets_changed.connect(self.fill)
        controls_changed.connect(self.fill)
        d.pull_changed.connect(self.update_pull)
        connection_changed.connect(lambda _state, _detail: self.update_pull())

    def fill(self) -> None:
        """What each preset has and lacks for the current mode, and the preset to download."""
        panel, d = self.panel, self.downloads
        lines = d.lines()
        panel.presets_label.setText("\n".join(lines))
        panel.models_box.setVisible(bool(lines))
        chosen = panel.preset_box.currentData()
        panel.preset_box.blockSignals(True)
        panel.preset_box.clear()
        for preset in d.presets or []:
            panel.preset_box.addItem(f"{preset.name}{' (complete)' if preset.complete else ''}", preset.name)
        pick = chosen if chosen and not d.suggested() else d.suggested() or chosen
        panel.preset_box.setCurrentIndex(max(0, panel.preset_box.findData(pick)))
        panel.preset_box.blockSignals(False)
        self.update_pull()

    def update_pull(self) -> None:
        panel, d = self.panel, self.downloads
        value, text = d.progress
        running = d.pull_id is not None
        panel.pull_progress.setVisible(running or bool(text))
        panel.pull_progress.setValue(value)
        panel.pull_progress.setFormat(text or "%p%")
        panel.pull_button.setEnabled(
            not running and self._connected() and d.presets is not None and panel.preset_box.count() > 0
        )
        panel.pull_cancel_button.setEnabled(running)
