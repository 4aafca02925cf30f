"""Samplers and noise schedules by the names users know (``protocol.sampling``'s table), built as diffusers schedulers
from the checkpoint's own scheduler config."""

from __future__ import annotations

import importlib.util
from typing import Optional, Tuple

from protocol.errors import UNSUPPORTED, ProtocolError
from protocol.sampling import NEEDS, SAMPLER_TABLE, SCHEDULES, capabilities as table_capabilities, resolve

from ..checkpoint.jobparts import seeds_of, strength_of
from ..core import Job
from ..defaults import DEFAULT_SAMPLER, default_cfg as family_cfg
from ..models.registry import ModelEntry

# options of another sampler or schedule that a checkpoint's saved scheduler config may carry: dropped first, so the
# scheduler is exactly the table's
FOREIGN_OPTIONS = (
    "skip_prk_steps",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "use_lu_lambdas",
    "algorithm_type",
    "interpolation_type",
    "solver_order",
    "final_sigmas_type",
)


def missing_packages() -> Tuple[str, ...]:
    """The packages of ``protocol.sampling.NEEDS`` that are not installed."""
    return tuple(sorted({p for p in NEEDS.values() if importlib.util.find_spec(p) is None}))


def capabilities() -> dict:
    """``welcome.capabilities`` entries: the samplers and schedules this server can run."""
    return table_capabilities(missing_packages())


def choose(sampler: str, schedule: str = "") -> Tuple[str, str]:
    """The (sampler, schedule) a job runs with: aliases expanded, ``""`` sampler = the default; a pair that does not
    exist or needs a missing package is refused by name."""
    try:
        if sampler:
            name, sched = resolve(sampler, schedule)
        else:  # the default sampler with the job's schedule, else with its own
            name, implied = resolve(DEFAULT_SAMPLER)
            name, sched = resolve(name, schedule or implied)
    except ValueError as err:
        raise ProtocolError(UNSUPPORTED, str(err), field="params.scheduler") from None
    for what in (name, sched):
        package = NEEDS.get(what)
        if package and importlib.util.find_spec(package) is None:
            kind = "sampler" if what == name else "schedule"
            raise ProtocolError(
                UNSUPPORTED,
                f"the {kind} '{what}' needs the Python package {package}, which is not "
                f"installed on the server (pip install {package})",
                field="params.sampler" if kind == "sampler" else "params.scheduler",
            )
    return name, sched


def make_scheduler(name: str, base_config, spacing: Optional[str] = None, schedule: str = ""):
    """A fresh scheduler for sampler ``name`` (a name or old combined name, "" = the default) with ``schedule``
    ("" = the sampler's own) from a checkpoint's scheduler config; ``spacing`` sets the timestep spacing (few-step
    models want "trailing": their first step starts from pure noise) unless the schedule sets one."""
    import diffusers

    name, schedule = choose(name, schedule)
    sampler = SAMPLER_TABLE[name]
    config = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    for foreign in FOREIGN_OPTIONS:
        config.pop(foreign, None)
    config.update(sampler.options)
    if spacing:
        config["timestep_spacing"] = spacing
    if schedule:
        config.update(SCHEDULES[schedule])
    return getattr(diffusers, sampler.scheduler_class).from_config(config)


def default_cfg(sampler: str, arch: str) -> float:
    """Guidance scale when the job leaves it open."""
    if sampler in ("LCM", "TCD"):
        return 1.5
    return family_cfg(arch)


def job_settings(job: Job, entry: ModelEntry, kind: str, preset: Optional[dict] = None) -> dict:
    """Sampler, schedule, steps, strength, CFG and seeds of a job, with the defaults filled in. A few-step model's
    ``preset`` gives the sampler when the job leaves it open (and then its step count too) and the CFG when open."""
    params = job.params
    sampler, steps = params.sampler, params.steps
    if not sampler and preset:
        sampler, steps = preset["sampler"], preset["steps"]
    sampler, scheduler = choose(sampler, params.scheduler)
    if params.cfg is not None:
        cfg = params.cfg
    else:
        cfg = preset["cfg"] if preset else default_cfg(sampler, entry.arch)
    return {
        "sampler": sampler,
        "scheduler": scheduler,
        "refiner_start": params.refiner_start,
        "strength": strength_of(job, kind, steps),
        "steps": steps,
        "cfg": cfg,
        "seeds": seeds_of(params),
    }
