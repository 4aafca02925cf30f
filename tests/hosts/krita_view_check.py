"""The Krita panel (view) bound to a session, under the system Python's PyQt5 without Krita (offscreen Qt): widget
changes reach the session, session changes reach the widgets. Run by tests/test_krita_logic.py; prints "view ok"."""
import os, sys

sys.path.pop(0)  # tests/hosts holds a krita.py of its own: not the Krita API
os.environ["QT_QPA_PLATFORM"] = "offscreen"
repo = sys.argv[1]  # the repository root
sys.path[:0] = [repo, repo + "/tests", repo + "/krita_plugin"]
from PyQt5.QtWidgets import QApplication
app = QApplication([])
from krita_memory_host import MemoryDocument, MemoryHost, UiLoop
from paintbridge.session import Session
from paintbridge.settings_store import MemoryStore
from paintbridge.view import PaintbridgePanel
from client.server import LocalServer
from pathlib import Path
doc = MemoryDocument(64, 48, bytes(64*48*4), bytes(64*48))
host, ui = MemoryHost(doc), UiLoop()
s = Session(host, MemoryStore({"server_url": "ws://127.0.0.1:1", "autostart": "false"}), ui.post, ui.schedule, server=LocalServer(None, Path("/tmp/x.log")))
p = PaintbridgePanel(s)
s.set_mode("img2img"); assert p.mode_tabs.currentIndex() == 2 and p.strength_value.text() == "70%", p.strength_value.text()
s.set_option("steps", 9); assert p.steps_spin.value() == 9
p.steps_spin.setValue(12); assert s.settings.steps == 12
s.set_option("random_seed", False); s.set_option("seed", 77); assert p.seed_spin.value() == 77 and not p.random_seed_check.isChecked()
p.random_seed_check.setChecked(True); assert s.settings.seed == -1
p.prompt_edit.setPlainText("a fox"); assert s.settings.prompt == "a fox"
s.set_prompt("a wolf"); assert p.prompt_edit.toPlainText() == "a wolf"
s.add_control(); assert len(p.control_rows) == 1
p.control_rows[0].strength.setValue(0.5); assert s.controls[0].strength == 0.5
s.remove_control(0); assert p.control_rows == []
s.on_models([{"name": "m1", "kind": "checkpoint", "arch": "sd15", "family": "sd15"}])
assert p.model_box.count() == 3
s.set_option("model", "m1"); assert p.model_box.currentData() == "m1" and p.steps_spin.value() == 25, p.steps_spin.value()
s.set_mode("upscale"); assert not p.upscale_box.isHidden() and p.strength_row.isHidden()
s.show_message("hi", error=True); assert p.message_label.text() == "hi"
s.set_live(True); assert p.live_button.isChecked(); s.set_live(False)
s.on_state("disconnected", "x"); assert "Not connected" in p.status_label.text()
print("view ok")
