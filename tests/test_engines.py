"""Engines behind the router: the classical engine's bounded cancel latency on the worst input, grow/feather at large
radii, and control layers refused (naming the field) by engines that cannot use them, over a real server."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import List, Optional

import cv2
import numpy as np
import pytest

from protocol import Limits
from protocol.client import Client, JobFailed
from server import imageops
from server.classical import ClassicalEngine
from server.core import Job, JobCancelled, JobContext, Params
from server.preprocess import PreprocessEngine

# Each full-size step of the worst input would fault its pages in afresh (a third of its CPU time here).
pytestmark = pytest.mark.usefixtures("freed_memory_kept")

# The largest image a default server accepts, and the largest grow and feather the protocol allows.
SIDE = int(Limits().max_pixels ** 0.5)
MAX_RADIUS = 1024
# CPU seconds of work after a cancel. Generous: each step between two cancellation checks takes well under a CPU second.
CANCEL_BOUND_S = 2.0


def worst_image() -> np.ndarray:
    """Opaque noise at the maximum size, read-only like every image a server receives."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIDE, SIDE, 4), np.uint8)
    image[..., 3] = 255
    image.flags.writeable = False
    return image


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    """``worst_image``, made once for the module's tests (each of its 256 MB of noise costs about a CPU second)."""
    return worst_image()


def worst_classical_job(mode: str = "inpaint", fill: str = "telea", image: Optional[np.ndarray] = None) -> Job:
    """Noise at the maximum size, 8192 x 8192 (``image``, else ``worst_image``), a tiny selection grown and feathered
    by the maximum radius: the hole to fill covers about a twentieth of the image (the most any grow can make of
    it)."""
    image = worst_image() if image is None else image
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[SIDE // 2 - 8 : SIDE // 2 + 8, SIDE // 2 - 8 : SIDE // 2 + 8] = 255
    return Job(
        id="worst",
        mode=mode,
        model="classical",
        image=image,
        mask=mask,
        params=Params(grow=MAX_RADIUS, feather=MAX_RADIUS, fill=fill),
    )


# (progress step after which the cancel comes, seconds later): inside grow, inside feather, inside the fill, inside the
# composite; the cancel comes from another thread, as the server's does, while OpenCV is busy.
CANCEL_POINTS = ((0, 0.05), (0, 0.4), (1, 0.05), (1, 0.6), (2, 0.01))


def cancel_latency(job: Job, after_step: int, delay: float) -> Optional[float]:
    """CPU seconds the process spent from a cancel (``delay`` s after progress step ``after_step``) to the engine
    raising JobCancelled — the work done after the cancel, which other load on the machine does not inflate as it
    does wall-clock time; None when the job finished before the cancel came."""
    asked: List[float] = []

    def cancel() -> None:
        asked.append(time.process_time())
        ctx.cancel()

    def report(step, total, preview):
        if step == after_step:
            threading.Timer(delay, cancel).start()

    ctx = JobContext(report)
    try:
        ClassicalEngine().run(job, ctx)
    except JobCancelled:
        return time.process_time() - asked[0]
    time.sleep(delay + 0.1)  # let the timer fire before the next run
    return None


@pytest.mark.parametrize("fill", ["telea", "patch"])
def test_classical_engine_stops_soon_after_a_cancel_at_any_point_of_the_worst_input(noise, fill):
    job = worst_classical_job(fill=fill, image=noise)
    latencies = {point: cancel_latency(job, *point) for point in CANCEL_POINTS}
    stopped = {point: t for point, t in latencies.items() if t is not None}
    assert len(stopped) >= 3, f"most cancels must land while the job runs: {latencies}"
    assert max(stopped.values()) < CANCEL_BOUND_S, f"latency (CPU s) per (step, delay): {latencies}"


@pytest.mark.parametrize("fill", ["telea", "patch"])
def test_classical_engine_on_the_worst_input_finishes_with_the_hole_filled(noise, fill):
    job = worst_classical_job(fill=fill, image=noise)
    (layer,) = ClassicalEngine().run(job, JobContext())
    alpha = layer.rgba[..., 3]
    assert layer.rgba.shape == (SIDE, SIDE, 4)
    assert alpha[SIDE // 2, SIDE // 2] == 255 and alpha[0, 0] == 0
    # Outside the hole the image exactly (compared in place: picking those pixels out of 64 M copied them twice).
    changed = (layer.rgba[..., :3] != job.image[..., :3]).any(axis=-1)
    assert not (changed & (alpha == 0)).any()


def test_preprocess_engine_stops_soon_after_a_cancel_on_the_largest_image():
    """Scribble of 4096 x 4096 noise is one OpenCV-heavy call of seconds; the cancel does not wait for it."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (SIDE, SIDE, 4), np.uint8)
    job = Job(id="scribble", mode="preprocess", image=image, params=Params(preprocessor="scribble"))
    asked: List[float] = []

    def cancel() -> None:
        asked.append(time.perf_counter())
        ctx.cancel()

    ctx = JobContext(lambda step, total, preview: step == 0 and threading.Timer(0.05, cancel).start())
    with pytest.raises(JobCancelled):
        PreprocessEngine(None).run(job, ctx)
    assert time.perf_counter() - asked[0] < CANCEL_BOUND_S


def exact_disc_dilation(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary dilation by a disc, exactly: every pixel within ``radius`` of a set pixel."""
    distance = cv2.distanceTransform(np.where(mask > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance <= radius


@pytest.mark.parametrize("radius", [5, 24, 40, 300, 1024])
def test_grow_covers_the_disc_and_overshoots_by_at_most_four_blocks(radius):
    mask = np.zeros((1200, 1500), np.uint8)
    mask[500:540, 600:700] = 255
    mask[100, 1400] = 255
    grown = imageops.grow_mask(mask, radius) > 0
    assert (grown >= exact_disc_dilation(mask, radius - 1)).all()  # -1: OpenCV's disc is a rasterised one
    overshoot = 1 if radius <= imageops.FINE_RADIUS else 4 * imageops._reduction(radius) + 1
    assert not (grown & ~exact_disc_dilation(mask, radius + overshoot)).any()


@pytest.mark.parametrize("radius", [6, 200])
def test_feather_stays_inside_the_mask_and_solid_deep_inside(radius):
    mask = np.zeros((900, 1000), np.uint8)
    cv2.circle(mask, (500, 450), 420, 255, -1)
    soft = imageops.feather_mask(mask, radius)
    assert (soft <= mask).all()
    deep = ~exact_disc_dilation(mask == 0, radius + 4 * imageops._reduction(radius) + 1)
    assert (soft[deep] == 255).all()
    ring = exact_disc_dilation(mask == 0, radius / 4) & (mask > 0)
    assert 0 < soft[ring].mean() < 255  # the edge is soft


# --- controls on engines that cannot use them, over a real server ------------------------------------------------------


def payload(arr: np.ndarray, fmt: str) -> dict:
    return {"width": arr.shape[1], "height": arr.shape[0], "format": fmt, "data": np.ascontiguousarray(arr).tobytes()}


@pytest.mark.parametrize(
    "mode, model, named, field",
    [
        ("inpaint", "classical", "", "controls"),
        ("inpaint", "classical", "my-canny", "controls[0].model"),
        ("inpaint", "", "my-canny", "controls[0].model"),  # no checkpoint installed: the classical engine would run it
        ("upscale", "", "", "controls"),
        ("preprocess", "", "", "controls"),
    ],
)
def test_controls_on_an_engine_that_cannot_use_them_are_refused_naming_the_field(
    start_server, mode, model, named, field
):
    img = np.full((32, 32, 4), 200, np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    control = {"type": "canny", "image": payload(img, "rgba8"), "model": named}
    job = {
        "mode": mode,
        "model": model,
        "image": payload(img, "rgba8"),
        "mask": payload(mask, "gray8"),
        "controls": [control],
        "params": {"preprocessor": "canny"},
    }
    server = start_server()
    with Client(server.url, "test") as client:
        with pytest.raises(JobFailed) as err:
            client.run(job, timeout=60)
        assert err.value.code == "unsupported" and err.value.field == field
        assert "control" in str(err.value).lower()
        del job["controls"]  # the same job without controls runs
        assert client.run(job, timeout=60).layers


def test_interruptible_wait_returns_the_value_or_stops_at_a_cancel():
    ctx = JobContext()
    assert ctx.interruptible(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        ctx.interruptible(lambda: 1 / 0)
    release = threading.Event()
    threading.Timer(0.1, ctx.cancel).start()
    with pytest.raises(JobCancelled):
        ctx.interruptible(release.wait, 60)  # would block a minute; the cancel ends the wait
    release.set()


class _Pixels:
    """Stands for a job's image (weak-referenceable)."""


def test_interruptible_calls_let_go_of_what_they_used_without_the_garbage_collector():
    """A failed call, and an abandoned one that ends with an error, leave no reference cycle holding their frames
    (and the arrays those hold, such as a request image mapped from a shared file)."""

    def fail(pixels: _Pixels, gate: threading.Event) -> None:
        gate.wait(60)
        raise ValueError("failed with the pixels in its frame")

    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        ctx, pixels, gate = JobContext(), _Pixels(), threading.Event()
        gate.set()
        with pytest.raises(ValueError):
            ctx.interruptible(fail, pixels, gate)
        gone = weakref.ref(pixels)
        del pixels
        assert gone() is None
        ctx, pixels, gate = JobContext(), _Pixels(), threading.Event()
        threading.Timer(0.1, ctx.cancel).start()
        with pytest.raises(JobCancelled):
            ctx.interruptible(fail, pixels, gate)
        gone = weakref.ref(pixels)
        del pixels
        gate.set()  # the abandoned call ends, with its error
        deadline = time.monotonic() + 10
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gone() is None
    finally:
        if gc_was_on:
            gc.enable()
