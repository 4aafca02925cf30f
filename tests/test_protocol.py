"""Unit tests of the wire contract: validation, codec, payloads, geometry."""

from __future__ import annotations

import msgpack
import pytest

from protocol import Box, Job, Limits, Params, ProtocolError, context_box, parse_client_message
from protocol.codec import decode, encode
from protocol.geometry import crop_gray, selection_bounds_from_mask
from protocol.images import convert_pixels, parse_payload
from protocol.messages import check_compatible, job_params_defaults, parse_server_message, parse_version


def image(w: int = 4, h: int = 3, fmt: str = "rgba8") -> dict:
    bpp = 1 if fmt == "gray8" else 4
    return {
        "width": w,
        "height": h,
        "format": fmt,
        "data": bytes(range(256)) * (w * h * bpp // 256) + bytes(w * h * bpp % 256),
    }


def job(**overrides) -> dict:
    msg = {"type": "job", "id": "j1", "mode": "inpaint", "image": image(), "mask": image(fmt="gray8")}
    msg.update(overrides)
    return msg


def error_of(msg, limits: Limits = Limits()) -> ProtocolError:  # noqa: B008 - Limits is frozen: one default is fine
    with pytest.raises(ProtocolError) as info:
        parse_client_message(msg, limits)
    return info.value


def test_valid_job_gets_defaults_and_drops_unknown_fields():
    parsed = parse_client_message(job(extra_field=1, params={"steps": 4, "future": "x"}))
    assert isinstance(parsed, Job) and parsed.params.steps == 4
    assert parsed.params.seed == -1
    assert "future" not in parsed.params.to_wire() and "extra_field" not in parsed.to_wire()
    assert parsed.image.width == 4 and parsed.mask.format == "gray8"
    assert parsed.controls == () and parsed.result_format == "rgba8" and parsed.live is False


@pytest.mark.parametrize(
    "msg, field, words",
    [
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
    ],
)
def test_bad_fields_are_named(msg, field, words):
    err = error_of(msg)
    assert err.code == "bad_request"
    assert err.field == field
    assert words in err.message and f"'{field}'" in err.message or field == "type"


def test_job_errors_carry_the_job_id():
    assert error_of(job(params={"steps": -1})).job_id == "j1"
    assert error_of(job(params={"steps": -1})).to_message()["id"] == "j1"
    # An id that is not a valid id is never echoed, not even cut to length.
    assert error_of(job(id="x" * 65, params={"steps": -1})).job_id is None
    assert error_of(job(id="x" * 65)).field == "id"
    assert error_of({"type": "cancel", "id": "x" * 65}).job_id is None


def test_oversized_image_is_refused_before_the_bytes_are_read():
    huge = {"width": 100000, "height": 100000, "format": "rgba8", "data": b""}
    err = error_of(job(image=huge))
    assert err.code == "too_large" and err.field == "image.width"
    err = error_of(
        job(image={"width": 5000, "height": 5000, "format": "rgba8", "data": b""}), Limits(max_pixels=1000 * 1000)
    )
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
    for frame, words in [
        (b"\xc1\xc1", "not valid msgpack"),
        ("text", "text frames"),
        (msgpack.packb(1) + msgpack.packb(2), "more than one"),
        (b"", "not valid msgpack"),
    ]:
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
    assert defaults["strength"] is None and defaults == Params().as_dict()
    assert parse_server_message({"type": "queued", "id": "a"}).position == 0
    with pytest.raises(ProtocolError):
        parse_server_message({"type": "job", "id": "a"})


def test_speed_not_chosen_is_distinct_from_quality_and_each_level_round_trips():
    """``params.speed`` ``""`` (the default: the style's level) is not ``"quality"`` (an explicit choice, what older
    clients send); each value survives the wire, a job without the field gets ``""``, another value is named."""
    assert Params().speed == "" and parse_client_message(job()).params.speed == ""
    for level in ("", "quality", "fast"):
        sent = Job("j1", "inpaint", image=parse_client_message(job()).image, params=Params(speed=level))
        back = parse_client_message(decode(encode(sent.to_wire())))
        assert back.params.speed == level and back.params == sent.params, level
    assert parse_client_message(job(params={"speed": "quality"})).params.speed == "quality"
    err = error_of(job(params={"speed": "turbo"}))
    assert err.field == "params.speed" and "turbo" in err.message


def test_an_unset_speed_is_not_sent_so_a_server_from_before_it_takes_the_job():
    """A server from before ``""`` refused it; left out, that server's own default let the style's level win."""
    assert "speed" not in Params().to_wire()
    assert Params(speed="quality").to_wire()["speed"] == "quality" and Params(speed="fast").to_wire()["speed"] == "fast"


def test_what_a_job_would_make_is_checked_against_the_pixel_limit():
    limits = Limits(max_pixels=100 * 100)
    err = error_of(job(mode="generate", image=None, mask=None, params={"width": 200, "height": 200}), limits)
    assert err.code == "too_large" and err.field == "params.width" and "40000 px" in err.message
    err = error_of(job(mode="outpaint", mask=None, params={"extend": {"left": 8000, "right": 8000}}), limits)
    assert err.code == "too_large" and err.field == "params.extend" and "16004x3" in err.message
    parse_client_message(job(mode="outpaint", mask=None, params={"extend": {"left": 10}}), limits)


# --- typed messages: round trips, field errors, the doc tables --------------------------------------------------------

from pathlib import Path  # noqa: E402

from protocol import messages as m  # noqa: E402
from protocol.connection import Connection  # noqa: E402
from protocol.errors import LocalProtocolError  # noqa: E402
from protocol.images import ImagePayload  # noqa: E402
from protocol.schema import markdown_table  # noqa: E402

PIXELS = ImagePayload(4, 3, "rgba8", bytes(48))
MASK = ImagePayload(4, 3, "gray8", bytes(12))
LAYER = m.ResultLayer("Inpaint", 8, -4, 4, 3, "bgra8", bytes(48), seed=7, info={"engine": "classical"})

EXAMPLES = [
    m.Hello("1.1", "krita", "0.2", token="secret-token", session="abc_DEF-123"),
    m.Job(
        "j1",
        "inpaint",
        model="classical",
        prompt="a fox",
        image=PIXELS,
        mask=MASK,
        controls=(m.Control("canny", PIXELS, strength=0.5, start=0.1, end=0.9, preprocess=True),),
        params=m.Params(steps=12, strength=0.8, seed=3, extend=m.Extend(1, 2, 3, 4)),
        x=5,
        y=-6,
        result_format="bgra8",
        previews=True,
        live=True,
    ),
    m.Cancel("j1"),
    m.ListModels(),
    m.Welcome(
        "1.1",
        "0.2.0",
        "cpu (float32)",
        models=({"name": "classical", "kind": "builtin"},),
        capabilities={"modes": ["inpaint"]},
        limits=m.Limits(max_batch=4),
        defaults={"layer_name_length": 40},
        session="s1",
        resumed=("j1", "j2"),
    ),
    m.Models(({"name": "x", "kind": "checkpoint", "family": "sd15"},)),
    m.Queued("j1", 2),
    m.Started("j1"),
    m.Progress("j1", 3, 20, ImagePayload(2, 2, "rgba8", bytes(16))),
    m.Result("j1", (LAYER,), 1.5, {"steps": 12}, {"note": "x"}),
    m.Cancelled("j1"),
    m.Error("bad_request", "field 'x' is wrong", id="j1", field="x"),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda msg: msg.type)
def test_every_message_round_trips_through_the_wire(msg):
    parse = parse_client_message if msg.type in m.CLIENT_TYPES else parse_server_message
    assert parse(decode(encode(msg.to_wire()))) == msg
    assert type(msg).from_wire(msg.to_wire()) == msg


def test_messages_are_frozen():
    with pytest.raises(AttributeError):
        EXAMPLES[1].id = "other"  # type: ignore[misc]


def _wrong_value(spec) -> object:
    """A value of the wrong wire type for a field."""
    return 3.5j if spec.tp is not bool else "yes"  # complex: not msgpack-typed, never a valid field value


def _field_cases():
    for example in EXAMPLES:
        for spec in type(example).specs():
            yield pytest.param(example, spec, id=f"{example.type}.{spec.name}")


@pytest.mark.parametrize("example, spec", list(_field_cases()))
def test_every_bad_field_is_named(example, spec):
    parse = parse_client_message if example.type in m.CLIENT_TYPES else parse_server_message
    wire = example.to_wire()
    with pytest.raises(ProtocolError) as info:
        parse(dict(wire, **{spec.name: _wrong_value(spec)}))
    assert info.value.code == "bad_request" and info.value.field == spec.name
    assert f"'{spec.name}'" in info.value.message
    if spec.required:
        without = {k: v for k, v in wire.items() if k != spec.name}
        with pytest.raises(ProtocolError) as info:
            parse(without)
        assert info.value.field == spec.name and "is missing" in info.value.message


@pytest.mark.parametrize(
    "wire, field",
    [
        (
            dict(EXAMPLES[1].to_wire(), controls=[{"type": "canny", "image": dict(PIXELS.to_wire(), data=b"")}]),
            "controls[0].image.data",
        ),
        (dict(EXAMPLES[1].to_wire(), params={"extend": {"left": -1}}), "params.extend.left"),
        (dict(EXAMPLES[1].to_wire(), params={"steps": 1.5}), "params.steps"),
        (dict(EXAMPLES[9].to_wire(), layers=[dict(LAYER.to_wire(), data=b"x")]), "layers[0].data"),
        (dict(EXAMPLES[9].to_wire(), layers=[dict(LAYER.to_wire(), x="1")]), "layers[0].x"),
        (dict(EXAMPLES[8].to_wire(), preview=dict(PIXELS.to_wire(), format="bgra8")), "preview.format"),
        (dict(EXAMPLES[4].to_wire(), limits={"max_batch": 0}), "limits.max_batch"),
        (dict(EXAMPLES[4].to_wire(), resumed=["ok", 5]), "resumed[1]"),
        (dict(EXAMPLES[0].to_wire(), session="has space"), "session"),
        (dict(EXAMPLES[0].to_wire(), session="x" * 65), "session"),
    ],
)
def test_nested_bad_fields_are_named_by_their_path(wire, field):
    parse = parse_client_message if wire["type"] in m.CLIENT_TYPES else parse_server_message
    with pytest.raises(ProtocolError) as info:
        parse(wire)
    assert info.value.field == field and f"'{field}'" in info.value.message


@pytest.mark.parametrize("version", ["².0", "1.²", "①.0", "1.٣", " 1.0", "1.0.0", "", "1."])
def test_versions_need_ascii_digits(version):
    with pytest.raises(ProtocolError) as info:
        check_compatible(version)
    assert info.value.code == "bad_request" and info.value.field == "protocol" and "digits 0-9" in info.value.message


def test_readme_tables_are_the_schema():
    readme = (Path(__file__).resolve().parent.parent / "protocol" / "README.md").read_text()
    for model in (
        m.Hello,
        m.Welcome,
        m.Job,
        m.Params,
        m.Control,
        m.Extend,
        m.Limits,
        m.ResultLayer,
        m.Cancel,
        m.Queued,
        m.Started,
        m.Progress,
        m.Result,
        m.Cancelled,
        m.Error,
        m.Models,
        m.Reference,
        m.Region,
    ):
        assert markdown_table(model) in readme, f"protocol/README.md's table of {model.__name__} is out of date"


# --- the Connection's order rules -------------------------------------------------------------------------------------


def pair(resumed: tuple = ()):
    """A client and a server Connection past the handshake."""
    client, server = Connection("client"), Connection("server")
    assert server.receive_data(client.send(m.hello("test"))) == [m.hello("test")]
    welcome = m.Welcome("1.1", "x", session="s", resumed=resumed)
    assert client.receive_data(server.send(welcome)) == [welcome]
    return client, server


def job_msg(job_id: str = "j1") -> m.Job:
    return m.Job(job_id, "inpaint", image=PIXELS)


def refusal(conn: Connection, msg) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        conn.receive_data(encode(msg if isinstance(msg, dict) else msg.to_wire()))
    return info.value


def test_hello_comes_first():
    server = Connection("server")
    err = refusal(server, job_msg())
    assert err.field == "type" and "first message must be 'hello'" in err.message and err.job_id is None
    with pytest.raises(LocalProtocolError):
        Connection("client").send(job_msg())
    with pytest.raises(LocalProtocolError):
        Connection("server").send(m.Welcome("1.1", "x"))  # no hello yet


def test_hello_only_once():
    client, server = pair()
    assert refusal(server, m.hello("again")).message == "'hello' was already received on this connection"
    with pytest.raises(LocalProtocolError):
        client.send(m.hello("again"))


def test_welcome_or_error_comes_first_and_an_error_ends_the_handshake():
    client = Connection("client")
    client.send(m.hello("test"))
    assert "instead of 'welcome'" in refusal(client, m.Queued("j1")).message
    client = Connection("client")
    client.send(m.hello("test"))
    client.receive_data(encode(m.Error("unauthorized", "wrong token").to_wire()))
    with pytest.raises(LocalProtocolError):
        client.send(job_msg())
    server = Connection("server")
    server.receive_data(encode(m.hello("t").to_wire()))
    with pytest.raises(LocalProtocolError):
        server.send(m.Queued("j1"))
    server.send(m.Error("unauthorized", "wrong token"))
    with pytest.raises(LocalProtocolError):
        server.send(m.Welcome("1.1", "x"))


def test_a_major_version_mismatch_is_refused_in_the_handshake():
    err = refusal(Connection("server"), m.Hello("2.0", "future"))
    assert err.code == "version_mismatch" and "update the server" in err.message
    client = Connection("client")
    client.send(m.hello("t"))
    assert refusal(client, m.Welcome("0.9", "old")).code == "version_mismatch"


def test_a_1_0_client_still_connects():
    server = Connection("server")
    (hello,) = server.receive_data(encode({"type": "hello", "protocol": "1.0", "client": "old"}))
    assert hello.session is None
    server.send(m.Welcome("1.1", "x"))


def test_each_job_gets_exactly_one_final_message():
    client, server = pair()
    server.receive_data(client.send(job_msg()))
    for event in (m.Queued("j1"), m.Started("j1"), m.Progress("j1", 1, 2)):
        assert client.receive_data(server.send(event)) == [event]
    client.receive_data(server.send(m.Result("j1", (LAYER,))))
    assert not client.is_open("j1") and not server.is_open("j1")
    for late in (m.Progress("j1", 2, 2), m.Cancelled("j1"), m.Error("internal", "x", id="j1")):
        with pytest.raises(LocalProtocolError):
            server.send(late)
        assert refusal(client, late).field == "id"


def test_no_event_for_an_unknown_job():
    client, server = pair()
    with pytest.raises(LocalProtocolError):
        server.send(m.Started("nobody"))
    assert "not open" in refusal(client, m.Started("nobody")).message
    client.receive_data(server.send(m.Error("bad_request", "about no job")))  # an error without id is always fine


def test_a_second_job_with_an_open_id_is_refused_without_the_id():
    client, server = pair()
    server.receive_data(client.send(job_msg()))
    err = refusal(server, job_msg())
    assert err.field == "id" and err.job_id is None and "already queued or running" in err.message
    with pytest.raises(LocalProtocolError):
        client.send(job_msg())
    # The refusal leaves the running job open: its own final message still goes out.
    server.send(m.Result("j1", (LAYER,)))


def test_a_cancel_of_a_job_that_is_not_open_carries_no_id():
    client, server = pair()
    err = refusal(server, m.Cancel("never-sent"))
    assert err.field == "id" and err.job_id is None and err.to_message().get("id") is None
    server.receive_data(client.send(job_msg()))
    server.send(m.Result("j1", (LAYER,)))
    err = refusal(server, m.Cancel("j1"))  # arrives just after the result
    assert err.job_id is None and "no queued or running job" in err.message
    with pytest.raises(LocalProtocolError):
        client.send(m.Cancel("nobody"))


def test_an_invalid_job_is_answered_with_its_exact_id_and_that_ends_it():
    client, server = pair()
    err = refusal(server, dict(job_msg("j9").to_wire(), params={"steps": 0}))
    assert err.job_id == "j9" and err.field == "params.steps"
    client.open_jobs.add("j9")  # as the client's send would have done
    client.receive_data(server.send(m.error_from(err)))
    assert not server.is_open("j9") and not client.is_open("j9")
    err = refusal(server, dict(job_msg().to_wire(), id="x" * 65))
    assert err.job_id is None and err.field == "id"


def test_welcome_resumed_opens_the_jobs_the_server_still_holds():
    client, server = pair(resumed=("j1",))
    assert client.is_open("j1") and server.is_open("j1")
    client.receive_data(server.send(m.Result("j1", (LAYER,))))
    assert not client.is_open("j1")


def test_garbage_is_a_bad_request_and_the_connection_goes_on():
    client, server = pair()
    with pytest.raises(ProtocolError):
        server.receive_data(b"\xc1")
    with pytest.raises(ProtocolError):
        server.receive_data("text")
    server.receive_data(client.send(job_msg()))


def test_readme_sampler_table_is_the_table():
    from protocol.sampling import markdown_table as sampler_table

    readme = (Path(__file__).resolve().parent.parent / "protocol" / "README.md").read_text()
    assert sampler_table() in readme, "protocol/README.md's sampler table is out of date (protocol.sampling)"


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("192.168.1.2", False),
        ("::", False),
        ("localhost.example", False),
        ("", False),
        ("not a host", False),
    ],
)
def test_one_loopback_rule_for_server_and_client(host, loopback):
    from client.server import is_local
    from protocol import is_loopback_host
    from server.cluster.rayenv import is_loopback as ray_is_loopback
    from server.config import is_loopback

    assert is_loopback_host(host) is loopback
    assert is_loopback(host) is loopback
    assert ray_is_loopback(host) is loopback
    if host and " " not in host:
        url_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        assert is_local(f"ws://{url_host}:7860") is loopback
        assert ray_is_loopback(f"{url_host}:6379") is loopback
