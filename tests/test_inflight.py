"""The server-wide budget for incoming frame bytes (``limits.max_bytes_in_flight``): several clients sending frames
near ``max_frame_bytes`` at once are read within the budget (plus one frame), none is dropped, every job is answered,
and the count returns to zero."""

from __future__ import annotations

import threading

import numpy as np
from websockets.sync.client import connect

from protocol import Limits
from protocol.codec import decode, encode, fragments
from server.inflight import FrameBudget

FRAME = 8 << 20
BUDGET = 16 << 20
CLIENTS = 6
READ_CHUNK = 256 << 10  # what one socket read may add beyond the budget, per connection


def big_job(job_id: str) -> dict:
    side = int(((FRAME - 4096) / 5) ** 0.5)  # RGBA + gray8 mask: 5 bytes a pixel, just under the frame limit
    image = np.full((side, side, 4), 120, np.uint8)
    mask = np.zeros((side, side), np.uint8)
    mask[:4, :4] = 255
    return {
        "type": "job",
        "id": job_id,
        "mode": "inpaint",
        "model": "classical",
        "image": {"width": side, "height": side, "format": "rgba8", "data": image.tobytes()},
        "mask": {"width": side, "height": side, "format": "gray8", "data": mask.tobytes()},
        "params": {"grow": 0, "feather": 0, "fill": "telea"},
    }


def test_concurrent_near_limit_frames_stay_within_the_budget(start_server):
    server = start_server(limits=Limits(max_frame_bytes=FRAME, max_bytes_in_flight=BUDGET))
    frames = [encode(big_job(f"big-{k}")) for k in range(CLIENTS)]
    assert all(FRAME - (64 << 10) < len(f) <= FRAME for f in frames)
    sockets = []
    for k in range(CLIENTS):
        ws = connect(server.url, compression=None, max_size=None)
        ws.send(encode({"type": "hello", "protocol": "1.1", "client": "budget", "session": f"budget-{k}"}))
        welcome = decode(ws.recv(timeout=30))
        assert welcome["limits"]["max_bytes_in_flight"] == BUDGET  # announced
        sockets.append(ws)
    start = threading.Barrier(CLIENTS)
    answers = [None] * CLIENTS

    def send(k: int) -> None:
        start.wait()
        sockets[k].send(fragments(frames[k]) if k % 2 else frames[k])  # as the reference client: 256 KiB pieces
        msg = decode(sockets[k].recv(timeout=120))
        while msg["type"] not in ("result", "error", "cancelled"):
            msg = decode(sockets[k].recv(timeout=120))
        answers[k] = msg

    threads = [threading.Thread(target=send, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert [a and a["type"] for a in answers] == ["result"] * CLIENTS, answers  # nobody was dropped
    budget = server.server.budget
    assert budget.pauses > 0  # the budget held some connections back
    assert budget.peak <= BUDGET + FRAME + CLIENTS * READ_CHUNK, budget.peak  # without it: about 6 frames at once
    assert budget.used == 0
    for ws in sockets:
        ws.close()


class Conn:
    """A connection as the budget sees it: paused until resumed."""

    def __init__(self) -> None:
        self.resumed = 0

    def resume_for_budget(self) -> None:
        self.resumed += 1


def test_the_longest_holder_always_reads_on_and_waiting_ones_resume_in_order():
    budget = FrameBudget(100)
    a, b, c = Conn(), Conn(), Conn()
    assert budget.received(a, 60) and budget.received(b, 30)
    assert not budget.received(c, 30)  # over the budget: waits
    assert not budget.received(b, 30)  # b too (it is not the longest holder)
    assert budget.received(a, 40)  # a always reads on: its frame completes
    budget.release(a, 100)  # a handled its frame: b (the longest holder now) and then c go on
    assert (b.resumed, c.resumed) == (1, 1) and budget.used == 90 and budget.peak == 190
    budget.forget(b)
    budget.forget(c)
    assert budget.used == 0
