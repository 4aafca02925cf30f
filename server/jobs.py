"""The job queue: one worker runs jobs in order, off the event loop; cancel removes queued jobs and stops running ones."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Deque, List, Optional

import numpy as np

from protocol import errors
from protocol.errors import ProtocolError

from . import device as devices
from .core import Job, JobCancelled, JobContext, Layer

log = logging.getLogger("paintbridge.jobs")

Send = Callable[[dict], Awaitable[None]]
RunFn = Callable[[Job, JobContext], List[Layer]]
EncodeFn = Callable[["QueuedJob", List[Layer], float], dict]


@dataclass
class QueuedJob:
    """A job waiting or running, with the connection it belongs to."""

    job: Job
    owner: object
    send: Send
    result_format: str
    ctx: JobContext = field(default_factory=JobContext)
    running: bool = False


class JobQueue:
    """Jobs from all connections, run one at a time by ``worker``; events go back through each job's ``send``."""

    def __init__(self, run: RunFn, encode_result: EncodeFn, max_queue: int) -> None:
        self._run = run
        self._encode_result = encode_result
        self._max_queue = max_queue
        self._waiting: Deque[QueuedJob] = deque()
        self._wakeup = asyncio.Event()
        self.current: Optional[QueuedJob] = None

    def __len__(self) -> int:
        return len(self._waiting) + (1 if self.current else 0)

    def has(self, owner: object, job_id: str) -> bool:
        return any(q.owner is owner and q.job.id == job_id for q in self._all())

    def _all(self) -> List[QueuedJob]:
        return list(self._waiting) + ([self.current] if self.current else [])

    async def submit(self, item: QueuedJob) -> None:
        """Queue a job and answer ``queued`` with its position (0 = next to run)."""
        if len(self) >= self._max_queue:
            raise ProtocolError(errors.BUSY, f"the server's queue is full ({self._max_queue} jobs); try again later",
                                job_id=item.job.id)
        self._waiting.append(item)
        await item.send({"type": "queued", "id": item.job.id, "position": len(self) - 1})
        self._wakeup.set()

    async def cancel(self, owner: object, job_id: str) -> bool:
        """Cancel a job of ``owner``: a queued one is removed and answered ``cancelled`` now, a running one stops
        within one step. Returns False when no such job is queued or running."""
        for item in list(self._waiting):
            if item.owner is owner and item.job.id == job_id:
                self._waiting.remove(item)
                await item.send({"type": "cancelled", "id": job_id})
                return True
        if self.current is not None and self.current.owner is owner and self.current.job.id == job_id:
            self.current.ctx.cancel()
            return True
        return False

    def drop_owner(self, owner: object) -> int:
        """A connection went away: forget its queued jobs and stop its running one. Returns how many were dropped."""
        dropped = [q for q in self._waiting if q.owner is owner]
        for item in dropped:
            self._waiting.remove(item)
        if self.current is not None and self.current.owner is owner:
            self.current.ctx.cancel()
            dropped.append(self.current)
        return len(dropped)

    async def worker(self) -> None:
        """Run queued jobs forever, in order."""
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            item = self._waiting.popleft()
            self.current = item
            try:
                await self._run_one(item)
            finally:
                self.current = None

    async def _run_one(self, item: QueuedJob) -> None:
        loop = asyncio.get_running_loop()
        job = item.job
        pending: List[asyncio.Future] = []

        def report(step: int, total: int, preview: Optional[np.ndarray]) -> None:
            msg = {"type": "progress", "id": job.id, "step": int(step), "total": int(total)}
            if preview is not None and job.previews:
                msg["preview"] = _preview_payload(preview)
            pending.append(asyncio.run_coroutine_threadsafe(item.send(msg), loop))

        item.ctx._report = report
        item.running = True
        started = time.perf_counter()
        await item.send({"type": "started", "id": job.id})
        try:
            if item.ctx.cancelled:
                raise JobCancelled()
            layers = await asyncio.to_thread(self._run, job, item.ctx)
            elapsed = time.perf_counter() - started
            reply = await asyncio.to_thread(self._encode_result, item, layers, elapsed)
        except JobCancelled:
            reply = {"type": "cancelled", "id": job.id}
        except ProtocolError as err:
            err.job_id = job.id
            reply = err.to_message()
        except Exception as err:  # noqa: BLE001 - every failure must reach the client as a message
            if devices.is_out_of_memory(err):
                reply = ProtocolError(errors.OUT_OF_MEMORY,
                                      f"out of memory while running the job: {err}. Try a smaller selection, a "
                                      "smaller batch or a smaller model", job_id=job.id).to_message()
            else:
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                reply = ProtocolError(errors.INTERNAL, f"internal error: {type(err).__name__}: {err}",
                                      job_id=job.id).to_message()
        for fut in pending:  # progress events go out before the final answer
            try:
                await asyncio.wrap_future(fut)
            except Exception:  # noqa: BLE001 - the connection may be gone; the reply below tells the same
                pass
        await item.send(reply)


def _preview_payload(preview: np.ndarray) -> dict:
    """A small RGBA preview as an image payload."""
    if preview.ndim == 3 and preview.shape[2] == 3:
        preview = np.concatenate([preview, np.full(preview.shape[:2] + (1,), 255, np.uint8)], axis=2)
    preview = np.ascontiguousarray(preview, dtype=np.uint8)
    return {"width": preview.shape[1], "height": preview.shape[0], "format": "rgba8", "data": preview.tobytes()}
