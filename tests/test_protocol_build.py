"""Messages built in code are checked as parsed ones are: a bad value raises ProtocolError naming the field."""

from __future__ import annotations

import pytest

from protocol import GRAY8, RGBA8, ImagePayload, ProtocolError
from protocol.messages import MAX_CONTROLS, Control, Detail, Job, Params, Reference, Region, Result, ResultLayer

PIXELS = ImagePayload(4, 3, RGBA8, bytes(48))
MASK = ImagePayload(4, 3, GRAY8, b"\xff" * 12)


def refused(build) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        build()
    return info.value


@pytest.mark.parametrize(
    "build, field, words",
    [
        (lambda: Control(type="crayon", image=PIXELS), "type", "one of"),
        (lambda: Control(type="canny", image=PIXELS, strength=3.0), "strength", "at most"),
        (lambda: Control(type="canny", image=PIXELS, start=0.8, end=0.2), "start", "after end"),
        (lambda: Control(type="canny", image=PIXELS, preprocess="yes"), "preprocess", "boolean"),
        (lambda: Control(type="canny", image=ImagePayload(4, 3, RGBA8, bytes(10))), "image.data", "needs 48"),
        (lambda: Reference(image=MASK), "image.format", "one of"),
        (lambda: Reference(image=PIXELS, type="mood"), "type", "one of"),
        (lambda: Region(prompt="  ", mask=MASK), "prompt", "empty"),
        (lambda: Params(steps=0), "steps", "at least"),
        (lambda: Params(strength=float("nan")), "strength", "finite"),
        (lambda: Detail(targets=("feet",)), "targets[0]", "one of"),
        (lambda: Job("j" * 65, "inpaint", image=PIXELS), "id", "over the limit"),
        (lambda: Job("j1", "paint", image=PIXELS), "mode", "one of"),
        (lambda: Job("j1", "inpaint"), "image", "needs an image"),
        (lambda: Job("j1", "inpaint", image=PIXELS, mask=ImagePayload(2, 2, GRAY8, bytes(4))), "mask", "is 2x2"),
        (
            lambda: Job("j1", "img2img", image=PIXELS, controls=(Control(type="canny", image=PIXELS),) * 9),
            "controls",
            f"limit of {MAX_CONTROLS}",
        ),
        (lambda: Job("j1", "upscale", image=PIXELS, regions=(Region("a", MASK),)), "regions", "not used"),
        (lambda: Job("j1", "img2img", image=PIXELS, model=None), "model", "must not be none"),
        (lambda: ResultLayer("r", 0, 0, 4, 3, RGBA8, bytes(5)), "layer.data", "needs 48"),
    ],
)
def test_a_bad_value_is_refused_when_built_naming_the_field(build, field, words):
    err = refused(build)
    assert err.field == field and words in err.message


def test_building_takes_what_parsing_takes_and_gives_the_same_message():
    job = Job(
        "j1",
        "img2img",
        image=PIXELS,
        controls=[Control(type="depth", image=PIXELS, strength=1, end=1)],  # a list, ints for floats
        params={"steps": 4, "extend": {"left": 8}, "detail": {"targets": ["face"]}},  # nested maps
        references=(Reference(image=PIXELS, mask=MASK),),
    )
    assert isinstance(job.controls, tuple) and job.controls[0].strength == 1.0
    assert isinstance(job.controls[0].strength, float)
    assert isinstance(job.params, Params) and job.params.extend.left == 8 and job.params.detail.targets == ("face",)
    assert Job.from_wire(job.to_wire()) == job


def test_a_payload_built_from_a_view_keeps_its_bytes_uncopied():
    data = bytearray(48)
    ctl = Control(type="canny", image=ImagePayload(4, 3, RGBA8, memoryview(data)))
    assert ctl.image.data.obj is data


def test_a_result_built_by_a_server_is_checked_against_no_announced_limit():
    layer = ResultLayer("big", 0, 0, 4000, 4000, RGBA8, bytes(4000 * 4000 * 4))
    assert Result("j1", (layer,)).layers[0].width == 4000
