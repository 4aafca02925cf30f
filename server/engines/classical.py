"""The built-in classical engine: OpenCV inpainting (Telea, Navier-Stokes) for fill, object removal and outpaint.

Needs no weights, so the whole chain works on a fresh machine; its fills also pre-fill diffusion outpainting.
"""

from __future__ import annotations

from typing import List

import cv2
import numpy as np

from protocol.errors import UNSUPPORTED

from .. import imageops
from .base import EngineError, Job, JobContext, Layer

NAME = "classical"
MODES = ("inpaint", "outpaint")
# Holes are filled at most at this resolution, then scaled up: big fills stay fast and smooth.
MAX_FILL_SIDE = 768
_FLAGS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def fill(rgb: np.ndarray, mask: np.ndarray, method: str = "telea", radius: int = 5) -> np.ndarray:
    """Fill the non-zero area of ``mask`` in an H x W x 3 uint8 image from its surroundings; pixels outside stay exact."""
    flag = _FLAGS[method]
    hard = np.where(mask > 0, 255, 0).astype(np.uint8)
    if not hard.any():
        return rgb.copy()
    h, w = hard.shape
    scale = min(1.0, MAX_FILL_SIDE / float(max(h, w)))
    if scale >= 1.0:
        filled = cv2.inpaint(np.ascontiguousarray(rgb), hard, radius, flag)
    else:
        sw, sh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
        small_mask = cv2.dilate(cv2.resize(hard, (sw, sh), interpolation=cv2.INTER_NEAREST), np.ones((3, 3), np.uint8))
        small_filled = cv2.inpaint(small, small_mask, radius, flag)
        filled = cv2.resize(small_filled, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.where(hard[..., None] > 0, filled, rgb)


def _label(job: Job) -> str:
    return f"{job.mode} ({NAME}, {job.params['fill']})"


class ClassicalEngine:
    """Runs inpaint and outpaint jobs with OpenCV."""

    name = NAME

    def models(self) -> List[dict]:
        return [{"name": NAME, "kind": "builtin", "arch": "", "inpaint": True, "format": "builtin", "modes": list(MODES)}]

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        if job.mode not in MODES:
            raise EngineError(
                UNSUPPORTED,
                f"the built-in classical engine cannot do '{job.mode}': it does {', '.join(MODES)} and Lanczos upscale; "
                "install a diffusion checkpoint in the models folder for generate and img2img",
                field="mode",
            )
        ctx.progress(0, 1)
        x, y = job.x, job.y
        if job.mode == "outpaint":
            ext = job.params["extend"]
            image, mask = imageops.extend_canvas(job.image, ext)
            grown = soft = mask
            x, y = job.x - ext["left"], job.y - ext["top"]
        else:
            image = job.image
            grown, soft = imageops.prepare_mask(job)
        filled = fill(image[..., :3], grown, job.params["fill"])
        layer = imageops.composite_layer(image, filled, soft)
        ctx.progress(1, 1)
        return [Layer(name=_label(job), rgba=layer, x=x, y=y, seed=0, info={"engine": NAME})]
