"""What regions cost on Flux.1: one real-size double-stream attention layer (3072 wide, 24 heads of 128, random
weights cost the same time as trained ones) through diffusers' Flux processor, with the job's 512 T5 tokens alone and
with 2 and 4 regions (512 more text tokens each, the regions' mask on torch's SDPA), plus the same longer sequences
without a mask (what the extra tokens cost apart from the mask). Prints each time and its ratio to the job without
regions, measured side by side in one run, and the size of the mask.

    .venv/bin/python benchmarks/regions_attention.py [--px 512] [--repeat 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.core import Region
from server.families import regions

TEXT = 512  # T5 tokens per prompt, as the Flux pipelines encode one


def layer(device, dtype):
    from diffusers.models.transformers.transformer_flux import FluxAttention, FluxAttnProcessor

    attn = FluxAttention(
        query_dim=3072, heads=24, dim_head=128, added_kv_proj_dim=3072, bias=True, processor=FluxAttnProcessor()
    )
    return attn.to(device=device, dtype=dtype).eval()


def rotary(tokens_h: int, tokens_w: int, text: int, device):
    """Flux's rotary factors: text ids (0, 0, 0), image ids (0, row, column)."""
    import torch
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    image = torch.zeros(tokens_h, tokens_w, 3)
    image[..., 1] = torch.arange(tokens_h)[:, None]
    image[..., 2] = torch.arange(tokens_w)[None, :]
    ids = torch.cat([torch.zeros(text, 3), image.reshape(-1, 3)]).to(device)
    return FluxPosEmbed(theta=10000, axes_dim=[16, 56, 56])(ids)


def stripes(count: int, px: int):
    """``count`` regions side by side, each a vertical stripe of the picture."""
    edges = np.linspace(0, px, count + 1).astype(int)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        mask = np.zeros((px, px), np.uint8)
        mask[:, a:b] = 255
        out.append(Region("a prompt", mask))
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--px", type=int, default=512, help="picture side (multiple of 16)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    side = args.px // regions.TOKEN_PX
    image = side * side
    attn = layer(device, dtype)
    gen = torch.Generator("cpu").manual_seed(0)
    hidden = torch.randn(1, image, 3072, generator=gen).to(device, dtype)
    print(f"{device} {dtype}: {args.px} px = {image} image tokens; one Flux.1 double-stream attention layer")
    base = None
    for count, masked in ((0, False), (2, False), (2, True), (4, False), (4, True)):
        text = TEXT * (1 + count)
        encoder = torch.randn(1, text, 3072, generator=gen).to(device, dtype)
        rope = rotary(side, side, text, device)
        processor = attn.processor
        if masked:
            plan = regions.plan(stripes(count, args.px), [TEXT] * (1 + count), args.px, args.px)
            processor = regions.MaskedAttention(attn.processor, plan)
        with torch.inference_mode():
            processor(attn, hidden, encoder, image_rotary_emb=rope)  # warm-up (and the mask, made once per job)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.repeat):
                processor(attn, hidden, encoder, image_rotary_emb=rope)
            if device.type == "cuda":
                torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.repeat
        base = base or seconds
        what = f"{count} regions, {'masked' if masked else 'no mask'}" if count else "no regions"
        mask = f"; mask {(text + image) ** 2 * torch.finfo(dtype).bits // 8 / 2**20:.0f} MiB" if masked else ""
        print(f"  {what:22s} {text + image:6d} tokens  {seconds * 1000:9.1f} ms  x{seconds / base:.2f}{mask}")


if __name__ == "__main__":
    main()
