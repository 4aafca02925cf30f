"""One SD job on its way through ``DiffusionEngine.recipe``: the loaded checkpoint it runs on, what each numbered step
decided (``Plan``), and what its result layers say of it (``result_info``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import numpy as np

from ..checkpoint.engine import LoadedCheckpoint
from ..core import Job
from ..models import vpred
from ..models.registry import ModelEntry
from . import hires as hires_fix
from . import references as refs
from . import regions, transparency


@dataclasses.dataclass(kw_only=True)
class LoadedUNet(LoadedCheckpoint):
    """An SD1.5/SDXL checkpoint in memory: also the scheduler config it came with, its reference adapters and VAE."""

    scheduler_config: dict
    references: Optional[refs.ReferenceSet] = None  # reference images: IP-Adapters in the UNet
    own_vae: object = None  # the checkpoint's VAE (a job may decode with another one: ``params.vae``)

    def use_vae(self, vae) -> None:
        """Decode and encode with ``vae`` in the pipeline and every mode variant (shared modules)."""
        for pipe in (self.pipe, *self.variants.values()):
            if pipe.vae is not vae:
                pipe.vae = vae


@dataclasses.dataclass
class Plan:
    """One SD job on its way through ``DiffusionEngine.recipe``: what each step decided, read by the steps after it."""

    job: Job
    entry: ModelEntry
    loaded: LoadedUNet
    controls: list  # ControlNet plans (controls.ControlPlan), one per control layer
    references: list  # reference plans (references.ReferencePlan), one per reference image
    # 2. prompts and adapters
    prompt: str = ""
    negative: str = ""
    region_texts: list = dataclasses.field(default_factory=list)
    loras: list = dataclasses.field(default_factory=list)
    embeddings: list = dataclasses.field(default_factory=list)
    preset: Optional[dict] = None  # a few-step model's sampler, steps and CFG
    vae_name: str = ""
    refiner: Any = None  # the SDXL refiner pipeline
    # 3. geometry
    work: Optional[Job] = None  # the job as processed (outpaint: the extended canvas)
    original: Optional[np.ndarray] = None  # the pixels the result is composited over
    hard: Optional[np.ndarray] = None
    soft: Optional[np.ndarray] = None
    size: Tuple[int, int] = (0, 0)  # processing size (width, height)
    kind: str = "txt2img"
    tileable: bool = False
    # 4. pipeline and sampling
    nets: list = dataclasses.field(default_factory=list)
    union: bool = False
    runner: Any = None
    layer_plan: Optional[transparency.TransparencyPlan] = None
    settings: dict = dataclasses.field(default_factory=dict)
    # 5. conditioning
    call: dict = dataclasses.field(default_factory=dict)
    region_plan: Optional[regions.RegionPlan] = None
    init: Optional[np.ndarray] = None
    ref_scales: Optional[list] = None
    # 6. passes and decoding
    tiny: Any = None
    fast_decode: bool = False
    hires: Optional[hires_fix.HiresPlan] = None
    target: Tuple[int, int] = (0, 0)  # the size of the last pass (the hires fix's target size)
    box: Optional[tuple] = None  # the box around the mask that is decoded

    @property
    def live(self) -> bool:
        return bool(getattr(self.job, "live", False))


def result_info(p: Plan, reuse, elapsed: float, refiner_name: str = "") -> dict:
    """What the result layers say about how they were made (``reuse``: the step cache's record, or None;
    ``refiner_name``: the SDXL refiner's model name when one ran)."""
    job, settings = p.job, p.settings
    info = {
        "model": p.entry.name,
        "arch": p.entry.arch,
        "sampler": settings["sampler"],
        "scheduler": settings["scheduler"] or "default",
        "steps": settings["steps"],
        "cfg": settings["cfg"],
        "strength": settings["strength"],
        "size": list(p.size),
        "loras": p.loras,
        "embeddings": p.embeddings,
        "controlnets": [c.entry.name for c in p.controls],
        "seconds": round(elapsed, 3),
    }
    if p.references:
        info["references"] = [r.describe() for r in p.references]
    if p.preset:
        info["few_step"] = p.preset["family"]
    if p.entry.info.get("prediction"):  # v-prediction: how its scheduler was set
        options = vpred.scheduler_config({}, p.entry.info["prediction"])
        info["prediction"] = {**options, "from": p.entry.info["prediction"]["from"]}
    info["vae"] = p.vae_name or "default"
    if job.params.clip_skip > 1:
        info["clip_skip"] = job.params.clip_skip
    if p.refiner is not None:
        info.update(refiner=refiner_name, refiner_start=job.params.refiner_start)
    if p.fast_decode:
        info["decoder"] = "tiny"
    info["speed"] = (
        {"level": "fast", "reused_steps": reuse.reused, "steps": reuse.calls}
        if reuse is not None
        else {"level": "quality"}
    )
    if p.box is not None:
        info["decoded"] = list(p.box)
    if p.work.regions:
        info["regions"] = len(p.work.regions)
    if p.hires is not None:
        two = p.hires
        info["hires"] = {
            "size": list(p.target),
            "upscaler": two.upscaler,
            "strength": two.strength,
            "steps": two.steps,
        }
    if p.tileable:
        info["tileable"] = "circular padding in the UNet and VAE"
    if p.layer_plan is not None:
        info["transparent"] = {"attention": p.layer_plan.attention.name, "decoder": p.layer_plan.decoder.name}
    return info
