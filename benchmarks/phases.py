"""Per-phase FLOPs, time and achieved GFLOPS of one Paintbridge job, next to the GEMM peak measured in the same process.

    .venv/bin/python benchmarks/phases.py [--size 512] [--mask 192] [--steps 4] [--dtype D] [--layout L] [--by-op]

Used by ``inpaint_vs_diffusers.py`` (its ``--phases`` table) and on its own. The job is the engine's own (Paintbridge's
``DiffusionEngine`` in this process, the calibrated dtype unless ``--dtype``), on the real-size random SD1.5 checkpoint
of tests/factory.py. Phases are the modules the job calls: the text encoder (both prompts in one call), the VAE
encoder, the UNet (each call is one step: CFG's two halves in one batch), the VAE decoder. Times come from a plain run
(forward hooks read the clock); FLOPs from a second run under ``torch.utils.flop_counter.FlopCounterMode``
(convolutions, matmuls and attention, CPU's fused attention kernel included; elementwise work counts as none). The
peak is a 2048² matmul in each dtype, measured right before. The CPU columns take the process's CPU time instead of
the wall clock (FLOPs over CPU seconds shared by the threads; the peak measured the same way): on a machine with other
load a phase of tens of seconds waits for a core far more than a 2048² matmul does, so the wall-clock share mostly
measures the load, the CPU one what the kernels do.

``--by-op`` runs the job once more under ``torch.profiler`` and splits each phase's time by kind of op (convolution,
GEMM, attention, norms, softmax, activations, other elementwise, copies and layout changes, ...): each kind's seconds
(the ops' own time, children excluded), FLOPs and GFLOPS, so what keeps a phase from its peak shows. "between ops" is
the phase's time that no op accounts for (Python, hooks, the profiler's own cost).

The job runs with the server's thread setting (``OMP_WAIT_POLICY=PASSIVE`` from ``server/tuning.py``, unless already
set; the table's header says which). With other load on the machine, spinning threads make a phase of many small ops
several times slower. Measured back to back (AMD EPYC, 2 cores, AVX512-BF16 without AMX, load 13), a CLIP-L text
encode of 2 x 77 tokens in bf16, best / median of 6: spinning 0.84 / 1.75 CPU-s, 1.73 / 4.42 s; passive 0.19 / 0.20
CPU-s, 0.36 / 0.47 s. Tables of this script before this setting were measured with spinning threads.
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
from server import tuning  # noqa: E402 - the path above first

# The server's threads: ``paintbridge serve`` makes OpenMP's threads wait without spinning (server/tuning.py) before
# torch is imported; the job is measured as the server runs it (see the module docstring).
tuning.passive_threads()


# Kinds of op, in the order an op's name is matched: the first kind with a part of the name wins ("addmm" is GEMM,
# not elementwise "add"); names in EXACT are matched whole (without "aten::").
OP_KINDS = (
    ("conv", ("conv",)),
    ("attention", ("scaled_dot_product", "flash_attention")),
    ("GEMM (linear)", ("addmm", "aten::mm", "bmm", "linear", "matmul")),
    ("group/layer norm", ("group_norm", "layer_norm")),
    ("softmax", ("softmax",)),
    ("SiLU/GELU", ("silu", "gelu", "sigmoid")),
    ("resample", ("upsample", "interpolate", "avg_pool")),
    ("copies, layout", ("copy", "clone", "contiguous", "cat", "stack", "pad")),
    (
        "views, allocation",
        ("view", "reshape", "permute", "transpose", "expand", "slice", "select", "split", "chunk", "squeeze")
        + ("flatten", "empty", "strided", "alias", "detach", "resize_", "unbind", "narrow", "zeros", "ones", "full")
        + ("fill_", "lift"),
    ),
)
EXACT = {"t": "views, allocation", "to": "views, allocation"}
OTHER_OPS = "other elementwise"  # add, mul, div, exp, where, ... : each element read and written once


def op_kind(name: str) -> str:
    """The kind of a profiled op (``aten::addmm``) or of a FLOP-counted one (``aten.addmm``)."""
    name = name.replace(".", "::").lower()
    bare = name.split("::")[1] if name.startswith("aten::") and name.count("::") >= 1 else name
    if bare in EXACT:
        return EXACT[bare]
    for kind, parts in OP_KINDS:
        if any(part in name for part in parts):
            return kind
    return OTHER_OPS


def flop_counter():
    """A FlopCounterMode that also counts CPU's fused attention kernel (torch's table counts only the GPU ones)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:  # shapes, as torch's formulas get
        return sdpa_flop_count(query, key, value)

    aten = torch.ops.aten
    return FlopCounterMode(
        display=False, custom_mapping={aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention}
    )


def gemm_peak(dtype, n: int = 2048, seconds: float = 1.5, clock=time.perf_counter) -> float:
    """GFLOPS of an n x n matmul in ``dtype`` (the fastest of repeated calls within ``seconds``). With
    ``clock=time.process_time``: per thread-second of CPU time times the threads (see ``cpu_rate``)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = clock()
        torch.mm(a, b)
        best = min(best, clock() - t0)
    return cpu_rate(2 * n**3, best) if clock is time.process_time else 2 * n**3 / best / 1e9


def cpu_rate(flops: float, cpu_seconds: float) -> float:
    """GFLOPS from the CPU time the work took: ``flops`` over ``cpu_seconds`` shared by torch's threads, i.e. the rate
    had its threads not waited for a core. Other load on the machine stretches wall time, much less CPU time (with
    threads that wait without spinning)."""
    import torch

    return flops / (cpu_seconds / torch.get_num_threads()) / 1e9 if cpu_seconds > 0 else 0.0


class PhaseClock:
    """Forward hooks on the pipeline's modules that record (phase, seconds, FLOPs) per call; FLOPs are read from a
    FlopCounterMode when one is given (``by_kind`` keeps each call's FLOPs by kind of op). With ``ranges`` each call
    is also a ``torch.profiler`` range named ``phase: <name> #<call>``."""

    def __init__(self, pipe, counter=None, ranges: bool = False) -> None:
        self.counter = counter
        self.ranges = ranges
        self.calls: List[Tuple[str, float, int]] = []
        self.by_kind: List[Dict[str, int]] = []
        self._open: Dict[str, Tuple[float, int, Dict[str, int], object]] = {}
        self._count: Dict[str, int] = {}
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

    def _flops(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        if self.counter is not None:
            for op, flops in self.counter.flop_counts["Global"].items():
                out[op_kind(str(op))] = out.get(op_kind(str(op)), 0) + flops
        return out

    def _start(self, name: str) -> None:
        span = None
        if self.ranges:
            import torch

            self._count[name] = self._count.get(name, 0) + 1
            span = torch.profiler.record_function(f"phase: {name} #{self._count[name]}")
            span.__enter__()
        self._open[name] = (time.perf_counter(), time.process_time(), sum(self._flops().values()), self._flops(), span)

    def _stop(self, name: str) -> None:
        t0, c0, f0, k0, span = self._open.pop(name)
        if span is not None:
            span.__exit__(None, None, None)
        k1 = self._flops()
        self.calls.append((name, time.perf_counter() - t0, sum(k1.values()) - f0, time.process_time() - c0))
        self.by_kind.append({k: v - k0.get(k, 0) for k, v in k1.items() if v - k0.get(k, 0)})

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def op_times(events) -> Dict[str, Dict[str, float]]:
    """Seconds by phase call (``phase: <name> #<call>`` ranges) and kind of op: each op's own time (children
    excluded), on the thread that called it; "between ops" is the range's time no op accounts for."""
    out: Dict[str, Dict[str, float]] = {}
    for event in events:
        if event.name.startswith("phase: "):
            kinds = out.setdefault(event.name[len("phase: ") :], {})
            kinds["between ops"] = kinds.get("between ops", 0.0) + event.self_cpu_time_total / 1e6
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("phase: "):
            parent = parent.cpu_parent
        if parent is None:
            continue
        kinds = out.setdefault(parent.name[len("phase: ") :], {})
        kind = op_kind(event.name)
        kinds[kind] = kinds.get(kind, 0.0) + event.self_cpu_time_total / 1e6
    return out


def numbered(calls: List[Tuple[str, float, int, float]]) -> List[Tuple[str, float, int, float]]:
    """UNet calls numbered as steps; text encoder calls summed into one phase."""
    out: List[Tuple[str, float, int, float]] = []
    step = 0
    for name, *figures in calls:
        if name == "UNet step":
            step += 1
            out.append((f"UNet step {step}", *figures))
        elif out and out[-1][0] == name:
            out[-1] = (name, *(a + b for a, b in zip(out[-1][1:], figures)))
        else:
            out.append((name, *figures))
    return out


def measure(
    size: int = 512,
    mask_side: int = 192,
    steps: int = 4,
    dtype: Optional[str] = None,
    layout: Optional[str] = None,
    by_op: bool = False,
) -> dict:
    """Run the job three times in this process (warm-up, timed, FLOP-counted), with ``by_op`` a fourth time under
    the profiler, and return the phase table's data."""
    import numpy as np
    import torch

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
        cpu_peaks = {
            str(d).replace("torch.", ""): gemm_peak(d, clock=time.process_time) for d in (torch.float32, torch.bfloat16)
        }
        engine.run(job("warm-up", 1), JobContext())
        pipe = engine.loaded.pipe
        if layout is not None:  # instead of the engine's choice (server/diffusion/layout.py)
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            for module in (pipe.unet, pipe.vae):
                module.to(memory_format=fmt)

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
        with flop_counter() as counter:
            counted = PhaseClock(pipe, counter)
            engine.run(job("a lighthouse on a cliff at sunset, oil painting", 2), JobContext())
            counted.close()
        timed, flops = numbered(clock.calls), numbered(counted.calls)
        conv = pipe.unet.conv_in.weight
        phases = [(name, seconds, f, cpu) for (name, seconds, _, cpu), (_, _, f, _) in zip(timed, flops)]
        ops = None
        if by_op:
            fresh()
            peak = gemm_peak(engine.dtype)  # again, right before: the load on the machine may have changed
            ranged = PhaseClock(pipe, ranges=True)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
                engine.run(job("a lighthouse on a cliff at sunset, oil painting", 2), JobContext())
            ranged.close()
            ops = {"seconds": op_times(prof.events()), "flops": flops_by_call(counted), "peak": peak}
        return {
            "dtype": str(engine.dtype).replace("torch.", ""),
            "peaks": peaks,
            "cpu_peaks": cpu_peaks,
            "phases": phases,
            "total": total,
            "threads": torch.get_num_threads(),
            "wait_policy": os.environ.get(tuning.OMP_ENV, "spinning (OpenMP's default)"),
            "info": layer.info,
            "layout": "channels_last" if conv.is_contiguous(memory_format=torch.channels_last) else "default",
            "checksum": float(np.asarray(layer.rgba, dtype=np.float64).mean()),
            "ops": ops,
        }


def flops_by_call(clock: PhaseClock) -> Dict[str, Dict[str, int]]:
    """FLOPs by phase call (named as the profiler ranges are) and kind of op."""
    out: Dict[str, Dict[str, int]] = {}
    count: Dict[str, int] = {}
    for (name, *_), kinds in zip(clock.calls, clock.by_kind):
        count[name] = count.get(name, 0) + 1
        out[f"{name} #{count[name]}"] = kinds
    return out


def op_table(result: dict) -> str:
    """Each phase by kind of op: seconds, share of the phase, GFLOP, GFLOPS and share of the GEMM peak. Text encoder
    calls are summed; UNet steps are shown one by one."""
    ops = result["ops"]
    peak = ops["peak"]
    grouped: Dict[str, Dict[str, List[float]]] = {}
    for call, seconds in ops["seconds"].items():
        name, number = call.rsplit(" #", 1)
        phase = f"{name} {number}" if name == "UNet step" else name
        kinds = grouped.setdefault(phase, {})
        for kind, s in seconds.items():
            kinds.setdefault(kind, [0.0, 0.0])[0] += s
        for kind, f in ops["flops"].get(call, {}).items():
            kinds.setdefault(kind, [0.0, 0.0])[1] += f
    lines = [
        f"GEMM peak measured right before the profiled run: {result['dtype']} {peak:.0f} GFLOPS",
        f"by kind of op (profiled run; ops' own time){'':>8}{'GFLOP':>9}{'seconds':>9}{'share':>7}{'GFLOPS':>9}"
        f"{'of peak':>9}",
    ]
    for phase, kinds in grouped.items():
        total = sum(s for s, _ in kinds.values())
        lines.append(f"{phase} ({total:.2f} s)")
        for kind, (seconds, flops) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
            rate = flops / seconds / 1e9 if seconds > 0 and flops else 0.0
            gflops = f"{rate:>9.1f}{rate / peak:>8.0%}" if flops else ""
            lines.append(f"  {kind:<48}{flops / 1e9:>9.1f}{seconds:>9.2f}{seconds / total:>7.0%}{gflops}")
    return "\n".join(lines)


def table(result: dict) -> str:
    """The phase table as text."""
    peak, cpu_peak, threads = result["peaks"][result["dtype"]], result["cpu_peaks"][result["dtype"]], result["threads"]
    lines = [
        f"phases of one job ({result['dtype']}, {threads} threads waiting "
        f"{result.get('wait_policy', 'spinning').lower()}, {result.get('layout', 'default')} layout); GEMM peak "
        "measured in the same run: " + ", ".join(f"{d} {g:.0f} GFLOPS" for d, g in result["peaks"].items()),
        "CPU columns: from the CPU time each took over the threads (cpu_rate), against the GEMM peak measured the same"
        " way: " + ", ".join(f"{d} {g:.0f}" for d, g in result["cpu_peaks"].items()),
        f"{'phase':<16}{'GFLOP':>9}{'seconds':>9}{'GFLOPS':>9}{'of peak':>9}{'CPU-s':>9}{'CPU GFLOPS':>12}{'of peak':>9}",
    ]
    inside = 0.0
    for name, seconds, flops, cpu in result["phases"]:
        inside += seconds
        rate = flops / seconds / 1e9 if seconds > 0 else 0.0
        by_cpu = flops / (cpu / threads) / 1e9 if cpu > 0 else 0.0
        lines.append(
            f"{name:<16}{flops / 1e9:>9.1f}{seconds:>9.2f}{rate:>9.1f}{rate / peak:>8.0%}"
            f"{cpu:>9.2f}{by_cpu:>12.1f}{by_cpu / cpu_peak:>8.0%}"
        )
    lines.append(f"{'outside these':<16}{'':>9}{result['total'] - inside:>9.2f}")
    lines.append(f"{'job':<16}{'':>9}{result['total']:>9.2f}")
    if result.get("ops"):
        lines += ["", op_table(result)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--mask", type=int, default=192)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: the calibrated one")
    p.add_argument(
        "--layout",
        choices=("default", "channels_last"),
        help="UNet and VAE weights in this memory layout (default: the engine's choice for the device and dtype)",
    )
    p.add_argument("--by-op", action="store_true", help="one more run under the profiler: each phase by kind of op")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line at the end")
    opts = p.parse_args()
    result = measure(opts.size, opts.mask, opts.steps, opts.dtype, opts.layout, opts.by_op)
    print(table(result), flush=True)
    if opts.json:
        import json

        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
