"""The families engine's refusals before anything loads: modes, options and inputs a checkpoint of this family
cannot take, each refused by name with what to do instead."""

from __future__ import annotations

from typing import Callable, Collection

from protocol.errors import UNSUPPORTED, ProtocolError

from ..core import Job
from ..diffusion.adapters import check_loras
from ..models.registry import ModelEntry, ModelRegistry, arch_name
from . import controlnets, klein, layered, qwen, redux, specs


def check_job(
    job: Job,
    entry: ModelEntry,
    registry: ModelRegistry,
    region_families: Collection[str],
    refuse_regions: Callable[..., ProtocolError],
) -> None:
    """Refuse what ``entry`` cannot run of ``job``: the SD-only hires fix and detailer, decompose off
    Qwen-Image-Layered (and anything else on it), edit without an edit model or an image, SD sampling options,
    regions (``refuse_regions(job, family name, model name)``) off ``region_families``, tileable on Qwen-Image,
    reference images the family cannot honour, and LoRAs and ControlNets (``registry``'s) of another family."""
    refused = "hires" if job.params.hires.enabled else "detail" if job.params.detail.enabled else ""
    if refused:  # hires fix and detailer run on the SD1.5/SDXL engine only
        raise ProtocolError(
            UNSUPPORTED,
            f"the {'hires fix' if refused == 'hires' else 'detailer'} runs on SD1.5 "
            f"and SDXL checkpoints; '{entry.name}' is a {arch_name(entry.arch)} model: turn it off, or pick an "
            "SD1.5/SDXL model",
            field=f"params.{refused}",
        )
    layered.check_job(job, entry)  # decompose on Qwen-Image-Layered only, and nothing else on it
    if job.mode == "edit" and entry.arch not in specs.EDIT_FAMILIES:
        raise ProtocolError(
            UNSUPPORTED,
            f"instruction edit needs a Flux.1 Kontext, Flux.2 Klein or Qwen-Image-Edit checkpoint; '{entry.name}' "
            f"is {specs.VARIANT_NAMES.get(entry.info.get('variant', ''), entry.arch)}: pick a Kontext, Klein "
            "or Qwen-Image-Edit model, or use inpaint with a prompt",
            field="mode",
        )
    if job.mode == "edit" and job.image is None:
        raise ProtocolError(UNSUPPORTED, "edit needs the image to edit", field="image")
    refuse_sd_sampling_options(job, entry)
    if job.regions and entry.arch not in region_families:
        raise refuse_regions(job, arch_name(entry.arch), entry.name)
    if job.params.tileable and qwen.is_qwen(entry.arch):
        raise ProtocolError(
            UNSUPPORTED,
            f"tileable results need a VAE with 2-D convolutions; '{entry.name}' is {specs.NAMES[entry.arch]}, "
            "whose 3-D VAE cannot wrap around: turn tileable off, or pick another model",
            field="params.tileable",
        )
    if entry.arch == specs.FLUX2_KLEIN:  # Klein sees reference pictures itself
        klein.check_job(job, entry)
    elif job.references and qwen.is_qwen(entry.arch):  # Edit Plus: more pictures beside the edited one
        qwen.check_references(job, entry, specs.SPECS[entry.arch].references)
    elif job.references:  # reference images: what Flux Redux can honour, refused by name otherwise
        redux.check(job.references, entry)
    check_loras(job, entry, registry)
    controlnets.select(list(job.controls), entry, job.mode, registry)


def refuse_sd_sampling_options(job: Job, entry: ModelEntry) -> None:
    """A VAE, CLIP skip or SDXL refiner belong to SD1.5/SDXL checkpoints: refused by name here."""
    params = job.params
    for field, given, what in (
        ("vae", params.vae, "another VAE"),
        ("clip_skip", params.clip_skip > 1, "CLIP skip"),
        ("refiner", params.refiner, "an SDXL refiner"),
    ):
        if given:
            raise ProtocolError(
                UNSUPPORTED,
                f"{what} works with SD1.5 and SDXL checkpoints; '{entry.name}' is "
                f"{arch_name(entry.arch)}: leave {field} empty",
                field=f"params.{field}",
            )
