"""Which dtype runs fastest on this machine, measured once and remembered.

CPU flags cannot tell two machines of the same kind apart: on an Intel CPU with AVX512-BF16 and no AMX a 2048² matmul
ran at 145 GFLOPS in fp32 and 100 in bf16; on an AMD EPYC with the same flags at 116 in fp32 and 251 in bf16. So the
server measures: ``measure`` times the jobs' representative shapes (a GEMM of an attention projection, a 320-channel
3×3 convolution of the UNet/VAE, a scaled-dot-product attention) in every dtype the device computes natively, within
a time budget (``BUDGET_S``; it stops measuring when the next call would not fit), and ``choose`` picks per model
family the fastest dtype that is numerically safe for it:

- ``unet`` (SD1.5/SDXL UNets and their VAEs): fp32, bf16, fp16 (fp16 with a VAE that runs in fp32 where its config
  asks for it, ``force_upcast``: SDXL's);
- ``dit`` (Flux, SD3 and newer DiT families): fp32, bf16 (fp16 overflows in these into black or NaN images).

On GPUs (CUDA, XPU, MPS) the rule is fixed and the measurement is only reported: fp16 for ``unet``, bf16 for ``dit``
where the device has it (else fp32). The result is cached per CPU model + core count + torch version (+ accelerator)
in ``calibration.json`` of the cache folder (``config.default_cache_dir``); ``load`` and ``key`` never import torch.
``python -m server.calibration`` measures and writes the cache (the server runs it in a child process at its first
start on a machine, so that a server that only runs classical jobs never imports torch).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

log = logging.getLogger("paintbridge.calibration")

BUDGET_S = 2.0  # the whole measurement, warm-up calls included
FILE_NAME = "calibration.json"
MAX_FILE_BYTES = 1 << 20
FORMAT = 1
UNET, DIT = "unet", "dit"
FAMILIES = (UNET, DIT)
FP32, BF16, FP16 = "float32", "bfloat16", "float16"
SAFE = {UNET: (FP32, BF16, FP16), DIT: (FP32, BF16)}
# Share of each family's fp32 time per kind of operation (SD1.5 at 512²: UNet and VAE FLOPs are mostly 3×3 convs;
# a DiT is linear layers and attention); a dtype's estimated time is the shares weighted by fp32 / dtype speed.
WORK = {UNET: {"conv": 0.55, "gemm": 0.30, "attention": 0.15}, DIT: {"gemm": 0.80, "attention": 0.20}}
MARGIN = 1.05  # a dtype other than fp32 is chosen only when it is estimated at least this much faster
FIRST_CALL_SLACK = 3.0  # a dtype's first call (kernel selection, packing) may take this x the fp32 call
ACCELERATORS = ("cuda", "xpu", "mps")
# CPU flags (Linux) of native fp16 arithmetic: without them torch emulates fp16 convolutions on a CPU, slowly.
CPU_FP16_FLAGS = ("avx512_fp16", "amx_fp16")


# --- the cache key and file (no torch) ---------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else the platform's), "unknown CPU" where none is known."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> Tuple[str, ...]:
    """This CPU's flags (Linux /proc/cpuinfo; empty where unknown)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return tuple(line.split(":", 1)[-1].split())
    except OSError:
        pass
    return ()


def torch_build_value(name: str) -> str:
    """A value of the installed torch's version file (``__version__``, ``cuda``), read without importing torch;
    "" when torch or the value is absent."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return ""
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return ""
    for line in text.splitlines():
        left, _, right = line.partition("=")
        if left.split(":")[0].strip() == name:
            return right.strip().strip("'\"")
    return ""


def torch_version() -> str:
    """The installed torch's version, read without importing torch; "" when absent."""
    return torch_build_value("__version__")


def nvidia_gpu_names() -> List[str]:
    """GPU model names the NVIDIA driver reports (Linux), [] when there is none or it cannot be read."""
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return names


def key(device: str = "cpu") -> str:
    """What a calibration is valid for: CPU model, core count, torch version, and the device it measured
    (``accelerator``: "cpu", or an accelerator and its name, "cuda NVIDIA H100")."""
    return f"{cpu_model()} | {os.cpu_count() or 1} cores | torch {torch_version() or '?'} | {device}"


def default_path() -> Path:
    from .config import default_cache_dir

    return default_cache_dir() / FILE_NAME


def _read(path: Path) -> dict:
    """The cache file's entries (key → result); {} when it is missing, too large or not ours."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            log.warning("ignoring %s: larger than %d bytes", path, MAX_FILE_BYTES)
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring the calibration cache %s: %s", path, err)
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def _valid(result: object) -> bool:
    if not isinstance(result, dict):
        return False
    chosen, measured = result.get("chosen"), result.get("measured")
    return (
        isinstance(chosen, dict)
        and all(chosen.get(f) in SAFE[f] for f in FAMILIES)
        and isinstance(measured, dict)
        and all(isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()) for v in measured.values())
    )


def load(cache_key: str, path: Optional[Path] = None) -> Optional[dict]:
    """The cached calibration for ``cache_key``, or None."""
    result = _read(path or default_path()).get(cache_key)
    return dict(result, cached=True) if _valid(result) else None


def save(result: dict, path: Optional[Path] = None) -> None:
    """Store ``result`` under its key (other machines' entries in the file are kept)."""
    path = path or default_path()
    entries = _read(path)
    entries[result["key"]] = {k: v for k, v in result.items() if k != "cached"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "entries": entries}, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


# --- the choice (pure) -------------------------------------------------------------------------------------------


def relative_time(measured: Mapping[str, Mapping[str, float]], family: str, dtype: str) -> Optional[float]:
    """``family``'s estimated time in ``dtype`` relative to fp32 (0.5 = twice as fast), from GFLOPS per operation
    and dtype; None when no operation of the family was measured in both."""
    total = weight = 0.0
    for op, share in WORK[family].items():
        speeds = measured.get(op, {})
        if speeds.get(FP32, 0) > 0 and speeds.get(dtype, 0) > 0:
            total += share * speeds[FP32] / speeds[dtype]
            weight += share
    return total / weight if weight else None


def choose(
    measured: Mapping[str, Mapping[str, float]], device_type: str = "cpu", accelerator_bf16: bool = True
) -> Tuple[Dict[str, str], Dict[str, str]]:
    """({family: dtype}, {family: why}) from a table of GFLOPS (operation → dtype → GFLOPS).

    CPUs: the fastest safe dtype by ``relative_time`` (fp32 unless another is at least ``MARGIN`` faster).
    Accelerators: fp16 for UNet families (their VAE runs in fp32 where it asks to), bf16 for DiT families where the
    device computes bf16 (``accelerator_bf16``), else fp32."""
    chosen, why = {}, {}
    if device_type in ACCELERATORS:
        chosen[UNET], why[UNET] = FP16, "fp16 on the GPU (the VAE runs in fp32 where its config asks: force_upcast)"
        if accelerator_bf16:
            chosen[DIT], why[DIT] = BF16, "bf16 on the GPU (fp16 overflows in DiT families)"
        else:
            chosen[DIT], why[DIT] = FP32, "fp32: this GPU has no bf16, and fp16 overflows in DiT families"
        return chosen, why
    for family in FAMILIES:
        best, best_time = FP32, 1.0
        for dtype in SAFE[family]:
            rel = relative_time(measured, family, dtype) if dtype != FP32 else None
            if rel is not None and rel * MARGIN <= best_time:
                best, best_time = dtype, rel
        chosen[family] = best
        others = [
            f"{d} measured {1 / r:.2f}x as fast"
            for d in SAFE[family]
            if d != FP32
            for r in [relative_time(measured, family, d)]
            if r
        ]
        why[family] = (
            f"{best}: measured {1 / best_time:.2f}x as fast as float32"
            if best != FP32
            else f"float32: {', '.join(others) if others else 'nothing else was measured'}"
        )
    return chosen, why


# --- measuring (torch) -------------------------------------------------------------------------------------------

Op = Tuple[str, float, Callable[[str], Callable[[], object]]]  # (name, FLOPs per call, dtype name → the call)


def operations(device) -> List[Op]:
    """The representative operations of the jobs, as (name, FLOPs, make(dtype) → call): small enough that one call
    takes a few tens of ms at fp32 on two cores."""
    import torch

    def gemm(dtype: str):  # an attention projection / feed-forward matmul: 2048 tokens x 1024 → 1024
        a = torch.randn(2048, 1024, device=device, dtype=getattr(torch, dtype))
        b = torch.randn(1024, 1024, device=device, dtype=getattr(torch, dtype))
        return lambda: torch.mm(a, b)

    def conv(dtype: str):  # a 320-channel 3x3 conv of the UNet's first level / the VAE, CFG batch of 2
        x = torch.randn(2, 320, 32, 32, device=device, dtype=getattr(torch, dtype))
        w = torch.randn(320, 320, 3, 3, device=device, dtype=getattr(torch, dtype))
        return lambda: torch.nn.functional.conv2d(x, w, padding=1)

    def attention(dtype: str):  # SD1.5 self-attention at a 32² latent level: 8 heads of 40, CFG batch of 2
        q, k, v = (torch.randn(2, 8, 1024, 40, device=device, dtype=getattr(torch, dtype)) for _ in range(3))
        return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)

    return [
        ("gemm", 2.0 * 2048 * 1024 * 1024, gemm),
        ("conv", 2.0 * 2 * 320 * 320 * 9 * 32 * 32, conv),
        ("attention", 4.0 * 2 * 8 * 1024 * 1024 * 40, attention),
    ]


def _sync(device_type: str) -> None:
    import torch

    if device_type == "cuda":
        torch.cuda.synchronize()
    elif device_type == "xpu":
        torch.xpu.synchronize()
    elif device_type == "mps":
        torch.mps.synchronize()


def run_budgeted(
    ops: Sequence[Op],
    dtypes: Sequence[str],
    budget_s: float,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] = lambda: None,
) -> Tuple[Dict[str, Dict[str, float]], float, bool]:
    """(GFLOPS per op and dtype, seconds spent, whether everything was measured). Each op gets an equal share of the
    budget left; within it the dtypes take turns (so load on the machine hits them alike) and the fastest call
    counts, the first call of each being its warm-up. No call starts that is predicted to end after the budget: a
    repeated call as long as its last one; a first call ``FIRST_CALL_SLACK`` x the op's fp32 call, or x its FLOPs at
    the rate the first op measured. So only the very first call is unpredicted."""
    start = clock()
    deadline = start + budget_s
    measured: Dict[str, Dict[str, float]] = {}
    rate = 0.0  # FLOP/s of the first fp32 call that ran: predicts the first call of the next ops
    complete = True
    for index, (name, flops, make) in enumerate(ops):
        share_end = clock() + (deadline - clock()) / (len(ops) - index)
        calls = {d: make(d) for d in dtypes}
        best: Dict[str, float] = {}  # the fastest counted call (or the warm-up's time until one is counted)
        counted = set()
        while True:
            ran = False
            for dtype in dtypes:
                if dtype in best:
                    guess, end = best[dtype], share_end
                else:
                    reference = best.get(FP32) or (flops / rate if rate else 0.0)
                    guess, end = reference * FIRST_CALL_SLACK, deadline
                t0 = clock()
                if t0 + guess > end or t0 >= deadline:
                    continue
                calls[dtype]()
                sync()
                took = clock() - t0
                if dtype in best:
                    best[dtype] = min(best[dtype], took) if dtype in counted else took
                    counted.add(dtype)
                else:
                    best[dtype] = took
                    if dtype == FP32 and not rate and took > 0:
                        rate = flops / took
                ran = True
            if not ran:
                break
        measured[name] = {d: round(flops / t / 1e9, 1) for d, t in best.items() if t > 0}
        complete = complete and all(d in counted for d in dtypes)
    return measured, clock() - start, complete


def dtypes_to_measure(device_type: str) -> List[str]:
    """fp32 and bf16 everywhere; fp16 on accelerators and on CPUs with native fp16."""
    if device_type in ACCELERATORS or any(f in cpu_flags() for f in CPU_FP16_FLAGS):
        return [FP32, BF16, FP16]
    return [FP32, BF16]


def accelerator_name(device_type: str) -> str:
    """The accelerator's model name as the driver reports it, read without torch ("" for the CPU or where unknown)."""
    if device_type == "cuda":
        return next(iter(nvidia_gpu_names()), "")
    return "Apple MPS" if device_type == "mps" else ""


def accelerator(device_type: str) -> str:
    """The device part of the cache key: "cpu", or the accelerator kind and its name."""
    return device_type if device_type == "cpu" else f"{device_type} {accelerator_name(device_type)}".strip()


def _accelerator_bf16(device_type: str) -> bool:
    import torch

    if device_type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "xpu":
        return bool(getattr(torch.xpu, "is_bf16_supported", lambda: True)())
    if device_type == "mps":
        try:
            torch.ones(1, device="mps", dtype=torch.bfloat16)
            return True
        except (RuntimeError, TypeError):
            return False
    return True


def measure(device_type: str = "cpu", budget_s: float = BUDGET_S) -> dict:
    """Measure this machine (``device_type``: cpu, cuda, xpu, mps) and choose; the result is what ``save`` keeps."""
    import torch

    device = torch.device(device_type)
    with torch.inference_mode():
        measured, seconds, complete = run_budgeted(
            operations(device), dtypes_to_measure(device_type), budget_s, sync=lambda: _sync(device_type)
        )
    chosen, why = choose(measured, device_type, _accelerator_bf16(device_type))
    return {
        "key": key(accelerator(device_type)),
        "device": device_type,
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "measured": measured,
        "chosen": chosen,
        "why": why,
        "seconds": round(seconds, 3),
        "budget": budget_s,
        "complete": complete,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def calibrated(device_type: str = "cpu", path: Optional[Path] = None, again: bool = False) -> dict:
    """This machine's calibration: the cached one, else measured now (in this process) and cached."""
    result = None if again else load(key(accelerator(device_type)), path)
    if result is None:
        result = dict(measure(device_type), cached=False)
        log.info(
            "calibrated the %s in %.2f s: %s; chose %s",
            device_type,
            result["seconds"],
            result["measured"],
            result["chosen"],
        )
        try:
            save(result, path)
        except OSError as err:
            log.warning("could not cache the calibration in %s: %s", path or default_path(), err)
    return result


def calibrate_in_child(device: Optional[str] = None, again: bool = False, timeout: float = 300.0) -> Optional[dict]:
    """Measure in a child process (torch stays out of this one) and cache the result; None when that failed."""
    command = [sys.executable, "-m", "server.calibration", "--json"]
    if device:
        command += ["--device", device]
    if again:
        command.append("--again")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("the dtype calibration did not run: %s", err)
        return None
    if proc.returncode != 0:
        log.warning("the dtype calibration failed: %s", proc.stderr.strip()[-2000:])
        return None
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log.warning("the dtype calibration said nothing readable: %r", proc.stdout[-500:])
        return None


def table(result: Mapping) -> str:
    """The calibration as lines of text (operation, GFLOPS per dtype, the choice)."""
    dtypes = sorted({d for v in result["measured"].values() for d in v}, key=[FP32, BF16, FP16].index)
    lines = [
        f"{result.get('cpu', '')} ({result.get('cores', '?')} cores), torch {result.get('torch', '?')}, "
        f"{result['device']}: measured in {result['seconds']:.2f} s of a {result['budget']:g} s budget"
        + ("" if result.get("complete", True) else " (stopped at the budget: some cells unmeasured)")
        + (" (cached)" if result.get("cached") else ""),
        f"{'GFLOPS':<12}" + "".join(f"{d:>11}" for d in dtypes),
    ]
    for op, speeds in result["measured"].items():
        lines.append(f"{op:<12}" + "".join(f"{speeds[d]:>11.1f}" if d in speeds else f"{'-':>11}" for d in dtypes))
    for family in FAMILIES:
        lines.append(f"{family}: {result['why'].get(family, result['chosen'][family])}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="measure which dtype runs fastest here and cache it")
    p.add_argument("--device", default="cpu", help="cpu, cuda, xpu or mps (default cpu)")
    p.add_argument("--again", action="store_true", help="measure even when a cached result exists")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = p.parse_args(argv)
    result = calibrated(args.device.split(":", 1)[0], again=args.again)
    print(json.dumps(result) if args.json else table(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
