"""Paintbridge's wire contract: typed messages, the sans-I/O connection, msgpack codec, image payloads, context
geometry, and a synchronous client.

Pure Python (plus msgpack and websockets), so the plugins can carry a copy of this package. Imports inside the package
are relative: a plugin may vendor it under any name.
"""

from .addresses import is_loopback_host
from .errors import ERROR_CODES, LocalProtocolError, ProtocolError
from .geometry import Box, context_box
from .reconnect import Backoff
from .images import BGRA8, GRAY8, RGBA8, ImagePayload, convert_pixels
from .sampling import SAMPLER_NAMES, SAMPLERS, SCHEDULE_NAMES
from .messages import (
    CAPTION_STYLES,
    CONTROL_TYPES,
    MAX_CONTROLS,
    MAX_LAYER_COUNT,
    MAX_REFERENCES,
    MAX_REGIONS,
    MIN_LAYER_COUNT,
    MODES,
    REFERENCE_TYPES,
    REGION_MODES,
    PROTOCOL_VERSION,
    TILEABLE_MODES,
    Cancel,
    Cancelled,
    ClientMessage,
    Control,
    Error,
    Extend,
    Hello,
    Job,
    Limits,
    ListModels,
    ListPresets,
    Message,
    Models,
    Params,
    Presets,
    Progress,
    Pull,
    PullDone,
    PullProgress,
    Queued,
    Reference,
    Region,
    Result,
    ResultLayer,
    ServerMessage,
    Started,
    Welcome,
    job_params_defaults,
    parse_client_message,
    parse_server_message,
)
from .messages import DETAIL_TARGETS, HIRES_UPSCALERS, Detail, Hires  # hires fix and detailer
from .messages import DeleteStyle, ListStyles, SaveStyle, Styles  # styles
from .styles import INPAINT_METHODS, LiveSettings, Style, StyleLora, StyleProblem, apply_template  # styles

__all__ = [
    "BGRA8",
    "Backoff",
    "Box",
    "CAPTION_STYLES",
    "CONTROL_TYPES",
    "Cancel",
    "Cancelled",
    "ClientMessage",
    "Control",
    "ERROR_CODES",
    "Error",
    "Extend",
    "GRAY8",
    "Hello",
    "ImagePayload",
    "Job",
    "Limits",
    "ListModels",
    "ListPresets",
    "LocalProtocolError",
    "MAX_CONTROLS",
    "MAX_REFERENCES",
    "MAX_REGIONS",
    "MIN_LAYER_COUNT",  # mode "decompose": params.layer_count's range
    "MAX_LAYER_COUNT",
    "MODES",
    "Message",
    "Models",
    "PROTOCOL_VERSION",
    "Params",
    "Presets",
    "Progress",
    "Pull",
    "PullDone",
    "PullProgress",
    "ProtocolError",
    "Queued",
    "RGBA8",
    "Result",
    "ResultLayer",
    "SAMPLERS",
    "SAMPLER_NAMES",
    "SCHEDULE_NAMES",
    "ServerMessage",
    "Started",
    "Welcome",
    "context_box",
    "convert_pixels",
    "job_params_defaults",
    "is_loopback_host",
    "parse_client_message",
    "parse_server_message",
    "Reference",
    "REFERENCE_TYPES",  # reference images
    "Region",  # regions
    "REGION_MODES",
    "DETAIL_TARGETS",
    "Detail",
    "HIRES_UPSCALERS",
    "Hires",  # hires fix and detailer
    "TILEABLE_MODES",  # seamless textures
    "DeleteStyle",
    "INPAINT_METHODS",
    "ListStyles",
    "LiveSettings",
    "SaveStyle",
    "Style",
    "StyleLora",
    "StyleProblem",
    "Styles",
    "apply_template",  # styles
]
