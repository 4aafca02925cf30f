"""The one table of samplers and noise schedules, by the names painters know (A1111 / ComfyUI), as pure data.

Each sampler names the diffusers scheduler class that runs it, the options it sets on that class, and the schedules it
takes; each schedule names the diffusers options it sets. The server builds its schedulers from this table, the
protocol validates jobs against it, ``welcome.capabilities`` announces it and the plugins offer it. The mapping follows
diffusers' own table of A1111 names ("Schedulers" overview of the diffusers docs).

A combination that does not exist (a sampler with a schedule its scheduler class cannot do) is refused naming both.
The old combined names (``"DPM++ 2M Karras"``, ``"DPM++ SDE Karras"``) stay accepted as aliases of a
(sampler, schedule) pair and keep giving the pixels they gave before.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple


class Sampler(NamedTuple):
    """A sampler: the diffusers scheduler class, its options, and the schedules it takes besides its own ("")."""

    scheduler_class: str
    options: Dict[str, object]
    schedules: Tuple[str, ...]


# schedule name -> diffusers scheduler options it sets
SCHEDULES: Dict[str, Dict[str, object]] = {
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},  # diffusers computes beta sigmas with scipy: offered when scipy is installed
    "Normal": {"timestep_spacing": "linspace"},
    "Simple": {"timestep_spacing": "trailing"},
    "SGM Uniform": {"timestep_spacing": "trailing"},
}
SIGMA_SCHEDULES = ("Karras", "Exponential", "Beta")
SPACING_SCHEDULES = ("Normal", "Simple", "SGM Uniform")
ALL_SCHEDULES = SIGMA_SCHEDULES + SPACING_SCHEDULES

# sampler name -> what runs it (the first is the default order of the menus)
SAMPLER_TABLE: Dict[str, Sampler] = {
    "Euler": Sampler("EulerDiscreteScheduler", {}, ALL_SCHEDULES),
    "Euler a": Sampler("EulerAncestralDiscreteScheduler", {}, SPACING_SCHEDULES),
    "DPM++ 2M": Sampler(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, ALL_SCHEDULES
    ),
    "DPM++ 2M SDE": Sampler(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, ALL_SCHEDULES
    ),
    "DPM++ SDE": Sampler("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++"}, SIGMA_SCHEDULES),
    "DPM2": Sampler("KDPM2DiscreteScheduler", {}, ALL_SCHEDULES),
    "DPM2 a": Sampler("KDPM2AncestralDiscreteScheduler", {}, ALL_SCHEDULES),
    "Heun": Sampler("HeunDiscreteScheduler", {}, ALL_SCHEDULES),
    "LMS": Sampler("LMSDiscreteScheduler", {}, ALL_SCHEDULES),
    "DEIS": Sampler("DEISMultistepScheduler", {}, ALL_SCHEDULES),
    "UniPC": Sampler("UniPCMultistepScheduler", {}, ALL_SCHEDULES),
    "DDIM": Sampler("DDIMScheduler", {"set_alpha_to_one": False, "clip_sample": False}, SPACING_SCHEDULES),
    "DDPM": Sampler("DDPMScheduler", {"clip_sample": False}, SPACING_SCHEDULES),
    "PLMS": Sampler("PNDMScheduler", {"skip_prk_steps": True}, SPACING_SCHEDULES),
    "LCM": Sampler("LCMScheduler", {}, SPACING_SCHEDULES),
    "TCD": Sampler("TCDScheduler", {}, SPACING_SCHEDULES),
}

# Python packages a sampler or schedule needs beyond diffusers (diffusers imports them only for these): the server
# offers them when the package is installed and refuses them by name otherwise
NEEDS: Dict[str, str] = {"LMS": "scipy", "Beta": "scipy"}

# old combined names -> (sampler, schedule); "DPM++ SDE Karras" always ran the multistep SDE solver with Karras sigmas
ALIASES: Dict[str, Tuple[str, str]] = {
    "DPM++ 2M Karras": ("DPM++ 2M", "Karras"),
    "DPM++ SDE Karras": ("DPM++ 2M SDE", "Karras"),
}

SAMPLER_NAMES: Tuple[str, ...] = tuple(SAMPLER_TABLE)
SCHEDULE_NAMES: Tuple[str, ...] = tuple(SCHEDULES)
# every name a job's ``sampler`` may carry (old clients send the combined names)
SAMPLERS: Tuple[str, ...] = SAMPLER_NAMES + tuple(ALIASES)


def resolve(sampler: str, schedule: str = "") -> Tuple[str, str]:
    """The (sampler, schedule) pair a job asks for, aliases expanded; ValueError naming both when the pair does not
    exist (``""`` stays ``""``: the caller's default)."""
    if sampler in ALIASES:
        base, implied = ALIASES[sampler]
        if schedule and schedule != implied:
            raise ValueError(
                f"sampler '{sampler}' already sets the schedule '{implied}' and cannot take the schedule "
                f"'{schedule}': choose sampler '{base}' with schedule '{schedule}'"
            )
        return base, implied
    if sampler and sampler not in SAMPLER_TABLE:
        raise ValueError(f"unknown sampler '{sampler}'; samplers: {', '.join(SAMPLERS)}")
    if schedule and schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule '{schedule}'; schedules: {', '.join(SCHEDULE_NAMES)}")
    if sampler and schedule and schedule not in SAMPLER_TABLE[sampler].schedules:
        takes = SAMPLER_TABLE[sampler].schedules
        raise ValueError(
            f"sampler '{sampler}' cannot run with the schedule '{schedule}' (its diffusers scheduler "
            f"has no such option); '{sampler}' takes "
            + (", ".join(repr(s) for s in takes) if takes else "only its own schedule")
        )
    return sampler, schedule


def schedules_of(sampler: str) -> Tuple[str, ...]:
    """The schedules ``sampler`` (a name or alias) can take besides its own; () for an unknown name."""
    if sampler in ALIASES:
        return (ALIASES[sampler][1],)
    found: Optional[Sampler] = SAMPLER_TABLE.get(sampler)
    return found.schedules if found else ()


def capabilities(missing: Tuple[str, ...] = ()) -> Dict[str, object]:
    """The table as ``welcome.capabilities`` carries it: ``samplers`` (names + aliases), ``schedulers`` (names),
    ``sampler_schedules`` (which schedules each sampler takes); what needs a package in ``missing`` is left out."""
    left_out = {name for name, package in NEEDS.items() if package in missing}
    schedules = [s for s in SCHEDULE_NAMES if s not in left_out]
    return {
        "samplers": [s for s in SAMPLERS if s not in left_out and resolve(s)[0] not in left_out],
        "schedulers": schedules,
        "sampler_schedules": {
            name: [s for s in sampler.schedules if s in schedules]
            for name, sampler in SAMPLER_TABLE.items()
            if name not in left_out
        },
    }


def markdown_table() -> str:
    """The table as protocol/README.md shows it (a test keeps the two the same)."""
    rows = ["| sampler | diffusers scheduler | options | schedules besides its own |", "|---|---|---|---|"]
    for name, s in SAMPLER_TABLE.items():
        options = ", ".join(f"`{k}={v!r}`" for k, v in s.options.items()) or "–"
        needs = f" (needs {NEEDS[name]})" if name in NEEDS else ""
        rows.append(f"| {name}{needs} | `{s.scheduler_class}` | {options} | {', '.join(s.schedules) or '–'} |")
    rows += ["", "| schedule | diffusers options |", "|---|---|"]
    for name, options in SCHEDULES.items():
        needs = f" (needs {NEEDS[name]})" if name in NEEDS else ""
        rows.append(f"| {name}{needs} | {', '.join(f'`{k}={v!r}`' for k, v in options.items())} |")
    rows += ["", "| old name | sampler + schedule |", "|---|---|"]
    rows += [f"| {old} | {pair[0]} + {pair[1]} |" for old, pair in ALIASES.items()]
    return "\n".join(rows) + "\n"
