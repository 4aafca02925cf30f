"""The job queue: one worker runs jobs one at a time, off the event loop; cancel removes queued jobs and stops running ones.

Each job belongs to an *owner* (a client session, ``server.sessions.ClientSession``) that hears what happens to the job
as ``events`` (queued, started, progress, finished, failed, cancelled) through ``await owner.on_event(event)``; the
owner makes the wire messages. The queue builds each job's ``JobContext`` (progress reports, cancellation). Each owner
has its own queue; the worker takes turns across owners (``startable``), so one client's many jobs never make another
client's job wait for more than one of them. An owner can be *held* (its client reads its results slower than they
come: ``hold``/``release``): its queued jobs wait, the others' go on, and it keeps its place in the turns.

The turn-taking and job bookkeeping are shared with the cluster front end (``server.cluster.dispatch``), whose queue
runs several jobs at once (one per engine replica) and overrides only how a job is picked and executed.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Protocol, Set

import numpy as np

from protocol import errors
from protocol.errors import ProtocolError
from protocol.images import RGBA8

from . import device as devices
from . import events
from .core import Job, JobCancelled, JobContext, Layer

log = logging.getLogger("paintbridge.jobs")


class Owner(Protocol):
    """Whoever hears what happens to a job."""

    async def on_event(self, event: events.Event) -> None: ...


RunFn = Callable[[Job, JobContext], List[Layer]]
_serials = itertools.count(1)


@dataclass(eq=False)
class QueuedJob:
    """A job waiting or running, with the session it belongs to. Compared by identity: job ids are per client (two
    clients may both have a job "a" queued), and a job's pixels are never compared."""

    job: Job
    owner: Owner
    result_format: str = RGBA8
    live: bool = False
    running: bool = False
    key: int = field(default_factory=lambda: next(_serials))  # unique in this server (ids are unique per client)
    ctx: JobContext = field(init=False, repr=False)  # built by the queue when the job is submitted
    reported: List["asyncio.Future"] = field(init=False, repr=False, default_factory=list)  # progress on its way

    @property
    def id(self) -> str:
        return self.job.id


class JobQueue:
    """Jobs of all sessions, run one at a time by ``worker``; events go to each job's owner.

    Fair across clients: each owner has its own queue and its own limit of ``max_queue`` jobs (queued or running), and
    the worker takes the next job from the owner whose last job started longest ago (an owner that has not run a job
    yet comes first), so owners take turns one job at a time, whatever one of them queued. A held owner's jobs are
    passed over until it is released.
    """

    def __init__(self, run: RunFn, max_queue: int) -> None:
        self._run = run
        self._max_queue = max_queue
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._waiting: Dict[object, Deque[QueuedJob]] = {}  # owner -> its queued jobs; dict order = arrival
        self._last_turn: Dict[object, int] = {}  # owner -> the turn its last job started in
        self._held: Set[object] = set()  # owners whose next job must not start yet
        self._turns = 0
        self._wakeup = asyncio.Event()
        self.running: List[QueuedJob] = []  # one on a single machine; one per busy replica in a cluster

    @property
    def current(self) -> Optional[QueuedJob]:
        """The running job (the first one where several run at once), or None."""
        return self.running[0] if self.running else None

    def __len__(self) -> int:
        return sum(len(q) for q in self._waiting.values()) + len(self.running)

    def jobs_of(self, owner: object) -> List[QueuedJob]:
        """The owner's queued jobs in run order, then its running ones."""
        return list(self._waiting.get(owner, ())) + [q for q in self.running if q.owner is owner]

    def find(self, owner: object, job_id: str) -> Optional[QueuedJob]:
        return next((q for q in self.jobs_of(owner) if q.id == job_id), None)

    def _turn_order(self) -> List[object]:
        """Owners with queued jobs, the next to run first (stable: arrival order among equals)."""
        return sorted(self._waiting, key=lambda owner: self._last_turn.get(owner, -1))

    def run_order(self) -> List[QueuedJob]:
        """Every queued job in the order the worker will take them (if nothing else arrives and no owner is held)."""
        owners = [self._waiting[o] for o in self._turn_order()]
        rounds = max((len(q) for q in owners), default=0)
        return [q[k] for k in range(rounds) for q in owners if k < len(q)]

    def startable(self) -> List[QueuedJob]:
        """The queued jobs that may start now (their owner is not held), in run order."""
        return [item for item in self.run_order() if item.owner not in self._held]

    def hold(self, owner: object) -> None:
        """Start no job of ``owner`` until ``release`` (its running jobs go on)."""
        self._held.add(owner)

    def release(self, owner: object) -> None:
        """``owner``'s jobs may start again, in its turn."""
        if owner in self._held:
            self._held.discard(owner)
            self._wakeup.set()

    def is_held(self, owner: object) -> bool:
        return owner in self._held

    def position(self, item: QueuedJob) -> int:
        """Jobs that run before ``item`` (0 = next, or running)."""
        if item in self.running:
            return 0
        order = self.run_order()
        if item not in order:
            return 0
        return order.index(item) + len(self.running)

    def _remove(self, item: QueuedJob) -> None:
        queue = self._waiting[item.owner]
        queue.remove(item)
        if not queue:
            del self._waiting[item.owner]

    def withdraw(self, item: QueuedJob) -> None:
        """Forget ``item`` if it is queued (its submission failed), without any message."""
        if any(q is item for q in self._waiting.get(item.owner, ())):
            self._remove(item)
        let_go(item)

    async def emit(self, event: events.Event) -> None:
        """Tell the job's owner what happened."""
        await event.item.owner.on_event(event)

    def report(self, item: QueuedJob, step: int, total: int, preview: Optional[np.ndarray] = None) -> None:
        """Progress of a running job, from any thread (the engine's): emitted on the event loop, before the job's
        final event."""
        shown = preview if preview is not None and item.job.previews else None
        event = events.Progress(item, int(step), int(total), shown)
        item.reported.append(asyncio.run_coroutine_threadsafe(self.emit(event), self._loop))

    async def submit(self, item: QueuedJob) -> None:
        """Queue a job (its context is made here) and emit ``Queued``. A live frame first replaces its owner's older
        queued live frames (each ``Cancelled``). An owner with ``max_queue`` jobs queued or running gets ``busy``."""
        self._loop = asyncio.get_running_loop()
        item.ctx = JobContext(functools.partial(self.report, item))
        if item.live:
            for old in [q for q in self._waiting.get(item.owner, ()) if q.live]:
                self._remove(old)
                await self.emit(events.Cancelled(old))
                let_go(old)
        if len(self.jobs_of(item.owner)) >= self._max_queue:
            raise ProtocolError(
                errors.BUSY,
                f"this client already has {self._max_queue} jobs queued or running (the "
                "limit per client); wait for one to finish",
                job_id=item.id,
            )
        self._waiting.setdefault(item.owner, deque()).append(item)
        await self.emit(events.Queued(item, self.position(item)))
        self._wakeup.set()

    async def cancel(self, owner: object, job_id: str) -> bool:
        """Cancel a job of ``owner``: a queued one is removed and ``Cancelled`` now, a running one stops within one
        step. Returns False when no such job is queued or running."""
        item = self.find(owner, job_id)
        if item is None:
            return False
        if item in self.running:
            item.ctx.cancel()
        else:
            self._remove(item)
            await self.emit(events.Cancelled(item))
            let_go(item)
        return True

    def drop(self, owner: object, live_only: bool = False) -> List[QueuedJob]:
        """Forget the owner's queued jobs and stop its running one, without any message; returns them. Dropping all
        of them also forgets the owner's turn."""
        dropped = [q for q in self.jobs_of(owner) if q.live or not live_only]
        for item in dropped:
            if item in self.running:
                item.ctx.cancel()
            else:
                self._remove(item)
                let_go(item)
        if not live_only:
            self._last_turn.pop(owner, None)
            self._held.discard(owner)
        return dropped

    def _take(self, item: QueuedJob) -> QueuedJob:
        """Move a queued job to the running ones; its owner's turn is used up."""
        self._remove(item)
        self._turns += 1
        self._last_turn[item.owner] = self._turns
        self.running.append(item)
        return item

    async def worker(self) -> None:
        """Run queued jobs forever, one at a time."""
        while True:
            while not (startable := self.startable()):
                self._wakeup.clear()
                await self._wakeup.wait()
            item = self._take(startable[0])
            try:
                await self._run_one(item)
            finally:
                self.running.remove(item)

    def stop_running(self) -> None:
        """Stop every running job (the server is shutting down)."""
        for item in self.running:
            item.ctx.cancel()

    async def _execute(self, item: QueuedJob) -> List[Layer]:
        """Run the job's engine work (in a thread: engines block); the cluster queue runs it on a replica instead."""
        return await asyncio.to_thread(self._run, item.job, item.ctx)

    async def _run_one(self, item: QueuedJob) -> None:
        item.running = True
        started = time.perf_counter()
        await self.emit(events.Started(item))
        final: events.Event
        try:
            if item.ctx.cancelled:
                raise JobCancelled()
            layers = await self._execute(item)
            final = events.Finished(item, layers, time.perf_counter() - started, item.ctx.text or "")
        except JobCancelled:
            final = events.Cancelled(item)
        except ProtocolError as err:
            err.job_id = item.id
            final = events.Failed(item, err)
        except Exception as err:  # noqa: BLE001 - every failure must reach the client
            final = events.Failed(item, _failure(item, err))
        for fut in item.reported:  # progress goes out before the final event
            try:
                await asyncio.wrap_future(fut)
            except Exception:  # noqa: BLE001 - the connection may be gone; the final event tells the same
                pass
        item.reported.clear()
        await self.emit(final)
        del final  # (a failure's traceback may hold the job's pixels)
        await let_go(item)


def let_go(item: QueuedJob) -> "asyncio.Future[None]":
    """Drop the pixels of a job that is over (its final message on its way), in a helper thread: the request's images
    are often mapped shared files, and unmapping them then delays neither the reply nor the event loop. (The job is
    referenced from its own context, so it is not freed as soon as the queue forgets it.)"""
    held = [item.job]
    item.job = item.job.without_pixels()
    return asyncio.get_running_loop().run_in_executor(None, held.clear)


def _failure(item: QueuedJob, err: Exception) -> ProtocolError:
    """An unexpected exception of a job as the error its client gets: out of memory, or internal (logged)."""
    if devices.is_out_of_memory(err):
        return ProtocolError(
            errors.OUT_OF_MEMORY,
            f"out of memory while running the job: {err}. Try a smaller selection, a smaller batch or a smaller model",
            job_id=item.id,
        )
    log.error("job %s failed:\n%s", item.id, traceback.format_exc())
    return ProtocolError(errors.INTERNAL, f"internal error: {type(err).__name__}: {err}", job_id=item.id)
