"""What a painter may pick for sampling, from the server's ``welcome``: samplers, the schedules each one
takes, the VAEs and the SDXL refiners installed. A server that announces none (an older protocol 1.1 server) gets the
protocol's own table and no VAEs or refiners."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import JobInputError
from .wire import protocol, sampling


@dataclass(frozen=True)
class SamplingChoices:
    """The sampling options a server offers."""

    samplers: Tuple[str, ...] = sampling.SAMPLERS
    schedulers: Tuple[str, ...] = sampling.SCHEDULE_NAMES
    schedules: Mapping[str, Tuple[str, ...]] = field(
        default_factory=lambda: {n: s.schedules for n, s in sampling.SAMPLER_TABLE.items()}
    )
    vaes: Tuple[str, ...] = ()
    refiners: Tuple[str, ...] = ()

    @classmethod
    def from_welcome(cls, welcome: "protocol.Welcome") -> "SamplingChoices":
        """The choices of the server that sent ``welcome``."""
        caps = welcome.capabilities
        models: Sequence[Mapping[str, Any]] = welcome.models
        default = cls()

        def names(kind: str) -> Tuple[str, ...]:
            listed = caps.get(f"{kind}s")
            if isinstance(listed, (list, tuple)):
                return tuple(str(n) for n in listed)
            return tuple(str(m.get("name", "")) for m in models if m.get("kind") == kind and not m.get("problem"))

        raw = caps.get("sampler_schedules")
        schedules: Dict[str, Tuple[str, ...]] = (
            {str(k): tuple(v) for k, v in raw.items()} if isinstance(raw, Mapping) else dict(default.schedules)
        )
        return cls(
            samplers=tuple(caps.get("samplers") or default.samplers),
            schedulers=tuple(caps.get("schedulers") or default.schedulers),
            schedules=schedules,
            vaes=names("vae"),
            refiners=names("refiner"),
        )

    def schedules_for(self, sampler: str) -> Tuple[str, ...]:
        """The schedules ``sampler`` takes besides its own ("" = the model's default sampler: every schedule the
        server has); an old combined name takes only the schedule it names."""
        if not sampler:
            return self.schedulers
        if sampler in sampling.ALIASES:
            return (sampling.ALIASES[sampler][1],)
        return tuple(s for s in self.schedules.get(sampler, ()) if s in self.schedulers)


SAMPLING_OPTIONS = ("sampler", "scheduler", "vae", "refiner")


def option_values(
    choices: SamplingChoices, models: Sequence[Mapping[str, Any]], name: str, sampler: str = ""
) -> List[str]:
    """The values a sampling option (``SAMPLING_OPTIONS``) takes, ``""`` (the default) first: samplers and the
    schedules of ``sampler`` from the welcome, VAEs and refiners from the model listing ``models``."""
    if name == "sampler":
        return [""] + list(choices.samplers)
    if name == "scheduler":
        return [""] + list(choices.schedules_for(sampler))
    if name in ("vae", "refiner"):
        return [""] + [str(m["name"]) for m in models if m.get("kind") == name and not m.get("problem")]
    raise KeyError(f"{name!r} is not a sampling option")


def check_choice(
    choices: SamplingChoices,
    models: Sequence[Mapping[str, Any]],
    settings: Any,
    name: str,
    value: Any,
    others: Optional[Mapping[str, Callable[[], Sequence[str]]]] = None,
) -> None:
    """Refuse (JobInputError) a value the server does not offer: of a sampling option, or of an option in ``others``
    (name → the function that lists its values); other options pass."""
    if name in SAMPLING_OPTIONS[1:]:
        offered: Optional[Sequence[str]] = option_values(choices, models, name, settings.sampler)
    else:
        offered = others[name]() if others and name in others else None
    if offered is not None and value not in offered:
        raise JobInputError(f"{value!r} is not available for {name}")


def fitting_scheduler(choices: SamplingChoices, settings: Any) -> str:
    """``settings.scheduler`` when ``settings.sampler`` (as shown: defaults filled in) takes it, else "" (the
    sampler's own)."""
    return settings.scheduler if settings.scheduler in choices.schedules_for(settings.sampler) else ""


def listed_choices(choices: SamplingChoices, models: Sequence[Mapping[str, Any]]) -> Tuple[Tuple[str, List[str]], ...]:
    """(option, values) of the sampling options the model listing decides: ``vae`` and ``refiner``."""
    return tuple((name, option_values(choices, models, name)) for name in ("vae", "refiner"))
