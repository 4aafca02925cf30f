"""Show only what the chosen model can run: the panel's sections, rows and choices follow ``client.offers.Offers``
(from the server's capabilities for the model's family), so the panel never offers what the server refuses."""

from __future__ import annotations

from .qt_compat import QtWidgets

SAMPLING_ROWS = (("vae", "vae_box"), ("clip_skip", "clip_skip_spin"), ("refiner", "refiner_box"))


def _show_row(form: QtWidgets.QFormLayout, field: QtWidgets.QWidget, on: bool) -> None:
    label = form.labelForField(field)
    for widget in (label, field):
        if widget is not None:
            widget.setVisible(on)


def apply(panel, offers, mode: str, controls: int) -> None:
    """Fit ``panel`` (``view.PaintbridgePanel``) to ``offers`` for ``mode`` with ``controls`` control layers."""
    sections = panel.sections
    panel.techniques.apply_offers(offers.techniques_for(mode), offers.detail_targets, mode)
    control_types = offers.controls_for(mode)
    sections["controls"].setVisible(bool(control_types) or controls > 0)  # rows already there stay removable
    room = offers.max_controls is None or controls < offers.max_controls
    panel.add_control_button.setEnabled(bool(control_types) and room)
    panel.add_control_button.setToolTip(
        "Guide the job with a control layer (lines, depth, pose…)"
        if room
        else f"This model takes at most {offers.max_controls} control layer(s)"
    )
    sections["regions"].setVisible(offers.regions)
    sections["references"].setVisible(bool(offers.reference_types))
    for option, name in SAMPLING_ROWS:
        _show_row(panel.sampling_form, getattr(panel, name), offers.takes(option))
    _show_row(panel.sampling_form, panel.refiner_start_spin, offers.takes("refiner"))
    _show_row(panel.sampling_form, panel.speed_box, offers.speed_choice())
    panel.transparent_check.setVisible(mode in offers.transparent and mode in ("generate", "img2img"))
    panel.tileable_row.setVisible(mode in offers.tileable)
