"""The panel's hires fix and detailer sections: widgets built into the panel and bound to the session.

The hires fix shows for the modes that sample (generate, img2img, inpaint, outpaint); the detailer for those (as a
step after the job, switched on by its check box) and for the ``detail`` mode (the detailer on its own: the section
is then always on). Every widget writes one ``Settings`` field through ``session.set_option``.
"""

from __future__ import annotations

from .qt_compat import QtWidgets
from .wire import client

HIRES_MODES = client.jobs.HIRES_MODES
UPSCALERS = (("Latent", "latent"), ("Lanczos", "lanczos"))


def _double(lo: float, hi: float, step: float, tip: str) -> QtWidgets.QDoubleSpinBox:
    box = QtWidgets.QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setToolTip(tip)
    return box


def _int(lo: int, hi: int, step: int, tip: str, zero: str = "") -> QtWidgets.QSpinBox:
    box = QtWidgets.QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setToolTip(tip)
    if zero:
        box.setSpecialValueText(zero)
    return box


class TechniquesSection:
    """The two group boxes, added to ``layout`` (the panel's folded "Hires fix and detailer" section, hidden with
    them when neither applies)."""

    def __init__(self, panel: QtWidgets.QWidget, session, layout: QtWidgets.QVBoxLayout) -> None:
        self.panel, self.session = panel, session
        self.section = panel.sections.get("techniques")
        self.hires_box = QtWidgets.QGroupBox("Hires fix (two passes)")
        self.hires_box.setCheckable(True)
        self.hires_box.setToolTip(
            "For an area larger than the model's native size: paint at the native size, "
            "upscale, then paint again at the full size"
        )
        form = QtWidgets.QFormLayout(self.hires_box)
        self.hires_upscaler = QtWidgets.QComboBox()
        self.hires_upscaler.setToolTip("Latent: upscale the model's latents; Lanczos or a model: upscale the pixels")
        self.hires_strength = _double(0.0, 1.0, 0.05, "Denoise of the second pass (0.3–0.5 keeps the composition)")
        self.hires_steps = _int(0, 150, 1, "Steps of the second pass", "Job's steps")
        self.hires_scale = _double(0.0, 8.0, 0.25, "Second pass size as a multiple of the first; 0 = the area's size")
        self.hires_scale.setSpecialValueText("Area's size")
        form.addRow("Upscaler", self.hires_upscaler)
        form.addRow("Denoise", self.hires_strength)
        form.addRow("Steps", self.hires_steps)
        form.addRow("Size", self.hires_scale)

        self.detail_box = QtWidgets.QGroupBox("Detailer")
        self.detail_box.setCheckable(True)
        self.detail_box.setToolTip(
            "Find faces (and hands, with a hand detector installed) and repaint each at the "
            "model's native size, blended back softly"
        )
        dform = QtWidgets.QFormLayout(self.detail_box)
        self.detail_faces = QtWidgets.QCheckBox("Faces")
        self.detail_hands = QtWidgets.QCheckBox("Hands")
        self.detail_hands.setToolTip("Offered when the server has a hand detector ('detailer' download)")
        find = QtWidgets.QHBoxLayout()
        find.addWidget(self.detail_faces)
        find.addWidget(self.detail_hands)
        self.detail_prompt = QtWidgets.QLineEdit()
        self.detail_prompt.setPlaceholderText("Prompt for the faces and hands (empty: the job's)")
        self.detail_negative = QtWidgets.QLineEdit()
        self.detail_negative.setPlaceholderText("Negative prompt (empty: the job's)")
        self.detail_strength = _double(0.0, 1.0, 0.05, "Denoise of each face")
        self.detail_steps = _int(0, 150, 1, "Steps for each face", "Job's steps")
        self.detail_padding = _int(0, 1024, 8, "Pixels of surroundings painted with each face")
        self.detail_confidence = _double(0.0, 1.0, 0.05, "Faces the detector is less sure of are left alone")
        self.detail_separate = QtWidgets.QCheckBox("One layer per face or hand")
        dform.addRow("Find", find)
        dform.addRow(self.detail_prompt)
        dform.addRow(self.detail_negative)
        dform.addRow("Denoise", self.detail_strength)
        dform.addRow("Steps", self.detail_steps)
        dform.addRow("Padding", self.detail_padding)
        dform.addRow("Confidence", self.detail_confidence)
        dform.addRow(self.detail_separate)

        layout.addWidget(self.hires_box)
        layout.addWidget(self.detail_box)
        self.fields = {
            "hires": self.hires_box,
            "hires_upscaler": self.hires_upscaler,
            "hires_strength": self.hires_strength,
            "hires_steps": self.hires_steps,
            "hires_scale": self.hires_scale,
            "detail": self.detail_box,
            "detail_prompt": self.detail_prompt,
            "detail_negative_prompt": self.detail_negative,
            "detail_strength": self.detail_strength,
            "detail_steps": self.detail_steps,
            "detail_padding": self.detail_padding,
            "detail_confidence": self.detail_confidence,
            "detail_separate": self.detail_separate,
        }
        self.fill_upscalers()
        self.offer_targets()
        for name in self.fields:
            self.on_setting(name, getattr(session.settings, name))
        self.on_setting("mode", session.settings.mode)
        self._bind()

    def _bind(self) -> None:
        s = self.session
        for name, widget in self.fields.items():
            if isinstance(widget, QtWidgets.QGroupBox):
                widget.toggled.connect(lambda on, n=name: s.set_option(n, bool(on)))
            elif isinstance(widget, QtWidgets.QComboBox):
                widget.activated.connect(lambda i, n=name, w=widget: s.set_option(n, w.itemData(i)))
            elif isinstance(widget, QtWidgets.QLineEdit):
                widget.textChanged.connect(lambda text, n=name: s.set_option(n, text))
            elif isinstance(widget, QtWidgets.QCheckBox):
                widget.toggled.connect(lambda on, n=name: s.set_option(n, bool(on)))
            else:
                widget.valueChanged.connect(lambda v, n=name: s.set_option(n, v))
        for box in (self.detail_faces, self.detail_hands):
            box.toggled.connect(lambda _on: s.set_option("detail_targets", self.chosen_targets()))
        s.settings_changed.connect(self.on_setting)
        s.models_changed.connect(self.fill_upscalers)
        s.models_changed.connect(self.offer_targets)

    def chosen_targets(self) -> str:
        """The ticked targets as ``Settings.detail_targets`` (faces when none is ticked)."""
        ticked = [
            t
            for t, box in (("face", self.detail_faces), ("hand", self.detail_hands))
            if box.isChecked() and not box.isHidden()
        ]
        return ",".join(ticked) or "face"

    def apply_offers(self, techniques, targets, mode: str) -> None:
        """Only what the chosen model runs after a job of ``mode`` (``client.offers``: ``hires``/``detail``), and the
        detailer ``targets`` it can find; the section hides when nothing applies (Flux: no hires fix, no detailer)."""
        alone = mode == "detail"
        self.hires_box.setVisible("hires" in techniques)
        self.detail_box.setVisible("detail" in techniques or alone)
        if self.section is not None:
            self.section.setVisible(bool(techniques) or alone)
        self.offer_targets(targets=targets)

    def offer_targets(self, *_models, targets=None) -> None:
        """Hands only where the server can find them; a hand chosen before and no longer offered is dropped from the
        settings."""
        offered = self.session.offers().detail_targets if targets is None else targets
        self.detail_hands.setVisible("hand" in offered)
        self.show_targets(self.session.settings.detail_targets)
        if "hand" not in offered and "hand" in self.session.settings.detail_targets:
            self.session.set_option("detail_targets", self.chosen_targets())

    def show_targets(self, value: str) -> None:
        chosen = {t.strip() for t in str(value or "face").split(",")}
        for target, box in (("face", self.detail_faces), ("hand", self.detail_hands)):
            box.blockSignals(True)
            box.setChecked(target in chosen)
            box.blockSignals(False)

    def fill_upscalers(self) -> None:
        """Latent, Lanczos and the server's upscale models."""
        box = self.hires_upscaler
        box.blockSignals(True)
        box.clear()
        for label, value in UPSCALERS:
            box.addItem(label, value)
        for name in self.session.upscaler_names()[1:]:
            box.addItem(name, name)
        box.setCurrentIndex(max(0, box.findData(self.session.settings.hires_upscaler)))
        box.blockSignals(False)

    def on_setting(self, name: str, value) -> None:
        """A setting changed in the session: show it (and, for the mode, which sections apply)."""
        if name == "mode":
            self.hires_box.setVisible(value in HIRES_MODES)
            self.detail_box.setVisible(value in HIRES_MODES or value == "detail")
            alone = value == "detail"  # the detailer on its own: always on, no check box
            # QGroupBox.setCheckable(True) also checks the box: never let that reach the settings
            self.detail_box.blockSignals(True)
            if self.detail_box.isCheckable() == alone:
                self.detail_box.setCheckable(not alone)
            if not alone:
                self.detail_box.setChecked(bool(self.session.settings.detail))
            self.detail_box.blockSignals(False)
            if self.section is not None:
                self.section.setVisible(value in HIRES_MODES or alone)
                if alone:  # the detailer is the job: its settings are what the painter came for
                    self.section.set_open(True)
            return
        if name == "detail_targets":
            self.show_targets(value)
            return
        widget = self.fields.get(name)
        if widget is None or value is None:
            return
        widget.blockSignals(True)
        if isinstance(widget, QtWidgets.QGroupBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QtWidgets.QComboBox):
            widget.setCurrentIndex(max(0, widget.findData(value)))
        elif isinstance(widget, QtWidgets.QLineEdit):
            if widget.text() != value:
                widget.setText(value)
        elif isinstance(widget, QtWidgets.QCheckBox):
            widget.setChecked(bool(value))
        else:
            widget.setValue(value)
        widget.blockSignals(False)
