"""Paintbridge's wire contract: messages, validation, msgpack codec, image payloads, context geometry, a sync client.

Pure Python (plus msgpack and websockets), so the plugins can carry a copy of this package. Imports inside the package
are relative: a plugin may vendor it under any name.
"""

from .errors import ERROR_CODES, ProtocolError
from .geometry import Box, context_box
from .images import BGRA8, GRAY8, RGBA8, ImagePayload, convert_pixels
from .messages import (
    CONTROL_TYPES,
    MODES,
    PROTOCOL_VERSION,
    SAMPLERS,
    Limits,
    ResultLayer,
    job_params_defaults,
    parse_client_message,
    parse_server_message,
)

__all__ = [
    "BGRA8", "Box", "CONTROL_TYPES", "ERROR_CODES", "GRAY8", "ImagePayload", "Limits", "MODES", "PROTOCOL_VERSION",
    "ProtocolError", "RGBA8", "ResultLayer", "SAMPLERS", "context_box", "convert_pixels", "job_params_defaults",
    "parse_client_message", "parse_server_message",
]
