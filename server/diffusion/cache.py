"""Content-keyed caches with a memory bound, so "generate again" with only the seed changed redoes no preparation.

Keys are built from what a value depends on (model, LoRA set, precision, and a digest of the pixels), never from object
identity, so the same inputs sent again hit the cache. Each cache drops its least recently used values once their
total size passes its budget; ``hits`` / ``misses`` count lookups (tests and logs read them).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Hashable, Optional

import numpy as np


def digest(*arrays: Optional[np.ndarray]) -> str:
    """A short digest of arrays' shapes, types and bytes (None counts as a value too)."""
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        if arr is None:
            h.update(b"none;")
            continue
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.shape}{arr.dtype};".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def size_of(value) -> int:
    """Bytes a cached value holds: tensors, arrays, PIL images and tuples/lists/dicts/objects of them."""
    if value is None:
        return 0
    if hasattr(value, "element_size") and hasattr(value, "numel"):  # torch.Tensor
        return int(value.element_size() * value.numel())
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if hasattr(value, "size") and hasattr(value, "mode") and hasattr(value, "getbands"):  # PIL image
        return int(value.size[0] * value.size[1] * len(value.getbands()))
    if isinstance(value, (tuple, list)):
        return sum(size_of(v) for v in value)
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values())
    if hasattr(value, "__dict__"):
        return sum(size_of(v) for v in vars(value).values())
    return 64


class BoundedCache:
    """A least-recently-used map bounded by the total size of its values (one value larger than the budget is
    returned but not kept)."""

    def __init__(self, name: str, budget_bytes: int) -> None:
        self.name = name
        self.budget = budget_bytes
        self._items: "OrderedDict[Hashable, tuple]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable, make: Callable[[], object]):
        """The value for ``key``, made by ``make()`` (and kept) when absent."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            self.misses += 1
        value = make()
        size = size_of(value)
        if size <= self.budget:
            with self._lock:
                if key not in self._items:
                    self._items[key] = (value, size)
                    self._bytes += size
                while self._bytes > self.budget:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self._bytes -= dropped
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
