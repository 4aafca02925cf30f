"""Keep freed large buffers in the process instead of handing them back to the OS after each job (glibc only).

glibc's malloc serves every allocation above 32 MiB with a fresh ``mmap`` and unmaps it on ``free``, so each 64 MB
image buffer of a job (the received frame, the decoded pixels, the result's frame) pays a page fault per 4 KiB page
again, every time: on this machine a copy into a fresh 64 MB buffer takes ~34 ms, into a reused one ~9 ms.
``keep_freed_memory`` tells malloc to serve large blocks from its heap and to keep up to ``keep`` bytes of freed
memory at the heap's top (``mallopt(M_MMAP_MAX, 0)`` and ``M_TRIM_THRESHOLD``), so the next job reuses pages that are
already mapped. The process's peak memory is unchanged; between jobs it keeps what it used.

Applied once by ``paintbridge serve``; ``PAINTBRIDGE_MALLOC_REUSE=0`` turns it off. Elsewhere (musl, macOS, Windows)
it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV = "PAINTBRIDGE_MALLOC_REUSE"
KEEP_BYTES = 1 << 30  # freed memory kept at the heap's top: a few large images' worth
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_MAX = -4


def enabled() -> bool:
    """False when ``$PAINTBRIDGE_MALLOC_REUSE`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def keep_freed_memory(keep: int = KEEP_BYTES) -> bool:
    """Make glibc's malloc reuse freed large blocks (see the module docstring). True when the setting was applied;
    False when it is turned off, or the C library is not glibc."""
    if not enabled() or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl has a mallopt that ignores these
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, min(keep, 2**31 - 1)))
