"""Styles: named bundles of a job's defaults (checkpoint preference, LoRAs, VAE, sampling, prompt templates, and
separate settings for live frames) that the server keeps and serves to every client, and the messages that list,
save and delete them. A job names a style in ``job.style``; each of its own fields that differs from the field's
default overrides the style's value (see ``protocol/README.md``, *Styles*)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

from .errors import bad_field
from .sampling import SAMPLERS, SCHEDULE_NAMES, resolve as resolve_sampler
from .schema import WireModel, wire
from .techniques import MAX_PROMPT_LENGTH

STYLE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}"  # also the style file's name: no path, no hidden file
MAX_STYLE_LORAS = 16
MAX_STYLE_CHECKPOINTS = 16
MAX_STYLES = 512
# ``params.inpaint_method``: how an inpaint (or outpaint) job fills its hole. ``auto`` picks the best installed method
# of the checkpoint's family; the others force one (a forced method the server cannot run is refused, naming it).
INPAINT_METHODS = ("auto", "checkpoint", "controlnet", "fill", "plain")
FEWSTEP_AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class StyleLora(WireModel):
    """A LoRA a style applies, by name from the model listing, with its weight."""

    name: str = wire(max_length=256, doc="a `lora` model entry's name")
    weight: float = wire(1.0, minimum=-4.0, maximum=4.0)


def _check_sampling(sampler: str, scheduler: str, path: str) -> None:
    try:
        resolve_sampler(sampler, scheduler)
    except ValueError as err:
        raise bad_field(f"{path}.scheduler" if path else "scheduler", f"does not fit the sampler: {err}") from None


@dataclasses.dataclass(frozen=True)
class LiveSettings(WireModel):
    """What a style uses for live frames instead of its normal sampling."""

    fewstep: str = wire(
        FEWSTEP_AUTO,
        max_length=256,
        doc='`"auto"`: the best installed few-step LoRA or model of the checkpoint\'s family (LCM, Hyper, Lightning, '
        'Turbo, schnell) with its preset steps, CFG and sampler; a `lora` entry\'s name: that one; `""`: none',
    )
    steps: int = wire(0, minimum=0, maximum=150, doc="0: the few-step preset's, else the style's")
    cfg: Optional[float] = wire(None, minimum=0.0, maximum=30.0, doc="none: the few-step preset's, else the style's")
    sampler: str = wire("", choices=("",) + SAMPLERS, doc="`\"\"`: the few-step preset's, else the style's")
    scheduler: str = wire("", choices=("",) + SCHEDULE_NAMES)
    strength: Optional[float] = wire(None, minimum=0.0, maximum=1.0, doc="none: the style's")
    loras: Tuple[StyleLora, ...] = wire((), max_items=MAX_STYLE_LORAS, doc="LoRAs added for live frames only")

    def check(self, path: str, limits: Any) -> None:
        _check_sampling(self.sampler, self.scheduler, path)


@dataclasses.dataclass(frozen=True)
class Style(WireModel):
    """A style: the defaults a job naming it starts from."""

    name: str = wire(pattern=STYLE_NAME_PATTERN, doc="unique on the server; also its file's name")
    title: str = wire("", max_length=128, doc="shown to the painter; `name` when empty")
    family: str = wire(
        "", max_length=32, doc='the model family it is made for (`welcome.defaults.families`); `""`: any'
    )
    checkpoints: Tuple[str, ...] = wire(
        (), max_items=MAX_STYLE_CHECKPOINTS, doc="checkpoint names by preference: the first installed one is used"
    )
    loras: Tuple[StyleLora, ...] = wire((), max_items=MAX_STYLE_LORAS)
    vae: str = wire("", max_length=256, doc='`""`: the checkpoint\'s own')
    clip_skip: int = wire(0, minimum=0, maximum=12)
    sampler: str = wire("", choices=("",) + SAMPLERS, doc='`""`: the family\'s default')
    scheduler: str = wire("", choices=("",) + SCHEDULE_NAMES)
    steps: int = wire(0, minimum=0, maximum=150, doc="0: the family's default")
    cfg: Optional[float] = wire(None, minimum=0.0, maximum=30.0, doc="none: the family's default")
    strength: Optional[float] = wire(None, minimum=0.0, maximum=1.0, doc="none: the mode's default")
    prompt: str = wire("{prompt}", max_length=MAX_PROMPT_LENGTH, doc="template; `{prompt}` is the job's prompt")
    negative_prompt: str = wire("{prompt}", max_length=MAX_PROMPT_LENGTH, doc="template; `{prompt}`: the job's")
    inpaint_method: str = wire("auto", choices=INPAINT_METHODS, doc="see `params.inpaint_method`")
    speed: str = wire(
        "", choices=("", "quality", "fast"), doc='`params.speed` for jobs that leave it `""`; `""`: quality'
    )
    live: LiveSettings = wire(factory=LiveSettings, doc="settings for live frames")
    builtin: bool = wire(False, doc="shipped with the server (set by the server): saving one keeps a user copy")

    def check(self, path: str, limits: Any) -> None:
        _check_sampling(self.sampler, self.scheduler, path)


@dataclasses.dataclass(frozen=True)
class StyleProblem(WireModel):
    """A style file the server could not read; the other styles still load."""

    file: str = wire(max_length=4096, doc="the file's name in the styles folder")
    field: str = wire("", max_length=256, doc="the offending field, a dotted path")
    message: str = wire("", max_length=4096)


def apply_template(template: str, text: str) -> str:
    """``template`` with ``{prompt}`` replaced by ``text`` (a template without it gets ``text`` in front, joined by a
    comma); empty parts drop out so an empty prompt leaves no stray comma."""
    if "{prompt}" in template:
        out = template.replace("{prompt}", text)
    else:
        out = ", ".join(p for p in (text, template) if p)
    parts = [p.strip() for p in out.split(",")]
    return ", ".join(p for p in parts if p)
