"""The GIMP plug-in's history parts that need no GIMP: the History procedure's arguments, settings → procedure values
("reuse settings"), and the values kept for the mode's next dialog."""

from __future__ import annotations

import pytest

from client.settings import Settings
from gimp_plugin import arguments, values


@pytest.mark.parametrize("spec", [s for s in arguments.PROCEDURES if not s.live], ids=lambda s: s.mode)
def test_reused_settings_come_back_through_the_procedure_arguments(spec):
    chosen = spec.defaults()
    changes = {"prompt": "a lighthouse", "negative-prompt": "fog", "model": "classical", "steps": 11, "seed": 1234,
               "batch": 3, "grow": 5, "feather": 7, "strength": 0.55, "cfg": 6.5, "sampler": "euler-a",
               "fill": "ns", "source": "layer", "mask-source": "layer-mask", "extend": 48, "extend-left": True,
               "extend-bottom": True, "scale": 3.0, "upscaler": "x4", "refine": 0.3, "preprocessor": "lineart",
               "low-threshold": 50, "high-threshold": 150}
    chosen.update({k: v for k, v in changes.items() if k in chosen})
    original = values.settings_from_values(spec, chosen)
    again = spec.defaults()
    again.update(values.values_from_settings(spec, original))
    assert values.settings_from_values(spec, again) == original
    assert set(values.values_from_settings(spec, original)) <= {a.name for a in spec.args}


def test_the_default_model_and_sampler_map_back_to_their_choices():
    spec = arguments.BY_MODE["inpaint"]
    out = values.values_from_settings(spec, Settings(mode="inpaint", model="", sampler=""))
    assert out["model"] == "default" and out["sampler"] == "default"


def test_reuse_values_wait_for_their_procedure_only_once(tmp_path):
    values.save_reuse(tmp_path, "plug-in-paintbridge-inpaint", {"prompt": "again", "steps": 4})
    assert values.take_reuse(tmp_path, "plug-in-paintbridge-img2img") == {}  # another procedure: left waiting
    assert values.take_reuse(tmp_path, "plug-in-paintbridge-inpaint") == {"prompt": "again", "steps": 4}
    assert values.take_reuse(tmp_path, "plug-in-paintbridge-inpaint") == {}
    (tmp_path / values.REUSE_FILE).write_text("{broken")
    assert values.take_reuse(tmp_path, "plug-in-paintbridge-inpaint") == {}


def test_the_history_procedure_is_registered_with_its_actions():
    spec = arguments.BY_NAME["plug-in-paintbridge-history"]
    assert spec.history and not spec.download and spec in arguments.ALL_PROCEDURES
    assert [nick for nick, _ in spec.arg("action").choices] == ["apply", "reuse", "delete", "list"]
    assert spec.defaults() == {"action": "apply", "index": 0, "layer": -1, "limit-mb": -1}
    labels = arguments.labels_with_mnemonics(spec)
    assert len({label[label.index("_") + 1].lower() for label in labels.values()}) == len(labels)
