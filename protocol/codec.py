"""msgpack framing: one message per binary websocket frame.

Large image payloads are not copied more than they must be: ``encode`` returns a view of the packer's own buffer
(msgpack copies each ``bin`` once, straight from the caller's bytes, bytearray or memoryview), and ``decode`` reads a
frame given as bytes or any bytes-like object. ``fragments`` splits a large frame into the pieces of one fragmented
WebSocket message.
"""

from __future__ import annotations

from typing import Any, List, Union

import msgpack

from .errors import BAD_REQUEST, TOO_LARGE, ProtocolError

# Messages larger than this are sent as a fragmented WebSocket message (RFC 6455, section 5.4) of frames this long:
# the receiver reassembles one message as always, and neither side's WebSocket layer builds, masks and buffers a
# frame of hundreds of MB in one piece (measured on loopback: about twice as fast for 64 MB).
FRAGMENT_BYTES = 256 * 1024


def encode(message: dict) -> memoryview:
    """Pack a message map into a frame (a bytes-like view of the packed bytes; ``bytes(frame)`` when bytes are needed);
    bytes, bytearray and memoryview values travel as msgpack ``bin``."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    packer.pack(message)
    return packer.getbuffer()


def fragments(frame: Any, size: int = FRAGMENT_BYTES) -> Union[Any, List[memoryview]]:
    """What to hand to a websockets ``send`` for ``frame``: the frame itself when it is small, else views of its
    consecutive ``size``-byte pieces (sent as one fragmented message; nothing is copied)."""
    view = memoryview(frame).cast("B")
    if len(view) <= size:
        return frame
    return [view[i:i + size] for i in range(0, len(view), size)]


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
