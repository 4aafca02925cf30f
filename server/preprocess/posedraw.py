"""The OpenPose control image: coloured bodies, hands and face points on black, in the colours and strokes the
OpenPose ControlNets were trained on (ControlNet 1.1's openpose_full drawing)."""

from __future__ import annotations

import colorsys
import math
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from .posedecode import LIMBS, Person, Point

# One colour per body part (RGB), and the same colour, at 60% brightness, for the limb of the same index.
BODY_COLOURS = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)
DRAWN_LIMBS = 17  # the two ear-to-shoulder limbs help to group parts but are not drawn
LIMB_HALF_WIDTH = 4
JOINT_RADIUS = 4
# The hand's 20 bones: four per finger from the wrist (0); bone i is drawn in the hue i / 20.
HAND_BONES = tuple((0 if j == 0 else 4 * f + j, 4 * f + j + 1) for f in range(5) for j in range(4))
HAND_BONE_WIDTH = 2
HAND_POINT = (0, 0, 255)
FACE_POINT = (255, 255, 255)
FACE_RADIUS = 3


def hand_bone_colour(bone: int) -> Tuple[int, int, int]:
    """The colour of hand bone ``bone`` (0..19): full-saturation hues round the colour wheel."""
    r, g, b = colorsys.hsv_to_rgb(bone / len(HAND_BONES), 1.0, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def draw_body(canvas: np.ndarray, person: Person) -> None:
    """Limbs as filled ellipses ``LIMB_HALF_WIDTH`` thick, then joints as dots, in the body colours."""
    for limb, (a, b) in enumerate(LIMBS[:DRAWN_LIMBS]):
        pa, pb = person.parts[a], person.parts[b]
        if pa is None or pb is None:
            continue
        centre = (int((pa[0] + pb[0]) / 2), int((pa[1] + pb[1]) / 2))
        length = math.hypot(pb[0] - pa[0], pb[1] - pa[1])
        angle = math.degrees(math.atan2(pa[1] - pb[1], pa[0] - pb[0]))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), LIMB_HALF_WIDTH), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(c * 0.6) for c in BODY_COLOURS[limb]])
    for part, point in enumerate(person.parts):
        if point is not None:
            cv2.circle(canvas, (int(point[0]), int(point[1])), JOINT_RADIUS, BODY_COLOURS[part], thickness=-1)


def draw_hand(canvas: np.ndarray, points: Sequence[Point]) -> None:
    """Bones as lines in their hues, then keypoints as blue dots."""
    for bone, (a, b) in enumerate(HAND_BONES):
        pa, pb = points[a], points[b]
        if pa is not None and pb is not None:
            cv2.line(
                canvas,
                (int(pa[0]), int(pa[1])),
                (int(pb[0]), int(pb[1])),
                hand_bone_colour(bone),
                thickness=HAND_BONE_WIDTH,
            )
    for point in points:
        if point is not None:
            cv2.circle(canvas, (int(point[0]), int(point[1])), JOINT_RADIUS, HAND_POINT, thickness=-1)


def draw_face(canvas: np.ndarray, points: Sequence[Point]) -> None:
    """Face landmarks as small white dots."""
    for point in points:
        if point is not None:
            cv2.circle(canvas, (int(point[0]), int(point[1])), FACE_RADIUS, FACE_POINT, thickness=-1)


def pose_image(
    height: int, width: int, people: Sequence[Person], hands: List[Sequence[Point]], faces: List[Sequence[Point]]
) -> np.ndarray:
    """The control image (H x W x 3 uint8, RGB): every body, then every hand, then every face, on black."""
    canvas = np.zeros((height, width, 3), np.uint8)
    for person in people:
        draw_body(canvas, person)
    for hand in hands:
        draw_hand(canvas, hand)
    for face in faces:
        draw_face(canvas, face)
    return canvas
