"""From settings and the pixels an adapter read to one ``job`` message (no editor, no network).

Every adapter makes a job the same two calls::

    inputs = capture(settings, selection_bounds, width, height, reader, controls)  # reads what the mode needs
    job = build_job(settings, inputs, defaults, entry, job_id=...)                 # the same job in either editor

``reader`` is the adapter's ``DocumentReader`` (pixels of a box, in the host's native order); ``capture`` asks
``modes.plan_read`` which box to read and whether a mask and an image travel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Sequence, Tuple

from .errors import JobInputError
from .modes import NEVER, REQUIRED, check_offered, plan_read, rule
from .regions import MAX_REGIONS, opacity
from .settings import Defaults, Settings, apply_defaults
from .wire import Box, job_message, protocol, sampling

MAX_CONTROLS = 8
MAX_REFERENCES = 8  # reference images


@dataclass(frozen=True)
class ControlInput:
    """One control layer's pixels over the job's box (same pixel format as the image) and how to use them."""

    type: str
    image: bytes
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: bool = False
    model: str = ""


@dataclass(frozen=True)
class JobInputs:
    """What an adapter read from the document for one job (``box`` from ``modes.plan_read``)."""

    box: Box
    image: Optional[bytes]  # the box's pixels in ``image_format``; None when the plan reads no image
    image_format: str = protocol.RGBA8  # rgba8 (GIMP) or bgra8 (Krita's native order)
    mask: Optional[bytes] = None  # gray8 of the box; None when the plan reads no mask
    controls: Tuple[ControlInput, ...] = field(default_factory=tuple)
    references: Tuple["ReferenceInput", ...] = field(default_factory=tuple)  # reference images
    regions: Tuple["RegionInput", ...] = field(default_factory=tuple)  # regions


# reference images
@dataclass(frozen=True)
class ReferenceInput:
    """A reference layer's pixels over the job's box (the image's pixel format) and how to use them."""

    type: str
    image: bytes
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    mask: Optional[bytes] = None  # gray8 over the box: the reference applies only inside
    model: str = ""


@dataclass(frozen=True)
class ReferenceSource:
    """A reference layer the painter picked: ``layer`` is the host's handle, read by ``DocumentReader.read_layer``."""

    layer: Any
    type: str = "content"
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    model: str = ""
    mask_layer: Any = None  # a region's layer (host handle): its opacity over the box limits the reference


def reference_sources(
    settings: Settings, find_layer: Callable[[str], Any], find_region: Optional[Callable[[str], Any]] = None
) -> Tuple[ReferenceSource, ...]:
    """``settings.references`` with each layer name resolved by the adapter's ``find_layer`` (None = not there), and
    a reference bound to a region (``ReferenceSetting.region``, the region layer's stable id) resolved by
    ``find_region`` to the layer whose opacity masks it."""
    out = []
    for ref in settings.references:
        layer = find_layer(ref.layer)
        if layer is None:
            raise JobInputError(
                f"The reference layer '{ref.layer}' is not in the document: pick another layer or remove the reference"
            )
        mask_layer = None
        if ref.region:
            mask_layer = find_region(ref.region) if find_region is not None else None
            if mask_layer is None:
                raise JobInputError(
                    f"The region the reference '{ref.layer}' belongs to is no longer in the "
                    "document: bind the reference to another region or to the whole image"
                )
        out.append(ReferenceSource(layer, ref.type, ref.strength, ref.start, ref.end, mask_layer=mask_layer))
    return tuple(out)


# regions
@dataclass(frozen=True)
class RegionInput:
    """One region over the job's box: its layer's opacity as gray8 and its prompts."""

    prompt: str
    mask: bytes
    negative_prompt: str = ""
    strength: float = 1.0


@dataclass(frozen=True)
class RegionSource:
    """A layer bound to a prompt: ``layer`` is the host's handle; its opacity over the box is the region's mask
    (``DocumentReader.read_opacity`` when the adapter has it, else the alpha of ``read_layer``)."""

    layer: Any
    prompt: str
    negative_prompt: str = ""
    strength: float = 1.0


REGION_MODES = ("generate", "img2img", "inpaint", "outpaint")


def read_opacity(reader: "DocumentReader", layer: Any, box: Box) -> bytes:
    """A layer's (or channel's) opacity over ``box`` as gray8: ``reader.read_opacity`` when the adapter has it, else
    the alpha of ``read_layer``. Regions' masks and region-bound references' masks are read this one way."""
    read = getattr(reader, "read_opacity", None)
    return read(layer, box) if read is not None else opacity(reader.read_layer(layer, box), reader.image_format)


def read_regions(reader: "DocumentReader", box: Box, regions: Sequence[RegionSource]) -> Tuple[RegionInput, ...]:
    """Each region's mask over ``box``, read the same way in every editor; regions without a prompt are skipped."""
    return tuple(
        RegionInput(region.prompt, read_opacity(reader, region.layer, box), region.negative_prompt, region.strength)
        for region in regions
        if region.prompt.strip()
    )


def read_references(
    reader: "DocumentReader", box: Box, references: Sequence[ReferenceSource]
) -> Tuple[ReferenceInput, ...]:
    """Each reference layer's pixels over ``box``; a region-bound one also gets its region's opacity as mask."""
    return tuple(
        ReferenceInput(
            r.type,
            reader.read_layer(r.layer, box),
            r.strength,
            r.start,
            r.end,
            mask=None if r.mask_layer is None else read_opacity(reader, r.mask_layer, box),
            model=r.model,
        )
        for r in references
    )


@dataclass(frozen=True)
class ControlSource:
    """A control layer the painter picked: ``layer`` is the host's handle, read by ``DocumentReader.read_layer``."""

    layer: Any
    type: str
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: bool = False
    model: str = ""


class DocumentReader(Protocol):
    """What an adapter reads from its document (all in document coordinates, only the box asked for)."""

    image_format: str  # the pixel order read_image / read_layer return: rgba8 or bgra8

    def read_image(self, box: Box) -> bytes:
        """The source image over ``box`` (the visible image or the active layer, as the settings say)."""

    def read_mask(self, box: Box) -> bytes:
        """The mask over ``box`` as gray8 (the selection, or the mask source the settings name)."""

    def read_layer(self, layer: Any, box: Box) -> bytes:
        """A control layer's pixels over ``box``."""

    # optional (regions): ``read_opacity(layer, box) -> bytes`` gives a layer's (or channel's) opacity as
    # gray8; without it a region's mask is the alpha of ``read_layer``.


def capture(
    settings: Settings,
    selection: Box,
    canvas_width: int,
    canvas_height: int,
    reader: DocumentReader,
    controls: Sequence[ControlSource] = (),
    references: Sequence[ReferenceSource] = (),
    regions: Sequence[RegionSource] = (),
) -> JobInputs:
    """Read one job's inputs the way ``settings.mode`` says (``modes.plan_read``): the same reads in every editor.
    ``selection`` is the bounds of the selection (or mask source); empty when nothing is selected. Reference layers
    are read over the same box as control layers (modes that take controls take references)."""
    plan = plan_read(settings.mode, selection, canvas_width, canvas_height)
    box = plan.box
    mask = reader.read_mask(box) if plan.mask else None
    image = reader.read_image(box) if plan.image else None
    read = (
        tuple(
            ControlInput(c.type, reader.read_layer(c.layer, box), c.strength, c.start, c.end, c.preprocess, c.model)
            for c in controls
        )
        if rule(settings.mode).controls
        else ()
    )
    refs = read_references(reader, box, references) if rule(settings.mode).controls else ()
    areas = read_regions(reader, box, regions) if settings.mode in REGION_MODES else ()
    return JobInputs(box, image, reader.image_format, mask, read, refs, areas)


def build_params(settings: Settings, box: Box, has_image: bool, has_mask: bool) -> Dict[str, Any]:
    """The job's ``params`` for ``settings`` (already through ``apply_defaults``): what the mode uses, nothing else."""
    mode = settings.mode
    r = rule(mode)
    params: Dict[str, Any] = {}
    if mode == "caption":
        if settings.caption_style not in protocol.CAPTION_STYLES:
            raise JobInputError(
                f"unknown caption style {settings.caption_style!r}; choose one of {', '.join(protocol.CAPTION_STYLES)}"
            )
        return {"caption_style": settings.caption_style}
    if mode == "preprocess":
        if settings.preprocessor not in protocol.CONTROL_TYPES:
            raise JobInputError(
                f"unknown control image kind {settings.preprocessor!r}; choose one of "
                f"{', '.join(protocol.CONTROL_TYPES)}"
            )
        if settings.low_threshold > settings.high_threshold:
            raise JobInputError("The low threshold is above the high threshold")
        return {
            "preprocessor": settings.preprocessor,
            "low_threshold": int(settings.low_threshold),
            "high_threshold": int(settings.high_threshold),
        }
    if settings.sampler and settings.sampler not in protocol.SAMPLERS:
        raise JobInputError(f"unknown sampler {settings.sampler!r}; choose one of {', '.join(protocol.SAMPLERS)}")
    try:
        sampling.resolve(settings.sampler, settings.scheduler)
    except ValueError as err:
        raise JobInputError(f"{str(err)[:1].upper()}{str(err)[1:]}") from None
    if settings.steps > 0:
        params["steps"] = int(settings.steps)
    if settings.cfg > 0:
        params["cfg"] = float(settings.cfg)
    if settings.sampler:
        params["sampler"] = settings.sampler
    params["seed"] = int(settings.seed)
    params["batch"] = int(settings.batch) if r.batch else 1
    if r.strength and settings.strength is not None:
        params["strength"] = float(settings.strength)
    if has_mask:
        params["grow"], params["feather"] = int(settings.grow), int(settings.feather)
    if mode in ("inpaint", "outpaint"):
        params["fill"] = settings.fill
        params["color_match"] = bool(settings.color_match)
    if settings.tileable and mode in protocol.TILEABLE_MODES:  # sent only when on: older servers stay as they were
        params["tileable"] = True
    if mode == "generate" and not has_image:
        params["width"], params["height"] = box.width, box.height
    if mode in ("generate", "img2img") and settings.transparent:
        params["transparent"] = True
    if mode == "outpaint":
        extend = {
            "left": settings.extend_left,
            "top": settings.extend_top,
            "right": settings.extend_right,
            "bottom": settings.extend_bottom,
        }
        if min(extend.values()) < 0 or not any(extend.values()):
            raise JobInputError("Outpaint needs at least one side to extend: set a number of pixels above 0 for it")
        params["extend"] = {k: int(v) for k, v in extend.items()}
    params.update(sampling_params(settings, r.batch, mode in DIFFUSION_MODES))
    if mode == "upscale":
        params.update(scale=float(settings.scale), upscaler=settings.upscaler.strip(), refine=float(settings.refine))
        if settings.tile:
            params["tile"] = int(settings.tile)
    params.update(technique_params(settings))
    return params


# modes whose pipeline a VAE, CLIP skip or refiner changes (sampling options)
DIFFUSION_MODES = ("generate", "img2img", "inpaint", "outpaint")


def sampling_params(settings: Settings, batch: bool, diffusion: bool) -> Dict[str, Any]:
    """The sampling options of ``settings`` that differ from the protocol's defaults (so a job to an older server
    stays as it was): schedule, batch count (modes with batches), VAE, CLIP skip and refiner (diffusion modes)."""
    out: Dict[str, Any] = {}
    if settings.scheduler:
        out["scheduler"] = settings.scheduler
    if batch and settings.batch_count > 1:
        out["batch_count"] = int(settings.batch_count)
    if not diffusion:
        return out
    if settings.vae.strip():
        out["vae"] = settings.vae.strip()
    if settings.clip_skip > 1:
        out["clip_skip"] = int(settings.clip_skip)
    if settings.refiner.strip():
        if not 0.0 < settings.refiner_start < 1.0:
            raise JobInputError(
                "The refiner's start must be between 0 and 1 (the fraction of the steps after which it takes over)"
            )
        out["refiner"], out["refiner_start"] = settings.refiner.strip(), float(settings.refiner_start)
    return out


HIRES_MODES = ("generate", "img2img", "inpaint", "outpaint")  # hires fix and detailer after the job


def offered_detail_targets(models: Sequence[Mapping[str, Any]]) -> Tuple[str, ...]:
    """The detailer targets an editor offers for the server's model listing: ``face`` always (without its detector
    the server answers with the download to run), ``hand`` only when the listing has a hand detector."""
    found = {str(t) for m in models if m.get("kind") == "detector" for t in (m.get("targets") or ())}
    return tuple(t for t in protocol.DETAIL_TARGETS if t == "face" or t in found)


def technique_params(settings: Settings) -> Dict[str, Any]:
    """``params.hires`` and ``params.detail`` for ``settings``: hires when on (modes that sample), detail
    for mode ``detail`` and when the detailer runs after the job; nothing otherwise (the server's defaults: off)."""
    out: Dict[str, Any] = {}
    mode = settings.mode
    if mode in HIRES_MODES and settings.hires:
        upscaler = settings.hires_upscaler.strip() or "latent"
        if not 0.0 <= settings.hires_strength <= 1.0:
            raise JobInputError("The hires denoise must lie between 0 and 1")
        out["hires"] = {
            "enabled": True,
            "upscaler": upscaler,
            "strength": float(settings.hires_strength),
            "steps": max(0, int(settings.hires_steps)),
            "scale": max(0.0, float(settings.hires_scale)),
        }
    if mode == "detail" or (mode in HIRES_MODES and settings.detail):
        targets = [t.strip() for t in settings.detail_targets.split(",") if t.strip()] or ["face"]
        unknown = [t for t in targets if t not in protocol.DETAIL_TARGETS]
        if unknown:
            raise JobInputError(
                f"the detailer cannot look for {', '.join(unknown)}; choose among {', '.join(protocol.DETAIL_TARGETS)}"
            )
        out["detail"] = {
            "enabled": mode != "detail",
            "targets": targets,
            "prompt": settings.detail_prompt.strip(),
            "negative_prompt": settings.detail_negative_prompt.strip(),
            "strength": float(settings.detail_strength),
            "steps": max(0, int(settings.detail_steps)),
            "padding": max(0, int(settings.detail_padding)),
            "confidence": float(settings.detail_confidence),
            "separate": bool(settings.detail_separate),
        }
    return out


def build_job(
    settings: Settings,
    inputs: JobInputs,
    defaults: Optional[Defaults] = None,
    entry: Optional[Mapping[str, Any]] = None,
    *,
    job_id: str,
    previews: bool = False,
    live: bool = False,
    result_format: Optional[str] = None,
) -> "protocol.Job":
    """The job for ``settings`` and ``inputs``; defaults filled from ``defaults`` for the model ``entry``
    (``settings.model_entry``). Raises JobInputError naming what to change. ``result_format`` defaults to the
    image's pixel format."""
    resolved = apply_defaults(settings, defaults or Defaults(), entry)
    mode = resolved.mode
    r = rule(mode)
    check_offered(mode, entry)
    box = inputs.box
    if box.is_empty:
        raise JobInputError("The area to work on is empty: select part of the image")
    fmt = inputs.image_format
    if fmt not in (protocol.RGBA8, protocol.BGRA8):
        raise JobInputError(f"image format {fmt!r} is not one a job can carry (rgba8 or bgra8)")
    if r.mask == REQUIRED and inputs.mask is None:
        raise JobInputError(f"{r.label} needs a selection (or a mask) that marks the area to repaint: select it first")
    if r.mask == NEVER and inputs.mask is not None:
        raise JobInputError(f"{r.label} takes no mask; read the box that modes.plan_read gives without one")
    mask = None
    if inputs.mask is not None:
        if inputs.mask.count(0) == len(inputs.mask):  # C speed, also for a 24-megapixel mask
            raise JobInputError(
                "The mask is empty inside the area to work on: select (or paint white on the mask) "
                "where the image should change"
            )
        mask = _payload(box, protocol.GRAY8, inputs.mask, "mask")
    image = _payload(box, fmt, inputs.image, "image") if inputs.image is not None else None
    if image is None and (mode != "generate" or mask is not None):
        raise JobInputError(f"{r.label} needs the image's pixels and none were read")
    if len(inputs.controls) > MAX_CONTROLS:
        raise JobInputError(f"{len(inputs.controls)} control layers; a job takes at most {MAX_CONTROLS}")
    controls = []
    for i, ctl in enumerate(inputs.controls):
        if ctl.type not in protocol.CONTROL_TYPES:
            raise JobInputError(f"unknown control type {ctl.type!r}; choose one of {', '.join(protocol.CONTROL_TYPES)}")
        controls.append(
            {
                "type": ctl.type,
                "image": _payload(box, fmt, ctl.image, f"control {i + 1}"),
                "strength": float(ctl.strength),
                "start": float(ctl.start),
                "end": float(ctl.end),
                "preprocess": bool(ctl.preprocess),
                "model": ctl.model,
            }
        )
    references = _references(inputs, box, fmt)
    regions = _regions(inputs, box) if mode in REGION_MODES else []
    model = resolved.captioner if mode == "caption" else resolved.model  # caption: a captioner, not a checkpoint
    return job_message(
        regions=regions,
        style=resolved.style.strip(),
        job_id=job_id,
        mode=mode,
        model=model.strip(),
        prompt=resolved.prompt.strip(),
        negative_prompt=resolved.negative_prompt.strip(),
        image=image,
        mask=mask,
        controls=controls,
        params=build_params(resolved, box, image is not None, mask is not None),
        x=box.x,
        y=box.y,
        result_format=result_format or fmt,
        previews=previews,
        live=live,
        references=references,
    )


def _references(inputs: JobInputs, box: Box, fmt: str) -> list:
    """The job's reference images as wire maps; JobInputError naming what is wrong."""
    if len(inputs.references) > MAX_REFERENCES:
        raise JobInputError(f"{len(inputs.references)} reference images; a job takes at most {MAX_REFERENCES}")
    out = []
    for i, ref in enumerate(inputs.references):
        if ref.type not in protocol.REFERENCE_TYPES:
            raise JobInputError(
                f"unknown reference type {ref.type!r}; choose one of {', '.join(protocol.REFERENCE_TYPES)}"
            )
        if not 0.0 <= ref.strength <= 2.0 or not 0.0 <= ref.start <= ref.end <= 1.0:
            raise JobInputError(f"reference {i + 1}: strength must be 0-2 and 0 ≤ start ≤ end ≤ 1")
        if ref.mask is not None and ref.mask.count(0) == len(ref.mask):
            continue  # bound to a region that is empty over the box, as such a region is left out
        alpha = ref.image[3::4]
        if alpha.count(0) == len(alpha):
            raise JobInputError(
                f"reference {i + 1} ({ref.type}) is empty over the area to work on: paint or place "
                "the reference picture inside it"
            )
        item = {
            "image": _payload(box, fmt, ref.image, f"reference {i + 1}"),
            "type": ref.type,
            "strength": float(ref.strength),
            "start": float(ref.start),
            "end": float(ref.end),
            "model": ref.model,
        }
        if ref.mask is not None:
            item["mask"] = _payload(box, protocol.GRAY8, ref.mask, f"reference {i + 1}'s mask")
        out.append(item)
    return out


def _regions(inputs: JobInputs, box: Box) -> list:
    """regions: the job's regions; one whose layer is empty over the box is left out."""
    if len(inputs.regions) > MAX_REGIONS:
        raise JobInputError(f"{len(inputs.regions)} regions; a job takes at most {MAX_REGIONS}")
    out = []
    for i, region in enumerate(inputs.regions):
        if region.mask.count(0) == len(region.mask):
            continue
        out.append(
            {
                "prompt": region.prompt.strip(),
                "negative_prompt": region.negative_prompt.strip(),
                "mask": _payload(box, protocol.GRAY8, region.mask, f"region {i + 1}"),
                "strength": min(1.0, max(0.0, float(region.strength))),
            }
        )
    return out


def _payload(box: Box, fmt: str, data: bytes, what: str):
    expected = box.width * box.height * (1 if fmt == protocol.GRAY8 else 4)
    if len(data) != expected:
        raise JobInputError(
            f"the {what} read holds {len(data)} bytes; a {box.width}x{box.height} {fmt} image needs {expected}"
        )
    return protocol.ImagePayload(box.width, box.height, fmt, bytes(data))


__all__ = [
    "ControlInput",
    "ControlSource",
    "DocumentReader",
    "JobInputs",
    "ReferenceInput",
    "ReferenceSource",
    "RegionInput",
    "RegionSource",
    "build_job",
    "build_params",
    "capture",
    "plan_read",
    "read_regions",
    "reference_sources",
]
