"""Model downloads asked for through the protocol: ``pull`` (with ``pull_progress`` events and one final ``pull_done``,
``cancelled`` or ``error``) and ``list_presets`` (answered with ``presets``).

Files land in the server's first models folder (so a remote server downloads onto its own machine). Pulls run one at a
time, each in a worker thread (never on the event loop); ``cancel`` stops a running pull at its next chunk and keeps the
partial file, so pulling it again continues where it stopped. Progress is throttled to one event per ``interval``
seconds per pull (plus the first and the last of each file). A finished pull rescans the model folders, and its
``pull_done`` carries the new listing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Dict, List, Optional, Protocol, Tuple

from protocol import errors
from protocol.errors import ProtocolError
from protocol.messages import Cancelled, Message, Presets, Pull, PullDone, PullProgress, error_from

from .downloads import (
    Catalogue,
    CatalogueError,
    CatalogueFile,
    ChecksumError,
    OfflineError,
    PullCancelled,
    PullError,
    pull,
)
from .downloads.status import installed_path

log = logging.getLogger("paintbridge.pulls")


class Owner(Protocol):
    """Whoever a pull's messages go to (a ``sessions.ClientSession``)."""

    async def send(self, message: Message) -> None: ...


@dataclass
class PullItem:
    """A pull waiting or running; shaped like a queued job for the session table (``id``, ``live``, ``running``)."""

    id: str
    owner: Owner
    files: List[CatalogueFile]
    live: bool = False
    running: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


def file_entry(item: CatalogueFile, roots: List[Path]) -> dict:
    """A catalogue file as the protocol lists it."""
    return {
        "id": item.id,
        "target": item.target,
        "family": item.family,
        "kind": item.kind,
        "what": item.what,
        "modes": list(item.modes),
        "controls": list(item.controls),
        "size": item.expected_bytes,
        "installed": installed_path(item, roots) is not None,
    }


def preset_entries(catalogue: Catalogue, roots: List[Path]) -> List[dict]:
    """Each preset with its files and what is missing (``presets`` message entries)."""
    out = []
    for preset in catalogue.presets.values():
        files = [file_entry(f, roots) for f in preset.files]
        missing = [f for f in files if not f["installed"]]
        families = sorted({f.family for f in preset.files if f.family not in ("any", "")})
        out.append(
            {
                "name": preset.name,
                "title": preset.title,
                "families": families,
                "complete": not missing,
                "missing": [f["id"] for f in missing],
                "missing_bytes": sum(f["size"] for f in missing),
                "files": files,
            }
        )
    return out


class PullManager:
    """Runs pulls one at a time and answers ``list_presets``."""

    def __init__(
        self,
        roots: List[Path],
        rescan: Callable[[], None],
        models: Callable[[], List[dict]],
        catalogue: Optional[Catalogue] = None,
        interval: float = 0.25,
    ) -> None:
        self.roots = [Path(r).expanduser() for r in roots]
        self._rescan = rescan
        self._models = models
        self._catalogue = catalogue
        self.interval = interval
        self.pulls: Dict[Tuple[int, str], PullItem] = {}
        self._lock: Optional[asyncio.Lock] = None

    @property
    def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            self._catalogue = Catalogue.load()
        return self._catalogue

    @property
    def root(self) -> Path:
        """Where pulled files land: the server's first models folder."""
        return self.roots[0]

    def presets(self) -> Presets:
        return Presets(tuple(preset_entries(self.catalogue, self.roots)))

    def resolve(self, msg: Pull) -> List[CatalogueFile]:
        """The files a pull names (each once); an unknown name refuses the pull naming it."""
        files: Dict[str, CatalogueFile] = {}
        for i, name in enumerate(msg.names):
            try:
                for item in self.catalogue.resolve(name):
                    files.setdefault(item.id, item)
            except CatalogueError as err:
                raise ProtocolError(errors.BAD_REQUEST, str(err), field=f"names[{i}]", job_id=msg.id) from None
        return list(files.values())

    async def start(self, owner: Owner, msg: Pull) -> PullItem:
        """Accept a pull (refusing unknown names) and run it in the background."""
        item = PullItem(msg.id, owner, self.resolve(msg))
        self.pulls[(id(owner), msg.id)] = item
        asyncio.get_running_loop().create_task(self._run(item))
        return item

    def cancel(self, owner: object, pull_id: str) -> bool:
        """Stop a pull of ``owner`` (its final ``cancelled`` follows); False when it has none with that id."""
        item = self.pulls.get((id(owner), pull_id))
        if item is None:
            return False
        item.stop.set()
        return True

    async def _run(self, item: PullItem) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        try:
            async with self._lock:
                item.running = True
                reply = await self._pull(item)
        except Exception as err:  # every failure reaches the client as a message
            log.exception("pull %s failed", item.id)
            reply = error_from(
                ProtocolError(errors.INTERNAL, f"internal error: {type(err).__name__}: {err}", job_id=item.id)
            )
        finally:
            self.pulls.pop((id(item.owner), item.id), None)
        await item.owner.send(reply)

    async def _pull(self, item: PullItem) -> Message:
        loop = asyncio.get_running_loop()
        index = {f.id: i for i, f in enumerate(item.files)}
        seen: set = set()
        throttle = Throttle(loop, item.owner.send, self.interval)

        def progress(file: CatalogueFile, done: int, total: Optional[int]) -> None:  # a worker thread
            force = file.id not in seen or (total is not None and done >= total)
            seen.add(file.id)
            msg = PullProgress(
                item.id, file.id, file.target, index[file.id], len(item.files), int(done), int(total or 0)
            )
            loop.call_soon_threadsafe(throttle.offer, msg, force)

        reply: Message
        try:
            if item.stop.is_set():
                raise PullCancelled("cancelled before it began")
            results = await asyncio.to_thread(pull, item.files, self.root, progress, False, None, item.stop.is_set)
            for result in results:
                if result.downloaded and result.note:
                    log.warning("%s", result.note)
            await asyncio.to_thread(self._rescan)
            models = tuple(await asyncio.to_thread(self._models))
            reply = PullDone(
                item.id,
                tuple(
                    {
                        "id": r.file.id,
                        "target": r.file.target,
                        "downloaded": r.downloaded,
                        "checked_with": r.checked_with,
                    }
                    for r in results
                ),
                models,
            )
        except PullCancelled:
            reply = Cancelled(item.id)
        except OfflineError as err:
            reply = error_from(
                ProtocolError(errors.OFFLINE, f"the server cannot download models: {err}", job_id=item.id)
            )
        except (ChecksumError, PullError) as err:
            reply = error_from(ProtocolError(errors.DOWNLOAD_FAILED, str(err), job_id=item.id))
        await asyncio.sleep(0)  # progress handed over by the worker thread reaches the throttle first
        await throttle.close()  # progress goes out before the final answer
        return reply


class Throttle:
    """At most one message per ``interval`` seconds, the latest one winning; a held message goes out when its time
    comes even if nothing newer arrives. ``force`` sends at once (the first and the last event of a file)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, send: Callable[[Message], Awaitable[None]], interval: float
    ) -> None:
        self.loop, self.send, self.interval = loop, send, interval
        self.sent_at = -float("inf")
        self.pending: Optional[Message] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.tasks: List[asyncio.Task] = []

    def offer(self, msg: Message, force: bool = False) -> None:
        now = self.loop.time()
        if force or now - self.sent_at >= self.interval:
            self._emit(msg)
            return
        self.pending = msg
        if self.timer is None:
            self.timer = self.loop.call_at(self.sent_at + self.interval, self._flush)

    def _flush(self) -> None:
        self.timer = None
        if self.pending is not None:
            self._emit(self.pending)

    def _emit(self, msg: Message) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pending = None
        self.sent_at = self.loop.time()
        self.tasks.append(self.loop.create_task(self.send(msg)))

    async def close(self) -> None:
        """Send what is held, and wait until everything offered went out."""
        self._flush()
        for task in self.tasks:
            try:
                await task
            except Exception:  # noqa: BLE001 - the connection may be gone; the final answer tells the same
                pass
