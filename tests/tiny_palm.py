"""A hand detector the tests build: a network with MediaPipe's palm detector's interface and constructed (not trained)
weights, and the synthetic hand it finds.

The detailer runs ``*palm_detection*.onnx`` in ``detectors/`` through ``cv2.dnn`` (``server.detect.blaze``), which
needs only the palm detector's interface, as the OpenCV model zoo's ONNX conversion has it: an input ``[1, 192, 192,
3]`` (RGB, 0-1, channels last) and outputs ``[1, 2016, 18]`` (per anchor: box centre offset and size, then 7 keypoints,
in input pixels) and ``[1, 2016, 1]`` (score logits), for 24 x 24 cells of 2 anchors at stride 8 and 12 x 12 cells of
6 anchors at stride 16. This network marks a pixel as "palm" when it is close to ``PALM`` (red and blue high, green
low), averages that over a palm-sized window around every stride-8 cell and scores the cells whose window is mostly
palm (highest where it holds the whole palm); every anchor's box is a palm-sized square with the wrist below its
centre and the middle finger above it. ``draw_hand`` paints the hand it finds. There is no weights file in the
repository.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from onnx_write import Graph, model, write

SIDE = 192  # the network's input side
PALM_IN = 24  # the palm's side in input pixels (64 px in a 512 px image)
PALM = (230, 60, 200)  # RGB of the drawn palm: what the detector calls palm
FINGERS = (150, 60, 200)  # the fingers' colour (not palm)
FILE_NAME = "palm_detection_tests.onnx"
COVER_FLOOR, COVER_GAIN = 0.7, 10.0  # score logit = (share of palm in the window - floor) x gain


def _graph() -> bytes:
    net = Graph()
    const, add = net.const, net.add

    def factor(name: str, channel: int, low: float, rising: bool) -> str:
        """1 where the channel is well past ``low`` (0-255) in the given direction, 0 well before it."""
        w = np.zeros((1, 3, 1, 1), np.float32)
        w[0, channel] = (255 / 30) if rising else -(255 / 30)
        bias = np.float32(-low / 30 if rising else low / 30)
        add(
            "Conv",
            ["x", const(name + ".w", w), const(name + ".b", np.array([bias]))],
            name + ".raw",
            kernel_shape=[1, 1],
        )
        return add("Clip", [name + ".raw", "zero", "one"], name)

    const("zero", np.float32(0))
    const("one", np.float32(1))
    add("Transpose", ["input"], "x", perm=[0, 3, 1, 2])
    r, g, b = PALM
    red, green, blue = (
        factor("red", 0, r - 45, True),
        factor("green", 1, g + 40, False),
        factor("blue", 2, b - 45, True),
    )
    add("Mul", [add("Mul", [red, green], "red_green"), blue], "palm")
    pad = (PALM_IN - 8) // 2
    add(
        "AveragePool",
        ["palm"],
        "cover",
        kernel_shape=[PALM_IN, PALM_IN],
        strides=[8, 8],
        pads=[pad] * 4,
        count_include_pad=1,
    )
    add("Sub", ["cover", const("floor", np.float32(COVER_FLOOR))], "cover.above")
    add("Mul", ["cover.above", const("gain", np.float32(COVER_GAIN))], "logit")  # [1, 1, 24, 24]
    add("Transpose", ["logit"], "logit.t", perm=[0, 2, 3, 1])  # [1, 24, 24, 1]
    add("Concat", ["logit.t", "logit.t"], "logit.2", axis=3)  # both anchors of a cell
    add("Reshape", ["logit.2", const("shape8", np.array([1, 1152, 1], np.int64))], "scores8")
    add("Concat", ["scores8", const("scores16", np.full((1, 864, 1), -20.0, np.float32))], "classificators", axis=1)
    box = np.zeros((1, 1, 18), np.float32)
    box[0, 0, 2:4] = PALM_IN
    box[0, 0, 4:6] = (0, PALM_IN / 2)  # keypoint 0: the wrist, below the palm's centre
    box[0, 0, 8:10] = (0, -PALM_IN / 2)  # keypoint 2: the middle finger's base, above it
    add("Mul", ["classificators", const("nothing", np.float32(0))], "zeros")  # [1, 2016, 1]
    add("Add", ["zeros", const("box", box)], "regressors")  # broadcast to [1, 2016, 18]
    return net.encode(
        "tiny_palm", [("input", [1, SIDE, SIDE, 3])], [("regressors", [1, 2016, 18]), ("classificators", [1, 2016, 1])]
    )


def model_bytes() -> bytes:
    """The detector as an ONNX file (opset 11)."""
    return model(_graph())


def write_detector(folder: Path) -> Path:
    """The detector as ``folder/palm_detection_tests.onnx`` (where the detailer looks: ``detectors/``)."""
    return write(folder, FILE_NAME, model_bytes())


def draw_hand(rgba: np.ndarray, cx: int, cy: int, palm: int) -> None:
    """Paint a hand into an H x W x 4 image: a square palm of side ``palm`` centred at (cx, cy) in ``PALM``, four
    fingers and a thumb in ``FINGERS``."""
    half = palm // 2
    rgba[cy - half : cy + half, cx - half : cx + half] = PALM + (255,)
    finger = max(2, palm // 5)
    for i in range(4):
        x = cx - half + i * (palm // 4) + 2
        cv2.rectangle(rgba, (x, cy - half - palm), (x + finger, cy - half - 1), FINGERS + (255,), -1)
    cv2.rectangle(rgba, (cx + half, cy - finger), (cx + half + palm // 2, cy), FINGERS + (255,), -1)
