"""The speed level as the painter picks it (``Settings.speed``): offered only where the model's family lists it
(``client.offers``), sent as ``params.speed``; ``""`` (the style's choice, the default) takes a style's level, Quality
and Fast win over it; against a real server with the tiny SD1.5 and Flux models, the result's ``info.speed`` says
which level ran."""

from __future__ import annotations

import json
from typing import Optional

import pytest

from client.jobs import build_job, capture
from client.offers import CLASSICAL, offers
from client.settings import Settings
from clientdoc import MemoryDocument, Reader, ellipse_mask, gradient
from protocol.client import Client, JobFailed
from protocol.images import RGBA8
from protocol.messages import Welcome
from protocol.styles import Style

MODELS = ("sd15", "flux")
W = H = 64
CAPS = {  # the server's welcome for an SD1.5 and a Flux checkpoint (server/offers.py, server/router.py)
    "modes": ["generate", "img2img", "inpaint", "outpaint", "upscale"],
    "speed_levels": {"quality": ["all"], "fast": ["sd15", "sdxl"]},
    "families": {
        "sd15": {"modes": ["generate", "inpaint"], "speed_levels": ["quality", "fast"]},
        "sdxl": {"modes": ["generate", "inpaint"], "speed_levels": ["quality", "fast"]},
        "flux": {"modes": ["generate", "inpaint"], "speed_levels": ["quality"]},
    },
}
LISTING = (
    {"name": "tiny", "kind": "checkpoint", "arch": "sd15"},
    {"name": "big", "kind": "checkpoint", "arch": "sdxl"},
    {"name": "flow", "kind": "checkpoint", "arch": "flux"},
)


def welcome(caps: Optional[dict] = None) -> Welcome:
    return Welcome(protocol="1.1", server_version="x", capabilities=CAPS if caps is None else caps, models=LISTING)


def test_fast_is_offered_only_where_the_family_lists_it():
    w = welcome()
    assert offers(w, "tiny").speed_levels == offers(w, "big").speed_levels == ("quality", "fast")
    assert offers(w, "tiny").speed_choice() and offers(w, "big").speed_choice()
    assert offers(w, "flow").speed_levels == ("quality",) and not offers(w, "flow").speed_choice()
    assert not offers(w, CLASSICAL).speed_choice(), "the built-in engine computes no steps"
    assert offers(w).speed_choice(), "'' is the server's default checkpoint (SD1.5 here)"
    older = welcome({"modes": ["generate"]})  # a server from before speed levels: quality only
    assert offers(older, "tiny").speed_levels == ("quality",) and not offers(older, "tiny").speed_choice()


def test_a_level_the_model_cannot_run_is_not_sent_and_a_styles_level_runs_where_the_job_leaves_it_unset():
    w = welcome()
    sd15, flux = offers(w, "tiny"), offers(w, "flow")
    assert sd15.speed_choices() == ("", "quality", "fast") and flux.speed_choices() == ("", "quality")
    assert sd15.speed_sent("fast") == "fast" and flux.speed_sent("fast") == "", "left to the style (no Fast on Flux)"
    assert sd15.speed_sent("quality") == "quality" and sd15.speed_sent("") == ""
    assert sd15.speed_runs("", "fast") == "fast", "the style's level: the painter left it to the style"
    assert sd15.speed_runs("quality", "fast") == "quality", "an explicit Quality wins over the style's Fast"
    assert sd15.speed_runs("fast", "quality") == "fast" and sd15.speed_runs("", "") == "quality"
    assert flux.speed_runs("", "fast") == "quality", "the server drops a style's Fast on Flux"
    assert flux.speed_runs("fast") == "quality"


def test_the_speed_setting_is_stored_and_a_bad_stored_one_falls_back_to_the_styles():
    for level in ("", "quality", "fast"):
        s = Settings(speed=level)
        assert Settings.from_dict(json.loads(json.dumps(s.to_dict()))).speed == level
    assert Settings().speed == ""
    for bad in ("turbo", 1, None):
        assert Settings.from_dict({"speed": bad}).speed == "", bad


# --- against a real server -------------------------------------------------------------------------------------------


def run(client: Client, settings: Settings, job_id: str, live: bool = False) -> dict:
    """The ``info`` of the result of the job the client core builds for ``settings`` (on a 64² document)."""
    doc = MemoryDocument(W, H, gradient(W, H), ellipse_mask(W, H, 32, 32, 14, 12))
    inputs = capture(settings, doc.selection_bounds(), W, H, Reader(doc, RGBA8))
    result = client.run(build_job(settings, inputs, job_id=job_id, live=live), timeout=300)
    return {**dict(result.info), **dict(result.layers[0].info or {})}


def test_the_chosen_or_the_styles_level_runs_and_the_result_says_so(start_server, models_dir, tmp_path):
    server = start_server(model_dirs=[models_dir], styles_dir=tmp_path / "styles")
    with Client(server.url, client_name="test-speed") as client:
        o = offers(client.welcome, "tiny-sd15")
        assert o.speed_choice() and not offers(client.welcome, "tiny-flux").speed_choice()
        base = Settings(mode="inpaint", model="tiny-sd15", prompt="a cat", steps=4, seed=3)
        fast = run(client, base.replace(speed=o.speed_sent("fast")), "fast")
        assert fast["speed"]["level"] == "fast" and fast["speed"]["reused_steps"] > 0
        assert run(client, base, "unset")["speed"] == {"level": "quality"}
        assert run(client, base.replace(speed="fast"), "live", live=True)["speed"]["level"] == "fast", "live frames"
        with pytest.raises(JobFailed) as refused:  # sent anyway on Flux (a script): the server names the field
            run(client, base.replace(model="tiny-flux", speed="fast"), "flux")
        assert refused.value.field == "params.speed"
        # a style's level, where the painter leaves it to the style; an explicit Quality wins over it
        client.save_style(Style(name="draft", family="sd15", speed="fast"))
        info = run(client, base.replace(style="draft"), "style")
        assert info["speed"]["level"] == "fast" and "speed" in info["style"]["params"]
        assert o.speed_runs(base.speed, "fast") == "fast"
        chosen = base.replace(style="draft", speed=o.speed_sent("quality"))
        assert (
            run(client, chosen, "style-quality")["speed"]
            == {"level": "quality"}
            == {"level": o.speed_runs("quality", "fast")}
        )
        flux = run(client, base.replace(model="tiny-flux", style="draft"), "style-flux")
        assert "speed" not in flux, "a style's Fast on a family without it: every step in full (no level to report)"


def test_settings_stored_before_the_style_choice_existed_keep_what_they_ran():
    """An older stored map holds ``speed``, where the default "quality" let a style's level win: it reads as ``""``
    (the style's choice), an older "fast" stays Fast, and what is stored now reads back exactly."""
    assert Settings.from_dict({"speed": "quality"}).speed == "", "the old default: the style's level still applies"
    assert Settings.from_dict({"speed": "fast"}).speed == "fast"
    stored = Settings(speed="quality").to_dict()
    assert "speed" not in stored and Settings.from_dict(stored).speed == "quality", "an explicit Quality stays"
