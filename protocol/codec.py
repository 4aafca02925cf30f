"""msgpack framing: one message per binary websocket frame."""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import BAD_REQUEST, TOO_LARGE, ProtocolError


def encode(message: dict) -> bytes:
    """Pack a message map; bytes travel as msgpack ``bin``."""
    return msgpack.packb(message, use_bin_type=True)


def decode(frame: Any, max_bytes: int = 2**31) -> Any:
    """Unpack one frame. Text frames, oversized frames and bytes that are not one msgpack value are ``bad_request``."""
    if isinstance(frame, str):
        raise ProtocolError(BAD_REQUEST, "text frames are not accepted: send one msgpack map per binary frame")
    if len(frame) > max_bytes:
        raise ProtocolError(TOO_LARGE, f"frame of {len(frame)} bytes is over the limit of {max_bytes} bytes")
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True)
    except msgpack.ExtraData:
        raise ProtocolError(BAD_REQUEST, "frame holds more than one msgpack value") from None
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise ProtocolError(BAD_REQUEST, f"frame is not valid msgpack ({err})") from None
