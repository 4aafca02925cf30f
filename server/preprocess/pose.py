"""The pose preprocessor: ControlNet's OpenPose (body, hands and face) from lllyasviel/Annotators' three weight files.

The picture is brought to a working size (short side 512 px, as ControlNet's detect resolution; a thin strip's long
side at most 2048 px); the body model sees it 184 px high (at most 736 px wide) and gives heatmaps and part affinity
fields, from which people are assembled; each person's hand and face boxes are cropped from the working picture and
run through the hand model (four scales averaged) and the face model; everything is drawn on black at the working
size and the drawing is resized to the picture's size. The ``.pth`` files are read with torch's weights-only loader
(or the same tensors as ``.safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

from protocol.errors import ProtocolError

from ..models.cache import LastLoaded
from . import posedecode, posedraw, posenet
from .annotators import ANNOTATORS_DIR, check_tensors, model_roots, where

POSE_FILES = {"body": "body_pose_model.pth", "hand": "hand_pose_model.pth", "face": "facenet.pth"}
WHAT = {"body": "OpenPose body model", "hand": "OpenPose hand model", "face": "OpenPose face model"}
WORKING_SHORT_SIDE = 512
WORKING_LONG_SIDE_MAX = 2048  # a thin strip is not blown up past this
BODY_HEIGHT = 184  # 0.5 x the 368 px box of the body model, ControlNet's single scale
BODY_MAX_WIDTH = 4 * BODY_HEIGHT  # a wide strip is seen narrower than that height would make it
HAND_SIDES = (184, 368, 552, 736)  # the hand crop is looked at at these sides and the heatmaps averaged
HAND_MAP_SIDE = 128  # the side the hand heatmaps are averaged at
FACE_SIDE = 384
STRIDE = 8
PAD_VALUE = 128


def find_weights(registry) -> Tuple[Dict[str, Path], List[str]]:
    """The pose files found under a models folder's ``annotators/`` ({part: path}; a ``.safetensors`` with the same
    stem wins over the ``.pth``) and the file names still missing."""
    found: Dict[str, Path] = {}
    for part, filename in POSE_FILES.items():
        stem = Path(filename).stem
        for root in model_roots(registry):
            for name in (f"{stem}.safetensors", filename):
                path = root / ANNOTATORS_DIR / name
                if part not in found and path.is_file():
                    found[part] = path
    return found, [f for part, f in POSE_FILES.items() if part not in found]


def missing_error(missing: List[str], registry) -> ProtocolError:
    """model_not_found naming every missing file and where it goes."""
    return ProtocolError(
        "model_not_found",
        f"the 'pose' preprocessor needs the annotator weights {', '.join(missing)} (from lllyasviel/Annotators; "
        f"'paintbridge models pull annotators' downloads them), which are not installed: put "
        f"{' and '.join(f'{where(registry)}/{name}' for name in missing)} in place",
        field="params.preprocessor",
    )


def load_network(path: Path, device: str = "cpu"):
    """The network a pose file holds (which one by its name's stem: body, hand or face), float32, on ``device``; a file whose tensors are not exactly that network's is ``unsupported``."""
    import torch

    from ..models.weights import read_state_dict

    part = next(p for p, f in POSE_FILES.items() if Path(f).stem == path.stem)
    state = read_state_dict(path, what=WHAT[part])
    check_tensors(
        state,
        posenet.SPECS[part]().state_shapes(),
        path,
        f"the {WHAT[part]} ({POSE_FILES[part]} from lllyasviel/Annotators)",
    )
    return posenet.network(part, {k: v.to(device=device, dtype=torch.float32) for k, v in state.items()})


_loaded = {part: LastLoaded(load_network) for part in POSE_FILES}


def pose(rgb: np.ndarray, registry, device: str = "cpu") -> np.ndarray:
    """The OpenPose control image of ``rgb`` (H x W x 3 uint8): bodies, hands and faces on black, same size."""
    found, missing = find_weights(registry)
    if missing:
        raise missing_error(missing, registry)
    nets = {part: _loaded[part].get(path, device) for part, path in found.items()}
    h, w = rgb.shape[:2]
    scale = working_scale(h, w)
    work = cv2.resize(rgb, _scaled(w, h, scale), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    bgr = np.ascontiguousarray(work[:, :, ::-1])
    drawing = draw_people(nets, bgr, detect_people(nets["body"], bgr, device), device)
    wh, ww = drawing.shape[:2]
    if (wh, ww) == (h, w):
        return drawing
    return cv2.resize(drawing, (w, h), interpolation=cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR)


def working_scale(h: int, w: int) -> float:
    """The scale of the working picture: short side 512 px, unless that makes the long side longer than 2048 px."""
    return min(WORKING_SHORT_SIDE / min(h, w), max(1.0, WORKING_LONG_SIDE_MAX / max(h, w)))


def body_scale(h: int, w: int) -> float:
    """The scale at which the body model sees the working picture: 184 px high, at most 736 px wide."""
    return min(BODY_HEIGHT / h, BODY_MAX_WIDTH / w)


def _scaled(w: int, h: int, scale: float) -> Tuple[int, int]:
    """(w, h) times ``scale``, at least 1 px each."""
    return max(1, round(w * scale)), max(1, round(h * scale))


def draw_people(
    nets: dict,
    bgr: np.ndarray,
    people: List[posedecode.Person],
    device: str = "cpu",
    hand_sides: Tuple[int, ...] = HAND_SIDES,
    face_side: int = FACE_SIDE,
) -> np.ndarray:
    """The pose image of ``people`` found in the BGR picture: their bodies, and the hands and faces the hand and face
    networks (``nets["hand"]``, ``nets["face"]``) find in the boxes each body implies (seen at ``hand_sides`` and
    ``face_side`` px)."""
    hands, faces = [], []
    h, w = bgr.shape[:2]
    for person in people:
        for x, y, side in posedecode.hand_boxes(person, w, h):
            maps = hand_heatmaps(nets["hand"], bgr[y : y + side, x : x + side], device, hand_sides)
            hands.append(posedecode.offset(posedecode.hand_keypoints(maps), x, y))
        box = posedecode.face_box(person, w, h)
        if box is not None:
            x, y, side = box
            maps = face_heatmaps(nets["face"], bgr[y : y + side, x : x + side], device, face_side)
            faces.append(posedecode.offset(posedecode.face_keypoints(maps), x, y))
    return posedraw.pose_image(h, w, people, hands, faces)


def _run(net, bgr: np.ndarray, device: str) -> list:
    """The network's maps (H/8 x W/8 x C each) for a BGR picture whose sides are multiples of the stride."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1))).to(device).float().unsqueeze(0) / 256.0 - 0.5
    with torch.inference_mode():
        return [out[0].float().permute(1, 2, 0).cpu().numpy() for out in net(x)]


def _padded(bgr: np.ndarray) -> np.ndarray:
    """Grey-padded on the right and bottom to a multiple of the stride."""
    h, w = bgr.shape[:2]
    return cv2.copyMakeBorder(bgr, 0, -h % STRIDE, 0, -w % STRIDE, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)


def _upsampled(maps: np.ndarray, seen: Tuple[int, int], size: Tuple[int, int]) -> np.ndarray:
    """Stride-scale maps back to the padded input, cut to the part ``seen`` (h, w), resized to ``size`` (h, w)."""
    big = cv2.resize(maps, (maps.shape[1] * STRIDE, maps.shape[0] * STRIDE), interpolation=cv2.INTER_CUBIC)
    big = big[: seen[0], : seen[1]]
    return cv2.resize(big, (size[1], size[0]), interpolation=cv2.INTER_CUBIC).reshape(size[0], size[1], -1)


def detect_people(net, bgr: np.ndarray, device: str = "cpu") -> List[posedecode.Person]:
    """The people the body model finds in a BGR picture, in its pixels."""
    h, w = bgr.shape[:2]
    scale = body_scale(h, w)
    seen = cv2.resize(bgr, _scaled(w, h, scale), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    pafs, heatmaps = _run(net, _padded(seen), device)
    heatmaps = _upsampled(heatmaps, seen.shape[:2], (h, w))
    pafs = _upsampled(pafs, seen.shape[:2], (h, w))
    return posedecode.assemble_people(posedecode.body_peaks(heatmaps), pafs)


def hand_heatmaps(net, crop: np.ndarray, device: str = "cpu", sides: Tuple[int, ...] = HAND_SIDES) -> np.ndarray:
    """The hand model's heatmaps for a square BGR crop seen at each of ``sides`` (px) and averaged, at the crop's
    size."""
    side = crop.shape[0]
    blurred = cv2.GaussianBlur(crop, (0, 0), 0.8)
    total = np.zeros((HAND_MAP_SIDE, HAND_MAP_SIDE, posenet.HAND_PARTS + 1), np.float32)
    for s in sides:
        seen = cv2.resize(blurred, (s, s), interpolation=cv2.INTER_AREA if s < side else cv2.INTER_CUBIC)
        (maps,) = _run(net, _padded(seen), device)
        total += _upsampled(maps, (s, s), (HAND_MAP_SIDE, HAND_MAP_SIDE))
    return cv2.resize(total / len(sides), (side, side), interpolation=cv2.INTER_LINEAR).reshape(side, side, -1)


def face_heatmaps(net, crop: np.ndarray, device: str = "cpu", seen_side: int = FACE_SIDE) -> np.ndarray:
    """The face model's heatmaps for a square BGR crop seen at ``seen_side`` px (a multiple of 8), at the crop's
    size."""
    side = crop.shape[0]
    seen = cv2.resize(
        crop, (seen_side, seen_side), interpolation=cv2.INTER_AREA if seen_side < side else cv2.INTER_CUBIC
    )
    (maps,) = _run(net, seen, device)
    return cv2.resize(maps, (side, side), interpolation=cv2.INTER_LINEAR).reshape(side, side, -1)
