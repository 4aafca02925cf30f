"""First job vs warm job, and the cost of a mode switch, measured through the real server in one run.

    .venv/bin/python benchmarks/warm_start.py                       # tiny SD1.5 built by tests/factory.py, 64 px
    .venv/bin/python benchmarks/warm_start.py --models DIR --model NAME --size 512 --steps 4

Prints each timing and the ratios side by side: first img2img / warm img2img (model load), first inpaint after
img2img / warm inpaint (the from_pipe mode switch: it should be close to 1, no reload), and the classical engine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.client import Client
from server.app import ServerThread
from server.config import ServerConfig


def payload(arr: np.ndarray, fmt: str) -> dict:
    arr = np.ascontiguousarray(arr)
    return {"width": arr.shape[1], "height": arr.shape[0], "format": fmt, "data": arr.tobytes()}


def timed(client: Client, job: dict) -> float:
    start = time.perf_counter()
    client.run(job, timeout=3600)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, help="models folder (default: a tiny SD1.5 built by tests/factory.py)")
    p.add_argument("--model", default="", help="checkpoint name (default: the server's default)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pb-warm-start-") as scratch:
        models = args.models
        if models is None:
            from tests.factory import make_models_dir

            models = make_models_dir(Path(scratch) / "models", which=("sd15",))
        rng = np.random.default_rng(0)
        img = rng.integers(0, 255, (args.size, args.size, 4), dtype=np.uint8)
        img[..., 3] = 255
        mask = np.zeros((args.size, args.size), np.uint8)
        mask[args.size // 4 : 3 * args.size // 4, args.size // 4 : 3 * args.size // 4] = 255
        base = {
            "model": args.model,
            "prompt": "a bowl of fruit",
            "image": payload(img, "rgba8"),
            "params": {"steps": args.steps, "seed": 1, "strength": 0.6},
        }
        img2img = dict(base, mode="img2img")
        inpaint = dict(base, mode="inpaint", mask=payload(mask, "gray8"))
        classical = dict(inpaint, model="classical")

        with ServerThread(ServerConfig(port=0, model_dirs=[models])) as server, Client(server.url, "bench") as client:
            first = timed(client, img2img)
            warm = statistics.median(timed(client, img2img) for _ in range(args.repeats))
            switch = timed(client, inpaint)
            warm_inpaint = statistics.median(timed(client, inpaint) for _ in range(args.repeats))
            warm_classical = statistics.median(timed(client, classical) for _ in range(args.repeats))
            print(f"device: {client.welcome.device}; {args.size} px, {args.steps} steps")
        print(f"first img2img (loads the model): {first:.3f} s")
        print(f"warm img2img (median of {args.repeats}): {warm:.3f} s")
        print(f"first inpaint after img2img (mode switch): {switch:.3f} s")
        print(f"warm inpaint: {warm_inpaint:.3f} s")
        print(f"classical inpaint: {warm_classical:.3f} s")
        print(f"mode-switch ratio (first inpaint / warm inpaint): {switch / warm_inpaint:.2f}")
        print(f"cold-start ratio (first / warm img2img): {first / warm:.2f}")


if __name__ == "__main__":
    main()
