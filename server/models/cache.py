"""A one-slot cache for a loaded network: the last one asked for stays in memory, keyed by its file and device."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Generic, Optional, Tuple, TypeVar

T = TypeVar("T")


class LastLoaded(Generic[T]):
    """Keeps what ``load(path, device)`` made last; a different file, a changed file (size or modification time) or
    another device loads again (the old one is dropped first, so two never sit in memory at once)."""

    def __init__(self, load: Callable[[Path, str], T]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._key: Optional[Tuple] = None
        self._value: Optional[T] = None

    def get(self, path: Path, device: str = "cpu") -> T:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, device)
        with self._lock:
            if self._key != key:
                self._value, self._key = None, None
                self._value = self._load(path, device)
                self._key = key
            return self._value
