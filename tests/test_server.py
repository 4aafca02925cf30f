"""Server integration over a real websocket on loopback: handshake, jobs, cancel, disconnects, bad input, tokens."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from protocol import Limits, LocalProtocolError, Progress
from protocol.client import Client, JobFailed
from protocol.codec import decode, encode
from server.config import ServerConfig
from tests.images import inpaint_job, layer_pixels, payload, rect_mask, rgba_image


def raw_session(url: str, hello: dict | None = None):
    ws = connect(url, compression=None)
    ws.send(encode(hello or {"type": "hello", "protocol": "1.0", "client": "raw-test"}))
    return ws, decode(ws.recv(timeout=30))


@pytest.fixture
def classical_server(start_server):
    return start_server()


def test_handshake_reports_server_facts(classical_server):
    with Client(classical_server.url, "test") as client:
        welcome = client.welcome
    assert welcome.protocol == "1.1" and welcome.server_version
    assert welcome.device
    assert welcome.models[0]["name"] == "classical" and welcome.models[0]["family"] == "classical"
    assert welcome.limits.max_pixels == Limits().max_pixels
    assert "inpaint" in welcome.capabilities["modes"]
    assert welcome.defaults["modes"]["img2img"]["strength"] == 0.7
    assert welcome.defaults["families"]["sdxl"]["cfg"] == 6.0 and welcome.defaults["layer_name_length"] == 40
    assert welcome.session == client.session and welcome.resumed == ()


def test_version_mismatch_is_refused_with_a_clear_message(classical_server):
    ws, reply = raw_session(classical_server.url, {"type": "hello", "protocol": "2.0", "client": "future"})
    assert reply["type"] == "error" and reply["code"] == "version_mismatch"
    assert "update the server" in reply["message"]
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=10)


def test_first_message_must_be_hello(classical_server):
    ws = connect(classical_server.url)
    ws.send(encode({"type": "list_models"}))
    reply = decode(ws.recv(timeout=10))
    assert reply["code"] == "bad_request" and "first message must be 'hello'" in reply["message"]


def test_classical_inpaint_job_streams_progress_and_keeps_outside_pixels(classical_server):
    img, mask = rgba_image(), rect_mask()
    events = []
    with Client(classical_server.url, "test") as client:
        result = client.run(inpaint_job(img, mask, x=100, y=50), on_event=events.append)
    kinds = [e.type for e in events]
    assert kinds[0] == "queued" and kinds[1] == "started" and "progress" in kinds and kinds[-1] == "result"
    (layer,) = result.layers
    assert (layer.x, layer.y, layer.width, layer.height) == (100, 50, 64, 64)
    px = layer_pixels(layer)
    outside = mask == 0
    assert np.array_equal(px[outside][:, :3], img[outside][:, :3])
    assert (px[..., 3][outside] == 0).all() and (px[..., 3][~outside] == 255).all()
    assert not np.array_equal(px[~outside][:, :3], img[~outside][:, :3])


def test_bgra_in_bgra_out(classical_server):
    img, mask = rgba_image(), rect_mask()
    bgra = img[..., [2, 1, 0, 3]]
    with Client(classical_server.url, "test") as client:
        result = client.run(dict(inpaint_job(img, mask), image=payload(bgra, "bgra8"), result_format="bgra8"))
    px = layer_pixels(result.layers[0])
    outside = mask == 0
    assert np.array_equal(px[outside][:, :3], bgra[outside][:, :3])


def test_grown_and_feathered_mask_is_soft_and_stays_inside_the_grown_area(classical_server):
    img, mask = rgba_image(), rect_mask()
    with Client(classical_server.url, "test") as client:
        result = client.run(inpaint_job(img, mask, params={"grow": 4, "feather": 3}))
    alpha = layer_pixels(result.layers[0])[..., 3]
    assert (alpha[mask == 255] == 255).all()  # the selection itself changes fully
    ring = (alpha > 0) & (mask == 0)
    assert ring.any() and (alpha[ring] < 255).any()  # a soft edge in the grown ring
    assert not alpha[:14].any() and not alpha[:, :14].any()  # nothing beyond grow


def test_outpaint_extends_the_canvas(classical_server):
    img = rgba_image(48, 40)
    job = {
        "mode": "outpaint",
        "model": "classical",
        "image": payload(img, "rgba8"),
        "params": {"extend": {"left": 16, "top": 0, "right": 8, "bottom": 24}},
    }
    with Client(classical_server.url, "test") as client:
        layer = client.run(job).layers[0]
    assert (layer.x, layer.y, layer.width, layer.height) == (-16, 0, 72, 64)
    px = layer_pixels(layer)
    assert (px[:40, 16:64, 3] == 0).all() and (px[40:, :, 3] == 255).all()
    assert np.array_equal(px[:40, 16:64, :3], img[..., :3])


def test_generate_without_a_checkpoint_says_what_to_install(classical_server):
    with Client(classical_server.url, "test") as client:
        with pytest.raises(JobFailed) as info:
            client.run({"mode": "img2img", "image": payload(rgba_image(), "rgba8")})
    assert info.value.code == "unsupported" and "checkpoints" in str(info.value)


def test_unknown_model_is_model_not_found(classical_server):
    with Client(classical_server.url, "test") as client:
        with pytest.raises(JobFailed) as info:
            client.run(inpaint_job(rgba_image(), rect_mask(), model="nope-xl"))
    assert info.value.code == "model_not_found" and "nope-xl" in str(info.value)


BAD_MESSAGES = [
    (b"\xc1\xff\x00garbage", "bad_request", "not valid msgpack"),
    ("a text frame", "bad_request", "text frames"),
    (encode([1, 2, 3]), "bad_request", "must be a map"),
    (encode({"type": "teleport"}), "bad_request", "unknown message type"),
    (encode({"type": "job", "mode": "inpaint"}), "bad_request", "'id' is missing"),
    (encode({"type": "job", "id": "b1", "mode": 7}), "bad_request", "'mode' must be a string"),
    (
        encode(
            {
                "type": "job",
                "id": "b2",
                "mode": "inpaint",
                "image": {"width": 64, "height": 64, "format": "rgba8", "data": b"\x00" * 100},
            }
        ),
        "bad_request",
        "holds 100 bytes",
    ),
    (
        encode(
            {
                "type": "job",
                "id": "b3",
                "mode": "inpaint",
                "image": {"width": 9000, "height": 9000, "format": "rgba8", "data": b""},
            }
        ),
        "too_large",
        "over the server's limit",
    ),
    (
        encode(
            {
                "type": "job",
                "id": "b4",
                "mode": "inpaint",
                "image": payload(rgba_image(), "rgba8"),
                "mask": payload(rect_mask(32, 32), "gray8"),
            }
        ),
        "bad_request",
        "'mask' is 32x32",
    ),
    (
        encode(
            {
                "type": "job",
                "id": "b5",
                "mode": "inpaint",
                "image": payload(rgba_image(), "rgba8"),
                "params": {"steps": "many"},
            }
        ),
        "bad_request",
        "'params.steps' must be an integer",
    ),
    (encode({"type": "cancel", "id": "never-submitted"}), "bad_request", "no queued or running job"),
    (encode({"type": "hello", "protocol": "1.0", "client": "again"}), "bad_request", "already received"),
]


def test_every_malformed_input_gets_a_clear_error_and_the_server_keeps_serving(start_server):
    server = start_server(limits=Limits(max_pixels=4096 * 4096, max_frame_bytes=8 * 1024 * 1024))
    ws, welcome = raw_session(server.url)
    assert welcome["type"] == "welcome"
    for frame, code, words in BAD_MESSAGES:
        ws.send(frame)
        reply = decode(ws.recv(timeout=30))
        assert reply["type"] == "error", (frame[:40], reply)
        assert reply["code"] == code and words in reply["message"], (words, reply)
    # The same connection still works.
    ws.send(encode(dict(inpaint_job(rgba_image(), rect_mask()), type="job", id="good")))
    kinds = []
    while not kinds or kinds[-1] not in ("result", "error"):
        kinds.append(decode(ws.recv(timeout=60))["type"])
    assert kinds[-1] == "result"
    # A frame over the limit closes this connection with a reason, and other clients are unaffected.
    ws.send(b"\x00" * (9 * 1024 * 1024))
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    with Client(server.url, "after") as client:
        assert client.run(inpaint_job(rgba_image(), rect_mask())).layers


def test_silent_client_is_dropped_after_the_handshake_timeout(start_server):
    server = start_server(handshake_timeout=0.5)
    ws = connect(server.url)
    reply = decode(ws.recv(timeout=10))
    assert reply["code"] == "bad_request" and "no 'hello'" in reply["message"]


def test_token_is_required_and_checked(start_server):
    server = start_server(token="s3cret-token")
    for hello, ok in [({}, False), ({"token": "wrong-token"}, False), ({"token": "s3cret-token"}, True)]:
        ws, reply = raw_session(server.url, dict({"type": "hello", "protocol": "1.0", "client": "t"}, **hello))
        if ok:
            assert reply["type"] == "welcome"
        else:
            assert reply["code"] == "unauthorized" and "token" in reply["message"]
        ws.close()


def test_non_loopback_address_needs_a_token():
    with pytest.raises(ValueError, match="without a token"):
        ServerConfig(host="0.0.0.0").validate()
    ServerConfig(host="0.0.0.0", token="long-enough-token").validate()
    ServerConfig(host="::1").validate()


def test_cli_serve_refuses_public_address_without_token():
    from server.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2


# --- jobs with steps: cancel, queue, disconnects (tiny diffusion model) ------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tests.factory import make_models_dir

    return make_models_dir(tmp_path_factory.mktemp("models"), which=("sd15",))


def slow_job(steps: int = 150) -> dict:
    return {
        "mode": "img2img",
        "image": payload(rgba_image(), "rgba8"),
        "prompt": "a slow job",
        "params": {"steps": steps, "strength": 1.0, "seed": 1},
    }


def test_cancel_running_job_stops_within_a_step(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    with Client(server.url, "test") as client:
        job_id = client.submit(slow_job())
        steps_seen, cancel_at = [], None
        for msg in client.events(job_id, timeout=300):
            if isinstance(msg, Progress):
                steps_seen.append(msg.step)
                if cancel_at is None and msg.step >= 2:
                    cancel_at = msg.step
                    client.cancel(job_id)
            last = msg
        assert last.type == "cancelled"
        # The engine stops at the first step after the cancel arrives; the few steps that ran while the cancel
        # travelled still report. (The one-step rule itself is checked without timing below.)
        assert max(steps_seen) <= cancel_at + 10 < 150, (cancel_at, steps_seen[-5:])
        # The server is free again at once.
        assert client.run(inpaint_job(rgba_image(), rect_mask())).layers


def test_cancel_queued_job_removes_it(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    with Client(server.url, "test") as client:
        first = client.submit(slow_job())
        second = client.submit(inpaint_job(rgba_image(), rect_mask()))
        client.cancel(second)
        second_events = [m.type for m in client.events(second, timeout=60)]
        assert second_events == ["queued", "cancelled"]
        client.cancel(first)
        assert [m.type for m in client.events(first, timeout=300)][-1] == "cancelled"


def test_client_vanishing_mid_job_does_not_stop_other_clients(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models], grace=0)  # no grace: its jobs are dropped at once
    gone = Client(server.url, "vanishing")
    gone.connect()
    gone_id = gone.submit(slow_job())
    for msg in gone.events(gone_id, timeout=300):
        if isinstance(msg, Progress):
            break
    gone._ws.socket.shutdown(socket.SHUT_RDWR)  # the peer vanishes without a close frame
    gone._ws = None
    with Client(server.url, "survivor") as other:
        result = other.run(inpaint_job(rgba_image(), rect_mask()), timeout=120)
    assert result.layers
    queue = server.server.queue
    deadline = time.monotonic() + 60
    while queue.current is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue.current is None and len(queue) == 0


def test_two_clients_jobs_run_in_order(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    results = {}

    def worker(name: str, steps: int) -> None:
        with Client(server.url, name) as client:
            results[name] = client.run(slow_job(steps), timeout=300)

    threads = [threading.Thread(target=worker, args=(f"c{i}", 3)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert set(results) == {"c0", "c1"}
    assert all(r.layers[0].width == 64 for r in results.values())


def test_job_ids_must_be_unique_while_open(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    with Client(server.url, "test") as client:
        client.submit(dict(slow_job(), id="same"))
        with pytest.raises(LocalProtocolError, match="still open"):  # this side refuses before sending
            client.submit(dict(inpaint_job(rgba_image(), rect_mask()), id="same"))
        client.cancel("same")
        assert [m.type for m in client.events("same", timeout=300)][-1] == "cancelled"


def test_cli_run_against_a_running_server(start_server_process, tmp_path):
    from PIL import Image

    from server.cli import main

    server = start_server_process()
    img, mask = rgba_image(96, 80), rect_mask(96, 80, (30, 20, 60, 50))
    Image.fromarray(img, "RGBA").save(tmp_path / "photo.png")
    Image.fromarray(mask, "L").save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code = main(
        [
            "run",
            "inpaint",
            "--image",
            str(tmp_path / "photo.png"),
            "--mask",
            str(tmp_path / "mask.png"),
            "--prompt",
            "",
            "--out",
            str(out),
            "--server",
            server.url,
        ]
    )
    assert code == 0
    result = np.asarray(Image.open(out).convert("RGBA"))
    assert result.shape == img.shape
    grown = np.zeros_like(mask)
    grown[20 - 8 : 50 + 8, 30 - 8 : 60 + 8] = 255  # default grow + feather stay well inside 8 px here
    assert np.array_equal(result[grown == 0], img[grown == 0])
    assert not np.array_equal(result[mask > 0], img[mask > 0])


def test_cli_run_reports_an_unreachable_server(tmp_path, capsys):
    from PIL import Image

    from server.cli import main

    Image.fromarray(rgba_image(), "RGBA").save(tmp_path / "a.png")
    code = main(
        [
            "run",
            "inpaint",
            "--image",
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path / "o.png"),
            "--server",
            "ws://127.0.0.1:9",
        ]
    )
    assert code == 1
    assert "cannot reach the Paintbridge server at ws://127.0.0.1:9" in capsys.readouterr().err


def test_preload_loads_the_default_checkpoint_before_the_first_job(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models], preload=True)
    router = server.server.router
    deadline = time.monotonic() + 120
    while router.diffusion.loads == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert router.diffusion.loads == 1
    with Client(server.url, "test") as client:
        client.run(slow_job(steps=2))
    assert router.diffusion.loads == 1


def test_control_layers_keep_alpha_only_for_preprocessing():
    from protocol.images import parse_payload
    from server.payloads import control_pixels

    sketch = np.zeros((4, 4, 4), np.uint8)
    sketch[1, :, :3] = 255
    sketch[1, :, 3] = 255  # one opaque white line on a transparent layer
    wire = parse_payload(payload(sketch, "rgba8"), "image", 100)
    assert control_pixels(wire, preprocess=True).shape == (4, 4, 4)
    flat = control_pixels(wire, preprocess=False)
    assert flat.shape == (4, 4, 3) and (flat[1] == 255).all() and (flat[0] == 0).all()


def test_a_cancelled_job_stops_at_its_next_step():
    from server.core import JobCancelled, JobContext

    seen = []
    ctx = JobContext(lambda step, total, preview: seen.append(step))
    ctx.progress(1, 10)
    ctx.cancel()
    with pytest.raises(JobCancelled):
        ctx.progress(2, 10)
    with pytest.raises(JobCancelled):
        ctx.quiet().check()  # sub-jobs (upscale tiles) share the cancellation
    assert seen == [1, 2]


# --- sessions: resume after a dropped connection, live frames, exact error ids ---------------------------------------


def hello_with(session: str, **extra) -> dict:
    return dict({"type": "hello", "protocol": "1.1", "client": "resume-test", "session": session}, **extra)


def read_until(ws, kinds: tuple, timeout: float = 120) -> list:
    """Messages up to and including the first whose type is in ``kinds``."""
    seen = []
    while not seen or seen[-1]["type"] not in kinds:
        seen.append(decode(ws.recv(timeout=timeout)))
    return seen


def vanish(ws) -> None:
    """The peer disappears without a close frame (a dropped network)."""
    ws.socket.shutdown(socket.SHUT_RDWR)


def test_hello_with_a_superscript_version_gets_a_clear_error(classical_server):
    for version in ("².0", "1.²", "①.0"):
        ws, reply = raw_session(classical_server.url, {"type": "hello", "protocol": version, "client": "x"})
        assert reply["type"] == "error" and reply["code"] == "bad_request" and reply["field"] == "protocol"
        assert "digits 0-9" in reply["message"] and "id" not in reply
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008  # refused, not 1011


def test_welcome_echoes_the_session_and_makes_one_when_absent(classical_server):
    _, reply = raw_session(classical_server.url, hello_with("my-session_1"))
    assert reply["session"] == "my-session_1" and reply["resumed"] == []
    _, reply = raw_session(classical_server.url)  # a 1.0 hello
    assert len(reply["session"]) >= 16 and reply["protocol"] == "1.1"


def test_error_ids_are_exact(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    ws, _ = raw_session(server.url, hello_with("ids"))
    running = "r" * 64
    ws.send(encode(dict(slow_job(steps=4), type="job", id=running)))
    assert read_until(ws, ("started",))[-1]["id"] == running
    # An over-long id whose first 64 characters are the running job's id: refused, and the error names no job.
    ws.send(encode(dict(inpaint_job(rgba_image(), rect_mask()), type="job", id=running + "-other")))
    reply = decode(ws.recv(timeout=30))
    assert reply["type"] == "error" and "id" not in reply and reply["field"] == "id"
    # A second job with the running job's id: refused without the id; the running job goes on.
    ws.send(encode(dict(inpaint_job(rgba_image(), rect_mask()), type="job", id=running)))
    reply = decode(ws.recv(timeout=30))
    assert reply["type"] == "error" and "id" not in reply and "already queued or running" in reply["message"]
    tail = read_until(ws, ("result", "error", "cancelled"))
    assert tail[-1]["type"] == "result" and tail[-1]["id"] == running
    # A cancel that arrives after the result names no live job: no id, field "id".
    ws.send(encode({"type": "cancel", "id": running}))
    reply = decode(ws.recv(timeout=30))
    assert reply["type"] == "error" and "id" not in reply and reply["field"] == "id"
    # An invalid job with a valid id is answered with exactly that id.
    ws.send(encode(dict(inpaint_job(rgba_image(), rect_mask()), type="job", id="bad-1", params={"steps": 0})))
    reply = decode(ws.recv(timeout=30))
    assert reply["id"] == "bad-1" and reply["field"] == "params.steps"


def test_a_job_survives_a_dropped_connection_and_the_reconnect_gets_its_result(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    ws, _ = raw_session(server.url, hello_with("flaky-network"))
    ws.send(encode(dict(slow_job(steps=12), type="job", id="long")))
    read_until(ws, ("progress",))
    vanish(ws)
    ws2, welcome = raw_session(server.url, hello_with("flaky-network"))
    assert welcome["type"] == "welcome" and welcome["resumed"] == ["long"]
    rest = read_until(ws2, ("result", "cancelled", "error"))
    assert rest[0]["type"] in ("started", "result") and rest[-1]["type"] == "result"
    assert rest[-1]["id"] == "long" and rest[-1]["layers"][0]["width"] == 64


def test_a_result_finished_while_away_is_kept_for_the_reconnect(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    ws, _ = raw_session(server.url, hello_with("away"))
    ws.send(encode(dict(slow_job(steps=3), type="job", id="quick")))
    read_until(ws, ("started",))
    vanish(ws)
    queue = server.server.queue
    deadline = time.monotonic() + 120
    while (queue.current is not None or len(queue)) and time.monotonic() < deadline:
        time.sleep(0.05)
    ws2, welcome = raw_session(server.url, hello_with("away"))
    assert welcome["resumed"] == ["quick"]
    reply = decode(ws2.recv(timeout=30))
    assert reply["type"] == "result" and reply["id"] == "quick"
    ws2.send(encode({"type": "list_models"}))  # answered after the ping that confirms the result's delivery
    assert decode(ws2.recv(timeout=30))["type"] == "models"
    ws3, welcome = raw_session(server.url, hello_with("away"))  # delivered once: nothing is held any more
    assert welcome["resumed"] == []


def test_the_client_reconnects_and_its_run_goes_on(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    client = Client(server.url, "resuming-client")
    client.connect()
    dropped = []

    def on_event(msg) -> None:
        if isinstance(msg, Progress) and not dropped:
            dropped.append(msg.step)
            vanish(client._ws)

    try:
        result = client.run(slow_job(steps=12), on_event=on_event, timeout=300)
    finally:
        client.close()
    assert dropped and client.reconnects == 1 and result.layers[0].width == 64


def test_the_grace_period_ends_and_live_frames_are_not_kept(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models], grace=0.5)
    ws, _ = raw_session(server.url, hello_with("short-grace"))
    ws.send(encode(dict(slow_job(steps=150), type="job", id="live-1", live=True)))
    read_until(ws, ("progress",))
    vanish(ws)
    ws2, welcome = raw_session(server.url, hello_with("short-grace"))
    assert welcome["resumed"] == []  # the live frame was dropped at once
    ws2.send(encode(dict(slow_job(steps=150), type="job", id="kept")))
    read_until(ws2, ("progress",))
    vanish(ws2)
    sessions = server.server.sessions.sessions
    deadline = time.monotonic() + 60
    while "short-grace" in sessions and time.monotonic() < deadline:  # its grace period runs out
        time.sleep(0.05)
    ws3, welcome = raw_session(server.url, hello_with("short-grace"))
    assert welcome["resumed"] == []  # the grace period passed: the job was cancelled
    queue = server.server.queue
    deadline = time.monotonic() + 60
    while queue.current is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue.current is None and len(queue) == 0


def test_a_newer_live_frame_replaces_the_queued_one(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    ws, _ = raw_session(server.url, hello_with("live"))
    ws.send(encode(dict(slow_job(steps=150), type="job", id="busy")))
    read_until(ws, ("started",))
    ws.send(encode(dict(slow_job(steps=2), type="job", id="frame-1", live=True)))
    assert read_until(ws, ("queued",))[-1]["id"] == "frame-1"
    ws.send(encode(dict(slow_job(steps=2), type="job", id="frame-2", live=True)))
    seen = [m for m in read_until(ws, ("queued",)) if m["type"] != "progress"]
    assert [(m["type"], m["id"]) for m in seen] == [("cancelled", "frame-1"), ("queued", "frame-2")]
    ws.send(encode({"type": "cancel", "id": "busy"}))
    finals = {}
    while len(finals) < 2:
        msg = decode(ws.recv(timeout=120))
        if msg["type"] in ("result", "cancelled", "error"):
            finals[msg["id"]] = msg["type"]
    assert finals == {"busy": "cancelled", "frame-2": "result"}


def test_a_second_connection_of_a_session_replaces_the_first(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])
    ws, _ = raw_session(server.url, hello_with("twice"))
    ws.send(encode(dict(slow_job(steps=12), type="job", id="j")))
    read_until(ws, ("started",))
    ws2, welcome = raw_session(server.url, hello_with("twice"))  # the old connection looks alive to the server
    assert welcome["resumed"] == ["j"]
    assert read_until(ws2, ("result",))[-1]["id"] == "j"
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=30)


def test_cli_serve_takes_a_grace_period():
    from server.cli import parser
    from server.commands.common import server_config as _config

    assert _config(parser().parse_args(["serve", "--grace", "5"])).grace == 5.0
    assert _config(parser().parse_args(["serve"])).grace == 300.0
    with pytest.raises(ValueError, match="grace"):
        ServerConfig(grace=-1).validate()


def test_a_1_0_client_without_a_session_is_served_and_its_jobs_end_with_its_connection(start_server, tiny_models):
    server = start_server(model_dirs=[tiny_models])  # the default grace period applies to named sessions only
    ws, welcome = raw_session(server.url)  # a 1.0 hello: no session
    assert welcome["type"] == "welcome" and welcome["session"]
    ws.send(encode(dict(slow_job(steps=150), type="job", id="old-client-job")))
    read_until(ws, ("progress",))
    vanish(ws)
    queue = server.server.queue
    deadline = time.monotonic() + 60
    while (queue.current is not None or len(queue)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue.current is None and len(queue) == 0 and not server.server.sessions.sessions
