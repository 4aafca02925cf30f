"""Unit tests of the wire contract: validation, codec, payloads, geometry."""

from __future__ import annotations

import msgpack
import pytest

from protocol import Box, Limits, ProtocolError, context_box, parse_client_message
from protocol.codec import decode, encode
from protocol.geometry import crop_gray, selection_bounds_from_mask
from protocol.images import convert_pixels, parse_payload
from protocol.messages import check_compatible, job_params_defaults, parse_server_message, parse_version


def image(w: int = 4, h: int = 3, fmt: str = "rgba8") -> dict:
    bpp = 1 if fmt == "gray8" else 4
    return {"width": w, "height": h, "format": fmt, "data": bytes(range(256)) * (w * h * bpp // 256) +
            bytes(w * h * bpp % 256)}


def job(**overrides) -> dict:
    msg = {"type": "job", "id": "j1", "mode": "inpaint", "image": image(), "mask": image(fmt="gray8")}
    msg.update(overrides)
    return msg


def error_of(msg, limits: Limits = Limits()) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(msg, limits)
    return info.value


def test_valid_job_gets_defaults_and_drops_unknown_fields():
    parsed = parse_client_message(job(extra_field=1, params={"steps": 4, "future": "x"}))
    assert parsed["params"]["steps"] == 4
    assert parsed["params"]["seed"] == -1
    assert "future" not in parsed["params"] and "extra_field" not in parsed
    assert parsed["image"].width == 4 and parsed["mask"].format == "gray8"
    assert parsed["controls"] == [] and parsed["result_format"] == "rgba8"


@pytest.mark.parametrize("msg, field, words", [
    ({"id": "x"}, "type", "missing"),
    ({"type": 3}, "type", "string"),
    ({"type": "fly"}, "type", "unknown message type"),
    (job(id=None), "id", "missing"),
    (job(id=5), "id", "string"),
    (job(mode="paint"), "mode", "one of"),
    (job(params={"steps": "10"}), "params.steps", "integer"),
    (job(params={"steps": 0}), "params.steps", "at least"),
    (job(params={"strength": 1.5}), "params.strength", "at most"),
    (job(params={"seed": True}), "params.seed", "integer"),
    (job(params={"sampler": "Heun++"}), "params.sampler", "one of"),
    (job(params={"batch": 99}), "params.batch", "at most"),
    (job(params=[1, 2]), "params", "map"),
    (job(image=None), "image", "missing"),
    (job(image={"width": 4, "height": 3, "format": "rgba8"}), "image.data", "missing"),
    (job(image={"width": 4, "height": 3, "format": "rgb16", "data": b""}), "image.format", "one of"),
    (job(image={"width": 4, "height": -3, "format": "rgba8", "data": b""}), "image.height", "positive"),
    (job(image={"width": 4.0, "height": 3, "format": "rgba8", "data": b""}), "image.width", "integer"),
    (job(image=dict(image(), data=b"\x00" * 47)), "image.data", "holds 47 bytes"),
    (job(image=dict(image(), data="text")), "image.data", "binary"),
    (job(mask=image(w=5, fmt="gray8")), "mask", "is 5x3"),
    (job(mask=image()), "mask.format", "one of gray8"),
    (job(mode="outpaint"), "params.extend", "all zero"),
    (job(mode="preprocess"), "params.preprocessor", "missing"),
    (job(controls=[{"type": "canny"}]), "controls[0].image", "missing"),
    (job(controls=[{"type": "edges", "image": image()}]), "controls[0].type", "one of"),
    (job(controls=[{"type": "canny", "image": image(), "start": 0.8, "end": 0.2}]), "controls[0].start", "after"),
    (job(controls={"type": "canny"}), "controls", "list"),
    (job(prompt=b"bytes"), "prompt", "string"),
    (job(mode="generate", image=None, mask=None), "params.width", "must be given"),
    ({"type": "hello", "client": "x"}, "protocol", "missing"),
    ({"type": "cancel"}, "id", "missing"),
])
def test_bad_fields_are_named(msg, field, words):
    err = error_of(msg)
    assert err.code == "bad_request"
    assert err.field == field
    assert words in err.message and f"'{field}'" in err.message or field == "type"


def test_job_errors_carry_the_job_id():
    assert error_of(job(params={"steps": -1})).job_id == "j1"
    assert error_of(job(params={"steps": -1})).to_message()["id"] == "j1"


def test_oversized_image_is_refused_before_the_bytes_are_read():
    huge = {"width": 100000, "height": 100000, "format": "rgba8", "data": b""}
    err = error_of(job(image=huge))
    assert err.code == "too_large" and err.field == "image.width"
    err = error_of(job(image={"width": 5000, "height": 5000, "format": "rgba8", "data": b""}),
                   Limits(max_pixels=1000 * 1000))
    assert err.code == "too_large" and "25000000 px" in err.message


def test_versions():
    assert parse_version("1.2") == (1, 2)
    with pytest.raises(ProtocolError):
        parse_version("1")
    check_compatible("1.7")  # a newer minor is fine
    with pytest.raises(ProtocolError) as info:
        check_compatible("2.0")
    assert info.value.code == "version_mismatch" and "update the server" in info.value.message
    with pytest.raises(ProtocolError) as info:
        check_compatible("0.9")
    assert "update the client" in info.value.message


def test_codec_round_trip_and_garbage():
    msg = {"type": "job", "id": "a", "data": b"\x00\xff"}
    assert decode(encode(msg)) == msg
    for frame, words in [(b"\xc1\xc1", "not valid msgpack"), ("text", "text frames"),
                         (msgpack.packb(1) + msgpack.packb(2), "more than one"), (b"", "not valid msgpack")]:
        with pytest.raises(ProtocolError) as info:
            decode(frame)
        assert words in info.value.message
    with pytest.raises(ProtocolError) as info:
        decode(b"x" * 100, max_bytes=10)
    assert info.value.code == "too_large"


def test_pixel_conversions():
    rgba = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    bgra = convert_pixels(rgba, "rgba8", "bgra8")
    assert bgra == bytes([3, 2, 1, 4, 7, 6, 5, 8])
    assert convert_pixels(bgra, "bgra8", "rgba8") == rgba
    assert convert_pixels(bytes([9, 200]), "gray8", "rgba8") == bytes([9, 9, 9, 255, 200, 200, 200, 255])
    assert convert_pixels(bytes([255, 255, 255, 255, 0, 0, 0, 255]), "rgba8", "gray8") == bytes([255, 0])


def test_payload_checks_declared_size():
    ok = parse_payload(image(2, 2), "image", 100)
    assert ok.to_wire()["width"] == 2
    with pytest.raises(ProtocolError):
        parse_payload("not a map", "image", 100)


def test_context_box_pads_snaps_and_clamps():
    box = context_box(Box(100, 100, 50, 40), 1000, 800)
    assert box.x <= 100 - 15 and box.right >= 150 + 15
    assert box.x % 8 == 0 and box.y % 8 == 0 and box.width % 8 == 0 and box.height % 8 == 0
    edge = context_box(Box(0, 0, 10, 10), 300, 200)
    assert edge.x == 0 and edge.y == 0 and edge.width >= 64 and edge.height >= 64
    corner = context_box(Box(290, 190, 10, 10), 300, 200)
    assert corner.right == 300 and corner.bottom == 200
    assert context_box(Box(0, 0, 0, 0), 300, 200) == Box(0, 0, 300, 200)
    big = context_box(Box(0, 0, 6000, 4000), 6000, 4000)
    assert big == Box(0, 0, 6000, 4000)
    small_on_big = context_box(Box(3000, 2000, 100, 100), 6000, 4000)
    assert 100 < small_on_big.width < 300


def test_selection_bounds_and_crop():
    w, h = 6, 5
    mask = bytearray(w * h)
    mask[2 * w + 1] = 255
    mask[3 * w + 4] = 10
    assert selection_bounds_from_mask(bytes(mask), w, h) == Box(1, 2, 4, 2)
    assert selection_bounds_from_mask(bytes(w * h), w, h).is_empty
    assert crop_gray(bytes(mask), w, Box(1, 2, 4, 2)) == bytes([255, 0, 0, 0, 0, 0, 0, 10])


def test_params_defaults_and_server_messages():
    defaults = job_params_defaults()
    assert defaults["steps"] == 20 and defaults["extend"] == {"left": 0, "top": 0, "right": 0, "bottom": 0}
    assert parse_server_message({"type": "queued", "id": "a"})["position"] == 0
    with pytest.raises(ProtocolError):
        parse_server_message({"type": "job", "id": "a"})


def test_what_a_job_would_make_is_checked_against_the_pixel_limit():
    limits = Limits(max_pixels=100 * 100)
    err = error_of(job(mode="generate", image=None, mask=None, params={"width": 200, "height": 200}), limits)
    assert err.code == "too_large" and err.field == "params.width" and "40000 px" in err.message
    err = error_of(job(mode="outpaint", mask=None, params={"extend": {"left": 8000, "right": 8000}}), limits)
    assert err.code == "too_large" and err.field == "params.extend" and "16004x3" in err.message
    parse_client_message(job(mode="outpaint", mask=None, params={"extend": {"left": 10}}), limits)
