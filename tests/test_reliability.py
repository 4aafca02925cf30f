"""Security and reliability over real loopback connections: browser origins and DNS rebinding refused in the HTTP
handshake, no file paths on the wire, fair turns across clients, a bounded outbox for clients that do not read, slowed
token guesses, and a quiet log for network noise."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import List, Optional, Tuple

import numpy as np
import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Close, Frame, Opcode
from websockets.sync.client import connect
from websockets.uri import parse_uri

from protocol import Limits, Progress, Queued, Result
from protocol.client import Client
from protocol.codec import decode, encode
from protocol.images import ImagePayload
from protocol.messages import Cancelled, ResultLayer
from server.access import AccessRules, GuessThrottle
from server.app import ServerThread
from server.config import ServerConfig
from server.netlog import NetworkLog
from server.outbox import Outbox
from server.router import Router


def image_map(w: int, h: int) -> dict:
    rng = np.random.default_rng(w * 7 + h)
    return {"width": w, "height": h, "format": "rgba8", "data": rng.integers(0, 255, (h, w, 4), np.uint8).tobytes()}


def small_mask(w: int, h: int) -> dict:
    mask = np.zeros((h, w), np.uint8)
    mask[8:16, 8:16] = 255
    return {"width": w, "height": h, "format": "gray8", "data": mask.tobytes()}


def inpaint(job_id: str, w: int = 64, h: int = 64) -> dict:
    return {
        "type": "job",
        "id": job_id,
        "mode": "inpaint",
        "model": "classical",
        "image": image_map(w, h),
        "mask": small_mask(w, h),
        "params": {"grow": 0, "feather": 0},
    }


def hello(name: str, session: Optional[str] = None, **extra) -> dict:
    msg = {"type": "hello", "protocol": "1.1", "client": name, **extra}
    if session:
        msg["session"] = session
    return msg


def raw_session(url: str, msg: dict):
    ws = connect(url, compression=None, max_size=None)
    ws.send(encode(msg))
    return ws, decode(ws.recv(timeout=30))


def http_handshake(port: int, host: str, origin: Optional[str] = None) -> Tuple[int, str]:
    """A websocket opening handshake written by hand (any Host, any Origin); returns (status, body)."""
    lines = [
        "GET / HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        if status != 101:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
    return status, body.decode("utf-8", "replace")


# --- 1. Origin and Host ------------------------------------------------------------------------------------------------


def test_browser_origins_and_foreign_hosts_are_refused_in_the_http_handshake(start_server, caplog):
    caplog.set_level(logging.INFO)
    server = start_server(allow_origins=["http://localhost:3000"])
    port = server.port
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
        assert http_handshake(port, host)[0] == 101, host  # native clients send no Origin
    assert http_handshake(port, f"localhost:{port}", origin="http://localhost:3000")[0] == 101  # allowed by the user
    refused = [
        (f"127.0.0.1:{port}", "http://evil.example", "--allow-origin http://evil.example"),
        (f"127.0.0.1:{port}", "null", "Origin 'null' (a sandboxed page or a local file) is never allowed"),
        (f"127.0.0.1:{port}", "http://localhost:3001", "is not allowed"),
        (f"rebind.evil.example:{port}", None, "DNS rebinding"),
        (f"rebind.evil.example:{port}", "http://rebind.evil.example", "DNS rebinding"),
        ("127.0.0.1:80@evil", None, "malformed Host"),
    ]
    caplog.clear()
    for host, origin, words in refused:
        status, body = http_handshake(port, host, origin)
        assert status == 403 and words in body, (host, origin, status, body)
    lines = [r for r in caplog.records if "refused connection" in r.getMessage()]
    assert len(lines) == len(refused)  # one line per refused connection
    # The same over a real websocket client: the handshake fails with 403 before any message.
    with pytest.raises(InvalidStatus) as info:
        connect(server.url, origin="http://evil.example")
    assert info.value.response.status_code == 403


def test_host_rules_for_specific_and_wildcard_addresses():
    specific = AccessRules("192.168.1.20")
    assert specific.refusal([], ["192.168.1.20:7860"]) is None
    assert specific.refusal([], ["localhost"]) is None
    assert "DNS rebinding" in specific.refusal([], ["10.0.0.1:7860"])
    wildcard = AccessRules("0.0.0.0", allow_hosts=["studio.lan"])
    assert wildcard.refusal([], ["10.0.0.1:7860"]) is None  # any address of this machine
    assert wildcard.refusal([], ["[fe80::1]:7860"]) is None
    assert wildcard.refusal([], ["studio.lan:7860"]) is None
    assert wildcard.refusal([], [socket.gethostname()]) is None
    assert "--allow-host" in wildcard.refusal([], ["attacker.example"])
    assert wildcard.refusal([], []) and wildcard.refusal([], ["a", "b"])  # exactly one Host
    assert "more than one Origin" in wildcard.refusal(["http://a", "http://b"], ["localhost"])
    v6 = AccessRules("fe80::5")
    assert v6.refusal([], ["[fe80::5]:7860"]) is None and v6.refusal([], ["[FE80:0::5]"]) is None
    assert v6.refusal([], ["[fe80::6]:7860"]) is not None
    assert AccessRules("::1").refusal([], ["[::1]:7860"]) is None
    with pytest.raises(ValueError, match="allow-origin"):
        ServerConfig(allow_origins=["evil.example"]).validate()


def test_cli_serve_takes_allowed_origins_and_hosts():
    from server.cli import parser
    from server.commands.common import server_config as _config

    config = _config(
        parser().parse_args(
            [
                "serve",
                "--allow-origin",
                "http://a.test",
                "--allow-origin",
                "https://b.test",
                "--allow-host",
                "studio.lan",
            ]
        )
    )
    assert config.allow_origins == ["http://a.test", "https://b.test"] and config.allow_hosts == ["studio.lan"]
    assert _config(parser().parse_args(["serve"])).allow_origins == []


def test_the_wire_listing_carries_no_file_paths(start_server, tmp_path):
    from tests.factory import make_models_dir

    models = make_models_dir(tmp_path / "models", which=("emb-sd15",))
    server = start_server(model_dirs=[models])
    assert any(m.get("path") for m in server.server.router.models())  # the server itself knows them
    with Client(server.url, "test") as client:
        listing = list(client.welcome.models) + list(client.list_models())
    assert any(m["kind"] == "embedding" for m in listing)
    assert not any("path" in m for m in listing)
    assert str(tmp_path) not in repr(listing)


# --- 2. fair turns across clients ----------------------------------------------------------------------------------


class GatedRouter(Router):
    """The real router; records the order jobs start in and holds the first one until ``gate`` is set."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.started: List[str] = []
        self.gate = threading.Event()

    def run(self, job, ctx):
        self.started.append(job.id)
        if len(self.started) == 1:
            assert self.gate.wait(120)
        return super().run(job, ctx)


def finals(ws, count: int) -> dict:
    out = {}
    while len(out) < count:
        msg = decode(ws.recv(timeout=120))
        if msg["type"] in ("result", "cancelled", "error") and msg.get("id"):
            out[msg["id"]] = msg
    return out


def test_a_greedy_client_gets_busy_for_its_own_queue_and_others_take_turns(tmp_path):
    config = ServerConfig(port=0, model_dirs=[tmp_path], limits=Limits(max_queue=4))
    router = GatedRouter(config)
    with ServerThread(config, router) as server:
        greedy, _ = raw_session(server.url, hello("greedy", "greedy"))
        for i in range(1, 5):
            greedy.send(encode(inpaint(f"a{i}")))
        seen = []
        while len([m for m in seen if m["type"] == "queued"]) < 4:
            seen.append(decode(greedy.recv(timeout=30)))
        greedy.send(encode(inpaint("a5")))  # its fifth: over its own share
        busy = next(m for m in iter(lambda: decode(greedy.recv(timeout=30)), None) if m["type"] == "error")
        assert busy["code"] == "busy" and busy["id"] == "a5" and "per client" in busy["message"]
        other, _ = raw_session(server.url, hello("other", "other"))
        other.send(encode(inpaint("b1")))
        queued = decode(other.recv(timeout=30))
        assert queued == {"type": "queued", "id": "b1", "position": 1}  # only the running job is ahead of it
        router.gate.set()
        assert finals(other, 1)["b1"]["type"] == "result"
        assert all(m["type"] == "result" for m in finals(greedy, 4).values())
    # The other client's job ran after at most one job of the greedy client (the one already running).
    assert router.started == ["a1", "b1", "a2", "a3", "a4"]


def test_turns_rotate_across_three_clients(tmp_path):
    config = ServerConfig(port=0, model_dirs=[tmp_path])
    router = GatedRouter(config)
    with ServerThread(config, router) as server:
        clients = {name: raw_session(server.url, hello(name, f"ses-{name}"))[0] for name in "abc"}
        clients["a"].send(encode(inpaint("a1")))  # runs, and holds the worker
        wait_for(lambda: router.started == ["a1"])
        for name, ids in (("a", ("a2", "a3")), ("b", ("b1", "b2")), ("c", ("c1", "c2"))):
            for job_id in ids:
                clients[name].send(encode(inpaint(job_id)))
            wait_for(lambda: len(server.server.queue) == {"a": 3, "b": 5, "c": 7}[name])
        router.gate.set()
        for name, ws in clients.items():
            assert all(m["type"] == "result" for m in finals(ws, 3 if name == "a" else 2).values())
    assert router.started == ["a1", "b1", "c1", "a2", "b2", "c2", "a3"]


# --- 3. the outbox -------------------------------------------------------------------------------------------------


def _result(job_id: str, nbytes: int) -> Result:
    side = int((nbytes // 4) ** 0.5)
    return Result(job_id, (ResultLayer("r", 0, 0, side, side, "rgba8", bytes(side * side * 4)),))


def test_the_outbox_coalesces_progress_and_counts_bytes():
    box = Outbox(max_bytes=10_000)
    behind: List[bool] = []
    box.on_behind = behind.append
    preview = ImagePayload(8, 8, "rgba8", bytes(256))
    box.put(Queued("a", 0))
    box.put(Progress("a", 1, 10, preview))
    box.put(Progress("b", 1, 10))
    box.put(Progress("a", 2, 10, preview))
    box.put(Progress("a", 3, 10, preview))  # replaces the unsent step 1 and 2 in place
    assert len(box) == 3
    assert [(m.type, getattr(m, "step", None)) for m in box.drain()] == [
        ("queued", None),
        ("progress", 3),
        ("progress", 1),
    ]
    assert box.bytes == 0 and behind == []
    box.put(_result("big", 40_000))
    box.put(Progress("a", 4, 10))
    # Results over the bound: the client is behind (its next job waits), but it is not flooding the server.
    assert box.behind and not box.flooded and box.peak_bytes > 40_000 and behind == [True]
    assert box.take().type == "result"
    assert not box.behind and behind == [True, False]
    for i in range(40):  # answers a client asked for and does not read: no job bounds them
        box.put(Cancelled(f"x{i}"))
    assert box.flooded and behind == [True, False, True]
    box.drain()
    assert box.bytes == box.result_bytes == 0 and behind == [True, False, True, False]


class NotReading:
    """A websocket client (sans-I/O, websockets' own ClientProtocol) that sends but never reads after the
    handshake; its receive buffer is as small as the system allows."""

    def __init__(self, url: str) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        uri = parse_uri(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((uri.host, uri.port))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.handshake_exc is None and self.protocol.state.name == "CONNECTING":
            self.protocol.receive_data(self.sock.recv(1024))
        assert self.protocol.handshake_exc is None

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def send(self, message: dict) -> None:
        self.protocol.send_binary(encode(message))
        self._flush()

    def close(self) -> None:
        self.sock.close()


class SlowReader(NotReading):
    """A client that reads when asked to, slowly: ``chunk`` bytes at a time with a pause after each (it answers the
    server's pings, like any websocket client)."""

    def __init__(self, url: str, chunk: int = 64 * 1024, pause: float = 0.001) -> None:
        super().__init__(url)
        self.chunk, self.pause = chunk, pause
        self._parts: List[bytes] = []
        self._messages: List[dict] = []

    def recv(self, timeout: float = 120) -> dict:
        end = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        self._take_frames()
        while not self._messages:
            assert time.monotonic() < end, "timed out"
            time.sleep(self.pause)
            data = self.sock.recv(self.chunk)
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
            self._flush()  # pongs
            self._take_frames()
            assert data or self._messages, "the server closed the connection without a close frame"
        return self._messages.pop(0)

    def _take_frames(self) -> None:
        for frame in self.protocol.events_received():
            if not isinstance(frame, Frame):  # the handshake's response
                continue
            if frame.opcode is Opcode.CLOSE:
                close = Close.parse(frame.data)
                raise AssertionError(f"the server closed the connection: {close.code} {close.reason}")
            if frame.opcode in (Opcode.BINARY, Opcode.CONT):
                self._parts.append(frame.data)
                if frame.fin:
                    self._messages.append(decode(b"".join(self._parts)))
                    self._parts = []


def the_only_link(server, deadline: float = 60):
    table = server.server.sessions
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        links = [s.link for s in list(table.sessions.values()) if s.link is not None]
        if links:
            return links[0]
        time.sleep(0.02)
    raise AssertionError("no connected session")


def wait_for(condition, deadline: float = 120) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


MiB = 1024 * 1024
RESULT_BYTES = 1024 * 1024 * 4  # the result of inpaint(..., 1024, 1024)


def session_of(server, session_id: str, deadline: float = 60):
    table = server.server.sessions
    wait_for(lambda: session_id in table.sessions and table.sessions[session_id].link is not None, deadline)
    return table.sessions[session_id]


def held_back(queue, link) -> bool:
    """More than the bound waits for the link's client, and the queue runs nothing though jobs of its session wait."""
    return link.outbox.bytes > link.outbox.max_bytes and queue.current is None and bool(queue.jobs_of(link.session))


def test_a_client_that_never_reads_is_held_then_dropped_after_the_write_timeout(start_server, caplog):
    caplog.set_level(logging.INFO)
    limit = 6 * MiB
    server = start_server(max_outbox_bytes=limit, write_timeout=3.0)
    queue = server.server.queue
    client = NotReading(server.url)
    try:
        client.send(hello("never-reads"))  # a 1.0-style client: no session to resume
        link = the_only_link(server)
        session = link.session
        for i in range(10):
            client.send(inpaint(f"big-{i}", 1024, 1024))
        # Its results wait: its next jobs do not start (the memory stays bounded), but it is not dropped for them...
        wait_for(lambda: link.closed_because is not None or held_back(queue, link))
        assert link.closed_because is None and queue.is_held(session)
        # ...only for reading nothing at all for write_timeout s.
        wait_for(lambda: link.closed_because is not None)
        assert "read nothing for 3 s" in link.closed_because
        assert link.outbox.peak_bytes <= limit + RESULT_BYTES + 64 * 1024  # never more than the limit + one result
        assert link.outbox.bytes == 0
        wait_for(lambda: not server.server.sessions.sessions)  # the session and its memory are gone
        wait_for(lambda: queue.current is None and len(queue) == 0 and not queue.is_held(session))
    finally:
        client.close()
    assert any("closing the connection of never-reads" in r.getMessage() for r in caplog.records)
    with Client(server.url, "after") as other:  # the server goes on
        assert other.run({k: v for k, v in inpaint("ok").items() if k != "type"}).layers


class RecordingRouter(Router):
    """The real router; records the order jobs start in."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.started: List[str] = []

    def run(self, job, ctx):
        self.started.append(job.id)
        return super().run(job, ctx)


@pytest.mark.engine
def test_a_slow_reader_is_throttled_never_dropped_and_others_run_meanwhile(tmp_path):
    limit = 1 * MiB
    config = ServerConfig(port=0, model_dirs=[tmp_path], max_outbox_bytes=limit, write_timeout=30)
    router = RecordingRouter(config)
    with ServerThread(config, router) as server:
        queue = server.server.queue
        slow = SlowReader(server.url)
        try:
            slow.send(hello("slow", "slow"))
            assert slow.recv()["type"] == "welcome"
            session = session_of(server, "slow")
            link = session.link
            mine = [f"s{i}" for i in range(1, 6)]
            for job_id in mine:
                slow.send(inpaint(job_id, 1024, 1024))  # 4 MiB results: each one alone is over the bound
            # It reads nothing for now: once a result waits, its next job waits too.
            wait_for(lambda: link.closed_because is not None or held_back(queue, link))
            assert link.closed_because is None and queue.is_held(session)
            before = list(router.started)
            assert before == mine[: len(before)] and len(before) < len(mine)
            # Another client's jobs run meanwhile, one after the other: the held client's turn is skipped.
            fast, _ = raw_session(server.url, hello("fast", "fast"))
            for job_id in ("f1", "f2"):
                fast.send(encode(inpaint(job_id)))
                assert finals(fast, 1)[job_id]["type"] == "result"
            assert router.started == before + ["f1", "f2"] and queue.is_held(session)
            # The slow client reads, with pauses: it gets every result, in order, and is never dropped.
            results = []
            while len(results) < len(mine):
                msg = slow.recv()
                assert msg["type"] not in ("error", "cancelled"), msg
                if msg["type"] == "result":
                    results.append(msg["id"])
                    assert msg["layers"][0]["width"] == 1024
            assert results == mine and link.closed_because is None
            assert router.started == before + ["f1", "f2"] + mine[len(before) :]
            assert link.outbox.peak_bytes <= limit + RESULT_BYTES + 64 * 1024  # within the bound + one result
            wait_for(lambda: not queue.is_held(session))
        finally:
            slow.close()


def test_a_live_client_that_does_not_read_holds_at_most_one_waiting_frame(start_server):
    limit = 1 * MiB
    server = start_server(max_outbox_bytes=limit, write_timeout=60)
    queue = server.server.queue
    client = NotReading(server.url)
    try:
        client.send(hello("live painter", "live"))
        link = session_of(server, "live").link
        for i in range(5):  # more than the socket buffers hold: its results wait
            client.send(inpaint(f"big-{i}", 1024, 1024))
        wait_for(lambda: link.closed_because is not None or held_back(queue, link))
        assert link.closed_because is None
        for i in range(8):  # it goes on painting: each newer frame replaces the waiting one
            client.send(dict(inpaint(f"l{i}", 256, 256), live=True))
        wait_for(lambda: [q.id for q in queue.jobs_of(link.session) if q.live] == ["l7"])
        assert link.closed_because is None and queue.current is None
        assert link.outbox.peak_bytes <= limit + RESULT_BYTES + 64 * 1024
    finally:
        client.close()


def test_an_outbox_bound_too_small_for_a_welcome_is_refused_at_start():
    with pytest.raises(ValueError, match="max_outbox_bytes must be at least 65536"):
        ServerConfig(max_outbox_bytes=8192).validate()
    ServerConfig(max_outbox_bytes=64 * 1024).validate()


def test_a_kept_result_over_the_bound_comes_back_on_reconnect(start_server):
    server = start_server(max_outbox_bytes=1 * MiB, write_timeout=30)
    client = SlowReader(server.url)
    try:
        client.send(hello("painter", "resumes"))
        assert client.recv()["type"] == "welcome"
        session = session_of(server, "resumes")
        client.send(inpaint("big", 1024, 1024))  # a 4 MiB result: four times the bound
        assert client.recv() == {"type": "queued", "id": "big", "position": 0}
    finally:
        client.close()  # gone before reading the result
    wait_for(lambda: "big" in session.finals)
    ws, welcome = raw_session(server.url, hello("painter", "resumes"))  # never refused for what is kept
    try:
        assert welcome["type"] == "welcome" and welcome["resumed"] == ["big"]
        result = decode(ws.recv(timeout=60))
        assert result["type"] == "result" and result["id"] == "big" and result["layers"][0]["width"] == 1024
        ws.send(encode(inpaint("next")))  # and the connection goes on
        assert finals(ws, 1)["next"]["type"] == "result"
    finally:
        ws.close()


def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout(start_server):
    server = start_server(write_timeout=1.0)
    client = NotReading(server.url)
    try:
        client.send(hello("stalled", "stalled"))
        link = the_only_link(server)
        client.send(inpaint("huge", 2048, 2048))  # a 16 MiB result: more than the socket buffers hold
        wait_for(lambda: link.closed_because is not None)
        assert "read nothing for 1 s" in link.closed_because
        session = server.server.sessions.sessions["stalled"]
        wait_for(lambda: "huge" in session.finals)  # kept for a reconnect, like after any dropped connection
    finally:
        client.close()
    ws, welcome = raw_session(server.url, hello("stalled", "stalled"))
    assert welcome["resumed"] == ["huge"]
    assert decode(ws.recv(timeout=60))["type"] == "result"


# --- 4. token guesses -------------------------------------------------------------------------------------------------


def test_the_guess_delay_doubles_up_to_its_cap_and_a_right_token_resets_it():
    throttle = GuessThrottle(base=0.25, maximum=8.0)
    assert [throttle.delay(n) for n in range(8)] == [0, 0.25, 0.5, 1, 2, 4, 8, 8]
    assert throttle.delay(10_000) == 8.0
    for n in range(1, 5):
        assert throttle.failed("10.0.0.1", now=100.0) == throttle.delay(n)
    assert throttle.wait_time("10.0.0.1", now=100.0) == 2.0
    assert throttle.wait_time("10.0.0.2", now=100.0) == 0  # per address
    throttle.succeeded("10.0.0.1")
    assert throttle.wait_time("10.0.0.1", now=100.0) == 0


# The first wrong token's delay in the two tests below (the product's is 0.25 s): their rules are in units of it, so
# that the wait they measure stays short.
GUESS_S = 0.125


def test_wrong_tokens_are_answered_ever_more_slowly(start_server):
    server = start_server(token="right-token-123", guess_delay=GUESS_S, guess_delay_max=4 * GUESS_S)
    answered, end = 0, time.monotonic() + 6 * GUESS_S
    while time.monotonic() < end:
        ws, reply = raw_session(server.url, hello("guesser", token=f"guess-{answered}"))
        assert reply["code"] == "unauthorized"
        answered += 1
        ws.close()
    # Unthrottled, one address got hundreds of answers a second; now waits of 0, 1, 2 and 4 units fit 6.
    assert 1 <= answered <= 6, answered
    ws, reply = raw_session(server.url, hello("owner", token="right-token-123"))
    assert reply["type"] == "welcome"


def test_parallel_wrong_tokens_from_one_address_are_checked_one_at_a_time(start_server):
    server = start_server(token="right-token-123", guess_delay=GUESS_S, guess_delay_max=4 * GUESS_S)
    answered_at: List[float] = []
    start = time.monotonic()

    def guess(n: int) -> None:
        ws, reply = raw_session(server.url, hello("guesser", token=f"parallel-{n}"))
        assert reply["code"] == "unauthorized"
        answered_at.append(time.monotonic() - start)
        ws.close()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answered_at) == 8
    # Checked one after another with 0, 1, 2, 4, 4 ... units between them: about 3 within the first 6, not all 8.
    assert sum(1 for t in answered_at if t < 6 * GUESS_S) <= 5, sorted(answered_at)


# --- 5. the log ---------------------------------------------------------------------------------------------------------


def test_network_noise_is_one_line_without_a_traceback(start_server, caplog):
    caplog.set_level(logging.INFO)
    server = start_server()
    port = server.port
    peers = {}

    sock = socket.create_connection(("127.0.0.1", port))  # a port probe
    peers["probe"] = sock.getsockname()[1]
    sock.close()

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # a plain HTTP request
        peers["http"] = sock.getsockname()[1]
        sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 426")

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # a TLS client
        peers["tls"] = sock.getsockname()[1]
        with pytest.raises((ssl.SSLError, OSError)):
            context.wrap_socket(sock, server_hostname="localhost")

    ws = connect(server.url)  # a websocket closed before hello
    peers["early"] = ws.socket.getsockname()[1]
    ws.close()

    with pytest.raises(InvalidStatus):
        with connect(server.url, origin="http://evil.example") as ws:  # refused by the Origin rule
            pass

    def lines_about(port_: int) -> list:
        return [r for r in caplog.records if f":{port_}" in r.getMessage()]

    wait_for(lambda: all(lines_about(peers[k]) for k in ("probe", "http", "tls")), deadline=30)
    with Client(server.url, "sync") as client:  # the server has handled everything before this one
        client.list_models()
    for name in ("probe", "http", "tls"):
        assert len(lines_about(peers[name])) == 1, (name, [r.getMessage() for r in lines_about(peers[name])])
    assert len(lines_about(peers["early"])) <= 1
    assert len([r for r in caplog.records if "refused connection" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_real_bug_in_the_handshake_keeps_its_traceback(caplog):
    from websockets.exceptions import InvalidMessage

    adapter = NetworkLog(logging.getLogger("paintbridge.network.test"))
    caplog.set_level(logging.INFO)
    try:
        raise KeyError("a bug")
    except KeyError:
        adapter.error("opening handshake failed", exc_info=True)
    try:
        try:
            raise EOFError("connection closed while reading HTTP request line")
        except EOFError as eof:
            raise InvalidMessage("did not receive a valid HTTP request") from eof
    except InvalidMessage:
        adapter.error("opening handshake failed", exc_info=True)
    bug, noise = caplog.records[-2:]
    assert bug.levelno == logging.ERROR and bug.exc_info is not None
    assert noise.levelno == logging.INFO and noise.exc_info is None
    assert "did not receive a valid HTTP request (connection closed" in noise.getMessage()


# --- 7. a dropped connection mid-job (the proxy the real-host tests use) ---------------------------------------------


def test_a_connection_cut_mid_job_resumes_through_the_proxy(start_server):
    from tests.cutproxy import CuttingProxy

    server = start_server()
    with CuttingProxy(server.port) as proxy:
        with Client(proxy.url, "flaky") as client:
            result = client.run({k: v for k, v in inpaint("cut", 96, 96).items() if k != "type"}, timeout=120)
        assert proxy.cuts == 1 and client.reconnects == 1
    assert result.id == "cut" and result.layers[0].width == 96


class NoPongs(NotReading):
    """Reads every frame, but its websocket never answers a ping: what a connection that dropped the moment after the
    server wrote to it looks like from the server."""

    def read_until(self, kind: str, job_id: str) -> dict:
        while True:
            for event in self.protocol.events_received():
                if getattr(getattr(event, "opcode", None), "name", "") == "BINARY":
                    msg = decode(event.data)
                    if msg["type"] == kind and msg.get("id") == job_id:
                        return msg
            data = self.sock.recv(1 << 20)
            assert data, "the server closed the connection"
            self.protocol.receive_data(data)  # the pongs it prepares are never sent


def test_a_final_written_to_a_connection_that_then_drops_is_kept_until_a_pong_confirms_it(start_server):
    server = start_server()
    client = NoPongs(server.url)
    try:
        client.send(hello("no-pongs", "unconfirmed"))
        client.send(inpaint("written"))
        assert client.read_until("result", "written")["layers"]  # it reached this side's socket...
    finally:
        client.close()  # ...but the connection drops before any pong confirms it
    ws, welcome = raw_session(server.url, hello("no-pongs", "unconfirmed"))
    assert welcome["resumed"] == ["written"]
    again = decode(ws.recv(timeout=30))
    assert again["type"] == "result" and again["id"] == "written"
    ws.send(encode({"type": "list_models"}))  # its answer comes after the ping that followed the result, which this
    assert decode(ws.recv(timeout=30))["type"] == "models"  # client's websocket has answered by now
    ws.close()
    ws, welcome = raw_session(server.url, hello("no-pongs", "unconfirmed"))  # that client's websocket answered the ping
    assert welcome["resumed"] == []
