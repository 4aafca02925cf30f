"""msgpack framing: one message per binary websocket frame.

Large image payloads are not copied more than they must be: ``encode`` returns a view of the packer's own buffer
(msgpack copies each ``bin`` once, straight from the caller's bytes, bytearray or memoryview), and ``decode`` reads a
frame given as bytes or any bytes-like object. ``encode_pieces`` packs a message without copying its large ``bin``
values at all (the packed bytes around them, then the values themselves), and ``fragments`` splits a large frame, or
such pieces, into the frames of one fragmented WebSocket message.
"""

from __future__ import annotations

from typing import Any, List, Union

import msgpack

from .errors import BAD_REQUEST, TOO_LARGE, ProtocolError

# Messages larger than this are sent as a fragmented WebSocket message (RFC 6455, section 5.4) of frames this long:
# the receiver reassembles one message as always, and neither side's WebSocket layer builds, masks and buffers a
# frame of hundreds of MB in one piece (measured on loopback: about twice as fast for 64 MB).
FRAGMENT_BYTES = 256 * 1024
# bytes-like values at least this long are not copied by ``encode_pieces``: they go out as they are.
BIG_BIN = 64 * 1024
_BIN32 = b"\xc6"  # msgpack's "bin 32" type byte; a 4-byte big-endian length follows (msgpack's packer has no
# public bin-header call, and the header is all ``encode_pieces`` writes itself; tests compare with msgpack's output)


def encode(message: dict) -> memoryview:
    """Pack a message map into a frame (a bytes-like view of the packed bytes; ``bytes(frame)`` when bytes are needed);
    bytes, bytearray and memoryview values travel as msgpack ``bin``."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    packer.pack(message)
    return packer.getbuffer()


def _bin_header(length: int) -> bytes:
    if not 2**16 <= length < 2**32:
        raise ValueError(f"a bin value sent apart must be 64 KiB to 4 GiB long, got {length} bytes")
    return _BIN32 + length.to_bytes(4, "big")


def encode_pieces(message: dict, big: int = BIG_BIN) -> List[Any]:
    """``message`` packed as consecutive pieces whose concatenation is ``encode(message)``: packed bytes (msgpack's
    own packer, header by header), and every bytes-like value of at least ``big`` bytes as it is, after its ``bin``
    header, so its bytes are never copied into a frame (a 64 MB image then costs no 64 MB copy to send)."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    pieces: List[Any] = []
    packed = bytearray()

    def walk(value: Any) -> None:
        if type(value) is dict:
            packed.extend(packer.pack_map_header(len(value)))
            for key, item in value.items():
                walk(key)
                walk(item)
        elif type(value) in (list, tuple):
            packed.extend(packer.pack_array_header(len(value)))
            for item in value:
                walk(item)
        elif isinstance(value, (bytes, bytearray, memoryview)) and memoryview(value).nbytes >= max(big, 2**16):
            view = memoryview(value)
            if not view.c_contiguous:
                raise ValueError("a bytes-like value to send must be C-contiguous")
            view = view.cast("B") if view.ndim != 1 or view.format != "B" else view
            packed.extend(_bin_header(len(view)))
            pieces.append(bytes(packed))
            packed.clear()
            pieces.append(view)
        else:
            packed.extend(packer.pack(value))

    walk(message)
    if packed or not pieces:
        pieces.append(bytes(packed))
    return pieces


def fragments(frame: Any, size: int = FRAGMENT_BYTES) -> Union[Any, List[memoryview]]:
    """What to hand to a websockets ``send`` for ``frame`` (one bytes-like frame, or a list of pieces from
    ``encode_pieces``): a small message as one frame (the frame itself; pieces joined), else views of consecutive
    pieces of at most ``size`` bytes, sent as one fragmented message (nothing large is copied)."""
    if isinstance(frame, list):
        views = [memoryview(p).cast("B") for p in frame if len(p)]
        if sum(len(v) for v in views) <= size:
            return b"".join(views)
        return [v[i : i + size] for v in views for i in range(0, len(v), size)]
    view = memoryview(frame).cast("B")
    if len(view) <= size:
        return frame
    return [view[i : i + size] for i in range(0, len(view), size)]


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
