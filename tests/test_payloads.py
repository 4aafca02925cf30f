"""Image payloads end to end: byte-exact round trips in every pixel format, no needless copies, sizes checked before
anything is allocated, the classical engine's work kept to the area it changes, and a 6000x4000 document outpainted
and upscaled over loopback."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from protocol import Limits
from protocol.client import Client
import msgpack

from protocol.codec import BIG_BIN, FRAGMENT_BYTES, decode, encode, encode_pieces, fragments
from protocol.errors import ProtocolError
from protocol.images import BGRA8, GRAY8, LUMA_CHUNK, RGBA8, ImagePayload, convert_pixels, parse_payload
from protocol.messages import Extend, Job, Params
from server import imageops
from server.core import Job as EngineJob, JobContext, Layer
from server.payloads import encode_layers, job_from_message, payload_to_array

FORMATS = (RGBA8, BGRA8, GRAY8)
# The 6000x4000 jobs' buffers would each fault their pages in afresh.
pytestmark = pytest.mark.usefixtures("freed_memory_kept")


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def luma_reference(data: bytes, src: str) -> bytes:
    px = np.frombuffer(data, np.uint8).reshape(-1, 4).astype(np.int32)  # 1000 * 255 + 500 fits
    r, b = (px[:, 0], px[:, 2]) if src == RGBA8 else (px[:, 2], px[:, 0])
    return ((299 * r + 587 * px[:, 1] + 114 * b + 500) // 1000).astype(np.uint8).tobytes()


# --- protocol side ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_payload_round_trips_byte_exact_and_is_not_copied_on_the_way_out(fmt, kind):
    w, h = 37, 23
    raw = random_bytes(w * h * (1 if fmt == GRAY8 else 4))
    data = kind(raw)
    payload = ImagePayload(w, h, fmt, data)
    wire = payload.to_wire()
    assert wire["data"] is data  # handed to msgpack as it is
    back = parse_payload(decode(encode({"image": wire}))["image"], "image", w * h)
    assert (back.width, back.height, back.format) == (w, h, fmt) and bytes(back.data) == raw


def test_large_frames_go_as_fragments_of_one_message_without_copies():
    small = encode({"type": "x"})
    assert fragments(small) is small
    raw = random_bytes(3 * FRAGMENT_BYTES + 5)
    frame = encode({"type": "job", "data": raw})
    parts = fragments(frame)
    assert [len(p) for p in parts] == [FRAGMENT_BYTES] * 3 + [len(frame) - 3 * FRAGMENT_BYTES]
    assert all(p.obj is parts[0].obj for p in parts)  # views of the one packed frame
    assert decode(b"".join(parts))["data"] == raw


def test_pieces_pack_exactly_like_msgpack_and_hand_large_values_over_uncopied():
    big = np.random.default_rng(3).integers(0, 256, (300, 200, 4), dtype=np.uint8)
    raw = random_bytes(2 * FRAGMENT_BYTES + 11)
    message = {
        "type": "job",
        "id": "j1",
        "n": [1, -2, 3.5, None, True, "é"],
        "image": {"data": raw, "w": 7},
        "layers": ({"data": memoryview(big), "seed": 2**40}, {"data": bytearray(b"small"), "x": -1}),
        "edge": b"e" * BIG_BIN,
        "below": b"b" * (BIG_BIN - 1),
    }
    pieces = encode_pieces(message)
    assert b"".join(pieces) == msgpack.packb(message, use_bin_type=True) == bytes(encode(message))
    handed = [p for p in pieces if isinstance(p, memoryview)]
    assert len(handed) == 3 and all(p.obj is o for p, o in zip(handed, (raw, big, message["edge"])))  # not copies
    assert sum(len(p) for p in pieces if not isinstance(p, memoryview)) < 300 + BIG_BIN  # the rest, "below" too
    parts = fragments(pieces)
    assert max(len(p) for p in parts) <= FRAGMENT_BYTES and decode(b"".join(parts)) == decode(encode(message))
    small = fragments(encode_pieces({"type": "x", "data": b"y" * BIG_BIN}))
    assert isinstance(small, bytes) and decode(small)["data"] == b"y" * BIG_BIN  # one frame


def test_pieces_refuse_a_strided_buffer_like_msgpack_does():
    arr = np.zeros((300, 300, 4), np.uint8)
    with pytest.raises(ValueError, match="contiguous"):
        encode_pieces({"data": memoryview(arr[:, ::2])})


def test_a_received_payload_keeps_its_bytes_object():
    raw = random_bytes(4 * 6 * 4)
    assert parse_payload({"width": 4, "height": 6, "format": RGBA8, "data": raw}, "image", 100).data is raw


def test_a_numpy_memoryview_is_taken_as_flat_bytes_and_a_strided_one_is_refused():
    arr = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
    ok = parse_payload({"width": 3, "height": 5, "format": RGBA8, "data": memoryview(arr)}, "image", 100)
    assert len(ok.data) == arr.size and bytes(ok.data) == arr.tobytes()
    with pytest.raises(ProtocolError) as info:
        parse_payload({"width": 3, "height": 5, "format": GRAY8, "data": memoryview(arr[..., 0])}, "image", 100)
    assert info.value.field == "image.data" and "contiguous" in info.value.message


def test_sizes_are_checked_before_the_bytes_are_touched():
    class Untouchable:  # any access to the pixel data would fail the test
        def __len__(self):
            raise AssertionError("the data was read before the size check")

    for declared, limit, field in [((20000, 10), 10**9, "image.width"), ((9000, 9000), Limits().max_pixels, "image")]:
        with pytest.raises(ProtocolError) as info:
            parse_payload(
                {"width": declared[0], "height": declared[1], "format": RGBA8, "data": Untouchable()}, "image", limit
            )
        assert info.value.code == "too_large" and info.value.field == field


def test_default_limits_take_a_6000x4000_photo_with_room_to_outpaint():
    limits = Limits()
    assert 6000 * 4000 * 2 <= limits.max_pixels
    assert 6000 * 4000 * 5 + (1 << 20) <= limits.max_frame_bytes  # image and mask in one frame
    assert 12000 * 8000 * 4 + (1 << 20) <= limits.max_frame_bytes  # its 2x upscale back


@pytest.mark.parametrize("n", [1, 7, LUMA_CHUNK + 3])
def test_luma_is_exact_for_any_length(n):
    data = random_bytes(4 * n, seed=n)
    for src in (RGBA8, BGRA8):
        assert convert_pixels(data, src, GRAY8) == luma_reference(data, src)
        assert convert_pixels(memoryview(data), src, GRAY8) == luma_reference(data, src)


def test_luma_of_every_colour():
    v = np.arange(256**3, dtype=np.uint32)
    px = np.empty((256**3, 4), np.uint8)
    px[:, 0], px[:, 1], px[:, 2], px[:, 3] = v >> 16, (v >> 8) & 255, v & 255, v & 255
    px = px.tobytes()
    assert convert_pixels(px, RGBA8, GRAY8) == luma_reference(px, RGBA8)


def test_channel_order_and_gray_expansion_round_trip():
    rgba = random_bytes(4 * 1001)
    bgra = convert_pixels(memoryview(rgba), RGBA8, BGRA8)
    assert convert_pixels(bytearray(bgra), BGRA8, RGBA8) == rgba
    expected = np.frombuffer(rgba, np.uint8).reshape(-1, 4)[:, [2, 1, 0, 3]].tobytes()
    assert bgra == expected
    gray = random_bytes(999)
    out = np.frombuffer(convert_pixels(gray, GRAY8, RGBA8), np.uint8).reshape(-1, 4)
    g = np.frombuffer(gray, np.uint8)
    assert (out[:, :3] == g[:, None]).all() and (out[:, 3] == 255).all()


# --- server side -----------------------------------------------------------------------------------------------------


def test_server_views_rgba_and_gray_in_place_and_swaps_bgra_once():
    w, h = 19, 11
    rgba = np.random.default_rng(3).integers(0, 256, (h, w, 4), dtype=np.uint8)
    raw = rgba.tobytes()
    view = payload_to_array(ImagePayload(w, h, RGBA8, raw))
    assert np.shares_memory(view, np.frombuffer(raw, np.uint8)) and not view.flags.writeable
    assert (view == rgba).all()
    bgra = rgba[..., [2, 1, 0, 3]].tobytes()
    swapped = payload_to_array(ImagePayload(w, h, BGRA8, bgra))
    assert (swapped == rgba).all() and not swapped.flags.writeable  # read-only like every received array
    mask = payload_to_array(ImagePayload(w, h, GRAY8, rgba[..., 0].tobytes()))
    assert mask.shape == (h, w) and (mask == rgba[..., 0]).all()


@pytest.mark.parametrize("fmt", [RGBA8, BGRA8])
def test_pixels_go_through_the_server_codec_byte_exact(fmt):
    """A job's image decoded by the server and sent straight back as a layer in the same format is the same bytes."""
    w, h = 33, 17
    raw = random_bytes(w * h * 4, seed=5)
    msg = Job("j", "img2img", image=ImagePayload(w, h, fmt, raw), result_format=fmt)
    wire = decode(encode(msg.to_wire()))
    job = job_from_message(Job.from_wire(wire))
    assert job.image_bgra == (fmt == BGRA8)  # (a bgra8 image kept in its order until an engine needs RGBA)
    (layer,) = encode_layers([Layer("same", job.image, 0, 0, bgra=job.image_bgra)], fmt)
    assert bytes(layer.data) == raw
    assert np.shares_memory(np.frombuffer(layer.data, np.uint8), job.image)  # no swap either way
    rgba = imageops.job_in_rgba(job)
    assert not rgba.image_bgra and not rgba.image.flags.writeable
    assert np.array_equal(rgba.image, convert_to_rgba(raw, fmt).reshape(h, w, 4))
    (layer,) = encode_layers([Layer("same", rgba.image, 0, 0)], fmt)
    assert bytes(layer.data) == raw
    back = decode(encode(layer.to_wire()))
    assert back["data"] == raw and back["format"] == fmt


def convert_to_rgba(raw: bytes, fmt: str) -> np.ndarray:
    return np.frombuffer(convert_pixels(raw, fmt, RGBA8) if fmt != RGBA8 else raw, np.uint8)


@pytest.mark.parametrize("fill", ["telea", "ns", "patch"])
def test_a_bgra8_outpaint_is_done_in_the_clients_order_with_the_rgba8_result(fill):
    """The classical outpaint works on a bgra8 image as it came and answers in that order: the same pixels as the
    rgba8 job's, swapped (a long side, so the bands are filled shortened, as on a large document)."""
    from server.router import Router
    from server.config import ServerConfig

    h, w = 90, 700
    img = cv2.GaussianBlur(np.random.default_rng(11).integers(0, 256, (h, w, 4), dtype=np.uint8), (0, 0), 2)
    bgra = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    router = Router(ServerConfig(model_dirs=[]))
    layers = {}
    for fmt, pixels in ((RGBA8, img), (BGRA8, bgra)):
        msg = Job(
            "o",
            "outpaint",
            model="classical",
            image=ImagePayload(w, h, fmt, pixels.tobytes()),
            params=Params(extend=Extend(8, 5, 12, 9), fill=fill),
            result_format=fmt,
        )
        (layers[fmt],) = router.run(job_from_message(Job.from_wire(decode(encode(msg.to_wire())))), JobContext())
    assert layers[BGRA8].bgra and not layers[RGBA8].bgra
    assert np.array_equal(cv2.cvtColor(layers[BGRA8].rgba, cv2.COLOR_BGRA2RGBA), layers[RGBA8].rgba)
    (sent,) = encode_layers([layers[BGRA8]], BGRA8)
    assert np.shares_memory(np.frombuffer(sent.data, np.uint8), layers[BGRA8].rgba)  # sent without a swap
    assert convert_to_rgba(bytes(sent.data), BGRA8).tobytes() == layers[RGBA8].rgba.tobytes()


@pytest.mark.parametrize("params", [{"mode": "inpaint"}, {"mode": "outpaint", "color_match": True}])
def test_a_bgra8_job_that_needs_rgba_gets_it(params):
    """Work that depends on the channel order (an inpaint's composite, colour matching in Lab) gets the image swapped
    to RGBA once: the same result as the rgba8 job's."""
    from server.router import Router
    from server.config import ServerConfig

    h, w = 60, 80
    img = np.random.default_rng(12).integers(0, 256, (h, w, 4), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[20:40, 30:50] = 255
    router = Router(ServerConfig(model_dirs=[]))
    results = []
    for fmt, pixels in ((RGBA8, img), (BGRA8, cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA))):
        msg = Job(
            "j",
            params["mode"],
            model="classical",
            image=ImagePayload(w, h, fmt, pixels.tobytes()),
            mask=ImagePayload(w, h, GRAY8, mask.tobytes()) if params["mode"] == "inpaint" else None,
            params=Params(
                fill="telea",
                extend=Extend(4, 4, 4, 4) if params["mode"] == "outpaint" else Extend(),
                color_match=params.get("color_match", False),
            ),
        )
        (layer,) = router.run(job_from_message(Job.from_wire(decode(encode(msg.to_wire())))), JobContext())
        assert not layer.bgra
        results.append(layer.rgba)
    assert np.array_equal(results[0], results[1])


def test_an_rgba_result_layer_is_sent_from_the_engines_own_array():
    rgba = np.random.default_rng(4).integers(0, 256, (9, 7, 4), dtype=np.uint8)
    (layer,) = encode_layers([Layer("x", rgba, 1, 2)], RGBA8)
    assert np.shares_memory(np.frombuffer(layer.data, np.uint8), rgba)


# --- classical engine: work where it changes, exact elsewhere --------------------------------------------------------


@pytest.mark.parametrize(
    "extend", [Extend(8, 8, 8, 8), Extend(40, 0, 7, 100), Extend(0, 30, 0, 0), Extend(300, 200, 0, 1)]
)
def test_outpaint_keeps_the_image_bit_exact_and_fills_only_the_new_bands(extend):
    h, w = 120, 90
    img = np.random.default_rng(6).integers(0, 256, (h, w, 4), dtype=np.uint8)
    out = imageops.outpaint_layer(img, extend)
    top, left = extend.top, extend.left
    assert out.shape == (h + top + extend.bottom, w + left + extend.right, 4)
    inner = out[top : top + h, left : left + w]
    assert (inner[..., :3] == img[..., :3]).all() and (inner[..., 3] == 0).all()
    new = np.ones(out.shape[:2], bool)
    new[top : top + h, left : left + w] = False
    assert (out[..., 3][new] == 255).all()
    # The new area is filled from the image (random pixels average about 127), not left black.
    assert abs(float(out[..., :3][new].mean()) - float(img[..., :3].mean())) < 30


@pytest.mark.parametrize("method", ["telea", "patch"])
def test_opposite_bands_filled_at_once_give_the_pixels_of_one_after_the_other(monkeypatch, method):
    img = np.random.default_rng(8).integers(0, 256, (300, 260, 4), dtype=np.uint8)
    extend = Extend(12, 9, 20, 6)
    started = []
    import threading

    real_thread = threading.Thread

    def counted(*args, **kwargs):
        started.append(1)
        return real_thread(*args, **kwargs)

    monkeypatch.setattr(threading, "Thread", counted)
    together = imageops.outpaint_layer(img, extend, method)
    assert len(started) == 2  # top with bottom, then left with right
    monkeypatch.setattr(imageops, "_apart", lambda a, b: False)  # strips that touch: one band after the other
    assert (imageops.outpaint_layer(img, extend, method) == together).all() and len(started) == 2


def test_a_large_outpaint_by_a_few_pixels_is_exact_inside(tmp_path):
    img = np.random.default_rng(7).integers(0, 256, (3000, 4000, 4), dtype=np.uint8)
    out = imageops.outpaint_layer(img, Extend(8, 8, 8, 8))
    assert (out[8:-8, 8:-8, :3] == img[..., :3]).all() and not out[8:-8, 8:-8, 3].any()
    assert (out[:8, :, 3] == 255).all() and (out[:, -8:, 3] == 255).all()


@pytest.mark.parametrize("grow,feather", [(0, 0), (3, 5), (-1, -1), (12, 20)])
def test_masks_worked_out_on_their_box_equal_the_whole_image_computation(grow, feather):
    h, w = 300, 400
    mask = np.zeros((h, w), np.uint8)
    mask[120:150, 200:260] = 255
    mask[140:145, 255:300] = 128
    job = EngineJob(
        "m", "inpaint", image=np.zeros((h, w, 4), np.uint8), mask=mask, params=Params(grow=grow, feather=feather)
    )
    grown, soft = imageops.prepare_mask(job)
    g = grow if grow >= 0 else imageops.default_grow(mask)
    f = feather if feather >= 0 else imageops.default_feather(mask)
    full_grown = imageops.grow_mask(mask, g)
    assert (grown == full_grown).all()
    assert (soft == np.maximum(imageops.feather_mask(full_grown, f), mask)).all()


def test_classical_fill_changes_only_the_hole_and_composite_is_exact_outside():
    rng = np.random.default_rng(8)
    rgb = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    hole = np.zeros((200, 300), np.uint8)
    hole[50:70, 100:180] = 255
    filled = imageops.fill(rgb, hole)
    assert (filled[hole == 0] == rgb[hole == 0]).all() and (filled[hole > 0] != rgb[hole > 0]).any()
    rgba = np.dstack([rgb, np.full((200, 300), 255, np.uint8)])
    soft = hole // 2
    layer = imageops.composite_layer(rgba, filled, soft)
    assert (layer[..., :3][soft == 0] == rgb[soft == 0]).all() and (layer[..., 3] == soft).all()
    assert (layer[..., :3][soft > 0] == filled[soft > 0]).all()


# --- a 6000x4000 document over loopback -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 6000x4000 RGBA "photo": smooth gradients plus noise."""
    h, w = 4000, 6000
    img = np.empty((h, w, 4), np.uint8)
    img[..., 0] = (np.arange(w) * 255 // (w - 1)).astype(np.uint8)[None, :]
    img[..., 1] = (np.arange(h) * 255 // (h - 1)).astype(np.uint8)[:, None]
    img[..., 2] = np.random.default_rng(9).integers(0, 256, (h, w), dtype=np.uint8)
    img[..., 3] = 255
    return img


def test_a_6000x4000_photo_is_outpainted_over_loopback(start_server, photo):
    server = start_server()
    h, w = photo.shape[:2]
    bgra = memoryview(cv2.cvtColor(photo, cv2.COLOR_RGBA2BGRA)).cast("B")  # Krita's order, sent without a copy
    with Client(server.url, "test") as client:
        result = client.run(
            Job(
                "big-outpaint",
                "outpaint",
                model="classical",
                image=ImagePayload(w, h, BGRA8, bgra),
                params=Params(extend=Extend(8, 16, 24, 32)),
                result_format=BGRA8,
                x=0,
                y=0,
            )
        )
    (layer,) = result.layers
    assert (layer.x, layer.y, layer.width, layer.height) == (-8, -16, w + 32, h + 48)
    out = cv2.cvtColor(np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4), cv2.COLOR_BGRA2RGBA)
    inner = out[16 : 16 + h, 8 : 8 + w]
    assert (inner[..., :3] == photo[..., :3]).all() and not inner[..., 3].any()
    assert (out[:16, :, 3] == 255).all() and (out[-32:, :, 3] == 255).all()


def test_a_6000x4000_photo_is_upscaled_2x_over_loopback(start_server, photo):
    server = start_server()
    h, w = photo.shape[:2]
    with Client(server.url, "test") as client:
        result = client.run(
            Job("big-upscale", "upscale", image=ImagePayload(w, h, RGBA8, photo.tobytes()), params=Params(scale=2.0))
        )
    (layer,) = result.layers
    assert (layer.width, layer.height) == (2 * w, 2 * h)
    out = np.frombuffer(layer.data, np.uint8).reshape(2 * h, 2 * w, 4)
    # Lanczos 2x of a horizontal red ramp stays a ramp: sample a row.
    red = out[4000, ::1000, 0].astype(int)
    assert (np.diff(red) > 0).all() and (out[..., 3][::997, ::991] == 255).all()
