"""Styles in the Krita panel's state (``krita_plugin/paintbridge/styles.py``) against a real server with tiny models and
its own styles folder: listed after connecting (a broken file reported by file and field, the rest loaded), made,
edited, duplicated, renamed and deleted through the server, chosen (the model follows, the panel shows the style's
steps) and named by a job, whose ``result.info`` says what the style applied; the choice survives a restart."""

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
from krita_plugin.paintbridge.session import Session  # noqa: E402
from krita_plugin.paintbridge.styles import check_name, edited  # noqa: E402
from krita_plugin.paintbridge.wire import client, protocol  # noqa: E402

W = H = 64


def test_style_names_and_fields_are_checked_before_they_are_sent():
    assert check_name("  Ink wash 2 ") == "Ink wash 2"
    with pytest.raises(client.errors.JobInputError, match="cannot name a style"):
        check_name("../evil")
    with pytest.raises(client.errors.JobInputError, match="already a style named"):
        check_name("ink", ["Ink"])
    style = protocol.Style(name="ink", builtin=True)
    assert edited(style, steps=12).steps == 12 and edited(style).builtin is False  # saved as the user's copy
    with pytest.raises(client.errors.JobInputError, match="style 'ink': field 'steps'"):
        edited(style, steps=999)


def _session(server_url: str, store: MemoryStore):
    image = bytes((x * 5 + y * 3 + c * 60) % 256 for y in range(H) for x in range(W) for c in range(4))
    host, ui = MemoryHost(MemoryDocument(W, H, image, bytes([255]) * (W * H))), UiLoop()
    store.values.update(server_url=server_url, autostart="false")
    session = Session(host, store, ui.post, ui.schedule, server=LocalServer(None, Path("unused.log")))
    session.start()
    assert ui.pump_until(lambda: session.connected and session.styles.available, 30), session.connection.detail
    return session, ui


def test_styles_are_made_edited_chosen_and_named_by_a_job(start_server, tmp_path):
    import factory

    models = factory.make_models_dir(tmp_path / "models", ("sd15", "lora-sd15"))
    folder = tmp_path / "styles"
    folder.mkdir()
    (folder / "broken.json").write_text(json.dumps({"name": "broken", "steps": "many"}))
    server = start_server(model_dirs=[models], styles_dir=folder)
    settings = {"model": "", "prompt": "a red apple", "mode": "img2img", "seed": 7}
    store = MemoryStore({"job_settings": json.dumps(settings)})
    session, ui = _session(server.url, store)
    styles = session.styles
    try:
        assert styles.items and all(s.builtin for s in styles.items), styles.names()  # the shipped set
        suggested = session.default_styles["sd15"]  # nothing chosen yet: the family's suggested style is taken
        assert styles.chosen == suggested and store.values["style"] == "<auto>", (suggested, styles.chosen)
        assert [(p.file, p.field) for p in styles.problems] == [("broken.json", "steps")]
        shipped = styles.items[0].name
        with pytest.raises(client.errors.JobInputError, match="cannot be deleted"):
            styles.delete(shipped)

        def answered(check) -> None:
            assert ui.pump_until(check, 30), (styles.names(), session.message)

        styles.new("Apple test")
        answered(lambda: "Apple test" in styles.names())
        assert styles.chosen == "Apple test" and styles.style("Apple test").family == "sd15"
        style = edited(
            styles.style("Apple test"),
            checkpoints=("tiny-sd15",),
            loras=(protocol.StyleLora(name="tiny-lora-sd15", weight=0.8),),
            steps=3,
            prompt="{prompt}, ink drawing",
        )
        styles.save(style)
        answered(lambda: styles.style("Apple test").steps == 3)
        assert not (folder / "broken.json").read_text().startswith("{}")  # the broken file is left alone
        styles.choose("")
        styles.choose("Apple test")
        assert session.settings.model == "tiny-sd15" and session.shown().steps == 3  # the model follows the style

        def run() -> tuple:
            assert session.run(), session.message
            assert ui.pump_until(lambda: not session.busy, 300), session.message
            assert not session.message_is_error and session.results, session.message
            done = (session.results[0].data, session.result_info.get("style"))
            session.discard()
            return done

        styled, info = run()
        assert info["name"] == "Apple test" and info["loras"] == [{"name": "tiny-lora-sd15", "weight": 0.8}]
        assert "steps" in info["params"], info
        styles.choose("")
        session.set_option("steps", 3)  # as the style's, so that only the style's LoRA and template differ
        plain, info = run()
        assert info is None and plain != styled

        styles.duplicate("Apple test", "Apple copy")
        answered(lambda: "Apple copy" in styles.names())
        assert styles.style("Apple copy").loras == style.loras and styles.chosen == "Apple copy"
        styles.rename("Apple copy", "Pear")
        answered(lambda: "Pear" in styles.names() and "Apple copy" not in styles.names())
        styles.delete("Pear")
        answered(lambda: "Pear" not in styles.names())
        assert styles.chosen == ""  # the chosen style went: none
        styles.choose("Apple test")
    finally:
        session.shutdown()

    again, ui = _session(server.url, store)  # the next Krita start: the style is still there and still chosen
    try:
        assert again.styles.chosen == "Apple test" and again.styles.style("Apple test").steps == 3
    finally:
        again.shutdown()


def test_changing_an_option_does_not_pin_the_styles_schedule_into_the_job(start_server, tmp_path):
    """The style's schedule is shown, not stored: after the painter changes the seed the job still leaves the
    schedule to the style (a live frame's few-step sampler then takes its own; a pinned 'Karras' would be refused)."""
    import factory

    models = factory.make_models_dir(tmp_path / "models", ("sd15",))
    server = start_server(model_dirs=[models], styles_dir=tmp_path / "styles")
    store = MemoryStore({"job_settings": json.dumps({"model": "", "prompt": "a bird", "mode": "inpaint"})})
    session, ui = _session(server.url, store)
    try:
        assert session.styles.chosen == "sd15-general" and session.shown().scheduler == "Karras"
        session.set_option("random_seed", False)
        session.set_option("seed", 11)
        session.set_option("steps", 6)
        assert session.settings.scheduler == "" and session.job_settings().scheduler == ""
        assert session.shown().scheduler == "Karras"  # still what the panel shows
        session.set_option("sampler", "Euler")
        session.set_option("scheduler", "Karras")
        session.set_option("sampler", "DDIM")
        assert session.settings.scheduler == ""  # one the painter chose still goes when the sampler cannot take it
    finally:
        session.shutdown()
