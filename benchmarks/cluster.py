"""Studio mode throughput and routing overhead, in one run on a local Ray cluster with tiny models.

    .venv/bin/python benchmarks/cluster.py [--jobs 8] [--clients 3] [--steps 8] [--replicas 1,2,3]

1. The single-machine server (``paintbridge serve`` in its own process, one torch thread like a replica): the
   same jobs (img2img, tiny SD1.5, 64 px) from ``--clients`` painters at once, then ``--latency`` jobs one after
   another (end-to-end time per job as a client sees it).
2. The cluster front end (in this process) over 1, 2 and 3 CPU replicas (one torch thread each): the same load,
   after a warm-up that loads the checkpoint on every replica. Prints jobs per minute for each, and the routing
   overhead per job: the cluster's sequential end-to-end time minus the single machine's (1 replica, medians).
On a machine with few cores more replicas than cores cannot add throughput; the figures say what this machine does.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from websockets.sync.client import connect  # noqa: E402

from protocol import Limits  # noqa: E402
from protocol.codec import decode, encode  # noqa: E402


def job(job_id: str, steps: int) -> dict:
    rng = np.random.default_rng(len(job_id))
    pixels = rng.integers(0, 255, (64, 64, 4), np.uint8).tobytes()
    image = {"width": 64, "height": 64, "format": "rgba8", "data": pixels}
    return {
        "type": "job",
        "id": job_id,
        "mode": "img2img",
        "model": "tiny-sd15",
        "prompt": "a red apple",
        "image": image,
        "params": {"steps": steps, "strength": 1.0, "seed": 1},
    }


def open_session(url: str, name: str):
    ws = connect(url, compression=None, max_size=None)
    ws.send(encode({"type": "hello", "protocol": "1.1", "client": name, "session": f"bench-{name}-{time.time_ns()}"}))
    assert decode(ws.recv(timeout=120))["type"] == "welcome"
    return ws


def wait_finals(ws, count: int) -> None:
    done = 0
    while done < count:
        msg = decode(ws.recv(timeout=600))
        if msg["type"] in ("result", "error", "cancelled") and msg.get("id"):
            if msg["type"] != "result":
                raise SystemExit(f"job {msg['id']} failed: {msg}")
            done += 1


def throughput(url: str, clients: int, jobs: int, steps: int, tag: str) -> float:
    """Jobs per minute with ``clients`` painters sending ``jobs`` each at once."""
    sessions = [open_session(url, f"{tag}{c}") for c in range(clients)]
    started = time.perf_counter()
    for c, ws in enumerate(sessions):
        for n in range(jobs):
            ws.send(encode(job(f"{tag}{c}-{n}", steps)))
    threads = [threading.Thread(target=wait_finals, args=(ws, jobs)) for ws in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for ws in sessions:
        ws.close()
    return clients * jobs * 60.0 / elapsed


def sequential(url: str, count: int, steps: int, tag: str) -> List[float]:
    """End-to-end seconds of ``count`` jobs sent one after another by one painter."""
    ws = open_session(url, tag)
    times = []
    for n in range(count):
        started = time.perf_counter()
        ws.send(encode(job(f"{tag}-{n}", steps)))
        wait_finals(ws, 1)
        times.append(time.perf_counter() - started)
    ws.close()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=8, help="jobs per painter")
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--latency", type=int, default=10, help="sequential jobs for the overhead figure")
    p.add_argument("--replicas", default="1,2,3")
    args = p.parse_args()

    import ray
    from ray import serve

    from factory import make_models_dir
    from server.app import ServerThread
    from server.cluster.frontend import ClusterServer
    from server.cluster.pool import deploy_replicas, remove_replicas, start_serve
    from server.config import ServerConfig

    with tempfile.TemporaryDirectory(prefix="pb-cluster-bench-") as scratch:
        work = Path(scratch)
        models = make_models_dir(work / "models", which=("sd15",))
        limits = Limits(max_queue=max(32, args.jobs))
        print(
            f"tiny SD1.5 img2img, 64 px, {args.steps} steps; {args.clients} painters x {args.jobs} jobs; "
            f"{os.cpu_count()} CPU cores",
            flush=True,
        )

        single = subprocess.Popen(  # its own process, one torch thread: the same compute as one replica
            [sys.executable, "-m", "server", "serve", "--port", "0", "--models", str(models)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
        )
        try:
            url = next(m.group(1) for m in map(re.compile(r"listening on (ws://\S+)").search, single.stdout) if m)
            sequential(url, 2, args.steps, "warm")
            single_rate = throughput(url, args.clients, args.jobs, args.steps, "s")
            single_lat = sequential(url, args.latency, args.steps, "sl")
        finally:
            single.terminate()
            single.wait(30)
        print(
            f"single machine: {single_rate:6.1f} jobs/min; one job end to end {statistics.median(single_lat):.3f} s "
            f"(median of {args.latency})",
            flush=True,
        )

        env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        if os.environ.get("PAINTBRIDGE_CACHE"):
            env["PAINTBRIDGE_CACHE"] = os.environ["PAINTBRIDGE_CACHE"]
        ray.init(
            address="local",
            num_cpus=4,
            object_store_memory=96 * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": env},
        )
        start_serve()
        front = work / "front"
        front.mkdir()
        overhead = None
        try:
            for count in [int(n) for n in args.replicas.split(",")]:
                ids = deploy_replicas(
                    count, [str(models)], machine=f"bench{count}", num_cpus=1, threads=1, device="cpu"
                )
                config = ServerConfig(port=0, model_dirs=[front], limits=limits)
                with ServerThread(config, server=ClusterServer(config)) as cluster:
                    throughput(cluster.url, count, 2, args.steps, "w")  # warm-up: loads on the replicas
                    rate = throughput(cluster.url, args.clients, args.jobs, args.steps, f"c{count}-")
                    line = (
                        f"cluster, {count} replica(s): {rate:6.1f} jobs/min ({rate / single_rate:.2f}x single machine)"
                    )
                    if count == 1:
                        lat = sequential(cluster.url, args.latency, args.steps, "cl")
                        overhead = statistics.median(lat) - statistics.median(single_lat)
                        line += f"; one job end to end {statistics.median(lat):.3f} s"
                    used = sorted({rid for _, rid in cluster.server.queue.routes})
                    print(line + f"; replicas used: {', '.join(used)}", flush=True)
                remove_replicas(ids)
        finally:
            serve.shutdown()
            ray.shutdown()
        if overhead is not None:
            print(
                f"routing overhead per job (cluster with 1 replica minus single machine, medians): "
                f"{overhead * 1000:.0f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
