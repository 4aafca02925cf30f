"""``CheckpointEngine``: what every diffusers checkpoint engine does the same way, whatever its family.

- One checkpoint is kept warm: ``checkpoint`` loads the job's (freeing another one first), ``warm_up`` loads one
  before any job needs it, ``unload`` frees it. A specialisation says how a checkpoint loads (``load``) and what else
  goes with it (``forget``).
- ``run`` checks the job (``check``), then runs the specialisation's ``recipe`` under the engine's lock. A job that
  runs out of device memory is run again with the next of the engine's ``memory_fallbacks`` turned on (they stay on
  while the checkpoint is loaded, and each result layer says so in ``info["memory_fallbacks"]``); when none is left
  it fails with ``out_of_memory`` and the engine's advice.
- ``step_callback`` makes a pipeline's ``callback_on_step_end``: progress (step of total), optional previews, and
  cancellation within one step; ``to_uint8`` turns a pipeline's float images into pixels, refusing NaNs by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, OUT_OF_MEMORY, UNSUPPORTED, ProtocolError

from .. import device as devices
from ..core import Engine, Job, JobContext, Layer
from ..models.registry import ModelEntry, ModelRegistry, arch_name

log = logging.getLogger("server.checkpoint")

# (pipe, step, timestep, tensors) -> tensors: what diffusers calls after each step
StepCallback = Callable[[object, int, object, dict], dict]


@dataclasses.dataclass(kw_only=True)
class LoadedCheckpoint:
    """A checkpoint in memory: its pipeline, LoRAs/embeddings, the pipelines made from it per kind of job, and the
    memory fallbacks turned on for it."""

    entry: ModelEntry
    pipe: object
    adapters: object
    variants: Dict[object, object] = dataclasses.field(default_factory=dict)
    memory_fallbacks: List[str] = dataclasses.field(default_factory=list)


# where a mode that only some checkpoints run runs instead (the refusal of another engine names it)
MODE_HOMES = {"decompose": "decompose (a picture into layers) needs a Qwen-Image-Layered checkpoint: pick one"}


class CheckpointEngine(Engine):
    """The base of the diffusers engines; ``loads`` counts checkpoint loads (a mode switch never adds one).

    A specialisation fills in: ``load`` (a checkpoint's pipeline, placed on the device), ``recipe`` (one job, as
    numbered steps), and where it differs: ``runs`` (the checkpoints it takes), ``check`` (refusals before anything
    loads), ``forget`` (what goes with an unloaded checkpoint), ``memory_fallbacks`` with ``apply_memory_fallback``,
    and ``memory_advice``.
    """

    #: The dtype role of ``device.choose``: UNet engines and DiT engines are measured apart.
    dtype_role: str = devices.UNET
    #: What turns on, in this order, each time a job runs out of device memory (then it runs again).
    memory_fallbacks: Sequence[str] = ()
    #: What the ``out_of_memory`` error advises when nothing is left to turn on.
    memory_advice: str = "try a smaller batch, a smaller selection or a lower precision"
    #: The ``model_not_found`` message when a job names no checkpoint and no default one fits this engine.
    no_default: str = "no usable checkpoint is installed: put one in the models folder's checkpoints/"

    def __init__(self, registry: ModelRegistry, device: Optional[str] = None, dtype: Optional[str] = None) -> None:
        self.registry = registry
        self.device, self.dtype = devices.choose(device, dtype, self.dtype_role)
        self.dtype_asked = dtype is not None
        self.loaded: Optional[LoadedCheckpoint] = None
        self.loads = 0
        self._lock = threading.Lock()
        self.job_scope = contextlib.ExitStack()  # what a job changes on the loaded modules, undone when it ends

    def device_description(self) -> str:
        return devices.describe(self.device, self.dtype)

    def runs(self, entry: ModelEntry) -> bool:
        """Whether this engine runs ``entry`` (a checkpoint of the registry)."""
        return True

    def models(self) -> List[dict]:
        return [e.listing() for e in self.registry.entries("checkpoint") if self.runs(e)]

    # --- the checkpoint kept warm ---

    def checkpoint_entry(self, name: str) -> ModelEntry:
        """The job's checkpoint, or the default one."""
        if name:
            return self.registry.get(name, "checkpoint")
        entry = self.registry.default_checkpoint()
        if entry is None or not self.runs(entry):
            raise ProtocolError(MODEL_NOT_FOUND, self.no_default, field="model")
        return entry

    def checkpoint(self, entry: ModelEntry) -> LoadedCheckpoint:
        """The loaded pipeline of ``entry``; a different checkpoint is freed first."""
        if self.loaded is not None and self.loaded.entry.path == entry.path:
            return self.loaded
        self.unload()
        started = time.perf_counter()
        loaded = self.load(entry)
        loaded.pipe.set_progress_bar_config(disable=True)
        self.loads += 1
        elapsed = time.perf_counter() - started
        log.info("loaded %s (%s) in %.1f s%s", entry.name, arch_name(entry.arch), elapsed, self.load_note(loaded))
        self.loaded = loaded
        return loaded

    def load(self, entry: ModelEntry) -> LoadedCheckpoint:
        """Load ``entry``'s pipeline onto the device (no other checkpoint is loaded when this is called)."""
        raise NotImplementedError

    def load_note(self, loaded: LoadedCheckpoint) -> str:
        """What the load log line adds after the time (where the weights went, which dtype and why)."""
        return ""

    def warm_up(self, name: str = "") -> None:
        """Load a checkpoint (the default one without a name) before any job needs it."""
        with self._lock:
            self.checkpoint(self.checkpoint_entry(name))

    def unload(self) -> None:
        """Free the loaded checkpoint and what goes with it."""
        if self.loaded is None:
            return
        self.loaded = None
        self.forget()
        gc.collect()
        devices.empty_cache(self.device)

    def forget(self) -> None:
        """Drop what was kept for the checkpoint being unloaded (other modules, caches)."""

    # --- jobs ---

    def mode_hint(self, job: Job) -> str:
        """What the refusal of a mode this engine does not do adds (where that mode runs instead)."""
        return MODE_HOMES.get(job.mode, "")

    def check(self, job: Job) -> None:
        """Refuse, by name, what this engine cannot do with ``job`` before anything loads (its mode is checked)."""

    def recipe(self, job: Job, ctx: JobContext) -> List[Layer]:
        """One job, as numbered steps: ProtocolError for what cannot be done, JobCancelled when cancelled."""
        raise NotImplementedError

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        """Run one job; ProtocolError for what cannot be done, JobCancelled when cancelled."""
        if job.mode not in self.modes:
            raise self.refuse_mode(job, self.mode_hint(job))
        self.check(job)
        with self._lock, contextlib.ExitStack() as self.job_scope:
            layers = self._with_memory_fallbacks(job, ctx)
        if self.loaded is not None and self.loaded.memory_fallbacks:
            for layer in layers:
                layer.info["memory_fallbacks"] = list(self.loaded.memory_fallbacks)
        return layers

    def _with_memory_fallbacks(self, job: Job, ctx: JobContext) -> List[Layer]:
        while True:
            try:
                return self.recipe(job, ctx)
            except MemoryError as err:
                hint = str(err) or "try a smaller selection or batch"
                raise ProtocolError(OUT_OF_MEMORY, f"the server ran out of memory: {hint}") from err
            except ProtocolError:
                raise
            except Exception as err:
                if not devices.is_out_of_memory(err):
                    raise
                devices.empty_cache(self.device)
                fallback = self._next_memory_fallback()
                if fallback is None:
                    raise self._out_of_memory() from err
                log.warning("out of memory on %s: running the job again with %s", self.device, fallback)

    def _next_memory_fallback(self) -> Optional[str]:
        """Turn on the next memory fallback for the loaded checkpoint; its name, or None when none is left."""
        loaded = self.loaded
        if loaded is None:
            return None
        for fallback in self.memory_fallbacks:
            if fallback not in loaded.memory_fallbacks and self.apply_memory_fallback(loaded, fallback):
                loaded.memory_fallbacks.append(fallback)
                return fallback
        return None

    def apply_memory_fallback(self, loaded: LoadedCheckpoint, fallback: str) -> bool:
        """Turn ``fallback`` on for ``loaded``; False when it does not apply here (it is skipped)."""
        return False

    def _out_of_memory(self) -> ProtocolError:
        tried = ", ".join(self.loaded.memory_fallbacks) if self.loaded is not None else ""
        running = f" running '{self.loaded.entry.name}'" if self.loaded is not None else ""
        return ProtocolError(
            OUT_OF_MEMORY,
            f"the {self.device.type.upper()} device ran out of memory{running}"
            + (f" even with {tried}" if tried else "")
            + f": {self.memory_advice}",
        )

    # --- what every recipe does the same way ---

    def step_callback(
        self,
        job: Job,
        ctx: JobContext,
        position: Callable[[object, int], Tuple[int, int]],
        preview: Optional[Callable[[object], Optional[np.ndarray]]] = None,
        before: Optional[Callable[[object, int, dict], None]] = None,
    ) -> StepCallback:
        """A pipeline's ``callback_on_step_end``: ``before(pipe, step, tensors)`` first (it may change the tensors,
        e.g. the latents), then progress ``position(pipe, step)`` = (step, total) with ``preview(latents)`` when the
        job asked for previews; a cancelled job stops here (JobCancelled), within one step."""

        def on_step(pipe, step: int, timestep, tensors: dict) -> dict:
            if before is not None:
                before(pipe, step, tensors)
            shown = None
            if job.previews and preview is not None and tensors.get("latents") is not None:
                shown = preview(tensors["latents"])
            ctx.progress(*position(pipe, step), shown)
            return tensors

        return on_step

    def to_uint8(self, images, entry: ModelEntry, precision: object = None) -> List[np.ndarray]:
        """A pipeline's float images (0..1) as uint8 pixels; NaNs (weights that do not fit the architecture or the
        ``precision`` they ran in, the engine's by default) are refused by name."""
        if not np.isfinite(images).all():
            raise ProtocolError(
                UNSUPPORTED,
                f"checkpoint '{entry.name}' produced invalid numbers (NaN): its weights do not fit its "
                f"{arch_name(entry.arch)} architecture or precision {precision or self.dtype}",
            )
        return [np.clip(np.rint(img * 255), 0, 255).astype(np.uint8) for img in images]
