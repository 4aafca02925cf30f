"""server.families.memory: where Flux/SD3 weights live (GPU, fp8 storage, model or sequential CPU offload) and the CPU
dtype, decided from numbers (published parameter counts, free memory of real cards); the stored precision read from
safetensors headers; fp8 storage through diffusers' layerwise casting on a tiny Flux."""

from __future__ import annotations

import numpy as np
import torch

import factory
from server.families import memory
from server.families.memory import (
    FP8,
    FP8_GPU,
    GPU,
    MODEL_OFFLOAD,
    SEQUENTIAL_OFFLOAD,
    choose_cpu_dtype,
    choose_placement,
)

GB = 10**9
GIB = 2**30
# Published parameter counts: Flux.1 dev transformer 11.9 B, T5-XXL encoder 4.76 B, CLIP-L 123 M, VAE 84 M.
FLUX_DEV = {
    "transformer": 11_901_408_320,
    "text_encoder_2": 4_762_310_656,
    "text_encoder": 123_060_480,
    "vae": 83_819_683,
}
# SD3.5 medium: MMDiT 2.47 B, CLIP-L 123 M, CLIP-G 695 M, T5-XXL 4.76 B, VAE 84 M.
SD35_MEDIUM = {
    "transformer": 2_470_000_000,
    "text_encoder": 123_060_480,
    "text_encoder_2": 694_659_840,
    "text_encoder_3": 4_762_310_656,
    "vae": 83_819_683,
}
# Free memory of real cards after the CUDA context (about 0.5-1 GiB taken).
FREE_24GB, FREE_12GB, FREE_80GB = int(23.0 * GIB), int(11.2 * GIB), int(78.5 * GIB)


def test_a_24gb_card_runs_flux_dev_with_model_offload_and_the_transformer_in_fp8():
    for dtype in ("bfloat16", FP8):  # a bf16 file or an fp8 file: the bf16 transformer alone does not fit
        p = choose_placement(FREE_24GB, FLUX_DEV, dtype, "cuda")
        assert (p.where, p.fp8) == (MODEL_OFFLOAD, True), p
        assert "model CPU offload" in p.reason and "fp8" in p.reason


def test_a_12gb_card_runs_flux_dev_with_sequential_offload():
    for dtype in ("bfloat16", FP8):
        p = choose_placement(FREE_12GB, FLUX_DEV, dtype, "cuda")
        assert p.where == SEQUENTIAL_OFFLOAD and "sequential CPU offload" in p.reason


def test_an_80gb_card_holds_flux_dev_whole_and_a_48gb_card_holds_it_with_an_fp8_file():
    assert choose_placement(FREE_80GB, FLUX_DEV, "bfloat16", "cuda").where == GPU
    free_48 = int(47.0 * GIB)
    assert choose_placement(free_48, FLUX_DEV, "bfloat16", "cuda").where == GPU
    free_32 = int(31.0 * GIB)  # bf16 does not fit whole, the bf16 transformer fits alone: offload, no fp8 loss
    assert (
        choose_placement(free_32, FLUX_DEV, "bfloat16", "cuda").where,
        choose_placement(free_32, FLUX_DEV, "bfloat16", "cuda").fp8,
    ) == (MODEL_OFFLOAD, False)
    assert choose_placement(free_32, FLUX_DEV, FP8, "cuda").where == FP8_GPU  # the fp8 file: whole on the GPU


def test_without_layerwise_casting_a_24gb_card_falls_back_to_sequential_offload():
    p = choose_placement(FREE_24GB, FLUX_DEV, "bfloat16", "cuda", fp8_casting=False)
    assert (p.where, p.fp8) == (SEQUENTIAL_OFFLOAD, False)


def test_sd35_medium_fits_a_24gb_card_whole_and_the_cpu_is_never_offloaded():
    assert choose_placement(FREE_24GB, SD35_MEDIUM, "float16", "cuda", "float16").where == GPU
    assert choose_placement(FREE_12GB, SD35_MEDIUM, "float16", "cuda", "float16").where == MODEL_OFFLOAD
    assert choose_placement(0, FLUX_DEV, "bfloat16", "cpu").where == memory.DEVICE


def test_sd35_runs_in_bf16_on_a_cpu_with_native_bf16_when_fp32_would_crowd_the_ram():
    params = sum(SD35_MEDIUM.values())  # 8.1 B: 32 GB in fp32
    for flags in (("avx512f", "avx512_bf16"), ("amx_bf16", "amx_tile")):
        dtype, why = choose_cpu_dtype(flags, params, 32 * GB, "float32")
        assert dtype == "bfloat16" and "natively" in why
    assert choose_cpu_dtype(("avx512f", "avx2"), params, 32 * GB, "float32")[0] == "float32"  # emulated bf16: no
    assert choose_cpu_dtype(("avx512_bf16",), params, 128 * GB, "float32")[0] == "float32"  # fits: fp32 is faster
    assert choose_cpu_dtype((), 10**6, 32 * GB, "bfloat16")[0] == "bfloat16"  # AMX: the device chooser's bf16


def test_parameter_counts_and_stored_dtype_come_from_safetensors_headers(tmp_path):
    from safetensors.torch import save_file

    save_file(
        {
            "a": torch.zeros(4, 8, dtype=torch.float8_e4m3fn),
            "b": torch.zeros(3, dtype=torch.bfloat16),
            "x.c": torch.zeros(2, 2),
        },
        str(tmp_path / "m.safetensors"),
    )
    assert memory.stored([tmp_path / "m.safetensors"]) == (39, FP8)
    assert memory.stored([tmp_path / "m.safetensors"], "x.") == (4, "float32")
    folder = factory.checkpoint_folder("flux")
    from server.families.loading import transformer_files

    count, dtype = memory.stored(sorted((folder / "transformer").glob("*.safetensors")))
    assert dtype == "float32" and count == sum(p.numel() for p in factory.build_flux().transformer.parameters())
    assert transformer_files.__doc__


def test_fp8_storage_through_layerwise_casting_stays_close_to_full_precision():
    """What ``apply`` does to the transformer of a placement with ``fp8``, on the CPU on a tiny Flux: its weights are
    stored in float8_e4m3fn, the image stays close to the full-precision one."""
    from diffusers import FluxPipeline

    def run(fp8: bool) -> np.ndarray:
        pipe = FluxPipeline.from_pretrained(
            factory.checkpoint_folder("flux"), local_files_only=True, dtype=torch.float32
        )
        memory.apply(pipe, memory.Placement(memory.DEVICE, fp8, ""), torch.device("cpu"), torch.float32)
        if fp8:
            assert pipe.transformer.x_embedder.weight.dtype == torch.float8_e4m3fn
        out = pipe(
            "a lighthouse",
            num_inference_steps=2,
            height=64,
            width=64,
            output_type="np",
            generator=torch.Generator().manual_seed(1),
        )
        return out.images[0]

    full, stored = run(False), run(True)
    assert np.abs(full - stored).mean() < 0.05 and not np.array_equal(full, stored)


def test_gguf_transformers_stay_quantized_on_the_gpu():
    """A Q4_K Flux.1 dev GGUF (6.7 GB of transformer) runs on a 12 GB card with model offload; Q8_0 on a 24 GB card
    with model offload; no fp8 casting of a GGUF file."""
    p = choose_placement(FREE_12GB, FLUX_DEV, "gguf-Q4_K", "cuda")
    assert (p.where, p.fp8) == (MODEL_OFFLOAD, False) and "gguf-Q4_K" in p.reason
    assert choose_placement(FREE_24GB, FLUX_DEV, "gguf-Q8_0", "cuda").where == MODEL_OFFLOAD
    assert choose_placement(int(5 * GIB), FLUX_DEV, "gguf-Q4_K", "cuda").where == SEQUENTIAL_OFFLOAD
    assert choose_placement(FREE_80GB, FLUX_DEV, "gguf-Q8_0", "cuda").where == GPU
    assert memory.stored([factory.gguf_transformer("flux")])[1] == "gguf-Q8_0"
