"""Preprocessors that need annotator weights, found in the models folder's ``annotators/`` subfolder.

Depth runs a depth-estimation model through transformers (Depth Anything V2 as published in the transformers format:
a folder with ``config.json``, ``model.safetensors`` and ``preprocessor_config.json``); normal maps are derived from
that depth. Soft edge runs lllyasviel's ControlNet 1.1 HED annotator (``ControlNetHED.pth`` from lllyasviel/Annotators,
or the same tensors as ``ControlNetHED.safetensors``) on a small network defined here; the ``.pth`` is read with torch's
weights-only loader, never unpickled. Pose runs ControlNet's OpenPose networks (``pose.py``). The other annotators
(anime/realistic line art, M-LSD) are named with the file they need, so a painter knows exactly what is missing.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from protocol.errors import ProtocolError

from ..models.cache import LastLoaded

ANNOTATORS_DIR = "annotators"
DEPTH_FOLDER = "Depth-Anything-V2-Small-hf"
DEPTH_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
DEPTH_MODEL_TYPES = ("depth_anything", "dpt", "zoedepth", "depth_pro", "glpn", "prompt_depth_anything")

# The ControlNet 1.1 annotators Paintbridge knows by the weights file they need. Of these softedge and pose run here
# (``softedge``; ``pose.py``, which needs the hand and face files as well); the others answer ``unsupported`` when
# their file is installed.
WEIGHT_FILES = {
    "softedge": "ControlNetHED.pth",
    "pose": "body_pose_model.pth",
    "lineart_anime": "netG.pth",
    "lineart_realistic": "sk_model.pth",
    "mlsd": "mlsd_large_512_fp32.pth",
}


def model_roots(registry) -> List[Path]:
    """The registry's model folders (empty when there is no registry)."""
    if registry is None:
        return []
    for attr in ("dirs", "model_dirs", "roots"):
        dirs = getattr(registry, attr, None)
        if dirs:
            return [Path(d) for d in dirs]
    return []


def where(registry) -> str:
    """The annotators folder of the first models folder, for messages."""
    roots = model_roots(registry)
    return str(roots[0] / ANNOTATORS_DIR) if roots else f"<models folder>/{ANNOTATORS_DIR}"


def find_depth_model(registry) -> Optional[Path]:
    """The first folder under ``annotators/`` holding a transformers depth-estimation model in safetensors."""
    for root in model_roots(registry):
        base = root / ANNOTATORS_DIR
        if not base.is_dir():
            continue
        candidates = sorted(p for p in base.iterdir() if p.is_dir())
        candidates.sort(key=lambda p: p.name != DEPTH_FOLDER)
        for folder in candidates:
            config = folder / "config.json"
            if not (config.is_file() and (folder / "model.safetensors").is_file()):
                continue
            try:
                model_type = json.loads(config.read_text()).get("model_type")
            except (OSError, ValueError):
                continue
            if model_type in DEPTH_MODEL_TYPES:
                return folder
    return None


def load_depth(weights: Path, device: str = "cpu") -> tuple:
    """The depth network (transformers, from the folder of ``weights``) on ``device`` and its image processor."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    folder = weights.parent
    try:
        model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ProtocolError("model_not_found", f"the depth model in {folder} cannot be loaded: {err}") from err
    return model.to(device).eval(), processor


_depth_models: LastLoaded = LastLoaded(load_depth)


def depth(rgb: np.ndarray, registry, device: str = "cpu") -> np.ndarray:
    """Relative depth, near = white, far = black (the depth ControlNet's convention), same size as ``rgb``."""
    return _rgb(_depth_map(rgb, registry, device))


def _depth_map(rgb: np.ndarray, registry, device: str = "cpu") -> np.ndarray:
    import torch

    folder = find_depth_model(registry)
    if folder is None:
        raise ProtocolError(
            "model_not_found",
            f"the 'depth' preprocessor needs a depth model: put the Depth Anything V2 Small model in the transformers "
            f"format ({', '.join(DEPTH_FILES)} from depth-anything/{DEPTH_FOLDER}) into the folder "
            f"{where(registry)}/{DEPTH_FOLDER}/",
        )
    model, processor = _depth_models.get(folder / "model.safetensors", device)
    inputs = processor(images=rgb, return_tensors="pt").to(device)
    with torch.inference_mode():
        predicted = model(**inputs).predicted_depth
    pred = predicted.reshape(1, 1, *predicted.shape[-2:]).float()
    pred = torch.nn.functional.interpolate(pred, size=rgb.shape[:2], mode="bicubic", align_corners=False)[0, 0]
    values = pred.cpu().numpy()
    if getattr(model.config, "depth_estimation_type", "relative") == "metric":
        values = -values  # metric models give distance; ControlNet wants nearness
    lo, hi = float(np.percentile(values, 0.5)), float(np.percentile(values, 99.5))
    if not hi > lo:
        return np.zeros(rgb.shape[:2], np.uint8)  # no depth differences at all: a flat plane
    scaled = (values - lo) / (hi - lo)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def normal(rgb: np.ndarray, registry, device: str = "cpu") -> np.ndarray:
    """A normal map derived from the depth model's depth (R = x to the right, G = y up, B = towards the viewer)."""
    near = _depth_map(rgb, registry, device).astype(np.float32) / 255.0
    h, w = near.shape
    # Nearness as a height field whose height spans about a quarter of the image's larger side.
    relief = max(h, w) * 0.25
    near = cv2.GaussianBlur(near, (0, 0), sigmaX=max(1.0, max(h, w) / 256.0))
    dx = cv2.Sobel(near, cv2.CV_32F, 1, 0, ksize=3) / 8.0 * relief
    dy = cv2.Sobel(near, cv2.CV_32F, 0, 1, ksize=3) / 8.0 * relief
    n = np.stack([-dx, dy, np.ones_like(near)], axis=2)
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    return np.clip(np.rint((n * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)


# --- soft edge: lllyasviel's ControlNetHED annotator ------------------------------------------------------------------

SOFTEDGE_FILES = ("ControlNetHED.safetensors", "ControlNetHED.pth")  # the safetensors copy wins when both are there
# The network's five conv blocks on a VGG-like pyramid: (input channels, output channels, number of 3x3 convolutions).
# Each block but the first starts with a 2x2 max pool, and ends with a 1x1 projection to one channel.
HED_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))
SOFTEDGE_SHORT_SIDE = 512  # the network sees pictures with the short side at most this (ControlNet's detect resolution)
SOFTEDGE_MIN_SIDE = 64  # and at least this, so that the coarsest level (1/16) still has a few pixels


def hed_state_shapes() -> Dict[str, Tuple[int, ...]]:
    """Every tensor name of the ControlNetHED state dict with its shape (the file's layout, without torch)."""
    shapes: Dict[str, Tuple[int, ...]] = {"norm": (1, 3, 1, 1)}
    for b, (cin, cout, convs) in enumerate(HED_BLOCKS, start=1):
        for i in range(convs):
            shapes[f"block{b}.convs.{i}.weight"] = (cout, cin if i == 0 else cout, 3, 3)
            shapes[f"block{b}.convs.{i}.bias"] = (cout,)
        shapes[f"block{b}.projection.weight"] = (1, cout, 1, 1)
        shapes[f"block{b}.projection.bias"] = (1,)
    return shapes


@functools.lru_cache(maxsize=None)
def _hed_classes():
    """The network's torch classes, made on first use (importing this module does not import torch)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class HEDBlock(nn.Module):
        """3x3 conv + ReLU, ``convs`` times (after a 2x2 max pool unless first), and a 1x1 projection to 1 channel."""

        def __init__(self, cin: int, cout: int, convs: int, pool: bool) -> None:
            super().__init__()
            self.pool = pool
            self.convs = nn.Sequential(*(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(convs)))
            self.projection = nn.Conv2d(cout, 1, 1)

        def forward(self, x):
            if self.pool:
                x = F.max_pool2d(x, 2, 2)
            for conv in self.convs:
                x = F.relu(conv(x))
            return x, self.projection(x)

    class ControlNetHED(nn.Module):
        """lllyasviel's "ControlNetHED_Apache2": input minus a learned per-channel offset (``norm``), then five
        ``HEDBlock``s; ``forward`` returns their five one-channel projections (logits at 1, 1/2, ... 1/16 scale).
        The input is RGB in 0..255 (not scaled to 0..1), N x 3 x H x W."""

        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
            for b, (cin, cout, convs) in enumerate(HED_BLOCKS, start=1):
                setattr(self, f"block{b}", HEDBlock(cin, cout, convs, pool=b > 1))

        def forward(self, x):
            h = x - self.norm
            projections = []
            for b in range(1, len(HED_BLOCKS) + 1):
                h, p = getattr(self, f"block{b}")(h)
                projections.append(p)
            return projections

    return ControlNetHED


def hed_network():
    """A new ControlNetHED network (random weights, float32, CPU, train mode as torch makes it)."""
    return _hed_classes()()


def find_softedge_weights(registry) -> Optional[Path]:
    """The first ControlNetHED weights file under a models folder's ``annotators/`` (safetensors before .pth)."""
    for root in model_roots(registry):
        for filename in SOFTEDGE_FILES:
            path = root / ANNOTATORS_DIR / filename
            if path.is_file():
                return path
    return None


def load_hed(path: Path, device: str = "cpu"):
    """The ControlNetHED network with the weights at ``path`` (.safetensors, or .pth read weights-only), float32,
    eval mode, on ``device``. A file whose tensors are not exactly the HED annotator's is ``unsupported``."""
    from ..models.weights import read_state_dict

    state = read_state_dict(path, what="soft-edge annotator")
    check_tensors(
        state,
        hed_state_shapes(),
        path,
        "lllyasviel's ControlNetHED soft-edge annotator (ControlNetHED.pth from lllyasviel/Annotators)",
    )
    net = hed_network()
    net.load_state_dict({k: v.float() for k, v in state.items()})  # the published file is float16
    return net.to(device).eval()


_hed_models: LastLoaded = LastLoaded(load_hed)


def softedge(rgb: np.ndarray, registry, device: str = "cpu") -> np.ndarray:
    """HED soft edges, white on black, same size as ``rgb`` (H x W x 3 uint8), as ControlNet 1.1's softedge_hed.

    The network sees the picture with its short side brought down to 512 px (or up to 64 px for tiny pictures); each
    of its five projections is resized to the size it saw, the edge map is the sigmoid of their mean, and that map is
    resized back to the picture's size. Runs on ``device`` (the server passes its torch device).
    """
    path = find_softedge_weights(registry)
    if path is None:
        raise ProtocolError(
            "model_not_found",
            f"the 'softedge' preprocessor needs the annotator weights {WEIGHT_FILES['softedge']} (from "
            f"lllyasviel/Annotators), which are not installed: put the file at {where(registry)}/"
            f"{WEIGHT_FILES['softedge']} (or the same tensors as {SOFTEDGE_FILES[0]})",
            field="params.preprocessor",
        )
    import torch
    from torch.nn import functional as F

    net = _hed_models.get(path, device)
    h, w = rgb.shape[:2]
    short, long = min(h, w), max(h, w)
    if short >= SOFTEDGE_MIN_SIDE:
        scale = min(1.0, SOFTEDGE_SHORT_SIDE / short)
    else:  # tiny: scaled up, but a thin strip no longer than 4x the network's size
        scale = max(1.0, min(SOFTEDGE_MIN_SIDE / short, 4 * SOFTEDGE_SHORT_SIDE / long))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    seen = rgb if size == (w, h) else cv2.resize(rgb, size, interpolation=resample)
    sh, sw = seen.shape[:2]
    # Four 2x2 poolings need 16 px a side; a thinner strip is extended by repeating its border, and cut back after.
    seen = cv2.copyMakeBorder(seen, 0, max(0, 16 - sh), 0, max(0, 16 - sw), cv2.BORDER_REPLICATE)
    x = torch.from_numpy(np.ascontiguousarray(seen)).to(device).permute(2, 0, 1).unsqueeze(0).float()
    with torch.inference_mode():
        projections = net(x)
        logits = torch.stack(
            [
                F.interpolate(p.float(), size=seen.shape[:2], mode="bilinear", align_corners=False)[0, 0]
                for p in projections
            ]
        )
        edge = torch.sigmoid(logits.mean(dim=0))[:sh, :sw].cpu().numpy().astype(np.float32)
    if (sh, sw) != (h, w):
        edge = cv2.resize(edge, (w, h), interpolation=cv2.INTER_AREA if sh > h else cv2.INTER_LINEAR)
    gray = (edge * 255.0).clip(0, 255).astype(np.uint8)  # truncated like the reference preprocessor
    return _rgb(gray)


def check_tensors(state: dict, expected: Dict[str, Tuple[int, ...]], path: Path, what: str) -> None:
    """``unsupported`` naming the first missing, unexpected and wrongly shaped tensors unless ``state`` holds exactly
    the ``expected`` names and shapes; ``what`` says what the file should have been."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state and tuple(getattr(state[k], "shape", ())) != expected[k]
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                missing and f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}",
                unexpected and f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}",
                wrong and f"wrong shape {', '.join(wrong[:4])}",
            )
            if part
        )
        raise ProtocolError("unsupported", f"{path} is not {what}: {details}", field="params.preprocessor")


def needs_weights(kind: str, registry) -> None:
    """Raise the error of an annotator this server does not run (anime/realistic line art, M-LSD): missing →
    model_not_found naming the file and folder; present → unsupported (this server version does not run it)."""
    filename = WEIGHT_FILES[kind]
    for root in model_roots(registry):
        path = root / ANNOTATORS_DIR / filename
        if path.is_file():
            raise ProtocolError(
                "unsupported",
                f"the '{kind}' preprocessor ({path}) is not built into this Paintbridge server yet; make the {kind} "
                f"control image elsewhere and send it with 'preprocess' off",
                field="params.preprocessor",
            )
    raise ProtocolError(
        "model_not_found",
        f"the '{kind}' preprocessor needs the annotator weights {filename} (from lllyasviel/Annotators), "
        f"which are not installed: put the file at {where(registry)}/{filename}",
        field="params.preprocessor",
    )


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)
