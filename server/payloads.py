"""Image payloads in and out of the server: wire bytes to numpy pixels and back, with as few copies as possible.

Decoding views the received bytes (no copy): an ``rgba8`` image or a ``gray8`` mask becomes a *read-only* numpy view
of the message's buffer, so an engine that wants to write makes its own copy; a ``bgra8`` image is viewed the same way
in its own order (``Job.image_bgra``) and swapped to RGBA once, by OpenCV, in the job's thread when its engine needs
that (``Router.run``). Encoding gives each result layer's pixels as a memoryview of the engine's array when it is in
the client's order (no copy) or of one OpenCV channel swap; msgpack reads the bytes straight from it. A progress preview is one small RGBA
payload (``preview_payload``); a finished job's answer is one ``result`` message (``result_message``).
"""

from __future__ import annotations

from typing import Any, Dict, List

import cv2
import numpy as np

from protocol.images import BGRA8, GRAY8, RGBA8, ImagePayload
from protocol.messages import Job as JobMessage, Result, ResultLayer

from .core import Control, Job, Layer, Reference, Region


def payload_to_array(payload: ImagePayload, keep_order: bool = False) -> np.ndarray:
    """An image payload as H x W x 4 RGBA (H x W for gray8) uint8, read-only. ``rgba8`` and ``gray8`` give a view of
    the payload's bytes; ``bgra8`` a new array (one channel swap), or with ``keep_order`` a view in B, G, R, A order."""
    arr = np.frombuffer(payload.data, np.uint8)
    if payload.format == GRAY8:
        return _read_only(arr.reshape(payload.height, payload.width))
    arr = arr.reshape(payload.height, payload.width, 4)
    if payload.format == BGRA8 and not keep_order:
        return _read_only(cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA))
    return _read_only(arr)


def _read_only(arr: np.ndarray) -> np.ndarray:
    """``arr`` marked read-only: engines never write into what a client sent (whatever its pixel format)."""
    arr.flags.writeable = False
    return arr


def control_pixels(payload: ImagePayload, preprocess: bool) -> np.ndarray:
    """A control layer's pixels: RGBA kept when the server preprocesses it (the preprocessor flattens a sketch on a
    transparent layer onto white paper); otherwise RGB over black, the "no signal" colour of control images."""
    arr = payload_to_array(payload)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if preprocess:
        return arr
    alpha = arr[..., 3:4].astype(np.uint16)
    return ((arr[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def reference_pixels(payload: ImagePayload) -> np.ndarray:
    """A reference image as RGB: transparent parts over mid grey (what the image encoder sees as "nothing")."""
    arr = payload_to_array(payload)
    alpha = arr[..., 3:4].astype(np.uint16)
    rgb = arr[..., :3].astype(np.uint16) * alpha + 127 * (255 - alpha)
    return ((rgb + 127) // 255).astype(np.uint8)


def job_from_message(msg: JobMessage) -> Job:
    """Decode a validated ``job`` message's pixels into a Job (sizes were checked when it was parsed). A control of
    the old type ``reference`` becomes a reference image of type ``content``."""
    controls = [
        Control(
            type=c.type,
            image=control_pixels(c.image, c.preprocess),
            strength=c.strength,
            start=c.start,
            end=c.end,
            preprocess=c.preprocess,
            model=c.model,
        )
        for c in msg.controls
        if c.type != "reference"
    ]
    references = [
        Reference(
            image=reference_pixels(r.image),
            type=r.type,
            strength=r.strength,
            start=r.start,
            end=r.end,
            mask=payload_to_array(r.mask) if r.mask is not None else None,
            model=r.model,
        )
        for r in msg.references
    ]
    references += [
        Reference(
            image=reference_pixels(c.image),
            type="content",
            strength=c.strength,
            start=c.start,
            end=c.end,
            model=c.model,
        )
        for c in msg.controls
        if c.type == "reference"
    ]
    return Job(
        id=msg.id,
        mode=msg.mode,
        model=msg.model,
        prompt=msg.prompt,
        negative_prompt=msg.negative_prompt,
        image=payload_to_array(msg.image, keep_order=True) if msg.image is not None else None,
        image_bgra=msg.image is not None and msg.image.format == BGRA8,  # swapped, if at all, by the job's thread
        mask=payload_to_array(msg.mask) if msg.mask is not None else None,
        params=msg.params,
        controls=controls,
        x=msg.x,
        y=msg.y,
        previews=msg.previews,
        references=references,
        regions=[Region(r.prompt, payload_to_array(r.mask), r.negative_prompt, r.strength) for r in msg.regions],
        style=msg.style,
        live=msg.live,
    )


def layer_bytes(rgba: np.ndarray, fmt: str, bgra: bool = False) -> memoryview:
    """An H x W x 4 RGBA uint8 array's pixels (B, G, R, A with ``bgra``) in ``fmt`` (``rgba8`` or ``bgra8``) as a flat
    byte memoryview: the array's own memory when it is contiguous and in that order, else one copy (the channel swap,
    by OpenCV)."""
    if (fmt == BGRA8) != bgra:
        out = cv2.cvtColor(np.ascontiguousarray(rgba, dtype=np.uint8), cv2.COLOR_RGBA2BGRA)
    else:
        out = np.ascontiguousarray(rgba, dtype=np.uint8)
    return memoryview(out).cast("B")


def encode_layers(layers: List[Layer], fmt: str) -> List[ResultLayer]:
    """Result layers in the client's pixel format (pixels as memoryviews, see ``layer_bytes``)."""
    return [
        ResultLayer(
            name=layer.name,
            x=int(layer.x),
            y=int(layer.y),
            width=layer.rgba.shape[1],
            height=layer.rgba.shape[0],
            format=fmt,
            data=layer_bytes(layer.rgba, fmt, layer.bgra),
            seed=int(layer.seed),
            info=dict(layer.info),
            group=layer.group,
        )
        for layer in layers
    ]


def result_message(
    job_id: str, layers: List[Layer], fmt: str, seconds: float, params: Dict[str, Any], text: str = ""
) -> Result:
    """The ``result`` of a finished job: its layers in the client's pixel format ``fmt``, the seconds it took, the
    parameters it ran with, and (mode caption) its words."""
    return Result(job_id, tuple(encode_layers(layers, fmt)), round(seconds, 4), params, text=text)


def preview_payload(preview: np.ndarray) -> ImagePayload:
    """A small RGB or RGBA progress preview as an ``rgba8`` payload."""
    if preview.ndim == 3 and preview.shape[2] == 3:
        preview = np.concatenate([preview, np.full(preview.shape[:2] + (1,), 255, np.uint8)], axis=2)
    preview = np.ascontiguousarray(preview, dtype=np.uint8)
    return ImagePayload(preview.shape[1], preview.shape[0], RGBA8, preview.tobytes())
