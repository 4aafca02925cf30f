"""The panel's History section: this document's earlier results (thumbnails; the job's parameters as tooltips), a
search, Apply again, Reuse settings, Delete, and how many MB each document keeps. Its widgets live on the panel (as
every section's do); the state is ``session.history`` (``results_history.ResultsHistory``)."""

from __future__ import annotations

from typing import Callable

from .qt_compat import QtCore, QtGui, QtWidgets, Qt, qimage_from_rgba8
from .widgets import THUMB


class HistoryView:
    """Builds the section's body into ``layout`` and binds it to ``history``; ``limit_mb`` reads the kept limit."""

    def __init__(self, panel: QtWidgets.QWidget, layout: QtWidgets.QVBoxLayout, history, limit_mb: Callable[[], int]):
        self.panel, self.history, self._limit_mb = panel, history, limit_mb
        panel.history_box = QtWidgets.QWidget()
        box = QtWidgets.QVBoxLayout(panel.history_box)
        box.setContentsMargins(0, 0, 0, 0)
        panel.history_search = QtWidgets.QLineEdit()
        panel.history_search.setPlaceholderText("Search: words of the prompt, model, seed, mode, date")
        panel.history_search.setClearButtonEnabled(True)
        panel.history_search.setToolTip(
            "Every word must match (prompt, negative prompt, model, mode, a seed or the date "
            '2026-12-07 14:05); "quoted words" match as a phrase; a word may name its field: '
            "prompt:cat model:sdxl mode:inpaint seed:1234 date:2026-12 date:>2026-12-01 "
            "date:today"
        )
        box.addWidget(panel.history_search)
        panel.history_list = QtWidgets.QListWidget()
        panel.history_list.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        panel.history_list.setFlow(QtWidgets.QListView.Flow.LeftToRight)
        panel.history_list.setWrapping(False)
        panel.history_list.setIconSize(QtCore.QSize(THUMB - 24, THUMB - 24))
        panel.history_list.setFixedHeight(THUMB + 20)
        panel.history_list.setMovement(QtWidgets.QListView.Movement.Static)
        panel.history_list.setToolTip("Results of this image, kept in the image file; the newest on the left")
        box.addWidget(panel.history_list)
        row = QtWidgets.QHBoxLayout()
        panel.history_apply_button = QtWidgets.QPushButton("Apply again")
        panel.history_apply_button.setToolTip("Insert the chosen result as a new layer, where it was made")
        panel.history_reuse_button = QtWidgets.QPushButton("Reuse settings")
        panel.history_reuse_button.setToolTip("Put the chosen result's settings and seed back into the panel")
        panel.history_delete_button = QtWidgets.QPushButton("Delete")
        for button in (panel.history_apply_button, panel.history_reuse_button, panel.history_delete_button):
            row.addWidget(button)
        box.addLayout(row)
        limit_row = QtWidgets.QHBoxLayout()
        panel.history_limit_spin = QtWidgets.QSpinBox()
        panel.history_limit_spin.setRange(0, 4096)
        panel.history_limit_spin.setSuffix(" MB")
        panel.history_limit_spin.setToolTip("How much each image keeps (0 = no history); the oldest results go first")
        panel.history_size_label = QtWidgets.QLabel("")
        limit_row.addWidget(QtWidgets.QLabel("Keep at most"))
        limit_row.addWidget(panel.history_limit_spin)
        limit_row.addWidget(panel.history_size_label, 1)
        box.addLayout(limit_row)
        layout.addWidget(panel.history_box)
        self.search_tip = panel.history_search.toolTip()

    def bind(self) -> None:
        panel, h = self.panel, self.history
        h.changed.connect(self.fill)
        panel.history_list.currentRowChanged.connect(lambda _row: self.update_buttons())
        panel.history_apply_button.clicked.connect(lambda: h.apply_again(*self.choice()))
        panel.history_reuse_button.clicked.connect(lambda: h.reuse_settings(*self.choice()))
        panel.history_delete_button.clicked.connect(lambda: h.delete(self.choice()[0]))
        panel.history_limit_spin.editingFinished.connect(lambda: h.set_limit(panel.history_limit_spin.value()))
        panel.history_search.textChanged.connect(h.set_query)

    def fill(self) -> None:
        """List the active document's history, newest first, one item per result."""
        panel, history = self.panel, self.history
        current = self.choice()
        panel.history_list.blockSignals(True)
        panel.history_list.clear()
        for entry in reversed(history.shown):
            count = len(entry.layers)
            for index, layer in enumerate(entry.layers):
                w, h, rgba = entry.thumbnail_rgba(index)
                icon = QtGui.QIcon(QtGui.QPixmap.fromImage(qimage_from_rgba8(rgba, w, h))) if w else QtGui.QIcon()
                text = entry.title().split(" ", 1)[0] + (f" #{index + 1}" if count > 1 else "")
                item = QtWidgets.QListWidgetItem(icon, text)
                item.setData(Qt.ItemDataRole.UserRole, [entry.id, index])
                item.setToolTip(f"{entry.title()}\nresult {index + 1} of {count}: {layer.name}\n{entry.describe()}")
                panel.history_list.addItem(item)
                if [entry.id, index] == list(current):
                    panel.history_list.setCurrentItem(item)
        if panel.history_list.currentRow() < 0 and panel.history_list.count():
            panel.history_list.setCurrentRow(0)
        panel.history_list.blockSignals(False)
        panel.history_limit_spin.blockSignals(True)
        panel.history_limit_spin.setValue(self._limit_mb())
        panel.history_limit_spin.blockSignals(False)
        stored = sum(e.stored_bytes for e in history.entries) / 1e6
        found = "" if not history.query.strip() else f", {len(history.shown)} found"
        panel.history_size_label.setText(f"{len(history.entries)} kept{found}, {stored:.1f} MB")
        panel.history_search.setStyleSheet("color: #d04040" if history.query_problem else "")
        panel.history_search.setToolTip(history.query_problem or self.search_tip)
        self.update_buttons()

    def choice(self) -> tuple:
        """(entry id, result index) of the chosen item; ("", 0) when none is chosen."""
        item = self.panel.history_list.currentItem()
        data = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        return (str(data[0]), int(data[1])) if data else ("", 0)

    def update_buttons(self) -> None:
        panel = self.panel
        chosen = bool(self.choice()[0])
        for button in (panel.history_apply_button, panel.history_reuse_button, panel.history_delete_button):
            button.setEnabled(chosen)
