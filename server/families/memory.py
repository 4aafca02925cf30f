"""Where a Flux/SD3 model's weights live, decided from numbers: free device memory, parameter counts, the precision
the file stores, the device; and the CPU's dtype for these families.

``choose_placement`` and ``choose_cpu_dtype`` are pure functions (tested with the published sizes); ``apply`` does what
the placement says with diffusers' own tools (``enable_model_cpu_offload``, ``enable_sequential_cpu_offload``,
``ModelMixin.enable_layerwise_casting`` to keep the transformer's weights in float8_e4m3fn and compute in bf16/fp16);
``stored`` reads parameter counts and the stored dtype from safetensors headers (no tensor is read).

Published sizes, for scale: Flux.1 dev transformer 11.9 B parameters (23.8 GB in bf16, 11.9 GB in fp8), T5-XXL
encoder 4.76 B (9.5 GB bf16), CLIP-L 0.12 B, VAE 0.08 B. So a 24 GB card holds the transformer alone in bf16 with
nothing to spare: it runs Flux dev with the transformer stored in fp8 and model CPU offload (one model on the GPU at a
time); a 12 GB card holds no whole fp8 transformer and runs with sequential CPU offload (weights streamed per layer).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Mapping, Tuple

GIB = 2**30
WEIGHT_MARGIN = 1.1  # weights x margin + ACTIVATIONS must fit the free memory
ACTIVATIONS = 2 * GIB  # attention and VAE decode at 1024² px, and the CUDA context's growth
ENCODER_ACTIVATIONS = GIB // 2  # a text encoder's, on its own on the GPU (model offload)
FP8 = "float8_e4m3fn"
SAFETENSORS_DTYPES = {
    "F8_E4M3": FP8,
    "F8_E5M2": "float8_e5m2",
    "BF16": "bfloat16",
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
}
BYTES = {FP8: 1, "float8_e5m2": 1, "bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}
# Bytes per weight of GGUF tensor types (GGML block layouts: Q8_0 = 32 weights in 34 bytes, Q4_K = 256 in 144, ...).
GGUF_BYTES = {
    "Q8_0": 34 / 32,
    "Q6_K": 210 / 256,
    "Q5_K": 176 / 256,
    "Q5_0": 22 / 32,
    "Q5_1": 24 / 32,
    "Q4_K": 144 / 256,
    "Q4_0": 18 / 32,
    "Q4_1": 20 / 32,
    "Q3_K": 110 / 256,
    "Q2_K": 84 / 256,
    "F16": 2,
    "BF16": 2,
    "F32": 4,
}
# CPU flags of native bf16 arithmetic (Linux /proc/cpuinfo): AVX512-BF16 dot products, AMX bf16 tiles.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPU_RAM_SHARE = 0.5  # fp32 weights above this share of the RAM run in bf16 where the CPU has native bf16

GPU, FP8_GPU, MODEL_OFFLOAD, SEQUENTIAL_OFFLOAD, DEVICE = (
    "gpu",
    "gpu-fp8",
    "model-offload",
    "sequential-offload",
    "device",
)


@dataclass(frozen=True)
class Placement:
    """How a pipeline is placed: ``where`` (GPU, DEVICE for a CPU/MPS run, or an offload), whether the transformer
    keeps its weights in fp8 (``fp8``), and the sentence the result's ``info["memory"]`` carries."""

    where: str
    fp8: bool
    reason: str


def _fits(weights: float, free: int) -> bool:
    return weights * WEIGHT_MARGIN + ACTIVATIONS <= free


def choose_placement(
    free: int,
    parameters: Mapping[str, int],
    file_dtype: str,
    device: str,
    compute_dtype: str = "bfloat16",
    fp8_casting: bool = True,
) -> Placement:
    """The placement of a pipeline whose modules have ``parameters`` (name → count; ``transformer`` among them) on
    ``device`` ("cuda", "cpu", "mps", ...) with ``free`` bytes free. Whole on the GPU when it fits; the transformer in
    fp8 (``fp8_casting``: diffusers' layerwise casting is there) when the file is fp8 or the transformer does not fit
    alone in ``compute_dtype``; then model CPU offload when the largest module fits, else sequential CPU offload."""
    if device != "cuda":
        return Placement(DEVICE, False, f"on the {device.upper()}")
    size = BYTES.get(compute_dtype, 2)
    transformer = parameters.get("transformer", 0)
    gguf = file_dtype.startswith("gguf-")
    # a GGUF transformer stays quantized on the device: its own bytes per weight
    t_size = GGUF_BYTES.get(file_dtype[len("gguf-") :], 1.0) if gguf else size
    total = sum(parameters.values())
    whole = total * size - transformer * (size - t_size)
    gb = lambda n: f"{n / 1e9:.1f} GB"  # noqa: E731
    if _fits(whole, free):
        return Placement(GPU, False, f"on the GPU ({gb(whole)} of weights, {gb(free)} free)")
    if gguf:
        size_of = {name: n * (t_size if name == "transformer" else size) for name, n in parameters.items()}
        if all(
            w * WEIGHT_MARGIN + (ENCODER_ACTIVATIONS if name.startswith("text_encoder") else ACTIVATIONS) <= free
            for name, w in size_of.items()
        ):
            return Placement(
                MODEL_OFFLOAD,
                False,
                f"model CPU offload, the {file_dtype} transformer "
                f"{gb(size_of.get('transformer', 0))} ({gb(whole)} in all, {gb(free)} of the GPU free)",
            )
        return Placement(
            SEQUENTIAL_OFFLOAD,
            False,
            f"sequential CPU offload (a part of {gb(max(size_of.values()))} does not fit the {gb(free)} free)",
        )
    fp8 = fp8_casting and (file_dtype == FP8 or not _fits(transformer * size, free))
    saved = transformer * (size - 1) if fp8 else 0
    stored = "the transformer stored in fp8, " if fp8 else ""
    why = "the file is fp8" if file_dtype == FP8 else f"{gb(transformer * size)} of transformer"
    if fp8 and _fits(total * size - saved, free):
        return Placement(FP8_GPU, True, f"on the GPU with {stored.rstrip(', ')} ({why}; {gb(free)} free)")
    sizes = {name: n * (1 if fp8 and name == "transformer" else size) for name, n in parameters.items()}
    largest = max(sizes.values() or [0])
    if all(
        w * WEIGHT_MARGIN + (ENCODER_ACTIVATIONS if name.startswith("text_encoder") else ACTIVATIONS) <= free
        for name, w in sizes.items()
    ):  # model offload: one module at a time on the GPU
        return Placement(
            MODEL_OFFLOAD,
            fp8,
            f"model CPU offload, {stored}the largest part {gb(largest)} "
            f"({gb(total * size - saved)} in all, {gb(free)} of the GPU free)",
        )
    return Placement(
        SEQUENTIAL_OFFLOAD, False, f"sequential CPU offload (a part of {gb(largest)} does not fit the {gb(free)} free)"
    )


def choose_cpu_dtype(cpu_flags: Iterable[str], parameters: int, ram: int, default: str) -> Tuple[str, str]:
    """(dtype, why) for a Flux/SD3 model on the CPU: bf16 where the CPU computes bf16 natively (AVX512-BF16 or AMX)
    and the fp32 weights would take more than half the RAM (SD3.5 medium with T5-XXL: 8 B parameters, 32 GB in fp32);
    else ``default`` (the dtype the machine's calibration measured fastest for these families)."""
    native = sorted(set(cpu_flags) & set(NATIVE_BF16_FLAGS))
    if default == "bfloat16":
        return default, "bf16: measured faster than fp32 on this CPU"
    if native and parameters * 4 > CPU_RAM_SHARE * ram:
        return "bfloat16", (
            f"bf16: {parameters * 4 / 1e9:.1f} GB of fp32 weights against {ram / 1e9:.1f} GB of RAM, "
            f"and the CPU computes bf16 natively ({', '.join(native)})"
        )
    return default, "fp32" if not native else "fp32: the weights fit the RAM, and fp32 measured faster on this CPU"


def ram_bytes() -> int:
    """Physical memory in bytes (0 where unknown)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _gguf_counts(path: Path, counts: Dict[str, int]) -> None:
    import gguf

    for tensor in gguf.GGUFReader(str(path)).tensors:
        key = "gguf-" + tensor.tensor_type.name
        counts[key] = counts.get(key, 0) + int(tensor.n_elements)


def stored(paths: Iterable[Path], prefix: str = "") -> Tuple[int, str]:
    """(parameter count, the dtype most of them are stored in: ``float8_e4m3fn``, ``bfloat16``, ... or
    ``gguf-Q4_K`` ...) of the tensors in safetensors or GGUF ``paths`` whose names start with ``prefix``, from the
    files' headers."""
    counts: Dict[str, int] = {}
    for path in paths:
        if Path(path).suffix.lower() == ".gguf":
            _gguf_counts(Path(path), counts)
            continue
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for key, meta in header.items():
            if key == "__metadata__" or not key.startswith(prefix):
                continue
            n = 1
            for d in meta["shape"]:
                n *= int(d)
            dtype = SAFETENSORS_DTYPES.get(meta["dtype"], meta["dtype"])
            counts[dtype] = counts.get(dtype, 0) + n
    floats = {k: v for k, v in counts.items() if k in BYTES or k.startswith("gguf-")}
    dominant = max(floats, key=floats.get) if floats else ""
    return sum(counts.values()), dominant


def module_parameters(pipe) -> Dict[str, int]:
    """Parameter count of each torch module of a pipeline."""
    import torch

    return {
        name: sum(p.numel() for p in m.parameters())
        for name, m in pipe.components.items()
        if isinstance(m, torch.nn.Module)
    }


def apply(pipe, placement: Placement, device, compute_dtype) -> None:
    """Place ``pipe`` as ``placement`` says (the transformer's fp8 storage first, then the offload or the move)."""
    import torch

    if placement.fp8:
        pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)
    if placement.where == MODEL_OFFLOAD:
        pipe.enable_model_cpu_offload(device=device)
    elif placement.where == SEQUENTIAL_OFFLOAD:
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
