"""The detailer's face detector, YuNet (``cv2.FaceDetectorYN``), beside OpenCV's Haar cascade where the installed
OpenCV still has one (the 4.x wheels; the 5.x wheels dropped ``cv2.CascadeClassifier``) and MediaPipe's detectors
(BlazeFace, the palm detector; ``server.detect.blaze``) where their files are given: faces (and hands) found and
milliseconds per image on the shipped public-domain photo and variants of it (side by side, half size, rotated 20
degrees, dark).

    .venv/bin/python benchmarks/detectors.py [--weights PATH] [--models DIR] [--reps 20] [--mediapipe FILE ...]

``--mediapipe`` takes ``face_detection_short_range.tflite`` and ``palm_detection_*.tflite`` / ``.onnx`` files (the
tests keep MediaPipe 0.10.21's in the tests' cache folder, ``mediapipe-0.10.21/``).

The weights are YuNet's real ones (``paintbridge models pull detailer`` puts them in the models folder's
``detectors/``; none ship with the repository); ``--weights`` names a file instead.
    PYTHONPATH=/path/to/opencv4 .venv/bin/python benchmarks/detectors.py   # to include Haar

Figures only; nothing here is a test. Both detectors run on this process's CPU threads, one after the other.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"


def images() -> dict:
    import cv2

    base = cv2.imread(str(DATA / "astronaut.png"))
    turn = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
    return {
        "astronaut 512": base,
        "two side by side": np.concatenate([base, base], 1),
        "half size": cv2.resize(base, (256, 256), interpolation=cv2.INTER_AREA),
        "rotated 20°": cv2.warpAffine(base, turn, (512, 512), borderMode=cv2.BORDER_REFLECT),
        "dark (35 %)": (base * 0.35).astype(np.uint8),
    }


def timed(fn, reps: int) -> tuple:
    found = fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return found, (time.perf_counter() - start) / reps * 1000


def main() -> None:
    import cv2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a YuNet ONNX file (default: the one in the models folder's detectors/)")
    parser.add_argument("--models", help="the models folder (default: the server's)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--mediapipe", nargs="*", default=[], help="MediaPipe face or palm detector files")
    args = parser.parse_args()
    if not args.weights:
        from server.config import default_models_dir
        from server.detect import find_weights

        found = find_weights([Path(args.models).expanduser() if args.models else default_models_dir()])
        if found is None and not args.mediapipe:
            raise SystemExit(
                "no YuNet weights in the models folder's detectors/: run `paintbridge models pull "
                "detailer` or pass --weights FILE (or --mediapipe FILE ...)"
            )
        args.weights = str(found) if found is not None and found.match("*yunet*") else ""
    from server.detect.blaze import FACE, PALM, BlazeDetector

    blaze = [BlazeDetector(Path(f), PALM if "palm" in Path(f).name else FACE) for f in args.mediapipe]
    haar = getattr(cv2, "CascadeClassifier", None)
    print(f"OpenCV {cv2.__version__}; Haar cascade {'available' if haar else 'not in this OpenCV'}")
    for name, img in images().items():
        h, w = img.shape[:2]
        line = f"{name:18s}"
        if args.weights:
            net = cv2.FaceDetectorYN.create(args.weights, "", (w, h), 0.5, 0.3, 5000)
            faces, ms = timed(lambda: net.detect(img)[1], args.reps)
            boxes = [] if faces is None else [[int(v) for v in f[:4]] + [round(float(f[-1]), 2)] for f in faces]
            line += f" YuNet {ms:7.1f} ms {boxes}"
        if haar:
            cascade = haar(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            found, hms = timed(lambda: cascade.detectMultiScale(gray, 1.1, 5, minSize=(20, 20)), args.reps)
            line += f" | Haar {hms:7.1f} ms {[list(map(int, b)) for b in found]}"
        rgb = np.ascontiguousarray(img[..., ::-1])
        for det in blaze:
            found, bms = timed(lambda d=det: d.detect(rgb, 0.5), args.reps)
            line += (
                f" | {det.path.stem} {bms:6.1f} ms {[[d.x, d.y, d.width, d.height, round(d.score, 2)] for d in found]}"
            )
        print(line)


if __name__ == "__main__":
    main()
