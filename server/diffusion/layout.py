"""The memory layout of a loaded checkpoint's UNet and VAE: channels_last where it was measured faster, torch's default
(NCHW) elsewhere.

On a CPU in bfloat16 (the dtype the calibration picks where bf16 measured faster than fp32) oneDNN's convolutions
take channels_last (NHWC) activations as they are; NCHW ones are reordered to its blocked layout and back around
every convolution. Measured side by side in one process (AMD EPYC, 2 cores, AVX512-BF16 without AMX, other load on
the machine; CPU seconds, best of 2), real-size SD1.5: one UNet step (batch 2, 64² latents) 12.22 s NCHW, 11.36 s
channels_last; a VAE decode of 64² latents 16.57 -> 14.00 s, an encode of 512² pixels 7.80 -> 6.77 s; the same output
within bf16 noise. fp32 and GPUs keep the default: not measured faster there. The parts a job adds get the same
layout: a job-chosen VAE, the SDXL refiner's UNet and VAE, and the ControlNets, whose residuals are added to the
UNet's channels_last activations (an add of an NCHW and a channels_last tensor of 2 x 320 x 64 x 64 in bf16: 11.2 vs
1.7 CPU-ms for two channels_last ones). A real-size SD1.5 ControlNet's own forward (batch 2, 64² latents) is as fast
either way: 4.58 CPU-s NCHW, 4.57 channels_last (best of 2, side by side, load ~15).
"""

from __future__ import annotations


def channels_last_wanted(device, dtype) -> bool:
    """True where channels_last is the faster layout: a CPU computing in bfloat16."""
    import torch

    return torch.device(device).type == "cpu" and dtype == torch.bfloat16


def convert(module, device, dtype):
    """``module`` (a UNet, VAE or ControlNet) with its weights in the layout that is faster for ``device`` and
    ``dtype``; the same module."""
    import torch

    if module is not None and channels_last_wanted(device, dtype):
        module.to(memory_format=torch.channels_last)
    return module


def apply(pipe, device, dtype) -> bool:
    """Put the pipeline's UNet and VAE weights in the layout that is faster for ``device`` and ``dtype``; True when
    they changed to channels_last."""
    if not channels_last_wanted(device, dtype):
        return False
    for name in ("unet", "vae"):
        convert(getattr(pipe, name, None), device, dtype)
    return True
