"""One control layer's row in the panel (no behaviour: ``view.PaintbridgePanel`` binds it to the session)."""

from __future__ import annotations

from typing import Callable, Sequence

from .basic_widgets import combo as _combo, fill_layer_picker, guidance_row, row_grid
from .model import ControlSpec
from .qt_compat import QtWidgets
from .wire import protocol


class ControlRow(QtWidgets.QFrame):
    """One control layer in the panel: layer, type, strength, start/end, "from image", remove.

    ``changed(field, value)``, ``from_image()`` and ``remove()`` are what its widgets call; the view binds them to
    the session's control ``index``.
    """

    def __init__(
        self,
        spec: ControlSpec,
        layers: list,
        changed: Callable,
        from_image: Callable,
        remove: Callable,
        types: Sequence[str] = protocol.CONTROL_TYPES,
        preprocessors: Sequence[str] = protocol.CONTROL_TYPES,
    ) -> None:
        super().__init__()
        grid = row_grid(self)
        self.type_box = _combo(6)
        self.type_box.addItems(list(types) + ([spec.type] if spec.type not in types else []))
        self.type_box.setCurrentText(spec.type)
        self.preprocessors = tuple(preprocessors)
        self.type_box.setToolTip("What the control layer holds: lines, depth, a pose…")
        self.layer_box = _combo(6)
        self.layer_box.setToolTip("The layer that holds the control image")
        self.from_image = QtWidgets.QToolButton()
        self.from_image.setText("From image")
        self.from_image.setToolTip("Make a control image of this type from the image and put it in a new layer")
        self.remove_button = QtWidgets.QToolButton()
        self.remove_button.setText("✕")
        self.remove_button.setToolTip("Remove this control layer from the job (the layer stays)")
        bottom, self.strength, self.start, self.end = guidance_row(
            spec.strength, spec.start, spec.end, "How strongly the control layer guides the image"
        )
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.type_box, 2)
        top.addWidget(self.layer_box, 3)
        top.addWidget(self.remove_button)
        grid.addLayout(top, 0, 0)
        grid.addLayout(bottom, 1, 0)
        grid.addWidget(self.from_image, 2, 0)
        self.from_image.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.refresh_layers(layers, spec.layer_id)
        self.type_box.currentTextChanged.connect(lambda text: changed("type", text))
        self.type_box.currentTextChanged.connect(self._offer_from_image)
        self._offer_from_image(spec.type)
        self.layer_box.activated.connect(lambda i: changed("layer_id", self.layer_box.itemData(i) or ""))
        self.strength.valueChanged.connect(lambda v: changed("strength", v))
        self.start.valueChanged.connect(lambda v: changed("start", v))
        self.end.valueChanged.connect(lambda v: changed("end", v))
        self.from_image.clicked.connect(lambda: from_image())
        self.remove_button.clicked.connect(lambda: remove())

    def _offer_from_image(self, control_type: str) -> None:
        """ "From image" only where the server has the preprocessor of that type ready."""
        self.from_image.setEnabled(control_type in self.preprocessors)

    def refresh_layers(self, layers: list, keep: str) -> None:
        """Fill the layer picker with ``layers`` ((name, id) pairs) and select ``keep``."""
        fill_layer_picker(self.layer_box, layers, keep)
