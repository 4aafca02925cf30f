"""The detailer: find faces in an image, inpaint each one at the model's native area, blend it back softly.

Each detection becomes an inpaint sub-job on the crop around it (the detection grown by ``detail.padding`` px): the
engine scales that crop to the model's native area like any job, so a small face gets the model's full resolution,
and the result comes back through the crop's soft elliptical mask. Used on its own (mode ``detail``: the selection, or
the whole image) or after a generate/img2img/inpaint/outpaint job (``params.detail.enabled``).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from protocol.messages import Detail, Hires

from ..core import Job, JobContext, Layer
from ..detect import Detection

FACE_GROW = 0.12  # the inpainted ellipse covers the detection box grown by this fraction on each side
RunFn = Callable[[Job, JobContext], List[Layer]]  # the engine's own job runner (no lock taken)


@dataclasses.dataclass(frozen=True)
class Region:
    """One detection and the crop box (x0, y0, x1, y1) it is inpainted in, in the image's pixels."""

    detection: Detection
    box: Tuple[int, int, int, int]


class SpanContext(JobContext):
    """Reports a sub-job's steps as part of the whole job's count: ``offset + step`` of ``total``; shares the
    parent's cancellation. ``last`` keeps the sub-job's own (step, total)."""

    def __init__(self, parent: JobContext, offset: int = 0, total: Optional[int] = None) -> None:
        super().__init__(None)
        self.cancel_event = parent.cancel_event
        self.parent, self.offset, self.total = parent, offset, total
        self.last = (0, 0)

    def progress(self, step: int, total: int, preview=None) -> None:
        self.last = (step, total)
        grand = self.total if self.total is not None else self.offset + total
        self.parent.progress(min(self.offset + step, grand), grand, preview)


def regions(detections: Sequence[Detection], width: int, height: int, padding: int) -> List[Region]:
    """The crop of each detection: its box grown by ``padding`` px (at least a quarter of its size), clamped to the
    image."""
    out = []
    for d in detections:
        pad = max(padding, max(d.width, d.height) // 4)
        box = (max(0, d.x - pad), max(0, d.y - pad), min(width, d.x + d.width + pad), min(height, d.y + d.height + pad))
        out.append(Region(d, box))
    return out


def region_mask(region: Region) -> np.ndarray:
    """The crop's mask (gray8): a filled ellipse over the detection grown by ``FACE_GROW``; the engine feathers it."""
    import cv2

    x0, y0, x1, y1 = region.box
    d = region.detection
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    centre = (int(round(d.x - x0 + d.width / 2)), int(round(d.y - y0 + d.height / 2)))
    axes = (max(1, int(round(d.width * (0.5 + FACE_GROW)))), max(1, int(round(d.height * (0.5 + FACE_GROW)))))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1)
    return mask


def inside(detections: Sequence[Detection], mask: Optional[np.ndarray]) -> List[Detection]:
    """The detections whose centre lies where ``mask`` (the job's selection) is set; all of them without a mask."""
    if mask is None:
        return list(detections)
    return [
        d
        for d in detections
        if mask[min(mask.shape[0] - 1, d.y + d.height // 2), min(mask.shape[1] - 1, d.x + d.width // 2)] > 0
    ]


def steps_per_region(job: Job) -> int:
    """The denoising steps one region's inpaint runs (as diffusers counts them)."""
    d = job.params.detail
    steps = d.steps or job.params.steps
    return max(1, min(int(steps * max(d.strength, 1.0 / steps)), steps))


def crop_area(image: np.ndarray, origin: Tuple[int, int], box: Tuple[int, int, int, int]) -> np.ndarray:
    """The part of ``image`` (anchored at document point ``origin``) under the document box (x0, y0, x1, y1); what
    lies outside the image is zeros (no control, no mask) — as outpaint treats a control's new area."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0) + image.shape[2:], image.dtype)
    ox, oy = origin
    sx0, sy0 = max(x0 - ox, 0), max(y0 - oy, 0)
    sx1, sy1 = min(x1 - ox, image.shape[1]), min(y1 - oy, image.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - (y0 - oy) : sy1 - (y0 - oy), sx0 - (x0 - ox) : sx1 - (x0 - ox)] = image[sy0:sy1, sx0:sx1]
    return out


def crop_parts(job: Job, origin: Tuple[int, int], box: Tuple[int, int, int, int]) -> dict:
    """The job's control layers, reference masks and regions cut to a detection's crop (document box ``box``):
    controls keep guiding the face they drew, a masked reference or a region applies where it did, and one that
    does not reach the crop is left out. ``origin`` is where the job's own box (that of its controls) lies."""
    controls = [dataclasses.replace(c, image=crop_area(c.image, origin, box)) for c in job.controls]
    references = []
    for ref in job.references:
        mask = None if ref.mask is None else crop_area(ref.mask, origin, box)
        if mask is None or mask.any():
            references.append(ref if mask is None else dataclasses.replace(ref, mask=mask))
    regions = [dataclasses.replace(r, mask=m) for r in job.regions for m in [crop_area(r.mask, origin, box)] if m.any()]
    return {"controls": controls, "references": references, "regions": regions}


def detail_image(
    run: RunFn,
    job: Job,
    rgba: np.ndarray,
    found: Sequence[Detection],
    seed: int,
    ctx: JobContext,
    offset: int,
    origin: Optional[Tuple[int, int]] = None,
) -> Tuple[np.ndarray, np.ndarray, List[Layer]]:
    """Inpaint every detection of ``rgba`` (H x W x 4, placed at ``job.x``/``job.y``): the detailed RGBA, the alpha of
    what changed (H x W), and one layer per detection (at its crop, in the image's coordinates). The job's controls,
    reference masks and regions (anchored at ``origin``, default the image's place) are cut to each crop. Progress
    continues from ``offset``."""
    origin = origin if origin is not None else (job.x, job.y)
    d = job.params.detail
    h, w = rgba.shape[:2]
    out = rgba.copy()
    changed = np.zeros((h, w), np.uint8)
    per = steps_per_region(job)
    total = offset + per * len(found)
    layers = []
    for i, region in enumerate(regions(found, w, h, d.padding)):
        x0, y0, x1, y1 = region.box
        crop = np.ascontiguousarray(out[y0:y1, x0:x1])
        feather = max(2, min(region.detection.width, region.detection.height) // 6)
        params = dataclasses.replace(
            job.params,
            strength=max(d.strength, 1.0 / (d.steps or job.params.steps)),
            steps=d.steps or job.params.steps,
            batch=1,
            seed=(seed + i) % 2**32,
            grow=0,
            feather=feather,
            hires=Hires(),
            detail=Detail(),
        )
        sub = dataclasses.replace(
            job,
            mode="inpaint",
            image=crop,
            mask=region_mask(region),
            params=params,
            prompt=d.prompt or job.prompt,
            negative_prompt=d.negative_prompt or job.negative_prompt,
            x=job.x + x0,
            y=job.y + y0,
            **crop_parts(job, origin, (job.x + x0, job.y + y0, job.x + x1, job.y + y1)),
        )
        layer = run(sub, SpanContext(ctx, offset + i * per, total))[0]
        alpha = layer.rgba[..., 3:4].astype(np.float32) / 255.0
        part = out[y0:y1, x0:x1, :3].astype(np.float32)
        out[y0:y1, x0:x1, :3] = np.clip(np.rint(part + (layer.rgba[..., :3] - part) * alpha), 0, 255).astype(np.uint8)
        changed[y0:y1, x0:x1] = np.maximum(changed[y0:y1, x0:x1], layer.rgba[..., 3])
        det = region.detection
        layer.name = f"detail {det.target} {i + 1}/{len(found)} ({layer.seed})"
        layer.info.update(
            detection={"target": det.target, "box": [det.x, det.y, det.width, det.height], "score": det.score}
        )
        layers.append(layer)
    return out, changed, layers


def run_detail_mode(
    run: RunFn, detect: Callable[[np.ndarray, Sequence[str], float], List[Detection]], job: Job, ctx: JobContext
) -> List[Layer]:
    """Mode ``detail``: the detailer on the job's image (only detections inside its mask, when it has one). One layer
    over the job's box whose alpha is what changed, or one layer per detection with ``detail.separate``."""
    d = job.params.detail
    rgba = job.image
    found = inside(detect(np.ascontiguousarray(rgba[..., :3]), d.targets, d.confidence), job.mask)
    seed = job.params.seed if job.params.seed >= 0 else random.randrange(2**32)
    what = "/".join(d.targets)
    if not found:
        ctx.progress(1, 1)
        empty = rgba.copy()
        empty[..., 3] = 0
        return [
            Layer(name=f"detail: no {what} found", rgba=empty, x=job.x, y=job.y, seed=seed, info={"detections": []})
        ]
    out, changed, layers = detail_image(run, job, rgba, found, seed, ctx, 0)
    detections = [layer.info["detection"] for layer in layers]
    if d.separate:
        for layer in layers:
            layer.info["detections"] = detections
        return layers
    out[..., 3] = changed
    info = dict(layers[0].info, detections=detections)
    info.pop("detection", None)
    return [Layer(name=f"detail {len(found)} {what} ({seed})", rgba=out, x=job.x, y=job.y, seed=seed, info=info)]


def after_job(
    run: RunFn,
    detect: Callable[[np.ndarray, Sequence[str], float], List[Detection]],
    job: Job,
    layers: List[Layer],
    ctx: JobContext,
    offset: int,
) -> List[Layer]:
    """``params.detail`` after a job: every detection in each result layer's box (the whole box, as the finished
    image: also faces outside the job's mask) is inpainted; the layer is detailed in place (its alpha grows by what
    changed), or, with ``separate``, the job's layers come back unchanged followed by one layer per detection.
    Progress continues from ``offset``."""
    d = job.params.detail
    out_layers: List[Layer] = []
    extra: List[Layer] = []
    for layer in layers:
        found = detect(np.ascontiguousarray(layer.rgba[..., :3]), d.targets, d.confidence)
        if not found:
            layer.info["detections"] = []
            out_layers.append(layer)
            continue
        base = dataclasses.replace(job, x=layer.x, y=layer.y)
        detailed, changed, parts = detail_image(run, base, layer.rgba, found, layer.seed, ctx, offset, (job.x, job.y))
        offset += steps_per_region(job) * len(found)
        detections = [p.info["detection"] for p in parts]
        layer.info["detections"] = detections
        if d.separate:
            out_layers.append(layer)
            extra.extend(parts)
        else:
            detailed[..., 3] = np.maximum(layer.rgba[..., 3], changed)
            out_layers.append(dataclasses.replace(layer, rgba=detailed, name=f"{layer.name} + detail"))
    return out_layers + extra
