"""The diffusers engine: runs generate / img2img / inpaint / outpaint jobs on SD1.5-class and SDXL-class checkpoints,
with ControlNets, LoRAs, embeddings, weighted prompts and the samplers users know.

One checkpoint is kept warm; every mode's pipeline is made from it with ``from_pipe`` (shared weights, no reload), and
switching checkpoints frees the old one. The context box is processed at the model's native area and scaled back;
outside the (grown) mask the result equals the input exactly. When the device runs out of memory the engine degrades
(``MEMORY_FALLBACKS``: VAE tiling and slicing, then model CPU offload on a GPU), runs the job again, and says so in each
result layer's ``info["memory_fallbacks"]``.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import random
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, OUT_OF_MEMORY, UNSUPPORTED, ProtocolError

from .. import device as devices
from .. import imageops
from ..core import Engine, Job, JobContext, Layer
from ..defaults import DEFAULT_STRENGTH
from ..models import loading
from ..models.registry import ModelEntry, ModelRegistry, arch_name
from . import controls as control_plans
from . import pipelines, prompts, samplers
from .adapters import Adapters
from .preview import latents_to_rgb

log = logging.getLogger(__name__)
# diffusers warns on every ``.to()`` of a model even when no module needs keeping in float32; that says nothing here.
logging.getLogger("diffusers.models.modeling_utils").setLevel(logging.ERROR)

MODES = ("generate", "img2img", "inpaint", "outpaint")
MAX_CONTROLNETS_KEPT = 4
# What the engine turns on, in this order, each time a job runs out of device memory (then it runs the job again).
# A fallback stays on while the checkpoint is loaded. Model CPU offload only helps on a GPU.
VAE_TILING = "vae tiling and slicing"
CPU_OFFLOAD = "model cpu offload"
MEMORY_FALLBACKS = (VAE_TILING, CPU_OFFLOAD)


@dataclasses.dataclass
class LoadedCheckpoint:
    """A checkpoint in memory: its pipeline, the scheduler config it came with, LoRAs/embeddings, mode variants."""

    entry: ModelEntry
    pipe: object
    adapters: Adapters
    scheduler_config: dict
    variants: Dict[type, object] = dataclasses.field(default_factory=dict)
    memory_fallbacks: List[str] = dataclasses.field(default_factory=list)


class DiffusionEngine(Engine):
    """Runs diffusion jobs; ``loads`` counts checkpoint loads (a mode switch never adds one)."""

    name = "diffusers"
    modes = MODES
    uses_controls = True

    def __init__(self, registry: ModelRegistry, device: Optional[str] = None, dtype: Optional[str] = None) -> None:
        self.registry = registry
        self.device, self.dtype = devices.choose(device, dtype)
        _quiet_loaders()
        self.loaded: Optional[LoadedCheckpoint] = None
        self.controlnets: Dict[str, object] = {}
        self.loads = 0
        self._lock = threading.Lock()

    def device_description(self) -> str:
        return devices.describe(self.device, self.dtype)

    def models(self) -> List[dict]:
        return [e.listing() for e in self.registry.entries("checkpoint")]

    # --- model management ---

    def checkpoint_entry(self, name: str) -> ModelEntry:
        """The job's checkpoint, or the default one."""
        if name:
            return self.registry.get(name, "checkpoint")
        entry = self.registry.default_checkpoint()
        if entry is None:
            raise ProtocolError(MODEL_NOT_FOUND, "no usable diffusion checkpoint is installed: put a .safetensors "
                              "checkpoint in the models folder's checkpoints/", field="model")
        return entry

    def checkpoint(self, entry: ModelEntry) -> LoadedCheckpoint:
        """The loaded pipeline of ``entry``; a different checkpoint is freed first."""
        if self.loaded is not None and self.loaded.entry.path == entry.path:
            return self.loaded
        self.unload()
        started = time.perf_counter()
        pipe = loading.load_checkpoint(entry, self.dtype, allow_pickle=self.registry.allow_pickle)
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.loads += 1
        log.info("loaded %s (%s) in %.1f s", entry.name, arch_name(entry.arch), time.perf_counter() - started)
        self.loaded = LoadedCheckpoint(entry, pipe, Adapters(pipe, entry, self.registry), dict(pipe.scheduler.config))
        return self.loaded

    def warm_up(self, name: str = "") -> None:
        """Load a checkpoint (the default one without a name) before any job needs it."""
        with self._lock:
            self.checkpoint(self.checkpoint_entry(name))

    def unload(self) -> None:
        """Free the loaded checkpoint (and ControlNets of another architecture)."""
        if self.loaded is None:
            return
        self.loaded = None
        self.controlnets.clear()
        gc.collect()
        devices.empty_cache(self.device)

    def controlnet(self, entry: ModelEntry):
        key = str(entry.path)
        if key not in self.controlnets:
            while len(self.controlnets) >= MAX_CONTROLNETS_KEPT:
                self.controlnets.pop(next(iter(self.controlnets)))
            unet = self.loaded.pipe.unet.config if self.loaded is not None else None
            net = loading.load_controlnet(entry, self.dtype, allow_pickle=self.registry.allow_pickle, unet_config=unet)
            self.controlnets[key] = net.to(self.device)
        return self.controlnets[key]

    # --- jobs ---

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        """Run one job; ProtocolError for what cannot be done, JobCancelled when cancelled.

        A job that runs out of device memory is run again with the next of ``MEMORY_FALLBACKS`` turned on; when none
        is left it fails with ``out_of_memory``.
        """
        if job.mode not in self.modes:
            raise self.refuse_mode(job)
        with self._lock:
            while True:
                try:
                    layers = self._run(job, ctx)
                    break
                except MemoryError as err:
                    hint = str(err) or "try a smaller selection or batch"
                    raise ProtocolError(OUT_OF_MEMORY, f"the server ran out of memory: {hint}") from err
                except Exception as err:
                    if not devices.is_out_of_memory(err):
                        raise
                    devices.empty_cache(self.device)
                    fallback = self._next_memory_fallback()
                    if fallback is None:
                        tried = ", ".join(self.loaded.memory_fallbacks) if self.loaded else ""
                        raise ProtocolError(OUT_OF_MEMORY, f"the {self.device.type.upper()} device ran out of memory"
                                            + (f" even with {tried}" if tried else "") + ": try a smaller batch, a "
                                            "smaller selection or a lower precision") from err
                    log.warning("out of memory on %s: running the job again with %s", self.device, fallback)
            if self.loaded is not None and self.loaded.memory_fallbacks:
                for layer in layers:
                    layer.info["memory_fallbacks"] = list(self.loaded.memory_fallbacks)
            return layers

    def _next_memory_fallback(self) -> Optional[str]:
        """Turn on the next memory fallback for the loaded checkpoint; its name, or None when none is left."""
        loaded = self.loaded
        if loaded is None:
            return None
        for fallback in MEMORY_FALLBACKS:
            if fallback in loaded.memory_fallbacks:
                continue
            if fallback == VAE_TILING:
                loaded.pipe.vae.enable_tiling()
                loaded.pipe.vae.enable_slicing()
            elif fallback == CPU_OFFLOAD:
                if self.device.type == "cpu":
                    continue
                loaded.pipe.enable_model_cpu_offload(device=self.device)
            loaded.memory_fallbacks.append(fallback)
            return fallback
        return None

    def _control_images(self, plans, work: Job, hard: np.ndarray, pw: int, ph: int, ctx: JobContext) -> list:
        """Each ControlNet's input at processing size (preprocessed when asked; inpaint ones from image and mask)."""
        images = []
        for plan in plans:
            if control_plans.uses_inpaint_condition(plan) and work.image is not None:
                images.append(control_plans.inpaint_tensor(imageops.resize(work.image[..., :3], pw, ph),
                                                              imageops.resize(hard, pw, ph)))
            else:
                rgb = ctx.interruptible(control_plans.control_image, plan.control, self.registry, work.params,
                                        str(self.device))  # preprocessing a large control layer takes seconds
                images.append(_pil(imageops.resize(rgb, pw, ph)))
        return images

    def _run(self, job: Job, ctx: JobContext) -> List[Layer]:
        import torch

        entry = self.checkpoint_entry(job.model)
        plans = control_plans.select(job.controls, entry, self.registry) if job.controls else []
        ctx.check()
        loaded = self.checkpoint(entry)
        pipe = loaded.pipe

        prompt, tags = prompts.extract_loras(job.prompt)
        negative, neg_tags = prompts.extract_loras(job.negative_prompt)
        loras = loaded.adapters.apply_loras(tags + neg_tags)
        embeddings = loaded.adapters.load_embeddings(prompt, negative)

        work, original = _working_job(job)
        plans = [dataclasses.replace(p, control=c) for p, c in zip(plans, work.controls)]
        hard, soft = imageops.prepare_mask(work)
        native = pipe.unet.config.sample_size * pipe.vae_scale_factor
        pw, ph = imageops.processing_size(work.width, work.height, native * native, multiple=pipe.vae_scale_factor)

        masked = job.mode in ("inpaint", "outpaint") or entry.inpaint
        kind = "inpaint" if masked else "img2img" if job.mode == "img2img" else "txt2img"
        nets = [self.controlnet(p.entry) for p in plans]
        union = bool(plans) and plans[0].entry.info.get("union")
        runner = pipelines.variant(loaded, kind, nets, union)

        settings = _settings(job, entry, kind)
        runner.scheduler = samplers.make_scheduler(settings["sampler"], loaded.scheduler_config)
        steps, seeds = settings["steps"], settings["seeds"]
        call = dict(num_inference_steps=steps, guidance_scale=settings["cfg"], num_images_per_prompt=1,
                    output_type="np")
        call.update(prompts.encode(runner, prompt, negative, self.device).kwargs())
        call.update(_image_inputs(work, kind, hard, pw, ph, settings["strength"]))
        if plans:
            images = self._control_images(plans, work, hard, pw, ph, ctx)
            call.update(pipelines.control_kwargs(kind, plans, images, union))

        arch = entry.arch
        done = [0]  # images finished, for progress over the whole batch

        def on_step(pipe_, step: int, timestep, tensors: dict) -> dict:
            per_image = getattr(pipe_, "num_timesteps", None) or steps
            preview = latents_to_rgb(tensors["latents"], arch) if job.previews else None
            ctx.progress(done[0] * per_image + min(step + 1, per_image), per_image * len(seeds), preview)
            return tensors

        started = time.perf_counter()
        images = []
        # One call per image: each seed then gives the same pixels whether it ran alone or in a batch.
        for s in seeds:
            ctx.check()
            with torch.inference_mode():
                out = runner(**call, generator=torch.Generator("cpu").manual_seed(s), callback_on_step_end=on_step,
                             callback_on_step_end_tensor_inputs=["latents"])
            if not np.isfinite(out.images).all():
                raise ProtocolError(UNSUPPORTED, f"checkpoint '{entry.name}' produced invalid numbers (NaN): its weights "
                                  f"do not fit its {arch_name(arch)} architecture or precision {self.dtype}")
            images.append(np.clip(np.rint(out.images[0] * 255), 0, 255).astype(np.uint8))
            done[0] += 1
        elapsed = time.perf_counter() - started

        info = {"model": entry.name, "arch": arch, "sampler": settings["sampler"], "steps": steps,
                "cfg": settings["cfg"], "strength": settings["strength"], "size": [pw, ph], "loras": loras,
                "embeddings": embeddings, "controlnets": [p.entry.name for p in plans], "seconds": round(elapsed, 3)}
        return _layers(job, work, original, soft, images, seeds, info)


def _settings(job: Job, entry: ModelEntry, kind: str) -> dict:
    """Sampler, steps, strength, CFG and seeds of a job, with the defaults filled in."""
    params = job.params
    sampler = params.sampler or samplers.DEFAULT_SAMPLER
    strength = params.strength if params.strength is not None else DEFAULT_STRENGTH[job.mode]
    if job.mode == "generate":
        strength = 1.0
    steps = params.steps
    if kind != "txt2img":  # diffusers runs int(steps * strength) steps: keep at least one
        strength = max(strength, 1.0 / steps)
    cfg = params.cfg if params.cfg is not None else samplers.default_cfg(sampler, entry.arch)
    seed = params.seed if params.seed >= 0 else random.randrange(2**32)
    return {"sampler": sampler, "strength": strength, "steps": steps, "cfg": cfg,
            "seeds": [(seed + i) % 2**32 for i in range(params.batch)]}


def _image_inputs(work: Job, kind: str, hard: np.ndarray, pw: int, ph: int, strength: float) -> dict:
    """The pipeline's size and image arguments: processing size (txt2img, inpaint; img2img takes it from the
    image), init image (img2img, inpaint) and mask (inpaint)."""
    if kind == "txt2img":
        return {"height": ph, "width": pw}
    if work.image is not None:
        init = np.ascontiguousarray(work.image[..., :3])
    else:
        init = np.full((work.height, work.width, 3), 127, np.uint8)
    out = {"image": _pil(imageops.resize(init, pw, ph)), "strength": strength}
    if kind == "inpaint":
        out.update(mask_image=_pil(_binary(imageops.resize(hard, pw, ph))), height=ph, width=pw)
    return out


def _layers(job: Job, work: Job, original: Optional[np.ndarray], soft: np.ndarray, images: List[np.ndarray],
            seeds: List[int], info: dict) -> List[Layer]:
    """Result layers at the context size: generated pixels inside the soft mask, the original exactly outside."""
    width, height = work.width, work.height
    base = original if original is not None else np.zeros((height, width, 4), np.uint8)
    layers = []
    for i, (img, s) in enumerate(zip(images, seeds)):
        rgba = imageops.composite_layer(base, imageops.resize(img, width, height), soft)
        if original is None:
            rgba[..., 3] = 255
        name = f"{job.mode} {s}" if len(seeds) == 1 else f"{job.mode} {i + 1}/{len(seeds)} ({s})"
        layers.append(Layer(name=name, rgba=rgba, x=work.x, y=work.y, seed=s, info=dict(info)))
    return layers


def _working_job(job: Job) -> Tuple[Job, Optional[np.ndarray]]:
    """The job as processed (outpaint: on the extended canvas, pre-filled; placed further up/left) and the original
    RGBA pixels the result is composited over (None when generating without an image)."""
    if job.mode != "outpaint":
        return job, job.image
    ext = job.params.extend
    canvas, new_area = imageops.extend_canvas(job.image, ext)
    filled = canvas.copy()
    filled[..., :3] = imageops.fill(np.ascontiguousarray(canvas[..., :3]), new_area, job.params.fill)
    controls = [dataclasses.replace(c, image=imageops.extend_canvas(imageops.rgba(c.image), ext)[0][..., :3])
                for c in job.controls]  # control layers cover the original area; the new area gets none (black)
    work = dataclasses.replace(job, image=filled, mask=new_area, x=job.x - ext.left, y=job.y - ext.top,
                               controls=controls)
    return work, canvas


def _binary(mask: np.ndarray) -> np.ndarray:
    return np.where(mask > 0, 255, 0).astype(np.uint8)


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)


def _quiet_loaders() -> None:
    """No per-component progress bars in the server's log: the engine logs each load with its time."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
