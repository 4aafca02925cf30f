"""client.results: layer names (length from welcome), canvas growth, upscale size, crops."""

from __future__ import annotations

import pytest

from client.results import (
    Growth,
    box_of,
    canvas_growth,
    crop,
    groups,
    layer_name,
    layer_names,
    on_canvas,
    pixels_in,
    upscaled_size,
)
from protocol.geometry import Box
from protocol.messages import ResultLayer


def layer(x=0, y=0, w=4, h=4, seed=-1, info=None, fmt="rgba8") -> ResultLayer:
    return ResultLayer("x", x, y, w, h, fmt, bytes(w * h * 4), seed, info or {})


def test_layers_with_a_group_are_gathered_in_arrival_order_and_keep_the_servers_names():
    def member(name, group):
        return ResultLayer(name, 0, 0, 1, 1, "rgba8", bytes(4), 9, {}, group)

    layers = [member("Layer 1 (bottom)", "g"), member("loose", None), member("Layer 2 (top)", "g"), member("a", "h")]
    assert [(g.name, g.members) for g in groups(layers)] == [("g", (0, 2)), ("h", (3,))]
    assert groups([layer(seed=1)]) == []
    assert layer_names("decompose", "a house", layers[:1]) == ["Layer 1 (bottom)"]


def test_names_carry_prompt_and_seed_or_the_engine():
    assert layer_name("inpaint", "a  red\napple", layer(seed=1234)) == "a red apple (seed 1234)"
    assert layer_name("img2img", "", layer(seed=7)) == "Img2img (seed 7)"
    assert layer_name("outpaint", "", layer(seed=-1)) == "Outpaint"
    assert layer_name("inpaint", "", layer(seed=0, info={"engine": "classical"})) == "Inpaint (classical)"
    assert layer_name("inpaint", "x", layer(info={"engine": "classical", "fill": "ns"})) == "x (classical, ns)"
    assert layer_name("preprocess", "", layer(info={"preprocessor": "canny"})) == "Control: canny"


def test_long_prompts_are_cut_at_a_word_to_the_announced_length():
    long = "a very detailed oil painting of a lighthouse on a cliff at dusk, stormy sea"
    name = layer_name("generate", long, layer(seed=3))
    assert name == "a very detailed oil painting of a… (seed 3)"
    assert len(name.split(" (seed")[0]) <= 40
    short = layer_name("generate", long, layer(seed=3), max_length=20)
    assert short == "a very detailed oil… (seed 3)"
    assert layer_name("generate", "x" * 100, layer(seed=1)) == "x" * 39 + "… (seed 1)"


def test_batch_names_are_unique():
    names = layer_names("inpaint", "cat", [layer(seed=1), layer(seed=2), layer(seed=1), layer(seed=1)])
    assert names == ["cat (seed 1)", "cat (seed 2)", "cat (seed 1) #2", "cat (seed 1) #3"]


def test_canvas_growth_for_outpaint_and_upscale_into_a_layer():
    assert canvas_growth([Box(0, 0, 64, 64)], 64, 64) == Growth()
    g = canvas_growth([box_of(layer(-16, -4, 96, 72))], 64, 64)
    assert g == Growth(16, 4, 16, 4) and g.new_size(64, 64) == (96, 72)
    assert g.offsets() == (16, 4) and g.resize_args(64, 64) == (-16, -4, 96, 72)
    assert g.shifted(Box(-16, -4, 96, 72)) == Box(0, 0, 96, 72)
    assert canvas_growth([Box(0, 0, 80, 60)], 40, 30, minimum=upscaled_size(40, 30, 2.0)).new_size(40, 30) == (80, 60)
    assert upscaled_size(33, 10, 1.5) == (50, 15)


def test_crop_and_on_canvas():
    origin = Box(10, 10, 4, 3)
    data = bytes(range(12))
    assert crop(data, origin, Box(11, 11, 2, 2), 1) == bytes([5, 6, 9, 10])
    assert crop(data, origin, Box(10, 11, 4, 2), 1) == data[4:]
    with pytest.raises(ValueError, match="does not lie inside"):
        crop(data, origin, Box(9, 10, 2, 2), 1)
    assert on_canvas(Box(-5, -5, 10, 10), 20, 20) == Box(0, 0, 5, 5)
    assert on_canvas(Box(30, 0, 5, 5), 20, 20) is None


def test_pixels_in_converts_only_when_needed():
    rgba = ResultLayer("x", 0, 0, 1, 1, "rgba8", bytes([1, 2, 3, 4]))
    assert pixels_in(rgba, "rgba8") == bytes([1, 2, 3, 4])
    assert pixels_in(rgba, "bgra8") == bytes([3, 2, 1, 4])
