"""Job options: one ``Settings`` for both editors, its persistence format, and the defaults the server announces.

``Settings`` holds what the painter chose; "use the default" is spelled ``strength=None``, ``steps=0``, ``cfg=0`` and
``sampler=""``. ``apply_defaults`` fills those from ``welcome.defaults`` (``Defaults.from_welcome``) for the chosen
model's family, so the server and both plugins use the same numbers. ``to_dict``/``from_dict`` is the format both
plugins store (JSON-ready; unknown keys ignored, ill-typed values fall back to the default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .modes import MODES
from .wire import protocol
from .sampling import SamplingChoices

CLASSICAL = "classical"
# The fills (protocol ``params.fill``): texture copied from around the hole, smooth (Telea, Navier-Stokes), a LaMa
# network (its weights pulled with 'paintbridge models pull lama'); value → label.
FILLS = {"patch": "Texture (patch)", "telea": "Smooth (Telea)", "ns": "Smooth (Navier-Stokes)", "lama": "LaMa network"}
IMAGE_SOURCES = ("visible", "layer")
CAPTION_STYLES = tuple(protocol.CAPTION_STYLES)  # value → the painter's word: CAPTION_STYLE_LABELS
CAPTION_STYLE_LABELS = {"sentence": "Sentence", "tags": "Tags"}
MASK_SOURCES = ("selection", "layer-mask", "alpha")
# Speed levels (protocol ``params.speed``) → the painter's word. ``""`` (the protocol's default) leaves the level to
# the style (else quality); ``quality`` computes every step in full and ``fast`` reuses deep features, both winning
# over the style's level; ``offers`` says which levels a model's family takes.
SPEED_LABELS = {"": "Style's choice", "quality": "Quality", "fast": "Fast"}
# The stored key of ``Settings.speed``. Maps stored before ``""`` existed hold ``speed``, where "quality" was the
# default and meant what ``""`` means now (a style's level won over it): read as ``""``, so nothing changes for them.
STORED_SPEED = "speed_choice"

# What a 1.0 server (which sends no ``welcome.defaults``) gets: the server's own tables at protocol 1.1.
FALLBACK_DEFAULTS: Dict[str, Any] = {
    "modes": {
        "generate": {"strength": 1.0},
        "img2img": {"strength": 0.7},
        "inpaint": {"strength": 1.0},
        "outpaint": {"strength": 1.0},
        "upscale": {"strength": 0.35, "scale": 2.0},
    },
    "families": {
        "sd15": {"steps": 25, "cfg": 7.0, "sampler": "DPM++ 2M Karras", "resolution": 512},
        "sdxl": {"steps": 30, "cfg": 6.0, "sampler": "DPM++ 2M Karras", "resolution": 1024},
        CLASSICAL: {"steps": 1, "cfg": 0.0, "sampler": "", "resolution": 0},
    },
    "layer_name_length": 40,
}


@dataclass(frozen=True)
class ReferenceSetting:
    """A reference image the painter picked: a layer (by the name the adapter finds it by), what it gives, how
    strongly, and over which fraction of the steps."""

    layer: str
    type: str = "content"
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    region: str = ""  # the stable id of a region's layer (``RegionBinding.layer``): applies only there; "" = everywhere

    @classmethod
    def from_dict(cls, data: Any) -> Optional["ReferenceSetting"]:
        """A stored reference, or None when it is not one (a missing layer name); odd values fall back."""
        if not isinstance(data, Mapping) or not isinstance(data.get("layer"), str) or not data["layer"]:
            return None
        kind = data.get("type") if data.get("type") in protocol.REFERENCE_TYPES else cls.type

        def number(key: str, default: float, low: float, high: float) -> float:
            value = data.get(key)
            return min(max(float(value), low), high) if _is_number(value) else default

        start, end = number("start", 0.0, 0.0, 1.0), number("end", 1.0, 0.0, 1.0)
        region = data.get("region") if isinstance(data.get("region"), str) else ""
        return cls(data["layer"], kind, number("strength", 1.0, 0.0, 2.0), min(start, end), max(start, end), region)


def parse_references(value: Any) -> Tuple[ReferenceSetting, ...]:
    """Stored references (a list of maps) as settings; entries that are not references are dropped."""
    if not isinstance(value, (list, tuple)):
        return ()
    found = (ReferenceSetting.from_dict(v) for v in value)
    return tuple(r for r in found if r is not None)


@dataclass(frozen=True)
class ControlSetting:
    """A control layer the painter picked, as a job's settings keep it (results history: "reuse settings" puts it
    back): the layer by the stable id the adapter finds it by (GIMP: its tattoo; Krita: its uniqueId), its control
    type, strength, step range and whether the server preprocesses it."""

    layer: str
    type: str = "canny"
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: bool = False

    @classmethod
    def from_dict(cls, data: Any) -> Optional["ControlSetting"]:
        """A stored control, or None when it is not one (a missing layer id or an unknown type); odd values fall
        back."""
        if not isinstance(data, Mapping) or not isinstance(data.get("layer"), str) or not data["layer"]:
            return None
        if data.get("type") not in protocol.messages.CONTROL_TYPES:
            return None

        def number(key: str, default: float, low: float, high: float) -> float:
            value = data.get(key)
            return min(max(float(value), low), high) if _is_number(value) else default

        start, end = number("start", 0.0, 0.0, 1.0), number("end", 1.0, 0.0, 1.0)
        preprocess = data.get("preprocess") if isinstance(data.get("preprocess"), bool) else False
        return cls(
            data["layer"], data["type"], number("strength", 1.0, 0.0, 2.0), min(start, end), max(start, end), preprocess
        )


def parse_controls(value: Any) -> Tuple[ControlSetting, ...]:
    """Stored controls (a list of maps) as settings; entries that are not controls are dropped, at most
    ``protocol.messages.MAX_CONTROLS`` kept."""
    if not isinstance(value, (list, tuple)):
        return ()
    found = (ControlSetting.from_dict(v) for v in value)
    return tuple(c for c in found if c is not None)[: protocol.messages.MAX_CONTROLS]


AUTO_STYLE = "<auto>"  # a job's style: the one the server suggests for its model's family (no name starts with <)


@dataclass
class Settings:
    """Everything a painter can choose for one job, in either editor."""

    mode: str = "inpaint"
    model: str = ""  # "" = the server's default checkpoint; "classical" = the built-in engine
    style: str = ""  # a server style by name ("" = none): the server fills what is left to the default from it
    prompt: str = ""
    negative_prompt: str = ""
    strength: Optional[float] = None  # None = the mode's default
    steps: int = 0  # 0 = the model family's default
    cfg: float = 0.0  # 0 = the model family's default
    sampler: str = ""  # "" = the model family's default
    seed: int = -1  # -1 = random (the server picks; each result layer says which)
    batch: int = 1
    grow: int = -1  # -1 = scaled to the selection
    feather: int = -1  # -1 = scaled to the selection
    fill: str = "patch"  # classical fill / pre-fill: FILLS
    extend_left: int = 0
    extend_top: int = 0
    extend_right: int = 0
    extend_bottom: int = 0
    scale: float = 2.0
    upscaler: str = ""  # "" = Lanczos
    refine: float = 0.0  # upscale: img2img strength of a refine pass; 0 = off
    tile: int = 0  # 0 = automatic
    preprocessor: str = "canny"
    low_threshold: int = 100
    high_threshold: int = 200
    image_source: str = "visible"  # IMAGE_SOURCES
    mask_source: str = "selection"  # MASK_SOURCES (each editor offers the ones it can read)
    # fills
    color_match: bool = False  # inpaint/outpaint: match the result's colours to the area around the mask
    tileable: bool = False  # generate/img2img/upscale: a seamless texture (its edges wrap around)
    wrap_view: bool = True  # Krita: a tileable result is shown in the canvas's wrap-around mode
    # reference images: in order; each editor resolves the layer names
    references: Tuple[ReferenceSetting, ...] = ()
    # control layers, in order, by stable id (kept with a job so "reuse settings" refills them; older stored
    # settings have none); the job itself takes the adapter's control sources
    controls: Tuple[ControlSetting, ...] = ()
    # results history: how many MB of results each document keeps (client/history.py); 0 = none
    history_limit_mb: int = 64
    # sampling: schedule, batch count, VAE, CLIP skip, SDXL refiner
    scheduler: str = ""  # "" = the sampler's own schedule
    batch_count: int = 1  # pipeline calls one after another, ``batch`` images each
    vae: str = ""  # "" = the checkpoint's own VAE
    clip_skip: int = 0  # 0/1 = none, 2 = the penultimate CLIP layer
    refiner: str = ""  # an SDXL refiner by name; "" = off
    refiner_start: float = 0.8  # fraction of the steps after which the refiner takes over
    # hires fix and detailer
    hires: bool = False  # two passes for a box larger than the model's native area
    hires_upscaler: str = "latent"  # "latent", "lanczos" or an upscale model's name
    hires_strength: float = 0.4  # denoise of the second pass
    hires_steps: int = 0  # 0 = the job's steps
    hires_scale: float = 0.0  # 0 = the box's own size
    detail: bool = False  # run the detailer after generate/img2img/inpaint/outpaint (mode "detail" runs it alone)
    detail_targets: str = "face"  # comma-separated: face, hand
    detail_prompt: str = ""  # "" = the job's prompt
    detail_negative_prompt: str = ""
    detail_strength: float = 0.4
    detail_steps: int = 0  # 0 = the job's steps
    detail_padding: int = 32
    detail_confidence: float = 0.5
    detail_separate: bool = False  # one layer per detection
    transparent: bool = False  # generate, img2img: a layer with real alpha (LayerDiffuse, SD1.5/SDXL)
    # prompt from the picture (mode "caption")
    caption_style: str = "sentence"  # protocol CAPTION_STYLES: "sentence" or "tags"
    captioner: str = ""  # a captioner by name; "" = the server's first
    # picture into layers (mode "decompose", Qwen-Image-Layered)
    layer_count: int = 4  # protocol MIN_LAYER_COUNT..MAX_LAYER_COUNT
    # speed level (SPEED_LABELS): "" = the style's level (else quality); "quality" every step in full; "fast" reuses
    # deep UNet features on alternate steps (the families ``offers`` lists); for jobs and live frames alike
    speed: str = ""

    def to_dict(self) -> Dict[str, Any]:
        """The stored form (a JSON-ready map)."""
        out = dataclasses.asdict(self)
        out["references"] = [dataclasses.asdict(r) for r in self.references]
        out["controls"] = [dataclasses.asdict(c) for c in self.controls]
        out[STORED_SPEED] = out.pop("speed")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Settings":
        """Settings from a stored map; unknown keys are ignored and ill-typed values fall back to the default."""
        out = cls()
        if not isinstance(data, Mapping):
            return out
        data = _current_speed_key(data)
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(out, f.name)
            if f.name == "references":
                setattr(out, f.name, parse_references(value))
                continue
            if f.name == "controls":
                setattr(out, f.name, parse_controls(value))
                continue
            if f.name == "strength":
                ok = value is None or _is_number(value)
                value = None if value is None else float(value) if ok else default
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = _is_number(value)
                value = float(value) if ok else default
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default))
            setattr(out, f.name, value if ok else default)
        if out.mode not in MODES:
            out.mode = cls.mode
        if out.image_source not in IMAGE_SOURCES:
            out.image_source = cls.image_source
        if out.mask_source not in MASK_SOURCES:
            out.mask_source = cls.mask_source
        if out.fill not in FILLS:
            out.fill = cls.fill
        if out.caption_style not in CAPTION_STYLES:
            out.caption_style = cls.caption_style
        if out.speed not in SPEED_LABELS:
            out.speed = cls.speed
        return out

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


def _current_speed_key(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with its speed under the field's name: ``STORED_SPEED``'s value, else an older map's ``speed``
    ("fast" stays, the old default "quality" becomes ``""``)."""
    if STORED_SPEED in data:
        return {**data, "speed": data[STORED_SPEED]}
    if "speed" in data:
        return {**data, "speed": "fast" if data["speed"] == "fast" else ""}
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


@dataclass(frozen=True)
class FamilyDefaults:
    """Good starting values for one model family."""

    steps: int
    cfg: float
    sampler: str
    resolution: int


@dataclass(frozen=True)
class Defaults:
    """The defaults a server announces in ``welcome.defaults`` (the 1.1 server tables when it announces none)."""

    modes: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in FALLBACK_DEFAULTS["modes"].items()}
    )
    families: Mapping[str, FamilyDefaults] = field(default_factory=lambda: _families(FALLBACK_DEFAULTS["families"]))
    layer_name_length: int = FALLBACK_DEFAULTS["layer_name_length"]
    # per listing ``variant`` (Flux.1 schnell, SD3.5 large turbo ...): what differs from its family's defaults
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # sampling: the samplers, schedules, VAEs and refiners the server offers
    sampling: SamplingChoices = field(default_factory=SamplingChoices)
    # per family: the style the server suggests (a job's style ``AUTO_STYLE`` becomes it)
    styles: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_welcome(cls, welcome: "protocol.Welcome") -> "Defaults":
        """The defaults of a ``welcome``; missing parts fall back per entry."""
        raw = welcome.defaults
        modes = {k: dict(v) for k, v in FALLBACK_DEFAULTS["modes"].items()}
        for mode, values in (raw.get("modes") or {}).items():
            if isinstance(values, Mapping):
                modes.setdefault(str(mode), {}).update({k: float(v) for k, v in values.items() if _is_number(v)})
        families = _families(FALLBACK_DEFAULTS["families"])
        families.update(_families(raw.get("families") or {}))
        length = raw.get("layer_name_length")
        length = (
            length
            if isinstance(length, int) and not isinstance(length, bool) and length >= 8
            else FALLBACK_DEFAULTS["layer_name_length"]
        )
        variants = {str(k): dict(v) for k, v in (raw.get("variants") or {}).items() if isinstance(v, Mapping)}
        styles = {str(k): str(v) for k, v in (raw.get("styles") or {}).items() if isinstance(v, str)}
        return cls(modes, families, length, variants, SamplingChoices.from_welcome(welcome), styles)

    def strength(self, mode: str) -> Optional[float]:
        """The mode's default strength (None when the server names none)."""
        value = self.modes.get(mode, {}).get("strength")
        return None if value is None else float(value)

    def mode_value(self, mode: str, key: str, fallback: float) -> float:
        return float(self.modes.get(mode, {}).get(key, fallback))

    def family(self, entry: Optional[Mapping[str, Any]]) -> Optional[FamilyDefaults]:
        """The defaults of a model listing entry's family with its ``variant``'s differences applied (None when the
        family is unknown here)."""
        fam = self.families.get(family_of(entry)) if entry is not None else None
        if fam is None:
            return None
        changes = self.variants.get(str(entry.get("variant") or ""), {})
        try:
            return dataclasses.replace(
                fam,
                **{
                    k: type(getattr(fam, k))(v)
                    for k, v in changes.items()
                    if k in ("steps", "cfg", "sampler", "resolution")
                },
            )
        except (TypeError, ValueError):
            return fam


def _families(raw: Mapping[str, Any]) -> Dict[str, FamilyDefaults]:
    out = {}
    for name, v in raw.items():
        if not isinstance(v, Mapping):
            continue
        try:
            out[str(name)] = FamilyDefaults(
                int(v.get("steps", 0)), float(v.get("cfg", 0.0)), str(v.get("sampler", "")), int(v.get("resolution", 0))
            )
        except (TypeError, ValueError):
            continue
    return out


def family_of(entry: Optional[Mapping[str, Any]]) -> str:
    """A model listing entry's family: its ``family`` (protocol 1.1), else its ``arch``, ``classical`` for the
    built-in engine; "" when nothing says."""
    if not entry:
        return ""
    if entry.get("name") == CLASSICAL or entry.get("kind") == "builtin":
        return CLASSICAL
    return str(entry.get("family") or entry.get("arch") or "")


def model_entry(models: Sequence[Mapping[str, Any]], name: str) -> Optional[Mapping[str, Any]]:
    """The listing entry ``name`` refers to: "" is the server's default (its first checkpoint, else the classical
    engine); None when the server lists no such model."""
    if name == "":
        checkpoints = [m for m in models if m.get("kind") == "checkpoint"]
        if checkpoints:
            return checkpoints[0]
        name = CLASSICAL
    found = next((m for m in models if m.get("name") == name), None)
    if found is None and name == CLASSICAL:
        return {"name": CLASSICAL, "kind": "builtin"}
    return found


def apply_defaults(settings: Settings, defaults: Defaults, entry: Optional[Mapping[str, Any]]) -> Settings:
    """A copy of ``settings`` with every "use the default" value filled from ``defaults`` for ``entry``'s family
    (values the server's tables do not cover stay unset, so the server fills them the same way)."""
    out = settings.replace()
    if out.strength is None:
        out.strength = defaults.strength(out.mode)
    if out.style == AUTO_STYLE:  # the style the server suggests for the model's family, else none
        out.style = defaults.styles.get(str((entry or {}).get("arch") or ""), "")
    fam = defaults.family(entry)
    if fam is not None and not out.style:  # a style's sampling is the server's to fill
        if out.steps <= 0:
            out.steps = fam.steps
        if out.cfg <= 0:
            out.cfg = fam.cfg
        if not out.sampler:
            out.sampler = fam.sampler
    return out


def defaults_for_mode(mode: str, defaults: Defaults) -> Settings:
    """Fresh settings for ``mode``: what a reset button or a new procedure run starts from."""
    return Settings(
        mode=mode, strength=defaults.strength(mode), scale=defaults.mode_value("upscale", "scale", Settings.scale)
    )
