"""Bounded, validating readers of model-file headers: safetensors (8-byte length + JSON) and GGUF (counts).

A header is untrusted: it is checked against the file's real size before anything it declares is believed, every
tensor's dtype, shape and byte range must agree with each other, and the tensors must tile the data without gaps or
overlaps (the rules safetensors itself enforces when it loads); nothing is allocated from a declared size. Faults
raise ``HeaderError`` (a ``ValueError``) whose message names the file and what is wrong with it, in words a painter
can act on.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path
from typing import Dict, List, Tuple

# safetensors itself accepts headers up to 100 MB; real files' headers are far smaller (an SDXL checkpoint with about
# 2,500 tensors: ~250 KB), and parsing a 100 MB JSON header would cost several hundred MB of Python objects.
MAX_SAFETENSORS_HEADER = 16 << 20
MAX_DIMS = 16
# bits per element of every dtype safetensors writes (sub-byte floats included)
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
GGUF_MAGIC = b"GGUF"
GGUF_MIN_TENSOR_INFO = 8 + 1 + 4 + 8 + 4 + 8  # name length, 1-byte name, n_dims, one dim, type, offset
GGUF_MIN_KV = 8 + 1 + 4 + 1  # key length, 1-byte key, value type, 1-byte value

Shapes = Dict[str, Tuple[int, ...]]


class HeaderError(ValueError):
    """A model file whose header is damaged, lies about its contents, or is not a regular file."""


def regular_size(path: Path) -> int:
    """The size of ``path`` when it is a regular file (links followed); a FIFO, device or socket is refused without
    being opened (reading one could block forever or never end)."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise HeaderError(f"{path.name} cannot be read: {err.strerror or err}") from err
    if not stat.S_ISREG(info.st_mode):
        raise HeaderError(f"{path.name} is not a regular file (a named pipe, device or socket): it is not read")
    return info.st_size


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(name: str, key: str, entry: object, data_len: int) -> Tuple[Tuple[int, ...], int, int]:
    """(shape, begin, end) of one tensor entry after checking that its dtype, shape and byte range agree."""
    where = f"{name}: tensor {key[:80]!r}"
    if not isinstance(entry, dict):
        raise HeaderError(f"{where} is described by a {type(entry).__name__}, not a map")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise HeaderError(f"{where} has the unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape):
        raise HeaderError(f"{where} has an invalid shape {str(shape)[:60]} (up to {MAX_DIMS} non-negative sizes)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise HeaderError(f"{where} has invalid data offsets {str(offsets)[:60]}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise HeaderError(
            f"{where} claims bytes {begin}-{end} but the file holds {data_len} bytes of tensor data "
            "(the file is truncated or damaged)"
        )
    count = 1
    for d in shape:
        count *= d
    if count * DTYPE_BITS[dtype] != (end - begin) * 8:
        raise HeaderError(
            f"{where} declares shape {tuple(shape)} of {dtype} ({count} values) but spans {end - begin} bytes"
        )
    return tuple(shape), begin, end


def safetensors_header(path: Path) -> Tuple[Shapes, Dict[str, str]]:
    """Tensor names → shapes, and the ``__metadata__`` map, of a ``.safetensors`` file, validated against its size.
    Reads only the header (at most ``MAX_SAFETENSORS_HEADER`` bytes)."""
    name = path.name
    size = regular_size(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise HeaderError(f"{name} is too short ({size} bytes) to be a safetensors file")
            (length,) = struct.unpack("<Q", raw)
            if length > MAX_SAFETENSORS_HEADER:
                raise HeaderError(
                    f"{name} declares a {length}-byte header (at most {MAX_SAFETENSORS_HEADER} are "
                    "accepted): it is not a valid safetensors file"
                )
            if 8 + length > size:
                raise HeaderError(
                    f"{name} declares a {length}-byte header but the whole file has {size} bytes "
                    "(truncated, or not a safetensors file)"
                )
            text = fh.read(length)
    except OSError as err:
        raise HeaderError(f"{name} cannot be read: {err.strerror or err}") from err
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise HeaderError(
            f"{name} is not a valid safetensors file: its header is not JSON ({type(err).__name__})"
        ) from None
    if not isinstance(header, dict):
        raise HeaderError(f"{name} is not a valid safetensors file: its header is not a map")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise HeaderError(f"{name}: the safetensors metadata is not a map")
    data_len = size - 8 - length
    shapes: Shapes = {}
    spans: List[Tuple[int, int, str]] = []
    for key, entry in header.items():
        shape, begin, end = _check_entry(name, key, entry, data_len)
        shapes[key] = shape
        spans.append((begin, end, key))
    spans.sort()
    cursor, previous = 0, ""
    for begin, end, key in spans:  # safetensors' own rule: tensors tile the data, in order, without gaps
        if begin < cursor:
            raise HeaderError(
                f"{name}: tensors {previous[:60]!r} and {key[:60]!r} overlap in the file "
                "(a damaged or hand-made header)"
            )
        if begin > cursor:
            raise HeaderError(
                f"{name}: {begin - cursor} bytes before tensor {key[:60]!r} belong to no tensor "
                "(a damaged or hand-made header)"
            )
        cursor, previous = end, key
    if cursor != data_len:
        raise HeaderError(
            f"{name}: {data_len - cursor} bytes after the last tensor belong to no tensor "
            "(a damaged or hand-made header)"
        )
    return shapes, {str(k): str(v) for k, v in metadata.items()}


def check_gguf_counts(path: Path) -> None:
    """Refuse a GGUF file whose fixed header is not GGUF, or whose tensor and key/value counts could not fit in the
    file (each entry takes a minimum number of bytes), before any reader trusts them."""
    name = path.name
    size = regular_size(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError as err:
        raise HeaderError(f"{name} cannot be read: {err.strerror or err}") from err
    if len(head) < 24 or head[:4] != GGUF_MAGIC:
        raise HeaderError(f"{name} is not a GGUF file (it does not start with the GGUF signature)")
    version, tensors, kvs = struct.unpack("<IQQ", head[4:24])
    if version not in (2, 3):
        raise HeaderError(f"{name} is GGUF version {version}; versions 2 and 3 are read")
    if tensors > size // GGUF_MIN_TENSOR_INFO or kvs > size // GGUF_MIN_KV:
        raise HeaderError(
            f"{name} declares {tensors} tensors and {kvs} key/value entries, more than a file of "
            f"{size} bytes can hold (damaged or hand-made)"
        )
