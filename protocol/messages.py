"""The typed messages of protocol 1.1, both directions, and the functions that parse them.

Every message is a frozen dataclass; its field declarations (``schema.wire``) are the one source of the wire schema:
``from_wire`` validates a decoded map against them (a missing or ill-typed field raises a ``bad_request``
ProtocolError whose ``field`` names it, e.g. ``params.steps``, ``controls[1].image.data``), ``to_wire`` gives the map
back, and ``schema.markdown_table`` renders the tables of ``protocol/README.md``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple, Type, Union

from .errors import TOO_LARGE, VERSION_MISMATCH, ProtocolError, bad_field
from .images import BGRA8, GRAY8, PIXEL_FORMATS, RGBA8, ImagePayload, parse_payload
from .sampling import SAMPLERS, SCHEDULE_NAMES, resolve as resolve_sampler
from .schema import WireModel, type_error, wire
from .techniques import DETAIL_TARGETS, HIRES_UPSCALERS, MAX_PROMPT_LENGTH, Detail, Hires  # noqa: F401

PROTOCOL_VERSION = "1.1"

MODES = ("generate", "img2img", "inpaint", "outpaint", "upscale", "preprocess", "edit", "detail", "caption")
TILEABLE_MODES = ("generate", "img2img", "upscale")  # seamless textures: the modes that make a whole picture
CAPTION_STYLES = ("sentence", "tags")
TRANSPARENT_MODES = ("generate", "img2img")  # params.transparent: layers with real alpha
CONTROL_TYPES = ("canny", "lineart", "scribble", "softedge", "depth", "normal", "pose", "tile", "inpaint", "shuffle",
                 "reference")
INPAINT_FILLS = ("telea", "ns", "patch", "lama")
# Speed levels a painter picks per job: "quality" computes every step in full; "fast" reuses the UNet's deep
# features on alternate steps (DeepCache-style) — for live frames and previews, never chosen by the server itself.
SPEED_LEVELS = ("quality", "fast")
REFERENCE_TYPES = ("style", "composition", "content", "face")  # reference images

MAX_ID_LENGTH = 64
MAX_CONTROLS = 8
MAX_PULL_NAMES = 64
MAX_REFERENCES = 8  # reference images
MAX_REGIONS = 16  # regions
REGION_MODES = ("generate", "img2img", "inpaint", "outpaint")  # regions
SESSION_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_VERSION = re.compile(r"([0-9]+)\.([0-9]+)")  # ASCII digits only: str.isdigit() also takes '²' and '①'


def parse_version(text: Any, field: str = "protocol") -> Tuple[int, int]:
    """``'major.minor'`` (ASCII digits) → ``(major, minor)``; anything else is a bad_request naming ``field``."""
    if not isinstance(text, str):
        raise bad_field(field, f"must be a 'major.minor' string, got {type(text).__name__}")
    match = _VERSION.fullmatch(text)
    if match is None:
        raise bad_field(field, f"must look like 'major.minor' with digits 0-9, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def check_compatible(peer_version: str, ours: str = PROTOCOL_VERSION, peer: str = "client") -> None:
    """Refuse a peer whose major version differs, saying which side to update."""
    theirs, mine = parse_version(peer_version), parse_version(ours)
    if theirs[0] != mine[0]:
        update = "the server" if theirs[0] > mine[0] else (
            f"the {peer} (Paintbridge plugin)" if peer == "client" else f"the {peer}")
        raise ProtocolError(VERSION_MISMATCH, f"protocol {peer_version} of the {peer} is incompatible with protocol "
                            f"{ours}: update {update}", field="protocol")


# --- nested maps ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Limits(WireModel):
    """Limits the server announces in ``welcome`` and enforces before allocating."""

    max_pixels: int = wire(8192 * 8192, minimum=1, doc="per image (64 Mi px: a 6000x4000 photo with room to outpaint)")
    max_frame_bytes: int = wire(512 * 1024 * 1024, minimum=1,
                                doc="per frame, each way (512 MiB: an image at max_pixels with its mask, or a "
                                    "result of 128 Mi px)")
    max_batch: int = wire(8, minimum=1)
    max_queue: int = wire(32, minimum=1, doc="per client: its jobs queued or running")
    max_bytes_in_flight: int = wire(1024 * 1024 * 1024, minimum=1,
                                    doc="server-wide: incoming frame bytes held at once across all clients (1 GiB); "
                                        "beyond it the server reads the next frame only once others are handled")


UNLIMITED = Limits(max_pixels=2**31, max_frame_bytes=2**31, max_batch=2**31, max_queue=2**31,
                   max_bytes_in_flight=2**62)


@dataclasses.dataclass(frozen=True)
class Extend(WireModel):
    """Outpaint: px added on each side."""

    left: int = wire(0, minimum=0, maximum=8192)
    top: int = wire(0, minimum=0, maximum=8192)
    right: int = wire(0, minimum=0, maximum=8192)
    bottom: int = wire(0, minimum=0, maximum=8192)

    def any(self) -> bool:
        return bool(self.left or self.top or self.right or self.bottom)


@dataclasses.dataclass(frozen=True)
class Params(WireModel):
    """A job's parameters; every field is optional on the wire."""

    steps: int = wire(20, minimum=1, maximum=150)
    strength: Optional[float] = wire(None, minimum=0.0, maximum=1.0, doc="none: the mode's default (`welcome.defaults`)")
    cfg: Optional[float] = wire(None, minimum=0.0, maximum=30.0, doc="none: the model family's default")
    sampler: str = wire("", choices=("",) + SAMPLERS, doc='`""`: the model family\'s default')
    seed: int = wire(-1, minimum=-1, maximum=2**32 - 1, doc="-1 = random; each result layer reports its seed")
    batch: int = wire(1, minimum=1, limit="max_batch")
    grow: int = wire(-1, minimum=-1, maximum=1024, doc="px the mask grows by; -1 = scaled to the selection")
    feather: int = wire(-1, minimum=-1, maximum=1024, doc="px of soft edge; -1 = scaled to the selection")
    fill: str = wire("patch", choices=INPAINT_FILLS,
                     doc='classical fill and diffusion pre-fill: `"patch"` copies texture from around the hole, '
                         '`"telea"`/`"ns"` smooth it in, `"lama"` runs a LaMa network (`models pull lama`)')
    scale: float = wire(2.0, minimum=1.0, maximum=8.0, doc="upscale factor")
    upscaler: str = wire("", max_length=256, doc='upscale model name; `""` = Lanczos')
    refine: float = wire(0.0, minimum=0.0, maximum=1.0, doc="upscale-and-refine strength; 0 = off")
    tile: int = wire(0, minimum=0, maximum=4096, doc="tile size for tiled work; 0 = automatic")
    extend: Extend = wire(factory=Extend, doc="outpaint")
    width: int = wire(0, minimum=0, maximum=16384, doc="generate without an image")
    height: int = wire(0, minimum=0, maximum=16384, doc="generate without an image")
    preprocessor: str = wire("", max_length=64, doc="mode `preprocess`: which preprocessor")
    low_threshold: int = wire(100, minimum=0, maximum=255, doc="canny")
    high_threshold: int = wire(200, minimum=0, maximum=255, doc="canny")
    # sampling: schedule, batch count, VAE, CLIP skip, SDXL refiner
    scheduler: str = wire("", choices=("",) + SCHEDULE_NAMES,
                          doc='noise schedule; `""`: the sampler\'s own (a combination the sampler cannot do is refused)')
    batch_count: int = wire(1, minimum=1, maximum=100, doc="pipeline calls one after another, `batch` images each")
    vae: str = wire("", max_length=256, doc='a VAE of the models folder by name; `""` = the checkpoint\'s own')
    clip_skip: int = wire(0, minimum=0, maximum=12, doc="CLIP layers skipped from the end: 0/1 = none, 2 = penultimate")
    refiner: str = wire("", max_length=256, doc='an SDXL refiner by name for the last steps; `""` = off')
    refiner_start: float = wire(0.8, minimum=0.0, maximum=1.0,
                                doc="fraction of the steps after which the refiner takes over")
    # fills
    color_match: bool = wire(False, doc="match the result's colours to the area around the mask (inpaint, outpaint)")
    transparent: bool = wire(False, doc="modes `generate` and `img2img` (of a transparent layer) on SD1.5/SDXL: a "
                                        "layer with real alpha (LayerDiffuse: `models pull layerdiffuse-sd15` / "
                                        "`layerdiffuse-sdxl`)")
    caption_style: str = wire("sentence", choices=CAPTION_STYLES,
                              doc="mode `caption`: `\"sentence\"` describes the picture in words, `\"tags\"` as "
                                  "comma-separated tags")
    speed: str = wire("quality", choices=SPEED_LEVELS,
                      doc='`"quality"`: every step in full; `"fast"`: deep UNet features reused on alternate steps '
                          '(`welcome.capabilities.speed_levels`: the families that take it)')

    # seamless textures
    tileable: bool = wire(False, doc="a result that wraps at its edges, a seamless texture (generate, img2img and "
                                     "their hires fix, upscale and upscale-and-refine)")

    # hires fix and detailer
    hires: Hires = wire(factory=Hires, doc="hires fix: two passes (generate, img2img, inpaint, outpaint)")
    detail: Detail = wire(factory=Detail, doc="detailer after the job; mode `detail` uses it on its own")

    def check(self, path: str, limits: Any) -> None:
        """A sampler with a schedule it cannot do is refused naming both."""
        try:
            resolve_sampler(self.sampler, self.scheduler)
        except ValueError as err:
            raise bad_field(f"{path}.scheduler" if path else "scheduler", f"does not fit the sampler: {err}") from None
        if self.refiner and not 0.0 < self.refiner_start < 1.0:
            raise bad_field(f"{path}.refiner_start" if path else "refiner_start",
                            f"({self.refiner_start}) must be between 0 and 1 (exclusive) when a refiner is chosen")

    def as_dict(self) -> dict:
        """Every field as a plain map, None included (``extend`` as a map): the engines' view of the parameters."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["extend"] = dataclasses.asdict(self.extend)
        out["hires"] = dataclasses.asdict(self.hires)
        out["detail"] = dataclasses.asdict(self.detail)
        return out


@dataclasses.dataclass(frozen=True)
class Control(WireModel):
    """A control layer of a job."""

    type: str = wire(choices=CONTROL_TYPES)
    image: ImagePayload = wire(doc="the control layer's pixels for the context box (any format)")
    strength: float = wire(1.0, minimum=0.0, maximum=2.0)
    start: float = wire(0.0, minimum=0.0, maximum=1.0, doc="fraction of the steps; start ≤ end")
    end: float = wire(1.0, minimum=0.0, maximum=1.0)
    preprocess: bool = wire(False, doc="run the type's preprocessor on `image` first")
    model: str = wire("", max_length=256, doc='a ControlNet by name; `""` = the one matching type and checkpoint')

    def check(self, path: str, limits: Any) -> None:
        if self.start > self.end:
            raise bad_field(f"{path}.start", f"({self.start}) is after end ({self.end})")


# reference images
@dataclasses.dataclass(frozen=True)
class Reference(WireModel):
    """A reference image of a job (IP-Adapter on SD1.5/SDXL, Redux on Flux.1): the picture guides the result by its
    style, composition, content or face."""

    image: ImagePayload = wire(formats=(RGBA8, BGRA8), doc="the reference layer's pixels at the context box, or a "
                               "whole picture (any size)")
    type: str = wire("content", choices=REFERENCE_TYPES, doc="what the picture gives: `style` and `composition` use "
                     "only the adapter's style or layout blocks; `face` needs a face adapter; Flux.1 takes `content` "
                     "and `style` (`welcome.capabilities.reference_types_by_family`)")
    strength: float = wire(1.0, minimum=0.0, maximum=2.0, doc="the adapter's scale; 0 = no effect")
    start: float = wire(0.0, minimum=0.0, maximum=1.0, doc="fraction of the steps; start ≤ end")
    end: float = wire(1.0, minimum=0.0, maximum=1.0)
    mask: Optional[ImagePayload] = wire(None, formats=(GRAY8,), doc="the job's size (the context box): the reference "
                                        "applies only inside (255); none = everywhere")
    model: str = wire("", max_length=256, doc='an IP-Adapter (Flux.1: a Redux model) by name; `""` = the one matching '
                      'type and checkpoint')

    def check(self, path: str, limits: Any) -> None:
        if self.start > self.end:
            raise bad_field(f"{path}.start", f"({self.start}) is after end ({self.end})")


# regions
@dataclasses.dataclass(frozen=True)
class Region(WireModel):
    """A region of a job: an area of the context box (the bound layer's opacity) conditioned by its own prompt."""

    prompt: str = wire(max_length=MAX_PROMPT_LENGTH, doc="the area's prompt; the job's prompt is added to it")
    mask: ImagePayload = wire(formats=(GRAY8,), doc="the job's size (the context box): 255 = the region, soft "
                                                    "values blend with the job's prompt")
    negative_prompt: str = wire("", max_length=MAX_PROMPT_LENGTH, doc="added to the job's negative prompt there")
    strength: float = wire(1.0, minimum=0.0, maximum=1.0, doc="how much of the area follows the region's prompt; "
                                                              "0 = none")

    def check(self, path: str, limits: Any) -> None:
        if not self.prompt.strip():
            raise bad_field(f"{path}.prompt", "is empty; a region needs a prompt of its own")


@dataclasses.dataclass(frozen=True)
class ResultLayer(WireModel):
    """One layer of a ``result``: where it goes in the document (``x``, ``y``) and its pixels."""

    name: str = wire()
    x: int = wire()
    y: int = wire()
    width: int = wire(minimum=1)
    height: int = wire(minimum=1)
    format: str = wire(choices=PIXEL_FORMATS)
    data: bytes = wire()
    seed: int = wire(-1)
    info: Dict[str, Any] = wire(factory=dict)

    def check(self, path: str, limits: Any) -> None:
        parse_payload(self.payload_map(), path or "layer", limits.max_pixels)

    def payload_map(self) -> dict:
        return {"width": self.width, "height": self.height, "format": self.format, "data": self.data}

    @property
    def payload(self) -> ImagePayload:
        return ImagePayload(self.width, self.height, self.format, self.data)

    @classmethod
    def from_wire(cls, value: Any, limits: Limits = UNLIMITED) -> "ResultLayer":
        """Validate a result layer map (a bad one raises ProtocolError naming the field)."""
        if isinstance(value, Mapping) and isinstance(value.get("data"), (bytearray, memoryview)):
            value = dict(value, data=bytes(value["data"]))
        return cls.parse_map(value, "layer", limits)


# --- messages ------------------------------------------------------------------------------------------------------

class Message(WireModel):
    """A message of either direction; ``type`` is its wire ``type``."""

    type: ClassVar[str] = ""

    @classmethod
    def from_wire(cls, value: Any, limits: Limits = Limits()) -> Any:
        """Validate a decoded map as this message type."""
        if not isinstance(value, Mapping) or value.get("type") != cls.type:
            raise type_error((cls.type,), value)
        return cls.parse_map(value, "", limits)


def _id(**extra: Any) -> Any:
    return wire(max_length=MAX_ID_LENGTH, **extra)


@dataclasses.dataclass(frozen=True)
class Hello(Message):
    type: ClassVar[str] = "hello"
    protocol: str = wire(max_length=16, doc='`"major.minor"` the client speaks')
    client: str = wire(max_length=128, doc='client name, e.g. `"krita"`, `"gimp"`')
    client_version: str = wire("", max_length=64)
    token: Optional[str] = wire(None, max_length=1024, doc="the server's token, when it has one")
    session: Optional[str] = wire(None, pattern=SESSION_PATTERN,
                                  doc="client session id, made once per plugin session (1.1)")
    shared_memory: bool = wire(False, doc="the client can send and take payloads as files of a shared folder "
                                          "(`welcome.shared_folder`)")


@dataclasses.dataclass(frozen=True)
class Job(Message):
    type: ClassVar[str] = "job"
    id: str = _id(doc="chosen by the client; unique among its open jobs")
    mode: str = wire(choices=MODES)
    model: str = wire("", max_length=256, doc='a checkpoint name, `"classical"`, or `""` for the default; mode '
                      '`caption`: a captioner by name, `""` = the first installed')
    prompt: str = wire("", max_length=MAX_PROMPT_LENGTH)
    negative_prompt: str = wire("", max_length=MAX_PROMPT_LENGTH)
    image: Optional[ImagePayload] = wire(None, formats=(RGBA8, BGRA8), doc="the context box's pixels")
    mask: Optional[ImagePayload] = wire(None, formats=(GRAY8,), doc="same size as `image`; none = change it all")
    controls: Tuple[Control, ...] = wire((), max_items=MAX_CONTROLS)
    params: Params = wire(factory=Params)
    x: int = wire(0, minimum=-(2**31), maximum=2**31 - 1, doc="where `image` sits in the document")
    y: int = wire(0, minimum=-(2**31), maximum=2**31 - 1)
    result_format: str = wire(RGBA8, choices=(RGBA8, BGRA8), doc="pixel format of the result layers")
    previews: bool = wire(False, doc="attach small previews to `progress`")
    live: bool = wire(False, doc="a live frame (1.1): not kept across a dropped connection; replaces the "
                                 "client's older queued live frame")
    shared_memory: bool = wire(False, doc="the client reads `welcome.shared_folder`: result payloads may come back "
                                          "as `shm` handles (set by the reference client itself)")
    # reference images
    references: Tuple[Reference, ...] = wire((), max_items=MAX_REFERENCES,
                                             doc="reference images (IP-Adapter, Flux.1 Redux); "
                                                 "`welcome.capabilities.references` lists the model families that "
                                                 "take them")
    # regions
    regions: Tuple[Region, ...] = wire((), max_items=MAX_REGIONS,
                                       doc="areas with prompts of their own; `welcome.capabilities.regions` lists "
                                           "the model families that take them")

    def check(self, path: str, limits: Any) -> None:
        """Cross-field rules: what each mode needs, matching sizes, the size of what the job would make."""
        mode, image, mask, params = self.mode, self.image, self.mask, self.params
        if image is None:
            if mode != "generate":
                raise bad_field("image", f"is missing; mode '{mode}' needs an image")
            if params.width <= 0 or params.height <= 0:
                raise bad_field("params.width", "and params.height must be given when a generate job has no image")
        if mask is not None and image is not None and (mask.width, mask.height) != (image.width, image.height):
            raise bad_field("mask", f"is {mask.width}x{mask.height} but the image is {image.width}x{image.height}")
        for i, ctl in enumerate(self.controls):
            if image is not None and (ctl.image.width, ctl.image.height) != (image.width, image.height):
                raise bad_field(f"controls[{i}].image", f"is {ctl.image.width}x{ctl.image.height} but the image is "
                                f"{image.width}x{image.height}")
        for i, ref in enumerate(self.references):  # reference images
            size = (image.width, image.height) if image is not None else (params.width, params.height)
            if ref.mask is not None and (ref.mask.width, ref.mask.height) != size:
                raise bad_field(f"references[{i}].mask", f"is {ref.mask.width}x{ref.mask.height} but the job is "
                                f"{size[0]}x{size[1]}")
        for i, region in enumerate(self.regions):  # regions
            size = (image.width, image.height) if image is not None else (params.width, params.height)
            if (region.mask.width, region.mask.height) != size:
                raise bad_field(f"regions[{i}].mask", f"is {region.mask.width}x{region.mask.height} but the job is "
                                f"{size[0]}x{size[1]} (the context box)")
        if self.regions and mode not in REGION_MODES:
            raise bad_field("regions", f"are not used by mode '{mode}'; regions work in "
                            f"{', '.join(REGION_MODES)}")
        if params.tileable and mode not in TILEABLE_MODES:
            raise bad_field("params.tileable", f"is for pictures made whole ({', '.join(TILEABLE_MODES)}), not mode "
                            f"'{mode}': switch it off")
        if params.transparent and mode not in TRANSPARENT_MODES:
            raise bad_field("params.transparent", f"is for modes {', '.join(TRANSPARENT_MODES)}, not '{mode}'")
        if mode == "preprocess" and not params.preprocessor:
            raise bad_field("params.preprocessor", "is missing; mode 'preprocess' needs one (e.g. 'canny')")
        ext = params.extend
        if mode == "outpaint" and not ext.any():
            raise bad_field("params.extend", "is all zero; mode 'outpaint' needs at least one side to extend")

        def within_limit(field: str, what: str, width: int, height: int) -> None:
            if width * height > limits.max_pixels:
                raise ProtocolError(TOO_LARGE, f"field '{field}' asks for {what} of {width}x{height} = "
                                    f"{width * height} px, over the server's limit of {limits.max_pixels} px",
                                    field=field)

        if mode == "generate" and image is None:
            within_limit("params.width", "an image", params.width, params.height)
        if mode == "outpaint" and image is not None:
            within_limit("params.extend", "a canvas", image.width + ext.left + ext.right,
                         image.height + ext.top + ext.bottom)


@dataclasses.dataclass(frozen=True)
class Cancel(Message):
    type: ClassVar[str] = "cancel"
    id: str = _id(doc="an open job of this client")


@dataclasses.dataclass(frozen=True)
class ListModels(Message):
    type: ClassVar[str] = "list_models"


@dataclasses.dataclass(frozen=True)
class Pull(Message):
    """Download catalogue files onto the server's machine (1.1, when ``welcome.capabilities.pulls``)."""

    type: ClassVar[str] = "pull"
    id: str = _id(doc="chosen by the client; unique among its open jobs and pulls")
    names: Tuple[str, ...] = wire(max_items=MAX_PULL_NAMES, doc="preset names or catalogue file ids (see `presets`)")

    def check(self, path: str, limits: Any) -> None:
        if not self.names:
            raise bad_field("names", "is empty; name at least one preset or catalogue file")
        for i, name in enumerate(self.names):
            if not isinstance(name, str) or not 0 < len(name) <= 128:
                raise bad_field(f"names[{i}]", "must be a preset name or file id of 1-128 characters")


@dataclasses.dataclass(frozen=True)
class ListPresets(Message):
    type: ClassVar[str] = "list_presets"


@dataclasses.dataclass(frozen=True)
class Welcome(Message):
    type: ClassVar[str] = "welcome"
    protocol: str = wire(max_length=16, doc="the server's protocol version")
    server_version: str = wire()
    device: str = wire("", doc='e.g. `"cuda:0 NVIDIA GeForce RTX 4090 (float16)"`')
    models: Tuple[Dict[str, Any], ...] = wire((), doc="model entries")
    capabilities: Dict[str, Any] = wire(factory=dict)
    limits: Limits = wire(factory=Limits)
    defaults: Dict[str, Any] = wire(factory=dict, doc="defaults the plugins use (1.1)")
    session: Optional[str] = wire(None, pattern=SESSION_PATTERN, doc="the client session id (1.1)")
    resumed: Tuple[str, ...] = wire((), doc="open jobs the server still holds for this session (1.1)")
    shared_folder: Optional[str] = wire(None, max_length=4096,
                                        doc="this connection's private folder for payloads as files (`shm` "
                                            "handles), when the client asked and shares the server's machine")
    dtypes: Dict[str, Any] = wire(factory=dict, doc="how the server chose its precision per model family: see below")


@dataclasses.dataclass(frozen=True)
class Models(Message):
    type: ClassVar[str] = "models"
    models: Tuple[Dict[str, Any], ...] = wire(())


@dataclasses.dataclass(frozen=True)
class Presets(Message):
    """The catalogue's starter sets and what the server's models folder has of each (answer to ``list_presets``)."""

    type: ClassVar[str] = "presets"
    presets: Tuple[Dict[str, Any], ...] = wire((), doc="preset entries")


@dataclasses.dataclass(frozen=True)
class PullProgress(Message):
    type: ClassVar[str] = "pull_progress"
    id: str = _id()
    file: str = wire(doc="the catalogue file id being fetched")
    target: str = wire("", doc="where it lands, relative to the models folder")
    index: int = wire(0, minimum=0, doc="which file of the pull (0-based)")
    count: int = wire(1, minimum=1, doc="files in the pull")
    done: int = wire(0, minimum=0, doc="bytes of this file on disk so far")
    total: int = wire(0, minimum=0, doc="bytes of this file; 0 = unknown")


@dataclasses.dataclass(frozen=True)
class PullDone(Message):
    type: ClassVar[str] = "pull_done"
    id: str = _id()
    files: Tuple[Dict[str, Any], ...] = wire((), doc="`{id, target, downloaded, checked_with}` per file")
    models: Tuple[Dict[str, Any], ...] = wire((), doc="the model listing after the pull (as `models`)")


@dataclasses.dataclass(frozen=True)
class Queued(Message):
    type: ClassVar[str] = "queued"
    id: str = _id()
    position: int = wire(0, minimum=0, doc="jobs ahead of it")


@dataclasses.dataclass(frozen=True)
class Started(Message):
    type: ClassVar[str] = "started"
    id: str = _id()


@dataclasses.dataclass(frozen=True)
class Progress(Message):
    type: ClassVar[str] = "progress"
    id: str = _id()
    step: int = wire(minimum=0)
    total: int = wire(minimum=0)
    preview: Optional[ImagePayload] = wire(None, formats=(RGBA8,), doc="≤ 256 px a side, when the job asked")


@dataclasses.dataclass(frozen=True)
class Result(Message):
    type: ClassVar[str] = "result"
    id: str = _id()
    layers: Tuple[ResultLayer, ...] = wire()
    elapsed: float = wire(0.0, minimum=0.0, doc="seconds")
    params: Dict[str, Any] = wire(factory=dict, doc="the parameters the server used")
    info: Dict[str, Any] = wire(factory=dict)
    text: str = wire("", doc="mode `caption`: the picture described as a prompt to start from (`layers` is empty)")


@dataclasses.dataclass(frozen=True)
class Cancelled(Message):
    type: ClassVar[str] = "cancelled"
    id: str = _id()


@dataclasses.dataclass(frozen=True)
class Error(Message):
    type: ClassVar[str] = "error"
    code: str = wire()
    message: str = wire()
    id: Optional[str] = wire(None, max_length=MAX_ID_LENGTH, doc="only the exact id of a job this error ends")
    field: Optional[str] = wire(None, doc="the offending field, a dotted path")

    def exception(self) -> ProtocolError:
        return ProtocolError(self.code, self.message, field=self.field, job_id=self.id)


ClientMessage = Union[Hello, Job, Cancel, ListModels, Pull, ListPresets]
ServerMessage = Union[Welcome, Models, Queued, Started, Progress, Result, Cancelled, Error, Presets, PullProgress,
                      PullDone]
CLIENT_TYPES: Dict[str, Type[Message]] = {m.type: m for m in (Hello, Job, Cancel, ListModels, Pull, ListPresets)}
SERVER_TYPES: Dict[str, Type[Message]] = {m.type: m for m in (Welcome, Models, Queued, Started, Progress, Result,
                                                                 Cancelled, Error, Presets, PullProgress, PullDone)}
OPENING_TYPES = (Job, Pull)  # requests that open an id until its one final message
FINAL_TYPES = (Result, PullDone, Cancelled, Error)
JOB_EVENT_TYPES = (Queued, Started, Progress, Result, PullProgress, PullDone, Cancelled)


def error_from(err: ProtocolError) -> Error:
    """The ``error`` message for a ProtocolError."""
    return Error(err.code, err.message, id=err.job_id, field=err.field)


def _parse(value: Any, types: Dict[str, Type[Message]], limits: Limits) -> Any:
    kind = value.get("type") if isinstance(value, Mapping) else None
    cls = types.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise type_error(tuple(types), value)
    return cls.parse_map(value, "", limits)


def parse_client_message(value: Any, limits: Limits = Limits(),
                         resolve: Optional[Callable[[Any], Any]] = None) -> ClientMessage:
    """Validate a message a client sent (the server's side), after ``resolve`` (shared-memory handles to bytes, see
    ``shared.resolve``) when given. A refused ``job`` (or ``pull``) whose ``id`` is a valid id carries it in the error
    (``job_id``); an id that is not valid is never echoed, not even cut."""
    try:
        if resolve is not None:
            value = resolve(value)
        return _parse(value, CLIENT_TYPES, limits)
    except ProtocolError as err:
        if isinstance(value, Mapping) and value.get("type") in ("job", "pull") and err.job_id is None:
            jid = value.get("id")
            if isinstance(jid, str) and 0 < len(jid) <= MAX_ID_LENGTH:
                err.job_id = jid
        raise


def parse_server_message(value: Any, limits: Limits = UNLIMITED) -> ServerMessage:
    """Validate a message a server sent (the client's side)."""
    return _parse(value, SERVER_TYPES, limits)


def job_params_defaults() -> dict:
    """The default ``params`` as a plain map (``Params().as_dict()``)."""
    return Params().as_dict()


def hello(client: str, client_version: str = "", token: Optional[str] = None, session: Optional[str] = None,
          shared_memory: bool = False) -> Hello:
    """This library's ``hello``."""
    return Hello(PROTOCOL_VERSION, client, client_version, token or None, session, shared_memory)
