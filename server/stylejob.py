"""A style applied to a job: the one place where a job that names a style gets the style's checkpoint, prompt
templates, LoRAs and sampling, and a live frame its few-step LoRA or model, before any engine sees it. Each job field
that differs from its default overrides the style's value (protocol/README.md, *Styles*); what neither sets gets the
server's own value (``fill_unset``)."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

from protocol.errors import MODEL_NOT_FOUND, ProtocolError
from protocol.messages import Params
from protocol.styles import FEWSTEP_AUTO, Style, StyleLora, apply_template

from .core import Job
from .diffusion.prompts import extract_loras
from .diffusion.stepcache import FAMILIES as FAST_FAMILIES
from .downloads.catalogue import Catalogue, CatalogueError
from .models import fewstep, lorafit
from .models.registry import ModelEntry, ModelRegistry

NO_CHECKPOINT_MODES = ("upscale", "preprocess", "caption")
FEWSTEP_ORDER = ("lcm", "lightning", "hyper", "turbo")  # among several installed few-step LoRAs, the first kind wins
_DEFAULTS = Params()
# Style fields copied into ``params`` where the job leaves them at their defaults and the style sets them; a value in
# ``_is_set`` says whether the style sets one.
SAMPLING = ("vae", "clip_skip", "sampler", "scheduler", "steps", "cfg", "strength", "inpaint_method", "speed")
SPEED_UNSET_RUNS = "quality"  # the level of a job whose ``params.speed`` is "" and whose style sets none


def _is_set(key: str, value) -> bool:
    """Whether a style's value sets a job field: not none, ``""``, ``"auto"`` (the inpaint method's default), nor a
    count of 0 (steps, CLIP skip: "the family's default"); a CFG or strength of 0 is a value."""
    if key in ("steps", "clip_skip"):
        return bool(value)
    return value is not None and value not in ("", "auto")


def checkpoint_of(job: Job, registry: ModelRegistry) -> Optional[ModelEntry]:
    """The checkpoint the job runs on (its own, else the server's default); None for the built-in engine."""
    if job.model == "classical" or job.mode in NO_CHECKPOINT_MODES:
        return None
    return registry.find(job.model, "checkpoint") if job.model else registry.default_checkpoint()


def _first_installed(names, registry: ModelRegistry) -> str:
    for name in names:
        entry = registry.find(name, "checkpoint")
        if entry is not None and entry.problem is None:
            return entry.name
    return ""


def fewstep_of(entry: ModelEntry, registry: ModelRegistry) -> Tuple[str, Optional[dict], bool]:
    """The best installed few-step model for ``entry``'s family: (name, preset, is a LoRA); ("", None, False) when
    none is installed. A few-step checkpoint is its own."""
    if entry.info.get("few_step"):
        return entry.name, entry.info["few_step"], False
    loras = [
        e for e in registry.entries("lora") if e.problem is None and e.arch == entry.arch and e.info.get("few_step")
    ]
    rank = {kind: i for i, kind in enumerate(FEWSTEP_ORDER)}
    loras.sort(key=lambda e: (rank.get(e.info["few_step"]["family"], len(rank)), e.name.lower()))
    return (loras[0].name, loras[0].info["few_step"], True) if loras else ("", None, False)


def fewstep_pull(family: str) -> str:
    """The catalogue file id of a few-step LoRA for ``family`` (``""`` when the catalogue has none)."""
    try:
        files = Catalogue.load().files.values()
    except (CatalogueError, OSError, ValueError):
        return ""
    for item in files:
        if item.kind == "lora" and item.family == family and fewstep._from_text(item.target):
            return item.id
    return ""


def fewstep_status(registry: ModelRegistry) -> Dict[str, dict]:
    """``styles.fewstep``: per family of an installed checkpoint, the few-step model live frames use and the pull
    that would make them fast when there is none."""
    out: Dict[str, dict] = {}
    for entry in registry.entries("checkpoint"):
        if entry.problem is not None or not entry.arch or entry.arch in out:
            continue
        name, _, _ = fewstep_of(entry, registry)
        out[entry.arch] = {"installed": name, "pull": "" if name else fewstep_pull(entry.arch)}
    return out


def _lora_tags(
    loras, prompt: str, entry: Optional[ModelEntry], registry: ModelRegistry
) -> Tuple[List[str], List[dict], List[dict]]:
    """Prompt tags for a style's LoRAs: those the prompt names already and those of another family are left out."""
    _, named = extract_loras(prompt)
    taken = {t.name.lower() for t in named}
    tags, applied, skipped = [], [], []
    for lora in loras:
        found = registry.find(lora.name, "lora", next(iter(lorafit.lora_families(entry and entry.arch)), None))
        if found is None or found.problem is not None:
            skipped.append({"name": lora.name, "why": "not installed" if found is None else found.problem})
        elif found.name.lower() in taken or lora.name.lower() in taken:
            skipped.append({"name": lora.name, "why": "the prompt names it (its weight wins)"})
        elif entry is None or (found.arch and not lorafit.fits(found, entry)):
            skipped.append(
                {"name": lora.name, "why": f"made for {found.arch}, the checkpoint is {entry and entry.arch}"}
            )
        else:
            tags.append(f"<lora:{found.name}:{lora.weight:g}>")
            applied.append({"name": found.name, "weight": lora.weight})
            taken.add(found.name.lower())
    return tags, applied, skipped


def _live_settings(style: Style, entry: Optional[ModelEntry], registry: ModelRegistry) -> Tuple[dict, dict, list]:
    """A live frame's sampling values from ``style.live`` (few-step preset first, then the live fields set), what
    ``info.style.live`` says, and the few-step LoRA to add (as a style LoRA list)."""
    live = style.live
    values: dict = {}
    extra = []
    name, preset, is_lora = "", None, False
    if entry is not None and live.fewstep == FEWSTEP_AUTO:
        name, preset, is_lora = fewstep_of(entry, registry)
    elif entry is not None and live.fewstep:
        found = registry.find(live.fewstep, "lora", entry.arch)
        if found is None or found.problem is not None:
            raise ProtocolError(
                MODEL_NOT_FOUND,
                f"style '{style.name}' asks for the few-step LoRA '{live.fewstep}' for live frames, and it is not "
                'installed: pull it, or set the style\'s live.fewstep to "auto"',
                field="style",
            )
        name, preset, is_lora = found.name, found.info.get("few_step"), True
    if preset:
        values.update(sampler=preset["sampler"], steps=preset["steps"], cfg=preset["cfg"], scheduler="")
    if is_lora:
        extra.append(StyleLora(name=name, weight=1.0))
    for key in ("steps", "cfg", "sampler", "scheduler", "strength"):
        value = getattr(live, key)
        if _is_set(key, value):
            values[key] = value
    pull = "" if name or entry is None or not entry.arch else fewstep_pull(entry.arch)
    info = {"fewstep": name, "pull": pull}
    return values, info, extra + list(live.loras)


def fill_unset(job: Job) -> Job:
    """``job`` with what neither the job nor its style chose set to the server's own: ``params.speed`` ``""`` →
    ``quality``."""
    if job.params.speed:
        return job
    return dataclasses.replace(job, params=dataclasses.replace(job.params, speed=SPEED_UNSET_RUNS))


def apply_style(job: Job, style: Style, registry: ModelRegistry) -> Tuple[Job, dict]:
    """``job`` with ``style`` applied, and ``info.style`` saying what was applied."""
    model = job.model
    if not model and job.mode not in NO_CHECKPOINT_MODES:
        model = _first_installed(style.checkpoints, registry)
    job = dataclasses.replace(job, model=model)
    entry = checkpoint_of(job, registry)
    prompt = apply_template(style.prompt, job.prompt)
    negative = apply_template(style.negative_prompt, job.negative_prompt)

    values = {key: getattr(style, key) for key in SAMPLING if _is_set(key, getattr(style, key))}
    if values.get("speed") == "fast" and (entry is None or entry.arch not in FAST_FAMILIES):
        values.pop("speed")  # the style's speed-up where the family has it; elsewhere every step in full
    loras = list(style.loras)
    live_info = None
    if job.live:
        live_values, live_info, live_loras = _live_settings(style, entry, registry)
        values.update(live_values)
        loras += live_loras
    tags, applied, skipped = _lora_tags(loras, job.prompt, entry, registry) if entry else ([], [], [])
    if tags:
        prompt = " ".join([prompt, *tags]).strip()
    changes = {
        key: value
        for key, value in values.items()
        if getattr(job.params, key) == getattr(_DEFAULTS, key) and value != getattr(job.params, key)
    }
    params = dataclasses.replace(job.params, **changes)
    info = {
        "name": style.name,
        "checkpoint": entry.name if entry is not None else "",
        "loras": applied,
        "skipped": skipped,
        "params": sorted(changes),
    }
    if live_info is not None:
        live_info.update(steps=params.steps, cfg=params.cfg, sampler=params.sampler)
        info["live"] = live_info
    return dataclasses.replace(job, prompt=prompt, negative_prompt=negative, params=params), info
