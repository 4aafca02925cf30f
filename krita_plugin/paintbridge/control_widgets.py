"""One control layer's row in the panel (no behaviour: ``view.PaintbridgePanel`` binds it to the session)."""

from __future__ import annotations

from typing import Callable

from .basic_widgets import combo as _combo, fill_layer_picker, spin as _spin
from .model import ControlSpec
from .qt_compat import QtWidgets
from .wire import protocol


class ControlRow(QtWidgets.QFrame):
    """One control layer in the panel: layer, type, strength, start/end, "from image", remove.

    ``changed(field, value)``, ``from_image()`` and ``remove()`` are what its widgets call; the view binds them to
    the session's control ``index``.
    """

    def __init__(
        self, spec: ControlSpec, layers: list, changed: Callable, from_image: Callable, remove: Callable
    ) -> None:
        super().__init__()
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        grid.setHorizontalSpacing(4)
        grid.setVerticalSpacing(2)
        self.type_box = _combo(6)
        self.type_box.addItems(list(protocol.CONTROL_TYPES))
        self.type_box.setCurrentText(spec.type)
        self.type_box.setToolTip("What the control layer holds: lines, depth, a pose…")
        self.layer_box = _combo(6)
        self.layer_box.setToolTip("The layer that holds the control image")
        self.from_image = QtWidgets.QToolButton()
        self.from_image.setText("From image")
        self.from_image.setToolTip("Make a control image of this type from the image and put it in a new layer")
        self.remove_button = QtWidgets.QToolButton()
        self.remove_button.setText("✕")
        self.remove_button.setToolTip("Remove this control layer from the job (the layer stays)")
        self.strength = _spin(0.0, 2.0, spec.strength, 0.05, "")
        self.strength.setToolTip("How strongly the control layer guides the image")
        self.start = _spin(0.0, 1.0, spec.start, 0.05, "")
        self.start.setToolTip("Guide from this fraction of the steps…")
        self.end = _spin(0.0, 1.0, spec.end, 0.05, "")
        self.end.setToolTip("…to this fraction of the steps")
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.type_box, 2)
        top.addWidget(self.layer_box, 3)
        top.addWidget(self.remove_button)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(QtWidgets.QLabel("Strength"))
        bottom.addWidget(self.strength, 1)
        bottom.addWidget(QtWidgets.QLabel("Range"))
        bottom.addWidget(self.start, 1)
        bottom.addWidget(self.end, 1)
        grid.addLayout(top, 0, 0)
        grid.addLayout(bottom, 1, 0)
        grid.addWidget(self.from_image, 2, 0)
        self.from_image.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.refresh_layers(layers, spec.layer_id)
        self.type_box.currentTextChanged.connect(lambda text: changed("type", text))
        self.layer_box.activated.connect(lambda i: changed("layer_id", self.layer_box.itemData(i) or ""))
        self.strength.valueChanged.connect(lambda v: changed("strength", v))
        self.start.valueChanged.connect(lambda v: changed("start", v))
        self.end.valueChanged.connect(lambda v: changed("end", v))
        self.from_image.clicked.connect(lambda: from_image())
        self.remove_button.clicked.connect(lambda: remove())

    def refresh_layers(self, layers: list, keep: str) -> None:
        """Fill the layer picker with ``layers`` ((name, id) pairs) and select ``keep``."""
        fill_layer_picker(self.layer_box, layers, keep)
