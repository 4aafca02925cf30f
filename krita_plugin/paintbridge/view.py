"""The Paintbridge panel: widgets bound to a ``Session``. It holds no job state; everything it shows comes from the
session's events, and everything the painter does goes to the session's methods."""

from __future__ import annotations

from typing import List, Optional

from . import offers_view, reference_widgets, widgets
from .control_widgets import ControlRow
from .history_view import HistoryView
from .lora_widgets import LoraSection
from .models_view import ModelsView
from .style_widgets import FastLiveOffer, StylePicker
from .regions_view import RegionsSection
from .progress_preview import Preview, fit_size
from .qt_compat import QtGui, QtWidgets, Qt, qimage_from_bgra8, qimage_from_rgba8
from .session import Session
from .settings_store import DEFAULT_URL
from .techniques import TechniquesSection
from .widgets import MODES, PREVIEW_HEIGHT, SHORT_MODE_NAMES, THUMB
from .wire import client, protocol

CONNECTED, CONNECTING = client.connect.CONNECTED, client.connect.CONNECTING
CLASSICAL = client.settings.CLASSICAL

STATE_COLORS = {"connected": "#3fb950", "connecting": "#d29922", "disconnected": "#f85149", "refused": "#f85149"}
SPINS = (
    "steps",
    "cfg",
    "seed",
    "batch",
    "refine",
    "extend_left",
    "extend_top",
    "extend_right",
    "extend_bottom",
    "batch_count",
    "clip_skip",
    "refiner_start",  # the last three: sampling
    "layer_count",  # picture into layers
)
COMBOS = (
    "model",
    "sampler",
    "upscaler",
    "image_source",
    "mask_source",
    "scale",
    "scheduler",
    "vae",
    "refiner",  # these three: sampling
    "caption_style",  # prompt from the picture
    "speed",  # speed level
)


class PaintbridgePanel(QtWidgets.QWidget):
    """The panel inside the docker."""

    def __init__(self, session: Session, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self._showing_progress_preview = False
        self.control_rows: List[ControlRow] = []
        self.reference_rows: List[reference_widgets.ReferenceRow] = []  # reference images
        conn = session.conn_settings
        url, token = conn.target()
        folded = widgets.build(self, url, token or "", conn.autostart, session.server.available, DEFAULT_URL)
        self.models_view = ModelsView(self, session.downloads, lambda: session.connected)
        self.style_picker = StylePicker(session, self.style_row, self)
        self.style_box = self.style_picker.box
        self.fast_live = FastLiveOffer(session, self.live_offer_layout)
        self._build_sections(folded)
        self._fill_model_boxes()
        self.fill_widgets = {
            "fill": self.fill_box,
            "color_match": self.color_match_check,  # fills
            "tileable": self.tileable_check,
            "wrap_view": self.wrap_view_check,
            "transparent": self.transparent_check,
        }  # and the transparent-layer switch
        self._show_settings()
        self._bind()
        self._update_results()
        self._update_run()
        self.history_view.fill()

    def _build_sections(self, folded) -> None:
        """The folded sections, in the order a painter reaches for them."""

        def section(key: str, title: str, tip: str = ""):
            return widgets.add_section(self, folded, key, title, tip)

        tip = "Installed LoRAs of the model's family, each with a weight (<lora:name:w> in the prompt works too)"
        body = section("loras", "LoRAs", tip)
        self.lora_section = LoraSection(
            self.session.loras, self.session.show_message, body, self.sections["loras"].button
        )
        hint = "Two passes for large areas; repaint faces and hands"
        self.techniques = TechniquesSection(self, self.session, section("techniques", "Hires fix and detailer", hint))
        widgets.build_sampling(self, section("sampling", "Sampling", "Steps, CFG, sampler, seed, batch, fill…"))
        widgets.build_controls(self, section("controls", "Control layers", "Guide the job with lines, depth, a pose…"))
        self.regions_section = RegionsSection(self.session, self)
        section("regions", "Regions", "A prompt of its own for a layer's area").addWidget(self.regions_section)
        reference_widgets.build_references_section(
            self, section("references", "Reference images", "Guide by a picture")
        )
        self.history_view = HistoryView(
            self,
            section("history", "History", "This image's earlier results"),
            self.session.history,
            lambda: self.session.settings.history_limit_mb,
        )

    # --- widgets -> session -------------------------------------------------------------------------------------------
    def _option_widget(self, name: str):
        if name.startswith("extend_"):
            return self.extend[name[len("extend_") :]]
        return {
            "steps": self.steps_spin,
            "cfg": self.cfg_spin,
            "seed": self.seed_spin,
            "batch": self.batch_spin,
            "refine": self.refine_spin,
            "model": self.model_box,
            "sampler": self.sampler_box,
            "upscaler": self.upscaler_box,
            "image_source": self.image_source_box,
            "mask_source": self.mask_source_box,
            "scale": self.scale_box,
            "scheduler": self.scheduler_box,
            "batch_count": self.batch_count_spin,
            "vae": self.vae_box,
            "clip_skip": self.clip_skip_spin,
            "refiner": self.refiner_box,
            "refiner_start": self.refiner_start_spin,
            "caption_style": self.caption_style_box,
            "layer_count": self.layer_count_spin,
            "speed": self.speed_box,
        }[name]

    def _bind(self) -> None:
        s = self.session
        for name in SPINS:
            self._option_widget(name).valueChanged.connect(lambda v, n=name: s.set_option(n, v))
        for name in COMBOS:
            box = self._option_widget(name)
            box.activated.connect(lambda i, n=name, b=box: s.set_option(n, b.itemData(i)))
        self.random_seed_check.toggled.connect(lambda on: s.set_option("random_seed", on))
        self.strength_slider.valueChanged.connect(lambda v: s.set_option("strength", v / 100.0))
        self.prompt_edit.textChanged.connect(lambda: s.set_prompt(self.prompt_edit.toPlainText()))
        self.negative_edit.textChanged.connect(
            lambda: s.set_prompt(self.prompt_edit.toPlainText(), self.negative_edit.toPlainText())
        )
        self.mode_box.activated.connect(lambda i: s.set_mode(MODES[i]) if MODES[i] != s.settings.mode else None)
        self.connect_button.clicked.connect(
            lambda: s.set_server(self.url_edit.text(), self.token_edit.text(), self.autostart_check.isChecked())
        )
        self.start_server_button.clicked.connect(s.start_local_server)
        self.add_control_button.clicked.connect(
            lambda: s.add_control(type=(s.offers().controls_for(s.settings.mode) or ("scribble",))[0])
        )
        self.run_button.clicked.connect(lambda: s.run())
        self.describe_button.clicked.connect(lambda: s.describe())
        self.cancel_button.clicked.connect(s.cancel)
        self.live_button.toggled.connect(s.set_live)
        self.results_list.currentRowChanged.connect(
            lambda row: s.select_result(row) if row >= 0 and row != s.selected_result else None
        )
        self.apply_button.clicked.connect(lambda: s.apply())
        self.discard_button.clicked.connect(s.discard)
        # session -> widgets
        s.settings_changed.connect(self._on_setting)
        s.connection_changed.connect(self._on_connection)
        s.models_changed.connect(self._fill_model_boxes)
        s.models_changed.connect(self._apply_offers)  # show only what the chosen model can run
        s.settings_changed.connect(lambda name, _value: self._apply_offers() if name in ("model", "mode") else None)
        s.controls_changed.connect(self._apply_offers)
        s.models_changed.connect(self.lora_section.refresh)  # the installed LoRAs of the model's family
        s.settings_changed.connect(lambda name, _value: self.lora_section.refresh() if name == "model" else None)
        s.job_changed.connect(self._update_run)
        s.progress_preview.connect(self._show_progress_preview)
        s.progress_preview_ended.connect(self._end_progress_preview)
        s.results_changed.connect(self._fill_results)
        s.result_selected.connect(self._on_result_selected)
        s.message_changed.connect(self._on_message)
        s.controls_changed.connect(self._fill_controls)
        self.add_reference_button.clicked.connect(lambda: s.references.add())  # reference images
        s.references.changed.connect(self._fill_references)
        s.regions.changed.connect(self._refresh_reference_regions)  # a reference's region chooser lists the regions
        self.models_view.bind(s.connection_changed, s.controls_changed)
        # fills
        self.fill_box.activated.connect(lambda i: s.set_option("fill", self.fill_box.itemData(i)))
        self.color_match_check.toggled.connect(lambda on: s.set_option("color_match", on))
        self.tileable_check.toggled.connect(lambda on: s.set_option("tileable", on))  # seamless textures
        self.tileable_check.toggled.connect(self.wrap_view_check.setEnabled)
        self.wrap_view_check.toggled.connect(lambda on: s.set_option("wrap_view", on))
        self.transparent_check.toggled.connect(lambda on: s.set_option("transparent", on))
        self.history_view.bind()  # results history

    # --- session -> widgets -------------------------------------------------------------------------------------------
    def _show_settings(self) -> None:
        st = self.session.shown()
        for name in ("prompt", "negative_prompt", "mode", "strength") + SPINS + COMBOS:
            self._on_setting(name, getattr(st, name))
        self._on_setting("random_seed", self.session.random_seed)
        for name in self.fill_widgets:  # fills
            self._on_setting(name, getattr(st, name))

    def _on_setting(self, name: str, value) -> None:
        if name == "mode":
            self.mode_box.blockSignals(True)
            self.mode_box.setCurrentIndex(MODES.index(value))
            self.mode_box.blockSignals(False)
            self.strength_row.setVisible(value in ("img2img", "inpaint"))
            self.transparent_check.setVisible(value in ("generate", "img2img"))
            self.outpaint_box.setVisible(value == "outpaint")
            self.upscale_box.setVisible(value == "upscale")
            self.decompose_box.setVisible(value == "decompose")
            self.tileable_row.setVisible(value in protocol.TILEABLE_MODES)
            self.live_button.setEnabled(value in client.modes.LIVE_MODES)
            self.run_button.setText(SHORT_MODE_NAMES[value])
            self._update_modes()
            return
        if name == "model":
            self._update_modes()
        if name in ("prompt", "negative_prompt"):
            edit = self.prompt_edit if name == "prompt" else self.negative_edit
            if edit.toPlainText().strip() != value:
                edit.blockSignals(True)
                edit.setPlainText(value)
                edit.blockSignals(False)
            return
        if name in ("model", "sampler"):
            self._fill_sampling_boxes()
        if name == "seed":
            value = self.session.fixed_seed
        if name == "speed":  # the style's entry says which level it runs at
            labels = client.settings.SPEED_LABELS
            runs = labels.get(self.session.style_speed(), "")
            self.speed_box.setItemText(max(0, self.speed_box.findData("")), f"{labels['']} ({runs})")
        if value is None:
            return
        if name == "strength":
            widget, value = self.strength_slider, int(round(value * 100))
            self.strength_value.setText(f"{value}%")
        elif name == "random_seed":
            widget = self.random_seed_check
            self.seed_spin.setEnabled(not value)
        else:
            widget = self._option_widget(name) if name in SPINS + COMBOS else self.fill_widgets.get(name)
        if widget is None:
            return
        widget.blockSignals(True)
        if isinstance(widget, QtWidgets.QComboBox):
            widget.setCurrentIndex(max(0, widget.findData(value)))
        elif isinstance(widget, QtWidgets.QCheckBox):
            widget.setChecked(bool(value))
            if widget is self.tileable_check:
                self.wrap_view_check.setEnabled(bool(value))
        else:
            widget.setValue(value)
        widget.blockSignals(False)

    def _on_connection(self, state: str, detail: str) -> None:
        s = self.session
        self.status_dot.setStyleSheet(f"color: {STATE_COLORS.get(state, '#8b949e')}; font-size: 14px;")
        if state == CONNECTED:
            count = len(s.checkpoints())
            models = f"{count} model{'s' if count != 1 else ''}" if count else "classical fill only (no models)"
            self.status_label.setText(f"<b>Connected</b> · {models}<br><small>{s.device or detail}</small>")
            self.status_label.setToolTip(f"{detail}\n{s.device}")
        else:
            starting = "starting the local server" in detail
            text = (
                "Starting the local server…" if starting else "Connecting…" if state == CONNECTING else "Not connected"
            )
            self.status_label.setText(text)
            self.status_label.setToolTip(s.server.last_output(12) if starting and s.server.running else detail)

    def _on_message(self, text: str, error: bool) -> None:
        self.message_label.setText(text)
        self.message_label.setStyleSheet("color: #f85149;" if error else "")

    def _fill_model_boxes(self) -> None:
        s = self.session
        checkpoints = s.checkpoints()
        self.model_box.blockSignals(True)
        self.model_box.clear()
        self.model_box.addItem("Default" + (f" ({checkpoints[0]['name']})" if checkpoints else " (classical fill)"), "")
        for entry in checkpoints:
            label = entry["name"] + (f"  ·  {entry.get('arch', '').upper()}" if entry.get("arch") else "")
            self.model_box.addItem(label + (" · inpaint" if entry.get("inpaint") else ""), entry["name"])
        self.model_box.addItem("Classical (OpenCV, no AI)", CLASSICAL)
        self.model_box.setCurrentIndex(max(0, self.model_box.findData(s.settings.model)))
        self.model_box.blockSignals(False)
        self.upscaler_box.blockSignals(True)
        self.upscaler_box.clear()
        self.upscaler_box.addItem("Lanczos (no model)", "")
        for name in s.upscaler_names()[1:]:
            self.upscaler_box.addItem(name, name)
        self.upscaler_box.setCurrentIndex(max(0, self.upscaler_box.findData(s.settings.upscaler)))
        self.upscaler_box.blockSignals(False)
        self._update_modes()
        self._fill_sampling_boxes()

    def _update_modes(self) -> None:
        """Modes the chosen model cannot run (edit on a model that cannot edit) are greyed in the mode list."""
        entry = self.session.entry()
        items = self.mode_box.model()
        self.mode_box.blockSignals(True)
        for i, mode in enumerate(MODES):
            items.item(i).setEnabled(client.modes.offered(mode, entry))
        self.mode_box.setCurrentIndex(MODES.index(self.session.settings.mode))
        self.mode_box.blockSignals(False)

    def _fill_sampling_boxes(self) -> None:
        """Samplers and schedules from the server's welcome, VAEs and refiners from its listing."""
        s = self.session
        labels = {
            "sampler": "Model default",
            "scheduler": "Sampler's own",
            "vae": "Checkpoint's own",
            "refiner": "None",
        }
        for name, default_label in labels.items():
            names = client.sampling.option_values(s.defaults.sampling, s.models, name, s.shown().sampler)
            box, current = self._option_widget(name), getattr(s.settings, name)
            box.blockSignals(True)
            box.clear()
            for value in names:
                box.addItem(value or default_label, value)
            box.setCurrentIndex(max(0, box.findData(current)))
            box.blockSignals(False)

    def _update_run(self) -> None:
        s = self.session
        value, text = s.progress
        self.progress.setValue(value)
        self.progress.setFormat(text)
        self.run_button.setEnabled(not s.busy and s.connected)
        self.describe_button.setEnabled(not s.busy and s.connected)
        self.cancel_button.setEnabled(s.busy)
        if self.live_button.isChecked() != s.live.on:
            self.live_button.blockSignals(True)
            self.live_button.setChecked(s.live.on)
            self.live_button.blockSignals(False)

    # --- progress previews and results --------------------------------------------------------------------------------
    def _show_progress_preview(self, preview: Preview) -> None:
        """Show a progress event's preview in the panel (scaled to fit; the document is never touched)."""
        width, height = fit_size(preview.width, preview.height, max(THUMB, self.progress.width() - 8), PREVIEW_HEIGHT)
        image = qimage_from_rgba8(preview.data, preview.width, preview.height)
        if (width, height) != (preview.width, preview.height):
            image = image.scaled(
                width, height, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        self.progress_preview.setPixmap(QtGui.QPixmap.fromImage(image))
        self.progress_preview.setToolTip(
            f"Step {preview.step} of {preview.total}: a rough preview; the results replace it"
        )
        if not self._showing_progress_preview:
            self._showing_progress_preview = True
            self.progress_preview.setVisible(True)
            self._update_results()

    def _end_progress_preview(self) -> None:
        """The job ended: drop its preview; the result thumbnails (new or earlier ones) show again."""
        if not self._showing_progress_preview:
            return
        self._showing_progress_preview = False
        self.progress_preview.setVisible(False)
        self.progress_preview.clear()
        self._update_results()

    def _fill_results(self) -> None:
        self.results_list.blockSignals(True)
        self.results_list.clear()
        for image in self.session.results:
            icon = QtGui.QIcon(
                QtGui.QPixmap.fromImage(
                    qimage_from_bgra8(image.data, image.box.width, image.box.height).scaled(
                        THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
                    )
                )
            )
            item = QtWidgets.QListWidgetItem(icon, f"seed {image.seed}")
            box = image.box
            item.setToolTip(f"{box.width}×{box.height} at ({box.x}, {box.y}), seed {image.seed}")
            self.results_list.addItem(item)
        self.results_list.blockSignals(False)
        self._update_results()

    def _on_result_selected(self, index: int) -> None:
        self.results_list.blockSignals(True)
        self.results_list.setCurrentRow(index)
        self.results_list.blockSignals(False)

    def _update_results(self) -> None:
        has = bool(self.session.results)
        self.results_list.setVisible(has and not self._showing_progress_preview)
        for button in (self.apply_button, self.discard_button):
            button.setEnabled(has)
            button.setVisible(has)

    # --- control layers -----------------------------------------------------------------------------------------------
    def _apply_offers(self, *_args) -> None:
        offers_view.apply(self, self.session.offers(), self.session.settings.mode, len(self.session.controls))

    def _fill_controls(self) -> None:
        for row in self.control_rows:
            row.setParent(None)
            row.deleteLater()
        self.control_rows = []
        layers = self.session.host.paint_layers()
        offers = self.session.offers()
        for index, spec in enumerate(self.session.controls):
            row = ControlRow(
                spec,
                layers,
                changed=lambda field, value, i=index: self.session.update_control(i, **{field: value}),
                from_image=lambda i=index: self.session.control_from_image(index=i),
                remove=lambda i=index: self.session.remove_control(i),
                types=offers.controls_for(self.session.settings.mode) or protocol.CONTROL_TYPES,
                preprocessors=offers.preprocessors,
            )
            self.control_rows.append(row)
            self.controls_layout.addWidget(row)

    def refresh_layers(self) -> None:
        """The document or its layers changed: refill the control and reference rows' layer pickers."""
        layers = self.session.host.paint_layers()
        for row, spec in zip(self.control_rows, self.session.controls):
            row.refresh_layers(layers, spec.layer_id)
        for row, ref in zip(self.reference_rows, self.session.references.items):
            row.refresh_layers(layers, ref.layer)
        self.regions_section.refresh()  # regions: the active document's (and the rows' region choosers)

    # --- reference images ------------------------------------------------------------------------------
    def _fill_references(self) -> None:
        for row in self.reference_rows:
            row.setParent(None)
            row.deleteLater()
        self.reference_rows = []
        refs = self.session.references
        layers, regions = self.session.host.paint_layers(), refs.region_choices()
        for index, ref in enumerate(refs.items):
            row = reference_widgets.ReferenceRow(
                ref,
                layers,
                changed=lambda field, value, i=index: refs.update(i, **{field: value}),
                move=lambda delta, i=index: refs.move(i, delta),
                remove=lambda i=index: refs.remove(i),
                regions=regions,
            )
            self.reference_rows.append(row)
            self.references_layout.addWidget(row)

    def _refresh_reference_regions(self) -> None:
        choices = self.session.references.region_choices()
        for row, ref in zip(self.reference_rows, self.session.references.items):
            row.refresh_regions(choices, ref.region)
