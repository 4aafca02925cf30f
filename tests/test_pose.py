"""The pose preprocessor (ControlNet's OpenPose: body, hands, face): the three networks at the published files' layer
shapes, people assembled from constructed heatmaps and part affinity fields that encode known skeletons, hand and
face keypoints from constructed heatmaps, the drawing in the OpenPose colours, and the whole preprocessor on
constructed weight files (tests/tiny_pose.py) with its refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from protocol.errors import ProtocolError
from server.preprocess import available_preprocessors, posedecode, posedraw, posenet, preprocess_image
from server.preprocess.pose import POSE_FILES
from tiny_pose import build_pose_models, random_state


class Registry:
    """Just what preprocessors use of the model registry: its folders."""

    def __init__(self, *dirs: Path) -> None:
        self.dirs = list(dirs)


# --- the networks -----------------------------------------------------------------------------------------------------

# Facts of the published files (lllyasviel/Annotators), written out by hand: tensor count and a few shapes each.
PUBLISHED = {
    "body": (
        184,
        {
            "conv1_1.weight": (64, 3, 3, 3),
            "conv4_4_CPM.weight": (128, 256, 3, 3),
            "conv5_5_CPM_L1.weight": (38, 512, 1, 1),
            "conv5_5_CPM_L2.weight": (19, 512, 1, 1),
            "Mconv1_stage2_L1.weight": (128, 185, 7, 7),
            "Mconv7_stage6_L2.bias": (19,),
        },
    ),
    "hand": (
        104,
        {
            "conv5_3_CPM.weight": (128, 512, 3, 3),
            "conv6_2_CPM.weight": (22, 512, 1, 1),
            "Mconv1_stage6.weight": (128, 150, 7, 7),
            "Mconv7_stage6.weight": (22, 128, 1, 1),
        },
    ),
    "face": (
        104,
        {
            "conv4_4.weight": (512, 512, 3, 3),
            "conv6_2_CPM.weight": (71, 512, 1, 1),
            "Mconv1_stage2.weight": (128, 199, 7, 7),
            "Mconv7_stage6.bias": (71,),
        },
    ),
}


@pytest.mark.parametrize("part", ["body", "hand", "face"])
def test_each_network_has_the_published_tensors_and_output_shapes(part):
    import torch

    count, some = PUBLISHED[part]
    shapes = posenet.SPECS[part]().state_shapes()
    assert len(shapes) == count and {k: shapes[k] for k in some} == some
    net = posenet.network(part, random_state(part, 0))
    with torch.inference_mode():
        outputs = net(torch.rand(1, 3, 48, 40) - 0.5)
    expected = {"body": [38, 19], "hand": [22], "face": [71]}[part]
    assert [tuple(o.shape) for o in outputs] == [(1, c, 6, 5) for c in expected]


# --- people from constructed maps -------------------------------------------------------------------------------------

# One person, 240 x 320: nose, neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right hip/knee/ankle,
# left hip/knee/ankle, right eye, left eye, right ear, left ear.
JOINTS = [
    (120, 40),
    (120, 80),
    (90, 80),
    (80, 130),
    (75, 175),
    (150, 80),
    (160, 130),
    (165, 175),
    (105, 180),
    (100, 240),
    (98, 300),
    (135, 180),
    (140, 240),
    (142, 300),
    (112, 32),
    (128, 32),
    (104, 38),
    (136, 38),
]
# The body model's field channels (x, y) for each limb, as the CMU COCO model lays them out.
FIELDS = {
    (1, 2): (12, 13),
    (1, 5): (20, 21),
    (2, 3): (14, 15),
    (3, 4): (16, 17),
    (5, 6): (22, 23),
    (6, 7): (24, 25),
    (1, 8): (0, 1),
    (8, 9): (2, 3),
    (9, 10): (4, 5),
    (1, 11): (6, 7),
    (11, 12): (8, 9),
    (12, 13): (10, 11),
    (1, 0): (28, 29),
    (0, 14): (30, 31),
    (14, 16): (34, 35),
    (0, 15): (32, 33),
    (15, 17): (36, 37),
    (2, 16): (18, 19),
    (5, 17): (26, 27),
}


def body_maps(people, width, height):
    """Heatmaps (a Gaussian peak of 1 at each joint) and fields (the limb's unit direction within 4 px of it)."""
    heat = np.zeros((height, width, 19), np.float32)
    pafs = np.zeros((height, width, 38), np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    for joints in people:
        for part, (x, y) in enumerate(joints):
            heat[:, :, part] = np.maximum(heat[:, :, part], np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 4.0**2)))
        for (a, b), (cx, cy) in FIELDS.items():
            line = np.zeros((height, width), np.uint8)
            cv2.line(line, joints[a], joints[b], 1, thickness=9)
            d = np.subtract(joints[b], joints[a], dtype=np.float32)
            d /= np.linalg.norm(d)
            pafs[:, :, cx][line > 0], pafs[:, :, cy][line > 0] = d[0], d[1]
    return heat, pafs


def test_two_people_are_assembled_from_their_heatmaps_and_fields():
    second = [(x + 240, y) for x, y in JOINTS]
    heat, pafs = body_maps([JOINTS, second], 480, 320)
    people = posedecode.assemble_people(posedecode.body_peaks(heat), pafs)
    found = sorted([[tuple(map(round, p)) for p in person.parts] for person in people])
    assert found == [JOINTS, second]


def test_a_limb_whose_field_points_elsewhere_is_not_joined():
    heat, pafs = body_maps([JOINTS], 240, 320)
    pafs[:, :, [16, 17]] *= -1  # the right forearm's field points from the wrist to the elbow
    (person,) = posedecode.assemble_people(posedecode.body_peaks(heat), pafs)
    assert person.parts[4] is None and person.parts[3] == JOINTS[3]
    heat[:, :, :] = 0.05  # below the threshold everywhere: nobody
    assert posedecode.assemble_people(posedecode.body_peaks(heat), pafs) == []


def test_the_skeleton_is_drawn_in_the_openpose_colours_on_black():
    person = posedecode.Person([tuple(map(float, j)) for j in JOINTS])
    image = posedraw.pose_image(320, 240, [person], [], [])
    # Joints in their part's colour: nose red, neck orange, right wrist yellow-green, left ankle light blue ...
    for part, colour in (
        (0, (255, 0, 0)),
        (1, (255, 85, 0)),
        (4, (170, 255, 0)),
        (13, (85, 0, 255)),
        (17, (255, 0, 85)),
    ):
        x, y = JOINTS[part]
        assert tuple(image[y, x]) == colour, part
    # Limbs between them at 60% of the colour of their index: right upper arm, left thigh (hip to knee).
    for (a, b), colour in (((2, 3), (153, 102, 0)), ((11, 12), (0, 102, 153))):
        mx, my = (JOINTS[a][0] + JOINTS[b][0]) // 2, (JOINTS[a][1] + JOINTS[b][1]) // 2
        assert tuple(image[my, mx]) == colour, (a, b)
    # Black everywhere away from the skeleton.
    near = np.zeros((320, 240), np.uint8)
    for a, b in posedecode.LIMBS[:17]:
        cv2.line(near, JOINTS[a], JOINTS[b], 1, thickness=16)
    assert image[near == 0].max() == 0 and (image[near > 0] > 0).any(axis=1).mean() > 0.4


# --- hands and faces --------------------------------------------------------------------------------------------------


def blobs(points, size, channels, sigma=3.0):
    maps = np.zeros((size, size, channels), np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    for part, p in enumerate(points):
        if p is not None:
            maps[:, :, part] = np.exp(-((xs - p[0]) ** 2 + (ys - p[1]) ** 2) / (2 * sigma**2))
    return maps


def test_hand_keypoints_come_from_the_strongest_region_of_each_heatmap():
    rng = np.random.default_rng(3)
    points = [tuple(map(float, rng.integers(10, 110, 2))) for _ in range(21)]
    points[20] = None  # the little finger's tip is not seen
    maps = blobs(points, 120, 22)
    maps[:, :, 5] += 0.6 * blobs([(15.0, 100.0)], 120, 1)[:, :, 0]  # a weaker second region for one joint
    found = posedecode.hand_keypoints(maps)
    assert found == points


def test_hand_and_face_boxes_follow_the_arms_and_the_head():
    parts = [None] * 18
    parts[5], parts[6], parts[7] = (100.0, 40.0), (100.0, 70.0), (100.0, 100.0)  # left arm hanging down
    parts[0], parts[14] = (50.0, 50.0), (44.0, 46.0)  # nose and right eye
    person = posedecode.Person(parts)
    assert posedecode.hand_boxes(person, 300, 300) == [(77, 87, 45)]  # beyond the wrist, 1.5 x the forearm
    assert posedecode.face_box(person, 300, 300) == (32, 32, 36)  # 3 x the nose-to-eye distance each way
    assert posedecode.hand_boxes(person, 300, 120) == [(77, 87, 32)]  # cut at the picture's edge
    parts[14] = (49.0, 49.0)
    assert posedecode.face_box(person, 300, 300) is None  # a 6 px face is too small to look at


def test_hands_and_face_points_are_drawn_over_the_body():
    hand = [(20.0 + 4 * i, 30.0 + 3 * (i % 4)) for i in range(21)]
    face = [(100.0 + (i % 10) * 6, 20.0 + (i // 10) * 6) for i in range(70)]
    image = posedraw.pose_image(80, 200, [], [hand], [face])
    assert tuple(image[int(hand[7][1]), int(hand[7][0])]) == (0, 0, 255)  # hand keypoints blue
    assert tuple(image[20, 100]) == (255, 255, 255)  # face points white
    wrist, thumb1 = (20.0, 40.0), (60.0, 40.0)
    image = posedraw.pose_image(80, 200, [], [[wrist, thumb1] + [None] * 19], [])
    mid = (int((wrist[0] + thumb1[0]) / 2), int((wrist[1] + thumb1[1]) / 2))
    assert tuple(image[mid[1], mid[0]]) == (255, 0, 0)  # the first bone in hue 0: red
    assert posedraw.hand_bone_colour(5) == (128, 255, 0) and posedraw.hand_bone_colour(15) == (128, 0, 255)


def test_face_landmarks_are_the_heatmap_maxima_above_the_threshold():
    points = [(float(5 + (i % 10) * 9), float(5 + (i // 10) * 12)) for i in range(70)]
    maps = blobs(points, 96, 71)
    maps[:, :, 3] *= 0.04
    expected = list(points)
    expected[3] = None
    assert posedecode.face_keypoints(maps) == expected


# --- the whole preprocessor on constructed weight files ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pose_models(paintbridge_cache) -> Path:
    return build_pose_models(paintbridge_cache / "pose-models")


def test_pose_runs_the_three_files_and_draws_nobody_on_black(pose_models):
    img = np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    out = preprocess_image("pose", img, Registry(pose_models))
    assert out.shape == img.shape and out.dtype == np.uint8 and out.max() == 0  # these weights find no one
    rgba = np.dstack([img, np.full((90, 70), 255, np.uint8)])
    assert np.array_equal(preprocess_image("openpose", rgba, Registry(pose_models)), out)
    for strip in ((6, 900), (900, 6), (1, 1)):  # not blown up to a short side of 512 px
        assert preprocess_image("pose", np.zeros((*strip, 3), np.uint8), Registry(pose_models)).shape == (*strip, 3)
    ready = {p["name"]: p for p in available_preprocessors(Registry(pose_models))}
    assert ready["pose"] == {"name": "pose", "ready": True, "needs": ""}


@pytest.mark.parametrize("h, w", [(6, 900), (900, 6), (1, 1), (768, 512), (4000, 6000)])
def test_the_networks_see_bounded_sizes(h, w):
    from server.preprocess.pose import body_scale, working_scale

    s = working_scale(h, w)
    wh, ww = max(1, round(h * s)), max(1, round(w * s))
    assert max(wh, ww) <= 2048 and (min(wh, ww) == 512 or max(wh, ww) >= 2047)
    b = body_scale(wh, ww)
    assert round(wh * b) <= 184 and round(ww * b) <= 736


def test_missing_pose_files_are_named(pose_models, tmp_path):
    img = np.zeros((32, 32, 3), np.uint8)
    (tmp_path / "annotators").mkdir()
    shutil.copy(pose_models / "annotators" / "body_pose_model.pth", tmp_path / "annotators")
    with pytest.raises(ProtocolError) as err:
        preprocess_image("pose", img, Registry(tmp_path))
    assert err.value.code == "model_not_found" and "body_pose" not in err.value.message
    for name in ("hand_pose_model.pth", "facenet.pth"):
        assert str(tmp_path / "annotators" / name) in err.value.message
    assert "pull annotators" in err.value.message
    status = {p["name"]: p for p in available_preprocessors(Registry(tmp_path))}["pose"]
    assert status == {"name": "pose", "ready": False, "needs": "annotators/hand_pose_model.pth, annotators/facenet.pth"}


def test_a_file_of_another_network_is_refused_by_name(pose_models, tmp_path):
    folder = tmp_path / "annotators"
    folder.mkdir()
    for filename in POSE_FILES.values():
        (folder / filename).symlink_to(pose_models / "annotators" / filename)
    (folder / "facenet.pth").unlink()
    shutil.copy(pose_models / "annotators" / "hand_pose_model.pth", folder / "facenet.pth")
    with pytest.raises(ProtocolError) as err:
        preprocess_image("pose", np.zeros((32, 32, 3), np.uint8), Registry(tmp_path))
    assert err.value.code == "unsupported" and "facenet.pth" in err.value.message
    assert "wrong shape conv6_2_CPM.weight (22, 512, 1, 1) (expected (71, 512, 1, 1))" in err.value.message


def test_pose_loads_while_accelerate_makes_empty_models(pose_models, tmp_path):
    """The server loads diffusers models (accelerate's init_empty_weights patches torch.nn globally) on other
    threads while a pose job loads its networks: those must still get their weights."""
    from accelerate import init_empty_weights

    (tmp_path / "annotators").mkdir()
    for filename in POSE_FILES.values():  # another path: loaded afresh, not taken from the cache
        (tmp_path / "annotators" / filename).symlink_to(pose_models / "annotators" / filename)
    with init_empty_weights():
        out = preprocess_image("pose", np.zeros((40, 40, 3), np.uint8), Registry(tmp_path))
    assert out.shape == (40, 40, 3) and out.max() == 0


def test_hands_and_faces_are_looked_for_in_the_boxes_the_body_implies():
    """A known body in a picture, the hand and face networks (random weights, seen at a reduced size) run on the
    boxes beside its wrists and around its head: the body is drawn, and nothing outside those boxes and its limbs."""
    from server.preprocess.pose import draw_people, face_heatmaps, hand_heatmaps

    nets = {part: posenet.network(part, random_state(part, i)) for i, part in enumerate(("hand", "face"))}
    crop = np.random.default_rng(1).integers(0, 255, (50, 50, 3), dtype=np.uint8)
    assert hand_heatmaps(nets["hand"], crop, sides=(32, 48)).shape == (50, 50, 22)
    assert face_heatmaps(nets["face"], crop, seen_side=32).shape == (50, 50, 71)
    bgr = np.random.default_rng(2).integers(0, 255, (320, 240, 3), dtype=np.uint8)
    person = posedecode.Person([tuple(map(float, j)) for j in JOINTS])
    image = draw_people(nets, bgr, [person], hand_sides=(32,), face_side=32)
    assert image.shape == (320, 240, 3)
    for part in (9, 10, 12, 13):  # knees and ankles, away from the hands and the face
        assert tuple(image[JOINTS[part][1], JOINTS[part][0]]) == posedraw.BODY_COLOURS[part]
    allowed = np.zeros((320, 240), np.uint8)
    for a, b in posedecode.LIMBS[:17]:
        cv2.line(allowed, JOINTS[a], JOINTS[b], 1, thickness=16)
    for x, y, side in posedecode.hand_boxes(person, 240, 320) + [posedecode.face_box(person, 240, 320)]:
        allowed[max(0, y - 5) : y + side + 5, max(0, x - 5) : x + side + 5] = 1  # a drawn point reaches 4 px out
    assert image[allowed == 0].max() == 0
