"""Message types, their fields and validation.

Every message is a map with a ``type``. ``parse_client_message`` / ``parse_server_message`` check a decoded map against
the schema below and return a normalised copy (defaults filled in, unknown fields dropped); a missing or ill-typed field
raises a ``bad_request`` ProtocolError that names it. ``protocol/README.md`` documents the same schema for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any, Callable, Mapping, Optional

from .errors import BAD_REQUEST, TOO_LARGE, VERSION_MISMATCH, ProtocolError, bad_field
from .images import GRAY8, PIXEL_FORMATS, RGBA8, BGRA8, parse_payload

PROTOCOL_VERSION = "1.0"

MODES = ("generate", "img2img", "inpaint", "outpaint", "upscale", "preprocess")
SAMPLERS = (
    "Euler a",
    "Euler",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "DDIM",
    "UniPC",
    "LCM",
)
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
INPAINT_FILLS = ("telea", "ns")

MAX_ID_LENGTH = 64
MAX_PROMPT_LENGTH = 8192
MAX_CONTROLS = 8


def parse_version(text: Any, field: str = "protocol") -> tuple:
    """``'major.minor'`` → ``(major, minor)``; anything else is a bad_request naming ``field``."""
    if not isinstance(text, str):
        raise bad_field(field, f"must be a 'major.minor' string, got {type(text).__name__}")
    parts = text.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise bad_field(field, f"must look like 'major.minor', got {text!r}")
    return int(parts[0]), int(parts[1])


def check_compatible(peer_version: str, ours: str = PROTOCOL_VERSION, peer: str = "client") -> None:
    """Refuse a peer whose major version differs, saying which side to update."""
    theirs = parse_version(peer_version)
    mine = parse_version(ours)
    if theirs[0] != mine[0]:
        newer = "server" if theirs[0] > mine[0] else peer
        raise ProtocolError(
            VERSION_MISMATCH,
            f"protocol {peer_version} of the {peer} is incompatible with protocol {ours}: update the {newer}"
            if newer == "server" else
            f"protocol {peer_version} of the {peer} is incompatible with protocol {ours}: update the {peer} (Paintbridge plugin)",
            field="protocol",
        )


@dataclass(frozen=True)
class Field:
    """One field of a message: its wire type, whether it is required, its default and range."""

    name: str
    kind: Any  # a type, a tuple of types, or "payload:<formats>", "map", "list"
    required: bool = False
    default: Any = None
    choices: Optional[tuple] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    max_length: Optional[int] = None
    check: Optional[Callable[[Any, str, "Limits"], Any]] = None


@dataclass(frozen=True)
class Limits:
    """Limits the server announces in ``welcome`` and enforces before allocating."""

    max_pixels: int = 4096 * 4096
    max_frame_bytes: int = 256 * 1024 * 1024
    max_batch: int = 8
    max_queue: int = 32

    def to_wire(self) -> dict:
        return {
            "max_pixels": self.max_pixels,
            "max_frame_bytes": self.max_frame_bytes,
            "max_batch": self.max_batch,
            "max_queue": self.max_queue,
        }


def _type_name(kind: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", bytes: "binary",
             dict: "a map", list: "a list"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind if k is not type(None))
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _check_value(spec: Field, value: Any, path: str, limits: Limits) -> Any:
    kind = spec.kind
    if spec.check is not None:
        return spec.check(value, path, limits)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad_field(path, f"must be a number, got {type(value).__name__}")
        value = float(value)
        if value != value:
            raise bad_field(path, "must be a number, got NaN")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_field(path, f"must be an integer, got {type(value).__name__}")
    elif kind is bool:
        if not isinstance(value, bool):
            raise bad_field(path, f"must be a boolean, got {type(value).__name__}")
    elif not isinstance(value, kind):
        raise bad_field(path, f"must be {_type_name(kind)}, got {type(value).__name__}")
    if spec.choices is not None and value not in spec.choices:
        raise bad_field(path, f"must be one of {', '.join(map(str, spec.choices))}, got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise bad_field(path, f"must be at least {spec.minimum:g}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise bad_field(path, f"must be at most {spec.maximum:g}, got {value!r}")
    if spec.max_length is not None and len(value) > spec.max_length:
        raise bad_field(path, f"is {len(value)} long, over the limit of {spec.max_length}")
    return value


def parse_fields(value: Any, fields: tuple, path: str, limits: Limits) -> dict:
    """Validate a map against ``fields``: returns known fields with defaults, drops unknown ones."""
    if not isinstance(value, Mapping):
        raise bad_field(path or "message", f"must be a map, got {type(value).__name__}")
    out: dict = {}
    for spec in fields:
        sub = f"{path}.{spec.name}" if path else spec.name
        if spec.name not in value or value[spec.name] is None:
            if spec.required:
                raise bad_field(sub, "is missing")
            default = spec.default() if callable(spec.default) else spec.default
            if spec.check is not None and default is not None:
                default = spec.check(default, sub, limits)  # nested maps get their own defaults
            out[spec.name] = default
            continue
        out[spec.name] = _check_value(spec, value[spec.name], sub, limits)
    return out


# --- nested value checkers -------------------------------------------------------------------------------------------

def _payload(formats: tuple) -> Callable[[Any, str, Limits], Any]:
    def check(value: Any, path: str, limits: Limits) -> Any:
        return parse_payload(value, path, limits.max_pixels, formats)
    return check


def _map_of(fields: tuple) -> Callable[[Any, str, Limits], Any]:
    def check(value: Any, path: str, limits: Limits) -> Any:
        return parse_fields(value, fields, path, limits)
    return check


def _list_of(fields: tuple, max_items: int) -> Callable[[Any, str, Limits], Any]:
    def check(value: Any, path: str, limits: Limits) -> Any:
        if not isinstance(value, (list, tuple)):
            raise bad_field(path, f"must be a list, got {type(value).__name__}")
        if len(value) > max_items:
            raise bad_field(path, f"has {len(value)} entries, over the limit of {max_items}")
        return [parse_fields(item, fields, f"{path}[{i}]", limits) for i, item in enumerate(value)]
    return check


def _batch(value: Any, path: str, limits: Limits) -> int:
    spec = Field("batch", int, minimum=1, maximum=limits.max_batch)
    return _check_value(spec, value, path, limits)


EXTEND_FIELDS = (
    Field("left", int, default=0, minimum=0, maximum=8192),
    Field("top", int, default=0, minimum=0, maximum=8192),
    Field("right", int, default=0, minimum=0, maximum=8192),
    Field("bottom", int, default=0, minimum=0, maximum=8192),
)

PARAM_FIELDS = (
    Field("steps", int, default=20, minimum=1, maximum=150),
    Field("strength", float, default=None, minimum=0.0, maximum=1.0),  # None: the mode's default
    Field("cfg", float, default=None, minimum=0.0, maximum=30.0),  # None: the model family's default
    Field("sampler", str, default="", choices=("",) + SAMPLERS),
    Field("seed", int, default=-1, minimum=-1, maximum=2**32 - 1),
    Field("batch", int, default=1, check=_batch),
    Field("grow", int, default=-1, minimum=-1, maximum=1024),  # -1: scaled to the selection
    Field("feather", int, default=-1, minimum=-1, maximum=1024),  # -1: scaled to the selection
    Field("fill", str, default="telea", choices=INPAINT_FILLS),  # classical fill / pre-fill method
    Field("scale", float, default=2.0, minimum=1.0, maximum=8.0),  # upscale factor
    Field("upscaler", str, default="", max_length=256),  # upscale model name; "" = Lanczos
    Field("refine", float, default=0.0, minimum=0.0, maximum=1.0),  # upscale-and-refine strength; 0 = off
    Field("tile", int, default=0, minimum=0, maximum=4096),  # tile size for tiled work; 0 = automatic
    Field("extend", dict, default=lambda: {"left": 0, "top": 0, "right": 0, "bottom": 0},
          check=_map_of(EXTEND_FIELDS)),
    Field("width", int, default=0, minimum=0, maximum=16384),  # generate without an image
    Field("height", int, default=0, minimum=0, maximum=16384),
    Field("preprocessor", str, default="", max_length=64),  # preprocess mode: which preprocessor
    Field("low_threshold", int, default=100, minimum=0, maximum=255),  # canny
    Field("high_threshold", int, default=200, minimum=0, maximum=255),  # canny
)

CONTROL_FIELDS = (
    Field("type", str, required=True, choices=CONTROL_TYPES),
    Field("image", dict, required=True, check=_payload(PIXEL_FORMATS)),
    Field("strength", float, default=1.0, minimum=0.0, maximum=2.0),
    Field("start", float, default=0.0, minimum=0.0, maximum=1.0),
    Field("end", float, default=1.0, minimum=0.0, maximum=1.0),
    Field("preprocess", bool, default=False),
    Field("model", str, default="", max_length=256),  # a ControlNet by name; "" = the one matching type and checkpoint
)

_ID = Field("id", str, required=True, max_length=MAX_ID_LENGTH)

SCHEMAS: dict = {
    # client -> server
    "hello": (
        Field("protocol", str, required=True, max_length=16),
        Field("client", str, required=True, max_length=128),
        Field("client_version", str, default="", max_length=64),
        Field("token", str, default=None, max_length=1024),
    ),
    "job": (
        _ID,
        Field("mode", str, required=True, choices=MODES),
        Field("model", str, default="", max_length=256),
        Field("prompt", str, default="", max_length=MAX_PROMPT_LENGTH),
        Field("negative_prompt", str, default="", max_length=MAX_PROMPT_LENGTH),
        Field("image", dict, default=None, check=_payload((RGBA8, BGRA8))),
        Field("mask", dict, default=None, check=_payload((GRAY8,))),
        Field("controls", list, default=list, check=_list_of(CONTROL_FIELDS, MAX_CONTROLS)),
        Field("params", dict, default=dict, check=_map_of(PARAM_FIELDS)),
        Field("x", int, default=0, minimum=-(2**31), maximum=2**31 - 1),
        Field("y", int, default=0, minimum=-(2**31), maximum=2**31 - 1),
        Field("result_format", str, default=RGBA8, choices=(RGBA8, BGRA8)),
        Field("previews", bool, default=False),
    ),
    "cancel": (_ID,),
    "list_models": (),
    # server -> client
    "welcome": (
        Field("protocol", str, required=True),
        Field("server_version", str, required=True),
        Field("device", str, default=""),
        Field("models", list, default=list),
        Field("capabilities", dict, default=dict),
        Field("limits", dict, default=dict),
    ),
    "models": (Field("models", list, default=list),),
    "queued": (_ID, Field("position", int, default=0)),
    "started": (_ID,),
    "progress": (
        _ID,
        Field("step", int, required=True),
        Field("total", int, required=True),
        Field("preview", dict, default=None),
    ),
    "result": (
        _ID,
        Field("layers", list, required=True),
        Field("elapsed", float, default=0.0),
        Field("params", dict, default=dict),
    ),
    "cancelled": (_ID,),
    "error": (
        Field("code", str, required=True),
        Field("message", str, required=True),
        Field("id", str, default=None),
        Field("field", str, default=None),
    ),
}

CLIENT_MESSAGES = ("hello", "job", "cancel", "list_models")
SERVER_MESSAGES = ("welcome", "models", "queued", "started", "progress", "result", "cancelled", "error")


def _parse(value: Any, allowed: tuple, limits: Limits) -> dict:
    if not isinstance(value, Mapping):
        raise ProtocolError(BAD_REQUEST, f"a message must be a map with a 'type', got {type(value).__name__}")
    mtype = value.get("type")
    if not isinstance(mtype, str):
        raise bad_field("type", "is missing" if "type" not in value else "must be a string")
    if mtype not in allowed:
        raise ProtocolError(
            BAD_REQUEST, f"unknown message type {mtype!r}; expected one of {', '.join(allowed)}", field="type"
        )
    try:
        out = parse_fields(value, SCHEMAS[mtype], "", limits)
    except ProtocolError as err:
        if err.job_id is None and isinstance(value.get("id"), str):
            err.job_id = value["id"][:MAX_ID_LENGTH]
        raise
    out["type"] = mtype
    return out


def parse_client_message(value: Any, limits: Limits = Limits()) -> dict:
    """Validate a message a client sent (the server's side)."""
    msg = _parse(value, CLIENT_MESSAGES, limits)
    if msg["type"] == "job":
        _check_job(msg, limits)
    return msg


def parse_server_message(value: Any) -> dict:
    """Validate a message a server sent (the client's side). Payload contents are left as wire maps."""
    return _parse(value, SERVER_MESSAGES, Limits(max_pixels=2**31))


def _check_job(job: dict, limits: Limits) -> None:
    """Cross-field rules of a job: which inputs each mode needs, matching sizes, and the size of what the job would
    make (a generate size, an outpaint canvas) within the pixel limit."""
    mode, image, mask, params = job["mode"], job["image"], job["mask"], job["params"]
    jid = job["id"]

    def fail(field: str, problem: str) -> None:
        err = bad_field(field, problem)
        err.job_id = jid
        raise err

    if image is None:
        if mode != "generate":
            fail("image", f"is missing; mode '{mode}' needs an image")
        if params["width"] <= 0 or params["height"] <= 0:
            fail("params.width", "and params.height must be given when a generate job has no image")
    if mask is not None and image is not None and (mask.width, mask.height) != (image.width, image.height):
        fail("mask", f"is {mask.width}x{mask.height} but the image is {image.width}x{image.height}")
    for i, ctl in enumerate(job["controls"]):
        if ctl["start"] > ctl["end"]:
            fail(f"controls[{i}].start", f"({ctl['start']}) is after end ({ctl['end']})")
    if mode == "preprocess" and not params["preprocessor"]:
        fail("params.preprocessor", "is missing; mode 'preprocess' needs one (e.g. 'canny')")
    ext = params["extend"]
    if mode == "outpaint" and not any(ext.values()):
        fail("params.extend", "is all zero; mode 'outpaint' needs at least one side to extend")

    def within_limit(field: str, what: str, width: int, height: int) -> None:
        if width * height > limits.max_pixels:
            raise ProtocolError(TOO_LARGE, f"field '{field}' asks for {what} of {width}x{height} = {width * height} "
                                f"px, over the server's limit of {limits.max_pixels} px", field=field, job_id=jid)

    if mode == "generate" and image is None:
        within_limit("params.width", "an image", params["width"], params["height"])
    if mode == "outpaint" and image is not None:
        within_limit("params.extend", "a canvas", image.width + ext["left"] + ext["right"],
                     image.height + ext["top"] + ext["bottom"])


def job_params_defaults() -> dict:
    """The default ``params`` map, for clients that build forms from it."""
    return parse_fields({}, PARAM_FIELDS, "params", Limits())


# --- builders (what clients and the server send) ---------------------------------------------------------------------

def hello(client: str, client_version: str = "", token: Optional[str] = None) -> dict:
    msg = {"type": "hello", "protocol": PROTOCOL_VERSION, "client": client, "client_version": client_version}
    if token:
        msg["token"] = token
    return msg


def error(code: str, message: str, job_id: Optional[str] = None, field: Optional[str] = None) -> dict:
    return ProtocolError(code, message, field=field, job_id=job_id).to_message()


@dataclass
class ResultLayer:
    """One layer of a ``result``: where it goes in the document and its pixels."""

    name: str
    x: int
    y: int
    width: int
    height: int
    format: str
    data: bytes
    seed: int = -1
    info: dict = dc_field(default_factory=dict)

    def to_wire(self) -> dict:
        return {
            "name": self.name, "x": self.x, "y": self.y, "width": self.width, "height": self.height,
            "format": self.format, "data": self.data, "seed": self.seed, "info": self.info,
        }

    @classmethod
    def from_wire(cls, value: Mapping) -> "ResultLayer":
        payload = parse_payload(value, "layer", 2**31)
        return cls(
            name=str(value.get("name", "")), x=int(value.get("x", 0)), y=int(value.get("y", 0)),
            width=payload.width, height=payload.height, format=payload.format, data=payload.data,
            seed=int(value.get("seed", -1)), info=dict(value.get("info") or {}),
        )
