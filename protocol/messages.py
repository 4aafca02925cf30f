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
from .images import BGRA8, GRAY8, RGBA8, ImagePayload
from .schema import WireModel, type_error, wire

# The nested maps a message carries, and the names the messages' module has always offered, kept importable from it.
from .fields import (  # noqa: F401
    CAPTION_STYLES,
    CONTROL_TYPES,
    INPAINT_FILLS,
    MAX_CONTROLS,
    MAX_ID_LENGTH,
    MAX_PULL_NAMES,
    MAX_REFERENCES,
    MAX_LAYER_COUNT,
    MAX_REGIONS,
    MIN_LAYER_COUNT,
    MODES,
    REFERENCE_TYPES,
    REGION_MODES,
    SPEED_LEVELS,
    TILEABLE_MODES,
    TRANSPARENT_MODES,
    UNLIMITED,
    Control,
    Extend,
    Limits,
    Params,
    Reference,
    Region,
    ResultLayer,
)
from .images import PIXEL_FORMATS, parse_payload  # noqa: F401
from .sampling import SAMPLERS, SCHEDULE_NAMES, resolve as resolve_sampler  # noqa: F401
from .styles import INPAINT_METHODS, MAX_STYLES, STYLE_NAME_PATTERN, LiveSettings, Style, StyleLora, StyleProblem  # noqa: F401
from .techniques import DETAIL_TARGETS, HIRES_UPSCALERS, MAX_PROMPT_LENGTH, Detail, Hires  # noqa: F401

PROTOCOL_VERSION = "1.1"

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
        update = (
            "the server"
            if theirs[0] > mine[0]
            else (f"the {peer} (Paintbridge plugin)" if peer == "client" else f"the {peer}")
        )
        raise ProtocolError(
            VERSION_MISMATCH,
            f"protocol {peer_version} of the {peer} is incompatible with protocol {ours}: update {update}",
            field="protocol",
        )


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
    session: Optional[str] = wire(
        None, pattern=SESSION_PATTERN, doc="client session id, made once per plugin session (1.1)"
    )
    shared_memory: bool = wire(
        False, doc="the client can send and take payloads as files of a shared folder (`welcome.shared_folder`)"
    )


@dataclasses.dataclass(frozen=True)
class Job(Message):
    type: ClassVar[str] = "job"
    id: str = _id(doc="chosen by the client; unique among its open jobs")
    mode: str = wire(choices=MODES)
    model: str = wire(
        "",
        max_length=256,
        doc='a checkpoint name, `"classical"`, or `""` for the default; mode '
        '`caption`: a captioner by name, `""` = the first installed',
    )
    prompt: str = wire("", max_length=MAX_PROMPT_LENGTH)
    negative_prompt: str = wire("", max_length=MAX_PROMPT_LENGTH)
    style: str = wire(
        "",
        max_length=64,
        doc='a style by name (`styles`); `""`: none. Each job field that differs from its default overrides it',
    )
    image: Optional[ImagePayload] = wire(None, formats=(RGBA8, BGRA8), doc="the context box's pixels")
    mask: Optional[ImagePayload] = wire(None, formats=(GRAY8,), doc="same size as `image`; none = change it all")
    controls: Tuple[Control, ...] = wire((), max_items=MAX_CONTROLS)
    params: Params = wire(factory=Params)
    x: int = wire(0, minimum=-(2**31), maximum=2**31 - 1, doc="where `image` sits in the document")
    y: int = wire(0, minimum=-(2**31), maximum=2**31 - 1)
    result_format: str = wire(RGBA8, choices=(RGBA8, BGRA8), doc="pixel format of the result layers")
    previews: bool = wire(False, doc="attach small previews to `progress`")
    live: bool = wire(
        False,
        doc="a live frame (1.1): not kept across a dropped connection; replaces the client's older queued live frame",
    )
    shared_memory: bool = wire(
        False,
        doc="the client reads `welcome.shared_folder`: result payloads may come back "
        "as `shm` handles (set by the reference client itself)",
    )
    # reference images
    references: Tuple[Reference, ...] = wire(
        (),
        max_items=MAX_REFERENCES,
        doc="reference images (IP-Adapter, Flux.1 Redux); "
        "`welcome.capabilities.references` lists the model families that "
        "take them",
    )
    # regions
    regions: Tuple[Region, ...] = wire(
        (),
        max_items=MAX_REGIONS,
        doc="areas with prompts of their own; `welcome.capabilities.regions` lists the model families that take them",
    )

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
                raise bad_field(
                    f"controls[{i}].image",
                    f"is {ctl.image.width}x{ctl.image.height} but the image is {image.width}x{image.height}",
                )
        for i, ref in enumerate(self.references):  # reference images
            size = (image.width, image.height) if image is not None else (params.width, params.height)
            if ref.mask is not None and (ref.mask.width, ref.mask.height) != size:
                raise bad_field(
                    f"references[{i}].mask", f"is {ref.mask.width}x{ref.mask.height} but the job is {size[0]}x{size[1]}"
                )
        for i, region in enumerate(self.regions):  # regions
            size = (image.width, image.height) if image is not None else (params.width, params.height)
            if (region.mask.width, region.mask.height) != size:
                raise bad_field(
                    f"regions[{i}].mask",
                    f"is {region.mask.width}x{region.mask.height} but the job is {size[0]}x{size[1]} (the context box)",
                )
        if self.regions and mode not in REGION_MODES:
            raise bad_field("regions", f"are not used by mode '{mode}'; regions work in {', '.join(REGION_MODES)}")
        if params.tileable and mode not in TILEABLE_MODES:
            raise bad_field(
                "params.tileable",
                f"is for pictures made whole ({', '.join(TILEABLE_MODES)}), not mode '{mode}': switch it off",
            )
        if params.transparent and mode not in TRANSPARENT_MODES:
            raise bad_field("params.transparent", f"is for modes {', '.join(TRANSPARENT_MODES)}, not '{mode}'")
        if mode == "preprocess" and not params.preprocessor:
            raise bad_field("params.preprocessor", "is missing; mode 'preprocess' needs one (e.g. 'canny')")
        ext = params.extend
        if mode == "outpaint" and not ext.any():
            raise bad_field("params.extend", "is all zero; mode 'outpaint' needs at least one side to extend")

        def within_limit(field: str, what: str, width: int, height: int) -> None:
            if width * height > limits.max_pixels:
                raise ProtocolError(
                    TOO_LARGE,
                    f"field '{field}' asks for {what} of {width}x{height} = "
                    f"{width * height} px, over the server's limit of {limits.max_pixels} px",
                    field=field,
                )

        if mode == "generate" and image is None:
            within_limit("params.width", "an image", params.width, params.height)
        if mode == "outpaint" and image is not None:
            within_limit(
                "params.extend", "a canvas", image.width + ext.left + ext.right, image.height + ext.top + ext.bottom
            )


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
class ListStyles(Message):
    """Ask for the server's styles (answered with ``styles``; when ``welcome.capabilities.styles``)."""

    type: ClassVar[str] = "list_styles"


@dataclasses.dataclass(frozen=True)
class SaveStyle(Message):
    """Create or replace a style by its name (answered with ``styles``, or an ``error`` without id naming the field)."""

    type: ClassVar[str] = "save_style"
    style: Style = wire(doc="the whole style; `builtin` is ignored")


@dataclasses.dataclass(frozen=True)
class DeleteStyle(Message):
    """Remove a style the user saved (answered with ``styles``; a shipped style cannot be removed)."""

    type: ClassVar[str] = "delete_style"
    name: str = wire(pattern=STYLE_NAME_PATTERN)


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
    shared_folder: Optional[str] = wire(
        None,
        max_length=4096,
        doc="this connection's private folder for payloads as files (`shm` "
        "handles), when the client asked and shares the server's machine",
    )
    dtypes: Dict[str, Any] = wire(factory=dict, doc="how the server chose its precision per model family: see below")
    styles: Tuple[Style, ...] = wire((), max_items=MAX_STYLES, doc="the server's styles (as `styles.styles`)")


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
class Styles(Message):
    """The server's styles (answer to ``list_styles``, ``save_style`` and ``delete_style``)."""

    type: ClassVar[str] = "styles"
    styles: Tuple[Style, ...] = wire((), max_items=MAX_STYLES, doc="every style that loaded, by name")
    problems: Tuple[StyleProblem, ...] = wire((), max_items=MAX_STYLES, doc="style files that did not load, and why")
    fewstep: Dict[str, Any] = wire(
        factory=dict,
        doc='family → `{installed, pull}`: the few-step LoRA or model live frames use (`""`: none), and the '
        'catalogue file id whose `pull` would make live frames fast (`""`: nothing to pull)',
    )


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


ClientMessage = Union[Hello, Job, Cancel, ListModels, Pull, ListPresets, ListStyles, SaveStyle, DeleteStyle]
ServerMessage = Union[
    Welcome, Models, Queued, Started, Progress, Result, Cancelled, Error, Presets, PullProgress, PullDone, Styles
]
CLIENT_TYPES: Dict[str, Type[Message]] = {
    m.type: m for m in (Hello, Job, Cancel, ListModels, Pull, ListPresets, ListStyles, SaveStyle, DeleteStyle)
}
SERVER_TYPES: Dict[str, Type[Message]] = {
    m.type: m
    for m in (
        Welcome,
        Models,
        Queued,
        Started,
        Progress,
        Result,
        Cancelled,
        Error,
        Presets,
        PullProgress,
        PullDone,
        Styles,
    )
}
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


def parse_client_message(
    value: Any, limits: Limits = Limits(), resolve: Optional[Callable[[Any], Any]] = None
) -> ClientMessage:
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


def hello(
    client: str,
    client_version: str = "",
    token: Optional[str] = None,
    session: Optional[str] = None,
    shared_memory: bool = False,
) -> Hello:
    """This library's ``hello``."""
    return Hello(PROTOCOL_VERSION, client, client_version, token or None, session, shared_memory)
