"""Payloads through shared memory on one machine (``protocol/shared.py``), end to end through the real server on
loopback: the same pixels as the wire path, the wire path whenever memory cannot be shared, bad handles refused with
the field named, and no file left behind after a job, a cancel or a disconnect."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from protocol import Limits
from protocol.errors import ProtocolError
from protocol.client import Client, JobCancelled, JobFailed
from protocol.codec import decode, encode
from protocol.shared import MIN_SHARED_BYTES, SPARE_PREFIX, SPARES, SharedFolder, sweep
from tests.images import inpaint_job, layer_pixels, rect_mask, rgba_image

pytestmark = pytest.mark.skipif(os.name != "posix", reason="shared memory is offered on POSIX systems only")

W, H = 640, 480  # 1.2 MB of RGBA: over MIN_SHARED_BYTES, so the image goes through shared memory


def big_job(**extra) -> dict:
    return inpaint_job(
        rgba_image(W, H, seed=3),
        rect_mask(W, H, (200, 150, 420, 330)),
        params={"grow": 0, "feather": 0, "fill": "telea"},
        **extra,
    )


def raw_session(url: str, shared: bool = True):
    ws = connect(url, compression=None, max_size=None)
    hello = {"type": "hello", "protocol": "1.1", "client": "raw-shared-test"}
    if shared:
        hello["shared_memory"] = True
    ws.send(encode(hello))
    return ws, decode(ws.recv(timeout=30))


def payload_files(folder: SharedFolder) -> list:
    """The payload files in ``folder`` (not the spares either side prepared for its next payload)."""
    return [name for name in os.listdir(folder.path) if not name.startswith(SPARE_PREFIX)]


def final_of(ws, job_id: str, timeout: float = 120) -> dict:
    while True:
        msg = decode(ws.recv(timeout=timeout))
        if msg.get("id") == job_id and msg["type"] in ("result", "error", "cancelled"):
            return msg


def handle_job(job_id: str, handle: dict, **extra) -> dict:
    job = big_job(id=job_id, type="job", **extra)
    job["image"] = {"width": W, "height": H, "format": "rgba8", "shm": handle}
    return job


def test_the_image_and_the_result_travel_through_shared_memory_with_the_wire_paths_pixels(start_server):
    server = start_server()
    assert W * H * 4 >= MIN_SHARED_BYTES
    results = {}
    for shared in (True, False):
        with Client(server.url, "shared-test", shared_memory=shared) as client:
            folder = client.shared_folder
            assert (folder is not None) == shared and (client.welcome.shared_folder is not None) == shared
            for fmt in ("rgba8", "bgra8"):
                result = client.run(big_job(result_format=fmt), timeout=120)
                results[shared, fmt] = layer_pixels(result.layers[0]).copy()
            if shared:
                # The image went as a file (the 300 KB mask stays inline), each result came back as one.
                assert (folder.written, folder.read) == (2, 2)
                assert payload_files(folder) == []
    for fmt in ("rgba8", "bgra8"):
        assert np.array_equal(results[True, fmt], results[False, fmt])
    # The pixels are the job's: outside the mask the image exactly.
    img = rgba_image(W, H, seed=3)
    assert np.array_equal(results[True, "rgba8"][:150, :, :3], img[:150, :, :3])


def test_the_wire_path_whenever_memory_is_not_shared(start_server):
    offering, refusing = start_server(), start_server(shared_memory=False)
    # A server that does not offer it (a remote one, or switched off): the client uses the wire.
    with Client(refusing.url, "shared-test") as client:
        assert client.welcome.shared_folder is None and client.shared_folder is None
        wire = layer_pixels(client.run(big_job(), timeout=120).layers[0]).copy()
    # An old client (no shared_memory in hello) is not offered a folder.
    ws, welcome = raw_session(offering.url, shared=False)
    assert welcome["type"] == "welcome" and "shared_folder" not in welcome
    ws.close()
    # A folder the client cannot see (the server runs on another machine, e.g. through a tunnel) is not joined.
    with Client(offering.url, "shared-test") as client:
        path = client.welcome.shared_folder
        assert SharedFolder.join(path) is not None
        client._conn.shared = SharedFolder.join(path + "-elsewhere")
        assert client.shared_folder is None
        assert np.array_equal(layer_pixels(client.run(big_job(), timeout=120).layers[0]), wire)
        assert client.reconnects == 0  # the server sent no handle to a client that did not take the folder


def test_serve_no_shared_memory_keeps_payloads_on_the_wire(start_server_process):
    server = start_server_process(extra_args=["--no-shared-memory"])
    with Client(server.url, "shared-test") as client:
        assert client.welcome.shared_folder is None and client.shared_folder is None
        assert client.run(big_job(), timeout=120).layers[0].data


def test_a_folder_that_is_not_private_and_ours_is_not_joined(tmp_path):
    good = SharedFolder.create(str(tmp_path))
    assert SharedFolder.join(good.path) is not None
    assert SharedFolder.join(os.path.relpath(good.path)) is None
    link = tmp_path / "paintbridge-1-link"
    link.symlink_to(good.path)
    assert SharedFolder.join(str(link)) is None
    os.chmod(good.path, 0o755)
    assert SharedFolder.join(good.path) is None
    other = tmp_path / "somewhere"
    other.mkdir(mode=0o700)
    assert SharedFolder.join(str(other)) is None
    assert SharedFolder.join(None) is None and SharedFolder.join(str(tmp_path / "paintbridge-2-gone")) is None


def test_bad_handles_are_refused_naming_the_field_and_the_server_keeps_serving(start_server, tmp_path):
    server = start_server(limits=Limits(max_frame_bytes=2 * W * H * 4 - 1))
    ws, welcome = raw_session(server.url)
    other_ws, other_welcome = raw_session(server.url)
    mine, theirs = SharedFolder(welcome["shared_folder"]), SharedFolder(other_welcome["shared_folder"])
    pixels = rgba_image(W, H, seed=3).tobytes()
    size = len(pixels)
    secret = tmp_path / "secret.px"
    secret.write_bytes(pixels)
    os.symlink(secret, os.path.join(mine.path, "link.px"))
    cases = [
        ({"name": "../" + os.path.basename(theirs.path) + "/x.px", "size": size}, "image.shm.name", "file in"),
        ({"name": "/etc/passwd", "size": size}, "image.shm.name", "file in"),
        ({"name": "x.px/..", "size": size}, "image.shm.name", "file in"),
        (theirs.put(pixels), "image.shm.name", "names no file"),  # another client's file, by its name
        ({"name": "link.px", "size": size}, "image.shm.name", "cannot be opened"),  # a link out of the folder
        (dict(mine.put(pixels), size=size - 4), "image.shm.size", "needs"),  # declared size vs width x height
        (dict(mine.put(pixels[:-4]), size=size), "image.shm.size", "holds"),  # declared size vs the file's
        ({"name": "a.px"}, "image.shm.size", "missing"),
        ("a.px", "image.shm", "must be a map"),
    ]
    for i, (handle, field, words) in enumerate(cases):
        job = handle_job(f"bad-{i}", handle)
        ws.send(encode(job))
        reply = final_of(ws, job["id"])
        assert reply["type"] == "error" and reply["code"] == "bad_request", (field, reply)
        assert reply["field"] == field and words in reply["message"], (field, reply)
    # The frame limit holds for shared payloads too: an image and a control of that size together are over it.
    job = handle_job("too-large", mine.put(pixels))
    job["controls"] = [
        {"type": "canny", "image": {"width": W, "height": H, "format": "rgba8", "shm": mine.put(pixels)}}
    ]
    ws.send(encode(job))
    reply = final_of(ws, "too-large")
    assert reply["code"] == "too_large" and reply["field"] == "controls[0].image.shm", reply
    # A handle on a connection that did not agree to share memory.
    plain, _ = raw_session(server.url, shared=False)
    plain.send(encode(handle_job("unshared", {"name": "a.px", "size": size})))
    reply = final_of(plain, "unshared")
    assert reply["field"] == "image.shm" and "does not share memory" in reply["message"], reply
    # Every connection still works, and the other client's file was not touched. Results come back as handles only
    # for a job that says its client takes them.
    for job_id, takes in (("good", True), ("good-inline", False)):
        ws.send(encode(handle_job(job_id, mine.put(pixels), shared_memory=takes)))
        result = final_of(ws, job_id)
        assert result["type"] == "result" and ("shm" in result["layers"][0]) == takes
        assert ("data" in result["layers"][0]) != takes
    assert secret.read_bytes() == pixels
    for sock in (ws, other_ws, plain):
        sock.close()


def test_deep_nesting_is_not_walked_for_handles():
    """Looking for handles stops at the depth payloads sit at: a job nested a thousand lists deep is refused for what
    it lacks, like before, not with an internal error."""
    import msgpack

    from protocol import ProtocolError
    from protocol.connection import SERVER, Connection
    from protocol.messages import hello

    conn = Connection(SERVER)
    conn.receive_data(encode(hello("deep").to_wire()))
    deep = inner = []
    for _ in range(1000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(ProtocolError) as err:
        conn.receive_data(msgpack.packb({"type": "job", "id": "deep", "x": deep}))
    assert err.value.code == "bad_request" and err.value.field == "mode"


def slow_job() -> dict:
    """A patch fill of most of a 1200 x 1000 picture: seconds of work, checked for cancellation between steps."""
    img = rgba_image(1200, 1000, seed=5)
    return inpaint_job(img, rect_mask(1200, 1000, (100, 100, 1100, 900)), params={"grow": 0, "feather": 0})


def test_no_file_is_left_after_a_job_a_cancel_or_a_disconnect(start_server):
    server = start_server(grace=0)
    with Client(server.url, "shared-test") as client:
        folder = client.shared_folder
        client.run(big_job(), timeout=120)
        assert payload_files(folder) == []
        running = client.submit(slow_job())
        queued = client.submit(big_job())
        client.cancel(queued)
        client.cancel(running)
        for job_id in (queued, running):
            with pytest.raises(JobCancelled):
                for msg in client.events(job_id, timeout=120):
                    if msg.type == "cancelled":
                        raise JobCancelled(job_id)
        # (written: the first image, the slow job's image and mask, the cancelled image; read: one result)
        assert folder.written == 4 and folder.read == 1 and payload_files(folder) == []
    # The connection ended: its folder went with it.
    deadline = time.monotonic() + 10
    while os.path.exists(folder.path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(folder.path)
    # A client that vanishes with files written and never sent: the server removes them with the folder.
    ws, welcome = raw_session(server.url)
    SharedFolder(welcome["shared_folder"]).put(b"x" * MIN_SHARED_BYTES)
    ws.socket.shutdown(socket.SHUT_RDWR)
    deadline = time.monotonic() + 10
    while os.path.exists(welcome["shared_folder"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(welcome["shared_folder"])


def mappings_of(folder: SharedFolder) -> int:
    """How many mappings of files in ``folder`` this process holds (its server threads' and its clients')."""
    with open("/proc/self/maps") as maps:
        return sum(f" {folder.path}/" in line for line in maps)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="counts mappings in /proc (Linux)")
def test_the_server_unmaps_every_request_image_after_a_job_a_failure_or_a_cancel_running_or_queued(start_server):
    server = start_server()
    with Client(server.url, "shared-test") as client:
        folder = client.shared_folder
        result = client.run(big_job(), timeout=120)
        assert mappings_of(folder) >= 1  # (the result this client holds)
        del result
        with pytest.raises(JobFailed, match="img2img"):  # refused by the engine, once it runs
            client.run(big_job(mode="img2img"), timeout=120)
        running, queued = client.submit(slow_job()), None
        for msg in client.events(running, timeout=120):
            if msg.type == "started" and queued is None:
                queued = client.submit(big_job())
                time.sleep(1.0)  # (the slow job's fill under way: cancelled, it runs on in the background)
                client.cancel(queued)
                client.cancel(running)
        assert msg.type == "cancelled"
        assert [msg.type for msg in client.events(queued, timeout=120)][-1] == "cancelled"
        assert folder.written == 5  # the four images and the slow job's mask went through shared memory
        # The server lets go of a job's pixels just after its answer (a cancelled fill still running in the background
        # keeps its input until it stops): soon nothing of the folder is mapped.
        deadline = time.monotonic() + 60
        while mappings_of(folder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mappings_of(folder) == 0


def test_a_client_removes_the_files_a_stopped_server_never_read(start_server_process):
    server = start_server_process()
    # A hung server never answers the closing handshake: the close waits 1 s for it, not websockets' 10.
    client = Client(server.url, "shared-test", resume_for=0, close_timeout=1.0)
    client.connect()
    folder = client.shared_folder
    os.kill(server.proc.pid, signal.SIGSTOP)  # the server hangs: it reads nothing more
    try:
        client.submit(big_job())
        assert folder.written == 1 and len(payload_files(folder)) == 1
        client.close()
        assert os.listdir(folder.path) == []  # (its spare too: the server, stopped, made none)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def spares_in(folder: SharedFolder) -> list:
    return [name for name in os.listdir(folder.path) if name.startswith(SPARE_PREFIX)]


def test_a_payload_is_written_into_the_spare_its_predecessor_left_and_read_back_the_same(tmp_path):
    base = str(tmp_path)
    writer = SharedFolder.create(base)
    reader = SharedFolder(writer.path)
    sizes = (MIN_SHARED_BYTES, MIN_SHARED_BYTES + 4)
    first = [np.random.default_rng(i).integers(0, 255, n, dtype=np.uint8) for i, n in enumerate(sizes)]
    for data in first:
        handle = writer.put(data)
        assert np.array_equal(np.frombuffer(reader.take(handle, "image", len(data)), np.uint8), data)
    writer.wait_spares()
    assert writer.spared == 0 and sorted(writer.spare_sizes()) == list(sizes) and len(spares_in(writer)) == 2
    # The next payloads of those sizes go into the spares (renamed to their own names: no spare is handed out as one).
    for i, n in enumerate(sizes):
        data = np.random.default_rng(10 + i).integers(0, 255, n, dtype=np.uint8)
        handle = writer.put(data)
        assert not handle["name"].startswith(SPARE_PREFIX)
        assert np.array_equal(np.frombuffer(reader.take(handle, "image", n), np.uint8), data)
    assert writer.spared == 2 and writer.written == 4
    # A spare is not a payload: a handle naming one is refused, and the spare stays the writer's.
    writer.wait_spares()
    spare = spares_in(writer)[0]
    with pytest.raises(ProtocolError, match="names a spare") as refused:
        reader.take({"name": spare, "size": sizes[0]}, "image.shm", sizes[0])
    assert refused.value.field == "image.shm.name" and spare in spares_in(writer)
    writer.drop_spares()
    assert spares_in(writer) == [] and writer.spare_sizes() == []
    # A writer that dropped its spares makes no more.
    writer.put(first[0])
    writer.wait_spares()
    assert spares_in(writer) == []
    writer.remove()
    assert not os.path.exists(writer.path)


def test_spares_are_bounded_per_writer_and_none_without_them(tmp_path):
    folder = SharedFolder.create(str(tmp_path))
    for n in range(SPARES + 3):
        handle = folder.put(b"s" * (MIN_SHARED_BYTES + n))
        os.unlink(os.path.join(folder.path, handle["name"]))  # (as its reader would)
        folder.wait_spares()
    assert len(spares_in(folder)) == SPARES
    assert folder.spare_sizes() == [MIN_SHARED_BYTES + n for n in range(3, SPARES + 3)]  # the most recent sizes
    plain = SharedFolder(folder.path, spares=0)
    plain.put(b"p" * MIN_SHARED_BYTES)
    plain.wait_spares()
    assert plain.spare_sizes() == [] and len(spares_in(folder)) == SPARES
    folder.remove()
    assert not os.path.exists(folder.path)


def test_a_spare_that_is_gone_or_not_its_size_falls_back_to_a_new_file(tmp_path):
    folder = SharedFolder.create(str(tmp_path))
    reader = SharedFolder(folder.path)
    data = b"a" * MIN_SHARED_BYTES
    reader.take(folder.put(data), "image", len(data))
    folder.wait_spares()
    (spare,) = spares_in(folder)
    os.unlink(os.path.join(folder.path, spare))  # removed by someone else (the server emptying the folder)
    assert bytes(reader.take(folder.put(data), "image", len(data))) == data
    folder.wait_spares()
    (spare,) = spares_in(folder)
    os.truncate(os.path.join(folder.path, spare), 10)  # changed under the writer
    assert bytes(reader.take(folder.put(data), "image", len(data))) == data
    assert folder.spared == 0 and folder.written == 3
    folder.remove()


def test_a_client_that_closes_or_dies_leaves_no_spare_and_the_server_serves_on(start_server):
    server = start_server(grace=0)
    with Client(server.url, "shared-test") as client:
        folder = client.shared_folder
        for _ in range(2):
            client.run(big_job(), timeout=120)
        folder.wait_spares()
        assert folder.spared >= 1  # the second image went into the spare the first one left
        assert len(spares_in(folder)) >= 1
    assert folder.spare_sizes() == []
    # A client process killed while its spares are there: they go with the folder when the server sees it drop.
    script = (
        "import sys, time; from protocol.client import Client; from tests.test_shared_memory import big_job\n"
        f"c = Client({server.url!r}, 'doomed'); c.connect(); c.run(big_job(), timeout=120)\n"
        "c.shared_folder.wait_spares(); print(c.shared_folder.path, flush=True); time.sleep(600)\n"
    )
    doomed = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).parent.parent)
    )
    try:
        path = doomed.stdout.readline().strip()
        assert any(name.startswith(SPARE_PREFIX) for name in os.listdir(path))
    finally:
        doomed.kill()
        doomed.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(path)
    with Client(server.url, "shared-test") as client:
        assert client.run(big_job(), timeout=120).layers[0].data


def test_folders_of_server_processes_that_are_gone_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"paintbridge-{dead.pid}-abc_123"
    gone.mkdir(mode=0o700)
    (gone / "left.px").write_bytes(b"z")
    alive = tmp_path / f"paintbridge-{os.getpid()}-abc"
    alive.mkdir(mode=0o700)
    unrelated = tmp_path / "paintbridge-models"
    unrelated.mkdir()
    assert sweep(str(tmp_path)) == 1
    assert not gone.exists() and alive.exists() and unrelated.exists()
    assert Path(SharedFolder.create(str(tmp_path)).path).stat().st_mode & 0o777 == 0o700
