"""The one place that picks the torch device and dtype, frees device memory and recognises out-of-memory errors.

Device: CUDA, Intel XPU, Apple MPS, else the CPU; ``--device`` overrides. Dtype: ``--dtype`` when given, else the
one the machine's calibration (``calibration.py``) chose for the model family: measured once per machine on the CPU
(fp32 or bf16, whichever runs the jobs' shapes faster), fp16 for SD1.5/SDXL and bf16 for Flux/SD3 on GPUs.
Importing this module does not import torch.

``plan`` and ``describe_plan`` decide the same without importing torch (a few file reads, the calibration cache), so
the server can say in ``welcome`` what it will run on before any job has imported torch; ``choose`` is the real
decision once torch is in (it measures, in this process, when the machine has not been calibrated yet).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Optional, Tuple

from . import calibration

DTYPES = ("float16", "bfloat16", "float32")
UNET, DIT = calibration.UNET, calibration.DIT


def default_dtype(device_type: str, family: str = UNET) -> str:
    """The dtype ``family`` runs in on ``device_type`` unless told, without torch: the cached calibration's choice;
    before the machine is calibrated, the GPU rule on accelerators and fp32 on the CPU."""
    cached = calibration.load(calibration.key(calibration.accelerator(device_type)))
    if cached is not None:
        return cached["chosen"][family]
    return calibration.choose({}, device_type)[0][family]


def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return dtype


def _torch_cuda_build() -> bool:
    """Whether the installed torch was built with CUDA (read from its version file, torch not imported)."""
    return calibration.torch_build_value("cuda") not in ("", "None")


_nvidia_gpu_names = calibration.nvidia_gpu_names


def _torch_xpu_build() -> bool:
    """Whether the installed torch is an Intel XPU build (its version says ``+xpu``; torch not imported)."""
    return "+xpu" in calibration.torch_version()


def plan(device: Optional[str] = None, dtype: Optional[str] = None, family: str = UNET) -> Tuple[str, str]:
    """(device type, dtype name) the engine will use for ``family``, decided without importing torch."""
    if device:
        kind = device.split(":", 1)[0]
    elif _torch_cuda_build() and (_nvidia_gpu_names() or sys.platform == "win32"):
        kind = "cuda"
    elif _torch_xpu_build():
        kind = "xpu"
    elif sys.platform == "darwin" and platform.machine() == "arm64":
        kind = "mps"
    else:
        kind = "cpu"
    return kind, _check_dtype(dtype) if dtype else default_dtype(kind, family)


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
    if kind == "xpu":
        return f"Intel XPU, {name}"
    if kind == "cpu":
        return f"CPU ({os.cpu_count() or 1} cores), {name}"
    return f"{device}, {name}"


def _xpu_available() -> bool:
    import torch

    return hasattr(torch, "xpu") and torch.xpu.is_available()


def choose(device: Optional[str] = None, dtype: Optional[str] = None, family: str = UNET) -> Tuple["object", "object"]:
    """(torch.device, torch.dtype) for ``family``'s models: the given ones, else the best available device and the
    dtype its calibration chose (measured now when the machine has none yet); a bad name raises ValueError."""
    import torch

    if dtype:
        _check_dtype(dtype)
    if device:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available on this machine")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} was asked for but MPS is not available on this machine")
        if dev.type == "xpu" and not _xpu_available():
            raise ValueError(f"device {device!r} was asked for but no Intel XPU is available on this machine")
    elif torch.cuda.is_available():
        dev = torch.device("cuda")
    elif _xpu_available():
        dev = torch.device("xpu")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev = torch.device("mps")
    else:
        dev = torch.device("cpu")
    if dtype is None:
        dtype = calibration.calibrated(dev.type)["chosen"][family]
    return dev, getattr(torch, dtype)


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
    if device.type == "xpu":
        return f"Intel XPU: {torch.xpu.get_device_name()}, {name}"
    return f"CPU ({os.cpu_count() or 1} cores), {name}"


def empty_cache(device) -> None:
    """Give the device's cached, unused memory back (after an out-of-memory error or an unload)."""
    import torch

    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps":
        torch.mps.empty_cache()


def available_bytes(device, meminfo: str = "/proc/meminfo") -> int:
    """Memory a new tensor on ``device`` may take now, in bytes: on a CUDA GPU its free memory plus what torch's
    caching allocator holds unused; elsewhere the RAM the kernel reports available (``MemAvailable`` of
    ``meminfo``), or all of the RAM where that cannot be read (0 where neither can)."""
    import torch

    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open(meminfo, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says the device or the CPU allocator ran out of memory."""
    if isinstance(err, MemoryError):
        return True
    import torch

    text = str(err).lower()
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    )
