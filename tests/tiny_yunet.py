"""A face detector the tests build: a YuNet-format ONNX network with constructed (not trained) weights, and the
synthetic face it finds.

The detailer loads whatever ``*yunet*.onnx`` sits in ``detectors/`` through OpenCV's ``cv2.FaceDetectorYN``, which
only needs YuNet's interface: an input ``[1, 3, H, W]`` (BGR, 0-255) and, for strides 8, 16 and 32, outputs ``cls_S``
and ``obj_S`` ``[1, cells, 1]``, ``bbox_S`` ``[1, cells, 4]`` and ``kps_S`` ``[1, cells, 10]``; OpenCV decodes the
score as sqrt(cls * obj) and each box as centred at ``(cell + bbox[0:2]) * S`` with size ``exp(bbox[2:4]) * S``. This
network marks a pixel as "skin" when it is close to ``SKIN`` (red and green high, blue low), averages that over a
window of the face's size around every stride-8 cell, scores the cells whose window is mostly skin (highest where it
holds the whole face) and puts a fixed-size box there; strides 16 and 32 score nothing. ``draw_face`` paints the face it finds. So the tests
run the real loading and detection code (``server.detect``, OpenCV's decoding and NMS) on a model they build; there
is no weights file in the repository.

The ONNX file is written with the tests' minimal encoder (``onnx_write``), since the ``onnx`` package is not a
dependency.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from onnx_write import Graph, model, write

FACE_W, FACE_H = 88, 104  # the size of the face the detector finds (and of the box it reports)
SKIN = (245, 205, 80)  # RGB of the drawn face: what the detector calls skin
FILE_NAME = "face_detection_yunet_tests.onnx"
COVER_FLOOR, COVER_SPAN = 0.45, 0.3  # share of skin in the face-sized window that scores 0, and the rise to 1


# --- the network ------------------------------------------------------------------------------------------------------


def _graph() -> bytes:
    net = Graph()
    const = net.const

    def conv(name: str, source: str, weight, bias) -> str:
        w = np.asarray(weight, np.float32).reshape(len(bias), 3, 1, 1)
        net.add(
            "Conv", [source, const(name + ".w", w), const(name + ".b", np.float32(bias))], name, kernel_shape=[1, 1]
        )
        return name

    def clip01(name: str, source: str) -> str:
        net.add("Clip", [source, "zero", "one"], name)
        return name

    const("zero", np.float32(0.0))
    const("one", np.float32(1.0))
    r, g, b = SKIN  # input channels are B, G, R: each factor is 1 at the skin colour and 0 well away from it
    clip01("red", conv("red.raw", "input", [0, 0, 1 / 30], [-(r - 45) / 30]))
    clip01("green", conv("green.raw", "input", [0, 1 / 25, 0], [-(g - 35) / 25]))
    clip01("blue", conv("blue.raw", "input", [-1 / 30, 0, 0], [(b + 40) / 30]))
    net.add("Mul", ["red", "green"], "red_green")
    net.add("Mul", ["red_green", "blue"], "skin")
    pad_h, pad_w = (FACE_H - 8) // 2, (FACE_W - 8) // 2
    net.add(
        "AveragePool",
        ["skin"],
        "cover",
        kernel_shape=[FACE_H, FACE_W],
        strides=[8, 8],
        pads=[pad_h, pad_w, pad_h, pad_w],
        count_include_pad=1,
    )
    # the score rises steeply with the share of the window that is skin, so only the window centred on the face
    # scores high and NMS keeps one box per face
    net.add("Sub", ["cover", const("cover.floor", np.float32(COVER_FLOOR))], "cover.above")
    net.add("Mul", ["cover.above", const("cover.gain", np.float32(1 / COVER_SPAN))], "cover.scaled")
    clip01("cls_8.map", "cover.scaled")
    outputs = []
    for stride in (8, 16, 32):
        grid = f"grid_{stride}"
        net.add("AveragePool", ["input"], grid, kernel_shape=[stride, stride], strides=[stride, stride])
        # keypoints (eyes, nose, mouth corners) at their place in the drawn face, relative to the cell
        kps = [0.5 + d / stride for point in _landmarks() for d in point]
        maps = {
            "cls": "cls_8.map" if stride == 8 else conv(f"cls_{stride}.map", grid, [0] * 3, [0.0]),
            "obj": conv(f"obj_{stride}.map", grid, [0] * 3, [1.0]),
            "bbox": conv(
                f"bbox_{stride}.map", grid, [0] * 12, [0.5, 0.5, math.log(FACE_W / stride), math.log(FACE_H / stride)]
            ),
            "kps": conv(f"kps_{stride}.map", grid, [0] * 30, kps),
        }
        for kind, width in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)):
            out = f"{kind}_{stride}"
            net.add("Transpose", [maps[kind]], out + ".t", perm=[0, 2, 3, 1])
            net.add("Reshape", [out + ".t", const(out + ".shape", np.array([1, -1, width], np.int64))], out)
            outputs.append((out, width))
    return net.encode(
        "tiny_yunet", [("input", [1, 3, "height", "width"])], [(name, [1, "cells", width]) for name, width in outputs]
    )


def _landmarks() -> List[Tuple[float, float]]:
    """Right eye, left eye, nose tip, right and left mouth corner of ``draw_face``, relative to the face's centre."""
    return [
        (-FACE_W * 0.2, -FACE_H * 0.1),
        (FACE_W * 0.2, -FACE_H * 0.1),
        (0.0, FACE_H * 0.08),
        (-FACE_W * 0.15, FACE_H * 0.25),
        (FACE_W * 0.15, FACE_H * 0.25),
    ]


def model_bytes() -> bytes:
    """The detector as an ONNX file (IR version 6, opset 11, as the YuNet releases)."""
    return model(_graph())


def write_detector(folder: Path) -> Path:
    """The detector as ``folder/face_detection_yunet_tests.onnx`` (where the detailer looks: ``detectors/``)."""
    return write(folder, FILE_NAME, model_bytes())


def draw_face(rgba: np.ndarray, cx: int, cy: int) -> Tuple[int, int, int, int]:
    """Paint a face (skin-coloured ellipse, dark eyes, nose and mouth) centred at (cx, cy) into an H x W x 4 image;
    returns its box (x, y, w, h), which the detector reports to within a few pixels."""
    colour = SKIN + (255,)
    cv2.ellipse(rgba, (cx, cy), (FACE_W // 2, FACE_H // 2), 0, 0, 360, colour, -1, cv2.LINE_AA)
    for dx, dy in _landmarks()[:2]:
        cv2.circle(rgba, (cx + int(dx), cy + int(dy)), 6, (40, 30, 30, 255), -1, cv2.LINE_AA)
    (mx0, my), (mx1, _) = _landmarks()[3:]
    cv2.ellipse(rgba, (cx, cy + int(my)), (int(mx1 - mx0) // 2, 5), 0, 0, 360, (150, 40, 40, 255), -1, cv2.LINE_AA)
    return cx - FACE_W // 2, cy - FACE_H // 2, FACE_W, FACE_H


def portrait(width: int = 512, height: int = 512, faces: Sequence[Tuple[int, int]] = ((224, 118),)) -> np.ndarray:
    """An RGBA picture: a bluish gradient with texture (nothing the detector takes for skin) and the drawn faces."""
    rng = np.random.default_rng(3)
    img = np.zeros((height, width, 4), np.uint8)
    img[..., 0] = np.linspace(40, 120, width, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(90, 160, height, dtype=np.uint8)[:, None]
    img[..., 2] = rng.integers(150, 255, (height, width), dtype=np.uint8)
    img[..., 3] = 255
    for cx, cy in faces:
        draw_face(img, cx, cy)
    return img
