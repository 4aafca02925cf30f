"""Routes each job to the engine that does it: built-in classical, diffusers, preprocessors, upscalers."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, List, Optional

import numpy as np

from protocol.errors import UNSUPPORTED
from protocol.messages import CONTROL_TYPES, MODES, SAMPLERS

from ..config import ServerConfig
from ..models.registry import ModelRegistry
from ..preprocess import available_preprocessors
from .base import Control, EngineError, Job, JobContext, Layer
from .classical import NAME as CLASSICAL, ClassicalEngine

log = logging.getLogger("paintbridge.engines")

TILE_CONTROL_STRENGTH = 0.6  # guides refine tiles without freezing them

RefineFn = Callable[[np.ndarray, float, int], np.ndarray]


class EngineHub:
    """Owns the model registry and the engines; the diffusion engine is created on first use."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = ModelRegistry(config.model_dirs, allow_pickle=config.allow_pickle)
        self.classical = ClassicalEngine()
        self._diffusion = None
        self._lock = threading.Lock()

    @property
    def diffusion(self):
        """The diffusers engine (imported and created on first use; creating it loads no model)."""
        with self._lock:
            if self._diffusion is None:
                from ..diffusion.engine import DiffusionEngine

                self._diffusion = DiffusionEngine(self.registry, device=self.config.device, dtype=self.config.dtype)
            return self._diffusion

    def device_description(self) -> str:
        """What diffusion jobs run on; before the engine exists, the planned device (torch not imported)."""
        if self._diffusion is not None:
            return self._diffusion.device_description()
        from ..diffusion.device import describe_plan

        return describe_plan(self.config.device, self.config.dtype)

    def preload(self) -> None:
        """Load the default checkpoint now (called in a background thread at start); failures are only logged,
        the first job that needs the model reports them."""
        entry = self.registry.default_checkpoint()
        if entry is None:
            return
        try:
            self.diffusion.warm_up(entry.name)
        except Exception as err:  # noqa: BLE001 - a job will meet the same problem and report it
            log.warning("could not preload %s: %s", entry.name, err)

    def models(self) -> List[dict]:
        """The built-in engine followed by every installed model."""
        return self.classical.models() + self.registry.listing()

    def rescan(self) -> None:
        """Look at the model folders again (a user may have added files)."""
        self.registry.scan()

    def capabilities(self) -> dict:
        return {
            "modes": list(MODES),
            "samplers": list(SAMPLERS),
            "control_types": list(CONTROL_TYPES),
            "engines": [CLASSICAL, "diffusers"],
            "previews": True,
            "preprocessors": available_preprocessors(self.registry),
        }

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        """Run a job on the engine that does its mode and model."""
        if job.mode == "preprocess":
            from ..preprocess import run_preprocess

            return run_preprocess(job, ctx, self.registry, str(self.diffusion.device))
        if job.mode == "upscale":
            from ..upscale import run_upscale

            return run_upscale(job, ctx, self.registry, self._refiner(job, ctx), device=self.config.device)
        return self._engine_for(job).run(job, ctx)

    def _engine_for(self, job: Job):
        if job.model == CLASSICAL:
            return self.classical
        if job.model:
            self.registry.get(job.model, "checkpoint")  # model_not_found names what is installed
            return self.diffusion
        if self.registry.default_checkpoint() is not None:
            return self.diffusion
        if job.mode in ("inpaint", "outpaint"):
            return self.classical
        folders = ", ".join(str(d / "checkpoints") for d in self.config.model_dirs)
        raise EngineError(
            UNSUPPORTED,
            f"mode '{job.mode}' needs a diffusion checkpoint and none is installed: put a .safetensors checkpoint "
            f"in {folders} (the built-in engine does inpaint, outpaint and upscale)",
            field="model",
        )

    def _refiner(self, job: Job, ctx: JobContext) -> Optional[RefineFn]:
        """img2img of one tile with the job's model and prompt, for upscale-and-refine; None without a checkpoint.

        When a tile ControlNet of the checkpoint's architecture is installed (a union one counts), each tile is
        guided by itself through it, which keeps the structure at higher refine strengths.
        """
        if job.model == CLASSICAL or (not job.model and self.registry.default_checkpoint() is None):
            return None
        engine = self.diffusion
        quiet = ctx.quiet()
        use_tile_control = self._has_tile_controlnet(engine.checkpoint_entry(job.model))

        def refine(rgba: np.ndarray, strength: float, seed: int) -> np.ndarray:
            params = dict(job.params, strength=strength, seed=seed, batch=1)
            controls = [Control("tile", rgba[..., :3].copy(), strength=TILE_CONTROL_STRENGTH)] if use_tile_control else []
            tile_job = dataclasses.replace(
                job, mode="img2img", image=rgba, mask=None, params=params, x=0, y=0, previews=False, controls=controls,
            )
            return engine.run(tile_job, quiet)[0].rgba

        return refine

    def _has_tile_controlnet(self, checkpoint) -> bool:
        from ..diffusion.controls import select

        probe = Control("tile", np.zeros((8, 8, 3), np.uint8))
        try:
            select([probe], checkpoint, self.registry)
        except EngineError:
            return False
        return True
