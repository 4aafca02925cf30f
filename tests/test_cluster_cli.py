"""The studio commands as an operator runs them: ``paintbridge serve --cluster`` (a Ray head, one replica, the front
end) and ``paintbridge worker`` joining it from another process (a second Ray node on this machine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol.client import Client

pytest.importorskip("ray.serve", reason="cluster mode needs the 'cluster' extra (python3 install.py --dev has it)")

from factory import make_models_dir
from listening import routable_address

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pool_ids(url: str) -> list:
    with Client(url, "cli-test") as client:
        return [r["id"] for r in client.welcome.capabilities["pool"]["replicas"] if r["alive"]]


def test_a_worker_cannot_join_a_loopback_head():
    out = subprocess.run(
        [sys.executable, "-m", "server", "worker", "--address", "127.0.0.1:6379"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert out.returncode == 2 and "--ray-bind" in out.stderr and "--replicas" in out.stderr, out.stderr


def test_serve_cluster_and_a_worker_joining_it(start_server_process, tmp_path):
    """Two Ray nodes on this machine, on its network address (a loopback head takes no other node)."""
    bind = routable_address()
    if not bind or bind.startswith("127."):
        pytest.skip("this machine has no network address besides loopback")
    models = make_models_dir(tmp_path / "models", which=("sd15",))
    ray_port = free_port()
    front = start_server_process(
        model_dirs=[models],
        extra_args=[
            "--cluster",
            "--ray-bind",
            bind,
            "--ray-port",
            str(ray_port),
            "--replicas",
            "1",
            "--replica-cpus",
            "1",
        ],
    )
    assert pool_ids(front.url) == ["head-0"]
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "worker",
            "--address",
            f"{bind}:{ray_port}",
            "--ray-bind",
            bind,
            "--replicas",
            "1",
            "--name",
            "w",
            "--models",
            str(models),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while pool_ids(front.url) != ["head-0", "w-0"]:
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(1)
        with Client(front.url, "cli-test") as client:
            for _ in range(2):
                result = client.run(
                    {
                        "mode": "generate",
                        "model": "tiny-sd15",
                        "prompt": "a pear",
                        "params": {"steps": 2, "width": 64, "height": 64},
                    },
                    timeout=240,
                )
                assert result.layers[0].width == 64
        worker.send_signal(signal.SIGTERM)  # the worker takes its replicas out of the pool and stops its Ray node
        assert worker.wait(120) == 0, (tmp_path / "worker.log").read_text()
        while pool_ids(front.url) != ["head-0"]:
            assert time.monotonic() < deadline
            time.sleep(1)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        log.close()
    front.stop()
    assert front.proc.returncode == 0, (tmp_path / "server-0.log").read_text()[-3000:]
