"""Cluster mode on a real local Ray cluster: one front end, three CPU engine replicas on Ray Serve, tiny models.

One Ray cluster (small: 4 logical CPUs, a 96 MB object store, no dashboard, no Serve proxy) serves the whole module.
Replicas ``t-0`` and ``t-1`` see a models folder with tiny SD1.5 and SDXL checkpoints and ``tiny-two`` (the SD1.5 one
again: a checkpoint only those two replicas have); ``u-0`` sees SD1.5, SDXL and ``tiny-broken`` (an SD1.5 folder whose
UNet weights are cut short: it is listed, and cannot load).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from websockets.sync.client import connect

from protocol import Limits
from protocol.codec import decode, encode

pytest.importorskip("ray.serve", reason="cluster mode needs the 'cluster' extra (python3 install.py --dev has it)")

from factory import checkpoint_folder, make_models_dir

REPO = Path(__file__).resolve().parent.parent
STEPS = 8


def image_map(w: int = 64, h: int = 64, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"width": w, "height": h, "format": "rgba8", "data": rng.integers(0, 255, (h, w, 4), np.uint8).tobytes()}


def img2img(job_id: str, model: str = "tiny-sd15", steps: int = STEPS, previews: bool = False) -> dict:
    return {
        "type": "job",
        "id": job_id,
        "mode": "img2img",
        "model": model,
        "prompt": "a red apple",
        "image": image_map(seed=len(job_id)),
        "params": {"steps": steps, "strength": 1.0, "seed": 1},
        "previews": previews,
    }


def session(url: str, name: str):
    ws = connect(url, compression=None, max_size=None)
    ws.send(encode({"type": "hello", "protocol": "1.1", "client": name, "session": f"ses-{name}-{time.time_ns()}"}))
    welcome = decode(ws.recv(timeout=60))
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


def until_final(ws, job_id: str, timeout: float = 240.0) -> List[dict]:
    """Every message of ``job_id`` up to its final one."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        msg = decode(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
        if msg.get("id") == job_id:
            seen.append(msg)
            if msg["type"] in ("result", "cancelled", "error"):
                return seen


def broken_checkpoint(dest: Path) -> None:
    """A copy of the tiny SD1.5 folder whose UNet weights file is cut in half."""
    src = checkpoint_folder("sd15")
    shutil.copytree(src, dest, symlinks=False)
    weights = next((dest / "unet").glob("*.safetensors"))
    data = weights.read_bytes()
    weights.unlink()
    weights.write_bytes(data[: len(data) // 2])


class Studio:
    def __init__(self, server) -> None:
        self.server = server
        self.url = server.url

    @property
    def queue(self):
        return self.server.server.queue

    @property
    def pool(self):
        return self.server.server.pool

    def restart(self) -> None:
        """Stop the front end and start a new one over the same pool (a new port)."""
        from server.app import ServerThread
        from server.cluster.frontend import ClusterServer

        config = self.server.server.config
        self.server.stop()
        self.server = ServerThread(config, server=ClusterServer(config)).start(timeout=300)
        self.url = self.server.url
        self.wait_all_alive()

    def replica_of(self, job_id: str) -> List[str]:
        """The replicas the job was started on, in order."""
        first = [rid for jid, rid in self.queue.routes if jid == job_id]
        return first

    def facts(self, rid: str) -> dict:
        from ray import serve

        from server.cluster.pool import APP_PREFIX

        return serve.get_app_handle(APP_PREFIX + rid).describe.remote().result(timeout_s=60)

    def wait_all_alive(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while not (len(self.pool.states) == 3 and all(s.alive for s in self.pool.states.values())):
            assert time.monotonic() < deadline, {r: s.alive for r, s in self.pool.states.items()}
            time.sleep(0.5)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    import ray
    from ray import serve

    from server.app import ServerThread
    from server.cluster.frontend import ClusterServer
    from server.cluster.pool import deploy_replicas, start_serve
    from server.config import ServerConfig

    root = tmp_path_factory.mktemp("studio")
    models = make_models_dir(root / "models", which=("sd15", "sdxl"))
    shutil.copytree(checkpoint_folder("sd15"), models / "checkpoints" / "tiny-two")  # (a link is the same model)
    more = make_models_dir(root / "models-u", which=("sd15", "sdxl"))
    broken_checkpoint(more / "checkpoints" / "tiny-broken")
    env = {
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    for key in ("PAINTBRIDGE_CACHE", "HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        address="local",
        num_cpus=4,
        object_store_memory=96 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        namespace="paintbridge-tests",
        runtime_env={"env_vars": env},
    )
    studio = None
    try:
        start_serve()
        deploy_replicas(2, [str(models)], machine="t", num_cpus=1, threads=1, device="cpu")
        deploy_replicas(1, [str(more)], machine="u", num_cpus=1, threads=1, device="cpu")
        config = ServerConfig(port=0, model_dirs=[root / "front"], limits=Limits(max_queue=16), grace=60)
        (root / "front").mkdir()
        studio = Studio(ServerThread(config, server=ClusterServer(config)).start(timeout=300))
        studio.wait_all_alive()
        yield studio
    finally:
        if studio is not None:
            studio.server.stop()
        serve.shutdown()
        ray.shutdown()


def test_welcome_reports_the_pool(studio):
    ws, welcome = session(studio.url, "look")
    ws.close()
    pool = welcome["capabilities"]["pool"]["replicas"]
    assert [r["id"] for r in pool] == ["t-0", "t-1", "u-0"]
    assert all(r["device"] and "tiny-sd15" in r["models"] and "tiny-sdxl" in r["models"] for r in pool)
    assert "tiny-broken" in pool[2]["models"] and "tiny-broken" not in pool[0]["models"]
    assert {m["name"] for m in welcome["models"]} >= {"tiny-sd15", "tiny-sdxl", "tiny-broken", "classical"}
    assert all("path" not in m for m in welcome["models"])


def test_a_painters_second_job_lands_on_the_replica_that_holds_its_model(studio):
    a, _ = session(studio.url, "anna")
    b, _ = session(studio.url, "ben")
    a.send(encode(img2img("a1")))
    assert until_final(a, "a1")[-1]["type"] == "result"
    b.send(encode(img2img("b1", "tiny-sdxl")))
    assert until_final(b, "b1")[-1]["type"] == "result"
    a.send(encode(img2img("a2")))
    assert until_final(a, "a2")[-1]["type"] == "result"
    (first,), (other,), (second,) = studio.replica_of("a1"), studio.replica_of("b1"), studio.replica_of("a2")
    assert second == first and other != first
    holder = studio.facts(first)
    assert holder["loaded"] == "tiny-sd15" and holder["loads"] == 1  # the second job loaded nothing
    assert studio.facts(other)["loaded"] == "tiny-sdxl"
    a.close()
    b.close()


def test_three_painters_ten_jobs_each_spread_over_the_replicas(studio):
    clients = {name: session(studio.url, name)[0] for name in ("p", "q", "r")}
    for name, ws in clients.items():
        for n in range(10):
            ws.send(encode(img2img(f"{name}{n}")))
    for name, ws in clients.items():
        finals: Dict[str, dict] = {}
        while len(finals) < 10:
            msg = decode(ws.recv(timeout=300))
            assert msg.get("id", name)[0] == name, f"client {name} got a message of another client's job: {msg}"
            if msg["type"] in ("result", "cancelled", "error"):
                finals[msg["id"]] = msg
        assert sorted(finals) == sorted(f"{name}{n}" for n in range(10))
        assert all(m["type"] == "result" and m["layers"][0]["width"] == 64 for m in finals.values()), finals
        ws.close()
    used = {rid for jid, rid in studio.queue.routes if jid[0] in "pqr" and jid[1:].isdigit()}
    assert len(used) >= 2, studio.queue.routes


def test_painters_whose_job_ids_collide_each_get_their_own_results_across_the_pool(studio):
    """Job ids are per client: two painters both number their jobs c0, c1, ... and cancel one; the front end places
    and streams each job as its own (each result has its painter's width), and each job ends once."""
    widths = {"u": 64, "v": 72}
    clients = {name: session(studio.url, name)[0] for name in widths}
    for n in range(4):
        for name, ws in clients.items():
            ws.send(encode(dict(img2img(f"c{n}"), image=image_map(w=widths[name], seed=n))))
    clients["v"].send(encode({"type": "cancel", "id": "c3"}))
    for name, ws in clients.items():
        finals: Dict[str, list] = {}
        while len(finals) < 4:
            msg = decode(ws.recv(timeout=300))
            if msg["type"] in ("result", "cancelled", "error") and msg.get("id"):
                finals.setdefault(msg["id"], []).append(msg)
        assert sorted(finals) == ["c0", "c1", "c2", "c3"] and all(len(m) == 1 for m in finals.values()), finals
        results = [m[0] for m in finals.values() if m[0]["type"] == "result"]
        assert len(results) >= 3 and all(m["layers"][0]["width"] == widths[name] for m in results), finals
        assert all(m[0]["type"] in ("result", "cancelled") for m in finals.values()), finals
        ws.close()


def test_a_painter_with_many_jobs_does_not_hold_up_another_across_the_pool(studio):
    """Fair turns across the pool, counted in start order: painter A queues 8 jobs of a checkpoint two replicas have,
    then painter B queues one; after B's job is queued, at most one more of A's jobs per replica starts before it."""
    a, _ = session(studio.url, "fair-a")
    b, _ = session(studio.url, "fair-b")
    mine = [f"fa{n}" for n in range(8)]
    for jid in mine:
        a.send(encode(img2img(jid, "tiny-two")))
    queued = 0
    while queued < len(mine):
        queued += decode(a.recv(timeout=60))["type"] == "queued"
    b.send(encode(img2img("fb", "tiny-two")))
    assert decode(b.recv(timeout=60))["type"] == "queued"
    started_before = {jid for jid, _ in list(studio.queue.routes) if jid in mine}  # (at most: some may follow it)
    assert len(started_before) <= 4, "A's jobs finished before B's was queued: the pool was not busy"
    assert until_final(b, "fb")[-1]["type"] == "result"
    order = [jid for jid, _ in studio.queue.routes if jid in mine or jid == "fb"]
    ahead = [jid for jid in order[: order.index("fb")] if jid not in started_before]
    assert len(ahead) <= 2, f"{len(ahead)} of A's jobs started after B's was queued and before it: {order}"
    finals = 0
    while finals < len(mine):
        finals += decode(a.recv(timeout=300))["type"] == "result"
    assert {rid for jid, rid in studio.queue.routes if jid in mine} <= {"t-0", "t-1"}
    a.close()
    b.close()


def test_cancel_reaches_the_replica(studio):
    ws, _ = session(studio.url, "cancel")
    ws.send(encode(img2img("cancel-1", steps=150)))
    while True:
        msg = decode(ws.recv(timeout=240))
        if msg["type"] == "progress" and msg["step"] >= 1:
            break
    (rid,) = studio.replica_of("cancel-1")
    before = studio.facts(rid)["cancelled"]
    ws.send(encode({"type": "cancel", "id": "cancel-1"}))
    assert until_final(ws, "cancel-1")[-1]["type"] == "cancelled"
    deadline = time.monotonic() + 60
    while studio.facts(rid)["cancelled"] == before:  # the replica's run was cancelled, and its engine stopped
        assert time.monotonic() < deadline
        time.sleep(0.2)
    ws.close()


def test_a_replica_killed_mid_job_costs_a_restart_on_another(studio):
    ws, _ = session(studio.url, "crash")
    ws.send(encode(img2img("k1", steps=150)))
    seen = []
    while not any(m["type"] == "progress" and m["step"] >= 2 for m in seen):
        seen.append(decode(ws.recv(timeout=240)))
    (rid,) = studio.replica_of("k1")
    os.kill(studio.facts(rid)["pid"], signal.SIGKILL)
    rest = until_final(ws, "k1", timeout=300)
    assert rest[-1]["type"] == "result", rest[-1]
    restarted = [m for m in rest if m["type"] == "progress" and m["step"] == 0]
    assert restarted, "the client saw no progress restart"
    tried = studio.replica_of("k1")
    assert len(tried) == 2 and tried[0] == rid and tried[1] != rid
    ws.close()
    studio.wait_all_alive()  # Serve restarts the killed replica and the pool takes it back


def test_a_replica_that_cannot_load_a_model_is_taken_out_of_routing_for_it(studio):
    ws, _ = session(studio.url, "broken")
    ws.send(encode(img2img("x1", "tiny-broken")))
    error = until_final(ws, "x1")[-1]
    assert error["type"] == "error" and error["code"] == "internal", error
    assert "tiny-broken" in error["message"] and "replica u-0" in error["message"], error
    assert studio.pool.states["u-0"].refused.keys() == {"tiny-broken"}
    ws.send(encode(img2img("x2", "tiny-broken")))  # refused by routing: no replica is asked again
    again = until_final(ws, "x2")[-1]
    assert again["type"] == "error" and "replica u-0" in again["message"]
    assert studio.replica_of("x2") == []
    ws.send(encode(img2img("x3", "tiny-sd15")))  # the replica still runs other models
    assert until_final(ws, "x3")[-1]["type"] == "result"
    ws.send(encode(img2img("x4", "no-such-model")))
    missing = until_final(ws, "x4")[-1]
    assert missing["code"] == "model_not_found" and "tiny-sd15" in missing["message"]
    ws.close()


def test_a_restarted_front_end_delivers_what_finished_while_the_painter_was_away(studio):
    name = f"ses-away-{time.time_ns()}"
    ws = connect(studio.url, compression=None, max_size=None)
    ws.send(encode({"type": "hello", "protocol": "1.1", "client": "away", "session": name}))
    assert decode(ws.recv(timeout=60))["type"] == "welcome"
    ws.send(encode(img2img("r1", steps=20)))
    assert decode(ws.recv(timeout=60))["type"] == "queued"
    ws.close()  # the painter goes away; the job finishes while nobody is connected
    deadline = time.monotonic() + 120
    while "r1" not in studio.server.server.sessions.sessions[name].finals:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    studio.restart()  # a new front end process would do the same: the kept results live in a Ray actor
    ws = connect(studio.url, compression=None, max_size=None)
    ws.send(encode({"type": "hello", "protocol": "1.1", "client": "away", "session": name}))
    welcome = decode(ws.recv(timeout=60))
    assert welcome["resumed"] == ["r1"]
    result = decode(ws.recv(timeout=60))
    assert result["type"] == "result" and result["id"] == "r1" and result["layers"][0]["width"] == 64
    ws.close()


def test_jobs_open_when_the_front_end_stops_are_answered_as_lost_after_it_restarts(studio):
    """A queued or running job dies with the front end (its images lived there): the painter's reconnect gets the job
    among ``resumed`` and an ``error`` that says it was lost, not silence."""
    name = f"ses-lost-{time.time_ns()}"
    ws = connect(studio.url, compression=None, max_size=None)
    ws.send(encode({"type": "hello", "protocol": "1.1", "client": "lost", "session": name}))
    assert decode(ws.recv(timeout=60))["type"] == "welcome"
    ws.send(encode(img2img("l1", steps=150)))
    ws.send(encode(img2img("l2", steps=150)))
    while True:
        msg = decode(ws.recv(timeout=240))
        if msg["type"] == "progress" and msg["step"] >= 1:
            break
    ws.close()
    studio.restart()
    ws = connect(studio.url, compression=None, max_size=None)
    ws.send(encode({"type": "hello", "protocol": "1.1", "client": "lost", "session": name}))
    welcome = decode(ws.recv(timeout=60))
    assert sorted(welcome["resumed"]) == ["l1", "l2"], welcome
    errors = {}
    while len(errors) < 2:
        msg = decode(ws.recv(timeout=60))
        assert msg["type"] == "error", msg
        errors[msg["id"]] = msg
    assert all(
        m["code"] == "internal" and "lost" in m["message"] and "restarted" in m["message"] for m in errors.values()
    ), errors
    ws.close()
    ws = connect(studio.url, compression=None, max_size=None)  # the jobs stay answered (an unconfirmed one again)
    ws.send(encode({"type": "hello", "protocol": "1.1", "client": "lost", "session": name}))
    again = decode(ws.recv(timeout=60))["resumed"]
    assert set(again) <= {"l1", "l2"}
    for _ in again:
        msg = decode(ws.recv(timeout=60))
        assert msg["type"] == "error" and "lost" in msg["message"], msg
    ws.close()


def test_the_single_machine_server_needs_no_ray():
    """Without Ray installed the server imports and serves; ``--cluster`` says what to install."""
    probe = (
        "import sys; sys.modules['ray'] = None; import server.app, server.cli, server.cluster.routing, "
        "server.cluster.replica; "
        "sys.exit(server.cli.main(['serve', '--cluster', '--port', '0']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert out.returncode == 2, out.stderr
    assert "paintbridge[cluster]" in out.stderr
