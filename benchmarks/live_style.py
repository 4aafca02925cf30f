"""A live frame on the default style against the same frame at the family's full default steps, side by side in one run.

    .venv/bin/python benchmarks/live_style.py [--size 512] [--reps 1] [--dtype D]

A real-size random SD1.5 checkpoint (tests/factory.py) and a random LoRA of LCM-LoRA's real shape (rank 64 on every
linear and convolution layer of the UNet but conv_in, conv_out and the time embedding: 67.3 M parameters, 134.6 MB in
float16, as ``lcm-lora-sdv1-5.safetensors``), in a models folder; the frame (img2img of a 512² picture, the mode's
default strength) runs through the server's router, so the style is applied as for any job: ``style: sd15-general``
with ``live: true`` (the style's live settings: the installed LCM LoRA at its preset, 4 steps, CFG 1, LCM) and with
``live: false`` (the style's normal settings: 25 steps, DPM++ 2M Karras, CFG 7). After one warm-up live frame (the
checkpoint, the LoRA and the prompt loaded), the two alternate, the full frame first (it switches the LoRA off, the
next live frame on again: counted), then one more live frame right after a live frame (the LoRA stays on, as while
painting); the fastest run of each counts (other load on the machine only adds time).
Goal: live ≤ 0.30× full.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LORA_RANK = 64
LORA_SKIP = ("conv_in", "conv_out", "time_embedding")  # LCM-LoRA leaves these out
STYLE = "sd15-general"


def lcm_shaped_lora(path: Path) -> int:
    """Write a random kohya-format LoRA of LCM-LoRA's shape for the shipped SD1.5 UNet config; its parameter count."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from server.models.loading import CONFIGS_DIR

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(json.loads((CONFIGS_DIR / "sd15" / "unet" / "config.json").read_text()))
    gen = torch.Generator().manual_seed(5)
    state = {}
    for name, module in unet.named_modules():
        if name.startswith(LORA_SKIP) or not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        key = "lora_unet_" + name.replace(".", "_")
        if isinstance(module, torch.nn.Linear):
            down = (LORA_RANK, module.in_features)
            up = (module.out_features, LORA_RANK)
        else:
            down = (LORA_RANK, module.in_channels, *module.kernel_size)
            up = (module.out_channels, LORA_RANK, 1, 1)
        state[key + ".lora_down.weight"] = (torch.randn(down, generator=gen) * 0.01).half()
        state[key + ".lora_up.weight"] = (torch.randn(up, generator=gen) * 0.001).half()
        state[key + ".alpha"] = torch.tensor(float(LORA_RANK)).half()
    save_file(state, str(path), {"ss_output_name": "lcm-lora-sdv1-5"})
    return sum(t.numel() for k, t in state.items() if not k.endswith(".alpha"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: the calibrated one")
    opts = p.parse_args()

    import factory
    import numpy as np
    from inpaint_vs_diffusers import inputs

    from server.config import ServerConfig
    from server.core import Job, JobContext, Params
    from server.router import Router

    with tempfile.TemporaryDirectory(prefix="pb-live-style-") as scratch:
        work = Path(scratch)
        checkpoint = factory.real_sd15_checkpoint()
        (work / "models" / "checkpoints").mkdir(parents=True)
        (work / "models" / "loras").mkdir()
        (work / "models" / "checkpoints" / checkpoint.name).symlink_to(checkpoint)
        params = lcm_shaped_lora(work / "models" / "loras" / "lcm-lora-sdv1-5.safetensors")
        router = Router(ServerConfig(model_dirs=[work / "models"], styles_dir=work / "styles", dtype=opts.dtype))
        img, _ = inputs(opts.size, opts.size // 3)

        def run(live: bool):
            job = Job("f", "img2img", prompt="a red fox", image=img, params=Params(seed=42), style=STYLE, live=live)
            started = time.perf_counter()
            (layer,) = router.run(job, JobContext())
            return time.perf_counter() - started, layer

        print(
            f"{checkpoint.name} + a random LoRA of LCM-LoRA's shape ({params / 1e6:.1f} M parameters), img2img "
            f"{opts.size}², style {STYLE}; {os.cpu_count()} CPUs shared with other work (times are noisy: the fastest "
            f"of {opts.reps} run(s) counts)",
            flush=True,
        )
        layers = {}
        seconds, layers[True] = run(True)  # warm-up: the checkpoint, the LoRA, the prompt (the full frame reuses them)
        print(f"warm-up live: {seconds:.1f} s", flush=True)
        times = {False: [], True: []}
        for rep in range(opts.reps):
            for live in (False, True):
                seconds, layers[live] = run(live)
                times[live].append(seconds)
                info = layers[live].info
                print(
                    f"rep {rep + 1} {'live' if live else 'full'}: {seconds:.1f} s ({info['steps']} steps, "
                    f"strength {info['strength']}, CFG {info['cfg']}, {info['sampler']}, LoRAs {info['loras']})",
                    flush=True,
                )
        steady, _ = run(True)  # the next live frame: the LoRA already on, as while painting
        print(f"live frame after a live frame: {steady:.1f} s", flush=True)
        full, live = min(times[False]), min(times[True])
        style = layers[True].info["style"]["live"]
        same = np.array_equal(layers[True].rgba, layers[False].rgba)
        print(f"\ndevice {router.device_description()}")
        print(f"live frame ({style['fewstep']}, {style['steps']} steps): {live:.2f} s")
        print(f"full default steps ({layers[False].info['steps']} steps): {full:.2f} s")
        print(
            f"ratio live / full: {live / full:.3f} (goal <= 0.30){'; the two frames are identical?!' if same else ''}"
        )
        print(f"ratio live after live / full: {steady / full:.3f} (the LoRA stays on between live frames)")


if __name__ == "__main__":
    main()
