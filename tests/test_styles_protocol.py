"""The styles' protocol: typed styles and their messages, validated when parsed, documented in protocol/README.md."""

from __future__ import annotations

import os

import pytest

from protocol import messages as m
from protocol.errors import ProtocolError
from protocol.schema import markdown_table
from protocol.styles import apply_template

README = os.path.join(os.path.dirname(__file__), "..", "protocol", "README.md")

STYLE = {
    "name": "Cinematic photo",
    "family": "sd15",
    "checkpoints": ["realistic", "dreamshaper"],
    "loras": [{"name": "film-grain", "weight": 0.6}],
    "vae": "vae-ft-mse",
    "clip_skip": 2,
    "sampler": "Euler a",
    "steps": 30,
    "cfg": 6.5,
    "prompt": "cinematic photo of {prompt}, 35mm",
    "negative_prompt": "{prompt}, cartoon",
    "live": {"fewstep": "auto", "strength": 0.5, "loras": [{"name": "detail", "weight": 0.3}]},
}


def test_tables_are_documented():
    with open(README, encoding="utf-8") as f:
        readme = f.read()
    for model in (m.SaveStyle, m.DeleteStyle, m.Styles, m.Style, m.StyleLora, m.LiveSettings, m.StyleProblem):
        assert markdown_table(model) in readme, f"protocol/README.md's table of {model.__name__} is out of date"
    for kind in ("list_styles", "save_style", "delete_style", "styles"):
        assert f"`{kind}`" in readme


def test_save_style_round_trip():
    msg = m.parse_client_message({"type": "save_style", "style": STYLE})
    assert isinstance(msg, m.SaveStyle)
    style = msg.style
    assert style.checkpoints == ("realistic", "dreamshaper")
    assert style.loras == (m.StyleLora("film-grain", 0.6),)
    assert style.live.fewstep == "auto" and style.live.loras[0].weight == 0.3
    assert m.parse_client_message(msg.to_wire()) == msg
    reply = m.Styles((style,), (m.StyleProblem("bad.json", "steps", "must be an integer"),), {"sd15": {"pull": "x"}})
    assert m.parse_server_message(reply.to_wire()) == reply


@pytest.mark.parametrize(
    "change, field",
    [
        ({"name": "../etc"}, "style.name"),
        ({"name": ""}, "style.name"),
        ({"steps": "many"}, "style.steps"),
        ({"loras": [{"name": "x", "weight": 9.0}]}, "style.loras[0].weight"),
        ({"live": {"sampler": "nonsense"}}, "style.live.sampler"),
        ({"sampler": "DPM++ 2M", "scheduler": "Beta"}, None),
        ({"inpaint_method": "magic"}, "style.inpaint_method"),
    ],
)
def test_bad_style_names_the_field(change, field):
    wire = {"type": "save_style", "style": {**STYLE, **change}}
    if field is None:  # a valid combination
        m.parse_client_message(wire)
        return
    with pytest.raises(ProtocolError) as err:
        m.parse_client_message(wire)
    assert err.value.field == field


def test_job_names_a_style_and_an_inpaint_method():
    job = m.parse_client_message(
        {"type": "job", "id": "a", "mode": "generate", "style": "Realtime", "params": {"width": 64, "height": 64}}
    )
    assert job.style == "Realtime" and job.params.inpaint_method == "auto"
    with pytest.raises(ProtocolError) as err:
        m.parse_client_message({"type": "job", "id": "a", "mode": "inpaint", "params": {"inpaint_method": "x"}})
    assert err.value.field == "params.inpaint_method"


def test_delete_style_refuses_a_path():
    with pytest.raises(ProtocolError) as err:
        m.parse_client_message({"type": "delete_style", "name": "a/b"})
    assert err.value.field == "name"


@pytest.mark.parametrize(
    "template, text, out",
    [
        ("{prompt}", "a cat", "a cat"),
        ("photo of {prompt}, 35mm", "a cat", "photo of a cat, 35mm"),
        ("{prompt}, cartoon", "", "cartoon"),
        ("masterpiece", "a cat", "a cat, masterpiece"),
        ("", "a cat", "a cat"),
    ],
)
def test_apply_template(template, text, out):
    assert apply_template(template, text) == out
