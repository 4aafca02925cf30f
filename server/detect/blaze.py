"""MediaPipe's single-shot detectors run by OpenCV's dnn module: the palm detector (hands) and BlazeFace (faces).

Both are Apache-2.0 networks by Google. OpenCV reads them as MediaPipe ships them (``.tflite``, through
``cv2.dnn.readNetFromTFLite``) or as converted to ONNX (the OpenCV model zoo's ``palm_detection_mediapipe_2023feb.onnx``,
which ``paintbridge models pull detailer`` fetches). Each takes a square RGB image (192 px for the palm detector,
128 px for BlazeFace) and answers, for every anchor of a fixed SSD grid, a score logit and a box with keypoints
relative to the anchor; this module lays out those anchors, decodes the boxes, keeps the best of overlapping ones,
and maps them back to the image. A palm box is grown into the whole hand around it (towards the fingers, along
the wrist to middle-finger keypoints), as MediaPipe does before it looks for a hand's landmarks.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import List, Tuple

import numpy as np

from protocol.errors import UNSUPPORTED, ProtocolError

from .found import Detection, checked_weights_size

NMS_OVERLAP = 0.3
HAND_SCALE = 2.2  # the hand's square side as a multiple of the palm box's longer side
HAND_SHIFT = 0.5  # and its centre moved this many palm sizes towards the fingers


@dataclasses.dataclass(frozen=True)
class BlazeSpec:
    """One MediaPipe SSD detector: what it finds, its input side, the strides of its anchor layers (two anchors per
    cell and layer), its keypoint count and the range its input pixels are scaled to."""

    target: str
    size: int
    strides: Tuple[int, ...]
    keypoints: int
    value_range: Tuple[float, float]

    def anchors(self) -> np.ndarray:
        """The anchor centres (N x 2, fractions of the input side) in the network's output order."""
        out = []
        for stride in sorted(set(self.strides)):
            per_cell = 2 * self.strides.count(stride)  # layers of one stride share a grid
            cells = -(-self.size // stride)
            ys, xs = np.mgrid[0:cells, 0:cells]
            centres = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], 1)
            out.append(np.repeat(centres, per_cell, axis=0))
        return np.concatenate(out).astype(np.float32)


PALM = BlazeSpec("hand", 192, (8, 16, 16, 16), 7, (0.0, 1.0))
FACE = BlazeSpec("face", 128, (8, 16, 16, 16), 6, (-1.0, 1.0))  # BlazeFace short range


class BlazeDetector:
    """A MediaPipe SSD detector through ``cv2.dnn``; one instance per weights file, safe to share between threads."""

    def __init__(self, path: Path, spec: BlazeSpec) -> None:
        import cv2

        self.path, self.spec = Path(path), spec
        self._anchors = spec.anchors()
        checked_weights_size(self.path, f"a MediaPipe {spec.target} detector is at most a few MB")
        try:
            read = cv2.dnn.readNetFromTFLite if self.path.suffix.lower() == ".tflite" else cv2.dnn.readNetFromONNX
            self._net = read(str(self.path))
            self._channels_last = self._probe()
        except cv2.error as err:
            raise ProtocolError(
                UNSUPPORTED,
                f"{self.path.name} is not a MediaPipe {spec.target} detector OpenCV can "
                f"run: {str(err).strip().splitlines()[-1]}",
            ) from err
        self._lock = threading.Lock()

    def _forward(self, blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        self._net.setInput(blob)
        outs = self._net.forward(self._net.getUnconnectedOutLayersNames())
        if len(outs) != 2:
            raise ProtocolError(
                UNSUPPORTED,
                f"{self.path.name} answers {len(outs)} outputs; a MediaPipe "
                f"{self.spec.target} detector answers 2 (boxes and scores)",
            )
        boxes, scores = sorted(outs, key=lambda o: -o.shape[-1])  # regressors (N x 4+2K), then scores (N x 1)
        return boxes.reshape(-1, boxes.shape[-1]), scores.reshape(-1)

    def _probe(self) -> bool:
        """Whether the network wants its input channels last (ONNX converted from TensorFlow) rather than first (as
        OpenCV's TFLite reader lays it out); checks the outputs match the anchors and keypoints."""
        import cv2

        side = self.spec.size
        for channels_last in (False, True):
            shape = (1, side, side, 3) if channels_last else (1, 3, side, side)
            try:
                boxes, scores = self._forward(np.zeros(shape, np.float32))
            except cv2.error:
                continue
            want = (len(self._anchors), 4 + 2 * self.spec.keypoints)
            if boxes.shape != want or scores.shape != (want[0],):
                raise ProtocolError(
                    UNSUPPORTED,
                    f"{self.path.name} answers {boxes.shape[0]} boxes of "
                    f"{boxes.shape[1]} values; a MediaPipe {self.spec.target} detector answers "
                    f"{want[0]} of {want[1]}",
                )
            return channels_last
        raise ProtocolError(UNSUPPORTED, f"{self.path.name} takes no {side} x {side} RGB image")

    def detect(self, rgb: np.ndarray, confidence: float = 0.5, limit: int = 32) -> List[Detection]:
        """Objects in an H x W x 3 uint8 RGB image scored at least ``confidence``, best first, at most ``limit``."""
        import cv2

        h, w = rgb.shape[:2]
        side = max(h, w)
        square = np.zeros((side, side, 3), np.uint8)  # letterboxed as MediaPipe does: the image centred, black round
        left, top = (side - w) // 2, (side - h) // 2
        square[top : top + h, left : left + w] = rgb
        size = self.spec.size
        small = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
        lo, hi = self.spec.value_range
        blob = small.astype(np.float32) * ((hi - lo) / 255.0) + lo
        blob = blob[None] if self._channels_last else blob.transpose(2, 0, 1)[None]
        with self._lock:
            raw, logits = self._forward(np.ascontiguousarray(blob))
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
        keep = np.flatnonzero(scores >= confidence)
        if not len(keep):
            return []
        raw, anchors = raw[keep] / size, self._anchors[keep]
        centres, sizes = raw[:, :2] + anchors, raw[:, 2:4]
        points = raw[:, 4:].reshape(len(keep), -1, 2) + anchors[:, None]
        if self.spec.target == "hand":
            centres, sizes = hand_boxes(centres, sizes, points)
        corners = np.concatenate([centres - sizes / 2, sizes], 1) * side - [left, top, 0, 0]
        chosen = cv2.dnn.NMSBoxes(corners.tolist(), scores[keep].tolist(), confidence, NMS_OVERLAP, top_k=limit)
        out = []
        for i in np.asarray(chosen, np.int64).reshape(-1):
            x, y, bw, bh = corners[i]
            x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
            x1, y1 = min(w, int(np.ceil(x + bw))), min(h, int(np.ceil(y + bh)))
            if x1 > x0 and y1 > y0:
                out.append(Detection(self.spec.target, x0, y0, x1 - x0, y1 - y0, round(float(scores[keep][i]), 4)))
        out.sort(key=lambda d: -d.score)
        return out[:limit]


def hand_boxes(centres: np.ndarray, sizes: np.ndarray, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Palm boxes (centres, sizes; N x 2 each) grown into squares over the whole hand: moved towards the fingers
    along the palm's wrist (keypoint 0) to middle-finger (keypoint 2) direction and scaled by ``HAND_SCALE``."""
    side = sizes.max(axis=1, keepdims=True)
    towards = points[:, 2] - points[:, 0]
    length = np.linalg.norm(towards, axis=1, keepdims=True)
    unit = np.where(length > 1e-6, towards / np.maximum(length, 1e-6), [[0.0, -1.0]])
    return centres + unit * side * HAND_SHIFT, np.repeat(side * HAND_SCALE, 2, axis=1)
