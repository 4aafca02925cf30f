"""Find faces and hands in an image for the detailer, offline, with detectors OpenCV runs itself (no new dependency).

Faces: YuNet (``cv2.FaceDetectorYN``; MIT licence, Shiqi Yu, OpenCV model zoo), or else MediaPipe's BlazeFace (short
range, ``face_detection_short_range.tflite``; Apache-2.0, Google). Hands: MediaPipe's palm detector (Apache-2.0,
Google; the OpenCV model zoo's ONNX conversion ``palm_detection_mediapipe_2023feb.onnx`` or MediaPipe's own
``palm_detection_*.tflite``), each palm grown into the hand around it (``blaze``). ``paintbridge models pull detailer``
puts YuNet and the palm detector into the models folder's ``detectors/``; a target whose detector is missing is refused
with a message naming the pull, and ``installed_targets`` tells the editors which targets they may offer.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from .found import Detection, checked_weights_size

DETECTORS_DIR = "detectors"
FACE_PATTERN = "*yunet*.onnx"
PULL_NAME = "detailer"  # the catalogue preset with the detectors' weights
MAX_SIDE = 2048  # larger images are searched scaled down (YuNet finds faces of about 10-300 px)
MAX_DETECTIONS = 32
# per target, the weights files looked for in detectors/, best kind first, and the file the pull brings
PATTERNS: Dict[str, Tuple[str, ...]] = {
    "face": (FACE_PATTERN, "*face_detection_short_range*.tflite"),
    "hand": ("*palm_detection*.onnx", "*palm_detection*.tflite"),
}
PULLED = {"face": "face_detection_yunet_2023mar.onnx", "hand": "palm_detection_mediapipe_2023feb.onnx"}
__all__ = ["Detection", "Detectors", "FaceDetector", "find_weights", "installed_targets", "listing"]


def find_weights(dirs: Iterable[Path], target: str = "face") -> Optional[Path]:
    """The first weights file for ``target`` under a models folder's ``detectors/`` (the first pattern of
    ``PATTERNS`` that matches anything; of its files the last-sorted name wins), or None."""
    dirs = [Path(root, DETECTORS_DIR) for root in dirs]
    for pattern in PATTERNS[target]:
        for folder in dirs:
            found = sorted(folder.rglob(pattern)) if folder.is_dir() else []
            if found:
                return found[-1]
    return None


def installed_targets(dirs: Iterable[Path]) -> List[str]:
    """The detailer targets whose detector weights are in the models folders (what the editors may offer)."""
    dirs = list(dirs)
    return [t for t in PATTERNS if find_weights(dirs, t) is not None]


def listing(dirs: Iterable[Path]) -> List[dict]:
    """The detector each installed target uses, as model listing entries (kind ``detector``, its ``targets``): what
    the editors read to offer a target."""
    dirs = list(dirs)
    out = []
    for target in PATTERNS:
        path = find_weights(dirs, target)
        if path is not None:
            arch = "yunet" if path.match(FACE_PATTERN) else "mediapipe"
            out.append(
                {
                    "name": path.stem,
                    "kind": "detector",
                    "arch": arch,
                    "inpaint": False,
                    "format": path.suffix.lstrip(".").lower(),
                    "path": str(path),
                    "targets": [target],
                }
            )
    return out


class FaceDetector:
    """YuNet through ``cv2.FaceDetectorYN``; one instance per weights file, safe to share between threads."""

    def __init__(self, path: Path) -> None:
        import cv2

        self.path = Path(path)
        checked_weights_size(self.path, "a YuNet face detector is about 0.2 MB: not a YuNet file")
        try:
            self._net = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), 0.1, 0.3, 5000)
        except cv2.error as err:
            raise ProtocolError(
                UNSUPPORTED,
                f"{self.path.name} is not a YuNet face detector OpenCV can read: {str(err).strip().splitlines()[-1]}",
            ) from err
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray, confidence: float = 0.5) -> List[Detection]:
        """Faces in an H x W x 3 uint8 RGB image scored at least ``confidence``, best first."""
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, MAX_SIDE / max(h, w))
        bgr = np.ascontiguousarray(rgb[..., 2::-1])
        if scale < 1.0:
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            self._net.setScoreThreshold(float(confidence))
            _, faces = self._net.detect(bgr)
        out = []
        for row in faces if faces is not None else ():
            x, y, fw, fh = (float(v) / scale for v in row[:4])
            x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
            x1, y1 = min(w, int(np.ceil(x + fw))), min(h, int(np.ceil(y + fh)))
            if x1 > x0 and y1 > y0 and float(row[-1]) >= confidence:
                out.append(Detection("face", x0, y0, x1 - x0, y1 - y0, round(float(row[-1]), 4)))
        out.sort(key=lambda d: -d.score)
        return out[:MAX_DETECTIONS]


class Detectors:
    """The detectors of the models folders, loaded on first use and again when their weights file changes."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = list(dirs)
        self._loaded: Dict[str, object] = {}
        self._lock = threading.Lock()

    def detector(self, target: str):
        """The detector of ``target`` (``face`` or ``hand``); model_not_found naming the pull and the folder when its
        weights are missing."""
        path = find_weights(self.dirs, target)
        if path is None:
            folders = " or ".join(str(Path(d, DETECTORS_DIR)) for d in self.dirs) or "the models folder's detectors/"
            what = "YuNet face detector" if target == "face" else "MediaPipe palm (hand) detector"
            raise ProtocolError(
                MODEL_NOT_FOUND,
                f"the detailer needs the {what} to find {target}s: run 'paintbridge "
                f"models pull {PULL_NAME}' (or download it from the plugin), or put "
                f"{PULLED[target]} into {folders}",
                field="params.detail.targets",
            )
        with self._lock:
            current = self._loaded.get(target)
            if current is None or current.path != path:
                current = self._loaded[target] = _load(target, path)
            return current

    def face(self):
        """The face detector (see ``detector``)."""
        return self.detector("face")

    def detect(self, rgb: np.ndarray, targets: Sequence[str], confidence: float) -> List[Detection]:
        """Every target's detections in ``rgb``, each target's best first; every target's detector is checked before
        any runs."""
        unknown = [t for t in targets if t not in PATTERNS]
        if unknown:
            raise ProtocolError(
                UNSUPPORTED,
                f"the detailer finds {' and '.join(PATTERNS)}, not {unknown[0]!r}",
                field="params.detail.targets",
            )
        detectors = [self.detector(t) for t in dict.fromkeys(targets)]
        return [found for d in detectors for found in d.detect(rgb, confidence)]


def _load(target: str, path: Path):
    """The detector for a weights file of ``target``: YuNet for ``*yunet*.onnx``, else a MediaPipe SSD detector."""
    if target == "face" and path.match(FACE_PATTERN):
        return FaceDetector(path)
    from .blaze import FACE, PALM, BlazeDetector

    return BlazeDetector(path, FACE if target == "face" else PALM)
