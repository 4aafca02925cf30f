"""Starting the pieces of a studio: a Ray head (or joining one), the front end, and a worker machine's replicas.

``paintbridge serve --cluster`` calls ``serve_cluster``; ``paintbridge worker`` calls ``run_worker``. Ray is started
with its dashboard, autoscaler monitor and usage stats off and Serve with no HTTP or gRPC proxy (the websocket front
end is the only way in).

Ports (measured with Ray 2.60, ``tests/test_cluster_ports.py``): with ``--ray-bind`` on a loopback address (the
default, a one-machine studio) every port of every Ray process listens on 127.0.0.1 only (``rayenv`` says how). With
any other address Ray offers no bind option for the GCS, the raylet's node and object managers, the dashboard agent's
gRPC server and the dashboard process's metrics server: they listen on every interface, guarded by Ray's token (README's
studio section names the Ray source lines). The dashboard agent's metrics export is off (``rayenv``).

Ray reads its settings when imported: the CLI calls ``rayenv.prepare`` with the address before importing this module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import ray

from ..config import ServerConfig
from .frontend import ClusterServer
from .pool import deploy_replicas, remove_replicas, start_serve
from .rayenv import LOOPBACK_HEAD, is_loopback, ray_env

log = logging.getLogger("paintbridge.cluster")

DEFAULT_RAY_PORT = 6379


def node_env(bind: str, head_address: Optional[str] = None) -> dict:
    """The environment of ``ray start`` for a head on ``bind`` or a node joining ``head_address``
    (``rayenv.ray_env``)."""
    return dict(os.environ, **ray_env(head_address or bind))


def ray_command() -> str:
    """The ``ray`` program of this Python's environment."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def start_ray_node(
    bind: str,
    head_address: Optional[str] = None,
    port: int = DEFAULT_RAY_PORT,
    num_cpus: Optional[float] = None,
    num_gpus: Optional[int] = None,
    object_store_bytes: Optional[int] = None,
    timeout: float = 120.0,
) -> subprocess.Popen:
    """``ray start --block``: a head on ``bind:port`` (no ``head_address``) or a node joining ``head_address``, with
    the dashboard and the autoscaler monitor off (a studio has no autoscaler). Returns once the node runs; stopping
    the returned process (``stop_ray_node``) stops the node and nothing else of Ray on this machine."""
    cmd = [ray_command(), "start", "--block", "--node-ip-address", bind, "--disable-usage-stats"]
    if head_address is None:
        cmd += ["--head", "--port", str(port), "--include-dashboard", "false", "--no-monitor"]
    else:
        cmd += ["--address", head_address]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(int(num_cpus))]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    if object_store_bytes:
        cmd += ["--object-store-memory", str(object_store_bytes)]
    log.info("starting Ray: %s", " ".join(cmd))
    proc = subprocess.Popen(
        cmd,
        env=node_env(bind, head_address),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # (a join needs the head's token file)
    seen: List[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line.rstrip())
            if "Ray runtime started" in line:
                started.set()
        started.set()

    threading.Thread(target=read, name="ray-start-output", daemon=True).start()
    if not started.wait(timeout) or proc.poll() is not None:
        stop_ray_node(proc)
        raise RuntimeError("ray start failed:\n" + "\n".join(seen[-20:]))
    return proc


def stop_ray_node(proc: subprocess.Popen, head_port: Optional[int] = None) -> None:
    """Stop a node ``start_ray_node`` started (its ``ray start --block`` takes the node's processes with it); for a
    head, also the note Ray leaves for ``ray.init()`` to find it (``ray stop`` would remove it)."""
    note = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    if head_port is not None and note.is_file() and note.read_text().strip().endswith(f":{head_port}"):
        note.unlink()
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def attach(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` and make sure Serve runs there without proxies."""
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    start_serve()


def local_device_count(device: Optional[str]) -> int:
    """GPUs this machine offers for replicas (0 when ``device`` is the CPU or none is there)."""
    if device == "cpu":
        return 0
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch build with CUDA: the CPU
        return 0


def deploy_here(
    replicas: Optional[int],
    model_dirs: Sequence[Path],
    device: Optional[str],
    dtype: Optional[str],
    replica_cpus: float,
    allow_pickle: bool,
    machine: str = "",
) -> List[str]:
    """Replicas on this machine: one per GPU (``--replicas`` overrides), else ``--replicas`` CPU workers (1)."""
    gpus = local_device_count(device)
    count = replicas if replicas is not None else max(1, gpus)
    per_gpu = 1.0 if gpus and count <= gpus else 0.0
    return deploy_replicas(
        count,
        [str(d) for d in model_dirs],
        machine=machine,
        device=device,
        dtype=dtype,
        num_cpus=replica_cpus,
        num_gpus=per_gpu,
        threads=0 if per_gpu else max(1, int(replica_cpus)),
        allow_pickle=allow_pickle,
        pin_node=True,
    )


def serve_cluster(
    config: ServerConfig,
    cluster: str,
    bind: str,
    port: int,
    replicas: Optional[int],
    replica_cpus: float,
    on_ready: Callable[[int], None],
) -> None:
    """The front end of a studio: start a Ray head here (``cluster == "start"``) or join ``cluster``, put this
    machine's replicas in the pool, then serve the websocket until interrupted."""
    head = start_ray_node(bind, port=port) if cluster == "start" else None
    ids: List[str] = []
    try:
        attach(f"{bind}:{port}" if head is not None else cluster)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # (after Ray's own) a stop cleans up like Ctrl-C
        if replicas != 0:
            ids = deploy_here(
                replicas,
                config.model_dirs,
                config.device,
                config.dtype,
                replica_cpus,
                config.allow_pickle,
                machine="head",
            )
        asyncio.run(ClusterServer(config).run(on_ready=on_ready))
    finally:
        if head is not None:  # the Ray head this command started goes with it (and its replicas)
            ray.shutdown()
            stop_ray_node(head, head_port=port)
        elif ids:
            remove_replicas(ids)


def run_worker(
    address: str,
    bind: str,
    model_dirs: Sequence[Path],
    replicas: Optional[int],
    device: Optional[str],
    dtype: Optional[str],
    replica_cpus: float,
    allow_pickle: bool,
    machine: str = "",
) -> None:
    """Add this machine to the studio at ``address``: join Ray, deploy its replicas, keep them until interrupted."""
    if is_loopback(address):
        raise ValueError(LOOPBACK_HEAD)
    node = start_ray_node(bind, head_address=address)
    ids: List[str] = []
    stop = threading.Event()
    try:
        attach(address)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # (after Ray's own handler)
        ids = deploy_here(replicas, model_dirs, device, dtype, replica_cpus, allow_pickle, machine=machine)
        print(
            f"Paintbridge worker: replicas {', '.join(ids)} in the pool at {address} (Ctrl-C removes them)", flush=True
        )
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if ids:
            remove_replicas(ids)
        ray.shutdown()
        stop_ray_node(node)
