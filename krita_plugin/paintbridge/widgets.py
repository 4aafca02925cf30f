"""The panel's widgets, built and laid out (no behaviour: ``view.PaintbridgePanel`` binds them to the session)."""

from __future__ import annotations

from typing import Mapping

from .basic_widgets import combo as _combo, spin as _spin
from .sections import Section
from .qt_compat import QtCore, QtWidgets, Qt
from .wire import client, protocol

THUMB = 88
PREVIEW_HEIGHT = THUMB + 26  # the in-progress preview's area (it takes the result thumbnails' place)
MODES = (
    "generate",
    "inpaint",
    "img2img",
    "outpaint",
    "upscale",
    "edit",
    "detail",
    "decompose",
)  # the panel's mode list (client.modes has the rules; edit: instruction edit; decompose: picture into layers)
MODE_LABELS = {
    "generate": "Generate",
    "inpaint": "Inpaint",
    "img2img": "Refine (img2img)",
    "outpaint": "Outpaint",
    "upscale": "Upscale (the selection, or the whole image)",
    "edit": 'Edit the selection from an instruction in the prompt ("make the jacket red"); '
    "on models that can, e.g. Flux.1 Kontext",
    "detail": "Detailer: repaint the faces in the selection, or in the whole image",
    "decompose": "Split the selection (or the whole image) into a group of layers with transparency; "
    "on models that can, e.g. Qwen-Image-Layered",
}
SHORT_MODE_NAMES = {
    "generate": "Generate",
    "inpaint": "Inpaint",
    "img2img": "Refine",
    "outpaint": "Outpaint",
    "upscale": "Upscale",
    "edit": "Edit",
    "detail": "Detail",
    "decompose": "Layers",
}


def build(
    panel: QtWidgets.QWidget, url: str, token: str, autostart: bool, server_available: bool, default_url: str
) -> QtWidgets.QVBoxLayout:
    """Create the panel's widgets as attributes of ``panel`` and lay them out, the painter's loop first (status,
    mode and model, prompt, strength, Generate / Live, results). Returns the layout the folded sections go in
    (``add_section``; the view adds them in order)."""
    outer = QtWidgets.QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 0)
    panel.scroll = QtWidgets.QScrollArea()
    panel.scroll.setWidgetResizable(True)
    panel.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
    panel.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    outer.addWidget(panel.scroll)
    body = QtWidgets.QWidget()
    panel.scroll.setWidget(body)
    layout = QtWidgets.QVBoxLayout(body)
    layout.setContentsMargins(6, 6, 6, 6)
    layout.setSpacing(5)
    panel.sections = {}
    build_status(panel, layout)
    build_server(panel, layout, url, token, autostart, server_available, default_url)
    panel.style_row = QtWidgets.QHBoxLayout()  # the style picker's row (filled by the view)
    layout.addLayout(panel.style_row)
    build_mode_and_model(panel, layout)
    build_prompts(panel, layout)
    build_mode_options(panel, layout)
    build_run(panel, layout)
    build_results(panel, layout)
    folded = QtWidgets.QVBoxLayout()
    folded.setSpacing(2)
    layout.addLayout(folded)
    layout.addStretch(1)
    return folded


def add_section(panel: QtWidgets.QWidget, layout, key: str, title: str, tip: str = "") -> QtWidgets.QVBoxLayout:
    """A folded section ``panel.sections[key]`` appended to ``layout``; returns the layout of its body."""
    section = Section(title, tip)
    panel.sections[key] = section
    layout.addWidget(section)
    return section.content


def build_status(panel: QtWidgets.QWidget, layout: QtWidgets.QVBoxLayout) -> None:
    """The connection status line with the server settings' toggle."""
    row = QtWidgets.QHBoxLayout()
    panel.status_dot = QtWidgets.QLabel("●")
    panel.status_label = QtWidgets.QLabel("Not connected")
    panel.status_label.setWordWrap(True)
    panel.status_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred)
    panel.settings_button = QtWidgets.QToolButton()
    panel.settings_button.setText("⚙")
    panel.settings_button.setCheckable(True)
    panel.settings_button.setToolTip("Server settings")
    row.addWidget(panel.status_dot)
    row.addWidget(panel.status_label, 1)
    row.addWidget(panel.settings_button)
    layout.addLayout(row)


def build_server(
    panel: QtWidgets.QWidget,
    layout: QtWidgets.QVBoxLayout,
    url: str,
    token: str,
    autostart: bool,
    server_available: bool,
    default_url: str,
) -> None:
    """The server settings (address, token, autostart, connect, start), shown by the ⚙ toggle."""
    panel.server_box = QtWidgets.QGroupBox("Server")
    form = QtWidgets.QFormLayout(panel.server_box)
    panel.url_edit = QtWidgets.QLineEdit(url)
    panel.url_edit.setPlaceholderText(default_url)
    panel.token_edit = QtWidgets.QLineEdit(token)
    panel.token_edit.setEchoMode(QtWidgets.QLineEdit.EchoMode.Password)
    panel.token_edit.setPlaceholderText("only for a remote server")
    panel.autostart_check = QtWidgets.QCheckBox("Start the local server when needed")
    panel.autostart_check.setChecked(autostart)
    buttons = QtWidgets.QHBoxLayout()
    panel.connect_button = QtWidgets.QPushButton("Connect")
    panel.start_server_button = QtWidgets.QPushButton("Start local server")
    panel.start_server_button.setEnabled(server_available)
    if not server_available:
        panel.start_server_button.setToolTip("install.py records where the server lives; run it to enable this")
    buttons.addWidget(panel.connect_button)
    buttons.addWidget(panel.start_server_button)
    form.addRow("Address", panel.url_edit)
    form.addRow("Token", panel.token_edit)
    form.addRow(panel.autostart_check)
    form.addRow(buttons)
    panel.server_box.setVisible(False)
    layout.addWidget(panel.server_box)
    panel.settings_button.toggled.connect(panel.server_box.setVisible)


def build_mode_and_model(panel: QtWidgets.QWidget, layout: QtWidgets.QVBoxLayout) -> None:
    """One row: the mode (a list, never tabs behind overflow arrows) and the model."""
    row = QtWidgets.QHBoxLayout()
    row.setSpacing(4)
    panel.mode_box = _combo(7)
    for mode in MODES:
        panel.mode_box.addItem(SHORT_MODE_NAMES[mode], mode)
        panel.mode_box.setItemData(panel.mode_box.count() - 1, MODE_LABELS[mode], Qt.ItemDataRole.ToolTipRole)
    panel.mode_box.setToolTip("What the job does: inpaint the selection, generate into it, refine, outpaint…")
    panel.model_box = _combo()
    panel.model_box.setToolTip("The model that paints (the style's choice unless you pick one)")
    row.addWidget(panel.mode_box, 2)
    row.addWidget(panel.model_box, 3)
    layout.addLayout(row)


def build_prompts(panel: QtWidgets.QWidget, layout: QtWidgets.QVBoxLayout) -> None:
    """The prompt with the Describe button and the caption style beside it, the negative prompt under it."""
    panel.prompt_edit = QtWidgets.QPlainTextEdit()
    panel.prompt_edit.setPlaceholderText("Describe what to paint…")
    panel.prompt_edit.setFixedHeight(64)
    panel.negative_edit = QtWidgets.QPlainTextEdit()
    panel.negative_edit.setPlaceholderText("Negative prompt: what to avoid")
    panel.negative_edit.setFixedHeight(36)
    row = QtWidgets.QHBoxLayout()
    row.setSpacing(4)
    row.addWidget(panel.prompt_edit, 1)
    describe = QtWidgets.QVBoxLayout()
    describe.setSpacing(2)
    panel.describe_button = QtWidgets.QToolButton()
    panel.describe_button.setText("Describe")
    panel.describe_button.setToolTip(
        "Fill the prompt with a description of the selection (or the whole image), made "
        "by the server's captioner ('paintbridge models pull captioner')"
    )
    panel.caption_style_box = _combo(6)
    for value in client.settings.CAPTION_STYLES:
        panel.caption_style_box.addItem(client.settings.CAPTION_STYLE_LABELS[value], value)
    panel.caption_style_box.setToolTip("Describe as a sentence, or as comma-separated tags")
    describe.addWidget(panel.describe_button)
    describe.addWidget(panel.caption_style_box)
    describe.addStretch(1)
    row.addLayout(describe)
    layout.addLayout(row)
    layout.addWidget(panel.negative_edit)


def build_mode_options(panel: QtWidgets.QWidget, layout: QtWidgets.QVBoxLayout) -> None:
    """Strength, and what only some modes show: the transparent layer, seamless textures, outpaint sides, upscale."""
    panel.strength_row = QtWidgets.QWidget()
    srow = QtWidgets.QHBoxLayout(panel.strength_row)
    srow.setContentsMargins(0, 0, 0, 0)
    srow.addWidget(QtWidgets.QLabel("Strength"))
    panel.strength_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
    panel.strength_slider.setRange(1, 100)
    panel.strength_value = QtWidgets.QLabel("100%")
    panel.strength_value.setMinimumWidth(36)
    srow.addWidget(panel.strength_slider, 1)
    srow.addWidget(panel.strength_value)
    panel.strength_slider.valueChanged.connect(lambda v: panel.strength_value.setText(f"{v}%"))
    layout.addWidget(panel.strength_row)
    panel.transparent_check = QtWidgets.QCheckBox("Transparent layer")
    panel.transparent_check.setToolTip(
        "Generate an object with real alpha (hair, glass, smoke) instead of a picture "
        "to cut out: LayerDiffuse on SD1.5 and SDXL models ('paintbridge models pull "
        "layerdiffuse-sd15' or 'layerdiffuse-sdxl')"
    )
    layout.addWidget(panel.transparent_check)

    # Seamless textures (generate, img2img, upscale): the result wraps at its edges; Krita can show it wrapped.
    panel.tileable_row = QtWidgets.QWidget()
    trow = QtWidgets.QHBoxLayout(panel.tileable_row)
    trow.setContentsMargins(0, 0, 0, 0)
    panel.tileable_check = QtWidgets.QCheckBox("Seamless texture")
    panel.tileable_check.setToolTip(
        "Make a result whose right edge continues into its left and its bottom into its "
        "top, to repeat as a tile (a pattern, a texture)"
    )
    panel.wrap_view_check = QtWidgets.QCheckBox("Show wrapped")
    panel.wrap_view_check.setToolTip(
        "Show a seamless result in Krita's wrap-around mode (View > Wrap Around Mode, "
        "Shift+W): the canvas repeats in every direction, so any seam shows"
    )
    trow.addWidget(panel.tileable_check)
    trow.addWidget(panel.wrap_view_check)
    trow.addStretch(1)
    layout.addWidget(panel.tileable_row)

    panel.outpaint_box = QtWidgets.QGroupBox("Extend the canvas (px)")
    ogrid = QtWidgets.QGridLayout(panel.outpaint_box)
    panel.extend = {}
    for i, side in enumerate(("left", "top", "right", "bottom")):
        spin = QtWidgets.QSpinBox()
        spin.setRange(0, 4096)
        spin.setSingleStep(64)
        spin.setPrefix(f"{side.capitalize()} ")
        panel.extend[side] = spin
        ogrid.addWidget(spin, i // 2, i % 2)
    layout.addWidget(panel.outpaint_box)

    panel.upscale_box = QtWidgets.QGroupBox("Upscale")
    uform = QtWidgets.QFormLayout(panel.upscale_box)
    panel.scale_box = _combo()
    for factor in (1.5, 2.0, 3.0, 4.0):
        panel.scale_box.addItem(f"{factor:g}×", factor)
    panel.upscaler_box = _combo()
    panel.refine_spin = _spin(0.0, 1.0, 0.0, 0.05, "")
    panel.refine_spin.setToolTip("Refine the upscaled image with the diffusion model (0 = off)")
    uform.addRow("Factor", panel.scale_box)
    uform.addRow("Upscaler", panel.upscaler_box)
    uform.addRow("Refine", panel.refine_spin)
    layout.addWidget(panel.upscale_box)

    panel.decompose_box = QtWidgets.QGroupBox("Split into layers")
    dform = QtWidgets.QFormLayout(panel.decompose_box)
    panel.layer_count_spin = QtWidgets.QSpinBox()
    panel.layer_count_spin.setRange(protocol.MIN_LAYER_COUNT, protocol.MAX_LAYER_COUNT)
    panel.layer_count_spin.setToolTip("How many layers the picture is split into (they arrive as one group)")
    dform.addRow("Layers", panel.layer_count_spin)
    layout.addWidget(panel.decompose_box)


def build_run(panel: QtWidgets.QWidget, layout: QtWidgets.QVBoxLayout) -> None:
    """Generate (named after the mode), Cancel and Live; the progress bar and the message line under them."""
    row = QtWidgets.QHBoxLayout()
    panel.run_button = QtWidgets.QPushButton("Inpaint")
    panel.run_button.setMinimumHeight(32)
    font = panel.run_button.font()
    font.setBold(True)
    panel.run_button.setFont(font)
    panel.cancel_button = QtWidgets.QPushButton("Cancel")
    panel.cancel_button.setEnabled(False)
    panel.live_button = QtWidgets.QPushButton("Live")
    panel.live_button.setCheckable(True)
    panel.live_button.setToolTip("Live inpainting: repaint the selection whenever it or the pixels under it change")
    row.addWidget(panel.run_button, 2)
    row.addWidget(panel.cancel_button, 1)
    row.addWidget(panel.live_button, 1)
    layout.addLayout(row)
    panel.live_offer_layout = QtWidgets.QVBoxLayout()  # the one-click download that makes live frames fast
    layout.addLayout(panel.live_offer_layout)
    panel.progress = QtWidgets.QProgressBar()
    panel.progress.setRange(0, 100)
    panel.progress.setValue(0)
    panel.progress.setTextVisible(True)
    panel.progress.setMaximumHeight(14)
    layout.addWidget(panel.progress)
    panel.message_label = QtWidgets.QLabel("")
    panel.message_label.setWordWrap(True)
    panel.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    layout.addWidget(panel.message_label)


def build_results(panel: QtWidgets.QWidget, layout: QtWidgets.QVBoxLayout) -> None:
    """The strip of results (the job's in-progress preview takes its place while it runs), Apply and Discard."""
    panel.progress_preview = QtWidgets.QLabel()
    panel.progress_preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
    panel.progress_preview.setFixedHeight(PREVIEW_HEIGHT + 8)
    panel.progress_preview.setMinimumWidth(THUMB)
    panel.progress_preview.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
    panel.progress_preview.setVisible(False)
    layout.addWidget(panel.progress_preview)
    panel.results_list = QtWidgets.QListWidget()
    panel.results_list.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
    panel.results_list.setFlow(QtWidgets.QListView.Flow.LeftToRight)
    panel.results_list.setWrapping(False)
    panel.results_list.setIconSize(QtCore.QSize(THUMB, THUMB))
    panel.results_list.setFixedHeight(THUMB + 34)
    panel.results_list.setMovement(QtWidgets.QListView.Movement.Static)
    panel.results_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    layout.addWidget(panel.results_list)
    row = QtWidgets.QHBoxLayout()
    panel.apply_button = QtWidgets.QPushButton("Apply")
    panel.apply_button.setToolTip("Insert the chosen result as a new layer")
    panel.discard_button = QtWidgets.QPushButton("Discard")
    row.addWidget(panel.apply_button)
    row.addWidget(panel.discard_button)
    layout.addLayout(row)
    panel.after_results = QtWidgets.QVBoxLayout()  # the models box (what a preset lacks, its download)
    layout.addLayout(panel.after_results)


def build_sampling(panel: QtWidgets.QWidget, layout: QtWidgets.QVBoxLayout) -> None:
    """The folded "Sampling" section: steps, CFG, sampler, seed, batch, inputs, schedule, VAE…, fills."""
    section = panel.sections["sampling"]
    panel.advanced_button, panel.advanced = section.button, section.body
    holder = QtWidgets.QWidget()
    aform = QtWidgets.QFormLayout(holder)
    aform.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(holder)
    panel.steps_spin = QtWidgets.QSpinBox()
    panel.steps_spin.setRange(1, 150)
    panel.cfg_spin = _spin(0.0, 30.0, 7.0, 0.5, "")
    panel.sampler_box = _combo()
    panel.sampler_box.addItem("Model default", "")
    for name in protocol.SAMPLERS:
        panel.sampler_box.addItem(name, name)
    seed_row = QtWidgets.QHBoxLayout()
    panel.seed_spin = QtWidgets.QSpinBox()
    panel.seed_spin.setRange(0, 2**31 - 1)
    panel.random_seed_check = QtWidgets.QCheckBox("Random")
    panel.random_seed_check.toggled.connect(lambda on: panel.seed_spin.setEnabled(not on))
    seed_row.addWidget(panel.seed_spin, 1)
    seed_row.addWidget(panel.random_seed_check)
    panel.batch_spin = QtWidgets.QSpinBox()
    panel.batch_spin.setRange(1, 8)
    panel.image_source_box = _combo()
    panel.image_source_box.addItem("Visible image", "visible")
    panel.image_source_box.addItem("Active layer", "layer")
    panel.mask_source_box = _combo()
    panel.mask_source_box.addItem("Selection or selected mask", "selection")
    panel.mask_source_box.addItem("Active layer's transparency", "alpha")
    aform.addRow("Steps", panel.steps_spin)
    aform.addRow("CFG", panel.cfg_spin)
    aform.addRow("Sampler", panel.sampler_box)
    aform.addRow("Seed", seed_row)
    aform.addRow("Batch", panel.batch_spin)
    aform.addRow("Input", panel.image_source_box)
    aform.addRow("Mask", panel.mask_source_box)
    build_sampling_rows(panel, aform)
    panel.sampling_form = aform
    panel.fill_box = _labelled_combo(
        client.settings.FILLS,
        "Inpaint and outpaint: how the area is filled without a model (and pre-filled for a "
        "diffusion outpaint). Texture copies it from around the hole; LaMa needs its weights "
        "('paintbridge models pull lama').",
    )
    panel.color_match_check = QtWidgets.QCheckBox("Match colours to the surroundings")
    aform.addRow("Fill", panel.fill_box)
    aform.addRow(panel.color_match_check)


def _labelled_combo(labels: Mapping[str, str], tip: str) -> QtWidgets.QComboBox:
    """A combo box of ``labels`` (value → the painter's word) with a tooltip."""
    box = _combo()
    for value, label in labels.items():
        box.addItem(label, value)
    box.setToolTip(tip)
    return box


def build_controls(panel: QtWidgets.QWidget, layout: QtWidgets.QVBoxLayout) -> None:
    """The folded "Control layers" section: + Add, and the box the rows go in (``panel.controls_layout``)."""
    panel.add_control_button = QtWidgets.QToolButton()
    panel.add_control_button.setText("+ Add a control layer")
    panel.add_control_button.setToolTip("Guide the job with a control layer (lines, depth, pose…)")
    layout.addWidget(panel.add_control_button)
    panel.controls_layout = QtWidgets.QVBoxLayout()
    panel.controls_layout.setSpacing(3)
    layout.addLayout(panel.controls_layout)


def build_sampling_rows(panel: QtWidgets.QWidget, form: QtWidgets.QFormLayout) -> None:
    """The advanced sampling rows: schedule, batch count, VAE, CLIP skip, SDXL refiner, speed level (the view fills
    the combo boxes from the server's welcome and model listing)."""
    panel.scheduler_box = _combo()
    panel.scheduler_box.setToolTip("Noise schedule; the choices are those the sampler can run with")
    panel.batch_count_spin = QtWidgets.QSpinBox()
    panel.batch_count_spin.setRange(1, 100)
    panel.batch_count_spin.setToolTip("Runs one after another, each making 'Batch' images")
    panel.vae_box = _combo()
    panel.vae_box.setToolTip("Decode with another VAE from the models folder")
    panel.clip_skip_spin = QtWidgets.QSpinBox()
    panel.clip_skip_spin.setRange(0, 12)
    panel.clip_skip_spin.setToolTip("CLIP layers to skip: 0 or 1 = none, 2 = the penultimate layer")
    panel.refiner_box = _combo()
    panel.refiner_box.setToolTip("An SDXL refiner for the last steps (SDXL checkpoints)")
    panel.refiner_start_spin = _spin(0.05, 0.95, 0.8, 0.05, "")
    panel.refiner_start_spin.setToolTip("Fraction of the steps after which the refiner takes over")
    panel.speed_box = _labelled_combo(
        client.settings.SPEED_LABELS,
        "Style's choice runs at the chosen style's level (Quality where it sets none). Quality computes every step "
        "in full; Fast reuses the model's deep features on alternate steps: quicker, and the pixels change a little. "
        "For jobs and live frames. Shown for the models that can run Fast.",
    )
    form.addRow("Schedule", panel.scheduler_box)
    form.addRow("Batch count", panel.batch_count_spin)
    form.addRow("VAE", panel.vae_box)
    form.addRow("CLIP skip", panel.clip_skip_spin)
    form.addRow("Refiner", panel.refiner_box)
    form.addRow("Refiner from", panel.refiner_start_spin)
    form.addRow("Speed", panel.speed_box)
