"""Per-phase FLOPs, time and achieved GFLOPS of one Paintbridge job, next to the GEMM peak measured in the same process.

    .venv/bin/python benchmarks/phases.py [--size 512] [--mask 192] [--steps 4] [--dtype D] [--channels-last]

Used by ``inpaint_vs_diffusers.py`` (its ``--phases`` table) and on its own. The job is the engine's own (Paintbridge's
``DiffusionEngine`` in this process, the calibrated dtype unless ``--dtype``), on the real-size random SD1.5 checkpoint
of tests/factory.py. Phases are the modules the job calls: the text encoder (each prompt), the VAE encoder, the UNet
(each call is one step: CFG's two halves in one batch), the VAE decoder. Times come from a plain run (forward hooks
read the clock); FLOPs from a second run under ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls and
attention; elementwise work counts as none). The peak is a 2048² matmul in each dtype, measured right before.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def gemm_peak(dtype, n: int = 2048, seconds: float = 1.5) -> float:
    """GFLOPS of an n x n matmul in ``dtype`` (the fastest of repeated calls within ``seconds``)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


class PhaseClock:
    """Forward hooks on the pipeline's modules that record (phase, seconds, FLOPs) per call; FLOPs are read from a
    FlopCounterMode when one is given."""

    def __init__(self, pipe, counter=None) -> None:
        self.counter = counter
        self.calls: List[Tuple[str, float, int]] = []
        self._open: Dict[str, Tuple[float, int]] = {}
        modules = {
            "text encode": pipe.text_encoder,
            "VAE encode": pipe.vae.encoder,
            "UNet step": pipe.unet,
            "VAE decode": pipe.vae.decoder,
        }
        self.handles = []
        for name, module in modules.items():
            self.handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self._start(n)))
            self.handles.append(module.register_forward_hook(lambda m, a, o, n=name: self._stop(n)))

    def _flops(self) -> int:
        return self.counter.get_total_flops() if self.counter is not None else 0

    def _start(self, name: str) -> None:
        self._open[name] = (time.perf_counter(), self._flops())

    def _stop(self, name: str) -> None:
        t0, f0 = self._open.pop(name)
        self.calls.append((name, time.perf_counter() - t0, self._flops() - f0))

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def numbered(calls: List[Tuple[str, float, int]]) -> List[Tuple[str, float, int]]:
    """UNet calls numbered as steps; text encoder calls summed into one phase."""
    out: List[Tuple[str, float, int]] = []
    step = 0
    for name, seconds, flops in calls:
        if name == "UNet step":
            step += 1
            out.append((f"UNet step {step}", seconds, flops))
        elif out and out[-1][0] == name:
            out[-1] = (name, out[-1][1] + seconds, out[-1][2] + flops)
        else:
            out.append((name, seconds, flops))
    return out


def measure(
    size: int = 512, mask_side: int = 192, steps: int = 4, dtype: Optional[str] = None, channels_last: bool = False
) -> dict:
    """Run the job three times in this process (warm-up, timed, FLOP-counted) and return the phase table's data."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import factory
    from inpaint_vs_diffusers import CFG, SAMPLER, inputs
    from server.core import Job, JobContext, Params
    from server.diffusion.engine import DiffusionEngine
    from server.models.registry import ModelRegistry

    checkpoint = factory.real_sd15_checkpoint()
    with tempfile.TemporaryDirectory(prefix="pb-phases-") as scratch:
        models = Path(scratch)
        (models / "checkpoints").mkdir()
        (models / "checkpoints" / checkpoint.name).symlink_to(checkpoint)
        engine = DiffusionEngine(ModelRegistry([models]), dtype=dtype)
        img, mask = inputs(size, mask_side)

        def job(prompt: str, seed: int) -> Job:
            return Job(
                id="p",
                mode="inpaint",
                model="",
                prompt=prompt,
                negative_prompt="",
                image=img,
                mask=mask,
                params=Params(steps=steps, cfg=CFG, strength=1.0, sampler=SAMPLER, seed=seed),
            )

        peaks = {str(d).replace("torch.", ""): gemm_peak(d) for d in (torch.float32, torch.bfloat16)}
        engine.run(job("warm-up", 1), JobContext())
        pipe = engine.loaded.pipe
        if channels_last:
            for module in (pipe.unet, pipe.vae):
                module.to(memory_format=torch.channels_last)

        def fresh() -> None:  # every phase runs again: no cached prompt or latents
            for cache in engine.caches.values():
                cache.clear()

        fresh()
        clock = PhaseClock(pipe)
        started = time.perf_counter()
        (layer,) = engine.run(job("a lighthouse on a cliff at sunset, oil painting", 2), JobContext())
        total = time.perf_counter() - started
        clock.close()
        fresh()
        with FlopCounterMode(display=False) as counter:
            counted = PhaseClock(pipe, counter)
            engine.run(job("a lighthouse on a cliff at sunset, oil painting", 2), JobContext())
            counted.close()
        timed, flops = numbered(clock.calls), numbered(counted.calls)
        phases = [(name, seconds, f) for (name, seconds, _), (_, _, f) in zip(timed, flops)]
        return {
            "dtype": str(engine.dtype).replace("torch.", ""),
            "peaks": peaks,
            "phases": phases,
            "total": total,
            "threads": torch.get_num_threads(),
            "info": layer.info,
            "channels_last": channels_last,
            "checksum": float(np.asarray(layer.rgba, dtype=np.float64).mean()),
        }


def table(result: dict) -> str:
    """The phase table as text."""
    peak = result["peaks"][result["dtype"]]
    lines = [
        f"phases of one job ({result['dtype']}, {result['threads']} threads"
        f"{', channels_last' if result.get('channels_last') else ''}); GEMM peak measured in the same run: "
        + ", ".join(f"{d} {g:.0f} GFLOPS" for d, g in result["peaks"].items()),
        f"{'phase':<16}{'GFLOP':>9}{'seconds':>9}{'GFLOPS':>9}{'of peak':>9}",
    ]
    inside = 0.0
    for name, seconds, flops in result["phases"]:
        inside += seconds
        rate = flops / seconds / 1e9 if seconds > 0 else 0.0
        lines.append(f"{name:<16}{flops / 1e9:>9.1f}{seconds:>9.2f}{rate:>9.1f}{rate / peak:>8.0%}")
    lines.append(f"{'outside these':<16}{'':>9}{result['total'] - inside:>9.2f}")
    lines.append(f"{'job':<16}{'':>9}{result['total']:>9.2f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--mask", type=int, default=192)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: the calibrated one")
    p.add_argument("--channels-last", action="store_true", help="UNet and VAE weights in channels_last")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line at the end")
    opts = p.parse_args()
    result = measure(opts.size, opts.mask, opts.steps, opts.dtype, opts.channels_last)
    print(table(result), flush=True)
    if opts.json:
        import json

        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
