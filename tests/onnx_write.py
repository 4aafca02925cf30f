"""A minimal ONNX writer for the networks the tests build: protobuf encoding of the onnx.proto messages they need
(field numbers of ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto), since the ``onnx``
package is not a dependency."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

import numpy as np

# --- a minimal protobuf encoder ---------------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def int_field(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def bytes_field(field: int, value: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(value)) + value


def str_field(field: int, value: str) -> bytes:
    return bytes_field(field, value.encode())


# --- onnx.proto messages ----------------------------------------------------------------------------------------------

FLOAT, INT64 = 1, 7  # TensorProto.DataType
ATTR_INT, ATTR_INTS = 2, 7  # AttributeProto.AttributeType


def tensor(name: str, array: np.ndarray) -> bytes:
    kind = INT64 if array.dtype == np.int64 else FLOAT
    data = np.ascontiguousarray(array, "<i8" if kind == INT64 else "<f4").tobytes()
    return (
        b"".join(int_field(1, d) for d in array.shape) + int_field(2, kind) + str_field(8, name) + bytes_field(9, data)
    )


def attribute(name: str, value) -> bytes:
    if isinstance(value, int):
        return str_field(1, name) + int_field(3, value) + int_field(20, ATTR_INT)
    return str_field(1, name) + b"".join(int_field(8, v) for v in value) + int_field(20, ATTR_INTS)


def node(op: str, inputs: Sequence[str], output: str, **attributes) -> bytes:
    return (
        b"".join(str_field(1, i) for i in inputs)
        + str_field(2, output)
        + str_field(3, output)
        + str_field(4, op)
        + b"".join(bytes_field(5, attribute(k, v)) for k, v in attributes.items())
    )


def value_info(name: str, dims: Iterable) -> bytes:
    shape = b"".join(bytes_field(1, int_field(1, d) if isinstance(d, int) else str_field(2, d)) for d in dims)
    return str_field(1, name) + bytes_field(2, bytes_field(1, int_field(1, FLOAT) + bytes_field(2, shape)))


def model(graph: bytes, opset: int = 11) -> bytes:
    """A ModelProto (IR version 6) around ``graph`` for the default domain's ``opset``."""
    return (
        int_field(1, 6)
        + str_field(2, "paintbridge tests")
        + bytes_field(7, graph)
        + bytes_field(8, str_field(1, "") + int_field(2, opset))
    )


class Graph:
    """A GraphProto being built: nodes in order and the constants they use."""

    def __init__(self) -> None:
        self.nodes: List[bytes] = []
        self.weights: List[Tuple[str, np.ndarray]] = []

    def const(self, name: str, array) -> str:
        """A constant tensor (an initializer) named ``name``."""
        self.weights.append((name, np.asarray(array)))
        return name

    def add(self, op: str, inputs: Sequence[str], output: str, **attributes) -> str:
        """A node computing ``output``; returns its name."""
        self.nodes.append(node(op, inputs, output, **attributes))
        return output

    def encode(
        self, name: str, inputs: Sequence[Tuple[str, Iterable]], outputs: Sequence[Tuple[str, Iterable]]
    ) -> bytes:
        """The GraphProto: ``inputs`` and ``outputs`` as (name, dims), a dim a number or a symbolic name."""
        return (
            b"".join(bytes_field(1, n) for n in self.nodes)
            + str_field(2, name)
            + b"".join(bytes_field(5, tensor(n, a)) for n, a in self.weights)
            + b"".join(bytes_field(11, value_info(n, dims)) for n, dims in inputs)
            + b"".join(bytes_field(12, value_info(n, dims)) for n, dims in outputs)
        )


def write(folder: Path, file_name: str, data: bytes) -> Path:
    """``data`` as ``folder/file_name`` (the folder made when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    path.write_bytes(data)
    return path
