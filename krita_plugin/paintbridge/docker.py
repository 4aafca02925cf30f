"""The "Paintbridge" docker: connection status, mode, prompt and parameters, control layers, results and live mode.

The panel's public methods (``set_server``, ``set_mode``, ``set_prompt``, ``set_option``, ``run``, ``cancel``,
``select_result``, ``apply``, ``discard``, ``set_live``, ``add_control``, ``control_from_image``,
``start_local_server``) are what its buttons call, and what the host tests drive.
"""

from __future__ import annotations

import functools
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from krita import DockWidget, Krita  # type: ignore

from . import document as kdoc
from . import settings_store
from .connection import CONNECTED, CONNECTING, Connection
from .jobs import (CLASSICAL, MODE_LABELS, MODE_STRENGTH, MODES, JobError, Settings, build_job,
                   build_preprocess_job, defaults_for)
from .live import LiveScheduler, signature
from .placement import masked
from .progress_preview import fit_size, preview_of
from .qt_compat import QtCore, QtGui, QtWidgets, Qt, Signal, qimage_from_bgra8, qimage_from_rgba8
from .server_process import LocalServer, ServerStartError, local_address
from .wire import Box, protocol

DOCKER_ID = "paintbridge_docker"
LIVE_POLL_MS = 350
THUMB = 88
PREVIEW_HEIGHT = THUMB + 26  # the in-progress preview's area (it takes the result thumbnails' place)
AUTOSTART_PAUSE = 8.0
AUTOSTART_TRIES = 3
STATE_COLORS = {"connected": "#3fb950", "connecting": "#d29922", "disconnected": "#f85149", "refused": "#f85149"}


def guarded(method: Callable) -> Callable:
    """Run a slot so that no exception escapes into Krita (which would open a modal dialog): show it in the panel."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (kdoc.DocumentError, JobError, ServerStartError) as err:
            self.show_message(str(err), error=True)
        except Exception as err:  # a bug: keep Krita usable and say what happened
            traceback.print_exc(file=sys.stderr)
            self.show_message(f"Internal error ({type(err).__name__}: {err}). Details are on Krita's console.",
                              error=True)
        return None

    return wrapper


@dataclass
class RunningJob:
    """What the panel remembers about the job in flight."""

    id: str
    kind: str  # "job", "live" or "preprocess"
    settings: Settings
    doc: object
    above_id: str
    box: Box
    control_type: str = ""
    shape: Optional[bytes] = None  # gray8 over ``box``: generate results take the selection's shape
    started: float = field(default_factory=time.monotonic)


class ControlRow(QtWidgets.QFrame):
    """One control layer in the panel: layer, type, strength, start/end, "from image", remove."""

    def __init__(self, panel: "PaintbridgePanel", spec: kdoc.ControlSpec) -> None:
        super().__init__()
        self.panel = panel
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
        self.refresh_layers(spec.layer_id)
        self.from_image.clicked.connect(lambda: panel.control_from_image(row=self))
        self.remove_button.clicked.connect(lambda: panel.remove_control(self))

    def refresh_layers(self, keep: Optional[str] = None) -> None:
        keep = keep if keep is not None else self.layer_box.currentData()
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        doc = Krita.instance().activeDocument()
        for name, node_id in (kdoc.paint_layers(doc) if doc is not None else []):
            self.layer_box.addItem(name, node_id)
        index = self.layer_box.findData(keep) if keep else -1
        if index >= 0:
            self.layer_box.setCurrentIndex(index)
        self.layer_box.blockSignals(False)

    def spec(self) -> kdoc.ControlSpec:
        return kdoc.ControlSpec(self.layer_box.currentData() or "", self.type_box.currentText(),
                                self.strength.value(), self.start.value(), self.end.value())


def _combo(min_chars: int = 10) -> QtWidgets.QComboBox:
    """A combo box that may shrink with a narrow docker (long entries are cut, the full text is in the popup)."""
    box = QtWidgets.QComboBox()
    box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(min_chars)
    box.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
    return box


def _spin(lo: float, hi: float, value: float, step: float, prefix: str) -> QtWidgets.QDoubleSpinBox:
    box = QtWidgets.QDoubleSpinBox()
    box.setMinimumWidth(40)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setValue(value)
    box.setPrefix(f"{prefix} ")
    return box


class PaintbridgePanel(QtWidgets.QWidget):
    """The panel inside the docker."""

    progress_preview_shown = Signal(int)  # on the UI thread, after an in-progress preview is shown: the running count

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.connection = Connection(self)
        self.server = LocalServer()
        self.conn_settings = settings_store.load_connection()
        self.results: List[kdoc.ResultImage] = []
        self.result_job: Optional[RunningJob] = None
        self.job: Optional[RunningJob] = None
        self.models: list = []
        self.device = ""
        self.live_scheduler = LiveScheduler()
        self.live_seed = 0
        self.preview_updates = 0  # writes of a result into the document's preview layer
        self.progress_previews = 0  # in-progress previews shown in the panel (never written into the document)
        self._showing_progress_preview = False
        self.mode = "inpaint"
        self.last_progress = (0, 0)
        self._reading = False
        self.message = ""
        self.message_is_error = False
        self._last_autostart = -AUTOSTART_PAUSE
        self._autostart_failures = 0
        self._build()
        self._load_settings(settings_store.load_job_settings())
        self.live_timer = QtCore.QTimer(self)
        self.live_timer.setInterval(LIVE_POLL_MS)
        self.live_timer.timeout.connect(self._live_tick)
        self.connection.state_changed.connect(self._on_state)
        self.connection.welcomed.connect(self._on_welcome)
        self.connection.models_changed.connect(self._on_models)
        self.connection.job_event.connect(self._on_job_event)
        self.connection.job_result.connect(self._on_job_result)
        self.connection.job_failed.connect(self._on_job_failed)
        self.connection.job_cancelled.connect(self._on_job_cancelled)
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        Krita.instance().notifier().applicationClosing.connect(self.shutdown)
        self.connection.configure(self.conn_settings.url, self.conn_settings.token)

    # --- layout -------------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(scroll)
        body = QtWidgets.QWidget()
        scroll.setWidget(body)
        layout = QtWidgets.QVBoxLayout(body)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)

        # Connection status line with a settings toggle.
        status_row = QtWidgets.QHBoxLayout()
        self.status_dot = QtWidgets.QLabel("●")
        self.status_label = QtWidgets.QLabel("Not connected")
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding,
                                        QtWidgets.QSizePolicy.Policy.Preferred)
        self.settings_button = QtWidgets.QToolButton()
        self.settings_button.setText("⚙")
        self.settings_button.setCheckable(True)
        self.settings_button.setToolTip("Server settings")
        status_row.addWidget(self.status_dot)
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.settings_button)
        layout.addLayout(status_row)

        self.server_box = QtWidgets.QGroupBox("Server")
        form = QtWidgets.QFormLayout(self.server_box)
        self.url_edit = QtWidgets.QLineEdit(self.conn_settings.url)
        self.url_edit.setPlaceholderText(settings_store.DEFAULT_URL)
        self.token_edit = QtWidgets.QLineEdit(self.conn_settings.token)
        self.token_edit.setEchoMode(QtWidgets.QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("only for a remote server")
        self.autostart_check = QtWidgets.QCheckBox("Start the local server when needed")
        self.autostart_check.setChecked(self.conn_settings.autostart)
        server_buttons = QtWidgets.QHBoxLayout()
        self.connect_button = QtWidgets.QPushButton("Connect")
        self.start_server_button = QtWidgets.QPushButton("Start local server")
        self.start_server_button.setEnabled(self.server.available)
        if not self.server.available:
            self.start_server_button.setToolTip("install.py records where the server lives; run it to enable this")
        server_buttons.addWidget(self.connect_button)
        server_buttons.addWidget(self.start_server_button)
        form.addRow("Address", self.url_edit)
        form.addRow("Token", self.token_edit)
        form.addRow(self.autostart_check)
        form.addRow(server_buttons)
        self.server_box.setVisible(False)
        layout.addWidget(self.server_box)
        self.settings_button.toggled.connect(self.server_box.setVisible)
        self.connect_button.clicked.connect(self._apply_server_fields)
        self.start_server_button.clicked.connect(self.start_local_server)

        # Mode: a tab bar (scrolls when the docker is narrow).
        self.mode_tabs = QtWidgets.QTabBar()
        self.mode_tabs.setExpanding(True)
        self.mode_tabs.setUsesScrollButtons(True)
        self.mode_tabs.setDrawBase(False)
        self.mode_tabs.setStyleSheet("QTabBar::tab { padding: 4px 5px; }")
        short = {"generate": "Generate", "inpaint": "Inpaint", "img2img": "Refine", "outpaint": "Outpaint",
                 "upscale": "Upscale"}
        for i, mode in enumerate(MODES):
            self.mode_tabs.addTab(short[mode])
            self.mode_tabs.setTabToolTip(i, MODE_LABELS[mode])
        layout.addWidget(self.mode_tabs)
        self.mode_tabs.currentChanged.connect(lambda i: self.set_mode(MODES[i]) if MODES[i] != self.mode else None)

        # Model.
        model_row = QtWidgets.QHBoxLayout()
        model_row.addWidget(QtWidgets.QLabel("Model"))
        self.model_box = _combo()
        self.model_box.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        model_row.addWidget(self.model_box, 1)
        layout.addLayout(model_row)
        self.model_box.activated.connect(self._on_model_chosen)

        # Prompts.
        self.prompt_edit = QtWidgets.QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("Describe what to paint…")
        self.prompt_edit.setFixedHeight(64)
        self.negative_edit = QtWidgets.QPlainTextEdit()
        self.negative_edit.setPlaceholderText("Negative prompt: what to avoid")
        self.negative_edit.setFixedHeight(40)
        layout.addWidget(self.prompt_edit)
        layout.addWidget(self.negative_edit)

        # Strength, outpaint sides, upscale options (shown per mode).
        self.strength_row = QtWidgets.QWidget()
        srow = QtWidgets.QHBoxLayout(self.strength_row)
        srow.setContentsMargins(0, 0, 0, 0)
        srow.addWidget(QtWidgets.QLabel("Strength"))
        self.strength_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(1, 100)
        self.strength_value = QtWidgets.QLabel("100%")
        self.strength_value.setMinimumWidth(36)
        srow.addWidget(self.strength_slider, 1)
        srow.addWidget(self.strength_value)
        self.strength_slider.valueChanged.connect(lambda v: self.strength_value.setText(f"{v}%"))
        layout.addWidget(self.strength_row)

        self.outpaint_box = QtWidgets.QGroupBox("Extend the canvas (px)")
        ogrid = QtWidgets.QGridLayout(self.outpaint_box)
        self.extend = {}
        for i, side in enumerate(("left", "top", "right", "bottom")):
            spin = QtWidgets.QSpinBox()
            spin.setRange(0, 4096)
            spin.setSingleStep(64)
            spin.setPrefix(f"{side.capitalize()} ")
            self.extend[side] = spin
            ogrid.addWidget(spin, i // 2, i % 2)
        layout.addWidget(self.outpaint_box)

        self.upscale_box = QtWidgets.QGroupBox("Upscale")
        uform = QtWidgets.QFormLayout(self.upscale_box)
        self.scale_box = _combo()
        for factor in (1.5, 2.0, 3.0, 4.0):
            self.scale_box.addItem(f"{factor:g}×", factor)
        self.upscaler_box = _combo()
        self.refine_spin = _spin(0.0, 1.0, 0.0, 0.05, "")
        self.refine_spin.setToolTip("Refine the upscaled image with the diffusion model (0 = off)")
        uform.addRow("Factor", self.scale_box)
        uform.addRow("Upscaler", self.upscaler_box)
        uform.addRow("Refine", self.refine_spin)
        layout.addWidget(self.upscale_box)

        # Advanced parameters.
        self.advanced_button = QtWidgets.QToolButton()
        self.advanced_button.setText("Advanced")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        layout.addWidget(self.advanced_button)
        self.advanced = QtWidgets.QWidget()
        aform = QtWidgets.QFormLayout(self.advanced)
        aform.setContentsMargins(8, 0, 0, 0)
        self.steps_spin = QtWidgets.QSpinBox()
        self.steps_spin.setRange(1, 150)
        self.cfg_spin = _spin(0.0, 30.0, 7.0, 0.5, "")
        self.sampler_box = _combo()
        self.sampler_box.addItem("Model default", "")
        for name in protocol.SAMPLERS:
            self.sampler_box.addItem(name, name)
        seed_row = QtWidgets.QHBoxLayout()
        self.seed_spin = QtWidgets.QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.random_seed_check = QtWidgets.QCheckBox("Random")
        self.random_seed_check.toggled.connect(lambda on: self.seed_spin.setEnabled(not on))
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.random_seed_check)
        self.batch_spin = QtWidgets.QSpinBox()
        self.batch_spin.setRange(1, 8)
        self.image_source_box = _combo()
        self.image_source_box.addItem("Visible image", "visible")
        self.image_source_box.addItem("Active layer", "layer")
        self.mask_source_box = _combo()
        self.mask_source_box.addItem("Selection or selected mask", "selection")
        self.mask_source_box.addItem("Active layer's transparency", "alpha")
        aform.addRow("Steps", self.steps_spin)
        aform.addRow("CFG", self.cfg_spin)
        aform.addRow("Sampler", self.sampler_box)
        aform.addRow("Seed", seed_row)
        aform.addRow("Batch", self.batch_spin)
        aform.addRow("Input", self.image_source_box)
        aform.addRow("Mask", self.mask_source_box)
        self.advanced.setVisible(False)
        layout.addWidget(self.advanced)
        self.advanced_button.toggled.connect(self._toggle_advanced)

        # Control layers.
        control_header = QtWidgets.QHBoxLayout()
        control_title = QtWidgets.QLabel("Control layers")
        control_title.setStyleSheet("font-weight: bold;")
        self.add_control_button = QtWidgets.QToolButton()
        self.add_control_button.setText("+ Add")
        self.add_control_button.setToolTip("Guide the job with a control layer (lines, depth, pose…)")
        control_header.addWidget(control_title, 1)
        control_header.addWidget(self.add_control_button)
        layout.addLayout(control_header)
        self.controls_layout = QtWidgets.QVBoxLayout()
        self.controls_layout.setSpacing(3)
        layout.addLayout(self.controls_layout)
        self.control_rows: List[ControlRow] = []
        self.add_control_button.clicked.connect(lambda: self.add_control())

        # Run, cancel, live.
        run_row = QtWidgets.QHBoxLayout()
        self.run_button = QtWidgets.QPushButton("Inpaint")
        self.run_button.setMinimumHeight(32)
        font = self.run_button.font()
        font.setBold(True)
        self.run_button.setFont(font)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.live_button = QtWidgets.QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("Live inpainting: repaint the selection whenever it or the pixels under it change")
        run_row.addWidget(self.run_button, 2)
        run_row.addWidget(self.cancel_button, 1)
        run_row.addWidget(self.live_button, 1)
        layout.addLayout(run_row)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.live_button.toggled.connect(self.set_live)

        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setMaximumHeight(14)
        layout.addWidget(self.progress)

        self.message_label = QtWidgets.QLabel("")
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message_label)

        # The job in progress (the server's previews), shown where the result thumbnails appear.
        self.progress_preview = QtWidgets.QLabel()
        self.progress_preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.progress_preview.setFixedHeight(PREVIEW_HEIGHT + 8)
        self.progress_preview.setMinimumWidth(THUMB)
        self.progress_preview.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        self.progress_preview.setVisible(False)
        layout.addWidget(self.progress_preview)

        # Results.
        self.results_list = QtWidgets.QListWidget()
        self.results_list.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.results_list.setFlow(QtWidgets.QListView.Flow.LeftToRight)
        self.results_list.setWrapping(False)
        self.results_list.setIconSize(QtCore.QSize(THUMB, THUMB))
        self.results_list.setFixedHeight(THUMB + 34)
        self.results_list.setMovement(QtWidgets.QListView.Movement.Static)
        self.results_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        layout.addWidget(self.results_list)
        result_row = QtWidgets.QHBoxLayout()
        self.apply_button = QtWidgets.QPushButton("Apply")
        self.apply_button.setToolTip("Insert the chosen result as a new layer")
        self.discard_button = QtWidgets.QPushButton("Discard")
        result_row.addWidget(self.apply_button)
        result_row.addWidget(self.discard_button)
        layout.addLayout(result_row)
        self.results_list.currentRowChanged.connect(self._on_result_row)
        self.apply_button.clicked.connect(lambda: self.apply())
        self.discard_button.clicked.connect(self.discard)
        layout.addStretch(1)
        self._update_results_ui()

    def _toggle_advanced(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    # --- settings -----------------------------------------------------------------------------------------------------
    def _load_settings(self, s: Settings) -> None:
        self.prompt_edit.setPlainText(s.prompt)
        self.negative_edit.setPlainText(s.negative_prompt)
        self.steps_spin.setValue(s.steps)
        self.cfg_spin.setValue(s.cfg)
        self.sampler_box.setCurrentIndex(max(0, self.sampler_box.findData(s.sampler)))
        self.seed_spin.setValue(s.seed % (2**31))
        self.random_seed_check.setChecked(s.random_seed)
        self.seed_spin.setEnabled(not s.random_seed)
        self.batch_spin.setValue(max(1, min(8, s.batch)))
        for side in self.extend:
            self.extend[side].setValue(getattr(s, f"extend_{side}"))
        self.scale_box.setCurrentIndex(max(0, self.scale_box.findData(s.scale)))
        self.refine_spin.setValue(s.refine)
        self.image_source_box.setCurrentIndex(max(0, self.image_source_box.findData(s.image_source)))
        self.mask_source_box.setCurrentIndex(max(0, self.mask_source_box.findData(s.mask_source)))
        self._wanted_model = s.model
        self._wanted_upscaler = s.upscaler
        self._fill_model_boxes()
        self.set_mode(s.mode, strength=s.strength)

    def settings(self) -> Settings:
        """The job settings as the panel shows them."""
        return Settings(
            mode=self.mode, model=self.model_box.currentData() or "",
            prompt=self.prompt_edit.toPlainText().strip(), negative_prompt=self.negative_edit.toPlainText().strip(),
            strength=self.strength_slider.value() / 100.0, steps=self.steps_spin.value(),
            cfg=self.cfg_spin.value(), sampler=self.sampler_box.currentData() or "",
            seed=self.seed_spin.value(), random_seed=self.random_seed_check.isChecked(),
            batch=self.batch_spin.value(),
            extend_left=self.extend["left"].value(), extend_top=self.extend["top"].value(),
            extend_right=self.extend["right"].value(), extend_bottom=self.extend["bottom"].value(),
            scale=float(self.scale_box.currentData()), upscaler=self.upscaler_box.currentData() or "",
            refine=self.refine_spin.value(), image_source=self.image_source_box.currentData(),
            mask_source=self.mask_source_box.currentData(),
        )

    @guarded
    def set_mode(self, mode: str, strength: Optional[float] = None) -> None:
        """Switch to ``mode`` (generate, inpaint, img2img, outpaint, upscale)."""
        if mode not in MODES:
            raise JobError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.mode_tabs.blockSignals(True)
        self.mode_tabs.setCurrentIndex(MODES.index(mode))
        self.mode_tabs.blockSignals(False)
        self.strength_row.setVisible(mode in ("img2img", "inpaint"))
        self.outpaint_box.setVisible(mode == "outpaint")
        self.upscale_box.setVisible(mode == "upscale")
        self.live_button.setEnabled(mode in ("inpaint", "img2img"))
        self.strength_slider.setValue(int(round(100 * (strength if strength is not None else MODE_STRENGTH[mode]))))
        self.run_button.setText(MODE_LABELS[mode].split(" (")[0])

    @guarded
    def set_prompt(self, prompt: str, negative: Optional[str] = None) -> None:
        self.prompt_edit.setPlainText(prompt)
        if negative is not None:
            self.negative_edit.setPlainText(negative)

    @guarded
    def set_option(self, name: str, value) -> None:
        """Set one job setting by its ``Settings`` name (e.g. ``steps``, ``seed``, ``random_seed``, ``extend_left``)."""
        widgets = {
            "steps": self.steps_spin, "cfg": self.cfg_spin, "seed": self.seed_spin, "batch": self.batch_spin,
            "refine": self.refine_spin,
            **{f"extend_{side}": spin for side, spin in self.extend.items()},
        }
        combos = {"sampler": self.sampler_box, "model": self.model_box, "upscaler": self.upscaler_box,
                  "image_source": self.image_source_box, "mask_source": self.mask_source_box,
                  "scale": self.scale_box}
        if name in widgets:
            widgets[name].setValue(value)
        elif name in combos:
            index = combos[name].findData(value)
            if index < 0:
                raise JobError(f"{value!r} is not available for {name}")
            combos[name].setCurrentIndex(index)
            if name == "model":
                self._on_model_chosen(index)
        elif name == "random_seed":
            self.random_seed_check.setChecked(bool(value))
        elif name == "strength":
            self.strength_slider.setValue(int(round(float(value) * 100)))
        else:
            raise JobError(f"unknown option {name!r}")

    # --- connection ---------------------------------------------------------------------------------------------------
    @guarded
    def set_server(self, url: str, token: str = "", autostart: Optional[bool] = None) -> None:
        """Point the panel at another server (kept in Krita's settings)."""
        self.url_edit.setText(url)
        self.token_edit.setText(token)
        if autostart is not None:
            self.autostart_check.setChecked(autostart)
        self._apply_server_fields()

    @guarded
    def _apply_server_fields(self) -> None:
        self.conn_settings = settings_store.ConnectionSettings(
            url=self.url_edit.text().strip() or settings_store.DEFAULT_URL, token=self.token_edit.text(),
            autostart=self.autostart_check.isChecked())
        settings_store.save_connection(self.conn_settings)
        self._autostart_failures = 0
        self.connection.configure(self.conn_settings.url, self.conn_settings.token or None)
        self.connection.reconnect_now()

    @property
    def connection_state(self) -> str:
        return self.connection.state

    @guarded
    def start_local_server(self) -> None:
        """Start the local server recorded by install.py for the configured address."""
        if self.server.running:
            self.show_message("The local server is already running.")
            return
        self._autostart_failures = 0
        self._last_autostart = time.monotonic()
        self.server.start(self.conn_settings.url, self.conn_settings.token or None)
        self.status_label.setText("Starting the local server…")
        self.connection.reconnect_now()

    @guarded
    def _on_state(self, state: str, detail: str) -> None:
        color = STATE_COLORS.get(state, "#8b949e")
        self.status_dot.setStyleSheet(f"color: {color}; font-size: 14px;")
        if state == CONNECTED:
            count = len([m for m in self.models if m.get("kind") == "checkpoint"])
            models = f"{count} model{'s' if count != 1 else ''}" if count else "classical fill only (no models)"
            self.status_label.setText(f"<b>Connected</b> · {models}<br><small>{self.device or detail}</small>")
            self.status_label.setToolTip(f"{detail}\n{self.device}")
        elif state == CONNECTING:
            self.status_label.setText("Connecting…")
            self.status_label.setToolTip(detail)
        else:
            self.status_label.setText("Not connected")
            self.status_label.setToolTip(detail)
            self._maybe_autostart(detail)
        self._update_run_ui()

    def _maybe_autostart(self, detail: str) -> None:
        """Start (or restart) the local server when the connection fails and the painter allows it.

        At most one start per ``AUTOSTART_PAUSE`` seconds, and no more after ``AUTOSTART_TRIES`` starts that never
        reached a welcome (a broken install would otherwise restart for ever).
        """
        if not (self.conn_settings.autostart and self.server.available
                and local_address(self.conn_settings.url) is not None):
            return
        if self.server.running:
            if not self.server.ready.is_set():
                self.status_label.setText("Starting the local server…")
            return
        now = time.monotonic()
        if now - self._last_autostart < AUTOSTART_PAUSE:
            return
        if self._autostart_failures >= AUTOSTART_TRIES:
            self.status_label.setText("Not connected · the local server does not start")
            self.status_label.setToolTip(self.server.last_output(12) or detail)
            return
        self._last_autostart = now
        self._autostart_failures += 1
        try:
            self.server.start(self.conn_settings.url, self.conn_settings.token or None)
        except ServerStartError as err:
            self.show_message(str(err), error=True)
            return
        self.status_label.setText("Starting the local server…")

    @guarded
    def _on_welcome(self, welcome: dict) -> None:
        self.device = welcome.get("device", "")
        self._autostart_failures = 0

    @guarded
    def _on_models(self, models: list) -> None:
        self.models = list(models or [])
        self._fill_model_boxes()
        if self.connection.connected:
            self._on_state(CONNECTED, self.connection.detail)

    def _fill_model_boxes(self) -> None:
        keep = self.model_box.currentData() if self.model_box.count() else getattr(self, "_wanted_model", "")
        self.model_box.blockSignals(True)
        self.model_box.clear()
        checkpoints = [m for m in self.models if m.get("kind") == "checkpoint"]
        self.model_box.addItem("Default" + (f" ({checkpoints[0]['name']})" if checkpoints else " (classical fill)"), "")
        for entry in checkpoints:
            label = entry["name"] + (f"  ·  {entry.get('arch', '').upper()}" if entry.get("arch") else "")
            if entry.get("inpaint"):
                label += " · inpaint"
            self.model_box.addItem(label, entry["name"])
        self.model_box.addItem("Classical (OpenCV, no AI)", CLASSICAL)
        index = self.model_box.findData(keep)
        self.model_box.setCurrentIndex(max(0, index))
        self.model_box.blockSignals(False)
        keep_up = (self.upscaler_box.currentData() if self.upscaler_box.count()
                   else getattr(self, "_wanted_upscaler", ""))
        self.upscaler_box.clear()
        self.upscaler_box.addItem("Lanczos (no model)", "")
        for entry in self.models:
            if entry.get("kind") == "upscaler":
                self.upscaler_box.addItem(entry["name"], entry["name"])
        self.upscaler_box.setCurrentIndex(max(0, self.upscaler_box.findData(keep_up)))

    def _model_entry(self, name: str) -> Optional[dict]:
        checkpoints = [m for m in self.models if m.get("kind") == "checkpoint"]
        if name == "":
            return checkpoints[0] if checkpoints else None
        return next((m for m in checkpoints if m.get("name") == name), {"name": name})

    @guarded
    def _on_model_chosen(self, index: int) -> None:
        entry = self._model_entry(self.model_box.itemData(index) or "")
        defaults = defaults_for(entry)
        if defaults.steps > 1:
            self.steps_spin.setValue(defaults.steps)
            self.cfg_spin.setValue(defaults.cfg)
            self.sampler_box.setCurrentIndex(max(0, self.sampler_box.findData(defaults.sampler)))

    # --- jobs ---------------------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None

    @guarded
    def run(self, live: bool = False) -> Optional[str]:
        """Start a job with the panel's settings; returns its id (None when it could not start, with a message)."""
        if self.job is not None:
            self.show_message("A job is already running: wait for it or cancel it.", error=True)
            return None
        if not self.connection.connected:
            raise JobError(f"Not connected to the Paintbridge server ({self.connection.detail}).")
        doc = kdoc.active_document()
        settings = self.settings()
        if live:
            if settings.mode not in ("inpaint", "img2img"):
                settings.mode = "inpaint"
            settings.batch = 1
            settings.random_seed = False
            settings.seed = self.live_seed
        settings_store.save_job_settings(settings)
        if self._reading:  # reading lets Qt process events; a live tick must not start a second job meanwhile
            return None
        self._reading = True
        try:
            inputs = kdoc.read_inputs(doc, settings, [row.spec() for row in self.control_rows])
        finally:
            self._reading = False
        seed = random.randrange(0, 2**31) if settings.random_seed else settings.seed
        job = build_job(settings, inputs, seed, previews=True)
        job_id = self.connection.submit(job)
        self.job = RunningJob(job_id, "live" if live else "job", settings, doc, kdoc.active_layer_id(doc),
                              inputs.box, shape=inputs.mask if settings.mode == "generate" else None)
        self.progress.setValue(0)
        self.progress.setFormat("Queued…")
        if not live:
            self.show_message("")
        self._update_run_ui()
        return job_id

    @guarded
    def cancel(self) -> None:
        """Cancel the running job (the image stays as it was)."""
        if self.job is not None:
            self.connection.cancel(self.job.id)
            self.progress.setFormat("Cancelling…")

    def _current(self, job_id: str) -> Optional[RunningJob]:
        return self.job if self.job is not None and self.job.id == job_id else None

    @guarded
    def _on_job_event(self, job_id: str, msg: dict) -> None:
        if self._current(job_id) is None:
            return
        if msg["type"] == "progress" and msg.get("total"):
            self.last_progress = (msg["step"], msg["total"])
            self.progress.setValue(int(100 * msg["step"] / max(1, msg["total"])))
            self.progress.setFormat(f"Step {msg['step']} of {msg['total']}")
        elif msg["type"] == "started":
            self.progress.setFormat("Working…")
        elif msg["type"] == "queued" and msg.get("position"):
            self.progress.setFormat(f"Queued (position {msg['position']})")
        if msg["type"] == "progress" and msg.get("preview") is not None:
            self._show_progress_preview(msg)

    def _show_progress_preview(self, msg: dict) -> None:
        """Show a progress event's preview in the panel (scaled to fit; the document is never touched)."""
        preview = preview_of(msg)
        if preview is None:
            return
        width, height = fit_size(preview.width, preview.height, max(THUMB, self.progress.width() - 8),
                                 PREVIEW_HEIGHT)
        image = qimage_from_rgba8(preview.data, preview.width, preview.height)
        if (width, height) != (preview.width, preview.height):
            image = image.scaled(width, height, Qt.AspectRatioMode.IgnoreAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        self.progress_preview.setPixmap(QtGui.QPixmap.fromImage(image))
        self.progress_preview.setToolTip(f"Step {preview.step} of {preview.total}: a rough preview; "
                                         "the results replace it")
        if not self._showing_progress_preview:
            self._showing_progress_preview = True
            self.progress_preview.setVisible(True)
            self._update_results_ui()
        self.progress_previews += 1
        self.progress_preview_shown.emit(self.progress_previews)

    def _end_progress_preview(self) -> None:
        """The job ended: drop its preview; the result thumbnails (new or earlier ones) show again."""
        if not self._showing_progress_preview:
            return
        self._showing_progress_preview = False
        self.progress_preview.setVisible(False)
        self.progress_preview.clear()
        self._update_results_ui()

    @guarded
    def _on_job_result(self, job_id: str, msg: dict) -> None:
        job = self._current(job_id)
        if job is None:
            return
        self.job = None
        self._end_progress_preview()
        try:
            images = [_result_image(layer) for layer in msg.get("layers", [])]
            if not images:
                raise JobError("The server returned no image.")
            if job.shape is not None:
                images = [_shaped(image, job.box, job.shape) for image in images]
            if not _document_open(job.doc):
                raise JobError("The image this job was made for was closed; the result was dropped.")
            if job.kind == "preprocess":
                node = kdoc.insert_control_image(job.doc, images[0], f"Control: {job.control_type}", job.above_id)
                self._attach_control(node.uniqueId().toString(), job.control_type)
                self.show_message(f"Added a {job.control_type} control layer (hidden; its eye shows it).")
                return
            self.results = images
            self.result_job = job
            self._fill_results()
            if job.settings.mode != "upscale":
                kdoc.show_preview(job.doc, images[0], job.above_id)
                self.preview_updates += 1
            elapsed = msg.get("elapsed", 0.0)
            if job.kind != "live":
                count = len(images)
                self.show_message(f"{count} result{'s' if count > 1 else ''} in {elapsed:.1f} s: "
                                  "pick one, then Apply or Discard.")
        finally:
            if job.kind == "live":
                self.live_scheduler.finished()
            self.progress.setValue(100)
            self.progress.setFormat("Done")
            self._update_run_ui()

    @guarded
    def _on_job_failed(self, job_id: str, code: str, message: str) -> None:
        self._end_unfinished_job(job_id, "Failed", message, error=True)

    @guarded
    def _on_job_cancelled(self, job_id: str) -> None:
        self._end_unfinished_job(job_id, "Cancelled", "Cancelled; nothing was changed.", error=False)

    def _end_unfinished_job(self, job_id: str, status: str, message: str, error: bool) -> None:
        """A job ended without a result: reset progress, free live mode for the next job, say why."""
        job = self._current(job_id)
        if job is None:
            return
        self.job = None
        self._end_progress_preview()
        if job.kind == "live":
            self.live_scheduler.finished()
        self.progress.setValue(0)
        self.progress.setFormat(status)
        self.show_message(message, error=error)
        self._update_run_ui()

    # --- results ------------------------------------------------------------------------------------------------------
    def _fill_results(self) -> None:
        self.results_list.blockSignals(True)
        self.results_list.clear()
        for image in self.results:
            icon = QtGui.QIcon(QtGui.QPixmap.fromImage(
                qimage_from_bgra8(image.data, image.box.width, image.box.height).scaled(
                    THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)))
            item = QtWidgets.QListWidgetItem(icon, f"seed {image.seed}")
            box = image.box
            item.setToolTip(f"{box.width}×{box.height} at ({box.x}, {box.y}), seed {image.seed}")
            self.results_list.addItem(item)
        self.results_list.setCurrentRow(0 if self.results else -1)
        self.results_list.blockSignals(False)
        self._update_results_ui()

    @property
    def selected_result(self) -> int:
        return self.results_list.currentRow()

    @guarded
    def select_result(self, index: int) -> None:
        """Show result ``index`` of the batch in the preview layer."""
        if not 0 <= index < len(self.results):
            raise JobError(f"there is no result {index + 1}; the batch has {len(self.results)}")
        self.results_list.setCurrentRow(index)

    @guarded
    def _on_result_row(self, row: int) -> None:
        job = self.result_job
        if job is None or not 0 <= row < len(self.results) or job.settings.mode == "upscale":
            return
        if _document_open(job.doc):
            kdoc.show_preview(job.doc, self.results[row], job.above_id)
            self.preview_updates += 1

    @guarded
    def apply(self, index: Optional[int] = None) -> bool:
        """Insert the chosen result as a new layer named after the prompt and seed; True when one was inserted."""
        job = self.result_job
        index = self.results_list.currentRow() if index is None else index
        if job is None or not 0 <= index < len(self.results):
            raise JobError("There is no result to apply.")
        if not _document_open(job.doc):
            raise JobError("The image this result was made for was closed.")
        image = self.results[index]
        if job.settings.mode == "upscale":
            kdoc.open_as_new_document(image, f"Upscaled {image.box.width}x{image.box.height}", job.doc)
        else:
            kdoc.apply_result(job.doc, image, job.settings.prompt, job.settings.mode, job.above_id)
        self._clear_results()
        self.show_message("Applied as a new layer." if job.settings.mode != "upscale"
                          else "Opened the upscaled image as a new document.")
        return True

    @guarded
    def discard(self) -> None:
        """Drop the results and remove the preview layer."""
        job = self.result_job
        if job is not None and _document_open(job.doc):
            kdoc.remove_preview(job.doc)
        self._clear_results()

    def _clear_results(self) -> None:
        self.results = []
        self.result_job = None
        self.results_list.clear()
        self._update_results_ui()

    def _update_results_ui(self) -> None:
        has = bool(self.results)
        self.results_list.setVisible(has and not self._showing_progress_preview)
        self.apply_button.setEnabled(has)
        self.discard_button.setEnabled(has)
        self.apply_button.setVisible(has)
        self.discard_button.setVisible(has)

    def _update_run_ui(self) -> None:
        busy = self.job is not None
        self.run_button.setEnabled(not busy and self.connection.connected)
        self.cancel_button.setEnabled(busy)

    # --- live mode ----------------------------------------------------------------------------------------------------
    @guarded
    def set_live(self, on: bool) -> None:
        """Turn live inpainting on or off (off stops cleanly: the job in flight is cancelled, the preview stays)."""
        if self.live_button.isChecked() != on:
            self.live_button.blockSignals(True)
            self.live_button.setChecked(on)
            self.live_button.blockSignals(False)
        if on:
            if self.mode not in ("inpaint", "img2img"):
                self.set_mode("inpaint")
            self.live_seed = self.seed_spin.value() if not self.random_seed_check.isChecked() \
                else random.randrange(0, 2**31)
            self.live_scheduler.forget()
            self.live_timer.start()
            self.show_message("Live: change the selection or paint under it to repaint.")
        else:
            self.live_timer.stop()
            if self.job is not None and self.job.kind == "live":
                self.cancel()
            self.live_scheduler.forget()
            self.show_message("Live mode is off.")

    @property
    def live(self) -> bool:
        return self.live_timer.isActive()

    @guarded
    def _live_tick(self) -> None:
        if self.job is not None or self._reading or not self.connection.connected:
            return
        doc = Krita.instance().activeDocument()
        if doc is None:
            return
        try:
            settings = self.settings()
            extra = [settings.prompt, settings.strength, settings.model, doc.rootNode().uniqueId().toString()]
            sig = signature(kdoc.live_signature_parts(doc, settings) + extra)
        except (kdoc.DocumentError, JobError) as err:
            self.show_message(str(err), error=True)
            return
        if self.live_scheduler.observe(sig, time.monotonic()):
            if kdoc.mask_bounds(doc, settings) is None:
                return
            self.live_scheduler.started(sig)
            if self.run(live=True) is None:
                self.live_scheduler.finished()

    # --- control layers -----------------------------------------------------------------------------------------------
    @guarded
    def add_control(self, layer_id: Optional[str] = None, type: str = "scribble", strength: float = 1.0,
                    start: float = 0.0, end: float = 1.0) -> ControlRow:
        """Add a control layer to the panel (``layer_id``: a node's uniqueId string; default: the active layer)."""
        if type not in protocol.CONTROL_TYPES:
            raise JobError(f"unknown control type {type!r}; choose one of {', '.join(protocol.CONTROL_TYPES)}")
        doc = Krita.instance().activeDocument()
        if layer_id is None and doc is not None:
            layer_id = kdoc.active_layer_id(doc)
        row = ControlRow(self, kdoc.ControlSpec(layer_id or "", type, strength, start, end))
        self.control_rows.append(row)
        self.controls_layout.addWidget(row)
        return row

    @guarded
    def remove_control(self, row: ControlRow) -> None:
        if row in self.control_rows:
            self.control_rows.remove(row)
            row.setParent(None)
            row.deleteLater()

    def _attach_control(self, layer_id: str, control_type: str) -> None:
        target = self._pending_control_row
        self._pending_control_row = None
        if target is None or target not in self.control_rows:
            target = self.add_control(layer_id, control_type)
        for row in self.control_rows:
            row.refresh_layers()
        index = target.layer_box.findData(layer_id)
        if index >= 0:
            target.layer_box.setCurrentIndex(index)

    _pending_control_row: Optional[ControlRow] = None

    @guarded
    def control_from_image(self, control_type: Optional[str] = None, row: Optional[ControlRow] = None) -> Optional[str]:
        """Run a ``preprocess`` job on the image and insert the control image as a new layer."""
        if self.job is not None:
            raise JobError("A job is already running: wait for it or cancel it.")
        if not self.connection.connected:
            raise JobError(f"Not connected to the Paintbridge server ({self.connection.detail}).")
        control_type = control_type or (row.type_box.currentText() if row is not None else "canny")
        doc = kdoc.active_document()
        info = kdoc.color_info(doc)
        settings = self.settings()
        box = kdoc.canvas_box(doc)
        image = kdoc.read_image(doc, settings, box, info)
        job_id = self.connection.submit(build_preprocess_job(control_type, box, image))
        self._pending_control_row = row
        self.job = RunningJob(job_id, "preprocess", settings, doc, kdoc.active_layer_id(doc), box,
                              control_type=control_type)
        self.progress.setFormat("Preparing the control image…")
        self._update_run_ui()
        return job_id

    # --- messages and shutdown ----------------------------------------------------------------------------------------
    def show_message(self, text: str, error: bool = False) -> None:
        """Show a message in the panel (errors in red); never a dialog."""
        self.message, self.message_is_error = text, error and bool(text)
        self.message_label.setText(text)
        self.message_label.setStyleSheet("color: #f85149;" if self.message_is_error else "")

    def shutdown(self) -> None:
        """Stop live mode, the connection and a server this panel started."""
        self.live_timer.stop()
        self.connection.stop()
        self.server.stop(timeout=3.0)


def _document_open(doc) -> bool:
    return any(d == doc for d in Krita.instance().documents())


def _result_image(layer: dict) -> kdoc.ResultImage:
    parsed = protocol.ResultLayer.from_wire(layer)
    data = parsed.data
    if parsed.format == protocol.RGBA8:
        data = protocol.convert_pixels(data, protocol.RGBA8, protocol.BGRA8)
    elif parsed.format != protocol.BGRA8:
        raise JobError(f"the server sent a {parsed.format} layer; expected bgra8")
    return kdoc.ResultImage(Box(parsed.x, parsed.y, parsed.width, parsed.height), data, parsed.seed, parsed.name)


def _shaped(image: kdoc.ResultImage, box: Box, mask: bytes) -> kdoc.ResultImage:
    """A generated image cut to the selection it was made for (soft edges kept)."""
    if image.box != box:
        return image
    return kdoc.ResultImage(image.box, masked(image.data, mask), image.seed, image.name)


class PaintbridgeDocker(DockWidget):
    """The docker Krita shows; ``panel`` holds everything."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Paintbridge")
        self.panel = PaintbridgePanel(self)
        self.setWidget(self.panel)

    def canvasChanged(self, canvas) -> None:  # noqa: N802 (Krita's name)
        try:
            for row in self.panel.control_rows:
                row.refresh_layers()
        except Exception as err:  # never let Krita open an error dialog for this
            self.panel.show_message(f"Could not list the layers: {err}", error=True)
