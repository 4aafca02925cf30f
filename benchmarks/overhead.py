"""Server overhead: the same img2img job (real-size SD1.5 with random weights, 512 px, 4 steps) as a plain in-process
diffusers call and through ``paintbridge run`` against a warm ``paintbridge serve``, alternating the two.

    .venv/bin/python benchmarks/overhead.py [--reps 2] [--steps 4] [--size 512]

The checkpoint (~2 GB, fp16, original key names) is built once in ``${PAINTBRIDGE_CACHE:-~/.cache/paintbridge}``.
The server side is timed end to end as a user sees it: the ``paintbridge run`` process start, PNG reading, the job over
the websocket, the engine, and writing the result. The ratio compares each side's fastest run (load from other
processes only adds time); the last line is ``overhead ratio: X.XX`` (server / plain).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "a lighthouse on a cliff at sunset, oil painting"
SEED = 1
CFG = 7.0
SAMPLER = "Euler"


def plain_pipeline(checkpoint: Path):
    """What a diffusers user would write: the single file with the shipped config, Euler, fp32 on the CPU."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline

    from server.models.loading import CONFIGS_DIR
    from server.models.tokenizers import clip_tokenizer

    pipe = StableDiffusionImg2ImgPipeline.from_single_file(
        str(checkpoint),
        config=str(CONFIGS_DIR / "sd15"),
        tokenizer=clip_tokenizer(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        local_files_only=True,
        dtype=torch.float32,
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_plain(pipe, image: Image.Image, steps: int) -> float:
    import torch

    started = time.perf_counter()
    pipe(
        PROMPT,
        image=image,
        strength=1.0,
        num_inference_steps=steps,
        guidance_scale=CFG,
        generator=torch.Generator("cpu").manual_seed(SEED),
    )
    return time.perf_counter() - started


def start_server(models: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0", "--models", str(models)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in proc.stdout:
        m = re.search(r"listening on (ws://\S+)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit("the server did not start:\n" + proc.stdout.read())


def run_server(url: str, image_path: Path, out: Path, model: str, steps: int) -> tuple:
    """(seconds end to end, seconds the server reports for the job itself)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "run",
            "img2img",
            "--server",
            url,
            "--image",
            str(image_path),
            "--prompt",
            PROMPT,
            "--model",
            model,
            "--steps",
            str(steps),
            "--strength",
            "1.0",
            "--cfg",
            str(CFG),
            "--sampler",
            SAMPLER,
            "--seed",
            str(SEED),
            "--out",
            str(out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    total = time.perf_counter() - started
    m = re.search(r"done in ([\d.]+) s", proc.stdout)
    return total, float(m.group(1)) if m else float("nan")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--reps", type=int, default=2)
    args.add_argument("--steps", type=int, default=4)
    args.add_argument("--size", type=int, default=512)
    opts = args.parse_args()

    import factory

    checkpoint = factory.real_sd15_checkpoint()
    with tempfile.TemporaryDirectory(prefix="pb-overhead-") as scratch:
        work = Path(scratch)
        (work / "checkpoints").mkdir()
        (work / "checkpoints" / checkpoint.name).symlink_to(checkpoint)
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 255, (opts.size, opts.size, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        image_path = work / "in.png"
        image.save(image_path)

        print(
            f"checkpoint: {checkpoint} ({checkpoint.stat().st_size / 1e9:.2f} GB); {opts.size} px, {opts.steps} steps, "
            f"img2img strength 1.0, {SAMPLER}, CFG {CFG}",
            flush=True,
        )
        server, url = start_server(work)
        try:
            pipe = plain_pipeline(checkpoint)
            print("warming up both (loads the model in the server)...", flush=True)
            run_plain(pipe, image, 1)
            run_server(url, image_path, work / "out.png", checkpoint.stem, 1)
            plain, served, jobs = [], [], []
            for rep in range(opts.reps):
                plain.append(run_plain(pipe, image, opts.steps))
                total, job = run_server(url, image_path, work / "out.png", checkpoint.stem, opts.steps)
                served.append(total)
                jobs.append(job)
                print(
                    f"rep {rep + 1}: plain {plain[-1]:.2f} s, server {total:.2f} s (job in the server {job:.2f} s)",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=60)
        # Other work on the machine only ever adds time: the fastest run of each side is the least disturbed one.
        p, s, j = min(plain), min(served), min(jobs)
        print(f"median ratio {statistics.median(served) / statistics.median(plain):.3f} (disturbed by other load)")
        print(
            f"fastest: plain {p:.2f} s, server {s:.2f} s ({s - p:+.2f} s; of which outside the job: client start, "
            f"PNG files, connection {s - j:.2f} s)"
        )
        print(f"overhead ratio: {s / p:.2f}")


if __name__ == "__main__":
    main()
