"""Picks the engine for each job: built-in classical, diffusers, upscale, preprocess (peers behind ``core.Engine``).

The router owns the model registry and the engines; each engine is made on first use (making the diffusers engine
imports diffusers but loads no model). It also wires the one cross-engine service: upscale-and-refine runs img2img
tiles on the diffusers engine through a ``refine`` function handed to the upscale engine.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from protocol.errors import UNSUPPORTED, ProtocolError
from protocol.messages import CAPTION_STYLES, CONTROL_TYPES, MODES, REFERENCE_TYPES, TILEABLE_MODES

from . import batches, calibration, inpaintplan, stylejob, tuning
from . import device as devices
from .classical import NAME as CLASSICAL, ClassicalEngine
from .config import ServerConfig
from .core import Control, Engine, Job, JobContext, Layer
from .models import klein
from .models.ipadapter import REFERENCE_FAMILIES
from .models.qwen import QWEN_EDIT_PLUS
from .models.redux import REDUX_FAMILIES, REDUX_TYPES
from .diffusion.stepcache import FAMILIES as FAST_FAMILIES
from .models.registry import ModelRegistry, arch_name
from .offers import REGION_FAMILIES
from .styles import StyleStore

log = logging.getLogger("paintbridge.router")

DIFFUSERS = "diffusers"
FAMILIES = "families"  # Flux.1 and SD3/SD3.5 (server/families)
UPSCALE = "upscale"
PREPROCESS = "preprocess"
CAPTION = "caption"
TILE_CONTROL_STRENGTH = 0.6  # guides refine tiles without freezing them

RefineFn = Callable[[np.ndarray, float, int], np.ndarray]


class Router:
    """Owns the model registry and the engines; runs each job on the engine that does its mode and model."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = ModelRegistry(config.model_dirs, allow_pickle=config.allow_pickle)
        self.styles = StyleStore(config.styles_dir)
        self._engines: Dict[str, Engine] = {CLASSICAL: ClassicalEngine(self.registry, lambda: self.device)}
        self._lock = threading.Lock()
        self._device: Optional[str] = None
        self.prefills = inpaintplan.prefill_cache()  # inpaint pre-fills, for jobs sent again

    # --- engines, made on first use ---

    @property
    def device(self) -> str:
        """The torch device every engine runs on (``--device``, else the best available)."""
        if self._device is None:
            self._device = str(devices.choose(self.config.device, self.config.dtype)[0])
        return self._device

    def engine(self, name: str) -> Engine:
        """The engine called ``name`` (classical, diffusers, upscale, preprocess), made on first use."""
        with self._lock:
            if name not in self._engines:
                self._engines[name] = self._make(name)
            return self._engines[name]

    def _make(self, name: str) -> Engine:
        if name != CLASSICAL:  # engines that run networks: malloc's defaults suit their tensors (tuning.py)
            tuning.give_back_freed_memory()
        if name == DIFFUSERS:
            from .diffusion.engine import DiffusionEngine

            engine = DiffusionEngine(self.registry, device=self.config.device, dtype=self.config.dtype)
            engine.pixel_upscaler = self._upscale_pixels  # hires fix with an upscale model
            return engine
        if name == FAMILIES:
            from .families.engine import FamilyEngine

            return FamilyEngine(self.registry, device=self.config.device, dtype=self.config.dtype)
        if name == UPSCALE:
            from .upscale import UpscaleEngine

            return UpscaleEngine(self.registry, self._refiner, device=self.device)
        if name == PREPROCESS:
            from .preprocess import PreprocessEngine

            return PreprocessEngine(self.registry, device=self.device)
        if name == CAPTION:
            from .caption import CaptionEngine

            return CaptionEngine(self.registry, device=self.device)
        raise KeyError(name)

    @property
    def classical(self) -> ClassicalEngine:
        return self._engines[CLASSICAL]

    @property
    def diffusion(self):
        """The diffusers engine."""
        return self.engine(DIFFUSERS)

    # --- what the server announces ---

    def device_description(self) -> str:
        """What diffusion jobs run on; before the engine exists, the planned device (torch not imported)."""
        if DIFFUSERS in self._engines:
            return self._engines[DIFFUSERS].device_description()
        return devices.describe_plan(self.config.device, self.config.dtype)

    def calibrate(self) -> None:
        """Before listening: measure this machine's dtypes once (in a child process, so torch stays out of this one
        until a job needs it), unless ``--dtype`` decides or a calibration is cached (``--recalibrate`` measures
        again)."""
        if self.config.dtype:
            return
        kind, _ = devices.plan(self.config.device)
        if self.config.recalibrate or calibration.load(calibration.key(calibration.accelerator(kind))) is None:
            result = calibration.calibrate_in_child(kind, again=self.config.recalibrate)
            if result is not None:
                log.info("dtype calibration:\n%s", calibration.table(result))

    def dtype_report(self) -> dict:
        """What ``welcome.dtypes`` says: the dtype per model family and where it came from (``--dtype``, or the
        calibration with its measured GFLOPS), without importing torch."""
        kind, _ = devices.plan(self.config.device)
        if self.config.dtype:
            return {
                "source": "override",
                "device": kind,
                "chosen": {family: self.config.dtype for family in calibration.FAMILIES},
            }
        result = calibration.load(calibration.key(calibration.accelerator(kind)))
        if result is None:
            chosen, why = calibration.choose({}, kind)
            return {"source": "rule", "device": kind, "chosen": chosen, "why": why}
        return {
            "source": "measured",
            "device": kind,
            "chosen": result["chosen"],
            "why": result["why"],
            "measured": result["measured"],
            "unit": "GFLOPS",
            "seconds": result["seconds"],
            "when": result.get("when", ""),
            "complete": result.get("complete", True),
        }

    def checkpoint_engine(self, entry) -> Engine:
        """The engine that runs a checkpoint: by its family (Flux/SD3 on their own engine, SD1.5/SDXL on diffusers);
        the other one frees its model first, so two never sit in memory at once."""
        from .families.specs import FAMILIES as TRANSFORMER_FAMILIES

        name, other = (FAMILIES, DIFFUSERS) if entry.arch in TRANSFORMER_FAMILIES else (DIFFUSERS, FAMILIES)
        with self._lock:
            idle = self._engines.get(other)
        if idle is not None:
            idle.unload()
        return self.engine(name)

    def preload(self) -> None:
        """Load the default checkpoint now (called in a background thread at start); failures are only logged,
        the first job that needs the model reports them."""
        entry = self.registry.default_checkpoint()
        if entry is None:
            return
        try:
            self.checkpoint_engine(entry).warm_up(entry.name)
        except Exception as err:  # noqa: BLE001 - a job will meet the same problem and report it
            log.warning("could not preload %s: %s", entry.name, err)

    def models(self) -> List[dict]:
        """The built-in engine followed by every installed model, then the detailer's detectors."""
        from .detect import listing as detectors

        return self.classical.models() + self.registry.listing() + detectors(self.registry.dirs)

    def rescan(self) -> None:
        """Look at the model folders again (a user may have added files)."""
        self.registry.scan()

    def capabilities(self) -> dict:
        from . import offers
        from .detect import installed_targets
        from .diffusion import samplers
        from .preprocess import available_preprocessors

        return {
            "modes": list(MODES),
            **samplers.capabilities(),  # samplers, schedulers, sampler_schedules
            "vaes": [e.name for e in self.registry.entries("vae") if e.problem is None],
            "refiners": [e.name for e in self.registry.entries("refiner") if e.problem is None],
            "control_types": list(CONTROL_TYPES),
            "engines": [CLASSICAL, DIFFUSERS, FAMILIES],
            "previews": True,
            "preprocessors": available_preprocessors(self.registry),
            # reference images
            # IP-Adapter (SD1.5, SDXL), Redux (Flux.1), pictures Flux.2 Klein sees beside the latents,
            # Qwen-Image-Edit Plus (more pictures, in mode edit)
            "references": list(REFERENCE_FAMILIES + REDUX_FAMILIES) + [klein.KLEIN, QWEN_EDIT_PLUS],
            "reference_types": list(REFERENCE_TYPES),
            "reference_types_by_family": {
                **{f: list(REFERENCE_TYPES) for f in REFERENCE_FAMILIES},
                **{f: list(REDUX_TYPES) for f in REDUX_FAMILIES},
                klein.KLEIN: list(klein.REFERENCE_TYPES),
                QWEN_EDIT_PLUS: ["content"],
            },
            "regions": list(REGION_FAMILIES),  # regions: the families whose checkpoints take them
            "detail_targets": installed_targets(self.registry.dirs),  # what the detailer's detectors can find
            "tileable": list(TILEABLE_MODES),  # seamless textures: the modes that take params.tileable
            "caption_styles": list(CAPTION_STYLES),
            "captioners": [e.name for e in self.registry.entries("captioner") if e.problem is None],
            "speed_levels": {"quality": ["all"], "fast": list(FAST_FAMILIES)},
            "families": offers.families(self.registry),  # per checkpoint family: what its jobs can use
            "default_checkpoint": getattr(self.registry.default_checkpoint(), "name", ""),
            "styles": True,
        }

    # --- jobs ---

    def plan(self, job: Job, ctx: JobContext) -> Tuple[Job, Dict[str, dict]]:
        """The job as the engine gets it: its style applied, then its inpaint method chosen (the one place each
        happens), and what each did for the result layers' ``info``."""
        notes: Dict[str, dict] = {}
        if job.style:
            job, notes["style"] = stylejob.apply_style(job, self.styles.get(job.style), self.registry)
        job = stylejob.fill_unset(job)
        entry = stylejob.checkpoint_of(job, self.registry)
        if entry is not None and entry.problem is None:
            job, inpaint = inpaintplan.plan(job, entry, self.registry, lambda: self.device, ctx.check, self.prefills)
            if inpaint is not None:
                notes["inpaint"] = inpaint
        return job, notes

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        """Run a job on the engine that does its mode and model, after ``plan``."""
        job, notes = self.plan(job, ctx)
        layers = self._run(job, ctx)
        for layer in layers:
            layer.info.update(notes)
        return layers

    def _run(self, job: Job, ctx: JobContext) -> List[Layer]:
        engine = self.engine_for(job)
        if job.controls and not engine.uses_controls:
            raise engine.refuse_controls(job)
        if job.references and not engine.reference_families:  # reference images
            raise engine.refuse_references(job, self._family_of(job))
        if job.regions:  # regions
            self._check_regions(job, engine)
        if job.params.transparent and engine.name != DIFFUSERS:
            family = self._family_of(job)
            raise ProtocolError(
                UNSUPPORTED,
                f"a transparent layer needs an SD1.5 or SDXL checkpoint (LayerDiffuse); "
                f"{family + ' models' if family else 'the ' + engine.name + ' engine'} cannot make one",
                field="params.transparent",
            )
        if job.params.speed != "quality":
            self._check_speed(job, engine)
        return batches.run_counted(engine.run, job, ctx)

    def _family_of(self, job: Job) -> str:
        """The human name of the job's checkpoint family ("Flux.1"), or "" when it runs on no checkpoint."""
        if job.model == CLASSICAL or job.mode in (UPSCALE, PREPROCESS, CAPTION):
            return ""
        entry = self.registry.find(job.model, "checkpoint") if job.model else self.registry.default_checkpoint()
        return arch_name(entry.arch) if entry is not None else ""

    def _check_regions(self, job: Job, engine: Engine) -> None:
        """regions: refuse a job with regions unless its checkpoint's family takes them (the error names
        the family and the model)."""
        takes = list(dict.fromkeys(arch_name(a) for a in REGION_FAMILIES))
        if engine is self.classical or engine.name in (UPSCALE, PREPROCESS, CAPTION):
            raise engine.refuse_regions(job, takes=takes)
        entry = self.registry.get(job.model, "checkpoint") if job.model else self.registry.default_checkpoint()
        if entry is None:
            raise engine.refuse_regions(job, takes=takes)
        if entry.arch not in REGION_FAMILIES:
            raise engine.refuse_regions(job, arch_name(entry.arch), entry.name, takes)

    def _check_speed(self, job: Job, engine: Engine) -> None:
        """Refuse a speed level the job's engine or its checkpoint's family does not offer."""
        families = engine.speed_families.get(job.params.speed, ())
        if not families or engine is self.classical:
            raise engine.refuse_speed(job)
        entry = self.registry.get(job.model, "checkpoint") if job.model else self.registry.default_checkpoint()
        if entry is None or entry.arch not in families:
            raise engine.refuse_speed(job, arch_name(entry.arch) if entry is not None else "")

    def engine_for(self, job: Job) -> Engine:
        """The engine for ``job``; model_not_found / unsupported when none can do it."""
        if job.mode == UPSCALE:
            return self.engine(UPSCALE)
        if job.mode == PREPROCESS:
            return self.engine(PREPROCESS)
        if job.mode == CAPTION:
            return self.engine(CAPTION)
        if job.model == CLASSICAL:
            return self.classical
        if job.model:  # model_not_found names what is installed
            return self.checkpoint_engine(self.registry.get(job.model, "checkpoint"))
        default = self.registry.default_checkpoint()
        if default is not None:
            return self.checkpoint_engine(default)
        if job.mode in self.classical.modes:
            return self.classical
        folders = ", ".join(str(d / "checkpoints") for d in self.config.model_dirs)
        raise ProtocolError(
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
        entry = self.registry.get(job.model, "checkpoint") if job.model else self.registry.default_checkpoint()
        engine = self.checkpoint_engine(entry)
        quiet = ctx.quiet()
        use_tile_control = engine.uses_controls and self._has_tile_controlnet(entry, engine)

        def refine(rgba: np.ndarray, strength: float, seed: int) -> np.ndarray:
            params = dataclasses.replace(job.params, strength=strength, seed=seed, batch=1, tileable=False)
            controls = (
                [Control("tile", rgba[..., :3].copy(), strength=TILE_CONTROL_STRENGTH)] if use_tile_control else []
            )
            tile_job = dataclasses.replace(
                job,
                mode="img2img",
                image=rgba,
                mask=None,
                params=params,
                x=0,
                y=0,
                previews=False,
                controls=controls,
            )
            return engine.run(tile_job, quiet)[0].rgba

        return refine

    def _upscale_pixels(self, rgb: np.ndarray, name: str, width: int, height: int) -> np.ndarray:
        """The hires fix's pixel upscale by the upscale model ``name`` (on the upscale engine's device)."""
        from .upscale import upscale_rgb

        return upscale_rgb(rgb, self.registry.get(name, "upscaler").path, width, height, device=self.device)

    def _has_tile_controlnet(self, checkpoint, engine: Engine) -> bool:
        probe = Control("tile", np.zeros((8, 8, 3), np.uint8))
        try:
            if engine is self._engines.get(FAMILIES):  # Flux.1 / SD3 ControlNets (server/families/controlnets.py)
                from .families.controlnets import select as select_family

                select_family([probe], checkpoint, "img2img", self.registry)
                return True
            from .diffusion.controls import select

            select([probe], checkpoint, self.registry)
        except ProtocolError:
            return False
        return True
