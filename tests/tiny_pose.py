"""Constructed weights for the pose preprocessor: the three OpenPose networks at their real layer shapes (about 250 MB
in float16), written once into a models folder of the test cache as lllyasviel/Annotators names the files.

Random weights, except the body model's last heatmap layer: zero weights and a negative bias, so the body model finds
nobody in any picture and the pose image is black (a fast, deterministic run of the whole preprocessor, as in the
real-host tests); what a found skeleton looks like is tested on constructed heatmaps and fields instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from server.preprocess.pose import POSE_FILES


def random_state(part: str, seed: int) -> dict:
    """Random float32 weights of the ``part`` network ("body", "hand", "face"), drawn as torch initialises a
    convolution: uniform within 1 / sqrt(fan-in)."""
    import torch

    from server.preprocess import posenet

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in posenet.SPECS[part]().state_shapes().items():
        fan_in = 1
        for n in shape[1:] if name.endswith(".weight") else state[name[:-5] + ".weight"].shape[1:]:
            fan_in *= n
        state[name] = (torch.rand(shape, generator=gen) * 2 - 1) / fan_in**0.5
    return state


def pose_state(part: str, seed: int) -> dict:
    """``random_state`` in float16 (as the files are written); the body's heatmaps all negative."""
    state = random_state(part, seed)
    if part == "body":
        state["Mconv7_stage6_L2.weight"].zero_()
        state["Mconv7_stage6_L2.bias"].fill_(-1.0)
    return {k: v.half().contiguous() for k, v in state.items()}


def build_pose_models(models: Path) -> Path:
    """``models/annotators/`` with the three pose files (made once; a half-written file never has the real name)."""
    import torch

    folder = models / "annotators"
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (part, filename) in enumerate(POSE_FILES.items()):
        path = folder / filename
        if not path.is_file():
            tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")  # a process of its own: test workers
            torch.save(pose_state(part, seed), str(tmp))
            os.replace(tmp, path)
    return models
