"""client.settings: the stored format round-trips and survives bad data; defaults come from ``welcome``."""

from __future__ import annotations

import json

from hypothesis import given, settings as hsettings, strategies as st

from client.settings import (
    CLASSICAL,
    FALLBACK_DEFAULTS,
    Defaults,
    Settings,
    apply_defaults,
    defaults_for_mode,
    family_of,
    model_entry,
)

MODELS = [
    {"name": "classical", "kind": "builtin"},
    {"name": "tiny", "kind": "checkpoint", "arch": "sd15"},
    {"name": "big", "kind": "checkpoint", "arch": "sdxl", "family": "sdxl"},
    {"name": "4x", "kind": "upscaler"},
]


def test_round_trip_through_json():
    s = Settings(
        mode="outpaint",
        prompt="sea",
        strength=0.4,
        steps=12,
        cfg=6.5,
        seed=9,
        extend_left=32,
        upscaler="4x",
        image_source="layer",
        mask_source="alpha",
    )
    assert Settings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert Settings.from_dict(Settings().to_dict()) == Settings()


def test_bad_stored_values_fall_back_and_unknown_keys_are_ignored():
    s = Settings.from_dict(
        {
            "mode": "paint",
            "steps": "many",
            "cfg": 7,
            "strength": True,
            "seed": 3.5,
            "batch": False,
            "image_source": "clipboard",
            "future_key": 1,
        }
    )
    assert s == Settings(cfg=7.0)
    assert Settings.from_dict({"strength": None}).strength is None
    assert Settings.from_dict("not a map") == Settings()


def test_defaults_from_a_welcome_and_the_fallback_for_a_1_0_server():
    d = Defaults.from_welcome(
        {
            "defaults": {
                "modes": {"img2img": {"strength": 0.5}},
                "families": {"lcm": {"steps": 6, "cfg": 1.5, "sampler": "LCM", "resolution": 512}},
                "layer_name_length": 24,
            }
        }
    )
    assert d.strength("img2img") == 0.5 and d.strength("inpaint") == 1.0
    assert d.families["lcm"].steps == 6 and d.families["sdxl"].cfg == 6.0
    assert d.layer_name_length == 24
    old = Defaults.from_welcome({"type": "welcome"})
    assert old.strength("img2img") == FALLBACK_DEFAULTS["modes"]["img2img"]["strength"] == 0.7
    assert old.layer_name_length == 40 and old == Defaults()


def test_typed_welcome_objects_are_read_too():
    class Welcome:
        defaults = {"modes": {"img2img": {"strength": 0.45}}}

    assert Defaults.from_welcome(Welcome()).strength("img2img") == 0.45


def test_family_and_model_entry():
    assert family_of(model_entry(MODELS, "")) == "sd15"  # the server's default: its first checkpoint
    assert family_of(model_entry(MODELS, "big")) == "sdxl"
    assert family_of(model_entry(MODELS, "classical")) == CLASSICAL
    assert model_entry(MODELS, "missing") is None
    assert family_of(model_entry([], "")) == CLASSICAL  # no checkpoint: the server falls back to the built-in engine


def test_apply_defaults_fills_only_what_was_left_to_the_default():
    d = Defaults()
    filled = apply_defaults(Settings(mode="img2img"), d, model_entry(MODELS, "big"))
    assert (filled.strength, filled.steps, filled.cfg, filled.sampler) == (0.7, 30, 6.0, "DPM++ 2M Karras")
    mine = apply_defaults(
        Settings(mode="img2img", strength=0.2, steps=4, cfg=2.0, sampler="Euler"), d, model_entry(MODELS, "big")
    )
    assert (mine.strength, mine.steps, mine.cfg, mine.sampler) == (0.2, 4, 2.0, "Euler")
    unknown = apply_defaults(Settings(mode="inpaint"), d, None)
    assert (unknown.steps, unknown.cfg, unknown.sampler) == (0, 0.0, "")
    styled = apply_defaults(Settings(mode="img2img", style="photo"), d, model_entry(MODELS, "big"))
    assert (styled.steps, styled.cfg, styled.sampler) == (0, 0.0, ""), "a style's sampling is left to the server"


def test_fresh_settings_for_a_mode():
    d = Defaults.from_welcome({"defaults": {"modes": {"upscale": {"scale": 4.0}}}})
    assert defaults_for_mode("upscale", d).scale == 4.0
    assert defaults_for_mode("img2img", d).strength == 0.7


def test_a_variants_differences_from_its_family_come_from_the_welcome():
    d = Defaults.from_welcome(
        {
            "defaults": {
                "families": {"flux": {"steps": 28, "cfg": 3.5, "sampler": "Euler", "resolution": 1024}},
                "variants": {"schnell": {"steps": 4, "cfg": 0.0}, "bad": "not a map"},
            }
        }
    )
    schnell = {"name": "flux1-schnell", "kind": "checkpoint", "family": "flux", "variant": "schnell"}
    dev = {"name": "flux1-dev", "kind": "checkpoint", "family": "flux", "variant": "dev"}
    assert (d.family(schnell).steps, d.family(schnell).cfg, d.family(schnell).sampler) == (4, 0.0, "Euler")
    assert (d.family(dev).steps, d.family(dev).cfg) == (28, 3.5)
    filled = apply_defaults(Settings(mode="generate"), d, schnell)
    assert (filled.steps, filled.cfg) == (4, 0.0)


def test_the_servers_own_welcome_defaults_are_what_the_plugins_use():
    from server.defaults import family_settings, welcome_defaults

    d = Defaults.from_welcome({"defaults": welcome_defaults()})
    for family, variant in (("flux", "schnell"), ("sd3", "3.5-large-turbo"), ("sd3", "3-medium"), ("flux", "dev")):
        fam = d.family({"name": "m", "kind": "checkpoint", "family": family, "variant": variant})
        want = family_settings(family, variant)
        assert (fam.steps, fam.cfg, fam.sampler) == (want["steps"], want["cfg"], want["sampler"])


# fills (issue 13)
def test_fill_defaults_to_patch_colour_match_round_trips_and_bad_values_fall_back():
    assert Settings().fill == "patch" and Settings().color_match is False
    s = Settings(fill="lama", color_match=True)
    assert Settings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert Settings.from_dict({"fill": "blur", "color_match": 1}) == Settings()


def test_control_slots_are_kept_with_the_settings_and_older_stored_settings_have_none():
    from client.settings import ControlSetting

    s = Settings(prompt="x", controls=(ControlSetting("12", "depth", 0.5, 0.1, 0.9, True), ControlSetting("7")))
    stored = json.loads(json.dumps(s.to_dict()))
    assert stored["controls"][0] == {
        "layer": "12",
        "type": "depth",
        "strength": 0.5,
        "start": 0.1,
        "end": 0.9,
        "preprocess": True,
    }
    assert Settings.from_dict(stored) == s
    older = dict(stored)
    del older["controls"]  # settings stored before control slots were kept
    assert Settings.from_dict(older).controls == () and Settings.from_dict(older).prompt == "x"
    odd = Settings.from_dict(
        {
            "controls": [
                {"layer": "3", "type": "no-such-type"},
                {"type": "canny"},
                "x",
                {"layer": "4", "type": "canny", "strength": 9, "start": 0.8, "end": 0.2, "preprocess": "yes"},
            ]
            + [{"layer": str(i), "type": "pose"} for i in range(10)]
        }
    )
    assert odd.controls[0] == ControlSetting("4", "canny", 2.0, 0.2, 0.8, False)  # clamped, ordered, bool kept
    assert len(odd.controls) == 8  # at most a job's worth
    assert Settings.from_dict({"controls": "not a list"}).controls == ()


def test_any_stored_controls_read_as_valid_control_settings_or_none():
    from client.settings import ControlSetting
    from protocol.messages import CONTROL_TYPES

    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.sampled_from(CONTROL_TYPES)
    )
    entry = st.dictionaries(
        st.sampled_from(["layer", "type", "strength", "start", "end", "preprocess", "x"]), scalars, max_size=7
    )
    stored = st.one_of(scalars, st.lists(st.one_of(entry, scalars), max_size=12))

    @hsettings(max_examples=300, deadline=None)
    @given(stored)
    def check(value):
        controls = Settings.from_dict({"controls": value}).controls
        assert len(controls) <= 8
        for c in controls:
            assert isinstance(c, ControlSetting) and c.layer and c.type in CONTROL_TYPES
            assert 0.0 <= c.start <= c.end <= 1.0 and 0.0 <= c.strength <= 2.0 and isinstance(c.preprocess, bool)
        assert Settings.from_dict(json.loads(json.dumps(Settings(controls=controls).to_dict()))).controls == controls

    check()
