"""From settings and the pixels an adapter read to one ``job`` message (no editor, no network).

Every adapter makes a job the same two calls::

    inputs = capture(settings, selection_bounds, width, height, reader, controls)  # reads what the mode needs
    job = build_job(settings, inputs, defaults, entry, job_id=...)                 # the same job in either editor

``reader`` is the adapter's ``DocumentReader`` (pixels of a box, in the host's native order); ``capture`` asks
``modes.plan_read`` which box to read and whether a mask and an image travel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Sequence, Tuple, TypeVar

from .errors import JobInputError
from .modes import NEVER, REQUIRED, check_offered, plan_read, rule
from .regions import opacity
from .settings import Defaults, Settings, apply_defaults
from .wire import Box, protocol

T = TypeVar("T")


@dataclass(frozen=True)
class JobInputs:
    """What an adapter read from the document for one job (``box`` from ``modes.plan_read``): the image and mask as
    read, and the control layers, reference images and regions as the protocol classes the job carries."""

    box: Box
    image: Optional[bytes]  # the box's pixels in ``image_format``; None when the plan reads no image
    image_format: str = protocol.RGBA8  # rgba8 (GIMP) or bgra8 (Krita's native order)
    mask: Optional[bytes] = None  # gray8 of the box; None when the plan reads no mask
    controls: Tuple["protocol.Control", ...] = field(default_factory=tuple)
    references: Tuple["protocol.Reference", ...] = field(default_factory=tuple)
    regions: Tuple["protocol.Region", ...] = field(default_factory=tuple)


def built(what: str, cls: Callable[..., T], **fields: Any) -> T:
    """The protocol class ``cls`` built from ``fields`` (checked as it is built); a value it refuses becomes a
    JobInputError that names ``what`` and the field."""
    try:
        return cls(**fields)
    except protocol.ProtocolError as err:
        raise JobInputError(f"{what}: {err.message}") from None


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


@dataclass(frozen=True)
class RegionSource:
    """A layer bound to a prompt: ``layer`` is the host's handle; its opacity over the box is the region's mask
    (``DocumentReader.read_opacity`` when the adapter has it, else the alpha of ``read_layer``)."""

    layer: Any
    prompt: str
    negative_prompt: str = ""
    strength: float = 1.0


def read_opacity(reader: "DocumentReader", layer: Any, box: Box) -> bytes:
    """A layer's (or channel's) opacity over ``box`` as gray8: ``reader.read_opacity`` when the adapter has it, else
    the alpha of ``read_layer``. Regions' masks and region-bound references' masks are read this one way."""
    read = getattr(reader, "read_opacity", None)
    return read(layer, box) if read is not None else opacity(reader.read_layer(layer, box), reader.image_format)


def _gray(box: Box, data: bytes) -> "protocol.ImagePayload":
    return protocol.ImagePayload(box.width, box.height, protocol.GRAY8, data)


def read_regions(reader: "DocumentReader", box: Box, regions: Sequence[RegionSource]) -> Tuple["protocol.Region", ...]:
    """Each region with its mask over ``box``, read the same way in every editor; regions without a prompt are
    skipped, a strength outside 0-1 is clamped."""
    return tuple(
        built(
            f"region {i + 1}",
            protocol.Region,
            prompt=region.prompt.strip(),
            mask=_gray(box, read_opacity(reader, region.layer, box)),
            negative_prompt=region.negative_prompt.strip(),
            strength=min(1.0, max(0.0, float(region.strength))),
        )
        for i, region in enumerate(regions)
        if region.prompt.strip()
    )


def read_references(
    reader: "DocumentReader", box: Box, references: Sequence[ReferenceSource]
) -> Tuple["protocol.Reference", ...]:
    """Each reference layer's pixels over ``box``; a region-bound one also gets its region's opacity as mask."""
    return tuple(
        built(
            f"reference {i + 1}",
            protocol.Reference,
            image=protocol.ImagePayload(box.width, box.height, reader.image_format, reader.read_layer(r.layer, box)),
            type=r.type,
            strength=r.strength,
            start=r.start,
            end=r.end,
            mask=None if r.mask_layer is None else _gray(box, read_opacity(reader, r.mask_layer, box)),
            model=r.model,
        )
        for i, r in enumerate(references)
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


def read_controls(
    reader: "DocumentReader", box: Box, controls: Sequence[ControlSource]
) -> Tuple["protocol.Control", ...]:
    """Each control layer's pixels over ``box`` with how to use them."""
    return tuple(
        built(
            f"control layer {i + 1}",
            protocol.Control,
            type=c.type,
            image=protocol.ImagePayload(box.width, box.height, reader.image_format, reader.read_layer(c.layer, box)),
            strength=c.strength,
            start=c.start,
            end=c.end,
            preprocess=c.preprocess,
            model=c.model,
        )
        for i, c in enumerate(controls)
    )


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
    takes_controls = rule(settings.mode).controls
    read = read_controls(reader, box, controls) if takes_controls else ()
    refs = read_references(reader, box, references) if takes_controls else ()
    areas = read_regions(reader, box, regions) if settings.mode in protocol.REGION_MODES else ()
    return JobInputs(box, image, reader.image_format, mask, read, refs, areas)


def build_params(settings: Settings, box: Box, has_image: bool, has_mask: bool) -> "protocol.Params":
    """The job's ``params`` for ``settings`` (already through ``apply_defaults``): what the mode uses, the protocol's
    defaults for the rest; a value the protocol refuses (a sampler with a schedule it cannot run, a range) is a
    JobInputError naming the field."""
    return built("The job's parameters", protocol.Params, **_param_fields(settings, box, has_image, has_mask))


def _param_fields(settings: Settings, box: Box, has_image: bool, has_mask: bool) -> Dict[str, Any]:
    """The ``params`` fields the mode uses, by name (nested maps for ``extend``, ``hires``, ``detail``)."""
    mode = settings.mode
    r = rule(mode)
    params: Dict[str, Any] = {}
    if mode == "caption":
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
    if settings.steps > 0:
        params["steps"] = int(settings.steps)
    if settings.cfg > 0:
        params["cfg"] = float(settings.cfg)
    if settings.sampler:
        params["sampler"] = settings.sampler
    params["seed"] = int(settings.seed)
    params["batch"] = int(settings.batch) if r.batch else 1
    if mode == "decompose":  # picture into layers: how many, with the sampling basics above
        if not protocol.MIN_LAYER_COUNT <= settings.layer_count <= protocol.MAX_LAYER_COUNT:
            raise JobInputError(
                f"Decompose splits the picture into {protocol.MIN_LAYER_COUNT} to {protocol.MAX_LAYER_COUNT} "
                f"layers, not {settings.layer_count}: set the layer count in that range"
            )
        params["layer_count"] = int(settings.layer_count)
        return params
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
    stays as it was): schedule, batch count (modes with batches), VAE, CLIP skip, refiner and speed level (diffusion
    modes)."""
    out: Dict[str, Any] = {}
    if settings.scheduler:
        out["scheduler"] = settings.scheduler
    if batch and settings.batch_count > 1:
        out["batch_count"] = int(settings.batch_count)
    if not diffusion:
        return out
    if settings.speed:  # "" is the protocol's default: the style's level, else quality
        out["speed"] = settings.speed
    if settings.vae.strip():
        out["vae"] = settings.vae.strip()
    if settings.clip_skip > 1:
        out["clip_skip"] = int(settings.clip_skip)
    if settings.refiner.strip():
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
        out["hires"] = {
            "enabled": True,
            "upscaler": upscaler,
            "strength": float(settings.hires_strength),
            "steps": max(0, int(settings.hires_steps)),
            "scale": max(0.0, float(settings.hires_scale)),
        }
    if mode == "detail" or (mode in HIRES_MODES and settings.detail):
        targets = [t.strip() for t in settings.detail_targets.split(",") if t.strip()] or ["face"]
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
    if r.mask == REQUIRED and inputs.mask is None:
        raise JobInputError(f"{r.label} needs a selection (or a mask) that marks the area to repaint: select it first")
    if r.mask == NEVER and inputs.mask is not None:
        raise JobInputError(f"{r.label} takes no mask; read the box that modes.plan_read gives without one")
    mask = None
    if inputs.mask is not None:
        if _all_zero(inputs.mask):
            raise JobInputError(
                "The mask is empty inside the area to work on: select (or paint white on the mask) "
                "where the image should change"
            )
        mask = _payload(box, protocol.GRAY8, inputs.mask)
    image = _payload(box, fmt, inputs.image) if inputs.image is not None else None
    if image is None and (mode != "generate" or mask is not None):
        raise JobInputError(f"{r.label} needs the image's pixels and none were read")
    references = tuple(_references(inputs))
    regions = tuple(g for g in inputs.regions if not _all_zero(g.mask.data)) if mode in protocol.REGION_MODES else ()
    model = resolved.captioner if mode == "caption" else resolved.model  # caption: a captioner, not a checkpoint
    params = build_params(resolved, box, image is not None, mask is not None)
    return built(
        "The job",
        protocol.Job,
        id=job_id,
        mode=mode,
        model=model.strip(),
        prompt=resolved.prompt.strip(),
        negative_prompt=resolved.negative_prompt.strip(),
        image=image,
        mask=mask,
        controls=inputs.controls,
        params=params,
        x=box.x,
        y=box.y,
        result_format=result_format or fmt,
        previews=previews,
        live=live,
        references=references,
        regions=regions,
        style=resolved.style.strip(),
    )


def _all_zero(data: Any) -> bool:
    """Whether every byte is 0 (at C speed, also for a 24-megapixel mask)."""
    data = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    return data.count(0) == len(data)


def _references(inputs: JobInputs):
    """The references the job carries: one bound to a region that is empty over the box is left out (as such a region
    is); an empty picture is refused naming it."""
    for i, ref in enumerate(inputs.references):
        if ref.mask is not None and _all_zero(ref.mask.data):
            continue
        if _all_zero(memoryview(ref.image.data).cast("B")[3::4]):
            raise JobInputError(
                f"reference {i + 1} ({ref.type}) is empty over the area to work on: paint or place "
                "the reference picture inside it"
            )
        yield ref


def _payload(box: Box, fmt: str, data: bytes) -> "protocol.ImagePayload":
    """The box's pixels as they travel (not copied; the job checks their size when it is built)."""
    return protocol.ImagePayload(box.width, box.height, fmt, data)


__all__ = [
    "ControlSource",
    "DocumentReader",
    "JobInputs",
    "ReferenceSource",
    "RegionSource",
    "build_job",
    "build_params",
    "built",
    "capture",
    "plan_read",
    "read_controls",
    "read_references",
    "read_regions",
    "reference_sources",
]
