"""Fill quality and time: the built-in fills (and OpenCV-contrib's ``xphoto`` fills where installed) on a real photo.

    .venv/bin/python benchmarks/fills.py [--reps 3] [--large]

The photo is scikit-image's public-domain astronaut (``tests/data/astronaut.png``) enlarged to 960 x 540; the hole is
an ellipse 15 % of the width (144 x 96 px) at three places: over the suit's fabric, over the background machinery, and
over the neck and background. For each fill: the best wall time and the CPU time of ``--reps`` runs (the CPU time is
the steadier figure on a shared machine), and the fine-detail ratio (grey level minus its Gaussian blur, deep inside
the hole over a ring around it; about 1 = the surroundings' texture carried in, near 0 = a blur). ``imageops.fill``
works on the hole's box plus a margin; the ``xphoto`` fills (``cv2.xphoto.inpaint`` FSR_FAST and SHIFTMAP; only in the
opencv-contrib wheels, which replace opencv-python-headless) get the whole picture, as their API takes it.
``--large`` adds the classical engine's worst input (``tests.test_engines.worst_classical_job``: noise at the largest
size, a tiny selection grown by the largest radius); the printed size is the job's own.

Figures only; nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server import imageops  # noqa: E402
from tests.fillcases import detail_ratio, ellipse, photo_960x540  # noqa: E402

PLACES = {"fabric": (200, 420), "machinery": (750, 300), "neck": (480, 120)}


def xphoto_fill(name: str):
    """A fill through ``cv2.xphoto.inpaint`` (the whole picture; its mask is 0 = hole), or None without contrib."""
    xphoto = getattr(cv2, "xphoto", None)
    if xphoto is None:
        return None
    flag = getattr(xphoto, f"INPAINT_{name}")

    def run(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = np.zeros_like(rgb)
        xphoto.inpaint(rgb, np.where(mask > 0, 0, 255).astype(np.uint8), out, flag)
        return out

    return run


def timed(fn, reps: int):
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(reps):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return out, best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--large", action="store_true")
    args = parser.parse_args()
    img = photo_960x540()
    fills = {name: (lambda m, n=name: imageops.fill(img, m, n)) for name in ("telea", "ns", "patch")}
    fills["patch + colour match"] = lambda m: imageops.color_match(imageops.fill(img, m, "patch"), img, m)
    for name in ("FSR_FAST", "SHIFTMAP"):
        run = xphoto_fill(name)
        if run is not None:
            fills[f"xphoto {name}"] = lambda m, r=run: r(img, m)
    print(f"960 x 540 photo, ellipse 144 x 96 px; best of {args.reps}")
    print(f"{'fill':<22}" + "".join(f"{p:>28}" for p in PLACES))
    print(f"{'':<22}" + "".join(f"{'wall s  cpu s  detail':>28}" for _ in PLACES))
    for name, fn in fills.items():
        row = f"{name:<22}"
        for centre in PLACES.values():
            mask = ellipse(img.shape[:2], centre, 144)
            reps = 1 if name.startswith("xphoto SHIFTMAP") else args.reps
            out, wall, cpu = timed(lambda: fn(mask), reps)
            row += f"{wall:>14.3f}{cpu:>7.3f}{detail_ratio(out, mask):>7.2f}"
        print(row, flush=True)
    if args.large:
        from server.classical import ClassicalEngine
        from server.core import JobContext
        from tests.test_engines import worst_classical_job

        for fill in ("telea", "patch"):
            job = worst_classical_job(fill=fill)
            _, wall, cpu = timed(lambda: ClassicalEngine().run(job, JobContext()), 1)
            print(
                f"worst classical input ({job.width} x {job.height} noise), {fill}: {wall:.2f} s wall, {cpu:.2f} s cpu"
            )


if __name__ == "__main__":
    main()
