"""The three OpenPose networks of ControlNet's OpenPose annotator, defined from the published weight files' layout.

``body_pose_model.pth`` (CMU's 18-keypoint COCO body model), ``hand_pose_model.pth`` (CMU's 21-keypoint hand model)
and ``facenet.pth`` (the 70-landmark face model built like the hand model), as lllyasviel/Annotators publishes them.
Each is a VGG-like trunk (3x3 convolutions, three 2x2 max pools: stride 8) and six cascaded stages; a stage after the
first sees the previous stage's maps beside the trunk's features. Every tensor is named as in the published file
(``conv1_1.weight``, ``Mconv7_stage6_L2.bias``, ...): a network runs on a file's tensors as they are. The networks take
BGR pictures scaled as ``pixel / 256 - 0.5``, N x 3 x H x W.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

POOL = "pool"
Conv = Tuple[str, int, int, int]  # name, input channels, output channels, kernel size (stride 1, "same" padding)
Layer = Union[Conv, str]

BODY_PARTS = 18  # nose, neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right hip/knee/ankle, left
# hip/knee/ankle, right eye, left eye, right ear, left ear; the body heatmaps add a background channel (19)
BODY_PAF = 38  # 19 limbs x (x, y) part affinity fields
HAND_PARTS = 21  # wrist, then four joints for each finger from the thumb; the heatmaps add a background channel
FACE_PARTS = 70  # the 68 face landmarks and two pupils; the heatmaps add a background channel
STAGES = 6


def _trunk(tail: Sequence[Conv]) -> List[Layer]:
    """The shared VGG start (conv1_1 ... conv4_2, three pools) followed by the network's own ``tail``."""
    return [
        ("conv1_1", 3, 64, 3),
        ("conv1_2", 64, 64, 3),
        POOL,
        ("conv2_1", 64, 128, 3),
        ("conv2_2", 128, 128, 3),
        POOL,
        ("conv3_1", 128, 256, 3),
        ("conv3_2", 256, 256, 3),
        ("conv3_3", 256, 256, 3),
        ("conv3_4", 256, 256, 3),
        POOL,
        ("conv4_1", 256, 512, 3),
        ("conv4_2", 512, 512, 3),
        *tail,
    ]


def _refinement(stage: int, suffix: str, cin: int, out: int) -> List[Conv]:
    """One refinement stage: five 7x7 convolutions, a 1x1, and a 1x1 to the ``out`` maps."""
    layers: List[Conv] = [(f"Mconv1_stage{stage}{suffix}", cin, 128, 7)]
    layers += [(f"Mconv{i}_stage{stage}{suffix}", 128, 128, 7) for i in range(2, 6)]
    return layers + [(f"Mconv6_stage{stage}{suffix}", 128, 128, 1), (f"Mconv7_stage{stage}{suffix}", 128, out, 1)]


class Spec:
    """A cascade network's layout: its trunk, and per output branch the convolutions of each of the six stages."""

    def __init__(self, trunk: List[Layer], branches: Dict[str, List[List[Conv]]]) -> None:
        self.trunk = trunk
        self.branches = branches

    def convs(self) -> List[Conv]:
        """Every convolution, trunk first."""
        out = [layer for layer in self.trunk if layer != POOL]
        for stages in self.branches.values():
            for stage in stages:
                out += stage
        return out

    def state_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Every tensor name of the published file with its shape."""
        shapes: Dict[str, Tuple[int, ...]] = {}
        for name, cin, cout, k in self.convs():
            shapes[f"{name}.weight"] = (cout, cin, k, k)
            shapes[f"{name}.bias"] = (cout,)
        return shapes


def body_spec() -> Spec:
    """The body model: a trunk ending in 256 and 128 channels; branch L1 the part affinity fields (38), L2 the
    keypoint heatmaps (19); a refinement stage sees both branches' maps and the trunk's 128 channels (185)."""
    trunk = _trunk([("conv4_3_CPM", 512, 256, 3), ("conv4_4_CPM", 256, 128, 3)])
    branches = {}
    for suffix, out in (("_L1", BODY_PAF), ("_L2", BODY_PARTS + 1)):
        first: List[Conv] = [(f"conv5_{i}_CPM{suffix}", 128, 128, 3) for i in (1, 2, 3)]
        first += [(f"conv5_4_CPM{suffix}", 128, 512, 1), (f"conv5_5_CPM{suffix}", 512, out, 1)]
        cin = 128 + BODY_PAF + BODY_PARTS + 1
        branches[suffix] = [first] + [_refinement(t, suffix, cin, out) for t in range(2, STAGES + 1)]
    return Spec(trunk, branches)


def _keypoint_spec(out: int) -> Spec:
    """The hand and face models: a deeper trunk (conv4_3 ... conv5_2 at 512, conv5_3_CPM to 128) and one branch of
    ``out`` heatmaps; a refinement stage sees them and the trunk's 128 channels."""
    trunk = _trunk(
        [
            ("conv4_3", 512, 512, 3),
            ("conv4_4", 512, 512, 3),
            ("conv5_1", 512, 512, 3),
            ("conv5_2", 512, 512, 3),
            ("conv5_3_CPM", 512, 128, 3),
        ]
    )
    first: List[Conv] = [("conv6_1_CPM", 128, 512, 1), ("conv6_2_CPM", 512, out, 1)]
    return Spec(trunk, {"": [first] + [_refinement(t, "", 128 + out, out) for t in range(2, STAGES + 1)]})


def hand_spec() -> Spec:
    """The hand model: 21 keypoint heatmaps and a background map."""
    return _keypoint_spec(HAND_PARTS + 1)


def face_spec() -> Spec:
    """The face model: 70 landmark heatmaps and a background map."""
    return _keypoint_spec(FACE_PARTS + 1)


SPECS = {"body": body_spec, "hand": hand_spec, "face": face_spec}


class Cascade:
    """A ``Spec`` run on a state dict with the published file's names (torch tensors, one device and dtype).
    Calling it returns the last stage's maps, one tensor per branch (body: PAFs, heatmaps; hand and face: heatmaps),
    at 1/8 scale. Plain tensors, no ``nn.Module``: nothing here can be swapped for empty (meta) parameters while
    another thread loads a diffusers model under accelerate's ``init_empty_weights``."""

    def __init__(self, spec: Spec, state: Dict[str, "object"]) -> None:
        self.spec = spec
        self.state = state
        self.kernel = {name: k for name, _cin, _cout, k in spec.convs()}

    def _conv(self, name: str, x):
        from torch.nn import functional as F

        return F.conv2d(x, self.state[f"{name}.weight"], self.state[f"{name}.bias"], padding=self.kernel[name] // 2)

    def _stage(self, layers: List[Conv], x):
        from torch.nn import functional as F

        for i, (name, *_shape) in enumerate(layers):
            x = self._conv(name, x)
            if i < len(layers) - 1:  # every convolution but a stage's last is followed by a ReLU
                x = F.relu(x)
        return x

    def __call__(self, x) -> list:
        import torch
        from torch.nn import functional as F

        for layer in self.spec.trunk:
            x = F.max_pool2d(x, 2, 2) if layer == POOL else F.relu(self._conv(layer[0], x))
        features = x
        outputs: Optional[list] = None
        for stage in range(STAGES):
            inputs = features if outputs is None else torch.cat([*outputs, features], dim=1)
            outputs = [self._stage(stages[stage], inputs) for stages in self.spec.branches.values()]
        return outputs


def network(kind: str, state: dict) -> Cascade:
    """The ``kind`` network ("body", "hand", "face") on ``state`` (its tensors, already checked against the spec)."""
    return Cascade(SPECS[kind](), state)
