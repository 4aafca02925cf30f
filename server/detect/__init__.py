"""Find faces in an image for the detailer, offline, with OpenCV's YuNet face detector (``cv2.FaceDetectorYN``).

YuNet (MIT licence, Shiqi Yu; distributed in the OpenCV model zoo) is a 0.23 MB ONNX network that OpenCV runs itself:
no new dependency. Its weights come through ``paintbridge models pull detailer`` into the models folder's
``detectors/``. OpenCV 5's Python wheels no longer carry the Haar cascade classifier, and no hand detector runs
offline with Paintbridge's dependencies: asking for hands is refused with a message that says so.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from ..models.headers import HeaderError, regular_size

DETECTORS_DIR = "detectors"
FACE_PATTERN = "*yunet*.onnx"
PULL_NAME = "detailer"  # the catalogue preset with the face detector's weights
MAX_SIDE = 2048  # larger images are searched scaled down (YuNet finds faces of about 10-300 px)
MAX_DETECTIONS = 32
# YuNet files are ~0.2 MB; OpenCV holds about 4x a network's file size while it parses it, so larger files are refused
MAX_DETECTOR_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class Detection:
    """One found object: its box in the image's pixels and its score (0-1)."""

    target: str
    x: int
    y: int
    width: int
    height: int
    score: float


def find_weights(dirs: Iterable[Path]) -> Optional[Path]:
    """The first YuNet ONNX file under a models folder's ``detectors/`` (newest name last-sorted wins), or None."""
    for root in dirs:
        found = sorted(Path(root, DETECTORS_DIR).rglob(FACE_PATTERN)) if Path(root, DETECTORS_DIR).is_dir() else []
        if found:
            return found[-1]
    return None


class FaceDetector:
    """YuNet through ``cv2.FaceDetectorYN``; one instance per weights file, safe to share between threads."""

    def __init__(self, path: Path) -> None:
        import cv2

        self.path = Path(path)
        try:
            size = regular_size(self.path)
        except HeaderError as err:
            raise ProtocolError(UNSUPPORTED, str(err), field="params.detail") from None
        if size > MAX_DETECTOR_BYTES:
            raise ProtocolError(UNSUPPORTED, f"{self.path.name} is {size / 1e6:.1f} MB; a YuNet face detector is about "
                                f"0.2 MB (at most {MAX_DETECTOR_BYTES >> 20} MB are read): not a YuNet file",
                                field="params.detail")
        try:
            self._net = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), 0.1, 0.3, 5000)
        except cv2.error as err:
            raise ProtocolError(UNSUPPORTED, f"{self.path.name} is not a YuNet face detector OpenCV can read: "
                                f"{str(err).strip().splitlines()[-1]}") from err
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
        for row in (faces if faces is not None else ()):
            x, y, fw, fh = (float(v) / scale for v in row[:4])
            x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
            x1, y1 = min(w, int(np.ceil(x + fw))), min(h, int(np.ceil(y + fh)))
            if x1 > x0 and y1 > y0 and float(row[-1]) >= confidence:
                out.append(Detection("face", x0, y0, x1 - x0, y1 - y0, round(float(row[-1]), 4)))
        out.sort(key=lambda d: -d.score)
        return out[:MAX_DETECTIONS]


class Detectors:
    """The detectors of the models folders, loaded on first use."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = list(dirs)
        self._face: Optional[FaceDetector] = None
        self._lock = threading.Lock()

    def face(self) -> FaceDetector:
        """The face detector; model_not_found naming the pull and the folder when its weights are missing."""
        path = find_weights(self.dirs)
        if path is None:
            folders = " or ".join(str(Path(d, DETECTORS_DIR)) for d in self.dirs) or "the models folder's detectors/"
            raise ProtocolError(MODEL_NOT_FOUND, "the detailer needs the YuNet face detector: run 'paintbridge models "
                                f"pull {PULL_NAME}' (or download it from the plugin), or put "
                                f"face_detection_yunet_2023mar.onnx into {folders}", field="params.detail")
        with self._lock:
            if self._face is None or self._face.path != path:
                self._face = FaceDetector(path)
            return self._face

    def detect(self, rgb: np.ndarray, targets: Sequence[str], confidence: float) -> List[Detection]:
        """Every target's detections in ``rgb``; hands are refused (no offline hand detector is available)."""
        if "hand" in targets:
            raise ProtocolError(UNSUPPORTED, "the detailer finds faces only: no hand detector runs offline with "
                                "Paintbridge's dependencies (OpenCV ships none); set detail targets to ['face']",
                                field="params.detail.targets")
        return self.face().detect(rgb, confidence) if "face" in targets else []
