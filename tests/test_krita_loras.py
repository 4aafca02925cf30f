"""LoRAs picked from the server's list in the Krita panel's state (``krita_plugin/paintbridge/loras.py``): filtered to
those the chosen model takes (``client.offers``), weights in range, kept in the host's settings, carried as prompt
tags that a typed tag overrides; and against a real server with tiny models, a pick changes the pixels of the same job at the same seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO, REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from client.server import LocalServer  # noqa: E402
from krita_memory_host import MemoryDocument, MemoryHost, MemoryStore, UiLoop  # noqa: E402
from client.offers import family_loras  # noqa: E402
from krita_plugin.paintbridge.loras import Loras, tagged  # noqa: E402
from krita_plugin.paintbridge.session import Session  # noqa: E402
from krita_plugin.paintbridge.wire import client  # noqa: E402

LISTING = [
    {"name": "tiny-sd15", "kind": "checkpoint", "arch": "sd15"},
    {"name": "ink", "kind": "lora", "arch": "sd15"},
    {"name": "glow", "kind": "lora", "arch": "sdxl"},
    {"name": "bolt", "kind": "lora", "arch": "flux"},
    {"name": "broken", "kind": "lora", "arch": "sd15", "problem": "not a LoRA"},
    {"name": "ink-vae", "kind": "vae", "arch": "sd15"},
]


def test_the_list_holds_the_installed_loras_the_family_takes():
    caps = {"families": {"sd15": {"lora_families": ["sd15"]}, "chroma": {"lora_families": ["flux"]}}}
    assert family_loras(caps, LISTING, "sd15") == ("ink",)
    assert family_loras(caps, LISTING, "chroma") == ("bolt",), "Chroma takes Flux.1 LoRAs"
    assert family_loras({}, LISTING, "sdxl") == ("glow",), "a server that does not say: the model's own family"
    assert family_loras(caps, LISTING, "") == ()  # the built-in engine


def listed(family: dict):
    return lambda: family_loras({}, LISTING, family["now"])


def test_picks_become_prompt_tags_and_a_typed_tag_wins():
    assert tagged("a fox", [("ink", 0.8), ("glow", 1.0)]) == "a fox <lora:ink:0.8> <lora:glow:1>"
    assert tagged("a fox <LoRA:Ink:0.3>", [("ink", 0.8)]) == "a fox <LoRA:Ink:0.3>"
    assert tagged("a fox", []) == "a fox"
    assert tagged("", [("ink", -0.5)]) == "<lora:ink:-0.5>"


def test_picks_are_checked_kept_in_the_store_and_follow_the_family():
    family = {"now": "sd15"}
    store = MemoryStore()
    loras = Loras(store, listed(family))
    seen = []
    loras.changed.connect(lambda: seen.append(dict(loras.picks)))
    with pytest.raises(client.errors.JobInputError, match="not an installed LoRA"):
        loras.pick("glow")  # SDXL's, on an SD1.5 model
    with pytest.raises(client.errors.JobInputError, match="out of range"):
        loras.pick("ink", 2.5)
    with pytest.raises(client.errors.JobInputError, match="cannot be used"):
        loras.pick("a:b")
    assert seen == [] and store.values == {}
    loras.pick("ink", 0.75)
    assert seen == [{"ink": 0.75}] and json.loads(store.values["loras"]) == {"ink": 0.75}
    assert loras.prompt("a fox") == "a fox <lora:ink:0.75>"
    family["now"] = "sdxl"  # another model: the SD1.5 pick waits, the SDXL LoRA is offered
    assert loras.available() == ["glow"] and loras.active() == [] and loras.prompt("a fox") == "a fox"
    loras.pick("glow", -1)
    family["now"] = "sd15"
    assert loras.active() == [("ink", 0.75)]
    again = Loras(store, listed({"now": "sd15"}))  # the next Krita start
    assert again.picks == {"ink": 0.75, "glow": -1.0}
    again.drop("ink")
    again.drop("ink")  # not picked: nothing happens
    assert json.loads(store.values["loras"]) == {"glow": -1.0}


@pytest.mark.parametrize("stored", ["not json", "[1, 2]", '{"ink": "heavy", "a>b": 1, "far": 9, "ok": 0.5}'])
def test_a_damaged_stored_list_keeps_only_what_is_sound(stored):
    loras = Loras(MemoryStore({"loras": stored}), listed({"now": "sd15"}))
    assert loras.picks == ({"ok": 0.5} if stored.startswith("{") else {})


def test_a_picked_lora_changes_the_job_at_the_same_seed(start_server, tmp_path):
    """A real server with a tiny SD1.5 model and a tiny LoRA per family: the panel's list offers the SD1.5 one only;
    picking it adds its tag to the job (and to the history's settings) and changes the pixels at the same seed."""
    import factory

    models = factory.make_models_dir(tmp_path / "models", ("sd15", "lora-sd15", "lora-sdxl"))
    server = start_server(model_dirs=[models])
    w, h = 64, 64
    image = bytes((x * 5 + y * 3 + c * 60) % 256 for y in range(h) for x in range(w) for c in range(4))
    host, ui = MemoryHost(MemoryDocument(w, h, image, bytes([255]) * (w * h))), UiLoop()
    settings = {"model": "tiny-sd15", "prompt": "a red apple", "mode": "img2img", "steps": 2, "seed": 7}
    store = MemoryStore(
        {"server_url": server.url, "autostart": "false", "job_settings": json.dumps(settings), "style": ""}
    )
    session = Session(host, store, ui.post, ui.schedule, server=LocalServer(None, Path("unused.log")))
    session.start()
    try:
        assert ui.pump_until(lambda: session.connected and session.models, 30), session.connection.detail
        assert session.loras.available() == ["tiny-lora-sd15"]

        def run() -> tuple:
            assert session.run(), session.message
            assert ui.pump_until(lambda: not session.busy, 120), session.message
            assert not session.message_is_error and session.results, session.message
            done = (session.results[0].data, session.result_job.settings.prompt)
            session.discard()
            return done

        plain, prompt = run()
        assert prompt == "a red apple"
        session.loras.pick("tiny-lora-sd15", 0.9)
        with_lora, prompt = run()
        assert prompt == "a red apple <lora:tiny-lora-sd15:0.9>"  # the job's settings, kept by the history
        assert session.settings.prompt == "a red apple"  # the prompt field itself stays as typed
        assert with_lora != plain
        session.loras.drop("tiny-lora-sd15")
        assert run() == (plain, "a red apple")
    finally:
        session.shutdown()
