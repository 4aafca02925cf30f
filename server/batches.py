"""Batch count: a job's ``batch_count`` pipeline calls one after another, ``batch`` images each.

Call ``k`` starts at seed ``first + k * batch``, so every image keeps its own seed and each seed reproduces alone.
Progress covers every call (steps of call ``k`` are reported after those of the calls before it); each layer is named
with its place among all images and its seed, and its ``info`` gives the total.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, List, Optional

import numpy as np

from .core import Job, JobContext, Layer

RunFn = Callable[[Job, JobContext], List[Layer]]


class CallContext(JobContext):
    """The context of call ``index`` of ``count``: shares the job's cancellation, reports progress of all calls."""

    def __init__(self, parent: JobContext, index: int, count: int) -> None:
        super().__init__(None)
        self.cancel_event = parent.cancel_event
        self._parent, self._index, self._count = parent, index, count

    def progress(self, step: int, total: int, preview: Optional[np.ndarray] = None) -> None:
        self._parent.progress(self._index * total + step, self._count * total, preview)


def run_counted(run: RunFn, job: Job, ctx: JobContext) -> List[Layer]:
    """``run(job, ctx)`` ``job.params.batch_count`` times with consecutive seeds; one call when the count is 1."""
    params = job.params
    count = params.batch_count
    if count <= 1:
        return run(job, ctx)
    first = params.seed if params.seed >= 0 else random.randrange(2**32)
    layers: List[Layer] = []
    for k in range(count):
        ctx.check()
        call = dataclasses.replace(
            job, params=dataclasses.replace(params, seed=(first + k * params.batch) % 2**32, batch_count=1)
        )
        layers += run(call, CallContext(ctx, k, count))
    total = len(layers)
    for i, layer in enumerate(layers):
        layer.name = f"{job.mode} {i + 1}/{total} ({layer.seed})"
        layer.info.update(batch=params.batch, batch_count=count, images=total, index=i)
    return layers
