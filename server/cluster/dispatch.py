"""The front end's job queue for a pool: the single-machine ``JobQueue`` (per-client queues, turns, cancel, drop,
positions, the events of a job's life) with several jobs running at once, one per replica, placed by
``routing.plan`` and streamed from the replica.

Faults: a replica that dies mid-job (the stream ends with a Ray actor error) is taken out of routing and the job goes
back to the front of routing; the client sees ``progress`` start again at step 0, not an error. A replica that cannot
load the job's checkpoint is taken out of routing for that checkpoint and the job is routed again; when no replica is
left for it, the client gets the error naming each replica's reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Dict, List, Optional

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import RequestCancelledError

from protocol.errors import INTERNAL, ProtocolError

from .. import events
from ..core import JobCancelled, Layer
from ..jobs import JobQueue, QueuedJob
from . import routing
from .pool import Pool
from .replica import checkpoint_key

log = logging.getLogger("paintbridge.dispatch")

REPLAN_SECONDS = 0.5  # busy replicas' estimates change with time: plan again this often while jobs wait
CANCEL_POLL_SECONDS = 0.05
MAX_TRIES = 4  # replicas a job may be started on before its failure is reported
REPLICA_GONE = (RayActorError, ActorDiedError, ActorUnavailableError)


class ReplicaLost(Exception):
    """The replica running a job died or became unreachable."""


class PoolQueue(JobQueue):
    """Fair per-client queues over a pool of replicas; see the module docstring."""

    def __init__(self, pool: Pool, max_queue: int) -> None:
        super().__init__(self._no_local_run, max_queue)
        self.pool = pool
        self.placed: Dict[int, str] = {}  # running job's key (``QueuedJob.key``: ids repeat across clients) -> replica
        self.started_at: Dict[str, float] = {}  # replica id -> when its job started
        self.last_replica: Dict[object, str] = {}  # owner -> the replica of its last job
        self.routes: List[tuple] = []  # (job id, replica id) in start order: what ran where (tests, benchmarks)
        self._rerouting: Dict[int, "asyncio.Future[str]"] = {}  # running job's key -> waiting for another replica
        self._running_items: Dict[int, QueuedJob] = {}
        self._totals: Dict[int, int] = {}  # running job's key -> its steps as last reported

    @staticmethod
    def _no_local_run(job, ctx) -> List[Layer]:
        raise RuntimeError("the cluster front end runs no engine itself")

    # --- placing ---

    def _wants(self) -> List[routing.Want]:
        again = [
            routing.Want(key, self._running_items[key].owner, self._model(self._running_items[key]), False)
            for key in self._rerouting
        ]
        return again + [routing.Want(item.key, item.owner, self._model(item), item.live) for item in self.startable()]

    def _model(self, item: QueuedJob) -> Optional[str]:
        key = checkpoint_key(item.job)
        return None if key is None else self.pool.canonical(key)

    def _states(self) -> List[routing.ReplicaState]:
        now = time.monotonic()
        for rid, state in self.pool.states.items():
            state.busy_for = now - self.started_at[rid] if rid in self.started_at else None
        return [self.pool.states[rid] for rid in self.pool.ids()]

    async def worker(self) -> None:
        """Place waiting jobs whenever something changes (a job arrives or ends, a replica comes or goes)."""
        while True:
            await self._place()
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), REPLAN_SECONDS)
            except asyncio.TimeoutError:
                pass

    async def _place(self) -> None:
        if not self._waiting and not self._rerouting:
            return
        queued = {item.key: item for item in self.run_order()}
        decision = routing.plan(self._wants(), self._states(), self.last_replica)
        for key, rid in decision.starts:
            self._occupy(rid, key)
            if key in self._rerouting:
                self.routes.append((self._running_items[key].id, rid))
                self._rerouting.pop(key).set_result(rid)
                continue
            item = self._take(queued[key])
            self.routes.append((item.id, rid))
            self._running_items[key] = item
            asyncio.ensure_future(self._run_placed(item))
        refused = []  # (answered after every start: sending yields to other tasks)
        for key, code, message in decision.refusals:
            if key in self._rerouting:
                self._rerouting.pop(key).set_exception(ProtocolError(code, message))
            else:
                item = self._take(queued[key])
                self.running.remove(item)
                refused.append((item, ProtocolError(code, message, job_id=item.id)))
        for item, err in refused:
            await self.emit(events.Failed(item, err))

    def _occupy(self, rid: str, key: int) -> None:
        self.placed[key] = rid
        self.started_at[rid] = time.monotonic()

    def _free(self, key: int) -> Optional[str]:
        rid = self.placed.pop(key, None)
        if rid is not None:
            self.started_at.pop(rid, None)
            self._wakeup.set()
        return rid

    async def _run_placed(self, item: QueuedJob) -> None:
        try:
            await self._run_one(item)
        finally:
            self._free(item.key)
            self._running_items.pop(item.key, None)
            self._totals.pop(item.key, None)
            if item in self.running:
                self.running.remove(item)
            self._wakeup.set()

    async def _reroute(self, item: QueuedJob) -> str:
        """Free the job's replica and wait for routing to place it again (first in line)."""
        self._free(item.key)
        future: "asyncio.Future[str]" = asyncio.get_running_loop().create_future()
        self._rerouting[item.key] = future
        self._wakeup.set()
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=CANCEL_POLL_SECONDS)
                if done:
                    return future.result()
                if item.ctx.cancelled:
                    raise JobCancelled()
        finally:
            if self._rerouting.get(item.key) is future:
                del self._rerouting[item.key]
            if future.done() and not future.exception() and item.ctx.cancelled:
                self._free(item.key)

    # --- running on a replica ---

    async def _execute(self, item: QueuedJob) -> List[Layer]:
        """Stream the job from its replica; on a lost replica or a refused load, route it again."""
        tries = 0
        while True:
            rid = self.placed[item.key]
            state = self.pool.states[rid]
            tries += 1
            try:
                layers = await self._stream(item, rid, state)
            except ReplicaLost as err:
                log.warning("replica %s was lost during job %s (%s); the job starts again elsewhere", rid, item.id, err)
                self.pool.lost(rid)
                asyncio.ensure_future(self._recheck(rid))
                if tries >= MAX_TRIES:
                    raise ProtocolError(
                        INTERNAL, f"the job was started on {tries} replicas and each was lost (last: {err})"
                    ) from None
                self.report(item, 0, self._totals.get(item.key, 0))  # the client sees its progress start again
                await self._reroute(item)
                continue
            if layers is None:  # the replica could not load the checkpoint: routing knows now
                await self._reroute(item)
                continue
            self.last_replica[item.owner] = rid
            return layers

    async def _recheck(self, rid: str) -> None:
        """Bring a lost replica back into routing once Serve has restarted it."""
        for _ in range(120):
            await asyncio.sleep(1.0)
            if rid not in self.pool.states or await self.pool.check(rid):
                self._wakeup.set()
                return

    async def _stream(self, item: QueuedJob, rid: str, state: routing.ReplicaState) -> Optional[List[Layer]]:
        """The job's events from replica ``rid``: progress to the client, the layers at the end (None when the
        replica could not load the checkpoint)."""
        stream = self.pool.handle(rid, stream=True).run.remote(item.job)
        watcher = asyncio.ensure_future(self._cancel_when_asked(item, stream))
        try:
            async for event in stream:
                kind = event[0]
                if kind == "progress":
                    self._totals[item.key] = event[2]
                    self.report(item, *event[1:])
                elif kind == "loaded":
                    state.loaded = event[1]
                    state.learn_load(event[1], event[2])
                elif kind == "load_failed":
                    self.pool.refuse(rid, event[1], event[2])
                    return None
                elif kind == "done":
                    state.learn_job(event[2])
                    state.jobs += 1
                    item.ctx.text = event[3] if len(event) > 3 else None  # mode caption's words
                    return event[1]
                elif kind == "cancelled":
                    raise JobCancelled()
                elif kind == "error":
                    raise ProtocolError(event[1], event[2], field=event[3])
            raise ReplicaLost("the stream ended without an answer")
        except RequestCancelledError:
            raise JobCancelled() from None
        except REPLICA_GONE as err:
            if item.ctx.cancelled:
                raise JobCancelled() from None
            raise ReplicaLost(type(err).__name__) from None
        finally:
            watcher.cancel()

    @staticmethod
    async def _cancel_when_asked(item: QueuedJob, stream) -> None:
        """Cancel the replica's stream (Serve cancels the replica's ``run``) when the job is cancelled."""
        while not item.ctx.cancelled:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
        stream.cancel()
