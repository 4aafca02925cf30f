"""client.jobs: settings + pixels read through ``capture`` → one job the server accepts, with defaults from
``welcome``; errors name what to change."""

from __future__ import annotations

import pytest

from client.errors import JobInputError
from client.jobs import ControlSource, JobInputs, build_job, capture
from client.settings import Defaults, Settings
from clientdoc import MemoryDocument, Reader, ellipse_mask, gradient
from protocol.geometry import Box, context_box
from protocol.images import BGRA8, RGBA8, ImagePayload
from protocol.messages import Control, Extend, Limits, Params, Welcome, parse_client_message

W, H = 96, 64
WELCOME = {
    "type": "welcome",
    "protocol": "1.1",
    "server_version": "x",
    "defaults": {
        "modes": {"img2img": {"strength": 0.65}, "upscale": {"strength": 0.35, "scale": 3.0}},
        "families": {"sdxl": {"steps": 28, "cfg": 5.0, "sampler": "Euler a", "resolution": 1024}},
        "layer_name_length": 32,
    },
}
SDXL = {"name": "big", "kind": "checkpoint", "arch": "sdxl", "family": "sdxl"}


def doc(selected: bool = True) -> MemoryDocument:
    sel = ellipse_mask(W, H, 40, 30, 16, 12) if selected else bytes(W * H)
    return MemoryDocument(W, H, gradient(W, H), sel, {"sketch": gradient(W, H)[::-1]})


def job_for(settings: Settings, document: MemoryDocument, fmt: str = RGBA8, controls=(), entry=None, **kw):
    inputs = capture(settings, document.selection_bounds(), W, H, Reader(document, fmt), controls)
    return build_job(settings, inputs, Defaults.from_welcome(Welcome.from_wire(WELCOME)), entry, job_id="j1", **kw)


def accepted(job):
    """The job as the server parses it off the wire: the same typed job."""
    parsed = parse_client_message(job.to_wire(), Limits())
    assert parsed == job
    return parsed


def test_inpaint_job_carries_the_context_box_the_soft_mask_and_the_controls():
    d = doc()
    job = job_for(
        Settings(mode="inpaint", prompt="  a fox ", model="big", seed=5),
        d,
        entry=SDXL,
        controls=[ControlSource("sketch", "scribble", 0.8, 0.0, 0.9, preprocess=True)],
    )
    msg = accepted(job)
    box = context_box(d.selection_bounds(), W, H)
    assert (msg.x, msg.y, msg.image.width, msg.image.height) == (box.x, box.y, box.width, box.height)
    assert msg.prompt == "a fox" and msg.mask.format == "gray8"
    assert any(0 < v < 255 for v in msg.mask.data), "soft values travel"
    assert msg.params.steps == 28 and msg.params.cfg == 5.0 and msg.params.sampler == "Euler a"
    assert msg.params.strength == 1.0 and msg.params.seed == 5
    ctl = msg.controls[0]
    assert ctl.type == "scribble" and ctl.strength == 0.8 and ctl.end == 0.9 and ctl.preprocess is True
    assert msg.result_format == RGBA8 and msg.previews is False and msg.live is False


def test_generate_into_a_selection_sends_image_and_mask_and_without_one_only_a_size():
    msg = accepted(job_for(Settings(mode="generate"), doc()))
    assert msg.image is not None and msg.mask is not None and msg.params.strength is None
    bare = accepted(job_for(Settings(mode="generate"), doc(selected=False)))
    assert bare.image is None and bare.mask is None
    assert (bare.params.width, bare.params.height) == (W, H)


def test_img2img_defaults_its_strength_from_the_welcome_and_keeps_a_chosen_one():
    assert job_for(Settings(mode="img2img"), doc()).params.strength == 0.65
    assert job_for(Settings(mode="img2img", strength=0.3), doc()).params.strength == 0.3


def test_a_style_travels_by_name_and_its_sampling_is_left_to_the_server():
    msg = accepted(job_for(Settings(mode="img2img", style=" sd15-photo "), doc()))
    assert msg.style == "sd15-photo" and msg.params.steps == Params().steps and msg.params.sampler == ""
    assert accepted(job_for(Settings(mode="img2img"), doc())).style == ""


def test_unknown_family_leaves_the_defaults_to_the_server():
    params = job_for(Settings(mode="img2img", model="mystery"), doc(), entry=None).params
    assert params.steps == Params().steps and params.cfg is None and params.sampler == ""


def test_classical_sends_no_guidance():
    params = job_for(
        Settings(mode="inpaint", model="classical"), doc(), entry={"name": "classical", "kind": "builtin"}
    ).params
    assert params.steps == 1 and params.cfg is None and params.sampler == ""


def test_outpaint_needs_a_side_and_reads_the_canvas():
    with pytest.raises(JobInputError, match="at least one side"):
        job_for(Settings(mode="outpaint"), doc())
    msg = accepted(job_for(Settings(mode="outpaint", extend_left=16, extend_bottom=8), doc()))
    assert msg.mask is None and (msg.image.width, msg.image.height) == (W, H)
    assert msg.params.extend == Extend(left=16, top=0, right=0, bottom=8)


def test_upscale_reads_the_selection_bounds_and_sends_no_batch_or_controls():
    d = doc()
    msg = accepted(
        job_for(
            Settings(mode="upscale", scale=3.0, upscaler=" 4x ", refine=0.2, batch=4),
            d,
            controls=[ControlSource("sketch", "canny")],
        )
    )
    sel = d.selection_bounds()
    assert (msg.x, msg.y, msg.image.width) == (sel.x, sel.y, sel.width)
    assert msg.params.scale == 3.0 and msg.params.upscaler == "4x" and msg.params.refine == 0.2
    assert msg.params.batch == 1 and msg.controls == ()


def test_preprocess_job():
    msg = accepted(job_for(Settings(mode="preprocess", preprocessor="depth", low_threshold=20), doc(False)))
    assert msg.params.preprocessor == "depth" and msg.params.low_threshold == 20
    with pytest.raises(JobInputError, match="low threshold"):
        job_for(Settings(mode="preprocess", low_threshold=210), doc())
    with pytest.raises(JobInputError, match="unknown control image kind"):
        job_for(Settings(mode="preprocess", preprocessor="x"), doc())


def test_krita_order_travels_as_bgra8_and_comes_back_as_bgra8():
    job = accepted(job_for(Settings(mode="img2img"), doc(), fmt=BGRA8))
    assert job.image.format == BGRA8 and job.result_format == BGRA8


def test_live_frames_are_marked_and_previews_asked_for():
    job = accepted(job_for(Settings(mode="inpaint"), doc(), live=True, previews=True))
    assert job.live is True and job.previews is True and job.id == "j1"


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(image=b"\0" * 12), "field 'image.data' holds 12 bytes but 8x8 rgba8 needs 256"),
        (dict(mask=bytes(8 * 8)), "mask is empty"),
        (dict(mask=None), "needs a selection"),
        (dict(image=None), "needs the image"),
        (dict(image_format="gray8"), "field 'image.format' must be one of rgba8, bgra8"),
        (
            dict(controls=(Control("canny", ImagePayload(4, 4, RGBA8, bytes(64))),)),
            "field 'controls\\[0\\].image' is 4x4 but the image is 8x8",
        ),
    ],
)
def test_bad_inputs_are_named(change, message):
    box = Box(0, 0, 8, 8)
    fields = dict(box=box, image=bytes(256), image_format=RGBA8, mask=b"\xff" * 64, controls=())
    fields.update(change)
    with pytest.raises(JobInputError, match=message):
        build_job(Settings(mode="inpaint"), JobInputs(**fields), job_id="x")


@pytest.mark.parametrize(
    "source, message",
    [
        (ControlSource("sketch", "fog"), "control layer 1: field 'type' must be one of canny"),
        (ControlSource("sketch", "canny", strength=2.5), "control layer 1: field 'strength' must be at most 2"),
        (ControlSource("sketch", "canny", start=0.9, end=0.1), "control layer 1: field 'start' \\(0.9\\) is after end"),
    ],
)
def test_a_control_layer_the_protocol_refuses_is_named_when_captured(source, message):
    with pytest.raises(JobInputError, match=message):
        job_for(Settings(mode="inpaint"), doc(), controls=[source])


def test_unknown_sampler_is_named():
    with pytest.raises(JobInputError, match="field 'sampler' must be one of .*, got 'heun'"):
        job_for(Settings(mode="img2img", sampler="heun"), doc())


def test_capture_reads_only_what_the_mode_needs():
    d = doc()
    reader = Reader(d, RGBA8)
    capture(Settings(mode="outpaint"), d.selection_bounds(), W, H, reader)
    assert [kind for kind, _box in reader.reads] == ["image"]
    reader = Reader(doc(False), RGBA8)
    capture(Settings(mode="generate"), Box(0, 0, 0, 0), W, H, reader)
    assert reader.reads == []


def test_edit_job_carries_the_box_the_mask_and_the_instruction_only_for_a_model_that_can():
    kontext = {"name": "k", "kind": "checkpoint", "family": "flux-kontext", "variant": "kontext", "edit": True}
    msg = accepted(job_for(Settings(mode="edit", model="k", prompt="make it red"), doc(), entry=kontext))
    assert msg.mode == "edit" and msg.image is not None and msg.mask is not None and msg.controls == ()
    assert msg.params.strength is None and msg.prompt == "make it red"
    whole = accepted(job_for(Settings(mode="edit", model="k"), doc(selected=False), entry=kontext))
    assert whole.mask is None and (whole.image.width, whole.image.height) == (W, H)
    with pytest.raises(JobInputError, match="Edit needs a model that edits from an instruction"):
        job_for(Settings(mode="edit", model="big"), doc(), entry=SDXL)


def test_decompose_job_carries_the_selections_box_and_the_layer_count_only_for_a_layered_model():
    layered = {"name": "l", "kind": "checkpoint", "arch": "qwen-image-layered", "decompose": True}
    settings = Settings(mode="decompose", model="l", layer_count=5, detail=True, hires=True, batch=3)
    msg = accepted(job_for(settings, doc(), entry=layered))
    box = doc().selection_bounds()
    assert msg.mode == "decompose" and msg.mask is None and (msg.x, msg.y) == (box.x, box.y)
    assert (msg.image.width, msg.image.height) == (box.width, box.height)
    assert msg.params.layer_count == 5 and msg.params.batch == 1
    assert not msg.params.hires.enabled and not msg.params.detail.enabled  # refused by the server: never sent
    for count in (1, 11):
        with pytest.raises(JobInputError, match="2 to 10 layers"):
            job_for(Settings(mode="decompose", model="l", layer_count=count), doc(), entry=layered)
    with pytest.raises(JobInputError, match="Decompose needs a model that splits a picture into layers"):
        job_for(Settings(mode="decompose", model="big"), doc(), entry=SDXL)


@pytest.mark.parametrize("mode", ["generate", "img2img", "upscale", "inpaint"])
def test_tileable_travels_only_for_the_modes_that_make_a_whole_picture(mode):
    msg = accepted(job_for(Settings(mode=mode, tileable=True), doc()))
    assert msg.params.tileable is (mode != "inpaint")
    assert accepted(job_for(Settings(mode=mode), doc())).params.tileable is False


# fills (issue 13)
@pytest.mark.parametrize("mode", ["inpaint", "outpaint"])
def test_fill_and_colour_match_travel_for_inpaint_and_outpaint(mode):
    s = Settings(mode=mode, fill="telea", color_match=True, extend_right=16)
    msg = accepted(job_for(s, doc()))
    assert msg.params.fill == "telea" and msg.params.color_match is True
    assert accepted(job_for(Settings(mode=mode, extend_right=16), doc())).params.fill == "patch"


# speed levels
@pytest.mark.parametrize("mode", ["generate", "img2img", "inpaint", "outpaint", "upscale"])
def test_the_speed_level_travels_for_the_diffusion_modes_and_not_chosen_is_left_to_a_style(mode):
    s = Settings(mode=mode, model="big", speed="fast", extend_right=16)
    assert accepted(job_for(s, doc(), entry=SDXL)).params.speed == ("" if mode == "upscale" else "fast")
    quality = accepted(job_for(s.replace(speed="quality", style="draft"), doc(), entry=SDXL))
    assert quality.params.speed == ("" if mode == "upscale" else "quality"), "an explicit Quality wins over the style"
    unset = accepted(job_for(s.replace(speed="", style="draft"), doc(), entry=SDXL))
    assert unset.params.speed == Params().speed == "", "the protocol's default: the style's level, else quality"
