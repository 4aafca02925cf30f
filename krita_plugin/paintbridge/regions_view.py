"""The panel's Regions section: the active document's regions (a prompt bound to a layer or group), with buttons to
bind the active layer, remove and reorder, and the selected region's prompts. Widgets only; the state is
``session.regions`` (``regions.Regions``)."""

from __future__ import annotations

from typing import Callable

from .qt_compat import QtWidgets
from .wire import client


class RegionsSection(QtWidgets.QWidget):
    """Bound to ``session.regions``; ``refresh`` follows the active document (the docker calls it on canvas changes)."""

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.regions = session.regions
        self._filling = False
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        hint = QtWidgets.QLabel(
            "A prompt per area: the bound layer's opacity is the area (SD1.5/SDXL models). "
            "The main prompt applies everywhere."
        )
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.list = QtWidgets.QListWidget()
        self.list.setMaximumHeight(96)
        layout.addWidget(self.list)
        buttons = QtWidgets.QHBoxLayout()
        self.bind_button = QtWidgets.QPushButton("Bind layer")
        self.bind_button.setToolTip("Give the active paint layer or group a prompt of its own")
        self.up_button = QtWidgets.QToolButton()
        self.up_button.setText("↑")
        self.down_button = QtWidgets.QToolButton()
        self.down_button.setText("↓")
        self.remove_button = QtWidgets.QToolButton()
        self.remove_button.setText("Remove")
        for button in (self.bind_button, self.up_button, self.down_button, self.remove_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.prompt_edit = QtWidgets.QLineEdit()
        self.prompt_edit.setPlaceholderText("Region prompt")
        self.negative_edit = QtWidgets.QLineEdit()
        self.negative_edit.setPlaceholderText("Region negative prompt (optional)")
        layout.addWidget(self.prompt_edit)
        layout.addWidget(self.negative_edit)
        self._bind()
        self.refresh()

    def _bind(self) -> None:
        r = self.regions
        self.bind_button.clicked.connect(lambda: self._safely(r.bind_active))
        self.remove_button.clicked.connect(lambda: self._safely(lambda: r.remove(self.list.currentRow())))
        self.up_button.clicked.connect(lambda: self._safely(lambda: r.move(self.list.currentRow(), -1)))
        self.down_button.clicked.connect(lambda: self._safely(lambda: r.move(self.list.currentRow(), 1)))
        self.list.currentRowChanged.connect(self._on_row)
        self.prompt_edit.textEdited.connect(lambda text: self._edit())
        self.negative_edit.textEdited.connect(lambda text: self._edit())
        r.changed.connect(self._fill)

    def _safely(self, action: Callable[[], object]) -> None:
        try:
            action()
        except (client.errors.JobInputError, ValueError) as err:
            self.session.show_message(str(err), error=True)

    def refresh(self) -> None:
        self._safely(self.regions.refresh)

    def _fill(self) -> None:
        self._filling = True
        try:
            self.list.clear()
            self.list.addItems(self.regions.labels())
            if 0 <= self.regions.selected < self.list.count():
                self.list.setCurrentRow(self.regions.selected)
            self._show_selected()
        finally:
            self._filling = False

    def _on_row(self, row: int) -> None:
        if not self._filling:
            self.regions.selected = row
            self._show_selected()

    def _show_selected(self) -> None:
        index = self.regions.selected
        items = self.regions.list.items
        binding = items[index] if 0 <= index < len(items) else None
        self.prompt_edit.setText(binding.prompt if binding else "")
        self.negative_edit.setText(binding.negative_prompt if binding else "")
        for widget in (self.remove_button, self.up_button, self.down_button, self.negative_edit):
            widget.setEnabled(binding is not None)

    def _edit(self) -> None:
        index = self.regions.selected
        if 0 <= index < len(self.regions.list):
            self.regions.set_prompt(index, self.prompt_edit.text(), self.negative_edit.text())
            item = self.list.item(index)
            if item is not None:
                item.setText(self.regions.labels()[index])
