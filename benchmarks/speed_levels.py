"""Each speed level's time and its difference to the full-quality result at the same seed, side by side in one run.

    .venv/bin/python benchmarks/speed_levels.py [--size 512] [--mask 192] [--steps 4] [--reps 2] [--dtype D]

The inpaint job of ``inpaint_vs_diffusers.py`` (real-size random SD1.5, 512², 192² centred mask, Euler, CFG 7,
strength 1.0) on Paintbridge's engine in this process (the calibrated dtype unless ``--dtype``): each level runs the
same job at the same seed, alternating, after one warm-up; the fastest run of each counts (other load on the machine
only adds time). The difference to ``quality`` is measured on the result layer's pixels inside the mask's box: mean
absolute difference (0-255) and PSNR. With random weights the pixels are noise-like, so the difference is an upper
bound of what a trained model shows; the ratio of times is what this prints for sure.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from protocol.messages import SPEED_LEVELS  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--mask", type=int, default=192)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: the calibrated one")
    opts = p.parse_args()

    import factory
    from inpaint_vs_diffusers import CFG, SAMPLER, inputs
    from server.core import Job, JobContext, Params
    from server.diffusion.engine import DiffusionEngine
    from server.models.registry import ModelRegistry

    checkpoint = factory.real_sd15_checkpoint()
    with tempfile.TemporaryDirectory(prefix="pb-levels-") as scratch:
        models = Path(scratch)
        (models / "checkpoints").mkdir()
        (models / "checkpoints" / checkpoint.name).symlink_to(checkpoint)
        engine = DiffusionEngine(ModelRegistry([models]), dtype=opts.dtype)
        img, mask = inputs(opts.size, opts.mask)
        a = (opts.size - opts.mask) // 2
        box = (slice(a, a + opts.mask), slice(a, a + opts.mask))

        def run(level: str):
            job = Job(
                id="l",
                mode="inpaint",
                model="",
                prompt="a red fox in fresh snow, watercolour",
                negative_prompt="",
                image=img,
                mask=mask,
                params=Params(steps=opts.steps, cfg=CFG, strength=1.0, sampler=SAMPLER, seed=42, speed=level),
            )
            started = time.perf_counter()
            (layer,) = engine.run(job, JobContext())
            return time.perf_counter() - started, layer

        print(
            f"{checkpoint.name}, {opts.size} px, {opts.mask} px mask, {SAMPLER}, {opts.steps} steps, CFG {CFG}; "
            f"{os.cpu_count()} CPUs shared with other work (times are noisy: the fastest of {opts.reps} runs counts)",
            flush=True,
        )
        run("quality")  # warm-up: load, prompt, latents
        times = {level: [] for level in SPEED_LEVELS}
        layers = {}
        for rep in range(opts.reps):
            for level in SPEED_LEVELS:
                seconds, layer = run(level)
                times[level].append(seconds)
                layers[level] = layer
                print(f"rep {rep + 1} {level}: {seconds:.1f} s {layer.info.get('speed', '')}", flush=True)
        print(f"\ndtype {engine.dtype}; {'level':<10}{'seconds':>9}{'vs quality':>12}{'mean |diff|':>13}{'PSNR dB':>9}")
        reference = layers["quality"].rgba[box][..., :3]
        for level in SPEED_LEVELS:
            best = min(times[level])
            pixels = layers[level].rgba[box][..., :3]
            diff = float(np.abs(pixels.astype(int) - reference.astype(int)).mean())
            print(
                f"{'':>21}{level:<10}{best:>9.1f}{best / min(times['quality']):>12.2f}{diff:>13.2f}"
                f"{psnr(pixels, reference):>9.1f}"
            )


if __name__ == "__main__":
    main()
