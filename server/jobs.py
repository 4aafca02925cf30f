"""The job queue: one worker runs jobs one at a time, off the event loop; cancel removes queued jobs and stops running ones.

Each job belongs to an *owner* (a client session, ``server.sessions.ClientSession``) that receives the job's messages
through ``await owner.send(message)``. Each owner has its own queue; the worker takes turns across owners (``_take_next``),
so one client's many jobs never make another client's job wait for more than one of them.

The turn-taking and job bookkeeping are shared with the cluster front end (``server.cluster.dispatch``), whose queue
runs several jobs at once (one per engine replica) and overrides only how a job is picked and executed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Protocol

import numpy as np

from protocol import errors
from protocol.errors import ProtocolError
from protocol.images import RGBA8, ImagePayload
from protocol.messages import Cancelled, Error, Message, Progress, Queued, Result, Started, error_from

from . import device as devices
from .core import Job, JobCancelled, JobContext, Layer

log = logging.getLogger("paintbridge.jobs")


class Owner(Protocol):
    """Whoever a job's messages go to."""

    async def send(self, message: Message) -> None: ...


RunFn = Callable[[Job, JobContext], List[Layer]]
_serials = itertools.count(1)
EncodeFn = Callable[["QueuedJob", List[Layer], float], Result]


@dataclass(eq=False)
class QueuedJob:
    """A job waiting or running, with the session it belongs to. Compared by identity: job ids are per client (two
    clients may both have a job "a" queued), and a job's pixels are never compared."""

    job: Job
    owner: Owner
    result_format: str = RGBA8
    live: bool = False
    ctx: JobContext = field(default_factory=JobContext)
    running: bool = False
    key: int = field(default_factory=lambda: next(_serials))  # unique in this server (ids are unique per client)

    @property
    def id(self) -> str:
        return self.job.id


class JobQueue:
    """Jobs of all sessions, run one at a time by ``worker``; events go to each job's owner.

    Fair across clients: each owner has its own queue and its own limit of ``max_queue`` jobs (queued or running), and
    the worker takes the next job from the owner whose last job started longest ago (an owner that has not run a job
    yet comes first), so owners take turns one job at a time, whatever one of them queued.
    """

    def __init__(self, run: RunFn, encode_result: EncodeFn, max_queue: int) -> None:
        self._run = run
        self._encode_result = encode_result
        self._max_queue = max_queue
        self._waiting: Dict[object, Deque[QueuedJob]] = {}  # owner -> its queued jobs; dict order = arrival
        self._last_turn: Dict[object, int] = {}  # owner -> the turn its last job started in
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
        """Every queued job in the order the worker will take them (if nothing else arrives)."""
        owners = [self._waiting[o] for o in self._turn_order()]
        rounds = max((len(q) for q in owners), default=0)
        return [q[k] for k in range(rounds) for q in owners if k < len(q)]

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

    async def submit(self, item: QueuedJob) -> None:
        """Queue a job and answer ``queued``. A live frame first replaces its owner's older queued live frames
        (each answered ``cancelled``). An owner with ``max_queue`` jobs queued or running gets ``busy``."""
        if item.live:
            for old in [q for q in self._waiting.get(item.owner, ()) if q.live]:
                self._remove(old)
                await old.owner.send(Cancelled(old.id))
        if len(self.jobs_of(item.owner)) >= self._max_queue:
            raise ProtocolError(
                errors.BUSY,
                f"this client already has {self._max_queue} jobs queued or running (the "
                "limit per client); wait for one to finish",
                job_id=item.id,
            )
        self._waiting.setdefault(item.owner, deque()).append(item)
        await item.owner.send(Queued(item.id, self.position(item)))
        self._wakeup.set()

    async def cancel(self, owner: object, job_id: str) -> bool:
        """Cancel a job of ``owner``: a queued one is removed and answered ``cancelled`` now, a running one stops
        within one step. Returns False when no such job is queued or running."""
        item = self.find(owner, job_id)
        if item is None:
            return False
        if item in self.running:
            item.ctx.cancel()
        else:
            self._remove(item)
            await owner.send(Cancelled(job_id))
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
        if not live_only:
            self._last_turn.pop(owner, None)
        return dropped

    def _take(self, item: QueuedJob) -> QueuedJob:
        """Move a queued job to the running ones; its owner's turn is used up."""
        self._remove(item)
        self._turns += 1
        self._last_turn[item.owner] = self._turns
        self.running.append(item)
        return item

    def _take_next(self) -> QueuedJob:
        return self._take(self._waiting[self._turn_order()[0]][0])

    async def worker(self) -> None:
        """Run queued jobs forever, one at a time."""
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            item = self._take_next()
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
        loop = asyncio.get_running_loop()
        job = item.job
        pending: List[asyncio.Future] = []

        def report(step: int, total: int, preview: Optional[np.ndarray]) -> None:
            shown = _preview_payload(preview) if preview is not None and job.previews else None
            msg = Progress(job.id, int(step), int(total), shown)
            pending.append(asyncio.run_coroutine_threadsafe(item.owner.send(msg), loop))

        item.ctx._report = report
        item.running = True
        started = time.perf_counter()
        await item.owner.send(Started(job.id))
        reply: Message
        try:
            if item.ctx.cancelled:
                raise JobCancelled()
            layers = await self._execute(item)
            elapsed = time.perf_counter() - started
            reply = await asyncio.to_thread(self._encode_result, item, layers, elapsed)
        except JobCancelled:
            reply = Cancelled(job.id)
        except ProtocolError as err:
            err.job_id = job.id
            reply = error_from(err)
        except Exception as err:  # noqa: BLE001 - every failure must reach the client as a message
            if devices.is_out_of_memory(err):
                reply = Error(
                    errors.OUT_OF_MEMORY,
                    f"out of memory while running the job: {err}. Try a smaller "
                    "selection, a smaller batch or a smaller model",
                    id=job.id,
                )
            else:
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                reply = Error(errors.INTERNAL, f"internal error: {type(err).__name__}: {err}", id=job.id)
        for fut in pending:  # progress events go out before the final answer
            try:
                await asyncio.wrap_future(fut)
            except Exception:  # noqa: BLE001 - the connection may be gone; the reply below tells the same
                pass
        await item.owner.send(reply)


def _preview_payload(preview: np.ndarray) -> ImagePayload:
    """A small RGBA preview as an image payload."""
    if preview.ndim == 3 and preview.shape[2] == 3:
        preview = np.concatenate([preview, np.full(preview.shape[:2] + (1,), 255, np.uint8)], axis=2)
    preview = np.ascontiguousarray(preview, dtype=np.uint8)
    return ImagePayload(preview.shape[1], preview.shape[0], RGBA8, preview.tobytes())
