"""The style picker at the top of the panel, the style editor (new, duplicate, rename, delete; LoRAs from the installed
list with weight sliders), and the offer of a one-click download when live frames of the model's family have no
few-step LoRA or model. Bound to the session's ``styles`` (``styles.Styles``); no rules of their own."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from .basic_widgets import combo, spin
from .lora_widgets import LoraList
from .qt_compat import QtWidgets
from .styles import edited
from .wire import client, protocol

NO_STYLE = "No style"
LIVE_AUTO = "auto"


def _say_errors(say: Callable[[str, bool], None], action: Callable[[], None]) -> bool:
    """Run ``action``; a refused input is said in the panel (False), never raised into Qt."""
    try:
        action()
        return True
    except client.errors.PaintbridgeError as err:
        say(str(err), True)
        return False


class StylePicker:
    """The style row: a list of the server's styles (with "No style") and ✎ that opens the editor."""

    def __init__(self, session, row: QtWidgets.QHBoxLayout, parent: QtWidgets.QWidget) -> None:
        self.session, self.styles, self.parent = session, session.styles, parent
        self.box = combo(8)
        self.box.setToolTip(
            "The style bundles a model, LoRAs, sampling and prompt templates (and faster settings for live frames); "
            "anything you set in the panel overrides it"
        )
        self.edit_button = QtWidgets.QToolButton()
        self.edit_button.setText("✎")
        self.edit_button.setToolTip("Edit styles: new, duplicate, rename, delete")
        row.addWidget(QtWidgets.QLabel("Style"))
        row.addWidget(self.box, 1)
        row.addWidget(self.edit_button)
        self.editor: Optional[StyleEditor] = None
        self.box.activated.connect(
            lambda i: _say_errors(session.show_message, lambda: self.styles.choose(self.box.itemData(i) or ""))
        )
        self.edit_button.clicked.connect(self.open_editor)
        self.styles.changed.connect(self.refresh)
        self.styles.chosen_changed.connect(lambda _name: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        self.box.blockSignals(True)
        self.box.clear()
        self.box.addItem(NO_STYLE, "")
        for style in self.styles.items:
            self.box.addItem(self.styles.label(style), style.name)
        self.box.setCurrentIndex(max(0, self.box.findData(self.styles.chosen)))
        self.box.blockSignals(False)
        self.box.setEnabled(self.styles.available)
        self.edit_button.setEnabled(self.styles.available)
        problems = "; ".join(f"{p.file}: {p.field} {p.message}".strip() for p in self.styles.problems)
        self.box.setToolTip(
            self.box.toolTip().split("\n\nNot loaded")[0] + (f"\n\nNot loaded: {problems}" if problems else "")
        )

    def open_editor(self) -> "StyleEditor":
        """Show the style editor (one per panel) on the chosen style."""
        if self.editor is None:
            self.editor = StyleEditor(self.session, self.parent)
        self.editor.show_style(self.styles.chosen or (self.styles.names() or [""])[0])
        self.editor.show()
        self.editor.raise_()
        return self.editor


class StyleEditor(QtWidgets.QDialog):
    """Edit one style at a time; Save sends it to the server (a shipped style is saved as the user's copy)."""

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Paintbridge styles")
        self.session, self.styles = session, session.styles
        self.name = ""
        self._loras: dict = {}
        layout = QtWidgets.QVBoxLayout(self)
        top = QtWidgets.QHBoxLayout()
        self.style_box = combo(10)
        self.buttons = {}
        top.addWidget(self.style_box, 1)
        for key, text in (("new", "New…"), ("duplicate", "Duplicate…"), ("rename", "Rename…"), ("delete", "Delete")):
            self.buttons[key] = QtWidgets.QPushButton(text)
            top.addWidget(self.buttons[key])
        layout.addLayout(top)
        form = QtWidgets.QFormLayout()
        self.title_edit = QtWidgets.QLineEdit()
        self.family_label = QtWidgets.QLabel("")
        self.checkpoint_box = combo(10)
        self.checkpoint_box.setToolTip("The checkpoint the style prefers (the first of its list that is installed)")
        self.lora_list = LoraList(self._pick_lora, self._drop_lora)
        self.vae_box = combo(10)
        self.clip_skip_spin = QtWidgets.QSpinBox()
        self.clip_skip_spin.setRange(0, 12)
        self.sampler_box = combo(10)
        self.sampler_box.addItem("Family default", "")
        for name in protocol.SAMPLERS:
            self.sampler_box.addItem(name, name)
        self.steps_spin = QtWidgets.QSpinBox()
        self.steps_spin.setRange(0, 150)
        self.steps_spin.setSpecialValueText("Family default")
        self.cfg_spin = spin(0.0, 30.0, 0.0, 0.5, "")
        self.cfg_spin.setSpecialValueText("Family default")
        self.prompt_edit = QtWidgets.QLineEdit()
        self.prompt_edit.setToolTip("{prompt} is the panel's prompt")
        self.negative_edit = QtWidgets.QLineEdit()
        self.speed_box = combo(10)
        self.speed_box.addItem("Quality (the panel's choice)", "")
        self.speed_box.addItem("Fast", "fast")
        self.speed_box.setToolTip(
            "Fast reuses the model's deep features on alternate steps (SD1.5/SDXL; other families run every step)"
        )
        self.live_box = combo(10)
        self.live_box.setToolTip("Live frames: a few-step LoRA of the family (auto: the best installed), or none")
        rows = (
            ("Title", self.title_edit),
            ("Family", self.family_label),
            ("Checkpoint", self.checkpoint_box),
            ("LoRAs", self.lora_list),
            ("VAE", self.vae_box),
            ("CLIP skip", self.clip_skip_spin),
            ("Sampler", self.sampler_box),
            ("Steps", self.steps_spin),
            ("CFG", self.cfg_spin),
            ("Speed", self.speed_box),
            ("Prompt", self.prompt_edit),
            ("Negative", self.negative_edit),
            ("Live", self.live_box),
        )
        for label, widget in rows:
            form.addRow(label, widget)
        layout.addLayout(form)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        bottom = QtWidgets.QHBoxLayout()
        self.save_button = QtWidgets.QPushButton("Save")
        self.close_button = QtWidgets.QPushButton("Close")
        bottom.addStretch(1)
        bottom.addWidget(self.save_button)
        bottom.addWidget(self.close_button)
        layout.addLayout(bottom)
        self.style_box.activated.connect(lambda i: self.show_style(self.style_box.itemData(i) or ""))
        self.buttons["new"].clicked.connect(lambda: self._ask_name("New style", self.new_style))
        self.buttons["duplicate"].clicked.connect(lambda: self._ask_name("Duplicate as", self.duplicate_style))
        self.buttons["rename"].clicked.connect(lambda: self._ask_name("Rename to", self.rename_style))
        self.buttons["delete"].clicked.connect(self.delete_style)
        self.save_button.clicked.connect(self.save)
        self.close_button.clicked.connect(self.hide)
        self.styles.changed.connect(lambda: self.show_style(self.name))
        self.styles.refused.connect(lambda text: self.say(text, True))

    def say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #f85149;" if error else "")

    # --- showing ------------------------------------------------------------------------------------------------------
    def show_style(self, name: str) -> None:
        """Fill the fields from style ``name`` (the first style when it is gone)."""
        style = self.styles.style(name) or (self.styles.items[0] if self.styles.items else None)
        self.name = style.name if style is not None else ""
        self.style_box.blockSignals(True)
        self.style_box.clear()
        for s in self.styles.items:
            self.style_box.addItem(self.styles.label(s) + (" (shipped)" if s.builtin else ""), s.name)
        self.style_box.setCurrentIndex(max(0, self.style_box.findData(self.name)))
        self.style_box.blockSignals(False)
        for button in (self.buttons["duplicate"], self.buttons["rename"], self.save_button):
            button.setEnabled(style is not None)
        self.buttons["delete"].setEnabled(style is not None and not style.builtin)
        if style is None:
            return
        models = self.session.models
        family = style.family
        self.family_label.setText(family or "any")
        self._fill(
            self.checkpoint_box, "Server default", self._names(models, "checkpoint", family), style.checkpoints[:1]
        )
        self._fill(self.vae_box, "The checkpoint's own", self._names(models, "vae", family), (style.vae,))
        fewstep = [m for m in self._names(models, "lora", family) if self._entry(m).get("few_step")]
        self.live_box.clear()
        self.live_box.addItem("Fastest installed (auto)", LIVE_AUTO)
        self.live_box.addItem("None: the style's own sampling", "")
        for name in fewstep:
            self.live_box.addItem(name, name)
        self.live_box.setCurrentIndex(max(0, self.live_box.findData(style.live.fewstep)))
        self._loras = {lora.name: lora.weight for lora in style.loras}
        self._show_loras()
        self.title_edit.setText(style.title)
        self.clip_skip_spin.setValue(style.clip_skip)
        self.sampler_box.setCurrentIndex(max(0, self.sampler_box.findData(style.sampler)))
        self.steps_spin.setValue(style.steps)
        self.cfg_spin.setValue(style.cfg or 0.0)
        self.speed_box.setCurrentIndex(max(0, self.speed_box.findData(style.speed)))
        self.prompt_edit.setText(style.prompt)
        self.negative_edit.setText(style.negative_prompt)

    @staticmethod
    def _names(models, kind: str, family: str) -> list:
        return [
            m["name"]
            for m in models
            if m.get("kind") == kind and not m.get("problem") and (not family or m.get("arch") == family)
        ]

    def _entry(self, name: str) -> dict:
        return next((m for m in self.session.models if m.get("name") == name), {})

    @staticmethod
    def _fill(box: QtWidgets.QComboBox, none: str, names: list, current: tuple) -> None:
        box.clear()
        box.addItem(none, "")
        for name in names:
            box.addItem(name, name)
        chosen = current[0] if current else ""
        if chosen and box.findData(chosen) < 0:
            box.addItem(f"{chosen} (not installed)", chosen)
        box.setCurrentIndex(max(0, box.findData(chosen)))

    def _show_loras(self) -> None:
        style = self.styles.style(self.name)
        family = style.family if style is not None else ""
        models = self.session.models
        available = (
            list(client.offers.family_loras(self.session.capabilities, models, family))
            if family
            else self._names(models, "lora", "")
        )
        self.lora_list.show_loras(available + [n for n in self._loras if n not in available], list(self._loras.items()))

    def _pick_lora(self, name: str, weight: float) -> None:
        self._loras[name] = round(weight, 2)
        self._show_loras()

    def _drop_lora(self, name: str) -> None:
        self._loras.pop(name, None)
        self._show_loras()

    # --- editing ------------------------------------------------------------------------------------------------------
    def edited_style(self) -> "protocol.Style":
        """The shown style with the fields as edited (checked as the server checks it)."""
        style = self.styles.style(self.name)
        if style is None:
            raise client.errors.JobInputError("There is no style to save: make a new one first.")
        checkpoint = self.checkpoint_box.currentData() or ""
        rest = tuple(c for c in style.checkpoints if c != checkpoint)
        return edited(
            style,
            title=self.title_edit.text().strip(),
            checkpoints=((checkpoint,) if checkpoint else ()) + rest,
            loras=tuple(protocol.StyleLora(name=n, weight=w) for n, w in self._loras.items()),
            vae=self.vae_box.currentData() or "",
            clip_skip=self.clip_skip_spin.value(),
            sampler=self.sampler_box.currentData() or "",
            scheduler="" if (self.sampler_box.currentData() or "") != style.sampler else style.scheduler,
            steps=self.steps_spin.value(),
            cfg=self.cfg_spin.value() or None,
            speed=self.speed_box.currentData() or "",
            prompt=self.prompt_edit.text() or "{prompt}",
            negative_prompt=self.negative_edit.text() or "{prompt}",
            live=edited_live(style.live, self.live_box.currentData()),
        )

    def save(self) -> bool:
        def action():
            self.styles.save(self.edited_style())
            self.say(f"Saved {self.name!r}.")

        return _say_errors(self.say, action)

    def new_style(self, name: str) -> bool:
        return _say_errors(self.say, lambda: self._now_on(self.styles.new(name).name))

    def duplicate_style(self, name: str) -> bool:
        return _say_errors(self.say, lambda: self._now_on(self.styles.duplicate(self.name, name).name))

    def rename_style(self, name: str) -> bool:
        return _say_errors(self.say, lambda: self._now_on(self.styles.rename(self.name, name).name))

    def delete_style(self) -> bool:
        def action():
            self.styles.delete(self.name)
            if self.styles.chosen == self.name:
                self.styles.choose("")
            self.say(f"Deleted {self.name!r}.")

        return _say_errors(self.say, action)

    def _now_on(self, name: str) -> None:
        self.name = name  # shown once the server's answer lists it
        self.say(f"Saved {name!r}.")

    def _ask_name(self, title: str, then: Callable[[str], bool]) -> None:
        name, ok = QtWidgets.QInputDialog.getText(self, title, "Name (letters, digits, spaces, _ . + -)")
        if ok:
            then(name)


def edited_live(live: "protocol.LiveSettings", fewstep: Optional[str]) -> "protocol.LiveSettings":
    """``live`` with its few-step choice (``auto``, "" for none, or a LoRA's name)."""
    return dataclasses.replace(live, fewstep=LIVE_AUTO if fewstep is None else fewstep)


class FastLiveOffer:
    """Under Generate / Live: when live frames of the chosen model's family have no few-step LoRA or model, a line
    saying so and the one-click download the server names."""

    def __init__(self, session, layout: QtWidgets.QVBoxLayout) -> None:
        self.session = session
        self.widget = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(self.widget)
        row.setContentsMargins(0, 0, 0, 0)
        self.label = QtWidgets.QLabel("")
        self.label.setWordWrap(True)
        self.label.setMinimumWidth(1)
        self.button = QtWidgets.QPushButton("Make live fast")
        row.addWidget(self.label, 1)
        row.addWidget(self.button)
        layout.addWidget(self.widget)
        self.pull = ""
        self.button.clicked.connect(lambda: session.downloads.pull([self.pull]) if self.pull else None)
        session.styles.changed.connect(self.refresh)
        session.models_changed.connect(self.refresh)
        session.settings_changed.connect(lambda name, _v: self.refresh() if name in ("model", "mode") else None)
        session.downloads.pull_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        family = (self.session.entry() or {}).get("arch")
        installed, pull = self.session.styles.fast_live(family)
        self.pull = pull if not installed else ""
        self.widget.setVisible(bool(self.pull) and self.session.settings.mode in client.modes.LIVE_MODES)
        self.label.setText(f"Live runs every step: no few-step LoRA is installed for {family}.")
        self.button.setToolTip(f"Download {pull} onto the server's machine (a few-step LoRA: live in a few steps)")
        self.button.setEnabled(self.session.downloads.pull_id is None and self.session.connected)
