"""A folded part of the panel: a header the painter clicks to open it, and its body (everything beyond the
painter's loop lives in one, closed until needed)."""

from __future__ import annotations

from .qt_compat import QtWidgets, Qt


class Section(QtWidgets.QWidget):
    """A header button (▸ title) over a body; ``content`` is the body's layout. Closed when made."""

    def __init__(self, title: str, tip: str = "") -> None:
        super().__init__()
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        self.button = QtWidgets.QToolButton()
        self.button.setText(title)
        self.button.setToolTip(tip)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.RightArrow)
        self.button.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.button.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.body = QtWidgets.QWidget()
        self.content = QtWidgets.QVBoxLayout(self.body)
        self.content.setContentsMargins(8, 0, 0, 4)
        self.content.setSpacing(3)
        self.body.setVisible(False)
        outer.addWidget(self.button)
        outer.addWidget(self.body)
        self.button.toggled.connect(self._show)

    def _show(self, on: bool) -> None:
        self.body.setVisible(on)
        self.button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    @property
    def is_open(self) -> bool:
        return self.button.isChecked()

    def set_open(self, on: bool) -> None:
        """Open or close the section (as a click on its header does)."""
        self.button.setChecked(bool(on))
