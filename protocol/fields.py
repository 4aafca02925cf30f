"""The nested maps a message carries — limits, params, an outpaint's sides, control layers, reference images,
regions, result layers — and the values their fields take. Frozen dataclasses whose ``schema.wire`` declarations are
the schema, as in ``messages``, which re-exports them."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional

from .errors import bad_field
from .images import BGRA8, GRAY8, PIXEL_FORMATS, RGBA8, ImagePayload, parse_payload
from .sampling import SAMPLERS, SCHEDULE_NAMES, resolve as resolve_sampler
from .schema import WireModel, sub_path, wire
from .styles import INPAINT_METHODS
from .techniques import MAX_PROMPT_LENGTH, Detail, Hires

MODES = (
    "generate",
    "img2img",
    "inpaint",
    "outpaint",
    "upscale",
    "preprocess",
    "edit",
    "detail",
    "caption",
    "decompose",
)
TILEABLE_MODES = ("generate", "img2img", "upscale")  # seamless textures: the modes that make a whole picture
CAPTION_STYLES = ("sentence", "tags")
TRANSPARENT_MODES = ("generate", "img2img")  # params.transparent: layers with real alpha
CONTROL_TYPES = (
    "canny",
    "lineart",
    "scribble",
    "softedge",
    "depth",
    "normal",
    "pose",
    "tile",
    "inpaint",
    "shuffle",
    "reference",
)
INPAINT_FILLS = ("telea", "ns", "patch", "lama")
# Speed levels a painter picks per job: "quality" computes every step in full; "fast" reuses the UNet's deep
# features on alternate steps (DeepCache-style) — for live frames and previews, never chosen by the server itself.
# A job's ``params.speed`` may also be "" (not chosen): the style's level, else "quality".
SPEED_LEVELS = ("quality", "fast")
REFERENCE_TYPES = ("style", "composition", "content", "face")  # reference images

MAX_ID_LENGTH = 64
MAX_CONTROLS = 8
MAX_PULL_NAMES = 64
MAX_REFERENCES = 8  # reference images
MAX_REGIONS = 16  # regions
REGION_MODES = ("generate", "img2img", "inpaint", "outpaint")  # regions
MIN_LAYER_COUNT, MAX_LAYER_COUNT = 2, 10  # mode "decompose": the RGBA layers one picture is split into
MAX_GROUP_LENGTH = 256

# --- nested maps ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Limits(WireModel):
    """Limits the server announces in ``welcome`` and enforces before allocating."""

    max_pixels: int = wire(8192 * 8192, minimum=1, doc="per image (64 Mi px: a 6000x4000 photo with room to outpaint)")
    max_frame_bytes: int = wire(
        512 * 1024 * 1024,
        minimum=1,
        doc="per frame, each way (512 MiB: an image at max_pixels with its mask, or a result of 128 Mi px)",
    )
    max_batch: int = wire(8, minimum=1)
    max_queue: int = wire(32, minimum=1, doc="per client: its jobs queued or running")
    max_bytes_in_flight: int = wire(
        1024 * 1024 * 1024,
        minimum=1,
        doc="server-wide: incoming frame bytes held at once across all clients (1 GiB); "
        "beyond it the server reads the next frame only once others are handled",
    )


UNLIMITED = Limits(max_pixels=2**31, max_frame_bytes=2**31, max_batch=2**31, max_queue=2**31, max_bytes_in_flight=2**62)


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
    strength: Optional[float] = wire(
        None, minimum=0.0, maximum=1.0, doc="none: the mode's default (`welcome.defaults`)"
    )
    cfg: Optional[float] = wire(None, minimum=0.0, maximum=30.0, doc="none: the model family's default")
    sampler: str = wire("", choices=("",) + SAMPLERS, doc='`""`: the model family\'s default')
    seed: int = wire(-1, minimum=-1, maximum=2**32 - 1, doc="-1 = random; each result layer reports its seed")
    batch: int = wire(1, minimum=1, limit="max_batch")
    grow: int = wire(-1, minimum=-1, maximum=1024, doc="px the mask grows by; -1 = scaled to the selection")
    feather: int = wire(-1, minimum=-1, maximum=1024, doc="px of soft edge; -1 = scaled to the selection")
    fill: str = wire(
        "patch",
        choices=INPAINT_FILLS,
        doc='classical fill and diffusion pre-fill: `"patch"` copies texture from around the hole, '
        '`"telea"`/`"ns"` smooth it in, `"lama"` runs a LaMa network (`models pull lama`)',
    )
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
    scheduler: str = wire(
        "",
        choices=("",) + SCHEDULE_NAMES,
        doc='noise schedule; `""`: the sampler\'s own (a combination the sampler cannot do is refused)',
    )
    batch_count: int = wire(1, minimum=1, maximum=100, doc="pipeline calls one after another, `batch` images each")
    vae: str = wire("", max_length=256, doc='a VAE of the models folder by name; `""` = the checkpoint\'s own')
    clip_skip: int = wire(0, minimum=0, maximum=12, doc="CLIP layers skipped from the end: 0/1 = none, 2 = penultimate")
    refiner: str = wire("", max_length=256, doc='an SDXL refiner by name for the last steps; `""` = off')
    refiner_start: float = wire(
        0.8, minimum=0.0, maximum=1.0, doc="fraction of the steps after which the refiner takes over"
    )
    # fills
    color_match: bool = wire(False, doc="match the result's colours to the area around the mask (inpaint, outpaint)")
    transparent: bool = wire(
        False,
        doc="modes `generate` and `img2img` (of a transparent layer) on SD1.5/SDXL: a "
        "layer with real alpha (LayerDiffuse: `models pull layerdiffuse-sd15` / "
        "`layerdiffuse-sdxl`)",
    )
    caption_style: str = wire(
        "sentence",
        choices=CAPTION_STYLES,
        doc='mode `caption`: `"sentence"` describes the picture in words, `"tags"` as comma-separated tags',
    )
    layer_count: int = wire(
        4,
        minimum=MIN_LAYER_COUNT,
        maximum=MAX_LAYER_COUNT,
        doc="mode `decompose`: how many RGBA layers the picture is split into (Qwen-Image-Layered)",
    )
    speed: str = wire(
        "",
        choices=("",) + SPEED_LEVELS,
        doc='`""`: the style\'s level (`style.speed`), else `"quality"`; `"quality"`: every step in full, also where '
        'the style sets `"fast"`; `"fast"`: deep UNet features reused on alternate steps '
        "(`welcome.capabilities.speed_levels`: the families that take it); `result.info.speed` says which ran",
    )

    # seamless textures
    tileable: bool = wire(
        False,
        doc="a result that wraps at its edges, a seamless texture (generate, img2img and "
        "their hires fix, upscale and upscale-and-refine)",
    )

    inpaint_method: str = wire(
        "auto",
        choices=INPAINT_METHODS,
        doc='inpaint and outpaint: `"auto"` the best installed method of the family, with the hole pre-filled '
        "(`result.info.inpaint` says which and why); another value forces that method",
    )

    # hires fix and detailer
    hires: Hires = wire(factory=Hires, doc="hires fix: two passes (generate, img2img, inpaint, outpaint)")
    detail: Detail = wire(factory=Detail, doc="detailer after the job; mode `detail` uses it on its own")

    def check(self, path: str, limits: Any) -> None:
        """A sampler with a schedule it cannot do is refused naming both."""
        try:
            resolve_sampler(self.sampler, self.scheduler)
        except ValueError as err:
            raise bad_field(sub_path(path, "scheduler"), f"does not fit the sampler: {err}") from None
        if self.refiner and not 0.0 < self.refiner_start < 1.0:
            raise bad_field(
                sub_path(path, "refiner_start"),
                f"({self.refiner_start}) must be between 0 and 1 (exclusive) when a refiner is chosen",
            )

    def to_wire(self) -> dict:
        """The wire map; ``speed`` left out while unset (``""``): a server from before ``""`` was a choice reads its
        own default ``"quality"``, which let the style's level win there too, so a new plugin works with it."""
        out = super().to_wire()
        if out.get("speed") == "":
            del out["speed"]
        return out

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
            raise bad_field(sub_path(path, "start"), f"({self.start}) is after end ({self.end})")


# reference images
@dataclasses.dataclass(frozen=True)
class Reference(WireModel):
    """A reference image of a job (IP-Adapter on SD1.5/SDXL, Redux on Flux.1): the picture guides the result by its
    style, composition, content or face."""

    image: ImagePayload = wire(
        formats=(RGBA8, BGRA8), doc="the reference layer's pixels at the context box, or a whole picture (any size)"
    )
    type: str = wire(
        "content",
        choices=REFERENCE_TYPES,
        doc="what the picture gives: `style` and `composition` use "
        "only the adapter's style or layout blocks; `face` needs a face adapter; Flux.1 takes `content` "
        "and `style` (`welcome.capabilities.reference_types_by_family`)",
    )
    strength: float = wire(1.0, minimum=0.0, maximum=2.0, doc="the adapter's scale; 0 = no effect")
    start: float = wire(0.0, minimum=0.0, maximum=1.0, doc="fraction of the steps; start ≤ end")
    end: float = wire(1.0, minimum=0.0, maximum=1.0)
    mask: Optional[ImagePayload] = wire(
        None,
        formats=(GRAY8,),
        doc="the job's size (the context box): the reference applies only inside (255); none = everywhere",
    )
    model: str = wire(
        "",
        max_length=256,
        doc='an IP-Adapter (Flux.1: a Redux model) by name; `""` = the one matching type and checkpoint',
    )

    def check(self, path: str, limits: Any) -> None:
        if self.start > self.end:
            raise bad_field(sub_path(path, "start"), f"({self.start}) is after end ({self.end})")


# regions
@dataclasses.dataclass(frozen=True)
class Region(WireModel):
    """A region of a job: an area of the context box (the bound layer's opacity) conditioned by its own prompt."""

    prompt: str = wire(max_length=MAX_PROMPT_LENGTH, doc="the area's prompt; the job's prompt is added to it")
    mask: ImagePayload = wire(
        formats=(GRAY8,),
        doc="the job's size (the context box): 255 = the region, soft values blend with the job's prompt",
    )
    negative_prompt: str = wire(
        "",
        max_length=MAX_PROMPT_LENGTH,
        doc="added to the job's negative prompt there (families that take a negative prompt)",
    )
    strength: float = wire(
        1.0, minimum=0.0, maximum=1.0, doc="how much of the area follows the region's prompt; 0 = none"
    )

    def check(self, path: str, limits: Any) -> None:
        if not self.prompt.strip():
            raise bad_field(sub_path(path, "prompt"), "is empty; a region needs a prompt of its own")


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
    group: Optional[str] = wire(
        None,
        max_length=MAX_GROUP_LENGTH,
        doc="the layer group this layer belongs in (mode `decompose`); a group's layers arrive bottom first",
    )

    def check(self, path: str, limits: Any) -> None:
        if self.group is not None and not self.group.strip():
            raise bad_field(sub_path(path, "group"), "is blank; leave it out for a layer outside any group")
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
