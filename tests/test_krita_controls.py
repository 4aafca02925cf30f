"""The Krita panel's control layers without Qt or Krita (``krita_plugin/paintbridge/controls.py``): checked additions
and changes, what a job's settings keep, the history's restore, and where a "From image" layer lands."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from krita_plugin.paintbridge.controls import Controls  # noqa: E402
from krita_plugin.paintbridge.wire import client  # noqa: E402


def make():
    calls = {"touched": 0, "first_type": 0, "changed": 0}
    controls = Controls(
        lambda: "active-layer",
        lambda: calls.__setitem__("touched", calls["touched"] + 1),
        lambda: calls.__setitem__("first_type", calls["first_type"] + 1),
    )
    controls.changed.connect(lambda: calls.__setitem__("changed", calls["changed"] + 1))
    return controls, calls


def test_controls_are_checked_changed_and_kept_as_a_jobs_settings():
    controls, calls = make()
    with pytest.raises(client.errors.JobInputError, match="unknown control type 'sketchy'"):
        controls.add(type="sketchy")
    spec = controls.add(type="canny")
    assert spec.layer_id == "active-layer" and len(controls) == 1 and calls["changed"] == 1
    controls.add(layer_id="", type="depth")  # no layer yet: listed, not sent
    with pytest.raises(client.errors.JobInputError, match="no field 'colour'"):
        controls.update(0, colour="red")
    controls.update(0, strength=0.5)
    assert calls == {"touched": 1, "first_type": 0, "changed": 2}
    controls.update(0, type="depth")
    controls.update(1, type="canny")
    assert calls["first_type"] == 1  # only the first control's type decides what the models box names
    kept = controls.settings()
    assert [(c.layer, c.type, c.strength) for c in kept] == [("active-layer", "depth", 0.5)]
    controls.remove(5)  # no such row: nothing happens
    controls.remove(0)
    assert [c.type for c in controls] == ["canny"]
    controls.restore(kept)  # the history's "reuse settings"
    assert [(c.layer_id, c.type, c.strength) for c in controls] == [("active-layer", "depth", 0.5)]


def test_a_from_image_layer_fills_the_row_it_was_asked_for_or_a_new_one():
    controls, _ = make()
    controls.add(layer_id="", type="depth")
    controls.pending = 0
    controls.attach("made-1", "depth")
    assert [(c.layer_id, c.type) for c in controls] == [("made-1", "depth")] and controls.pending is None
    controls.attach("made-2", "canny")  # the panel's own "From image": a new row
    controls.pending = 7  # the row went meanwhile: a new row too
    controls.attach("made-3", "lineart")
    assert [c.layer_id for c in controls] == ["made-1", "made-2", "made-3"]
