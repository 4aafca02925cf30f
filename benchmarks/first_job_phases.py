"""Where the first job's time goes: ``paintbridge serve`` (no flags) from process start to the first inpaint result,
next to plain diffusers (``from_single_file`` at its best dtype, then the same job), phase by phase.

    .venv/bin/python benchmarks/first_job_phases.py [--plain-dtype bfloat16] [--size 512] [--mask 192] [--steps 4]

The job is ``inpaint_vs_diffusers.py``'s (real-size random SD1.5, centred mask, Euler, CFG 7, strength 1.0). Each side
runs in its own process, one after the other. The child process wraps named functions (its load steps, the text
encoder, VAE encode and decode, each UNet call) with a timer as their modules are imported (no module is imported
earlier than the side itself imports it), and writes one line per call: what, thread, start and end in seconds since
the process started (the parent's ``Popen``). The table prints each phase's start, end, wall seconds and thread;
phases of different threads overlap (the server loads its default checkpoint in a background thread while the job
waits for it).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.abc
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# module -> attributes ("Class.method" or "function") timed in both sides' processes where the module gets imported
COMMON = {
    "diffusers.loaders.single_file": ["load_single_file_sub_model"],
    "diffusers.pipelines.pipeline_utils": ["DiffusionPipeline.to"],
    "transformers.models.clip.modeling_clip": ["CLIPTextModel.forward"],
    "diffusers.models.autoencoders.autoencoder_kl": ["AutoencoderKL.encode", "AutoencoderKL.decode"],
    "diffusers.models.unets.unet_2d_condition": ["UNet2DConditionModel.forward"],
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint": [
        "StableDiffusionInpaintPipeline.__call__"
    ],
}
SERVER = {
    "server.router": ["Router.preload", "Router.engine", "Router.run", "Router.calibrate"],
    "server.models.loading": ["load_checkpoint", "check_checkpoint_shapes", "_tokenizers"],
    "server.models.tensors": ["read_tensors"],
    "server.diffusion.engine": ["DiffusionEngine.load", "DiffusionEngine.recipe"],
    "server.diffusion.layout": ["apply"],
    "server.diffusion.attention": ["install"],
    "server.checkpoint.engine": ["CheckpointEngine.run"],
    "server.diffusion.prompts": ["encode"],
    "server.diffusion.latents": ["encode", "decode_into"],
    "server.diffusion.passes": ["denoise"],
}
PLAIN = {"diffusers.loaders.single_file": ["FromSingleFileMixin.from_single_file"]}


def process_cpu() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Recorder:
    """Timed calls as JSON lines in ``path``: seconds since ``t0`` (a ``time.time()`` the parent gave)."""

    def __init__(self, path: str, t0: float) -> None:
        self.out = open(path, "a", buffering=1, encoding="utf-8")
        self.t0 = t0
        self.lock = threading.Lock()

    def mark(self, what: str, start: float, end: float, cpu: float = float("nan")) -> None:
        line = json.dumps(
            {"what": what, "thread": threading.current_thread().name, "start": start, "end": end, "cpu": cpu}
        )
        with self.lock:
            self.out.write(line + "\n")

    def now(self) -> float:
        return time.time() - self.t0

    def wrap(self, label: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start, cpu = self.now(), process_cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                name = label
                if label.endswith("load_single_file_sub_model"):
                    name += f"[{kwargs.get('name')}]"
                self.mark(name, start, self.now(), process_cpu() - cpu)

        return timed


def _patch(module, attrs, rec: Recorder) -> None:
    for attr in attrs:
        owner, _, name = attr.rpartition(".")
        target = getattr(module, owner) if owner else module
        fn = target.__dict__[name] if owner else getattr(module, name)
        if isinstance(fn, classmethod):
            setattr(target, name, classmethod(rec.wrap(attr, fn.__func__)))
        else:
            setattr(target, name, rec.wrap(attr, fn))


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches a watched module right after it has run."""

    def __init__(self, watched: dict, rec: Recorder) -> None:
        self.watched, self.rec = watched, rec

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.watched:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        run, watched, rec = spec.loader.exec_module, self.watched, self.rec

        def exec_module(module):
            run(module)
            _patch(module, watched[fullname], rec)

        spec.loader.exec_module = exec_module
        return spec


def install(watched: dict, rec: Recorder) -> None:
    for name, attrs in watched.items():
        if name in sys.modules:
            _patch(sys.modules[name], attrs, rec)
    sys.meta_path.insert(0, _PatchOnImport(watched, rec))


# --- the children --------------------------------------------------------------------------------------------------


def server_child(models: str) -> None:
    from server.cli import main as cli_main

    sys.argv = ["paintbridge", "serve", "--port", "0", "--models", models]
    cli_main()


def plain_child(checkpoint: str, dtype: str, opts) -> None:
    import inpaint_vs_diffusers

    inpaint_vs_diffusers.plain_worker(checkpoint, dtype, opts.size, opts.mask, opts.steps)


@contextlib.contextmanager
def _child(args: list, env: dict, **pipes):
    """A side's child process, ended however the run ends."""
    proc = subprocess.Popen(args, cwd=REPO, env=env, text=True, **pipes)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def _server_first_job(proc, t0: float, opts) -> list:
    """The client's side of the server's first job: (listening, job sent -> result)."""
    import inpaint_vs_diffusers as bench

    events = []
    url = None
    for line in proc.stdout:
        if "listening on" in line:
            url = line.split("listening on", 1)[1].split()[0]
            events.append({"what": "server listening", "thread": "-", "start": 0.0, "end": time.time() - t0})
            break
    if url is None:
        raise SystemExit("the server did not start:\n" + proc.stdout.read())
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its log flowing
    from protocol.client import Client

    img, mask = bench.inputs(opts.size, opts.mask)
    with Client(url, "phases", open_timeout=60, resume_for=3600) as client:
        connected = time.time() - t0
        client.run(
            {
                "mode": "inpaint",
                "model": "",
                "prompt": bench.PROMPTS[0],
                "image": {"width": opts.size, "height": opts.size, "format": "rgba8", "data": img.tobytes()},
                "mask": {"width": opts.size, "height": opts.size, "format": "gray8", "data": mask.tobytes()},
                "params": {
                    "steps": opts.steps,
                    "cfg": bench.CFG,
                    "strength": 1.0,
                    "sampler": bench.SAMPLER,
                    "seed": 1,
                },
            },
            timeout=3600,
        )
        events.append(
            {
                "what": "client: job sent -> result (cpu-s: process total)",
                "thread": "client",
                "start": connected,
                "end": time.time() - t0,
                "cpu": bench.cpu_seconds(str(proc.pid)),
            }
        )
    return events


def _plain_first_job(proc, t0: float) -> list:
    """Plain diffusers' first job, sent to its worker as soon as it starts."""
    import inpaint_vs_diffusers as bench

    events = []
    proc.stdin.write(json.dumps({"prompt": bench.PROMPTS[0], "seed": 1}) + "\n")
    proc.stdin.flush()
    reply = json.loads(proc.stdout.readline())
    end = time.time() - t0
    events.append(
        {
            "what": "plain: job (cpu-s: process total)",
            "thread": "MainThread",
            "start": end - reply["seconds"],
            "end": end,
            "cpu": bench.cpu_seconds(str(proc.pid)),
        }
    )
    proc.stdin.close()
    proc.wait(timeout=120)
    return events


def run_side(side: str, opts, checkpoint: Path, models: Path) -> list:
    """Start one side's child process, run the first job on it, return its timed calls (and the job's end)."""
    log = str(models.parent / f"{side}-phases.jsonl")
    t0 = time.time()
    env = dict(os.environ, PB_PHASES_LOG=log, PB_PHASES_T0=repr(t0), PB_PHASES_SIDE=side)
    args = [sys.executable, __file__, "--child", side, "--size", str(opts.size), "--mask", str(opts.mask)]
    args += ["--steps", str(opts.steps), "--plain-dtype", opts.plain_dtype]
    args += [str(models if side == "server" else checkpoint)]
    events = []
    if side == "server":
        with _child(args, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            events += _server_first_job(proc, t0, opts)
    else:
        with _child(args, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
            events += _plain_first_job(proc, t0)
    events += [json.loads(line) for line in Path(log).read_text().splitlines()]
    return sorted(events, key=lambda e: (e["start"], -e["end"]))


def table(side: str, events: list) -> str:
    """One row per phase, UNet calls folded into one row per run of calls."""
    rows, unet = [], []
    for e in events:
        if e["what"].endswith("UNet2DConditionModel.forward"):
            unet.append(e)
            continue
        rows.append(e)
    if unet:
        first = unet[0]
        rows.append(
            {
                "what": f"UNet calls x{len(unet)} (first {first['end'] - first['start']:.1f} s)",
                "thread": first["thread"],
                "start": first["start"],
                "end": unet[-1]["end"],
                "cpu": sum(e["cpu"] for e in unet),
            }
        )
    rows.sort(key=lambda e: (e["start"], -e["end"]))
    out = [
        f"{side}: seconds since process start; cpu-s: the whole process's CPU seconds during the phase (all threads)",
        f"{'phase':56}{'start':>8}{'end':>8}{'wall':>8}{'cpu-s':>8}  thread",
    ]
    for e in rows:
        what = e["what"].replace("diffusers.", "").replace("server.", "")
        out.append(
            f"{what[:56]:56}{e['start']:>8.2f}{e['end']:>8.2f}{e['end'] - e['start']:>8.2f}"
            f"{e.get('cpu', float('nan')):>8.2f}  {e['thread'][:20]}"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--mask", type=int, default=192)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--plain-dtype", default="bfloat16")
    p.add_argument("--sides", default="server,plain")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.child:
        rec = Recorder(os.environ["PB_PHASES_LOG"], float(os.environ["PB_PHASES_T0"]))
        rec.mark("child python started", 0.0, rec.now(), process_cpu())
        install({**COMMON, **(SERVER if opts.child == "server" else PLAIN)}, rec)
        if opts.child == "server":
            server_child(opts.target)
        else:
            plain_child(opts.target, opts.plain_dtype, opts)
        return

    import inpaint_vs_diffusers

    with tempfile.TemporaryDirectory(prefix="pb-phases-") as scratch:
        checkpoint, models = inpaint_vs_diffusers.models_folder(Path(scratch) / "models")
        for side in opts.sides.split(","):
            print(
                table(
                    side if side == "server" else f"plain {opts.plain_dtype}", run_side(side, opts, checkpoint, models)
                ),
                flush=True,
            )
            print(flush=True)


if __name__ == "__main__":
    main()
