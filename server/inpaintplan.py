"""The best installed inpaint method, chosen for a job before any engine runs: the job is rewritten (the checkpoint
swapped for its inpainting twin, an inpaint ControlNet added, the hole pre-filled at high strength, the seam's colours
matched) and ``info.inpaint`` says which method ran and why. ``params.inpaint_method`` forces one.

Per family: SD1.5 and SDXL — an inpainting checkpoint matching the chosen one, else an inpaint ControlNet (SDXL: the
union ControlNet's inpaint mode), else the plain path; Flux.1 — Fill; others — the plain path. Every method that is not
an inpainting model starts from the hole pre-filled (patch fill, LaMa when installed)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Callable, Hashable, List, Optional, Tuple

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from . import imageops, lama
from .core import Control, Job
from .diffusion.cache import BoundedCache, digest
from .diffusion.controls import UNION_MODES
from .models import headers
from .models.registry import ModelEntry, ModelRegistry, arch_name

MODES = ("inpaint", "outpaint")
PREFILL_STRENGTH = 0.9  # a pre-filled hole is redrawn almost from scratch, but keeps the fill's colours and layout
FILL_FAMILY = {"flux": "flux-fill"}  # families whose inpainting model is a separate "Fill" family
CONTROL_FAMILIES = ("sd15", "sdxl")
UNION_DEFAULT_TYPES = 6  # diffusers' ControlNetUnionModel default: the first union model, which has no inpaint mode
PREFILL_CACHE_BYTES = 96 << 20  # pre-filled pictures kept for jobs sent again (a few large ones, many small ones)
# Words of a file name that say what kind of file it is, not which model: left out when matching names.
_NOISE = {"inpainting", "inpaint", "pruned", "emaonly", "ema", "fp16", "fp32", "bf16", "safetensors", "ckpt", "fill"}
_WORD = re.compile(r"[a-z]+|\d+")


def _words(name: str) -> Tuple[str, ...]:
    base = name.lower().replace("\\", "/").rsplit("/", 1)[-1]
    return tuple(w for w in _WORD.findall(base) if w not in _NOISE)


def inpainting_twin(entry: ModelEntry, registry: ModelRegistry) -> Optional[ModelEntry]:
    """The installed inpainting checkpoint of ``entry``'s family whose name matches (``DreamShaper_8_pruned`` →
    ``DreamShaper_8_INPAINTING.inpainting``); ``entry`` itself when it is one; Flux.1: any installed Fill model."""
    if entry.inpaint:
        return entry
    usable = [e for e in registry.entries("checkpoint") if e.problem is None and e is not entry]
    if entry.arch in FILL_FAMILY:
        fills = [e for e in usable if e.arch == FILL_FAMILY[entry.arch]]
        return fills[0] if fills else None
    words = _words(entry.name)
    return next((e for e in usable if e.inpaint and e.arch == entry.arch and _words(e.name) == words), None)


def union_control_types(net: ModelEntry) -> int:
    """How many control modes a union ControlNet has (ProMax: 8, with inpaint; the first union: 6, without); its
    config's ``num_control_type``, else the rows of its ``task_embedding`` tensor; diffusers' default (6) when
    neither says."""
    config = (
        net.path / "config.json" if net.path.is_dir() else net.path.with_name(net.path.stem + ".config/config.json")
    )
    try:
        if config.is_file():
            return int(json.loads(config.read_text(encoding="utf-8")).get("num_control_type", UNION_DEFAULT_TYPES))
        shapes, _ = headers.safetensors_header(net.path)
    except (OSError, ValueError, TypeError, headers.HeaderError):
        return UNION_DEFAULT_TYPES
    task = next((v for k, v in shapes.items() if k.endswith("task_embedding")), None)
    return int(task[0]) if task else UNION_DEFAULT_TYPES


def inpaint_controlnet(entry: ModelEntry, registry: ModelRegistry) -> Optional[ModelEntry]:
    """The installed ControlNet of ``entry``'s family with an inpaint mode: a dedicated one first, else a union one."""
    if entry.arch not in CONTROL_FAMILIES:
        return None
    nets = [e for e in registry.entries("controlnet") if e.problem is None and e.arch == entry.arch]
    typed = [e for e in nets if not e.info.get("union") and "inpaint" in (e.info.get("control_types") or [])]
    union = [e for e in nets if e.info.get("union") and union_control_types(e) > UNION_MODES["inpaint"]]
    return (typed or union or [None])[0]


@dataclasses.dataclass
class Choice:
    method: str
    why: str
    model: str = ""
    control: str = ""


def _choose(job: Job, entry: ModelEntry, registry: ModelRegistry) -> Choice:
    """The method for ``job`` on ``entry``: forced by ``params.inpaint_method``, else the best installed one."""
    forced = job.params.inpaint_method
    family = arch_name(entry.arch)
    twin = inpainting_twin(entry, registry)
    net = inpaint_controlnet(entry, registry) if not entry.inpaint else None
    if net is not None and job.controls and (net.info.get("union") or any(c.type == "inpaint" for c in job.controls)):
        net = None  # the job brings its own inpaint control, or the union one cannot join its other controls
    fill_kind = entry.arch in FILL_FAMILY
    if forced == "auto":
        if twin is not None and fill_kind and job.controls and twin is not entry:
            return Choice("plain", f"the job's control layers cannot guide the {family} Fill model '{twin.name}'")
        if twin is not None:
            what = "Fill model" if fill_kind else "inpainting checkpoint"
            why = (
                f"'{entry.name}' is an inpainting checkpoint"
                if twin is entry
                else f"the {family} {what} '{twin.name}' is installed"
                + ("" if fill_kind else f" and matches '{entry.name}'")
            )
            return Choice("fill" if fill_kind else "checkpoint", why, model=twin.name)
        if net is not None:
            kind = "union ControlNet's inpaint mode" if net.info.get("union") else "inpaint ControlNet"
            return Choice(
                "controlnet",
                f"no matching inpainting checkpoint; the {family} {kind} '{net.name}' is installed",
                control=net.name,
            )
        return Choice("plain", f"no {family} inpainting checkpoint, Fill model or inpaint ControlNet is installed")
    if forced == "fill" and not fill_kind and not entry.inpaint:
        raise ProtocolError(
            UNSUPPORTED,
            f"inpaint method 'fill' runs Flux.1's Fill model; '{entry.name}' is {family}: use 'checkpoint' (its "
            "inpainting checkpoint), 'controlnet' or 'auto'",
            field="params.inpaint_method",
        )
    if forced in ("checkpoint", "fill"):
        if twin is None:
            what = "a Fill model" if fill_kind else f"an inpainting checkpoint matching '{entry.name}'"
            raise ProtocolError(
                MODEL_NOT_FOUND,
                f"inpaint method '{forced}' needs {what} ({family}), and none is installed: pull the family's starter "
                "set, or use the method 'auto'",
                field="params.inpaint_method",
            )
        return Choice("fill" if fill_kind else "checkpoint", "forced by params.inpaint_method", model=twin.name)
    if forced == "controlnet":
        if net is None:
            raise ProtocolError(
                UNSUPPORTED if entry.arch not in CONTROL_FAMILIES or entry.inpaint else MODEL_NOT_FOUND,
                f"inpaint method 'controlnet' needs an inpaint ControlNet for '{entry.name}' ({family}): "
                + (
                    "none is installed (pull the family's starter set)"
                    if entry.arch in CONTROL_FAMILIES and not entry.inpaint
                    else "this checkpoint cannot take one"
                ),
                field="params.inpaint_method",
            )
        return Choice("controlnet", "forced by params.inpaint_method", control=net.name)
    return Choice("plain", "forced by params.inpaint_method")


def prefill_cache() -> BoundedCache:
    """The cache ``plan`` keeps pre-filled pictures in: "generate again" (the same picture and mask, another seed or
    prompt) fills the hole once."""
    return BoundedCache("prefills", PREFILL_CACHE_BYTES)


def _prefill_key(job: Job, fill: str, registry: ModelRegistry) -> Hashable:
    """What a pre-fill depends on: the picture's colours, the mask, how the mask grows, and the fill (for LaMa, which
    network file: a new one fills differently)."""
    network = ""
    if fill == "lama":
        path = lama.entry(registry).path
        network = f"{path}:{path.stat().st_mtime_ns}"
    return (digest(job.image[..., :3], job.mask), job.params.grow, fill, network)


def _prefill(
    job: Job,
    registry: ModelRegistry,
    device: Callable[[], str],
    check: Callable[[], None],
    cache: Optional[BoundedCache] = None,
) -> Tuple[Job, str]:
    """The job with its hole filled from the surroundings (an inpaint job; an outpaint job's new area is filled by the
    engine from ``params.fill``): LaMa when installed and the job left the fill at its default, else ``params.fill``.
    With ``cache``, a picture and mask filled before are taken from it (the fills are deterministic)."""
    fill = job.params.fill
    if fill == "patch" and any(e.problem is None for e in registry.entries(lama.KIND)):
        fill = "lama"
    if job.mode != "inpaint" or job.image is None:
        return dataclasses.replace(job, params=dataclasses.replace(job.params, fill=fill)), fill

    def make() -> np.ndarray:
        grown, _ = imageops.prepare_mask(job, check)
        rgb = imageops.fill(job.image[..., :3], grown, lama.fill_method(fill, registry, device), check=check)
        rgb.setflags(write=False)  # shared by every job that sends this picture again
        return rgb

    rgb = make() if cache is None else cache.get(_prefill_key(job, fill, registry), make)
    image = np.concatenate([rgb, np.asarray(job.image[..., 3:4])], axis=2)
    return dataclasses.replace(job, image=image, params=dataclasses.replace(job.params, fill=fill)), fill


def _union_condition(job: Job) -> np.ndarray:
    """The union ControlNet's inpaint-mode image: the picture with the hole black."""
    rgb = np.array(job.image[..., :3], copy=True)
    if job.mask is not None:
        rgb[np.asarray(job.mask) > 127] = 0
    return rgb


def plan(
    job: Job,
    entry: Optional[ModelEntry],
    registry: ModelRegistry,
    device: Callable[[], str] = lambda: "cpu",
    check: Callable[[], None] = lambda: None,
    prefills: Optional[BoundedCache] = None,
) -> Tuple[Job, Optional[dict]]:
    """``job`` rewritten for the best (or forced) inpaint method on checkpoint ``entry``, and ``info.inpaint``; an
    inpaint or outpaint job on a checkpoint only (others come back as they are, with None). ``prefills``
    (``prefill_cache()``) keeps pre-filled pictures for jobs sent again."""
    if job.mode not in MODES or entry is None or job.image is None:
        return job, None
    choice = _choose(job, entry, registry)
    params = job.params
    controls: List[Control] = list(job.controls)
    if choice.model and choice.model != entry.name:
        job = dataclasses.replace(job, model=choice.model)
    if choice.control:
        net = registry.get(choice.control, "controlnet", entry.arch)
        image = _union_condition(job) if net.info.get("union") else np.ascontiguousarray(job.image[..., :3])
        controls.append(Control("inpaint", image, strength=1.0, model=net.name))
    prefill = ""
    strength = params.strength
    if choice.method in ("controlnet", "plain"):
        job, prefill = _prefill(job, registry, device, check, prefills)
        if strength is None and job.mode == "inpaint":
            strength = PREFILL_STRENGTH
    params = dataclasses.replace(job.params, strength=strength, color_match=True)
    job = dataclasses.replace(job, controls=controls, params=params)
    info = {
        "method": choice.method,
        "why": choice.why,
        "model": job.model or entry.name,
        "control": choice.control,
        "prefill": prefill,
        "strength": strength,
        "color_match": True,
    }
    return job, info
