"""What every families job is made of besides its recipe: prompts as T5 reads them, the job's settings with the
family's defaults, what each result layer's ``info`` says, and the one-step schedule guard."""

from __future__ import annotations

import contextlib
import time
from typing import Optional, Tuple

from ..checkpoint.jobparts import seeds_of, strength_of
from ..core import Job
from ..defaults import family_settings
from ..diffusion import prompts
from ..models.registry import ModelEntry
from . import controlnets, redux, specs
from .pipes import Loaded

SAMPLER = "Euler"  # flow matching: the model's own FlowMatchEulerDiscreteScheduler


def plain_prompt(text: str) -> str:
    """A prompt without the SD weight syntax (T5 reads the words): ``(red:1.3) cat`` → ``red cat``."""
    runs = prompts.parse_weights(text)
    return "".join(", " if w == -1.0 else t for t, w in runs).strip()


def job_settings(job: Job, entry: ModelEntry, kind: str) -> dict:
    """Steps, guidance, strength and seeds with the family's defaults filled in."""
    params = job.params
    defaults = family_settings(entry.arch, entry.info.get("variant", ""))
    return {
        "steps": params.steps,
        "cfg": params.cfg if params.cfg is not None else defaults["cfg"],
        "strength": strength_of(job, kind, params.steps),
        "seeds": seeds_of(params),
    }


def job_info(entry: ModelEntry, loaded: Loaded, settings: dict, size: Tuple[int, int], loras, started: float) -> dict:
    """What every result layer's ``info`` says of the job: the model, its settings, the size it ran at, the LoRAs,
    the seconds since ``started``, and where the weights were and in which dtype."""
    info = {
        "model": entry.name,
        "arch": entry.arch,
        "family": entry.arch,
        "variant": loaded.facts.get("variant"),
        "sampler": SAMPLER,
        "steps": settings["steps"],
        "cfg": settings["cfg"],
        "size": [int(size[0]), int(size[1])],
        "loras": loras,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return dict(info, **{key: loaded.facts[key] for key in ("parts", "memory", "dtype") if key in loaded.facts})


def inputs_info(
    job: Job,
    work: Job,
    entry: ModelEntry,
    plan: Optional[controlnets.ControlPlan],
    ref_plan: Optional[redux.ReduxPlan],
    tileable: bool,
    rolling: bool,
) -> dict:
    """What the result layers say of the job's inputs: its ControlNet, regions, reference images, tiling, and that an
    SD sampler it named was not used."""
    info: dict = {}
    if plan is not None:
        info["controlnet"] = {"name": plan.entry.name, "type": plan.control.type, "union_mode": plan.mode}
    if work.regions:
        info["regions"] = len(work.regions)
    if ref_plan is not None:
        info["references"] = redux.info(ref_plan, work.references)
    elif work.references and entry.arch == specs.FLUX2_KLEIN:
        info["references"] = [{"type": r.type, "seen_as": "picture"} for r in work.references]
    elif work.references:
        # Edit Plus: picture 1 is the edited one, the references follow in order
        info["references"] = [{"type": "content", "picture": i + 2} for i in range(len(work.references))]
    if tileable:
        info["tileable"] = "circular padding in the VAE" + (", latents rolled between steps" if rolling else "")
    if job.params.sampler and job.params.sampler != SAMPLER or job.params.scheduler:
        info["sampler_note"] = (
            f"{job.params.sampler or job.params.scheduler} is an SD sampler or schedule; "
            "flow-matching models run with Euler"
        )
    return info


@contextlib.contextmanager
def one_step_schedule(runner, steps: int):
    """For a one-step job, the pipeline's flow-matching scheduler without its terminal shift (Qwen-Image's
    ``shift_terminal``): stretching a one-sigma schedule to the terminal value divides zero by zero (NaN)."""
    scheduler = getattr(runner, "scheduler", None)
    config = getattr(scheduler, "config", {}) or {}
    if steps != 1 or not config.get("shift_terminal"):
        yield
        return
    runner.scheduler = type(scheduler).from_config(config, shift_terminal=None)
    try:
        yield
    finally:
        runner.scheduler = scheduler
