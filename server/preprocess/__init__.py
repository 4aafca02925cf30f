"""ControlNet preprocessors: turn a picture into the control image a ControlNet expects.

Two entry points: ``preprocess_image`` (used by the diffusion engine for a control sent with ``preprocess: true``) and
``PreprocessEngine`` (mode ``preprocess``: the control image comes back as a layer the painter can edit and reuse).

Built in, no weights: canny, lineart, scribble, shuffle, tile, inpaint, reference (the image itself). With annotator
weights in ``<models>/annotators/``: depth, normal (derived from depth), softedge (HED, ``ControlNetHED.pth``), pose
(OpenPose body, hands and face: ``body_pose_model.pth``, ``hand_pose_model.pth``, ``facenet.pth``). Known by name with
the file they need, not run by this server: lineart_anime, lineart_realistic, mlsd.
"""

from __future__ import annotations

import secrets
from typing import List, Optional

import numpy as np

from protocol.errors import BAD_REQUEST, ProtocolError

from ..core import Engine, Job, JobContext, Layer
from ..imageops import rgba
from . import annotators, classical
from . import pose as openpose
from .classical import inpaint_condition

__all__ = [
    "PREPROCESSORS",
    "NOT_RUN",
    "ALIASES",
    "PreprocessEngine",
    "available_preprocessors",
    "canonical_name",
    "preprocess_image",
    "inpaint_condition",
]

BUILT_IN = ("canny", "lineart", "scribble", "shuffle", "tile", "inpaint", "reference")
WITH_WEIGHTS = ("depth", "normal") + tuple(annotators.WEIGHT_FILES)
PREPROCESSORS = BUILT_IN + WITH_WEIGHTS
NOT_RUN = ("lineart_anime", "lineart_realistic", "mlsd")  # known by the file they need; this server does not run them

ALIASES = {
    "lineart_standard": "lineart",
    "scribble_xdog": "scribble",
    "content_shuffle": "shuffle",
    "tile_resample": "tile",
    "inpaint_only": "inpaint",
    "depth_anything": "depth",
    "midas": "depth",
    "normal_map": "normal",
    "hed": "softedge",
    "pidinet": "softedge",
    "openpose": "pose",
    "dwpose": "pose",
    "lineart_coarse": "lineart_realistic",
}


def available_preprocessors(registry) -> List[dict]:
    """Every preprocessor with whether it can run now: ``{name, ready, needs}`` (``needs``: what to install, or "")."""
    out = []
    depth_ready = annotators.find_depth_model(registry) is not None
    softedge_ready = annotators.find_softedge_weights(registry) is not None
    for name in PREPROCESSORS:
        if name in BUILT_IN:
            ready, needs = True, ""
        elif name in ("depth", "normal"):
            ready = depth_ready
            needs = "" if ready else f"{annotators.ANNOTATORS_DIR}/{annotators.DEPTH_FOLDER}/"
        elif name == "softedge":
            ready = softedge_ready
            needs = "" if ready else f"{annotators.ANNOTATORS_DIR}/{annotators.WEIGHT_FILES[name]}"
        elif name == "pose":
            missing = openpose.find_weights(registry)[1]
            ready = not missing
            needs = ", ".join(f"{annotators.ANNOTATORS_DIR}/{f}" for f in missing)
        else:
            ready, needs = False, f"{annotators.ANNOTATORS_DIR}/{annotators.WEIGHT_FILES[name]}"
        out.append({"name": name, "ready": ready, "needs": needs})
    return out


def canonical_name(kind: str) -> str:
    """The preprocessor a name stands for (aliases resolved); bad_request naming the choices when unknown."""
    name = kind.strip().lower().replace("-", "_").replace(" ", "_")
    name = ALIASES.get(name, name)
    if name not in PREPROCESSORS:
        raise ProtocolError(
            BAD_REQUEST,
            f"unknown preprocessor {kind!r}; choose one of {', '.join(PREPROCESSORS)}",
            field="params.preprocessor",
        )
    return name


def preprocess_image(
    kind: str,
    rgb: np.ndarray,
    registry,
    *,
    low_threshold: int = 100,
    high_threshold: int = 200,
    seed: int = 0,
    mask: Optional[np.ndarray] = None,
    tile_downscale: float = 1.0,
    tile_blur: float = 0.0,
    device: str = "cpu",
) -> np.ndarray:
    """The control image (H x W x 3 uint8, same size as ``rgb``) of preprocessor ``kind``.

    ``rgb`` is H x W x 3 uint8; an H x W x 4 RGBA layer is flattened over white first (a sketch on a transparent
    layer reads as lines on paper). Options: ``low_threshold``/``high_threshold`` (canny), ``seed`` (shuffle; < 0
    counts as 0), ``mask`` (H x W uint8, inpaint), ``tile_downscale``/``tile_blur`` (tile). ``registry`` locates
    annotator weights; annotator networks (depth, normal, soft edge, pose) run on ``device`` (a torch device string).
    """
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.dtype != np.uint8:
        raise ProtocolError(BAD_REQUEST, f"a preprocessor needs an H x W x 3 uint8 image, got {rgb.shape} {rgb.dtype}")
    rgb = flatten_on_white(rgb) if rgb.shape[2] == 4 else np.ascontiguousarray(rgb)
    name = canonical_name(kind)
    if name == "canny":
        out = classical.canny(rgb, int(low_threshold), int(high_threshold))
    elif name == "lineart":
        out = classical.lineart(rgb)
    elif name == "scribble":
        out = classical.scribble(rgb)
    elif name == "shuffle":
        out = classical.shuffle(rgb, max(0, int(seed)))
    elif name == "tile":
        out = classical.tile(rgb, float(tile_downscale), float(tile_blur))
    elif name == "inpaint":
        if mask is not None and mask.shape != rgb.shape[:2]:
            raise ProtocolError(
                BAD_REQUEST,
                f"the inpaint mask is {mask.shape[1]}x{mask.shape[0]} but the image is {rgb.shape[1]}x{rgb.shape[0]}",
                field="mask",
            )
        out = classical.inpaint(rgb, mask)
    elif name == "reference":
        out = rgb.copy()
    elif name == "depth":
        out = annotators.depth(rgb, registry, device)
    elif name == "normal":
        out = annotators.normal(rgb, registry, device)
    elif name == "softedge":
        out = annotators.softedge(rgb, registry, device)
    elif name == "pose":
        out = openpose.pose(rgb, registry, device)
    else:
        annotators.needs_weights(name, registry)
        raise AssertionError("unreachable")
    assert out.shape == rgb.shape, f"{name} returned {out.shape} for {rgb.shape}"
    return out


def flatten_on_white(image: np.ndarray) -> np.ndarray:
    """RGBA over white as RGB: a sketch on a transparent layer reads as lines on paper."""
    image = rgba(image)
    a = image[..., 3:4].astype(np.float32) / 255.0
    rgb = image[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


class PreprocessEngine(Engine):
    """Mode ``preprocess``: one opaque layer "Control: <kind>" at (job.x, job.y), the size of the job's image."""

    name = "preprocess"
    modes = ("preprocess",)

    def __init__(self, registry, device: str = "cpu") -> None:
        self.registry = registry
        self.device = device

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        if job.mode not in self.modes:
            raise self.refuse_mode(job)
        if job.image is None:
            raise ProtocolError(BAD_REQUEST, "mode 'preprocess' needs an image", field="image")
        params = job.params
        name = canonical_name(params.preprocessor)
        seed = params.seed if params.seed >= 0 else secrets.randbelow(2**31)
        ctx.progress(0, 1)
        # One long call (several seconds for line art of a large image): waited for interruptibly.
        control = ctx.interruptible(
            preprocess_image,
            name,
            job.image,
            self.registry,
            low_threshold=params.low_threshold,
            high_threshold=params.high_threshold,
            seed=seed,
            mask=job.mask,
            device=self.device,
        )
        ctx.progress(1, 1)
        return [
            Layer(
                name=f"Control: {name}",
                rgba=rgba(control),
                x=job.x,
                y=job.y,
                seed=seed if name == "shuffle" else -1,
                info={"preprocessor": name},
            )
        ]
