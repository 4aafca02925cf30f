"""How long a caption takes on this machine with real-size BLIP captioners (random weights cost the same time as
trained ones): BLIP base (ViT-B/16) and BLIP large (ViT-L/16), both at 384 px with the engine's settings (3 beams),
the length fixed at 20 new tokens (a caption is about 10-20). Prints each time and the large/base ratio, measured side
by side in one run.

    .venv/bin/python benchmarks/caption_speed.py [--tokens 20] [--threads 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.caption import NUM_BEAMS

SIZES = {
    "base": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
}


def model(size: str):
    from transformers import BlipConfig, BlipForConditionalGeneration

    vision = dict(SIZES[size], image_size=384, patch_size=16)
    text = dict(
        vocab_size=30524,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        bos_token_id=30522,
        sep_token_id=102,
        pad_token_id=0,
    )
    return BlipForConditionalGeneration(BlipConfig(vision_config=vision, text_config=text)).eval()


def seconds(net, tokens: int) -> float:
    import torch

    pixels = torch.rand(1, 3, 384, 384)
    with torch.inference_mode():
        net.generate(pixel_values=pixels, max_new_tokens=2, num_beams=NUM_BEAMS)  # warm-up
        start = time.perf_counter()
        net.generate(pixel_values=pixels, min_new_tokens=tokens, max_new_tokens=tokens, num_beams=NUM_BEAMS)
    return time.perf_counter() - start


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    times = {}
    for size in ("base", "large"):
        net = model(size)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        times[size] = seconds(net, args.tokens)
        print(
            f"BLIP {size:5s} ({params:.0f} M parameters): {times[size]:.2f} s for {args.tokens} tokens, "
            f"{NUM_BEAMS} beams, 384 px, {torch.get_num_threads()} threads"
        )
        del net
    print(f"large / base: {times['large'] / times['base']:.2f}")


if __name__ == "__main__":
    main()
