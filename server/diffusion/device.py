"""Pick the torch device and dtype: CUDA (fp16, or bf16 when asked), Apple MPS (fp16), else CPU (fp32)."""

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
