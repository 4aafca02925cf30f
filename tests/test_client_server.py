"""client.server and client.connect: address rules, the recorded server command, the launcher and its back-off, and
the connection lifecycle against real servers on loopback."""

from __future__ import annotations

import json
import queue
import socket
import sys

import pytest

from client import connect as sess
from client.errors import AddressError, JobError, ServerStartError, ServerUnavailable
from client.jobs import JobInputs, build_job
from client.server import (
    DEFAULT_URL,
    SERVER_FILE,
    Autostart,
    LocalServer,
    ServerSettings,
    is_local,
    launch_args,
    normalise_url,
    read_server_command,
)
from client.settings import Settings
from protocol import Backoff
from protocol.geometry import Box
from protocol.messages import Progress, Queued, Result, Welcome


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "typed, url",
    [
        ("127.0.0.1:7861", "ws://127.0.0.1:7861"),
        ("localhost", "ws://localhost:7860"),
        ("ws://10.0.0.2:9000/", "ws://10.0.0.2:9000"),
        ("wss://paint.example:443/pb", "wss://paint.example:443/pb"),
        ("[::1]:80", "ws://[::1]:80"),
    ],
)
def test_addresses_are_normalised(typed, url):
    assert normalise_url(typed) == url


@pytest.mark.parametrize("typed", ["", "http://127.0.0.1:7860", "ws://:80", "ws://host:99999"])
def test_bad_addresses_are_refused(typed):
    with pytest.raises(AddressError, match="empty|not valid"):
        normalise_url(typed)


@pytest.mark.parametrize(
    "url, local",
    [
        (DEFAULT_URL, True),
        ("ws://localhost:1", True),
        ("LOCALHOST", True),
        ("ws://127.3.4.5:80", True),
        ("ws://[::1]:7860", True),
        ("wss://127.0.0.1", True),
        ("ws://10.0.0.2:7860", False),
        ("ws://127.example.org:1", False),
        ("ws://example.org", False),
        ("http://127.0.0.1", False),
        ("", False),
    ],
)
def test_is_local_has_one_answer(url, local):
    assert is_local(url) is local


def test_the_recorded_command_and_the_launch_arguments(tmp_path):
    assert read_server_command(tmp_path) is None
    (tmp_path / SERVER_FILE).write_text("{not json")
    assert read_server_command(tmp_path) is None
    (tmp_path / SERVER_FILE).write_text(json.dumps({"command": ["/venv/python", "", "serve"]}))
    assert read_server_command(tmp_path) is None
    (tmp_path / SERVER_FILE).write_text(json.dumps({"command": ["/venv/python", "-m", "server", "serve"]}))
    command = read_server_command(tmp_path)
    assert command == ["/venv/python", "-m", "server", "serve"]
    assert launch_args(command, "localhost:9000", "tok") == command + [
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--token",
        "tok",
    ]
    with pytest.raises(ServerStartError, match="not a local address"):
        launch_args(command, "ws://example.org:1")


def test_server_settings_keep_tokens_per_address_and_round_trip():
    remembered = ServerSettings()
    assert remembered.target() == (DEFAULT_URL, None)
    remembered.remember("127.0.0.1:9001", "s3cret")
    assert remembered.target() == ("ws://127.0.0.1:9001", "s3cret")
    assert remembered.target("127.0.0.1:9002") == ("ws://127.0.0.1:9002", None)  # a token never travels elsewhere
    assert remembered.target("", "other") == ("ws://127.0.0.1:9001", "other")
    back = ServerSettings.from_dict(json.loads(json.dumps(remembered.to_dict())))
    assert back == remembered
    assert ServerSettings.from_dict({"server": "http://x", "tokens": {"a": 1}, "autostart": "no"}) == ServerSettings()
    assert ServerSettings.from_dict(None) == ServerSettings()


def test_autostart_pauses_and_gives_up_until_a_welcome():
    policy = Autostart(pause=10.0, tries=2)
    assert policy.should_start(0.0)
    assert not policy.should_start(5.0)
    assert policy.should_start(10.0)
    assert not policy.should_start(100.0) and policy.given_up
    policy.welcomed()
    assert policy.should_start(101.0)


def test_backoff_doubles_up_to_a_limit_and_resets():
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5
    with pytest.raises(ValueError, match="first <= longest"):
        Backoff(2.0, 1.0)


def test_the_session_reconnects_with_the_transports_one_policy():
    from protocol import client as transport

    assert isinstance(sess.Connector(sess.Listener(), "test", "0").backoff, Backoff)
    assert transport.Backoff is Backoff and not hasattr(transport, "RECONNECT_DELAYS")


def test_session_ids_fit_the_protocol():
    ids = {sess.new_session_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) <= 64 and all(c.isalnum() or c in "-_" for c in i) for i in ids)


def test_progress_events_feed_fraction_and_text():
    assert sess.describe_event(Queued("j", 2)) == (0.0, "Waiting for the server: 2 jobs ahead")
    assert sess.describe_event(Progress("j", 5, 20)) == (0.25, "Step 5 of 20")
    assert sess.describe_event(Result("j", ()))[0] == 1.0
    assert sess.describe_event(Welcome("1.1", "x")) == (None, None)


# --- against real servers --------------------------------------------------------------------------------------------


def inpaint_job(box: Box, job_id: str = "t-1"):
    mask = bytearray(box.width * box.height)
    for y in range(8, 20):
        mask[y * box.width + 8 : y * box.width + 20] = b"\xff" * 12
    return build_job(
        Settings(mode="inpaint", model="classical"),
        JobInputs(box, bytes([90]) * (box.width * box.height * 4), "rgba8", bytes(mask)),
        job_id=job_id,
    )


def test_a_server_that_is_down_gives_a_clear_message(tmp_path):
    url = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailable) as info:
        sess.open_client(url, None, "test", "0")
    assert url in str(info.value) and "paintbridge serve" in str(info.value)
    broken = LocalServer([sys.executable, "-c", "print('no server here'); raise SystemExit(3)"], tmp_path / "s.log")
    with pytest.raises(ServerStartError, match="exit status 3") as info:
        sess.open_client(url, None, "test", "0", server=broken)
    assert "no server here" in str(info.value)


def test_runs_a_job_and_reports_progress(start_server):
    server = start_server()
    seen = []
    client = sess.open_client(server.url, None, "test", "0")
    try:
        layers, _params = sess.run_job(client, inpaint_job(Box(16, 8, 32, 32)), lambda f, t: seen.append((f, t)))
    finally:
        client.close()
    assert len(layers) == 1 and (layers[0].x, layers[0].y, layers[0].width) == (16, 8, 32)
    assert seen[-1] == (1.0, "Inserting the result")


def test_refusals_and_failed_jobs_become_job_errors(start_server):
    server = start_server(token="right-token-1")
    with pytest.raises(JobError) as info:
        sess.open_client(server.url, "wrong-token-2", "test", "0")
    assert info.value.code == "unauthorized" and "token" in str(info.value)
    client = sess.open_client(server.url, "right-token-1", "test", "0")
    try:
        box = Box(0, 0, 32, 32)
        job = build_job(Settings(mode="img2img"), JobInputs(box, bytes(32 * 32 * 4)), job_id="t-2")
        with pytest.raises(JobError) as info:
            sess.run_job(client, job)
    finally:
        client.close()
    assert info.value.code == "unsupported"


def test_a_local_server_that_is_down_is_started_with_the_recorded_command(tmp_path):
    url = f"ws://127.0.0.1:{free_port()}"
    models = tmp_path / "models"
    models.mkdir()
    server = LocalServer([sys.executable, "-m", "server", "serve", "--models", str(models)], tmp_path / "server.log")
    statuses = []
    try:
        client = sess.open_client(url, None, "test", "0", server=server, on_status=lambda f, t: statuses.append(t))
        try:
            layers, _ = sess.run_job(client, inpaint_job(Box(0, 0, 32, 32)))
            assert len(layers) == 1 and statuses[0].startswith("Starting the Paintbridge server")
        finally:
            client.close()
        assert server.ready and "listening on" in server.output()
    finally:
        server.stop()
    assert not server.running


class Recorder(sess.Listener):
    def __init__(self) -> None:
        self.events: "queue.Queue[tuple]" = queue.Queue()

    def state_changed(self, state, detail):
        self.events.put(("state", state))

    def job_result(self, job_id, msg):
        self.events.put(("result", job_id))

    def job_failed(self, job_id, code, message):
        self.events.put(("failed", job_id, code))

    def wait_for(self, *want, timeout: float = 30.0) -> tuple:
        while True:
            event = self.events.get(timeout=timeout)
            if event[: len(want)] == want:
                return event


def test_a_session_connects_runs_jobs_and_reconnects_after_the_server_comes_back(start_server_process, tmp_path):
    server = start_server_process()
    rec = Recorder()
    session = sess.Connector(rec, "test", "0", backoff=Backoff(0.1, 0.5))
    session.configure(server.url, None)
    try:
        rec.wait_for("state", "connected")
        assert session.submit(inpaint_job(Box(0, 0, 32, 32), "s-1")) == "s-1"
        rec.wait_for("result", "s-1")
        server.restart()  # same port: the session notices and reconnects on its own
        rec.wait_for("state", "disconnected")
        rec.wait_for("state", "connected", timeout=120)
        session.submit(inpaint_job(Box(0, 0, 32, 32), "s-2"))
        rec.wait_for("result", "s-2")
    finally:
        session.stop()
