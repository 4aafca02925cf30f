"""GPU check: the server vs plain diffusers on a lent GPU, in one run of under 8 minutes.

    .venv/bin/python benchmarks/gpu_check.py               # real-size random SD1.5 (512 px) and SDXL (1024 px), fp16
    .venv/bin/python benchmarks/gpu_check.py --cpu-smoke   # tiny models at 64 px on the CPU: seconds (run by tests)

Builds real-size SD1.5 and SDXL pipelines with random weights on the device from the server's shipped configs (no
download) and saves them as diffusers folders; then, side by side and alternating, times for each architecture
inpaint and generate through the server (in this process, its defaults, jobs over the websocket) and through plain
diffusers (a worker process: ``from_pretrained`` in fp16 on the GPU; in the CPU smoke run, fp32 in a thread of this
process); a live 1-step 512 px frame (img2img, no CFG); and a batch of 4 against 4 single jobs. Prints each figure,
the ratios (server / plain, from each side's fastest run) and the peak memory of both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional, Sequence, TextIO

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "a lighthouse on a cliff at sunset, oil painting"
PLAIN_CLASSES = {
    "inpaint": ("StableDiffusionInpaintPipeline", "StableDiffusionXLInpaintPipeline"),
    "generate": ("StableDiffusionPipeline", "StableDiffusionXLPipeline"),
    "live": ("StableDiffusionImg2ImgPipeline", "StableDiffusionXLImg2ImgPipeline"),
}


def peak_memory() -> float:
    """Peak memory of this process in GiB: the GPU's allocator peak when CUDA is in use, else resident (VmHWM)."""
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda.max_memory_allocated() / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def picture(size: int):
    y, x = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size, 4), np.uint8)
    img[..., 0] = (x * 255 // size).astype(np.uint8)
    img[..., 1] = (y * 255 // size).astype(np.uint8)
    img[..., 2] = ((np.sin(x / 17.0) + 1) * 127).astype(np.uint8)
    img[..., 3] = 255
    mask = np.zeros((size, size), np.uint8)
    mask[size * 5 // 16 : size * 11 // 16, size * 5 // 16 : size * 11 // 16] = 255
    return img, mask


# --- models ------------------------------------------------------------------------------------------------------


def random_folder(arch: str, dest: Path, device: str, dtype) -> Path:
    """A real-size ``arch`` pipeline with random weights (normal(0, 0.02), unit norms), built on ``device`` and saved
    as a diffusers folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from server.models.loading import CONFIGS_DIR
    from server.models.tokenizers import clip_tokenizer

    configs = CONFIGS_DIR / arch
    read = lambda sub: json.loads((configs / sub / "config.json").read_text())  # noqa: E731
    gen = torch.Generator(device).manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(read("unet"))
        vae = AutoencoderKL.from_config(read("vae"))
        text = CLIPTextModel(CLIPTextConfig.from_json_file(str(configs / "text_encoder" / "config.json")))
        text2 = (
            CLIPTextModelWithProjection(CLIPTextConfig.from_json_file(str(configs / "text_encoder_2" / "config.json")))
            if arch == "sdxl"
            else None
        )
    with torch.no_grad():
        for module in (unet, vae, text, text2):
            if module is None:
                continue
            for name, p in module.named_parameters():
                if p.ndim == 1:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen, device=device) * 0.02)
            module.to(dtype)
    scheduler = EulerDiscreteScheduler.from_pretrained(str(configs / "scheduler"))
    if arch == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text,
            text_encoder_2=text2,
            tokenizer=clip_tokenizer(),
            tokenizer_2=clip_tokenizer("!"),
            unet=unet,
            scheduler=scheduler,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text,
            tokenizer=clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    folder = dest / "checkpoints" / f"random-{arch}"
    pipe.save_pretrained(str(folder), safe_serialization=True)
    del pipe, unet, vae, text, text2
    return folder


# --- plain diffusers worker --------------------------------------------------------------------------------------


def plain_worker(jobs: TextIO, replies: TextIO) -> None:
    """Runs jobs read as JSON lines from ``jobs`` with plain diffusers, one reply line each to ``replies``; one
    checkpoint kept at a time."""
    import diffusers
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    loaded, base, pipes = None, None, {}
    for line in jobs:
        job = json.loads(line)
        if job["folder"] != loaded:
            base, pipes = None, {}
            torch.cuda.empty_cache() if device == "cuda" else None
            extra = {} if job["arch"] == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
            cls = getattr(diffusers, PLAIN_CLASSES["generate"][job["arch"] == "sdxl"])
            base = cls.from_pretrained(job["folder"], dtype=dtype, local_files_only=True, **extra).to(device)
            loaded = job["folder"]
        name = PLAIN_CLASSES[job["kind"]][job["arch"] == "sdxl"]
        if name not in pipes:
            cls = getattr(diffusers, name)
            pipes[name] = base if isinstance(base, cls) else cls.from_pipe(base, dtype=dtype)
            pipes[name].set_progress_bar_config(disable=True)
        pipe = pipes[name]
        from PIL import Image

        img, mask = picture(job["size"])
        call = dict(
            prompt=PROMPT,
            num_inference_steps=job["steps"],
            guidance_scale=job["cfg"],
            num_images_per_prompt=job.get("batch", 1),
            generator=torch.Generator("cpu").manual_seed(job["seed"]),
        )
        if job["kind"] == "inpaint":
            call.update(
                image=Image.fromarray(img[..., :3]),
                mask_image=Image.fromarray(mask),
                strength=1.0,
                height=job["size"],
                width=job["size"],
            )
        elif job["kind"] == "live":
            call.update(image=Image.fromarray(img[..., :3]), strength=1.0)
        else:
            call.update(height=job["size"], width=job["size"])
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        pipe(**call)
        if device == "cuda":
            torch.cuda.synchronize()
        replies.write(json.dumps({"seconds": time.perf_counter() - started, "peak_gib": peak_memory()}) + "\n")
        replies.flush()


class Plain:
    """The plain diffusers side: ``plain_worker`` in a process of its own (each side's memory peak apart), or, for
    the CPU smoke run (``in_process``), in a thread of this one over pipes: the same job lines, without a second
    interpreter importing torch and diffusers again (the peak read there is this process's resident peak anyway)."""

    def __init__(self, in_process: bool = False) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.thread: Optional[threading.Thread] = None
        if in_process:
            jobs_in, jobs_out = os.pipe()
            replies_in, replies_out = os.pipe()
            self.jobs, self.replies = os.fdopen(jobs_out, "w"), os.fdopen(replies_in)

            def serve() -> None:
                with os.fdopen(jobs_in) as jobs, os.fdopen(replies_out, "w") as replies:
                    plain_worker(jobs, replies)

            self.thread = threading.Thread(target=serve, name="plain-diffusers", daemon=True)
            self.thread.start()
        else:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--plain-worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            self.jobs, self.replies = self.proc.stdin, self.proc.stdout
        self.peak = 0.0

    def run(self, **job) -> float:
        self.jobs.write(json.dumps(job) + "\n")
        self.jobs.flush()
        line = self.replies.readline()
        if not line:
            raise SystemExit(f"the plain diffusers worker failed on {job}")
        reply = json.loads(line)
        self.peak = max(self.peak, reply["peak_gib"])
        return reply["seconds"]

    def close(self) -> None:
        self.jobs.close()
        if self.proc is not None:
            self.proc.wait(timeout=120)
        else:
            self.thread.join(timeout=120)
        self.replies.close()


# --- the check ---------------------------------------------------------------------------------------------------


def server_job(client, kind: str, model: str, size: int, steps: int, cfg: float, seed: int, batch: int = 1) -> float:
    img, mask = picture(size)
    pay = lambda a, f: {"width": a.shape[1], "height": a.shape[0], "format": f, "data": a.tobytes()}  # noqa: E731
    params = {"steps": steps, "cfg": cfg, "sampler": "Euler", "seed": seed, "batch": batch, "strength": 1.0}
    job = {"model": model, "prompt": PROMPT, "params": params}
    if kind == "inpaint":
        job.update(mode="inpaint", image=pay(img, "rgba8"), mask=pay(mask, "gray8"))
    elif kind == "live":
        job.update(mode="img2img", image=pay(img, "rgba8"), live=True)
    else:
        job.update(mode="generate", params=dict(params, width=size, height=size))
    started = time.perf_counter()
    client.run(job, timeout=600)
    return time.perf_counter() - started


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="tiny models on the CPU at 64 px (seconds)")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--plain-worker", action="store_true", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.plain_worker:
        plain_worker(sys.stdin, sys.stdout)
        return

    import torch

    from protocol.client import Client
    from server.app import ServerThread
    from server.config import ServerConfig

    with tempfile.TemporaryDirectory(prefix="pb-gpu-check-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        if opts.cpu_smoke:
            import factory

            models = factory.make_models_dir(work / "models", ("sd15", "sdxl"))
            archs = {"sd15": ("tiny-sd15", 64, 2), "sdxl": ("tiny-sdxl", 64, 2)}
            live_size = 64
        else:
            if not torch.cuda.is_available():
                raise SystemExit("no CUDA device: run with --cpu-smoke for the reduced CPU mode")
            models = work / "models"
            for arch in ("sd15", "sdxl"):
                random_folder(arch, models, "cuda", torch.float16)
            torch.cuda.empty_cache()
            archs = {"sd15": ("random-sd15", 512, 20), "sdxl": ("random-sdxl", 1024, 20)}
            live_size = 512
        print(f"models ready in {time.perf_counter() - started:.1f} s ({work})", flush=True)

        plain = Plain(in_process=opts.cpu_smoke)
        results = []
        with (
            ServerThread(ServerConfig(port=0, model_dirs=[models])) as server,
            Client(server.url, "gpu-check") as client,
        ):
            print(f"server device: {client.welcome.device}", flush=True)
            dtypes = client.welcome.dtypes
            print(
                f"server dtypes ({dtypes.get('source')}): {dtypes.get('chosen')}; measured GFLOPS "
                f"{json.dumps(dtypes.get('measured', {}))}",
                flush=True,
            )
            if (
                not opts.cpu_smoke
            ):  # the GPU rule: fp16 for SD1.5/SDXL (fp32-safe VAE), bf16 for Flux/SD3 where supported
                want = {"unet": "float16", "dit": "bfloat16" if torch.cuda.is_bf16_supported(False) else "float32"}
                results.append(
                    f"dtype choice on {torch.cuda.get_device_name()}: {dtypes.get('chosen')} "
                    f"({'as expected' if dtypes.get('chosen') == want else f'EXPECTED {want}'})"
                )
                print(results[-1], flush=True)
            for arch, (model, size, steps) in archs.items():
                folder = str(models / "checkpoints" / model)
                for kind in ("inpaint", "generate"):
                    cfg = 7.0 if arch == "sd15" else 6.0
                    times = {"plain": [], "server": []}
                    for rep in range(opts.reps + 1):  # the first round loads and warms up; it is not counted
                        a = plain.run(folder=folder, arch=arch, kind=kind, size=size, steps=steps, cfg=cfg, seed=rep)
                        b = server_job(client, kind, model, size, steps, cfg, seed=rep)
                        if rep:
                            times["plain"].append(a)
                            times["server"].append(b)
                    pl, sv = min(times["plain"]), min(times["server"])
                    results.append(
                        f"{kind} {arch} {size} px {steps} steps: plain {pl:.3f} s, server {sv:.3f} s, ratio {sv / pl:.2f}"
                    )
                    print(results[-1], flush=True)
            model = archs["sd15"][0]
            folder = str(models / "checkpoints" / model)
            live = {"plain": [], "server": []}
            for rep in range(opts.reps + 1):
                a = plain.run(folder=folder, arch="sd15", kind="live", size=live_size, steps=1, cfg=1.0, seed=rep)
                b = server_job(client, "live", model, live_size, 1, 1.0, seed=rep)
                if rep:
                    live["plain"].append(a)
                    live["server"].append(b)
            pl, sv = min(live["plain"]), min(live["server"])
            results.append(
                f"live 1-step {live_size} px frame (sd15 img2img, no CFG): plain {pl * 1000:.0f} ms, "
                f"server {sv * 1000:.0f} ms (job sent to result received), ratio {sv / pl:.2f}"
            )
            print(results[-1], flush=True)
            size, steps = archs["sd15"][1], archs["sd15"][2]
            server_job(client, "generate", model, size, steps, 7.0, seed=0, batch=4)  # warm the batch shapes
            batch = min(
                server_job(client, "generate", model, size, steps, 7.0, seed=1, batch=4) for _ in range(opts.reps)
            )
            singles = min(
                sum(server_job(client, "generate", model, size, steps, 7.0, seed=s) for s in range(4))
                for _ in range(opts.reps)
            )
            results.append(
                f"batch 4 vs 4 singles (sd15 generate {size} px, server): batch {batch:.3f} s, "
                f"singles {singles:.3f} s, ratio {batch / singles:.2f}"
            )
            print(results[-1], flush=True)
        plain.close()
        print()
        print("\n".join(results))
        print(
            f"peak memory: server {peak_memory():.2f} GiB, plain diffusers {plain.peak:.2f} GiB "
            f"({'GPU allocator' if torch.cuda.is_available() else 'resident'}); total {time.perf_counter() - started:.0f} s"
        )


if __name__ == "__main__":
    main()
