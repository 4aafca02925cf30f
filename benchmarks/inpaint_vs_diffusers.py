"""Inpaint through ``paintbridge serve`` (no flags: the dtype its calibration chose) vs plain diffusers'
``StableDiffusionInpaintPipeline`` at plain's best dtype on this machine, side by side in one run.

    .venv/bin/python benchmarks/inpaint_vs_diffusers.py [--reps 2] [--size 512] [--mask 192] [--steps 4] [--no-phases]

Real-size SD1.5 architecture with random weights (built once by tests/factory.py, ~2 GB), a 512 x 512 image with a
centred 192 x 192 mask, Euler, 4 steps, CFG 7, strength 1.0. Each side runs in its own process, so its start-up and
peak memory (VmHWM) are its own. Plain diffusers runs in fp32 and then in bf16 (each process next to the server's,
jobs alternating plain / server); the dtype whose warm new-prompt job was faster is plain's, and its figures are the
ones compared. Timed:
- first job after start: from starting the process (import, load) to the result. The benchmark's client connects as
  soon as the server listens and sends the job at once, so the server's background load of the default checkpoint
  (started when it listens) is still running and the job waits for it: the worst case, and the same work plain
  diffusers does before its first job. A plugin usually connects when the painting application starts, long before
  the first Generate; its first job then finds the checkpoint loaded and pays only the one-off costs of a first job
  (the VAE encode of a new picture, the first call of each kernel);
- warm job with a new prompt;
- "generate again": the same job with only the seed changed.
Ratios are server / plain from each side's fastest run (other load on the machine only ever adds time). The server is
timed from the client: job sent → result received. Each job's CPU seconds (user + system, all threads of the side's
process) are printed too: on a shared machine they are disturbed far less than wall-clock time. Then the per-phase
table of ``phases.py`` (FLOPs, time, GFLOPS against the GEMM peak measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CFG = 7.0
SAMPLER = "Euler"
PROMPTS = (
    "a lighthouse on a cliff at sunset, oil painting",
    "a bowl of ripe pears on a wooden table",
    "a red fox in fresh snow, watercolour",
    "an old tram in a rainy street at night",
)


def cpu_seconds(pid: str = "self") -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_gib(pid: str = "self") -> float:
    """Peak resident memory (VmHWM) of a process in GiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def inputs(size: int, mask_side: int):
    """A smooth test picture (RGBA) and a centred square mask."""
    y, x = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size, 4), np.uint8)
    img[..., 0] = (x * 255 // size).astype(np.uint8)
    img[..., 1] = (y * 255 // size).astype(np.uint8)
    img[..., 2] = ((np.sin(x / 17.0) + np.cos(y / 23.0) + 2) * 63).astype(np.uint8)
    img[..., 3] = 255
    mask = np.zeros((size, size), np.uint8)
    a = (size - mask_side) // 2
    mask[a : a + mask_side, a : a + mask_side] = 255
    return img, mask


def models_folder(scratch: Path):
    """(checkpoint, models folder): the real-size SD1.5 file (built once by tests/factory.py) linked into a models
    folder made in ``scratch``."""
    import factory

    checkpoint = factory.real_sd15_checkpoint()
    (scratch / "checkpoints").mkdir(parents=True)
    (scratch / "checkpoints" / checkpoint.name).symlink_to(checkpoint)
    return checkpoint, scratch


# --- plain diffusers, in a worker process ----------------------------------------------------------------------------


def plain_worker(checkpoint: str, dtype: str, size: int, mask_side: int, steps: int) -> None:
    """Load the pipeline as a diffusers user would, then run jobs read as JSON lines from stdin."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionInpaintPipeline
    from PIL import Image

    from server.models.loading import CONFIGS_DIR
    from server.models.tokenizers import clip_tokenizer

    # the file holds fp16 weights: a user on a CPU loads them as fp32 (fp16 convolutions on a CPU crawl)
    pipe = StableDiffusionInpaintPipeline.from_single_file(
        checkpoint,
        config=str(CONFIGS_DIR / "sd15"),
        tokenizer=clip_tokenizer(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        local_files_only=True,
        dtype=getattr(torch, dtype),
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    img, mask = inputs(size, mask_side)
    image, mask_image = Image.fromarray(img[..., :3]), Image.fromarray(mask)
    for line in sys.stdin:
        job = json.loads(line)
        started, cpu = time.perf_counter(), cpu_seconds()
        pipe(
            job["prompt"],
            image=image,
            mask_image=mask_image,
            num_inference_steps=steps,
            guidance_scale=CFG,
            strength=1.0,
            generator=torch.Generator("cpu").manual_seed(job["seed"]),
        )
        print(
            json.dumps({"seconds": time.perf_counter() - started, "cpu": cpu_seconds() - cpu, "peak_gib": peak_gib()}),
            flush=True,
        )


class Plain:
    """The plain-diffusers worker process."""

    def __init__(self, checkpoint: Path, dtype: str, opts) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--plain-worker",
                str(checkpoint),
                "--dtype",
                dtype,
                "--size",
                str(opts.size),
                "--mask",
                str(opts.mask),
                "--steps",
                str(opts.steps),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.peak = float("nan")
        self.cpu = float("nan")  # CPU seconds of the last job

    def job(self, prompt: str, seed: int) -> float:
        self.proc.stdin.write(json.dumps({"prompt": prompt, "seed": seed}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        self.peak, self.cpu = reply["peak_gib"], reply["cpu"]
        return reply["seconds"]

    def first_job(self, prompt: str, seed: int) -> float:
        self.job(prompt, seed)
        return time.perf_counter() - self.started

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


# --- the server --------------------------------------------------------------------------------------------------


class Served:
    """``paintbridge serve`` with its defaults, and a client connected to it."""

    def __init__(self, models: Path, opts) -> None:
        from protocol.client import Client

        self.opts = opts
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", "0", "--models", str(models)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = None
        for line in self.proc.stdout:
            m = re.search(r"listening on (ws://\S+)", line)
            if m:
                url = m.group(1)
                self.listening = time.perf_counter() - self.started
                break
        if url is None:
            raise SystemExit("the server did not start:\n" + self.proc.stdout.read())
        self.client = Client(url, "benchmark").__enter__()
        self.device = self.client.welcome.device
        self.dtypes = self.client.welcome.dtypes
        img, mask = inputs(opts.size, opts.mask)
        self.image = {"width": opts.size, "height": opts.size, "format": "rgba8", "data": img.tobytes()}
        self.mask = {"width": opts.size, "height": opts.size, "format": "gray8", "data": mask.tobytes()}
        self.info: dict = {}
        self.cpu = float("nan")  # CPU seconds of the last job

    def job(self, prompt: str, seed: int) -> float:
        started, cpu = time.perf_counter(), cpu_seconds(str(self.proc.pid))
        result = self.client.run(
            {
                "mode": "inpaint",
                "model": "",
                "prompt": prompt,
                "image": self.image,
                "mask": self.mask,
                "params": {"steps": self.opts.steps, "cfg": CFG, "strength": 1.0, "sampler": SAMPLER, "seed": seed},
            },
            timeout=3600,
        )
        self.info = result.layers[0].info
        self.cpu = cpu_seconds(str(self.proc.pid)) - cpu
        return time.perf_counter() - started

    def first_job(self, prompt: str, seed: int) -> float:
        self.job(prompt, seed)
        return time.perf_counter() - self.started

    def close(self) -> float:
        peak = peak_gib(str(self.proc.pid))
        self.client.__exit__(None, None, None)
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return peak


GOALS = {"first": 0.80, "new": 0.72, "again": 0.70}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--mask", type=int, default=192)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--no-phases", action="store_true", help="skip the per-phase table")
    p.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--plain-worker", metavar="CHECKPOINT", help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.plain_worker:
        plain_worker(opts.plain_worker, opts.dtype, opts.size, opts.mask, opts.steps)
        return

    with tempfile.TemporaryDirectory(prefix="pb-inpaint-bench-") as scratch:
        checkpoint, models = models_folder(Path(scratch))
        print(
            f"checkpoint: {checkpoint.name} ({checkpoint.stat().st_size / 1e9:.2f} GB, random weights); "
            f"{opts.size} px, {opts.mask} px centred mask, {SAMPLER}, {opts.steps} steps, CFG {CFG}, strength 1.0; "
            f"{os.cpu_count()} CPUs (shared: other work on the machine only adds time)",
            flush=True,
        )

        t = {k: [] for k in ("server first", "server new", "server again")}
        cpu = {k: [] for k in t}  # CPU seconds of the warm jobs
        peaks = {}
        server = None
        for dtype in ("float32", "bfloat16"):
            plain = Plain(checkpoint, dtype, opts)
            for key in ("first", "new", "again"):
                t[f"{dtype} {key}"], cpu[f"{dtype} {key}"] = [], []
            t[f"{dtype} first"].append(plain.first_job(PROMPTS[0], 1))
            print(f"plain diffusers {dtype} first job (start, load, job): {t[f'{dtype} first'][-1]:.1f} s", flush=True)
            if server is None:
                server = Served(models, opts)
                t["server first"].append(server.first_job(PROMPTS[0], 1))
                print(
                    f"server first job (start, load, job): {t['server first'][-1]:.1f} s; listening after "
                    f"{server.listening:.2f} s; device: {server.device}; dtypes: {json.dumps(server.dtypes)}",
                    flush=True,
                )
            for rep in range(opts.reps):
                prompt = PROMPTS[1 + rep % (len(PROMPTS) - 1)] + f" #{dtype} {rep}"
                for key, seed in (("new", 10 + rep), ("again", 20 + rep)):
                    for side, runner in ((dtype, plain), ("server", server)):
                        t[f"{side} {key}"].append(runner.job(prompt, seed))
                        cpu[f"{side} {key}"].append(runner.cpu)
                print(
                    f"{dtype} rep {rep + 1}: new prompt plain {t[f'{dtype} new'][-1]:.1f} s "
                    f"({cpu[f'{dtype} new'][-1]:.0f} cpu-s), server {t['server new'][-1]:.1f} s "
                    f"({cpu['server new'][-1]:.0f} cpu-s); again plain {t[f'{dtype} again'][-1]:.1f} s "
                    f"({cpu[f'{dtype} again'][-1]:.0f} cpu-s), server {t['server again'][-1]:.1f} s "
                    f"({cpu['server again'][-1]:.0f} cpu-s)",
                    flush=True,
                )
            plain.close()
            peaks[dtype] = plain.peak
        peaks["server"] = server.close()
        print(f"server job info: {json.dumps(server.info)}")
        report(t, cpu, peaks, server.listening)
        if not opts.no_phases:
            import phases

            print()
            print(phases.table(phases.measure(opts.size, opts.mask, opts.steps)), flush=True)


def report(t: dict, cpu: dict, peaks: dict, listening: float) -> None:
    """Plain's best dtype, then the table of fastest runs and ratios (wall clock), then CPU seconds and memory."""
    best = {k: min(v) for k, v in t.items() if v}
    plain = min(("float32", "bfloat16"), key=lambda d: best.get(f"{d} new", float("inf")))
    print()
    print(
        f"plain diffusers' best dtype here: {plain} (warm new prompt fp32 {best['float32 new']:.1f} s, bf16 "
        f"{best['bfloat16 new']:.1f} s)"
    )
    print(f"{'':28}{'plain':>10}{'server':>10}{'ratio':>8}{'goal':>7}")
    for label, key in (
        ("first job after start", "first"),
        ("warm job, new prompt", "new"),
        ('"generate again" (seed)', "again"),
    ):
        ratio = best[f"server {key}"] / best[f"{plain} {key}"]
        print(f"{label:28}{best[f'{plain} {key}']:>9.1f}s{best[f'server {key}']:>9.1f}s{ratio:>8.2f}{GOALS[key]:>7.2f}")
    low = {k: min(v) for k, v in cpu.items() if v}
    for label, key in (("warm job, new prompt", "new"), ('"generate again" (seed)', "again")):
        if f"{plain} {key}" in low and f"server {key}" in low:
            print(
                f"cpu-s {label:22}{low[f'{plain} {key}']:>9.0f}s{low[f'server {key}']:>9.0f}s"
                f"{low[f'server {key}'] / low[f'{plain} {key}']:>8.2f}"
            )
    print(
        f"peak memory: plain fp32 {peaks['float32']:.2f} GiB, plain bf16 {peaks['bfloat16']:.2f} GiB, server "
        f"{peaks['server']:.2f} GiB (server / plain {plain}: {peaks['server'] / peaks[plain]:.2f})"
    )
    print(f"server listening after {listening:.2f} s")


if __name__ == "__main__":
    main()
