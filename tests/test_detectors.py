"""The detailer's detectors (``server.detect``) on trained weights and a real photograph, and on constructed ones.

Trained: MediaPipe's short-range face detector (BlazeFace) and palm detectors, as MediaPipe 0.10.21's wheel ships them
(Apache-2.0; ``tests/mediapipe_weights.py``), run by the product's loading and decoding code on scikit-image's
astronaut (``tests/data/astronaut.png``: NASA, public domain; see tests/data/README.md). The face box ``ASTRONAUT_FACE``
was measured once with these weights and checked by eye on the crop the test writes to
``test-artifacts/detect-astronaut-face.png`` (forehead to chin, ear to ear). No photograph with a visible hand ships
in a package here, so the trained palm detectors are checked to find no hand in the astronaut (her gloved hand at the
bottom left scores 0.17), and the hand path (palm grown into the hand, channels-last ONNX) runs on constructed
weights of the palm detector's interface (``tests/tiny_palm.py``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import tiny_palm
import tiny_yunet
from mediapipe_weights import trained
from server.detect import Detectors, installed_targets

PHOTO = Path(__file__).resolve().parent / "data" / "astronaut.png"
ASTRONAUT_FACE = (180, 82, 95, 95)  # x, y, w, h: BlazeFace's box on the astronaut (measured, checked by eye)
FACE_FILE = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
PALM_FILES = (
    "mediapipe/modules/palm_detection/palm_detection_full.tflite",
    "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
)
HAND_AT, PALM_SIDE = (373, 352), 64  # the drawn hand's palm centre and side in the 512 px portrait
DRAWN_HAND = (302, 249, 142, 142)  # its box: 2.2 palm sides square, centred half a palm side towards the fingers


def astronaut() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


def models_with(tmp_path: Path, *files: Path) -> Path:
    folder = tmp_path / "detectors"
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    return tmp_path


def close(box, want, tolerance: int) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(box, want))


def test_a_trained_face_detector_finds_the_astronauts_face(tmp_path, paintbridge_cache, artifacts_dir):
    models = models_with(tmp_path, trained(FACE_FILE, paintbridge_cache))
    assert installed_targets([models]) == ["face"]
    photo = astronaut()
    (face,) = Detectors([models]).detect(photo, ("face",), 0.5)
    box = (face.x, face.y, face.width, face.height)
    x, y, w, h = box
    crop = cv2.cvtColor(photo[y : y + h, x : x + w], cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(artifacts_dir / "detect-astronaut-face.png"), crop)
    assert face.target == "face" and face.score > 0.85 and close(box, ASTRONAUT_FACE, 4), box
    # off centre in a wider picture (the network sees it letterboxed): the same face, moved
    wide = np.zeros((512, 600, 3), np.uint8)
    wide[:, 60:572] = photo
    (moved,) = Detectors([models]).detect(wide, ("face",), 0.5)
    assert close((moved.x - 60, moved.y, moved.width, moved.height), ASTRONAUT_FACE, 6)


@pytest.mark.parametrize("palm_file", PALM_FILES, ids=["full", "lite"])
def test_trained_palm_detectors_run_and_find_no_hand_in_the_astronaut(tmp_path, paintbridge_cache, palm_file):
    models = models_with(tmp_path, trained(palm_file, paintbridge_cache))
    detectors = Detectors([models])
    assert installed_targets([models]) == ["hand"]
    assert detectors.detect(astronaut(), ("hand",), 0.5) == []
    weak = detectors.detect(astronaut(), ("hand",), 0.02)
    assert weak and all(d.target == "hand" and d.score < 0.5 for d in weak), "the network answers, unsure"


def test_the_constructed_palm_detector_finds_the_drawn_hand(tmp_path):
    models = tmp_path
    tiny_palm.write_detector(models / "detectors")
    tiny_yunet.write_detector(models / "detectors")
    image = tiny_yunet.portrait()
    tiny_palm.draw_hand(image, *HAND_AT, PALM_SIDE)
    found = Detectors([models]).detect(image[..., :3], ("hand", "face"), 0.5)
    assert [d.target for d in found] == ["hand", "face"]
    assert close((found[0].x, found[0].y, found[0].width, found[0].height), DRAWN_HAND, 3)
    assert Detectors([models]).detect(tiny_yunet.portrait()[..., :3], ("hand",), 0.5) == [], "no hand, no box"
    assert installed_targets([models]) == ["face", "hand"]


def test_a_missing_or_wrong_hand_detector_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(Exception) as err:
        Detectors([tmp_path]).detect(np.zeros((64, 64, 3), np.uint8), ("face", "hand"), 0.5)
    assert err.value.code == "model_not_found" and "paintbridge models pull detailer" in str(err.value)
    assert "palm_detection_mediapipe_2023feb.onnx" not in str(err.value), "the face is missing first"
    tiny_yunet.write_detector(tmp_path / "detectors")
    with pytest.raises(Exception) as err:
        Detectors([tmp_path]).detect(np.zeros((64, 64, 3), np.uint8), ("face", "hand"), 0.5)
    assert err.value.code == "model_not_found" and "palm_detection_mediapipe_2023feb.onnx" in str(err.value)
    (tmp_path / "detectors" / "palm_detection_broken.onnx").write_bytes(tiny_yunet.model_bytes())
    with pytest.raises(Exception) as err:
        Detectors([tmp_path]).detect(np.zeros((64, 64, 3), np.uint8), ("hand",), 0.5)
    assert err.value.code == "unsupported" and "palm_detection_broken.onnx" in str(err.value)
