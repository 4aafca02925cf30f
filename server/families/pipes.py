"""A families checkpoint in memory and the pipelines made from it: loading in the right dtype, placing the weights
(``memory``), the model's native side, and the pipeline per kind of job (with a ControlNet) sharing the loaded
modules."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
from typing import Dict, Optional, Tuple

from .. import calibration
from ..checkpoint.engine import LoadedCheckpoint
from ..diffusion.adapters import Adapters
from ..models.identify import DIFFUSERS
from ..models.registry import ModelEntry, ModelRegistry
from . import controlnets, klein, layered, loading, memory, preview, qwen, redux, specs

log = logging.getLogger(__name__)

NATIVE_KEY = "_paintbridge_native_px"  # optional in model_index.json: a model's native side in pixels
DEFAULT_NATIVE = 1024


@dataclasses.dataclass(kw_only=True)
class Loaded(LoadedCheckpoint):
    facts: dict
    native: int
    controlnets: Dict[str, object] = dataclasses.field(default_factory=dict)  # ControlNet modules by file path
    preview: Optional[tuple] = None  # (W, b) of preview.fit: latents -> RGB for progress previews
    redux: Optional[redux.ReduxSet] = None  # reference images: Flux Redux parts, loaded on first use


def load(entry: ModelEntry, registry: ModelRegistry, device, dtype, dtype_asked: bool) -> Loaded:
    """``entry``'s pipeline in the dtype ``dtype_for`` picks, its preview map, placed as ``place`` decides, with its
    LoRAs' adapters."""
    chosen, why = dtype_for(entry, registry, device, dtype, dtype_asked)
    pipe, facts = loading.load(entry, chosen, registry)
    facts["dtype"] = why
    try:  # measured on the CPU, before the model is placed
        fit = (
            qwen.fit_preview
            if qwen.is_qwen(entry.arch)
            else klein.fit_preview
            if entry.arch == specs.FLUX2_KLEIN
            else preview.fit
        )
        rgb_map = fit(pipe.vae)
    except Exception as err:  # noqa: BLE001 - previews are optional; the job must not fail for them
        log.warning("no progress previews for %s: %s", entry.name, err)
        rgb_map = None
    place(pipe, entry, facts, device)
    adapters = Adapters(pipe, entry, registry)  # the LoRAs it takes: ``models.lorafit``
    return Loaded(
        entry=entry, pipe=pipe, facts=facts, native=native_px(entry, pipe), adapters=adapters, preview=rgb_map
    )


def dtype_for(entry: ModelEntry, registry: ModelRegistry, device, dtype, dtype_asked: bool) -> Tuple[object, str]:
    """The dtype to load ``entry`` in, and why: as asked (``--dtype``), the GPU's, or on the CPU bf16 where the
    CPU has native bf16 and the fp32 weights would crowd the RAM (``memory.choose_cpu_dtype``)."""
    import torch

    name = str(dtype).rsplit(".", 1)[-1]
    if dtype_asked or device.type != "cpu":
        return dtype, name
    parameters, _ = memory.stored(loading.weight_files(entry, registry))
    chosen, why = memory.choose_cpu_dtype(calibration.cpu_flags(), parameters, memory.ram_bytes(), name)
    return getattr(torch, chosen), why


def place(pipe, entry: ModelEntry, facts: dict, device) -> None:
    """Place the pipeline as ``memory.choose_placement`` decides from the GPU's free memory, the modules' sizes and
    the precision the checkpoint stores; the choice goes into each result's ``info["memory"]``."""
    free = 0
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
    _, stored_dtype = memory.stored(loading.transformer_files(entry), loading.transformer_prefix(entry))
    compute = str(pipe.vae.dtype).rsplit(".", 1)[-1]  # the VAE runs in the compute dtype (a GGUF transformer's
    # parameters are uint8 blocks)
    placement = memory.choose_placement(
        free,
        memory.module_parameters(pipe),
        stored_dtype,
        device.type,
        compute,
        fp8_casting=hasattr(pipe.transformer, "enable_layerwise_casting"),
    )
    memory.apply(pipe, placement, device, pipe.vae.dtype)
    facts["memory"], facts["placement"] = placement.reason, placement.where
    facts["stored_dtype"] = stored_dtype


def variant(loaded: Loaded, kind: str, device, plan: Optional[controlnets.ControlPlan] = None):
    """The family's pipeline for ``kind`` (txt2img, img2img, inpaint, edit), sharing the loaded modules; with a
    ControlNet ``plan``, the family's ControlNet pipeline for ``kind`` with that ControlNet."""
    import diffusers

    spec = specs.SPECS[loaded.entry.arch]
    cls = getattr(diffusers, spec.pipeline(kind) if plan is None else spec.control_pipeline(kind))
    if type(loaded.pipe) is cls and plan is None:
        return loaded.pipe
    key = (cls, plan.entry.path if plan is not None else None)
    if key not in loaded.variants:
        extra = {}
        if plan is not None:
            path = str(plan.entry.path)
            if path not in loaded.controlnets:
                loaded.controlnets.clear()  # one ControlNet kept beside the checkpoint
                loaded.variants = {k: v for k, v in loaded.variants.items() if k[1] is None}
                loaded.controlnets[path] = _place_module(
                    controlnets.load(plan.entry, loaded.entry, loaded.pipe.transformer, loaded.pipe.vae.dtype),
                    loaded,
                    device,
                )
            extra["controlnet"] = loaded.controlnets[path]
        if getattr(loaded.pipe.transformer, "is_quantized", False):  # GGUF: from_pipe would cast it, and fail
            names = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
            loaded.variants[key] = cls(**{n: extra.get(n, loaded.pipe.components.get(n)) for n in names})
        else:
            loaded.variants[key] = cls.from_pipe(loaded.pipe, dtype=loaded.pipe.vae.dtype, **extra)
        loaded.variants[key].set_progress_bar_config(disable=True)
        if loaded.facts.get("placement") in (memory.MODEL_OFFLOAD, memory.SEQUENTIAL_OFFLOAD):
            # the new pipeline (and its ControlNet) gets the same offload hooks
            memory.apply(
                loaded.variants[key],
                memory.Placement(loaded.facts["placement"], False, ""),
                device,
                loaded.pipe.vae.dtype,
            )
    return loaded.variants[key]


def _place_module(module, loaded: Loaded, device):
    """A module added to a loaded pipeline goes where the pipeline's transformer runs (offload: to the CPU)."""
    if loaded.facts.get("placement") in (memory.MODEL_OFFLOAD, memory.SEQUENTIAL_OFFLOAD):
        return module  # the offload hooks move it
    return module.to(device)


def native_px(entry: ModelEntry, pipe) -> int:
    """The model's native side: ``_paintbridge_native_px`` in its model_index.json, SD3's sample size, else 1024."""
    folder = entry.path if entry.format == DIFFUSERS else loading.config_dir(entry)
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        if index.get(NATIVE_KEY):
            return int(index[NATIVE_KEY])
    except (OSError, ValueError):
        pass
    if entry.arch == specs.qwen.QWEN_LAYERED:
        return layered.NATIVE
    sample = getattr(pipe.transformer.config, "sample_size", None)
    if entry.arch == specs.SD3 and sample:
        return int(sample) * int(pipe.vae_scale_factor)
    return DEFAULT_NATIVE
