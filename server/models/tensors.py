"""Read a safetensors file's tensors cast to the engine's precision, keeping little of the file mapped at once.

safetensors maps the whole file and every page a tensor is read from stays in the process's resident memory until the
file is closed. Loading a checkpoint stored in fp16 as fp32 that way holds the whole file *and* its fp32 copy at the
peak (a real-size SD1.5 file: 2.1 GB mapped + 4.1 GB of fp32 weights). Here the file is reopened every ``WINDOW_BYTES``
of tensors, so the peak is the cast weights plus one window (measured: 6.77 -> 4.74 GB resident for that file).

``read_ahead`` starts that read in a background thread before anything asks for it (the server does it for its default
checkpoint at start, as soon as torch is imported, while diffusers and the engine are still being imported: imports
run on one core, the cast on the others); the first ``read_tensors`` of the same file, dtype and whole-file prefix
takes its result instead of reading again, and any other read drops it, as ``drop_read_ahead`` does (the server calls
it once its start-up load is over, whether it took the tensors or failed before reading them).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

WINDOW_BYTES = 64 << 20  # tensors read between two reopenings of the file
log = logging.getLogger(__name__)


def read_tensors(path: Path, dtype, prefix: str = "", window: int = WINDOW_BYTES) -> Dict[str, "object"]:
    """The tensors of ``path`` whose names start with ``prefix`` (prefix removed), floating ones cast to ``dtype``;
    the result of a matching ``read_ahead`` when there is one."""
    ahead = _take(path, dtype, prefix)
    if ahead is not None:
        return ahead
    return _read(path, dtype, prefix, window)


def _read(path: Path, dtype, prefix: str, window: int, stop: Callable[[], bool] = lambda: False) -> Dict[str, object]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as fh:
        keys = [k for k in fh.keys() if k.startswith(prefix)]
    out: Dict[str, object] = {}
    i = 0
    while i < len(keys) and not stop():
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            read = 0
            while i < len(keys) and read < window:
                tensor = fh.get_tensor(keys[i])
                read += tensor.numel() * tensor.element_size()
                out[keys[i][len(prefix) :]] = tensor.to(dtype) if tensor.is_floating_point() else tensor
                i += 1
    return out


def _file_key(path: Path, dtype_name: str) -> Tuple[str, int, int, str]:
    """What a read-ahead is valid for: the file (path, size, modification time) and the dtype's name."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, dtype_name


class _ReadAhead:
    """One whole-file ``read_tensors`` running in a daemon thread."""

    def __init__(self, path: Path, dtype_name: str) -> None:
        self.path, self.key = Path(path), _file_key(path, dtype_name)
        self.dtype_name = dtype_name
        self.done = threading.Event()
        self.stopped = False
        self.result: Optional[Dict[str, object]] = None
        self.thread = threading.Thread(target=self._run, name="paintbridge-read-ahead", daemon=True)

    def _run(self) -> None:
        try:
            import torch

            self.result = _read(self.path, getattr(torch, self.dtype_name), "", WINDOW_BYTES, lambda: self.stopped)
        except Exception as err:  # noqa: BLE001 - the load that wanted it reads the file itself and reports
            log.warning("reading %s ahead failed: %s", self.path.name, err)
        finally:
            self.done.set()


_lock = threading.Lock()
_pending: Optional[_ReadAhead] = None


def read_ahead(path: Path, dtype_name: str) -> _ReadAhead:
    """Start reading all of ``path``'s tensors cast to ``dtype_name`` ("bfloat16", ...) in a background thread,
    replacing an earlier read-ahead; the next ``read_tensors(path, <that dtype>)`` takes the result (``.result``)."""
    global _pending
    ahead = _ReadAhead(path, dtype_name)
    with _lock:
        if _pending is not None:
            _pending.stopped = True
        _pending = ahead
    ahead.thread.start()
    return ahead


def drop_read_ahead() -> None:
    """Stop and forget a read-ahead nothing took (a load that failed before reading): its tensors are freed."""
    global _pending
    with _lock:
        ahead, _pending = _pending, None
    if ahead is not None:
        ahead.stopped = True


def _take(path: Path, dtype, prefix: str) -> Optional[Dict[str, object]]:
    """The pending read-ahead's tensors when it read ``path`` whole in ``dtype`` (waiting for it to finish), else None;
    a read-ahead that does not match is stopped and dropped."""
    global _pending
    with _lock:
        ahead, _pending = _pending, None
    if ahead is None:
        return None
    try:
        wanted = _file_key(path, str(dtype).replace("torch.", ""))
    except OSError:
        wanted = None
    if prefix or wanted != ahead.key:
        ahead.stopped = True
        return None
    ahead.done.wait()
    if ahead.result is None or ahead.stopped:
        return None
    log.info("took the tensors of %s read ahead", ahead.path.name)
    return ahead.result
