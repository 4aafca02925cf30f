"""client.modes: one rule per mode for both editors (which box, mask or not, image or not)."""

from __future__ import annotations

import pytest

from client.errors import JobInputError
from client.modes import MODES, plan_read, read_box
from protocol.geometry import Box, context_box

SEL = Box(40, 30, 20, 10)
NONE = Box(0, 0, 0, 0)
CANVAS = Box(0, 0, 200, 100)


@pytest.mark.parametrize(
    "mode, box, mask, image",
    [
        ("generate", context_box(SEL, 200, 100), True, True),
        ("img2img", context_box(SEL, 200, 100), True, True),
        ("inpaint", context_box(SEL, 200, 100), True, True),
        ("outpaint", CANVAS, False, True),
        ("upscale", SEL, False, True),
        ("preprocess", SEL, False, True),
    ],
)
def test_with_a_selection(mode, box, mask, image):
    plan = plan_read(mode, SEL, 200, 100)
    assert (plan.box, plan.mask, plan.image) == (box, mask, image)
    assert read_box(mode, SEL, 200, 100) == box


@pytest.mark.parametrize(
    "mode, image", [("generate", False), ("img2img", True), ("outpaint", True), ("upscale", True), ("preprocess", True)]
)
def test_without_a_selection_every_mode_reads_the_canvas_and_no_mask(mode, image):
    plan = plan_read(mode, NONE, 200, 100)
    assert (plan.box, plan.mask, plan.image) == (CANVAS, False, image)


def test_inpaint_needs_a_selection():
    with pytest.raises(JobInputError, match="Inpaint needs a selection"):
        plan_read("inpaint", NONE, 200, 100)


def test_a_selection_past_the_canvas_is_clamped_and_one_outside_is_refused():
    assert plan_read("upscale", Box(190, 90, 40, 40), 200, 100).box == Box(190, 90, 10, 10)
    for mode in MODES:
        with pytest.raises(JobInputError, match="outside the canvas"):
            plan_read(mode, Box(300, 300, 10, 10), 200, 100)


def test_unknown_mode_and_empty_canvas_are_named():
    with pytest.raises(JobInputError, match="unknown mode 'paint'"):
        plan_read("paint", SEL, 200, 100)
    with pytest.raises(JobInputError, match="0x100"):
        plan_read("img2img", NONE, 0, 100)


def test_edit_reads_the_context_box_with_the_selection_and_the_canvas_without():
    plan = plan_read("edit", SEL, 200, 100)
    assert (plan.box, plan.mask, plan.image) == (context_box(SEL, 200, 100), True, True)
    plan = plan_read("edit", NONE, 200, 100)
    assert (plan.box, plan.mask, plan.image) == (CANVAS, False, True)


def test_edit_is_offered_only_for_models_whose_listing_says_they_can():
    from client.modes import check_offered, offered

    kontext = {"name": "flux1-kontext-dev", "kind": "checkpoint", "family": "flux-kontext", "edit": True}
    dev = {"name": "flux1-dev", "kind": "checkpoint", "family": "flux"}
    assert offered("edit", kontext) and not offered("edit", dev)
    assert offered("edit", None)  # a model the plugin does not know: the server decides
    assert all(offered(m, dev) for m in MODES if m not in ("edit", "decompose"))
    with pytest.raises(JobInputError, match="'flux1-dev' cannot"):
        check_offered("edit", dev)


def test_decompose_reads_the_selection_alone_and_is_offered_only_for_a_layered_model():
    from client.modes import check_offered, offered

    plan = plan_read("decompose", SEL, 200, 100)
    assert (plan.box, plan.mask, plan.image) == (SEL, False, True)
    assert plan_read("decompose", NONE, 200, 100).box == CANVAS
    layered = {"name": "qwen-image-layered", "kind": "checkpoint", "arch": "qwen-image-layered", "decompose": True}
    qwen = {"name": "qwen-image", "kind": "checkpoint", "arch": "qwen-image"}
    assert offered("decompose", layered) and not offered("decompose", qwen) and offered("decompose", None)
    with pytest.raises(JobInputError, match="Decompose needs a model that splits a picture into layers"):
        check_offered("decompose", qwen)
    # the layered model runs decompose only on its checkpoint: the other checkpoint modes are not offered with it
    from client.modes import fallback_mode

    assert not offered("inpaint", layered) and not offered("edit", layered)
    assert offered("upscale", layered) and offered("caption", layered) and offered("preprocess", layered)
    assert (fallback_mode(layered), fallback_mode(qwen), fallback_mode(None)) == ("decompose", "inpaint", "inpaint")
    with pytest.raises(JobInputError, match="'qwen-image-layered' runs only Decompose: pick another model for Inpaint"):
        check_offered("inpaint", layered)
