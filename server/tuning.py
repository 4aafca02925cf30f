"""Process-wide settings ``paintbridge serve`` applies at start for speed: ``apply()``.

1. Threads that wait without spinning (``passive_threads``): torch's CPU kernels run on OpenMP threads, which by
   default spin for a while after each parallel region. On a machine whose cores are also busy with other work (the
   painting application itself, other processes) the spinning threads take CPU time from the thread that has work,
   and every region waits for its slowest thread. Measured on this 2-core machine with other load, one real-size SD1.5
   UNet step: 19-22 CPU-s spinning vs 13.6-14.4 CPU-s passive, and less wall time too. Only when torch is not imported
   yet (OpenMP reads the setting once); an ``OMP_WAIT_POLICY`` already set is kept (``ACTIVE`` brings spinning back).
2. Freed large buffers kept in the process instead of handed back to the OS after each job (``keep_freed_memory``,
   glibc only).

glibc's malloc serves every allocation above 32 MiB with a fresh ``mmap`` and unmaps it on ``free``, so each 64 MB
image buffer of a job (the received frame, the decoded pixels, the result's frame) pays a page fault per 4 KiB page
again, every time: on this machine a copy into a fresh 64 MB buffer takes ~34 ms, into a reused one ~9 ms.
``keep_freed_memory`` tells malloc to serve large blocks from its heap and to keep up to ``keep`` bytes of freed
memory at the heap's top (``mallopt(M_MMAP_MAX, 0)`` and ``M_TRIM_THRESHOLD``), so the next job reuses pages that are
already mapped. For such jobs the process's peak memory is unchanged; between jobs it keeps what it used.

``PAINTBRIDGE_MALLOC_REUSE=0`` turns it off. Elsewhere (musl, macOS, Windows) it does nothing.

That suits jobs that move image buffers (the classical engine, payloads), not networks: a diffusion job allocates
and frees many tensors of many sizes, and served from the heap they fragment it, so the process's peak grows job
after job (real-size SD1.5, three 512 px inpaints: 6.05 -> 6.44 -> 6.63 GiB, against 5.79 -> 6.04 with glibc's
defaults). The router therefore calls ``give_back_freed_memory`` when it makes its first engine that runs networks:
large blocks are mapped again (the thresholds glibc itself settles at) and what was kept is returned to the OS.
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
_M_MMAP_THRESHOLD = -3
_DEFAULT_MMAP_MAX = 65536  # glibc's default
# What glibc's dynamic thresholds settle at in a process that frees large blocks (the mmap threshold rises to the
# largest freed mapped block, at most 32 MiB on 64-bit, the trim threshold to twice that). Any mallopt turns the
# dynamic adjustment off, so give_back_freed_memory sets these: left at the 128 KiB start values, every tensor over
# 128 KiB would be mapped and unmapped again (measured: a real-size SD1.5 job 20 % slower).
_SETTLED_MMAP_THRESHOLD = 32 << 20
_SETTLED_TRIM_THRESHOLD = 64 << 20
_kept = False  # keep_freed_memory is in effect


OMP_ENV = "OMP_WAIT_POLICY"


def apply() -> dict:
    """Apply both settings; returns which took effect (for the start-up log)."""
    return {"passive_threads": passive_threads(), "keep_freed_memory": keep_freed_memory()}


def passive_threads() -> bool:
    """Make OpenMP threads sleep instead of spin while they wait (see the module docstring). True when set now; False
    when ``OMP_WAIT_POLICY`` is already set or torch is already imported (too late to matter)."""
    if OMP_ENV in os.environ or "torch" in sys.modules:
        return False
    os.environ[OMP_ENV] = "PASSIVE"
    return True


def enabled() -> bool:
    """False when ``$PAINTBRIDGE_MALLOC_REUSE`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _glibc():
    """The C library when it is glibc (musl has a mallopt that ignores these settings), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return libc


def keep_freed_memory(keep: int = KEEP_BYTES) -> bool:
    """Make glibc's malloc reuse freed large blocks (see the module docstring). True when the setting was applied;
    False when it is turned off, or the C library is not glibc."""
    global _kept
    libc = _glibc() if enabled() else None
    if libc is None:
        return False
    _kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, min(keep, 2**31 - 1)))
    return _kept


def give_back_freed_memory() -> bool:
    """Undo ``keep_freed_memory``: glibc's default thresholds, and the freed memory kept so far returned to the OS.
    True when there was something to undo."""
    global _kept
    libc = _glibc() if _kept else None
    if libc is None:
        return False
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(_M_MMAP_THRESHOLD, _SETTLED_MMAP_THRESHOLD)
    libc.mallopt(_M_TRIM_THRESHOLD, _SETTLED_TRIM_THRESHOLD)
    libc.malloc_trim(0)
    _kept = False
    return True
