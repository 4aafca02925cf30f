"""Preprocessors that need annotator weights, found in the models folder's ``annotators/`` subfolder.

Depth runs a depth-estimation model through transformers (Depth Anything V2 as published in the transformers format:
a folder with ``config.json``, ``model.safetensors`` and ``preprocessor_config.json``); normal maps are derived from
that depth. Only safetensors weights are read. The other annotators (soft edge, pose, anime/realistic line art, M-LSD)
are named with the file they need, so a painter knows exactly what is missing.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from ..engines.base import EngineError

ANNOTATORS_DIR = "annotators"
DEPTH_FOLDER = "Depth-Anything-V2-Small-hf"
DEPTH_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
DEPTH_MODEL_TYPES = ("depth_anything", "dpt", "zoedepth", "depth_pro", "glpn", "prompt_depth_anything")

# Preprocessors whose annotator weights Paintbridge knows by name but does not run (the ControlNet 1.1 annotators).
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


def _where(registry) -> str:
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


class _DepthModels:
    """Keeps the last depth model loaded (transformers model + its image processor)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[Tuple] = None
        self._loaded: Optional[tuple] = None

    def get(self, folder: Path):
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        weights = folder / "model.safetensors"
        key = (str(folder), weights.stat().st_mtime_ns)
        with self._lock:
            if self._key != key:
                try:
                    model = AutoModelForDepthEstimation.from_pretrained(
                        folder, local_files_only=True, use_safetensors=True)
                    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
                except (OSError, ValueError, KeyError) as err:
                    raise EngineError("model_not_found",
                                      f"the depth model in {folder} cannot be loaded: {err}") from err
                self._loaded, self._key = (model.eval(), processor), key
            return self._loaded


_depth_models = _DepthModels()


def depth(rgb: np.ndarray, registry) -> np.ndarray:
    """Relative depth, near = white, far = black (the depth ControlNet's convention), same size as ``rgb``."""
    return _rgb(_depth_map(rgb, registry))


def _depth_map(rgb: np.ndarray, registry) -> np.ndarray:
    import torch

    folder = find_depth_model(registry)
    if folder is None:
        raise EngineError(
            "model_not_found",
            f"the 'depth' preprocessor needs a depth model: put the Depth Anything V2 Small model in the transformers "
            f"format ({', '.join(DEPTH_FILES)} from depth-anything/{DEPTH_FOLDER}) into the folder "
            f"{_where(registry)}/{DEPTH_FOLDER}/",
        )
    model, processor = _depth_models.get(folder)
    inputs = processor(images=rgb, return_tensors="pt")
    with torch.inference_mode():
        predicted = model(**inputs).predicted_depth
    pred = predicted.reshape(1, 1, *predicted.shape[-2:]).float()
    pred = torch.nn.functional.interpolate(pred, size=rgb.shape[:2], mode="bicubic", align_corners=False)[0, 0]
    values = pred.numpy()
    if getattr(model.config, "depth_estimation_type", "relative") == "metric":
        values = -values  # metric models give distance; ControlNet wants nearness
    lo, hi = float(np.percentile(values, 0.5)), float(np.percentile(values, 99.5))
    if not hi > lo:
        return np.zeros(rgb.shape[:2], np.uint8)  # no depth differences at all: a flat plane
    scaled = (values - lo) / (hi - lo)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def normal(rgb: np.ndarray, registry) -> np.ndarray:
    """A normal map derived from the depth model's depth (R = x to the right, G = y up, B = towards the viewer)."""
    near = _depth_map(rgb, registry).astype(np.float32) / 255.0
    h, w = near.shape
    # Nearness as a height field whose height spans about a quarter of the image's larger side.
    relief = max(h, w) * 0.25
    near = cv2.GaussianBlur(near, (0, 0), sigmaX=max(1.0, max(h, w) / 256.0))
    dx = cv2.Sobel(near, cv2.CV_32F, 1, 0, ksize=3) / 8.0 * relief
    dy = cv2.Sobel(near, cv2.CV_32F, 0, 1, ksize=3) / 8.0 * relief
    n = np.stack([-dx, dy, np.ones_like(near)], axis=2)
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    return np.clip(np.rint((n * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)


def needs_weights(kind: str, registry) -> None:
    """Raise the error of an annotator that needs a weights file: missing → model_not_found naming the file and
    folder; present → unsupported (this server version does not run it)."""
    filename = WEIGHT_FILES[kind]
    for root in model_roots(registry):
        path = root / ANNOTATORS_DIR / filename
        if path.is_file():
            raise EngineError(
                "unsupported",
                f"the '{kind}' preprocessor ({path}) is not built into this Paintbridge server yet; make the {kind} "
                f"control image elsewhere and send it with 'preprocess' off",
                field="params.preprocessor",
            )
    raise EngineError(
        "model_not_found",
        f"the '{kind}' preprocessor needs the annotator weights {filename} (from lllyasviel/Annotators), "
        f"which are not installed: put the file at {_where(registry)}/{filename}",
        field="params.preprocessor",
    )


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)
