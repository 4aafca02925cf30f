"""The job queue speaks in events (queued, started, progress, finished, failed, cancelled) to each job's owner, and a
client session turns each event into its wire message through ``payloads``."""

from __future__ import annotations

import asyncio
import threading
from typing import List

import numpy as np
import pytest

from protocol import errors
from protocol.errors import ProtocolError
from protocol.images import BGRA8
from protocol.messages import Cancelled, Error, Progress, Queued, Result, Started
from server import events
from server.core import Job, JobContext, Layer, Params
from server.jobs import JobQueue, QueuedJob
from server.sessions import message_of


class Recorder:
    """An owner that keeps every event it hears."""

    def __init__(self) -> None:
        self.events: List[events.Event] = []
        self.final = asyncio.Event()

    async def on_event(self, event: events.Event) -> None:
        self.events.append(event)
        if isinstance(event, events.FINAL):
            self.final.set()


def painted(job: Job, ctx: JobContext) -> List[Layer]:
    """A two-step job: progress with a small preview after each step, then one red layer."""
    for step in (1, 2):
        ctx.progress(step, 2, np.zeros((4, 4, 3), np.uint8))
    ctx.text = "two steps"
    return [Layer("red", np.full((3, 5, 4), (255, 0, 0, 255), np.uint8), 7, 8, seed=3)]


def failing(job: Job, ctx: JobContext) -> List[Layer]:
    if job.id == "refused":
        raise ProtocolError(errors.UNSUPPORTED, "not with this model", field="model")
    raise RuntimeError("a bug")


async def run_jobs(run, *jobs: Job, cancel_running: bool = False) -> List[Recorder]:
    queue = JobQueue(run, max_queue=4)
    owners = [Recorder() for _ in jobs]
    worker = asyncio.ensure_future(queue.worker())
    try:
        for job, owner in zip(jobs, owners):
            await queue.submit(QueuedJob(job, owner))
        if cancel_running:
            while not queue.running:
                await asyncio.sleep(0.01)
            assert await queue.cancel(owners[0], jobs[0].id)
        for owner in owners:
            await asyncio.wait_for(owner.final.wait(), 30)
    finally:
        worker.cancel()
    return owners


def kinds(owner: Recorder) -> List[str]:
    return [type(e).__name__ for e in owner.events]


def test_a_finished_job_is_queued_started_progressed_and_finished_in_order():
    (owner,) = asyncio.run(run_jobs(painted, Job(id="a", mode="generate", previews=True)))
    assert kinds(owner) == ["Queued", "Started", "Progress", "Progress", "Finished"]
    queued, _, first, second, finished = owner.events
    assert queued.position == 0 and (first.step, first.total, second.step) == (1, 2, 2)
    assert first.preview is not None and first.preview.shape == (4, 4, 3)
    assert finished.layers[0].name == "red" and finished.text == "two steps" and finished.seconds >= 0
    assert all(e.item is owner.events[0].item for e in owner.events)


def test_progress_carries_no_preview_unless_the_job_asked():
    (owner,) = asyncio.run(run_jobs(painted, Job(id="a", mode="generate")))
    assert [e.preview for e in owner.events if isinstance(e, events.Progress)] == [None, None]


def test_failures_are_events_with_the_error_the_client_gets():
    refused, bug = asyncio.run(run_jobs(failing, Job(id="refused", mode="generate"), Job(id="bug", mode="generate")))
    assert kinds(refused)[-1] == kinds(bug)[-1] == "Failed"
    err = refused.events[-1].error
    assert (err.code, err.field, err.job_id) == (errors.UNSUPPORTED, "model", "refused")
    err = bug.events[-1].error
    assert err.code == errors.INTERNAL and "RuntimeError: a bug" in err.message and err.job_id == "bug"


def test_cancelling_a_running_job_ends_it_with_a_cancelled_event():
    release = threading.Event()

    def waits(job: Job, ctx: JobContext) -> List[Layer]:
        while not release.wait(0.01):
            ctx.check()
        return []

    try:
        (owner,) = asyncio.run(run_jobs(waits, Job(id="slow", mode="generate"), cancel_running=True))
    finally:
        release.set()
    assert kinds(owner) == ["Queued", "Started", "Cancelled"]


def test_the_queue_builds_each_jobs_context():
    seen = []

    def keeps(job: Job, ctx: JobContext) -> List[Layer]:
        seen.append(ctx)
        ctx.progress(1, 1)
        return []

    (owner,) = asyncio.run(run_jobs(keeps, Job(id="a", mode="generate")))
    assert seen == [owner.events[0].item.ctx] and kinds(owner).count("Progress") == 1


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda item: events.Queued(item, 2), Queued("a", 2)),
        (lambda item: events.Started(item), Started("a")),
        (lambda item: events.Cancelled(item), Cancelled("a")),
        (lambda item: events.Progress(item, 1, 3), Progress("a", 1, 3, None)),
        (
            lambda item: events.Failed(item, ProtocolError(errors.UNSUPPORTED, "no", field="mode", job_id="a")),
            Error(errors.UNSUPPORTED, "no", id="a", field="mode"),
        ),
    ],
)
def test_the_session_turns_each_event_into_its_message(make, expected):
    item = QueuedJob(Job(id="a", mode="generate"), Recorder())
    assert asyncio.run(message_of(make(item))) == expected


def test_a_finished_event_becomes_a_result_in_the_clients_pixel_format_and_a_preview_an_rgba_payload():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    item = QueuedJob(Job(id="a", mode="generate", params=Params(steps=9)), Recorder(), BGRA8)
    result = asyncio.run(message_of(events.Finished(item, [Layer("x", rgba, 1, 2, seed=4)], 0.123456, "words")))
    assert isinstance(result, Result) and result.id == "a" and result.text == "words" and result.elapsed == 0.1235
    assert result.params["steps"] == 9
    (layer,) = result.layers
    assert (layer.x, layer.y, layer.width, layer.height, layer.format, layer.seed) == (1, 2, 3, 2, BGRA8, 4)
    assert bytes(layer.data)[:4] == bytes([0, 0, 200, 255])  # blue, green, red, alpha
    progress = asyncio.run(message_of(events.Progress(item, 1, 2, np.full((2, 2, 3), 9, np.uint8))))
    assert progress.preview.format == "rgba8" and bytes(progress.preview.data)[:4] == bytes([9, 9, 9, 255])


def test_a_held_owner_s_jobs_wait_while_the_others_run_and_it_keeps_its_turn():
    """A client that reads its results slower than they come is held: its next job waits, other clients' go on; once
    released it is next in turn (it has waited longest)."""
    started: List[str] = []

    def records(job: Job, ctx: JobContext) -> List[Layer]:
        started.append(job.id)
        return []

    async def finished(owner: Recorder, count: int) -> None:
        while kinds(owner).count("Finished") < count:
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        queue = JobQueue(records, max_queue=4)
        slow, fast = Recorder(), Recorder()
        worker = asyncio.ensure_future(queue.worker())
        try:
            queue.hold(slow)
            for job_id, owner in (("s1", slow), ("f1", fast), ("f2", fast)):
                await queue.submit(QueuedJob(Job(id=job_id, mode="generate"), owner))
            await asyncio.wait_for(finished(fast, 2), 30)
            assert started == ["f1", "f2"] and kinds(slow) == ["Queued"] and queue.is_held(slow)
            assert [q.id for q in queue.startable()] == [] and [q.id for q in queue.run_order()] == ["s1"]
            await queue.submit(QueuedJob(Job(id="f3", mode="generate"), fast))
            queue.release(slow)
            await asyncio.wait_for(finished(fast, 3), 30)
            await asyncio.wait_for(finished(slow, 1), 30)
        finally:
            worker.cancel()
        assert started == ["f1", "f2", "s1", "f3"]
        assert kinds(slow) == ["Queued", "Started", "Finished"]

    asyncio.run(scenario())
