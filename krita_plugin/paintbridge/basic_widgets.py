"""Small widgets the panel's sections share: combo boxes and spin boxes sized for a narrow docker, a layer picker."""

from __future__ import annotations

from .qt_compat import QtWidgets


def combo(min_chars: int = 10) -> QtWidgets.QComboBox:
    """A combo box that may shrink with a narrow docker (long entries are cut, the full text is in the popup)."""
    box = QtWidgets.QComboBox()
    box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(min_chars)
    box.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
    return box


def spin(lo: float, hi: float, value: float, step: float, prefix: str) -> QtWidgets.QDoubleSpinBox:
    """A two-decimal spin box over [lo, hi] starting at ``value``."""
    box = QtWidgets.QDoubleSpinBox()
    box.setMinimumWidth(40)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setValue(value)
    box.setPrefix(f"{prefix} ")
    return box


def fill_layer_picker(box: QtWidgets.QComboBox, layers: list, keep: str) -> None:
    """Fill ``box`` with ``layers`` ((name, id) pairs) and select ``keep``, without emitting its signals."""
    box.blockSignals(True)
    box.clear()
    for name, node_id in layers:
        box.addItem(name, node_id)
    index = box.findData(keep) if keep else -1
    if index >= 0:
        box.setCurrentIndex(index)
    box.blockSignals(False)
