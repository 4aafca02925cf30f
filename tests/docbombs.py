"""A document history with zlib bombs, for the bounded-reading tests (client core, real Krita, real GIMP): one good
entry, and one whose first layer's thumbnail and second layer's pixels each inflate to 1 GiB while declaring 64x64
(16 KiB). About 2 MB once packed; built without ever holding the inflated bytes."""

from __future__ import annotations

import zlib
from typing import Tuple

from client import docdata
from client import history as ch
from client.settings import Settings
from protocol import RGBA8, ResultLayer

GIB = 1 << 30


def zlib_bomb(size: int = GIB) -> bytes:
    """A zlib stream of ``size`` zero bytes (a multiple of 1 MiB), compressed piece by piece."""
    packer, zeros, parts = zlib.compressobj(9), bytes(1 << 20), []
    for _ in range(size >> 20):
        parts.append(packer.compress(zeros))
    return b"".join(parts) + packer.flush()


def _layer(side: int, seed: int) -> ResultLayer:
    return ResultLayer(
        name="r", x=0, y=0, width=side, height=side, format=RGBA8, data=bytes(side * side * 4), seed=seed, info={}
    )


def bomb_history() -> Tuple[bytes, ch.Entry, ch.Entry]:
    """(the history's stored form, as ``save_document_data`` keeps it, without the docdata wrapper; the good entry;
    the bomb entry)."""
    big = zlib_bomb()
    good = ch.entry_from_result(Settings(prompt="kept"), [_layer(8, 5)], ["ok"], {})
    bad = ch.entry_from_result(
        Settings(prompt="bomb"), [_layer(64, 6), _layer(64, 7)], ["thumb bomb", "layer bomb"], {}
    )
    bad.layers[0].thumb = bad.layers[0].thumb[:2] + (big,)
    bad.layers[1].packed = big
    history = ch.History()
    history.entries = [good, bad]
    return history.to_bytes(), good, bad


def packed_bomb_history() -> bytes:
    """``bomb_history`` wrapped as a document keeps it (``docdata.pack`` under ``history.KEY``)."""
    return docdata.pack(ch.KEY, bomb_history()[0])
