"""The GIMP plug-in's history parts that need no GIMP: the History procedure's arguments, settings → procedure values
("reuse settings"), and the values kept for the mode's next dialog."""

from __future__ import annotations

import json

import pytest

from client.settings import Settings
from gimp_plugin import args_inputs, arguments, values
from test_gimp_host import trixie_root  # noqa: F401 - the real GIMP's root folder, a fixture


@pytest.mark.parametrize("spec", [s for s in arguments.PROCEDURES if not s.live], ids=lambda s: s.mode)
def test_reused_settings_come_back_through_the_procedure_arguments(spec):
    chosen = spec.defaults()
    changes = {
        "prompt": "a lighthouse",
        "negative-prompt": "fog",
        "model": "classical",
        "steps": 11,
        "seed": 1234,
        "batch": 3,
        "grow": 5,
        "feather": 7,
        "strength": 0.55,
        "cfg": 6.5,
        "sampler": "euler-a",
        "fill": "ns",
        "source": "layer",
        "mask-source": "layer-mask",
        "extend": 48,
        "extend-left": True,
        "extend-bottom": True,
        "scale": 3.0,
        "upscaler": "x4",
        "refine": 0.3,
        "preprocessor": "lineart",
        "low-threshold": 50,
        "high-threshold": 150,
    }
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
    assert spec.defaults() == {"action": "apply", "index": 0, "layer": -1, "limit-mb": -1, "search": ""}
    labels = arguments.labels_with_mnemonics(spec)
    assert len({label[label.index("_") + 1].lower() for label in labels.values()}) == len(labels)


@pytest.mark.parametrize("mode", ["inpaint", "outpaint", "generate", "img2img"])
def test_reuse_refills_every_slot_control_and_reference_layers_by_stable_id(mode):
    """Every argument a run sets, the eight control slots and four reference slots (layers and regions kept by
    their stable ids) included, comes back from the kept settings; layers the image lost are named and left empty."""
    spec = arguments.BY_MODE[mode]
    layers = {f"layer{i}": str(100 + i) for i in range(1, 13)}  # GIMP items and their tattoos
    by_id = {ident: name for name, ident in layers.items()}
    chosen = spec.defaults()
    chosen.update(
        {
            "prompt": "a lighthouse",
            "vae": "vae-ft-mse",
            "refiner": "sdxl-refiner",
            "refiner-start": 0.7,
            "scheduler": "karras",
            "batch-count": 2,
            "clip-skip": 2,
            "hires": True,
            "hires-upscaler": "4x-ultra",
            "hires-strength": 0.3,
            "hires-steps": 9,
            "hires-scale": 1.5,
            "detail": True,
            "detail-prompt": "a face",
            "detail-strength": 0.6,
            "detail-padding": 40,
            "detail-separate": True,
            "color-match": True,
        }
    )
    for i in range(1, 9):
        p = args_inputs.control_prefix(i)
        chosen.update(
            {
                f"{p}-layer": f"layer{i}",
                f"{p}-type": ("depth", "canny", "pose", "lineart")[i % 4],
                f"{p}-strength": 0.1 * i,
                f"{p}-start": 0.05 * i,
                f"{p}-end": 1 - 0.05 * i,
                f"{p}-preprocess": i % 3 == 0,
            }
        )
    for i in range(1, 5):
        p = args_inputs.reference_prefix(i)
        chosen.update(
            {
                f"{p}-layer": f"layer{8 + i}",
                f"{p}-type": ("style", "face", "content", "composition")[i - 1],
                f"{p}-strength": 0.4 * i,
                f"{p}-start": 0.1,
                f"{p}-end": 0.9,
                f"{p}-region": "layer1" if i == 2 else None,
            }
        )
    chosen = {k: v for k, v in chosen.items() if k in {a.name for a in spec.args}}
    original = values.settings_from_values(spec, chosen, layers.__getitem__)
    assert len(original.controls) == 8 and len(original.references) == 4
    kept = Settings.from_dict(json.loads(json.dumps(original.to_dict())))  # as the history stores it
    reused = json.loads(json.dumps(values.values_from_settings(spec, kept)))  # as save_reuse keeps it
    resolved, missing = values.resolve_items(spec, reused, by_id.get, by_id.get)
    assert missing == []
    assert {k: v for k, v in resolved.items() if k in chosen} == {k: v for k, v in chosen.items() if k in resolved}
    again = spec.defaults()
    again.update(resolved)
    assert values.settings_from_values(spec, again, layers.__getitem__) == original
    # the image lost control layer 3 and reference layer 2: named, left empty, the others refilled
    lost = {layers["layer3"], layers["layer10"]}
    resolved, missing = values.resolve_items(spec, reused, lambda i: None if i in lost else by_id.get(i), by_id.get)
    assert missing == ["Control layer 3", "Reference layer 2"]
    assert resolved["control-3-layer"] is None and resolved["control-4-layer"] == "layer4"


def test_reuse_of_settings_kept_before_control_slots_were_kept_leaves_them_off():
    spec = arguments.BY_MODE["inpaint"]
    older = Settings(prompt="x").to_dict()
    del older["controls"]
    out = values.values_from_settings(spec, Settings.from_dict(older))
    assert all(out[f"{args_inputs.control_prefix(i)}-layer"] is None for i in range(1, 9))
    assert out["prompt"] == "x"


@pytest.mark.host
def test_a_decomposition_applies_again_from_the_history_as_its_layer_group(trixie_root):
    """In a real GIMP 3: a decomposition kept in the image's history comes back, through the History procedure, as
    its layer group (each layer named, in order, with its alpha), not as one flattened layer."""
    from hosts.gimp import gimp_profile, run_checks

    name = "a_decomposition_in_the_history_applies_again_as_its_layer_group"
    with gimp_profile() as prof:
        run_checks(prof, [(name, {"plugin_dir": prof.inner(prof.plugin_dir)})], timeout=300).assert_ok(name)
