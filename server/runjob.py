"""``paintbridge run``'s job from image files (image, mask, references, regions and the flags' params) and its result
flattened over the input for saving."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from protocol import REFERENCE_TYPES, Extend, Job, Params, Reference, Region, ResultLayer
from protocol.client import new_job_id
from protocol.images import GRAY8, RGBA8, ImagePayload
from protocol.messages import Detail, Hires


def _read_rgba(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGBA")).copy()


def _read_mask(path: str, size: Optional[tuple]) -> np.ndarray:
    with Image.open(path) as img:
        if img.mode in ("RGBA", "LA") and img.getchannel("A").getextrema() != (255, 255):
            mask = img.getchannel("A")  # a transparent-background mask: alpha is the mask
        else:
            mask = img.convert("L")
        if size is not None and mask.size != size:
            raise SystemExit(
                f"paintbridge run: the mask is {mask.size[0]}x{mask.size[1]} but the image is {size[0]}x{size[1]}"
            )
        return np.asarray(mask).copy()


def _payload(arr: np.ndarray, fmt: str) -> ImagePayload:
    arr = np.ascontiguousarray(arr)
    return ImagePayload(arr.shape[1], arr.shape[0], fmt, arr.tobytes())


def _extend(text: Optional[str]) -> Extend:
    if not text:
        return Extend()
    values = [int(v) for v in text.split(",")]
    if len(values) == 1:
        values *= 4
    if len(values) != 4:
        raise SystemExit("paintbridge run: --extend takes N or LEFT,TOP,RIGHT,BOTTOM")
    return Extend(*values)


def parse_reference(spec: str) -> Reference:
    """``FILE[:type[:strength]]`` (reference images) as a Reference of the whole picture; the file may hold
    colons itself (``C:\\pictures\\cat.png:style``)."""
    path, rest = spec, []
    while not Path(path).is_file() and ":" in path and len(rest) < 2:
        path, _, tail = path.rpartition(":")
        rest.insert(0, tail)
    if not Path(path).is_file():
        raise SystemExit(f"paintbridge run: --reference {spec!r}: no such file")
    kind = rest[0] if rest else "content"
    if kind not in REFERENCE_TYPES:
        raise SystemExit(
            f"paintbridge run: --reference {spec!r}: type '{kind}' is not one of {', '.join(REFERENCE_TYPES)}"
        )
    try:
        strength = float(rest[1]) if len(rest) > 1 else 1.0
    except ValueError:
        raise SystemExit(f"paintbridge run: --reference {spec!r}: strength '{rest[1]}' is not a number") from None
    if not 0.0 <= strength <= 2.0:
        raise SystemExit(f"paintbridge run: --reference {spec!r}: strength {strength} is outside 0-2")
    return Reference(image=_payload(_read_rgba(path), RGBA8), type=kind, strength=strength)


# regions
def _region(text: str) -> Region:
    """``--region MASK.png:PROMPT`` (a Windows drive letter's colon is part of the path) as a Region; the mask's size
    is checked by the server against the job's (the image, or --width/--height)."""
    start = 2 if re.match(r"[A-Za-z]:[\\/]", text) else 0
    cut = text.find(":", start)
    if cut <= 0 or not text[cut + 1 :].strip():
        raise SystemExit(f"paintbridge run: --region takes MASK.png:PROMPT, got {text!r}")
    path, prompt = text[:cut], text[cut + 1 :]
    if not Path(path).is_file():
        raise SystemExit(f"paintbridge run: --region mask {path!r} is not a file")
    return Region(prompt=prompt, mask=_payload(_read_mask(path, None), GRAY8))


def _hires(args: argparse.Namespace) -> Hires:
    """``params.hires`` from the ``--hires*`` flags (hires fix)."""
    return Hires(
        enabled=args.hires,
        upscaler=args.hires_upscaler,
        strength=args.hires_strength,
        steps=args.hires_steps,
        scale=args.hires_scale,
    )


def _detail(args: argparse.Namespace) -> Detail:
    """``params.detail`` from the ``--detail*`` flags (the detailer; mode ``detail`` uses them too)."""
    targets = tuple(t.strip() for t in args.detail_targets.split(",") if t.strip())
    return Detail(
        enabled=args.detail,
        targets=targets,
        prompt=args.detail_prompt,
        negative_prompt=args.detail_negative,
        strength=args.detail_strength,
        steps=args.detail_steps,
        padding=args.detail_padding,
        confidence=args.detail_confidence,
        separate=args.detail_separate,
    )


def build_job(args: argparse.Namespace) -> tuple:
    """The ``Job`` for ``paintbridge run`` and the input image (None for generate without one)."""
    given = {
        key: getattr(args, key)
        for key in (
            "strength",
            "cfg",
            "sampler",
            "upscaler",
            "refine",
            "grow",
            "feather",
            "width",
            "height",
            "fill",
            "preprocessor",
            # sampling
            "scheduler",
            "batch_count",
            "vae",
            "clip_skip",
            "refiner",
            "refiner_start",
            "caption_style",
            "layer_count",
            "inpaint_method",
        )
    }
    given.update({key: getattr(args, key, None) for key in ("color_match", "tileable", "speed")})
    params = Params(
        steps=args.steps,
        seed=args.seed,
        batch=args.batch,
        scale=args.scale,
        extend=_extend(args.extend),
        hires=_hires(args),
        detail=_detail(args),
        **{k: v for k, v in given.items() if v is not None},
    )
    image = mask = None
    if args.image:
        image = _read_rgba(args.image)
        if args.mask:
            mask = _payload(_read_mask(args.mask, (image.shape[1], image.shape[0])), GRAY8)
    job = Job(
        new_job_id("cli"),
        args.mode,
        model=args.model,
        style=getattr(args, "style", ""),
        prompt=args.prompt,
        negative_prompt=args.negative,
        image=_payload(image, RGBA8) if image is not None else None,
        mask=mask,
        params=params,
        result_format=RGBA8,
        references=tuple(parse_reference(r) for r in args.reference or ()),
        regions=tuple(_region(r) for r in args.region or ()),
    )
    return job, image


def flatten_result(layer: ResultLayer, image: Optional[np.ndarray]) -> np.ndarray:
    """A result layer composited over the input, on a canvas that holds both (the layer alone for upscales, and for
    a layer of a group: a decomposition's layer keeps its own alpha)."""
    from .imageops import flatten_over

    pixels = np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4)
    if (
        image is None
        or layer.group
        or (image.shape[0] * 2 <= pixels.shape[0] and image.shape[1] * 2 <= pixels.shape[1])
    ):
        return pixels.copy()
    x, y = layer.x, layer.y
    x0, y0 = min(0, x), min(0, y)
    x1, y1 = max(image.shape[1], x + pixels.shape[1]), max(image.shape[0], y + pixels.shape[0])
    base = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
    base[-y0 : -y0 + image.shape[0], -x0 : -x0 + image.shape[1]] = image
    top = np.zeros_like(base)
    top[y - y0 : y - y0 + pixels.shape[0], x - x0 : x - x0 + pixels.shape[1]] = pixels
    return flatten_over(top, base)
