"""Pixel payloads through shared memory, when client and server run on one machine as one user.

The server makes one private folder per connection (``mkdtemp``: mode 0700, in ``/dev/shm`` where there is one, so
its files live in memory) and names it in ``welcome.shared_folder`` when the client's ``hello.shared_memory`` asked
for it and the client connected over loopback. A client that finds that folder on its own machine, owned by its own
user and private, may then send any large payload as a file there: the payload map carries
``shm: {name, size}`` instead of ``data``, and the server answers the same way. Anything else (a remote server, an
old peer, a full disk) keeps the pixels in ``data``: the painter sees no difference.

Reading a handle is as strict as reading inline bytes: the name is a plain file name of the connection's own folder
(no path, no link: another client's folder or any other file cannot be named), the file must be a regular file of
this user holding exactly the declared size, which must be what ``width`` x ``height`` ``format`` needs, and the
sizes of one message add up within the frame limit. Each file is taken once and removed by its reader, which maps
it read-only (a memoryview: no copy; only a process of the same user can write into the private folder, and such a
process could stop either side anyway). The file is unlinked as it is opened, so its name is gone at once and its
memory when the last view of it is dropped. The writer removes what was never read when the job ends or the
connection drops, and the server removes the whole folder when the connection ends (``sweep`` removes the folders of
server processes that died).

Spares: a new file's memory costs more to allocate (the kernel zeroes each page) than to fill, so after writing a
payload the writer prepares, in a background thread, one file of the same size for the next one (``spare-*.px``,
allocated with ``posix_fallocate``); the next payload of that size is written into it and the file renamed to the
payload's name, handed over and taken exactly like a new one. At most ``SPARES`` spares per writer and folder (the
sizes most recently written); they are removed when the writer closes its side (``drop_spares``: a client closing or
losing its connection), with the folder when the connection ends, or by ``sweep`` when the server died. A writer that
crashes leaves at most these in the server's folder, which goes when the server sees the connection drop.
"""

from __future__ import annotations

import mmap
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from .errors import TOO_LARGE, ProtocolError, bad_field
from .images import payload_size

# Payloads at least this large travel as files; smaller ones (previews, small masks) stay inline.
MIN_SHARED_BYTES = 1 << 20
# Payloads sit at most this many maps and lists deep in any message (``controls[1].image``: 3); deeper nesting is not
# looked into (it is never a payload position).
PAYLOAD_DEPTH = 4
FILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.px")
FOLDER_PREFIX = "paintbridge-"
SPARE_PREFIX = "spare-"
# Prepared files a writer keeps per folder (one per recent payload size: an image and its mask).
SPARES = 2
_FOLDER_NAME = re.compile(r"paintbridge-([0-9]+)-[A-Za-z0-9_]+")
# Where per-user permissions and O_NOFOLLOW hold (Windows keeps the wire path).
AVAILABLE = os.name == "posix"
_OPEN_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FALLOCATE = getattr(os, "posix_fallocate", None)  # (not on macOS: no spares there)


def shared_base() -> str:
    """Where the server makes its folders: ``/dev/shm`` (memory) when it is there and writable, else the temp
    folder."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


class SharedFolder:
    """One connection's folder of payload files (``path``), with counts of the payloads written and read (and
    ``spared``: those written into a prepared file). ``spares``: how many prepared files this writer keeps (0: none)."""

    def __init__(self, path: str, spares: int = SPARES) -> None:
        self.path = path
        self.written = 0
        self.read = 0
        self.spared = 0
        self._spares = spares if _FALLOCATE is not None else 0
        self._ready: "OrderedDict[int, str]" = OrderedDict()  # payload size -> spare file name, oldest first
        self._making: Set[int] = set()
        self._threads: Dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._dropped = False

    @classmethod
    def create(cls, base: Optional[str] = None) -> "SharedFolder":
        """A new private folder (mode 0700) named after this process (the server side)."""
        return cls(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=base or shared_base()))

    @classmethod
    def join(cls, path: Any) -> Optional["SharedFolder"]:
        """The peer's folder when this process can share it (the client side): an absolute path to a folder named
        like the server's, not a link, owned by this user and private; None otherwise (a server on another
        machine or of another user): the wire path is used then."""
        if (
            not AVAILABLE
            or not isinstance(path, str)
            or not os.path.isabs(path)
            or not _FOLDER_NAME.fullmatch(os.path.basename(path))
        ):
            return None
        try:
            info = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
            return None
        return cls(path)

    def put(self, data: Any) -> dict:
        """Write ``data`` (bytes-like) to a new file; returns its handle ``{name, size}``. OSError (disk full, folder
        gone) leaves no file behind."""
        view = memoryview(data).cast("B")
        name = secrets.token_hex(12) + ".px"
        path = os.path.join(self.path, name)
        fd = self._open_spare(len(view), path)
        spared = fd is not None
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
        try:
            left = view
            while len(left):
                left = left[os.write(fd, left) :]
        except BaseException:
            os.close(fd)
            _unlink(path)
            raise
        os.close(fd)
        self.written += 1
        self.spared += spared
        self._prepare(len(view))
        return {"name": name, "size": len(view)}

    def spare_sizes(self) -> List[int]:
        """The payload sizes a prepared file is ready for (oldest first)."""
        with self._lock:
            return list(self._ready)

    def wait_spares(self, timeout: Optional[float] = None) -> None:
        """Wait until the spares being prepared are ready (or given up)."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def drop_spares(self, wait: bool = True) -> None:
        """Remove this writer's spares and make no more (its side of the connection is closing). A spare under way
        removes its own file when done; ``wait``: wait for that (up to 5 s), so that none is left when this returns."""
        with self._lock:
            self._dropped = True
            names = list(self._ready.values())
            self._ready.clear()
            making = list(self._threads.values()) if wait else []
        for thread in making:
            thread.join(5.0)
        for name in names:
            _unlink(os.path.join(self.path, name))

    def _open_spare(self, size: int, path: str) -> Optional[int]:
        """A prepared file of ``size`` bytes renamed to ``path`` and opened for writing; None when there is none."""
        with self._lock:
            spare = self._ready.pop(size, None)
        if spare is None:
            return None
        try:
            os.rename(os.path.join(self.path, spare), path)
        except OSError:
            _unlink(os.path.join(self.path, spare))
            return None
        try:
            fd = os.open(path, os.O_WRONLY | _OPEN_FLAGS)
            if os.fstat(fd).st_size == size:
                return fd
            os.close(fd)
        except OSError:
            pass
        _unlink(path)
        return None

    def _prepare(self, size: int) -> None:
        """Start making a spare for payloads of ``size`` bytes unless one is there or under way."""
        with self._lock:
            if self._dropped or not self._spares or size in self._ready or size in self._making:
                return
            self._making.add(size)
            thread = threading.Thread(target=self._make_spare, args=(size,), name="paintbridge-spare", daemon=True)
            self._threads[size] = thread
        thread.start()

    def _make_spare(self, size: int) -> None:
        name: Optional[str] = f"{SPARE_PREFIX}{secrets.token_hex(12)}.px"
        path = os.path.join(self.path, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
            try:
                _FALLOCATE(fd, 0, size)  # the pages allocated and zeroed now, not when the payload is written
            finally:
                os.close(fd)
        except OSError:  # a full /dev/shm, the folder gone: the next payload is written the usual way
            _unlink(path)
            name = None
        with self._lock:
            self._making.discard(size)
            self._threads.pop(size, None)
            if name is not None and not self._dropped:
                self._ready[size] = name
                while len(self._ready) > self._spares:
                    _unlink(os.path.join(self.path, self._ready.popitem(last=False)[1]))
                return
        if name is not None:
            _unlink(path)

    def take(self, handle: Any, field: str, size: int) -> Any:
        """The bytes of the file ``handle`` names, which must hold exactly ``size`` bytes, as a read-only memoryview
        of the file mapped (no copy); the file is removed. Anything wrong is a ``bad_request`` ProtocolError naming
        ``field`` (the handle's path)."""
        name = handle.get("name")
        if not isinstance(name, str) or not FILE_NAME.fullmatch(name):
            raise bad_field(
                f"{field}.name",
                "must be the name of a file in this connection's shared folder "
                f"(letters, digits, '_' or '-', ending in '.px'), got {name!r}"[:300],
            )
        if name.startswith(SPARE_PREFIX):
            raise bad_field(f"{field}.name", f"names a spare, not a payload handed over ({name})")
        path = os.path.join(self.path, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _OPEN_FLAGS)
        except FileNotFoundError:
            raise bad_field(
                f"{field}.name",
                f"names no file of this connection's shared folder ({name}: never written there, or already read)",
            ) from None
        except OSError as err:
            raise bad_field(f"{field}.name", f"cannot be opened ({name}: {err.strerror})") from None
        try:
            _unlink(path)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                raise bad_field(f"{field}.name", f"is not a regular file of this user ({name})")
            if info.st_size != size:
                raise bad_field(f"{field}.size", f"is {size} but the shared file {name} holds {info.st_size} bytes")
            data = memoryview(
                mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), prot=mmap.PROT_READ)
            )
        finally:
            os.close(fd)
        self.read += 1
        return data

    def discard(self, names: List[str]) -> None:
        """Remove files this side wrote that the peer did not read (gone already is fine)."""
        for name in names:
            _unlink(os.path.join(self.path, name))

    def remove(self) -> None:
        """Remove the folder and what is left in it (the server, when the connection ends; on its event loop, so a
        spare under way is not waited for: its file goes with the folder, or it finds the folder gone)."""
        self.drop_spares(wait=False)
        for _ in range(3):  # (again if the peer made a spare while the folder was being emptied)
            shutil.rmtree(self.path, ignore_errors=True)
            if not os.path.lexists(self.path):
                return


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _is_payload(value: Mapping) -> bool:
    return "width" in value and "height" in value and "format" in value


def export(value: Any, folder: SharedFolder, min_bytes: int = MIN_SHARED_BYTES) -> Tuple[Any, List[str]]:
    """A wire map with every payload of at least ``min_bytes`` written to ``folder`` and carried as
    ``shm: {name, size}``, and the names written. A payload that cannot be written stays inline (``data``)."""
    names: List[str] = []

    def walk(item: Any) -> Any:
        if isinstance(item, dict):
            data = item.get("data")
            if (
                _is_payload(item)
                and isinstance(data, (bytes, bytearray, memoryview))
                and memoryview(data).nbytes >= min_bytes
            ):
                try:
                    handle = folder.put(data)
                except (OSError, ValueError, TypeError):
                    return item  # the wire path: the peer cannot tell
                names.append(handle["name"])
                return {**{k: v for k, v in item.items() if k != "data"}, "shm": handle}
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v) for v in item]
        return item

    return walk(value), names


def resolve(value: Any, folder: Optional[SharedFolder], max_pixels: int, max_bytes: int) -> Any:
    """A decoded message with every ``shm`` handle of a payload replaced by the file's bytes (``data``), checked
    before anything is read: the declared size is what the payload's width, height and format need, and the
    message's shared bytes stay within ``max_bytes``. A handle without a folder (shared memory not agreed on this
    connection) or a bad one is a ProtocolError naming the field."""
    budget = [max_bytes]

    def walk(item: Any, path: str, depth: int) -> None:
        if depth > PAYLOAD_DEPTH:
            return
        if isinstance(item, dict):
            handle = item.get("shm")
            if handle is not None and _is_payload(item):
                item["data"] = _take(item, handle, path or "payload")
                del item["shm"]
                return
            for key, sub in item.items():
                if isinstance(sub, (dict, list)):
                    walk(sub, f"{path}.{key}" if path else str(key), depth + 1)
        elif isinstance(item, list):
            for i, sub in enumerate(item):
                if isinstance(sub, (dict, list)):
                    walk(sub, f"{path}[{i}]", depth + 1)

    def _take(item: dict, handle: Any, path: str) -> Any:
        field = f"{path}.shm"
        if folder is None:
            raise bad_field(
                field,
                "is a shared-memory handle, but this connection does not share memory (it was "
                "not offered in 'welcome'): send the pixels in 'data'",
            )
        if not isinstance(handle, Mapping):
            raise bad_field(field, f"must be a map with name and size, got {type(handle).__name__}")
        declared = handle.get("size")
        if isinstance(declared, bool) or not isinstance(declared, int):
            raise bad_field(f"{field}.size", "must be an integer" if "size" in handle else "is missing")
        needed = payload_size(item, path, max_pixels)
        if declared != needed:
            raise bad_field(
                f"{field}.size",
                f"is {declared} but {item['width']}x{item['height']} {item['format']} needs {needed} bytes",
            )
        if declared > budget[0]:
            raise ProtocolError(
                TOO_LARGE,
                f"field '{field}' brings the message's shared payloads over the limit of {max_bytes} bytes",
                field=field,
            )
        budget[0] -= declared
        return folder.take(handle, field, declared)

    walk(value, "", 0)
    return value


def sweep(base: Optional[str] = None) -> int:
    """Remove the shared folders of server processes that are gone (a crash leaves them behind); returns how many."""
    base = base or shared_base()
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for entry in entries:
        match = _FOLDER_NAME.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid() or _alive(int(match.group(1))):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


__all__ = ["AVAILABLE", "MIN_SHARED_BYTES", "SharedFolder", "export", "resolve", "shared_base", "sweep"]
