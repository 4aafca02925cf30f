"""The panel's reference-image widgets: one row per reference and the section they sit in (no behaviour:
``view.PaintbridgePanel`` binds them to ``session.references``)."""

from __future__ import annotations

from typing import Callable

from .basic_widgets import combo, fill_layer_picker, guidance_row, row_grid
from .qt_compat import QtWidgets
from .wire import protocol


class ReferenceRow(QtWidgets.QFrame):
    """One reference image in the panel: type, layer, move up/down, remove, strength, start/end, and the region it
    belongs to (the whole image, or a bound region: the region layer's opacity masks the reference).

    ``changed(field, value)``, ``move(delta)`` and ``remove()`` are what its widgets call; the view binds them to
    the session's reference ``index``.
    """

    def __init__(
        self, ref, layers: list, changed: Callable, move: Callable, remove: Callable, regions: list = ()
    ) -> None:
        super().__init__()
        grid = row_grid(self)
        self.type_box = combo(6)
        self.type_box.addItems(list(protocol.REFERENCE_TYPES))
        self.type_box.setCurrentText(ref.type)
        self.type_box.setToolTip("What the picture gives: its style, its composition, its content, or a face")
        self.layer_box = combo(6)
        self.layer_box.setToolTip("The layer that holds the reference picture (read over the job's area)")
        self.up_button, self.down_button, self.remove_button = (QtWidgets.QToolButton() for _ in range(3))
        for button, text, tip in (
            (self.up_button, "▲", "Move up"),
            (self.down_button, "▼", "Move down"),
            (self.remove_button, "✕", "Remove this reference from the job (the layer stays)"),
        ):
            button.setText(text)
            button.setToolTip(tip)
        bottom, self.strength, self.start, self.end = guidance_row(
            ref.strength, ref.start, ref.end, "How strongly the reference guides the image (0 = not at all)"
        )
        self.region_box = combo(6)
        self.region_box.setToolTip(
            "Where the reference applies: the whole image, or only inside a region (the "
            "region layer's opacity; SD1.5 and SDXL)"
        )
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.type_box, 2)
        top.addWidget(self.layer_box, 3)
        for button in (self.up_button, self.down_button, self.remove_button):
            top.addWidget(button)
        region = QtWidgets.QHBoxLayout()
        region.addWidget(QtWidgets.QLabel("Region"))
        region.addWidget(self.region_box, 1)
        grid.addLayout(top, 0, 0)
        grid.addLayout(bottom, 1, 0)
        grid.addLayout(region, 2, 0)
        self.refresh_layers(layers, ref.layer)
        self.refresh_regions(list(regions), ref.region)
        self.type_box.currentTextChanged.connect(lambda text: changed("type", text))
        self.layer_box.activated.connect(lambda i: changed("layer", self.layer_box.itemData(i) or ""))
        self.region_box.activated.connect(lambda i: changed("region", self.region_box.itemData(i) or ""))
        self.strength.valueChanged.connect(lambda v: changed("strength", v))
        self.start.valueChanged.connect(lambda v: changed("start", v))
        self.end.valueChanged.connect(lambda v: changed("end", v))
        self.up_button.clicked.connect(lambda: move(-1))
        self.down_button.clicked.connect(lambda: move(1))
        self.remove_button.clicked.connect(lambda: remove())

    def refresh_layers(self, layers: list, keep: str) -> None:
        """Fill the layer picker with ``layers`` ((name, id) pairs) and select ``keep``."""
        fill_layer_picker(self.layer_box, layers, keep)

    def refresh_regions(self, choices: list, keep: str) -> None:
        """Fill the region chooser with ``choices`` ((label, region id) pairs, "" = the whole image) and select
        ``keep``."""
        box = self.region_box
        box.blockSignals(True)
        box.clear()
        for label, region_id in choices:
            box.addItem(label, region_id)
        box.setCurrentIndex(max(0, box.findData(keep)))
        box.blockSignals(False)


def build_references_section(panel: QtWidgets.QWidget, layout) -> None:
    """The "Reference images" section's body: + Add and the box its rows go in (``panel.references_layout``)."""
    panel.add_reference_button = QtWidgets.QToolButton()
    panel.add_reference_button.setText("+ Add a reference image")
    panel.add_reference_button.setToolTip(
        "Guide the job by a picture on a layer: its style, composition, content or a face (IP-Adapter; SD1.5 and SDXL)"
    )
    layout.addWidget(panel.add_reference_button)
    panel.references_layout = QtWidgets.QVBoxLayout()
    panel.references_layout.setSpacing(3)
    layout.addLayout(panel.references_layout)
