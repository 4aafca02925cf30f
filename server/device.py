"""The one place that picks the torch device and dtype, frees device memory and recognises out-of-memory errors.

CUDA (fp16, or bf16 when asked), Apple MPS (fp16), else CPU (fp32). Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Optional, Tuple

DTYPES = ("float16", "bfloat16", "float32")


def choose(device: Optional[str] = None, dtype: Optional[str] = None) -> Tuple["object", "object"]:
    """(torch.device, torch.dtype): the given ones, else the best available; a bad name raises ValueError."""
    import torch

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
    if dtype:
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        dt = getattr(torch, dtype)
    else:
        dt = torch.float32 if dev.type == "cpu" else torch.float16
    return dev, dt


def describe(device, dtype) -> str:
    """A short line for ``welcome``: "CUDA 0: NVIDIA H100 (80 GB), float16" / "CPU (16 threads), float32"."""
    import torch

    name = str(dtype).replace("torch.", "")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"CUDA {index}: {props.name} ({props.total_memory / 2**30:.0f} GB), {name}"
    if device.type == "mps":
        return f"Apple MPS, {name}"
    return f"CPU ({torch.get_num_threads()} threads), {name}"


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
