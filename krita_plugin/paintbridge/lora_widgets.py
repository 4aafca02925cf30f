"""LoRAs picked from a list with a weight slider each (the panel's LoRA section and the style editor use it; no
behaviour of its own: the owner binds ``picked`` and ``dropped``)."""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

from .basic_widgets import combo
from .qt_compat import QtWidgets, Qt
from .wire import client

SLIDER_SCALE = 100  # slider steps per unit of weight
NONE_INSTALLED = "No LoRA of this model's family is installed (the server lists those in its models/loras folder)."


class LoraList(QtWidgets.QWidget):
    """An "Add a LoRA…" list of the installed LoRAs not yet picked, and per picked LoRA a row: name, weight slider
    (-2 to 2), its value, ✕. ``picked(name, weight)`` on a new pick or a weight change, ``dropped(name)`` on ✕."""

    def __init__(self, picked: Callable[[str, float], None], dropped: Callable[[str], None], parent=None) -> None:
        super().__init__(parent)
        self._picked, self._dropped = picked, dropped
        self._shown: Tuple[tuple, tuple] = ((), ())
        self.sliders: Dict[str, QtWidgets.QSlider] = {}
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.add_box = combo(8)
        self.add_box.setToolTip("Add an installed LoRA of the chosen model's family to the job")
        self.add_box.activated.connect(self._add)
        self.empty_label = QtWidgets.QLabel(NONE_INSTALLED)
        self.empty_label.setWordWrap(True)
        self.rows = QtWidgets.QVBoxLayout()
        self.rows.setSpacing(2)
        layout.addWidget(self.add_box)
        layout.addWidget(self.empty_label)
        layout.addLayout(self.rows)

    def show_loras(self, available: Sequence[str], picks: Sequence[Tuple[str, float]]) -> None:
        """Offer ``available`` and show ``picks``; the rows are rebuilt only when the names change (a row's own
        slider keeps its drag)."""
        names = (tuple(available), tuple(name for name, _ in picks))
        if names != self._shown:
            self._shown = names
            self._rebuild(list(available), [name for name, _ in picks])
        for name, weight in picks:
            slider = self.sliders[name]
            slider.blockSignals(True)
            slider.setValue(round(weight * SLIDER_SCALE))
            slider.blockSignals(False)
            slider.value_label.setText(f"{weight:.2f}")

    def _rebuild(self, available: List[str], picked: List[str]) -> None:
        while self.rows.count():
            item = self.rows.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.sliders = {}
        for name in picked:
            self.rows.addWidget(self._row(name))
        self.add_box.blockSignals(True)
        self.add_box.clear()
        self.add_box.addItem("Add a LoRA…", "")
        for name in available:
            if name not in picked:
                self.add_box.addItem(name, name)
        self.add_box.setCurrentIndex(0)
        self.add_box.blockSignals(False)
        self.add_box.setEnabled(self.add_box.count() > 1)
        self.empty_label.setVisible(not available)

    def _row(self, name: str) -> QtWidgets.QWidget:
        row = QtWidgets.QWidget()
        line = QtWidgets.QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        label = QtWidgets.QLabel(name)
        label.setToolTip(name)
        label.setMinimumWidth(1)
        label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        slider.setRange(-2 * SLIDER_SCALE, 2 * SLIDER_SCALE)
        slider.setSingleStep(5)
        slider.setPageStep(25)
        slider.setToolTip(f"How strongly {name} applies (1 = as trained; negative pushes away from it)")
        slider.value_label = QtWidgets.QLabel("1.00")
        slider.value_label.setMinimumWidth(34)
        remove = QtWidgets.QToolButton()
        remove.setText("✕")
        remove.setToolTip(f"Leave {name} out of the job")
        slider.valueChanged.connect(lambda v, n=name: self._weight(n, v))
        remove.clicked.connect(lambda _=False, n=name: self._dropped(n))
        line.addWidget(label, 2)
        line.addWidget(slider, 3)
        line.addWidget(slider.value_label)
        line.addWidget(remove)
        self.sliders[name] = slider
        return row

    def _weight(self, name: str, value: int) -> None:
        self.sliders[name].value_label.setText(f"{value / SLIDER_SCALE:.2f}")
        self._picked(name, value / SLIDER_SCALE)

    def _add(self, index: int) -> None:
        name = self.add_box.itemData(index)
        if name:
            self._picked(name, 1.0)


class LoraSection:
    """The panel's "LoRAs" section: a ``LoraList`` bound to the session's ``loras`` (``loras.Loras``); its header
    counts the LoRAs a job carries. ``say(text, error)`` shows a refused pick."""

    def __init__(self, loras, say: Callable, layout: QtWidgets.QVBoxLayout, header: QtWidgets.QAbstractButton):
        self.loras, self.say, self.header = loras, say, header
        self.title = header.text()
        self.list = LoraList(self._pick, loras.drop)
        layout.addWidget(self.list)
        loras.changed.connect(self.refresh)
        self.refresh()

    def _pick(self, name: str, weight: float) -> None:
        try:
            self.loras.pick(name, weight)
        except client.errors.PaintbridgeError as err:  # a name or weight the job cannot carry
            self.say(str(err), True)
            self.refresh()

    def refresh(self) -> None:
        """Follow the installed LoRAs, the chosen model's family and the picks."""
        active = self.loras.active()
        self.list.show_loras(self.loras.available(), active)
        self.header.setText(f"{self.title} ({len(active)})" if active else self.title)
