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


def row_grid(frame: QtWidgets.QFrame) -> QtWidgets.QGridLayout:
    """``frame`` as one boxed row of a list (a control layer, a reference image): its tight grid."""
    frame.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
    grid = QtWidgets.QGridLayout(frame)
    grid.setContentsMargins(4, 4, 4, 4)
    grid.setHorizontalSpacing(4)
    grid.setVerticalSpacing(2)
    return grid


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


def guidance_row(strength: float, start: float, end: float, tip: str) -> tuple:
    """A guide's row "Strength [ ] Range [ ] [ ]": the layout and its three spin boxes (strength 0 to 2 with ``tip``
    as its tooltip; start and end as fractions of the steps)."""
    boxes = spin(0.0, 2.0, strength, 0.05, ""), spin(0.0, 1.0, start, 0.05, ""), spin(0.0, 1.0, end, 0.05, "")
    for box, text in zip(boxes, (tip, "Guide from this fraction of the steps…", "…to this fraction of the steps")):
        box.setToolTip(text)
    row = QtWidgets.QHBoxLayout()
    row.addWidget(QtWidgets.QLabel("Strength"))
    row.addWidget(boxes[0], 1)
    row.addWidget(QtWidgets.QLabel("Range"))
    row.addWidget(boxes[1], 1)
    row.addWidget(boxes[2], 1)
    return (row, *boxes)


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
