"""Degenerate but valid jobs against a real server: 1-pixel sides, 1x64 and 64x1, masks of one pixel, empty and full
masks, extreme grow and feather, upscale by 1.0, on every mode of the classical engine and of a tiny SD1.5
(tests/factory.py). Each is answered with a result or a clear refusal naming its field, never ``internal``; and
the server never writes into what a client sent (received arrays are read-only).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocol.client import JobCancelled, JobFailed
from protocol.errors import INTERNAL
from protocol.images import BGRA8, GRAY8, RGBA8, ImagePayload
from protocol.messages import INPAINT_FILLS
from server.payloads import payload_to_array

MODELS = ("sd15", "sd15-inpaint")
SIDES = st.sampled_from([1, 1, 2, 3, 64])
GROWS = st.sampled_from([-1, 0, 1, 1024]) | st.integers(0, 1024)


def payload(arr: np.ndarray, fmt: str) -> dict:
    arr = np.ascontiguousarray(arr)
    if fmt == BGRA8:
        arr = np.ascontiguousarray(arr[..., [2, 1, 0, 3]])
    return {"width": arr.shape[1], "height": arr.shape[0], "format": fmt, "data": arr.tobytes()}


@st.composite
def images(draw, w: int, h: int) -> np.ndarray:
    alpha = draw(st.sampled_from(["opaque", "soft", "clear", "mixed"]))
    img = np.full((h, w, 4), draw(st.integers(0, 255)), np.uint8)
    img[..., 3] = {"opaque": 255, "soft": 128, "clear": 0}.get(alpha, 255)
    if alpha == "mixed":
        img[::2, ..., 3] = 0
    return img


@st.composite
def masks(draw, w: int, h: int) -> np.ndarray:
    kind = draw(st.sampled_from(["empty", "full", "one", "random"]))
    mask = np.zeros((h, w), np.uint8)
    if kind == "full":
        mask[:] = 255
    elif kind == "one":
        mask[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = draw(st.sampled_from([1, 128, 255]))
    elif kind == "random":
        mask[:] = np.random.default_rng(draw(st.integers(0, 99))).integers(0, 256, (h, w), dtype=np.uint8)
    return mask


@st.composite
def jobs(draw, model: str, modes) -> dict:
    mode = draw(st.sampled_from(modes))
    w, h = draw(SIDES), draw(SIDES)
    fmt = draw(st.sampled_from([RGBA8, BGRA8]))
    params: dict = {"steps": 1, "seed": 1}
    job = {"mode": mode, "model": model, "params": params, "result_format": fmt}
    if mode == "generate":
        params.update(width=w, height=h)
        return job
    job["image"] = payload(draw(images(w, h)), fmt)
    if mode == "upscale":
        job.pop("model")
        params["scale"] = draw(st.sampled_from([1.0, 1.0, 1.5, 2.0, 8.0]))
        return job
    if mode in ("inpaint", "img2img") and draw(st.booleans()):
        job["mask"] = payload(draw(masks(w, h)), GRAY8) if mode == "inpaint" else None
        if job["mask"] is None:
            job.pop("mask")
    params.update(grow=draw(GROWS), feather=draw(GROWS))
    if mode == "inpaint" and model == "classical":
        params["fill"] = draw(st.sampled_from(INPAINT_FILLS[:3]))
    if mode == "img2img":
        params["strength"] = draw(st.sampled_from([0.01, 0.5, 1.0]))
    if mode == "outpaint":
        sides = draw(
            st.fixed_dictionaries({k: st.sampled_from([0, 1, 64]) for k in ("left", "top", "right", "bottom")})
        )
        if not any(sides.values()):
            sides["left"] = 1
        params["extend"] = sides
    return job


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            text = self.format(record)
            if f"{os.sep}server{os.sep}cluster{os.sep}" not in text:  # a studio an earlier test module left behind
                self.seen.append(text)


@pytest.fixture(scope="module")
def tracebacks():
    handler = Tracebacks()
    logging.getLogger("paintbridge").addHandler(handler)
    yield handler
    logging.getLogger("paintbridge").removeHandler(handler)


def answer(client, job: dict, counted: bool = False):
    """The result, or the refusal: never ``internal``; a refusal names its field. ``counted``: each outcome is a
    Hypothesis event (``--hypothesis-show-statistics`` lists them)."""

    def outcome(text: str) -> None:
        if counted:
            event(f"{job['mode']}: {text}")

    try:
        result = client.run(job, timeout=600)
    except JobFailed as err:
        assert err.code != INTERNAL, f"{err.code}: {err}"
        assert err.code in ("bad_request", "unsupported", "model_not_found") and (
            err.field or err.code != "bad_request"
        ), (err.code, err.field, str(err))
        outcome(f"{err.code} ({err.field})")
        return err
    except JobCancelled:
        raise AssertionError("nobody cancelled this job") from None
    outcome("result")
    for layer in result.layers:
        assert layer.width >= 1 and layer.height >= 1 and len(layer.data) == layer.width * layer.height * 4
    return result


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(jobs("classical", ["inpaint", "outpaint", "upscale"]))
def test_degenerate_jobs_on_the_classical_engine_never_answer_internal(client, tracebacks, job):
    answer(client, job, counted=True)
    assert tracebacks.seen == []


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(["tiny-sd15", "tiny-sd15-inpaint"]).flatmap(
        lambda model: jobs(model, ["generate", "img2img", "inpaint", "outpaint"])
    )
)
def test_degenerate_jobs_on_a_tiny_sd15_never_answer_internal(client, tracebacks, job):
    answer(client, job, counted=True)
    assert tracebacks.seen == []


@pytest.mark.parametrize("w,h", [(1, 1), (1, 64), (64, 1)])
def test_upscale_by_1_of_an_opaque_sliver_gives_the_same_pixels(client, w, h):
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = np.arange(w * h, dtype=np.uint8).reshape(h, w)
    img[..., 3] = 255
    result = answer(client, {"mode": "upscale", "image": payload(img, RGBA8), "params": {"scale": 1.0}})
    (layer,) = result.layers
    assert (layer.width, layer.height) == (w, h)
    assert np.frombuffer(layer.data, np.uint8).reshape(h, w, 4).tolist() == img.tolist()


@pytest.mark.parametrize("feather", [0, 3, 1024])
def test_a_1x1_inpaint_with_a_full_mask_is_filled(client, feather):
    img = np.full((1, 1, 4), 200, np.uint8)
    result = answer(
        client,
        {
            "mode": "inpaint",
            "model": "classical",
            "image": payload(img, RGBA8),
            "mask": payload(np.full((1, 1), 255, np.uint8), GRAY8),
            "params": {"grow": 1024, "feather": feather},
        },
    )
    (layer,) = result.layers
    assert (layer.width, layer.height) == (1, 1) and layer.data[3] == 255


@pytest.mark.parametrize("fmt", [RGBA8, BGRA8, GRAY8])
def test_received_pixels_are_read_only(fmt):
    channels = 1 if fmt == GRAY8 else 4
    arr = payload_to_array(ImagePayload(3, 2, fmt, bytes(range(3 * 2 * channels))))
    assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        arr[0, 0] = 1
