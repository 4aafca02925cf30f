"""Results history storage: how large a result is once kept in a document (``client.history``: PNG's "Up" filter on
big integers + zlib, standard library only), beside the raw pixels, plain zlib and a PNG file written by Pillow, and how
long keeping and reading it back take in plain Python (what the editors' UI threads pay).

    .venv/bin/python benchmarks/history_storage.py [IMAGE ...]

Without arguments it uses a smooth synthetic 512 x 512 "render" (gradients, soft shapes, mild noise). The last line is
``history/png size ratio: X.XX`` (smaller is better; 1.00 = as small as PNG).
"""

from __future__ import annotations

import io
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from client import history  # noqa: E402


def synthetic(size: int = 512) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rng = np.random.default_rng(0)
    r = 0.5 + 0.4 * np.sin(6 * x + 2 * y)
    g = 0.5 + 0.4 * np.cos(5 * y - 3 * x * y)
    b = np.clip(1.2 - np.hypot(x - 0.6, y - 0.4) * 2, 0, 1)
    rgb = np.stack([r, g, b], -1) + rng.normal(0, 0.015, (size, size, 3))
    rgba = np.concatenate([np.clip(rgb, 0, 1) * 255, np.full((size, size, 1), 255.0)], -1)
    return rgba.astype(np.uint8)


def best(fn, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(paths) -> None:
    images = [(p, np.asarray(Image.open(p).convert("RGBA"))) for p in paths] or [("synthetic 512x512", synthetic())]
    ratios = []
    for name, rgba in images:
        h, w = rgba.shape[:2]
        raw = rgba.tobytes()
        png = io.BytesIO()
        Image.fromarray(rgba).save(png, "PNG")
        ours = history.encode_pixels(raw, w, 4)
        assert history.decode_pixels(ours, w, 4, len(raw)) == raw
        t_keep = best(lambda: history.encode_pixels(raw, w, 4))
        t_read = best(lambda: history.decode_pixels(ours, w, 4, len(raw)))
        plain = len(zlib.compress(raw, history.LEVEL))
        print(
            f"{name} ({w}x{h}): raw {len(raw)} B, zlib {plain} B, PNG (Pillow) {len(png.getvalue())} B, "
            f"history {len(ours)} B; keep {t_keep * 1000:.0f} ms, read back {t_read * 1000:.0f} ms"
        )
        ratios.append(len(ours) / len(png.getvalue()))
    print(f"history/png size ratio: {sum(ratios) / len(ratios):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
