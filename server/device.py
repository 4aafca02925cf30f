"""The one place that picks the torch device and dtype, frees device memory and recognises out-of-memory errors.

CUDA (fp16, or bf16 when asked), Apple MPS (fp16), else the CPU (bf16 where the CPU has bf16 matrix units, fp32
elsewhere); ``--device`` / ``--dtype`` override. Importing this module does not import torch.

Only AMX makes bf16 faster than fp32 on a CPU. AVX512-BF16 alone does not: on this project's Xeon (AVX512-BF16, no
AMX exposed; torch 2.14.1, oneDNN avx512_core_bf16 kernels) a 2048² matmul ran at 100 GFLOPS in bf16 against 145 in
fp32, and the SD1.5 VAE decoder took about twice as long in bf16 (measured side by side, 2 threads).

``plan`` and ``describe_plan`` decide the same without importing torch (a few file reads), so the server can say in
``welcome`` what it will run on before any job has imported torch; ``choose`` is the real decision once torch is in.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple

DTYPES = ("float16", "bfloat16", "float32")
# x86 CPU flags (Linux /proc/cpuinfo) of bf16 matrix units (AMX tiles with bf16).
FAST_BF16_FLAGS = ("amx_bf16", "amx_tile")


@lru_cache(maxsize=1)
def cpu_fast_bf16() -> bool:
    """Whether this CPU has bf16 matrix units (AMX flags in /proc/cpuinfo; False where unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return all(f in flags for f in FAST_BF16_FLAGS)
    return False


def default_dtype(device_type: str) -> str:
    """The dtype a device runs in unless told: fp16 on GPUs, bf16 on CPUs with AMX, else fp32."""
    if device_type in ("cuda", "mps", "xpu"):
        return "float16"
    return "bfloat16" if cpu_fast_bf16() else "float32"


def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return dtype


def _torch_cuda_build() -> bool:
    """Whether the installed torch was built with CUDA (read from its version file, torch not imported)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    try:
        for line in version.read_text(encoding="utf-8").splitlines():
            if line.startswith("cuda"):
                return "None" not in line.split("=", 1)[-1]
    except OSError:
        return False
    return False


def _nvidia_gpu_names() -> list:
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


def plan(device: Optional[str] = None, dtype: Optional[str] = None) -> Tuple[str, str]:
    """(device type, dtype name) the engine will use, decided without importing torch."""
    if device:
        kind = device.split(":", 1)[0]
    elif _torch_cuda_build() and (_nvidia_gpu_names() or sys.platform == "win32"):
        kind = "cuda"
    elif sys.platform == "darwin" and platform.machine() == "arm64":
        kind = "mps"
    else:
        kind = "cpu"
    return kind, _check_dtype(dtype) if dtype else default_dtype(kind)


def describe_plan(device: Optional[str] = None, dtype: Optional[str] = None) -> str:
    """``describe`` of the planned device, without importing torch ("CPU (2 cores), bfloat16")."""
    kind, name = plan(device, dtype)
    if kind == "cuda":
        index = int(device.split(":", 1)[1]) if device and ":" in device else 0
        gpus = _nvidia_gpu_names()
        model = f": {gpus[index]}" if index < len(gpus) else ""
        return f"CUDA {index}{model}, {name}"
    if kind == "mps":
        return f"Apple MPS, {name}"
    if kind == "cpu":
        return f"CPU ({os.cpu_count() or 1} cores), {name}"
    return f"{device}, {name}"


def choose(device: Optional[str] = None, dtype: Optional[str] = None) -> Tuple["object", "object"]:
    """(torch.device, torch.dtype): the given ones, else the best available; a bad name raises ValueError."""
    import torch

    if dtype:
        _check_dtype(dtype)
    if device:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available on this machine")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} was asked for but MPS is not available on this machine")
    elif torch.cuda.is_available():
        dev = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev = torch.device("mps")
    else:
        dev = torch.device("cpu")
    return dev, getattr(torch, dtype or default_dtype(dev.type))


def describe(device, dtype) -> str:
    """A short line for ``welcome``: "CUDA 0: NVIDIA H100 (80 GB), float16" / "CPU (2 cores), bfloat16"."""
    import torch

    name = str(dtype).replace("torch.", "")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"CUDA {index}: {props.name} ({props.total_memory / 2**30:.0f} GB), {name}"
    if device.type == "mps":
        return f"Apple MPS, {name}"
    return f"CPU ({os.cpu_count() or 1} cores), {name}"


def empty_cache(device) -> None:
    """Give the device's cached, unused memory back (after an out-of-memory error or an unload)."""
    import torch

    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps":
        torch.mps.empty_cache()


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says the device or the CPU allocator ran out of memory."""
    if isinstance(err, MemoryError):
        return True
    import torch

    text = str(err).lower()
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))
