"""Payload speed: a 4000x4000 RGBA round trip on loopback, and the server's per-frame overhead on a live frame.

    .venv/bin/python benchmarks/roundtrip.py [--size 4000] [--reps 5] [--live-reps 5] [--no-live] [--fill telea]

1. Round trip: ``paintbridge serve`` (classical engine only) in its own process and the real synchronous client
   (``protocol.client.Client``) in this one. The job is a classical outpaint by 8 px on every side with the Telea fill
   (``--fill``; the default exemplar fill spends seconds on a 4000 px band), so the engine does almost nothing: the
   time is the payload's way there and back (encode, websocket, decode, the result's encode and
   decode). Printed: the best of ``--reps`` round trips, the server's own time for the job (``result.elapsed``), and the
   ratio to a floor measured in the same run: ``FLOOR_COPIES`` numpy copies of the image's bytes into new arrays.
2. Per-frame overhead: a live img2img frame at 512 px on the tiny SD1.5 model (``tests/factory.py``), handled in this
   process the way the server handles it — frame decoded and validated (``Connection.receive_data``), pixels decoded
   (``payloads.job_from_message``), the router's engine call, the result encoded (``encode_layers`` and the result
   frame) — minus the pipeline's own calls (the engine's ``info["seconds"]``). Printed: the best of ``--live-reps``.

Figures only; nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FLOOR_COPIES = 4
GOAL_SECONDS = 0.25
OVERHEAD_GOAL_MS = 15.0


def best_of(reps: int, fn: Callable[[], object]) -> float:
    """The fastest of ``reps`` runs of ``fn`` in seconds (load from other processes only adds time)."""
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def floor_seconds(nbytes: int, reps: int) -> float:
    """``FLOOR_COPIES`` copies of ``nbytes`` into newly allocated numpy arrays."""
    src = np.random.default_rng(1).integers(0, 255, nbytes, dtype=np.uint8)

    def copies() -> None:
        a = src
        for _ in range(FLOOR_COPIES):
            a = a.copy()

    return best_of(reps, copies)


def start_server(models: Path) -> tuple:
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", "0", "--models", str(models)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (ws://\S+)", line)
        if match:
            return proc, match.group(1)
    raise SystemExit("the server did not start:\n" + proc.stdout.read())


def round_trip(size: int, reps: int, fill: str) -> None:
    from protocol.client import Client, new_job_id
    from protocol.images import RGBA8, ImagePayload
    from protocol.messages import Extend, Job, Params

    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 4), dtype=np.uint8).tobytes()
    with tempfile.TemporaryDirectory() as models:
        proc, url = start_server(Path(models))
        try:
            with Client(url, "roundtrip-benchmark") as client:
                elapsed: List[float] = []

                def one() -> None:
                    job = Job(new_job_id("bench"), "outpaint", model="classical",
                              image=ImagePayload(size, size, RGBA8, pixels), params=Params(extend=Extend(8, 8, 8, 8), fill=fill))
                    result = client.run(job)
                    layer = result.layers[0]
                    assert (layer.width, layer.height) == (size + 16, size + 16) and len(layer.data) == layer.width \
                        * layer.height * 4
                    elapsed.append(result.elapsed)

                one()  # warm-up: imports, first allocations
                best = best_of(reps, one)
        finally:
            proc.terminate()
            proc.wait(30)
    floor = floor_seconds(len(pixels), reps)
    print(f"round trip {size}x{size} rgba8, classical outpaint by 8 px ({fill} fill): best of {reps} = {best:.3f} s "
          f"(goal <= {GOAL_SECONDS} s); server job time {min(elapsed):.3f} s")
    print(f"floor ({FLOOR_COPIES} numpy copies of {len(pixels) / 2**20:.0f} MiB): {floor:.3f} s; "
          f"round trip / floor = {best / floor:.2f}")


def live_overhead(reps: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from factory import make_models_dir

    from protocol.codec import fragments
    from protocol.connection import SERVER, Connection
    from protocol.messages import Result, Welcome, hello
    from server.config import ServerConfig
    from server.core import JobContext
    from server.payloads import encode_layers, job_from_message
    from server.router import Router

    pixels = np.random.default_rng(0).integers(0, 255, (512, 512, 4), dtype=np.uint8).tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        models = make_models_dir(Path(tmp) / "models", which=("sd15",))
        router = Router(ServerConfig(model_dirs=[models]))
        client = Connection("client")
        server = Connection(SERVER)
        server.receive_data(client.send(hello("bench")))
        client.receive_data(server.send(Welcome("1.1", "bench")))
        rows: List[tuple] = []  # (overhead, total, decode, engine outside the pipeline, encode) per frame
        for i in range(reps + 1):  # the first frame loads the model
            frame = _job_frame(i, pixels)
            t0 = time.perf_counter()
            (msg,) = server.receive_data(frame)
            job = job_from_message(msg)
            t1 = time.perf_counter()
            layers = router.run(job, JobContext())
            t2 = time.perf_counter()
            fragments(server.send_pieces(Result(msg.id, tuple(encode_layers(layers, msg.result_format)), 0.0, {})))
            t3 = time.perf_counter()
            pipeline = float(layers[0].info.get("seconds", 0.0))
            if i:
                rows.append((t3 - t0 - pipeline, t3 - t0, t1 - t0, t2 - t1 - pipeline, t3 - t2))
    overhead, total, decode, engine, encode = (x * 1000 for x in min(rows))
    print(f"live frame 512x512 img2img, tiny SD1.5, 1 step (best of {reps}): total {total:.1f} ms; per-frame server "
          f"overhead (all but the pipeline calls) {overhead:.1f} ms (goal <= {OVERHEAD_GOAL_MS:g} ms) = decode "
          f"{decode:.1f} + engine outside the pipeline {engine:.1f} + encode {encode:.1f} ms")


def _job_frame(i: int, pixels: bytes) -> bytes:
    from protocol.codec import encode
    from protocol.images import RGBA8, ImagePayload
    from protocol.messages import Job, Params

    job = Job(f"live-{i}", "img2img", image=ImagePayload(512, 512, RGBA8, pixels),
              params=Params(steps=1, strength=0.5, seed=1), live=True)
    return bytes(encode(job.to_wire()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--live-reps", type=int, default=5)
    parser.add_argument("--fill", default="telea",
                        help="the outpaint's fill (default telea: the cheapest, so the payload's way is what is timed)")
    parser.add_argument("--no-live", action="store_true", help="skip the per-frame overhead (needs torch)")
    args = parser.parse_args()
    round_trip(args.size, args.reps, args.fill)
    if not args.no_live:
        live_overhead(args.live_reps)


if __name__ == "__main__":
    main()
