"""From OpenPose's maps to keypoints: body people from heatmaps and part affinity fields, hand and face keypoints
from their heatmaps, and the hand and face boxes a body implies. Pure numpy/OpenCV; coordinates are pixels (x, y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

Point = Optional[Tuple[float, float]]

# The body's limbs as (part, part), with the two part affinity field channels (x, y) the body model gives each.
LIMBS = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
    (2, 16),
    (5, 17),
)
LIMB_PAF = (
    (12, 13),
    (20, 21),
    (14, 15),
    (16, 17),
    (22, 23),
    (24, 25),
    (0, 1),
    (2, 3),
    (4, 5),
    (6, 7),
    (8, 9),
    (10, 11),
    (28, 29),
    (30, 31),
    (34, 35),
    (32, 33),
    (36, 37),
    (18, 19),
    (26, 27),
)
SEED_LIMBS = 17  # a person may start from any limb but the last two (ear to shoulder)

PEAK_THRESHOLD = 0.1  # a body part's smoothed heatmap must pass this to count
PAF_THRESHOLD = 0.05  # a limb's field samples must pass this ...
PAF_SAMPLES = 10  # ... at 80% of this many points along the limb
PAF_SHARE = 0.8
MAX_PEAKS = 32  # strongest candidates kept per body part (a flat map would otherwise give thousands)
MIN_PARTS = 4  # a person needs at least this many parts ...
MIN_MEAN_SCORE = 0.4  # ... and this mean score per part
HAND_THRESHOLD = 0.05
FACE_THRESHOLD = 0.05
MIN_BOX = 20  # hand and face boxes smaller than this (pixels) are not looked at


@dataclass
class Person:
    """One body: ``parts[i]`` is (x, y) of part i or None; ``score`` the sum of part and limb scores."""

    parts: List[Point]
    score: float = 0.0

    @property
    def count(self) -> int:
        return sum(p is not None for p in self.parts)


def smooth(heatmap: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of ``sigma`` pixels, kernel cut at 4 sigma."""
    radius = int(4.0 * sigma + 0.5)
    return cv2.GaussianBlur(
        heatmap.astype(np.float32), (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REFLECT
    )


def body_peaks(heatmaps: np.ndarray) -> List[List[Tuple[float, float, float]]]:
    """Per body part, its candidates (x, y, score): local maxima of the smoothed heatmap (H x W x >=18) above the
    threshold, the strongest ``MAX_PEAKS`` of them; score is the unsmoothed map's value there."""
    out = []
    for part in range(18):
        raw = heatmaps[:, :, part].astype(np.float32)
        m = smooth(raw, 3.0)
        padded = np.pad(m, 1, mode="constant", constant_values=-np.inf)
        peak = (
            (m >= padded[:-2, 1:-1])
            & (m >= padded[2:, 1:-1])
            & (m >= padded[1:-1, :-2])
            & (m >= padded[1:-1, 2:])
            & (m > PEAK_THRESHOLD)
        )
        ys, xs = np.nonzero(peak)
        scores = raw[ys, xs]
        order = np.argsort(-scores, kind="stable")[:MAX_PEAKS]
        out.append([(float(xs[i]), float(ys[i]), float(scores[i])) for i in order])
    return out


def limb_connections(peaks, pafs: np.ndarray, limb: int) -> List[Tuple[int, int, float]]:
    """The connections (candidate of part A, candidate of part B, score) of one limb, best first, each candidate used
    at most once: the field along the segment must point from A to B at most sample points, and the mean alignment,
    less a penalty for limbs longer than half the picture's height, must be positive."""
    a_part, b_part = LIMBS[limb]
    fx, fy = pafs[:, :, LIMB_PAF[limb][0]], pafs[:, :, LIMB_PAF[limb][1]]
    h, w = fx.shape
    candidates = []
    for i, (ax, ay, _) in enumerate(peaks[a_part]):
        for j, (bx, by, _) in enumerate(peaks[b_part]):
            dx, dy = bx - ax, by - ay
            norm = max(math.hypot(dx, dy), 1e-3)
            xs = np.clip(np.rint(np.linspace(ax, bx, PAF_SAMPLES)).astype(int), 0, w - 1)
            ys = np.clip(np.rint(np.linspace(ay, by, PAF_SAMPLES)).astype(int), 0, h - 1)
            align = fx[ys, xs] * (dx / norm) + fy[ys, xs] * (dy / norm)
            score = float(align.mean()) + min(0.5 * h / norm - 1.0, 0.0)
            if np.count_nonzero(align > PAF_THRESHOLD) > PAF_SHARE * PAF_SAMPLES and score > 0:
                candidates.append((score, i, j))
    candidates.sort(key=lambda c: -c[0])
    used_a, used_b, out = set(), set(), []
    for score, i, j in candidates:
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append((i, j, score))
        if len(out) >= min(len(peaks[a_part]), len(peaks[b_part])):
            break
    return out


def assemble_people(peaks, pafs: np.ndarray) -> List[Person]:
    """People from the part candidates and the limbs' fields: limbs are added in order to the person holding one of
    their ends, two people joined by a limb merge when they share no part, and people with few or weak parts go."""
    people: List[List] = []  # [candidate index per part or -1 ..., score]
    for limb, (a_part, b_part) in enumerate(LIMBS):
        for i, j, score in limb_connections(peaks, pafs, limb):
            owners = [p for p in people if p[0][a_part] == i or p[0][b_part] == j]
            if len(owners) == 1 or (len(owners) == 2 and _overlap(owners[0], owners[1])):
                person = owners[0]
                if person[0][b_part] != j:
                    person[0][b_part] = j
                    person[1] += peaks[b_part][j][2] + score
            elif len(owners) == 2:
                first, second = owners
                for part, index in enumerate(second[0]):
                    if index >= 0:
                        first[0][part] = index
                first[1] += second[1] + score
                people.remove(second)
            elif not owners and limb < SEED_LIMBS:
                parts = [-1] * 18
                parts[a_part], parts[b_part] = i, j
                people.append([parts, peaks[a_part][i][2] + peaks[b_part][j][2] + score])
    out = []
    for parts, score in people:
        person = Person([None if index < 0 else peaks[part][index][:2] for part, index in enumerate(parts)], score)
        if person.count >= MIN_PARTS and score / person.count >= MIN_MEAN_SCORE:
            out.append(person)
    return out


def _overlap(first, second) -> bool:
    return any(a >= 0 and b >= 0 for a, b in zip(first[0], second[0]))


def hand_boxes(person: Person, width: int, height: int) -> List[Tuple[int, int, int]]:
    """Square boxes (x, y, side) where the person's hands should be: beyond each wrist along the forearm, sized by
    the forearm and upper arm (OpenPose's hand detector rule); boxes under ``MIN_BOX`` are left out."""
    boxes = []
    for shoulder, elbow, wrist in ((5, 6, 7), (2, 3, 4)):  # left arm, right arm
        s, e, w = person.parts[shoulder], person.parts[elbow], person.parts[wrist]
        if s is None or e is None or w is None:
            continue
        cx, cy = w[0] + 0.33 * (w[0] - e[0]), w[1] + 0.33 * (w[1] - e[1])
        side = 1.5 * max(math.dist(w, e), 0.9 * math.dist(e, s))
        box = _clamped_square(cx - side / 2, cy - side / 2, side, width, height)
        if box:
            boxes.append(box)
    return boxes


def face_box(person: Person, width: int, height: int) -> Optional[Tuple[int, int, int]]:
    """The square box (x, y, side) around the person's face: centred on the nose, half a side of three times the
    nose-to-eye or 1.5 times the nose-to-ear distance, whichever is larger; None without a nose and an eye or ear."""
    nose = person.parts[0]
    if nose is None:
        return None
    half = 0.0
    for part, factor in ((14, 3.0), (15, 3.0), (16, 1.5), (17, 1.5)):
        p = person.parts[part]
        if p is not None:
            half = max(half, factor * max(abs(p[0] - nose[0]), abs(p[1] - nose[1])))
    if half <= 0:
        return None
    return _clamped_square(nose[0] - half, nose[1] - half, 2 * half, width, height)


def _clamped_square(x: float, y: float, side: float, width: int, height: int) -> Optional[Tuple[int, int, int]]:
    x, y = max(0.0, x), max(0.0, y)
    side = min(side, width - x, height - y)
    return (int(x), int(y), int(side)) if side >= MIN_BOX else None


def hand_keypoints(heatmaps: np.ndarray) -> List[Point]:
    """The 21 hand keypoints from the hand's heatmaps (H x W x >=21, in the crop's pixels): for each, the maximum of
    the largest-mass region where the smoothed map passes the threshold; None where nothing does."""
    out: List[Point] = []
    for part in range(21):
        raw = heatmaps[:, :, part].astype(np.float32)
        inside = (smooth(raw, 3.0) > HAND_THRESHOLD).astype(np.uint8)
        count, labels = cv2.connectedComponents(inside, connectivity=8)
        if count <= 1:
            out.append(None)
            continue
        mass = np.bincount(labels.ravel(), weights=raw.ravel(), minlength=count)
        region = labels == (1 + int(np.argmax(mass[1:])))
        y, x = np.unravel_index(int(np.argmax(np.where(region, raw, -np.inf))), raw.shape)
        out.append((float(x), float(y)))
    return out


def face_keypoints(heatmaps: np.ndarray) -> List[Point]:
    """The 70 face landmarks from the face's heatmaps (H x W x >=70, in the crop's pixels): each map's maximum
    where it passes the threshold, else None."""
    out: List[Point] = []
    for part in range(70):
        m = heatmaps[:, :, part]
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        out.append((float(x), float(y)) if m[y, x] > FACE_THRESHOLD else None)
    return out


def offset(points: Sequence[Point], dx: float, dy: float) -> List[Point]:
    """``points`` moved by (dx, dy) (a crop's keypoints in the picture's pixels)."""
    return [None if p is None else (p[0] + dx, p[1] + dy) for p in points]
