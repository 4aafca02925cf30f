"""One engine replica of the pool: the single-machine ``Router`` over the models folder its machine sees, run as a
Ray Serve deployment (``pool.deploy_replicas`` wraps this class; it imports no Ray itself).

``run`` is an async generator that Ray Serve streams to the front end (``DeploymentHandle.options(stream=True)``):
``("loaded", name, seconds)`` after loading the job's checkpoint, ``("progress", step, total, preview)`` per step,
then exactly one of ``("done", layers, seconds, text)`` (``text``: the words of a job that answers in words, mode
caption; else None), ``("cancelled",)``, ``("error", code, message, field)`` or
``("load_failed", name, reason)``. When the front end cancels the stream, Serve cancels ``run`` here; the job's
``JobContext`` is cancelled and the engine stops within a step, as on one machine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import AsyncIterator, List, Optional, Sequence

from protocol.errors import INTERNAL, OUT_OF_MEMORY, ProtocolError

from .. import device as devices
from ..classical import NAME as CLASSICAL
from ..config import ServerConfig
from ..core import Job, JobCancelled, JobContext
from ..router import CAPTION, PREPROCESS, UPSCALE, Router

log = logging.getLogger("paintbridge.replica")


def checkpoint_key(job: Job) -> Optional[str]:
    """The checkpoint a job needs as the pool routes it: its model name, "" for the replica's default, None for jobs
    that need no checkpoint (the classical engine, upscales, preprocessors, captions)."""
    if job.mode in (UPSCALE, PREPROCESS, CAPTION) or job.model == CLASSICAL:
        return None
    return job.model


class EngineReplica:
    """A replica: runs one job at a time on its own engines and reports what it holds."""

    def __init__(
        self,
        replica_id: str,
        model_dirs: Sequence[str],
        device: Optional[str] = None,
        dtype: Optional[str] = None,
        allow_pickle: bool = False,
        threads: int = 0,
    ) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        if threads > 0:
            os.environ["OMP_NUM_THREADS"] = str(threads)
            import torch

            torch.set_num_threads(threads)
        self.id = replica_id
        self.router = Router(
            ServerConfig(
                model_dirs=[Path(d) for d in model_dirs], device=device, dtype=dtype, allow_pickle=allow_pickle
            )
        )
        self.loaded = ""
        self.loads = 0
        self.jobs = 0
        self.cancelled = 0

    def describe(self, rescan: bool = False) -> dict:
        """What the front end routes by: checkpoints it sees, its default, what it holds, counters."""
        if rescan:
            self.router.rescan()
        registry = self.router.registry
        default = registry.default_checkpoint()
        return {
            "id": self.id,
            "device": self.router.device_description(),
            "pid": os.getpid(),
            "models": [e.name for e in registry.entries("checkpoint")],
            "listing": [{k: v for k, v in m.items() if k != "path"} for m in self.router.models()],
            "default": default.name if default is not None else "",
            "loaded": self.loaded,
            "loads": self.loads,
            "jobs": self.jobs,
            "cancelled": self.cancelled,
        }

    def _load(self, name: str) -> str:
        entry = self.router.registry.get(name, "checkpoint")
        self.router.checkpoint_engine(entry).warm_up(entry.name)
        self.loads += 1
        self.loaded = entry.name
        return entry.name

    def _checkpoint(self, job: Job) -> Optional[str]:
        key = checkpoint_key(job)
        if key is None:
            return None
        if key:
            return self.router.registry.get(key, "checkpoint").name
        default = self.router.registry.default_checkpoint()
        return default.name if default is not None else None

    async def run(self, job: Job) -> AsyncIterator[tuple]:
        """Run ``job``, streaming its events (see the module docstring)."""
        try:
            name = self._checkpoint(job)
        except ProtocolError as err:
            yield ("error", err.code, err.message, err.field)
            return
        if name is not None and name != self.loaded:
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._load, name)
            except Exception as err:  # noqa: BLE001 - reported to the front end, which routes elsewhere
                log.error("replica %s cannot load %s: %s: %s", self.id, name, type(err).__name__, err)
                self.loaded = ""
                yield ("load_failed", name, f"{type(err).__name__}: {err}")
                return
            yield ("loaded", name, time.perf_counter() - started)
        async for event in self._run_job(job):
            yield event

    async def _run_job(self, job: Job) -> AsyncIterator[tuple]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        ctx = JobContext(
            lambda step, total, preview: loop.call_soon_threadsafe(
                events.put_nowait, ("progress", step, total, preview)
            )
        )
        started = time.perf_counter()
        task = asyncio.ensure_future(asyncio.to_thread(self.router.run, job, ctx))
        try:
            while not task.done():
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            while not events.empty():
                yield events.get_nowait()
        except asyncio.CancelledError:  # the front end cancelled the stream: stop the engine, then end
            ctx.cancel()
            self.cancelled += 1
            log.info("replica %s: job %s cancelled", self.id, job.id)
            await asyncio.wait({task})
            raise
        self.jobs += 1
        try:
            layers: List = task.result()
        except JobCancelled:
            yield ("cancelled",)
        except ProtocolError as err:
            yield ("error", err.code, err.message, err.field)
        except Exception as err:  # every failure reaches the client as a message
            if devices.is_out_of_memory(err):
                yield (
                    "error",
                    OUT_OF_MEMORY,
                    f"out of memory on replica {self.id} while running the job: {err}. "
                    "Try a smaller selection, a smaller batch or a smaller model",
                    None,
                )
            else:
                log.exception("replica %s: job %s failed", self.id, job.id)
                yield ("error", INTERNAL, f"internal error on replica {self.id}: {type(err).__name__}: {err}", None)
        else:
            yield ("done", layers, time.perf_counter() - started, ctx.text)
