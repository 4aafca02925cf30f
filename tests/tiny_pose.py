"""Constructed weights for the pose preprocessor: the three OpenPose networks at their real layer shapes (about 250 MB
in float16), written once into a models folder of the test cache as lllyasviel/Annotators names the files.

Random weights, except the body model's last heatmap layer: zero weights and a negative bias, so the body model finds
nobody in any picture and the pose image is black (a fast, deterministic run of the whole preprocessor, as in the
real-host tests); what a found skeleton looks like is tested on constructed heatmaps and fields instead.
"""

from __future__ import annotations

from pathlib import Path

from server.preprocess.pose import POSE_FILES


def pose_state(part: str, seed: int) -> dict:
    """Random weights of the ``part`` network ("body", "hand", "face"), float16; the body's heatmaps all negative."""
    import torch

    from server.preprocess import posenet

    torch.manual_seed(seed)
    net = posenet.network(part)
    if part == "body":
        with torch.no_grad():
            net.Mconv7_stage6_L2.weight.zero_()
            net.Mconv7_stage6_L2.bias.fill_(-1.0)
    return {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}


def build_pose_models(models: Path) -> Path:
    """``models/annotators/`` with the three pose files (made once; a half-written file never has the real name)."""
    import torch

    folder = models / "annotators"
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (part, filename) in enumerate(POSE_FILES.items()):
        path = folder / filename
        if not path.is_file():
            tmp = path.with_name(path.name + ".partial")
            torch.save(pose_state(part, seed), str(tmp))
            tmp.rename(path)
    return models
