"""Property-based fuzzing of the protocol parser and of a live server over loopback (bounded: a few seconds each).

The parser may only ever answer ``ProtocolError`` (never another exception), and every valid message survives the
wire. The server answers any frame with messages a client can parse and keeps the connection: after the fuzzing, the
same connection still runs a real job.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from protocol import Limits
from protocol.codec import decode, encode
from protocol.connection import SERVER, Connection
from protocol.errors import ProtocolError
from protocol.images import BGRA8, GRAY8, RGBA8, ImagePayload
from protocol.messages import (
    CONTROL_TYPES,
    INPAINT_FILLS,
    MODES,
    SAMPLERS,
    Cancel,
    Control,
    Extend,
    Hello,
    Job,
    ListModels,
    Params,
    parse_client_message,
    parse_server_message,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
LIMITS = Limits(max_pixels=64 * 64, max_frame_bytes=1 << 20)

# --- arbitrary values: anything msgpack can carry, shaped like the protocol's maps where it helps ---------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=True)
    | st.text(max_size=80)
    | st.binary(max_size=80)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
payload_maps = st.fixed_dictionaries(
    {},
    optional={
        "width": st.integers(-2, 70) | values,
        "height": st.integers(-2, 70) | values,
        "format": st.sampled_from((RGBA8, BGRA8, GRAY8, "png")) | values,
        "data": st.binary(max_size=64) | values,
    },
)
FIELD_NAMES = sorted({s.name for cls in (Hello, Job, Cancel) for s in cls.specs()})
PARAM_NAMES = [s.name for s in Params.specs()]
params_maps = st.dictionaries(
    st.sampled_from(PARAM_NAMES),
    values | st.dictionaries(st.sampled_from(["left", "top", "right", "bottom"]), values),
    max_size=5,
)
control_maps = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(CONTROL_TYPES) | values,
        "image": payload_maps | values,
        "strength": values,
        "start": values,
        "end": values,
        "model": values,
    },
)
shaped_maps = st.fixed_dictionaries(
    {"type": st.sampled_from(("hello", "job", "cancel", "list_models", "welcome", "")) | values},
    optional={
        **{name: values for name in FIELD_NAMES},
        "image": payload_maps,
        "mask": payload_maps,
        "params": params_maps | values,
        "controls": st.lists(control_maps, max_size=3) | values,
        "id": st.text(max_size=70),
        "mode": st.sampled_from(MODES) | values,
    },
)
anything = values | shaped_maps


@FUZZ
@given(anything)
def test_the_parser_answers_only_protocol_errors(value):
    for parse in (lambda v: parse_client_message(v, LIMITS), parse_server_message):
        try:
            parse(value)
        except ProtocolError as err:
            assert err.code and err.message
    if _packable(value):  # the same value as a frame, after a hello, through the order rules
        conn = Connection(SERVER, LIMITS)
        conn.receive_data(encode({"type": "hello", "protocol": "1.1", "client": "fuzz"}))
        try:
            conn.receive_data(encode(value))
        except ProtocolError as err:
            assert err.code and err.message


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_are_protocol_errors(frame):
    conn = Connection(SERVER, LIMITS)
    try:
        conn.receive_data(frame)
    except ProtocolError as err:
        assert err.code in ("bad_request", "too_large")


def _packable(value) -> bool:
    try:
        encode(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


# --- valid messages round-trip ---------------------------------------------------------------------------------------
ids = st.text(min_size=1, max_size=64)
unit = st.floats(0.0, 1.0)
extends = st.builds(Extend, *[st.integers(0, 8192)] * 4)
params = st.builds(
    Params,
    steps=st.integers(1, 150),
    strength=st.none() | unit,
    cfg=st.none() | st.floats(0.0, 30.0),
    sampler=st.sampled_from(("",) + SAMPLERS),
    seed=st.integers(-1, 2**32 - 1),
    batch=st.integers(1, 8),
    grow=st.integers(-1, 1024),
    feather=st.integers(-1, 1024),
    fill=st.sampled_from(INPAINT_FILLS),
    scale=st.floats(1.0, 8.0),
    upscaler=st.text(max_size=20),
    refine=unit,
    tile=st.integers(0, 4096),
    extend=extends,
    low_threshold=st.integers(0, 255),
    high_threshold=st.integers(0, 255),
)


@st.composite
def jobs(draw) -> Job:
    w, h = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    fmt = draw(st.sampled_from((RGBA8, BGRA8)))
    image = ImagePayload(w, h, fmt, draw(st.binary(min_size=w * h * 4, max_size=w * h * 4)))
    mask = draw(st.none() | st.just(ImagePayload(w, h, GRAY8, bytes(w * h))))
    start = draw(unit)
    controls = draw(
        st.lists(
            st.builds(
                Control,
                type=st.sampled_from(CONTROL_TYPES),
                image=st.just(image),
                strength=st.floats(0.0, 2.0),
                start=st.just(start),
                end=st.floats(start, 1.0),
                preprocess=st.booleans(),
                model=st.text(max_size=20),
            ),
            max_size=2,
        )
    )
    return Job(
        draw(ids),
        draw(st.sampled_from(("img2img", "inpaint", "upscale"))),
        model=draw(st.text(max_size=30)),
        prompt=draw(st.text(max_size=100)),
        negative_prompt=draw(st.text(max_size=30)),
        image=image,
        mask=mask,
        controls=tuple(controls),
        params=draw(params),
        x=draw(st.integers(-(2**31), 2**31 - 1)),
        y=draw(st.integers(-(2**31), 2**31 - 1)),
        result_format=draw(st.sampled_from((RGBA8, BGRA8))),
        previews=draw(st.booleans()),
        live=draw(st.booleans()),
    )


client_messages = (
    st.builds(
        Hello,
        protocol=st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
        client=st.text(max_size=128),
        client_version=st.text(max_size=64),
        token=st.none() | st.text(max_size=100),
        session=st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    )
    | st.builds(Cancel, ids)
    | st.just(ListModels())
    | jobs()
)


@FUZZ
@given(client_messages)
def test_valid_messages_round_trip(msg):
    assert parse_client_message(decode(encode(msg.to_wire())), Limits()) == msg


# --- a live server -----------------------------------------------------------------------------------------------------


def _image(w: int = 32, h: int = 32) -> dict:
    rng = np.random.default_rng(0)
    return {"width": w, "height": h, "format": RGBA8, "data": rng.integers(0, 255, (h, w, 4), np.uint8).tobytes()}


@pytest.fixture(scope="module")
def fuzzed_connection(tmp_path_factory):
    from server.app import ServerThread
    from server.config import ServerConfig

    models = tmp_path_factory.mktemp("fuzz-models")
    server = ServerThread(ServerConfig(port=0, model_dirs=[models], limits=LIMITS)).start()
    ws = connect(server.url, compression=None, max_size=None)
    ws.send(encode({"type": "hello", "protocol": "1.1", "client": "fuzz", "session": "fuzz"}))
    assert decode(ws.recv(timeout=30))["type"] == "welcome"
    yield ws
    ws.close()
    server.stop()


_sync = iter(range(10**9))


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300) | anything.filter(_packable).map(encode) | st.text(max_size=40))
def test_a_live_server_answers_any_frame_and_keeps_the_connection(fuzzed_connection, frame):
    ws = fuzzed_connection
    ws.send(frame)
    marker = f"sync-{next(_sync)}"
    ws.send(encode({"type": "cancel", "id": marker}))  # never open: always answered with an error naming it
    while True:
        reply = decode(ws.recv(timeout=60))
        msg = parse_server_message(reply)  # whatever the server says, a client can read it
        if msg.type == "error" and marker in msg.message:
            assert msg.field == "id" and msg.id is None
            break


def test_the_fuzzed_connection_still_runs_a_real_job(fuzzed_connection):
    ws = fuzzed_connection
    ws.send(
        encode(
            {
                "type": "job",
                "id": "after-fuzz",
                "mode": "inpaint",
                "model": "classical",
                "image": _image(),
                "params": {"grow": 0, "feather": 0},
            }
        )
    )
    while True:
        reply = decode(ws.recv(timeout=60))
        if reply.get("id") == "after-fuzz" and reply["type"] in ("result", "error", "cancelled"):
            break
    assert reply["type"] == "result" and reply["layers"][0]["width"] == 32
