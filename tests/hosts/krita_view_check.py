"""The Krita panel (view) bound to a session, under the system Python's PyQt5 without Krita (offscreen Qt): widget
changes reach the session, session changes reach the widgets. Run by tests/test_krita_logic.py; prints "view ok"."""

import os
import sys

sys.path.pop(0)  # tests/hosts holds a krita.py of its own: not the Krita API
os.environ["QT_QPA_PLATFORM"] = "offscreen"
repo = sys.argv[1]  # the repository root
sys.path[:0] = [repo, repo + "/tests", repo + "/krita_plugin"]
from PyQt5.QtWidgets import QApplication, QToolButton

app = QApplication([])
from krita_memory_host import MemoryDocument, MemoryHost, UiLoop
from paintbridge.session import Session
from krita_memory_host import MemoryStore
from paintbridge.view import PaintbridgePanel
from client.server import LocalServer
from pathlib import Path

doc = MemoryDocument(64, 48, bytes(64 * 48 * 4), bytes(64 * 48))
host, ui = MemoryHost(doc), UiLoop()
s = Session(
    host,
    MemoryStore({"server_url": "ws://127.0.0.1:1", "autostart": "false"}),
    ui.post,
    ui.schedule,
    server=LocalServer(None, Path("/tmp/x.log")),
)
p = PaintbridgePanel(s)
s.set_mode("img2img")
assert p.mode_box.currentIndex() == 2 and p.strength_value.text() == "70%", p.strength_value.text()
s.set_option("steps", 9)
assert p.steps_spin.value() == 9
p.steps_spin.setValue(12)
assert s.settings.steps == 12
s.set_option("random_seed", False)
s.set_option("seed", 77)
assert p.seed_spin.value() == 77 and not p.random_seed_check.isChecked()
p.random_seed_check.setChecked(True)
assert s.settings.seed == -1
p.prompt_edit.setPlainText("a fox")
assert s.settings.prompt == "a fox"
s.set_prompt("a wolf")
assert p.prompt_edit.toPlainText() == "a wolf"
s.add_control()
assert len(p.control_rows) == 1
p.control_rows[0].strength.setValue(0.5)
assert s.controls[0].strength == 0.5
s.remove_control(0)
assert p.control_rows == []
s.on_models([{"name": "m1", "kind": "checkpoint", "arch": "sd15", "family": "sd15"}])
assert p.model_box.count() == 3
s.set_option("model", "m1")
assert p.model_box.currentData() == "m1" and p.steps_spin.value() == 25, p.steps_spin.value()
s.set_mode("upscale")
assert not p.upscale_box.isHidden() and p.strength_row.isHidden()
s.show_message("hi", error=True)
assert p.message_label.text() == "hi"
s.set_live(True)
assert p.live_button.isChecked()
s.set_live(False)
s.on_state("disconnected", "x")
assert "Not connected" in p.status_label.text()
# Model downloads: the preset lines follow the mode, the suggested preset is picked, the download button calls the session.
from client.downloads import presets_from

assert p.models_box.isHidden()
s.set_mode("upscale")
s.downloads.on_presets(
    presets_from(
        [
            {
                "name": "sd15",
                "files": [
                    {
                        "id": "i",
                        "target": "checkpoints/i.safetensors",
                        "size": 2000000000,
                        "installed": False,
                        "modes": ["inpaint"],
                    }
                ],
            },
            {
                "name": "upscaler",
                "files": [
                    {
                        "id": "u",
                        "target": "upscale_models/u.pth",
                        "size": 60000000,
                        "installed": False,
                        "modes": ["upscale"],
                    }
                ],
            },
        ]
    )
)
assert not p.models_box.isHidden() and "upscaler: lacks 1 file(s) for upscale" in p.presets_label.text(), (
    p.presets_label.text()
)
assert p.preset_box.currentData() == "upscaler" and not p.pull_button.isEnabled()  # not connected
s.set_mode("inpaint")
assert "sd15: lacks 1 file(s) for inpaint" in p.presets_label.text() and p.preset_box.currentData() == "sd15"
p.pull_button.setEnabled(True)
p.pull_button.click()
assert "Not connected" in s.message  # the button reached the session
s.downloads.pull_id = "p1"
s.downloads._state(40, "Downloading i.safetensors (1/1)")
assert p.pull_progress.value() == 40 and p.pull_cancel_button.isEnabled() and not p.pull_button.isEnabled()
# Results history: the active document's entries as thumbnails with the job's parameters, the buttons reach the session.
from protocol import ResultLayer
from client.settings import Settings

layer = ResultLayer(
    name="a cat (seed 5)", x=2, y=3, width=20, height=10, format="bgra8", data=bytes(range(200)) * 4, seed=5
)
other = ResultLayer(
    name="a cat (seed 6)", x=2, y=3, width=20, height=10, format="bgra8", data=bytes(range(1, 201)) * 4, seed=6
)
s.history.of(doc).record(
    Settings(mode="inpaint", model="classical", prompt="a cat", steps=3),
    [other, layer],
    [other.name, layer.name],
    {"steps": 3},
)
s.history.show(doc)
assert p.history_list.count() == 2 and p.history_apply_button.isEnabled(), p.history_list.count()  # one item per result
p.history_list.setCurrentRow(1)
tip = p.history_list.item(1).toolTip()
assert "a cat" in tip and "seeds: 6, 5" in tip and "steps: 3" in tip and "result 2 of 2" in tip, tip
assert not p.history_list.item(0).icon().isNull() and "1 kept" in p.history_size_label.text()
s.set_prompt("something else")
p.history_reuse_button.click()
assert (
    s.settings.prompt == "a cat"
    and p.prompt_edit.toPlainText() == "a cat"
    and s.settings.seed == 5
    and p.seed_spin.value() == 5
)
p.history_apply_button.click()
assert doc.layers and doc.layers[-1][1].data == layer.data, s.message
p.history_delete_button.click()
assert p.history_list.count() == 0, p.history_list.count() and not p.history_apply_button.isEnabled()
# A reference row's region chooser (issue 15): the whole image and each bound region; the choice reaches the session.
doc.extra = {"car": ("Car", bytes(64 * 48 * 4))}
s.regions.refresh()
host.active = "car"
s.regions.bind_active("a red car")
s.references.add("paint", "style")
row = p.reference_rows[0]
assert [row.region_box.itemText(i) for i in range(row.region_box.count())] == ["— whole image —", "Car"]
row.region_box.setCurrentIndex(1)
row.region_box.activated.emit(1)
assert s.references.items[0].region == "car"
s.regions.remove(0)
row = p.reference_rows[0]
assert s.references.items[0].region == "" and row.region_box.count() == 1 and row.region_box.currentIndex() == 0
# LoRAs from the list: the model's family only, a pick makes a weight row, the slider and ✕ reach the session.
s.on_models(
    [
        {"name": "m1", "kind": "checkpoint", "arch": "sd15"},
        {"name": "ink", "kind": "lora", "arch": "sd15"},
        {"name": "glow", "kind": "lora", "arch": "sdxl"},
    ]
)
s.set_option("model", "m1")
lora_list = p.lora_section.list
offered = [lora_list.add_box.itemText(i) for i in range(lora_list.add_box.count())]
assert offered == ["Add a LoRA…", "ink"] and lora_list.empty_label.isHidden(), offered
lora_list.add_box.setCurrentIndex(1)
lora_list.add_box.activated.emit(1)
assert s.loras.picks == {"ink": 1.0} and list(lora_list.sliders) == ["ink"], s.loras.picks
assert p.sections["loras"].button.text() == "LoRAs (1)"
lora_list.sliders["ink"].setValue(65)
assert s.loras.picks == {"ink": 0.65} and lora_list.sliders["ink"].value_label.text() == "0.65"
assert s.job_settings().prompt == s.settings.prompt + " <lora:ink:0.65>"
s.loras.pick("ink", -0.5)
assert lora_list.sliders["ink"].value() == -50
lora_list.rows.itemAt(0).widget().findChild(QToolButton).click()
assert s.loras.picks == {} and not lora_list.sliders and p.sections["loras"].button.text() == "LoRAs"
# Styles: the picker lists the server's styles, a choice reaches the session; the editor shows and saves a style;
# the fast-live offer shows where the family has no few-step LoRA and the server names one to pull.
import protocol as wire_protocol

sent = []
s.connection.styles = lambda action, arg=None: sent.append((action, arg))
s.styles.on_styles(
    wire_protocol.Styles(
        styles=(
            wire_protocol.Style(name="sd15-photo", title="Photo", family="sd15", steps=30, builtin=True),
            wire_protocol.Style(name="mine", family="sd15", loras=(wire_protocol.StyleLora(name="ink", weight=0.5),)),
        ),
        fewstep={"sd15": {"installed": "", "pull": "lcm-lora-sd15"}},
    )
)
picker = p.style_picker
assert [picker.box.itemText(i) for i in range(picker.box.count())] == ["No style", "Photo", "mine"]
picker.box.setCurrentIndex(1)
picker.box.activated.emit(1)
assert s.styles.chosen == "sd15-photo" and p.steps_spin.value() == 30, p.steps_spin.value()
s.set_mode("inpaint")
assert not p.fast_live.widget.isHidden() and p.fast_live.pull == "lcm-lora-sd15"
editor = picker.open_editor()
assert editor.name == "sd15-photo" and editor.steps_spin.value() == 30 and not editor.buttons["delete"].isEnabled()
editor.show_style("mine")
assert list(editor.lora_list.sliders) == ["ink"] and editor.lora_list.sliders["ink"].value() == 50
editor.lora_list.sliders["ink"].setValue(70)
editor.steps_spin.setValue(12)
assert editor.speed_box.currentData() == ""  # the style leaves the speed to the panel
editor.speed_box.setCurrentIndex(editor.speed_box.findData("fast"))
assert editor.save() and sent[-1][0] == "save", sent
assert sent[-1][1].steps == 12 and sent[-1][1].loras[0].weight == 0.7 and sent[-1][1].speed == "fast", sent[-1][1]
assert not editor.new_style("mine") and "already" in editor.message.text()
assert editor.duplicate_style("mine 2") and sent[-1][1].name == "mine 2" and sent[-1][1].loras[0].name == "ink"
editor.hide()
# Offer only what can run: the panel follows the capabilities of the chosen model's family.
s.capabilities = {
    "modes": ["generate", "inpaint", "img2img", "outpaint", "upscale"],
    "families": {
        "sd15": {
            "modes": ["generate", "inpaint", "img2img", "outpaint"],
            "control_modes": ["generate", "inpaint", "img2img"],
            "control_types": ["canny", "depth"],
            "techniques": ["hires", "detail"],
            "technique_modes": ["generate", "inpaint", "img2img", "outpaint"],
            "sampling": ["vae", "clip_skip"],
            "regions": True,
            "reference_types": ["style"],
            "speed_levels": ["quality", "fast"],
        },
        "flux": {"modes": ["generate", "inpaint", "img2img", "outpaint"], "sampling": [], "speed_levels": ["quality"]},
    },
}
s.on_models(
    [{"name": "m1", "kind": "checkpoint", "arch": "sd15"}, {"name": "f1", "kind": "checkpoint", "arch": "flux"}]
)
s.styles.choose("")
s.set_option("model", "m1")
s.set_mode("inpaint")
sec = p.sections
assert (
    not sec["techniques"].isHidden() and not p.techniques.hires_box.isHidden() and p.techniques.detail_hands.isHidden()
)
assert not sec["regions"].isHidden() and not sec["references"].isHidden() and not sec["controls"].isHidden()
assert not p.vae_box.isHidden() and p.refiner_box.isHidden() and p.sampling_form.labelForField(p.refiner_box).isHidden()
s.add_control()
assert [p.control_rows[0].type_box.itemText(i) for i in range(p.control_rows[0].type_box.count())] == [
    "canny",
    "depth",
    "scribble",
]  # the row's own type stays listed, so it can be changed to one that runs
s.remove_control(0)
# Speed: Style's choice / Quality / Fast in the sampling section where the family runs Fast; the choice reaches the job
assert not p.speed_box.isHidden() and [
    (p.speed_box.itemData(i), p.speed_box.itemText(i)) for i in range(p.speed_box.count())
] == [("", "Style's choice (Quality)"), ("quality", "Quality"), ("fast", "Fast")]
assert p.speed_box.currentData() == "" and s.job_settings().speed == ""  # the default: left to the style
p.speed_box.setCurrentIndex(2)
p.speed_box.activated.emit(2)
assert s.settings.speed == "fast" and s.job_settings().speed == "fast"
s.set_option("model", "f1")  # Flux: no hires fix, no detailer, no regions, references, controls or VAE choice
assert sec["techniques"].isHidden() and sec["regions"].isHidden() and sec["references"].isHidden()
assert sec["controls"].isHidden() and p.vae_box.isHidden() and p.clip_skip_spin.isHidden()
assert p.speed_box.isHidden() and p.sampling_form.labelForField(p.speed_box).isHidden()
assert s.job_settings().speed == "" and p.speed_box.currentData() == ""  # not sent where it cannot run
s.set_option("speed", "fast")
assert s.message_is_error and "fast" in s.message and s.settings.speed == "fast"  # kept for the SD1.5 model
s.set_option("model", "m1")
assert not p.speed_box.isHidden() and p.speed_box.currentData() == "fast"
p.speed_box.setCurrentIndex(1)
p.speed_box.activated.emit(1)
assert s.settings.speed == "quality" and s.job_settings().speed == "quality"
# a style that sets Fast: the painter's explicit Quality wins over it (shown and sent); Style's choice takes the style's
s.styles.on_styles(wire_protocol.Styles(styles=(wire_protocol.Style(name="draft", family="sd15", speed="fast"),)))
s.styles.choose("draft")
assert p.speed_box.currentData() == "quality" and s.job_settings().speed == "quality"
p.speed_box.setCurrentIndex(0)
p.speed_box.activated.emit(0)
assert p.speed_box.currentData() == "" and s.settings.speed == "" and s.job_settings().speed == ""
assert p.speed_box.itemText(0) == "Style's choice (Fast)" and s.style_speed() == "fast"  # what the server runs
s.set_option("model", "f1")
assert s.style_speed() == "quality" and p.speed_box.itemText(0) == "Style's choice (Quality)"  # no Fast on Flux
s.set_option("model", "m1")
s.styles.choose("")
assert p.speed_box.currentData() == "" and p.speed_box.itemText(0) == "Style's choice (Quality)"
print("view ok")
