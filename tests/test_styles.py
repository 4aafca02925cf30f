"""Styles kept by the server: the styles folder over the shipped set (save, list, delete, a broken file reported by
file and field while the rest load), and a style applied to a job in one place before the engine runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.errors import ProtocolError
from protocol.messages import Params
from protocol.styles import LiveSettings, Style, StyleLora
from server.core import Job
from server.models.registry import ModelRegistry
from server.styles import SHIPPED_DIR, StyleStore
from server.stylejob import apply_style


@pytest.fixture
def store(tmp_path: Path) -> StyleStore:
    return StyleStore(tmp_path / "styles")


def names(store: StyleStore):
    return [s.name for s in store.listing().styles]


def test_the_shipped_styles_load_and_name_only_starter_set_checkpoints(store):
    from server.downloads import Catalogue

    listing = store.listing()
    assert listing.problems == ()
    shipped = {s.name: s for s in listing.styles}
    assert {"sd15-general", "sdxl-general"} <= set(shipped) and all(s.builtin for s in shipped.values())
    starter = {Path(f.target).stem for p in ("sd15", "sdxl") for f in Catalogue.load().presets[p].files}
    for style in shipped.values():
        assert style.family in ("sd15", "sdxl")
        assert set(style.checkpoints) <= starter, style.name
        assert {lora.name for lora in style.loras} <= starter, style.name
        assert style.live.fewstep == "auto"
    assert store.default_names(["sd15", "sdxl", "flux"]) == {"sd15": "sd15-general", "sdxl": "sdxl-general"}


def test_save_list_delete(store, tmp_path):
    style = Style(name="Realtime sketch", loras=(StyleLora("ink", 0.5),), steps=12, live=LiveSettings(strength=0.4))
    store.save(style)
    path = tmp_path / "styles" / "Realtime sketch.json"
    assert json.loads(path.read_text())["loras"] == [{"name": "ink", "weight": 0.5}]
    assert "Realtime sketch" in names(store)
    assert store.get("Realtime sketch") == style
    store.delete("Realtime sketch")
    assert not path.exists() and "Realtime sketch" not in names(store)
    with pytest.raises(ProtocolError) as err:
        store.delete("Realtime sketch")
    assert err.value.field == "name"
    with pytest.raises(ProtocolError) as err:
        store.get("Realtime sketch")
    assert err.value.field == "style" and "sd15-general" in err.value.message


def test_a_saved_copy_hides_a_shipped_style_and_deleting_it_brings_it_back(store):
    shipped = store.get("sd15-general")
    with pytest.raises(ProtocolError, match="shipped"):
        store.delete("sd15-general")
    store.save(Style(name="sd15-general", steps=9, builtin=True))
    mine = store.get("sd15-general")
    assert mine.steps == 9 and not mine.builtin
    store.delete("sd15-general")
    assert store.get("sd15-general") == shipped


@pytest.mark.parametrize(
    "text, field, words",
    [
        ('{"name": "bad", "steps": "many"}', "steps", "steps"),
        ('{"name": "bad", "loras": [{"name": "x", "weight": 99}]}', "loras[0].weight", "weight"),
        ('{"name": "bad", "live": {"sampler": "nonsense"}}', "live.sampler", "sampler"),
        ('{"name": "bad", ', "", "not JSON"),
        ("[1, 2]", "message", "map"),
        ('{"name": "../up"}', "name", "name"),
    ],
)
def test_a_broken_file_is_named_with_its_field_and_the_others_still_load(store, tmp_path, text, field, words):
    folder = tmp_path / "styles"
    store.save(Style(name="good"))
    (folder / "bad.json").write_text(text, encoding="utf-8")
    listing = store.listing()
    assert "good" in names(store) and "sd15-general" in names(store)
    (problem,) = listing.problems
    assert problem.file == "bad.json" and problem.field == field and words in problem.message
    with pytest.raises(ProtocolError) as err:
        store.get("bad")
    assert "bad.json" in err.value.message and err.value.field == "style"


def test_a_file_is_read_again_on_each_listing(store, tmp_path):
    folder = tmp_path / "styles"
    folder.mkdir()
    (folder / "by hand.json").write_text('{"cfg": 4.5}', encoding="utf-8")  # the name comes from the file
    assert store.get("by hand").cfg == 4.5
    (folder / "by hand.json").write_text('{"cfg": 5}', encoding="utf-8")
    assert store.get("by hand").cfg == 5.0


def test_shipped_folder_is_the_servers(store):
    assert store.shipped == SHIPPED_DIR and SHIPPED_DIR.is_dir()


def test_a_style_fills_what_the_job_leaves_at_its_defaults(tmp_path):
    registry = ModelRegistry([tmp_path])  # nothing installed: the classical engine's job
    style = Style(
        name="s",
        prompt="photo of {prompt}, 35mm",
        negative_prompt="{prompt}, cartoon",
        sampler="Euler a",
        steps=30,
        cfg=5.0,
        strength=0.6,
        inpaint_method="controlnet",
    )
    job = Job("a", "img2img", prompt="a cat", params=Params(cfg=9.0), style="s")
    out, info = apply_style(job, style, registry)
    assert out.prompt == "photo of a cat, 35mm" and out.negative_prompt == "cartoon"
    assert (out.params.sampler, out.params.steps, out.params.cfg, out.params.strength) == ("Euler a", 30, 9.0, 0.6)
    assert out.params.inpaint_method == "controlnet"
    assert info["name"] == "s" and "cfg" not in info["params"] and "steps" in info["params"]


def test_a_styles_loras_go_to_a_checkpoint_that_takes_their_family(tmp_path):
    """A Chroma checkpoint takes a style's Flux.1 LoRA (``models.lorafit``, the table the engines refuse by); an SD1.5
    one is skipped, naming both families."""
    import factory

    registry = ModelRegistry([factory.make_models_dir(tmp_path / "models", ("chroma", "lora-flux", "lora-sd15"))])
    style = Style(name="s", loras=(StyleLora("tiny-lora-flux", 0.7), StyleLora("tiny-lora-sd15", 0.5)))
    out, info = apply_style(Job("a", "img2img", prompt="a cat", model="tiny-chroma"), style, registry)
    assert out.prompt == "a cat <lora:tiny-lora-flux:0.7>" and info["loras"] == [
        {"name": "tiny-lora-flux", "weight": 0.7}
    ]
    assert info["skipped"] == [{"name": "tiny-lora-sd15", "why": "made for sd15, the checkpoint is chroma"}]


# --- over the protocol -----------------------------------------------------------------------------------------------


def test_styles_over_the_protocol_survive_a_restart(start_server, tmp_path):
    from protocol.client import Client, JobFailed

    folder = tmp_path / "saved-styles"
    server = start_server(styles_dir=folder)
    with Client(server.url, "test-styles") as client:
        welcome = client.welcome
        assert welcome.capabilities["styles"] is True
        assert "sd15-general" in [s.name for s in welcome.styles]
        assert welcome.defaults["styles"]["sd15"] == "sd15-general"
        reply = client.save_style(Style(name="Ink", prompt="ink drawing of {prompt}", steps=11))
        assert "Ink" in [s.name for s in reply.styles]
        with pytest.raises(JobFailed) as err:
            client.delete_style("sdxl-general")
        assert err.value.field == "name"
        (folder / "broken.json").write_text('{"cfg": "high"}', encoding="utf-8")
        listing = client.list_styles()
        assert [(p.file, p.field) for p in listing.problems] == [("broken.json", "cfg")]
        assert "Ink" in [s.name for s in listing.styles]
    server.stop()
    again = start_server(styles_dir=folder)
    with Client(again.url, "test-styles") as client:
        kept = {s.name: s for s in client.list_styles().styles}
        assert kept["Ink"].steps == 11 and not kept["Ink"].builtin
        assert "Ink" in [s.name for s in client.welcome.styles]
        assert "Ink" not in [s.name for s in client.delete_style("Ink").styles]


def test_cli_run_takes_a_style_by_name(tmp_path):
    import subprocess
    import sys

    (tmp_path / "models").mkdir()
    args = ["run", "generate", "--width", "64", "--height", "64", "--out", str(tmp_path / "x.png")]
    args += ["--models", str(tmp_path / "models"), "--styles", str(tmp_path / "styles"), "--style", "nope"]
    out = subprocess.run(
        [sys.executable, "-m", "server", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.returncode == 1 and "no style named 'nope'" in out.stderr and "(style)" in out.stderr, out.stderr


def test_a_style_cfg_of_zero_is_a_value_and_zero_steps_leave_the_jobs(tmp_path):
    registry = ModelRegistry([tmp_path])
    out, info = apply_style(Job("a", "img2img", prompt="x"), Style(name="t", cfg=0.0, steps=0, clip_skip=0), registry)
    assert out.params.cfg == 0.0 and out.params.steps == Params().steps and info["params"] == ["cfg"]
