"""Paintbridge data kept inside a document (Krita ``.kra`` annotations, GIMP ``.xcf`` parasites), for both editors.

Each adapter stores one blob per key (Krita: annotation ``paintbridge/<key>``; GIMP: image parasite
``paintbridge-<key>``). This module makes that blob self-describing and checkable:

    magic b"PBDD" | format version u16 | key length u16 | key (UTF-8) | payload length u64 | CRC-32 u32 | payload

``pack``/``unpack`` wrap and check one payload: a blob from another program, a newer format, another key, a short
or damaged blob raise ``DocumentDataError`` whose message names the key and what is wrong (the adapter's caller
says so and goes on: such data is never fatal to opening a document). ``pack_map``/``unpack_map`` serialise a
``str → bytes`` map, for records with several parts (history entries). ``inflate`` decompresses a zlib part of such
a record with a bound: never more than the size the record declares (a small part that would inflate to gigabytes is
refused after at most that many bytes). Standard library only.
"""

from __future__ import annotations

import struct
import zlib
from typing import Dict, Mapping

from .errors import PaintbridgeError

MAGIC = b"PBDD"
VERSION = 1
MAX_BYTES = 1 << 30  # one key's payload: 1 GiB at most (documents carry it in memory)
KRITA_PREFIX = "paintbridge/"  # Krita annotation type = KRITA_PREFIX + key
GIMP_PREFIX = "paintbridge-"  # GIMP parasite name = GIMP_PREFIX + key
_HEAD = struct.Struct("<4sHH")
_TAIL = struct.Struct("<QI")
_MAP_COUNT = struct.Struct("<I")
_MAP_ITEM = struct.Struct("<HQ")
_CHUNK = 1 << 20  # what ``inflate`` holds at once when it only checks a stream


class DocumentDataError(PaintbridgeError, ValueError):
    """Paintbridge data in a document cannot be read (damaged, foreign, newer format) or cannot be stored."""


def check_key(key: str) -> str:
    """``key`` when it is a usable name (1–64 characters of letters, digits, ``_``, ``-``, ``.``)."""
    if (
        not isinstance(key, str)
        or not 0 < len(key) <= 64
        or not all(c.isascii() and (c.isalnum() or c in "_-.") for c in key)
    ):
        raise DocumentDataError(f"{key!r} is not a usable document data key (1-64 letters, digits, '_', '-', '.')")
    return key


def pack(key: str, data: bytes, limit: int = MAX_BYTES) -> bytes:
    """The stored form of ``data`` under ``key`` (refused when larger than ``limit`` bytes)."""
    check_key(key)
    data = bytes(data)
    if len(data) > limit:
        raise DocumentDataError(f"Paintbridge data '{key}' is {len(data)} bytes; a document keeps at most {limit}")
    name = key.encode()
    return b"".join((_HEAD.pack(MAGIC, VERSION, len(name)), name, _TAIL.pack(len(data), zlib.crc32(data)), data))


def unpack(key: str, blob: bytes, limit: int = MAX_BYTES) -> bytes:
    """The payload stored under ``key``; ``DocumentDataError`` naming the key and the fault otherwise."""
    check_key(key)
    blob = bytes(blob)
    what = f"The Paintbridge data '{key}' in this document"
    if len(blob) < _HEAD.size or blob[:4] != MAGIC:
        raise DocumentDataError(f"{what} was not written by Paintbridge (unknown format); it is left alone")
    _magic, version, name_len = _HEAD.unpack_from(blob)
    if version > VERSION:
        raise DocumentDataError(
            f"{what} has format {version}, newer than this plugin reads ({VERSION}): update Paintbridge to use it"
        )
    start = _HEAD.size + name_len
    if len(blob) < start + _TAIL.size:
        raise DocumentDataError(f"{what} is cut short ({len(blob)} bytes)")
    stored_key = blob[_HEAD.size : start].decode("utf-8", "replace")
    if stored_key != key:
        raise DocumentDataError(f"{what} is labelled '{stored_key}', not '{key}'")
    size, crc = _TAIL.unpack_from(blob, start)
    body = start + _TAIL.size
    if size > limit:
        raise DocumentDataError(f"{what} declares {size} bytes, more than {limit}")
    if len(blob) - body != size:
        raise DocumentDataError(f"{what} should hold {size} bytes but holds {len(blob) - body}: it is damaged")
    data = blob[body:]
    if zlib.crc32(data) != crc:
        raise DocumentDataError(f"{what} is damaged (checksum mismatch)")
    return data


def pack_map(items: Mapping[str, bytes]) -> bytes:
    """A ``str → bytes`` map as bytes (keys UTF-8, at most 65535 bytes each), in the map's order."""
    parts = [_MAP_COUNT.pack(len(items))]
    for name, value in items.items():
        raw = name.encode()
        if len(raw) > 0xFFFF:
            raise DocumentDataError(f"map key {name[:40]!r}… is too long")
        value = bytes(value)
        parts += [_MAP_ITEM.pack(len(raw), len(value)), raw, value]
    return b"".join(parts)


def unpack_map(blob: bytes) -> Dict[str, bytes]:
    """The map ``pack_map`` wrote; ``DocumentDataError`` when the bytes do not hold one."""
    view = memoryview(bytes(blob))
    if len(view) < _MAP_COUNT.size:
        raise DocumentDataError("Paintbridge document data is cut short (no map header)")
    (count,), pos, out = _MAP_COUNT.unpack_from(view), _MAP_COUNT.size, {}
    for index in range(count):
        if pos + _MAP_ITEM.size > len(view):
            raise DocumentDataError(f"Paintbridge document data is cut short at item {index + 1} of {count}")
        name_len, size = _MAP_ITEM.unpack_from(view, pos)
        pos += _MAP_ITEM.size
        if pos + name_len + size > len(view):
            raise DocumentDataError(f"Paintbridge document data is cut short at item {index + 1} of {count}")
        name = bytes(view[pos : pos + name_len]).decode("utf-8", "replace")
        out[name] = bytes(view[pos + name_len : pos + name_len + size])
        pos += name_len + size
    if pos != len(view):
        raise DocumentDataError(f"Paintbridge document data has {len(view) - pos} stray bytes after its map")
    return out


def inflate(packed: bytes, size: int, what: str, keep: bool = True) -> bytes:
    """The ``size`` bytes the zlib stream ``packed`` holds, decompressed with a bound: never more than ``size`` (+1)
    bytes are produced, whatever the stream would inflate to. ``DocumentDataError`` naming ``what`` (the document
    part) when the stream is damaged, shorter or longer than ``size``, or followed by stray bytes. With ``keep`` False
    the stream is only checked, ``_CHUNK`` bytes at a time, and b"" is returned."""
    if size < 0:
        raise DocumentDataError(f"{what} declares a negative size ({size} bytes)")
    stream, out, produced = zlib.decompressobj(), [], 0
    data = bytes(packed)
    try:
        while True:
            piece = stream.decompress(data, min(size + 1 - produced, size + 1 if keep else _CHUNK))
            produced += len(piece)
            if produced > size:
                raise DocumentDataError(f"{what} is damaged: it decompresses to more than the {size} bytes it declares")
            if keep:
                out.append(piece)
            data = stream.unconsumed_tail
            if stream.eof or (not data and not piece):
                break
    except zlib.error as err:
        raise DocumentDataError(f"{what} is damaged ({err})") from None
    if not stream.eof:
        raise DocumentDataError(f"{what} is damaged (its compressed data is cut short)")
    if stream.unused_data:
        raise DocumentDataError(f"{what} is damaged ({len(stream.unused_data)} stray bytes after its data)")
    if produced != size:
        raise DocumentDataError(f"{what} holds {produced} bytes, not the {size} it declares: it is damaged")
    return b"".join(out)
