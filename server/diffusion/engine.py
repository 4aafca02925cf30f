"""The diffusers engine: runs generate / img2img / inpaint / outpaint jobs on SD1.5-class and SDXL-class checkpoints,
with ControlNets, LoRAs, embeddings, weighted prompts and the samplers users know.

One checkpoint is kept warm; every mode's pipeline is made from it with ``from_pipe`` (shared weights, no reload), and
switching checkpoints frees the old one. The context box is processed at the model's native area and scaled back;
outside the (grown) mask the result equals the input exactly. When the device runs out of memory the engine degrades
(``MEMORY_FALLBACKS``: VAE tiling and slicing, then model CPU offload on a GPU), runs the job again, and says so in each
result layer's ``info["memory_fallbacks"]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, OUT_OF_MEMORY, UNSUPPORTED, ProtocolError

from .. import device as devices
from .. import imageops, seamless
from ..core import Engine, Job, JobContext, Layer
from ..detect import Detectors
from ..models import loading
from ..models.registry import ModelEntry, ModelRegistry, arch_name
from . import cache
from . import controls as control_plans
from . import latents as latents_of
from . import detail as detailer
from . import hires as hires_fix
from . import pipelines, prompts, regions, samplers, stepcache, tiny_vae, transparency
from . import references as refs
from .adapters import Adapters
from .hires_pass import second_pass
from .jobparts import _binary, _init_image, _layers, _pil, _settings, _working_job
from .preview import latents_to_rgb

log = logging.getLogger(__name__)
# diffusers warns on every ``.to()`` of a model even when no module needs keeping in float32; that says nothing here.
logging.getLogger("diffusers.models.modeling_utils").setLevel(logging.ERROR)

MODES = ("generate", "img2img", "inpaint", "outpaint", "detail")
MAX_CONTROLNETS_KEPT = 4
PREPROCESS_PARAMS = ("low_threshold", "high_threshold")
# bytes each content-keyed cache may hold (least recently used values go first)
CACHE_BUDGETS = {
    "prompts": 64 << 20,
    "latents": 128 << 20,
    "masks": 256 << 20,
    "controls": 128 << 20,
    "references": 64 << 20,
}
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
    references: Optional[refs.ReferenceSet] = None  # reference images: IP-Adapters in the UNet
    own_vae: object = None  # the checkpoint's VAE (a job may decode with another one: ``params.vae``)

    def use_vae(self, vae) -> None:
        """Decode and encode with ``vae`` in the pipeline and every mode variant (shared modules)."""
        for pipe in (self.pipe, *self.variants.values()):
            if pipe.vae is not vae:
                pipe.vae = vae


class DiffusionEngine(Engine):
    """Runs diffusion jobs; ``loads`` counts checkpoint loads (a mode switch never adds one)."""

    name = "diffusers"
    modes = MODES
    uses_controls = True
    reference_families = refs.ipa.REFERENCE_FAMILIES
    region_families = regions.FAMILIES  # regions
    speed_families = {"fast": stepcache.FAMILIES}

    def __init__(self, registry: ModelRegistry, device: Optional[str] = None, dtype: Optional[str] = None) -> None:
        self.registry = registry
        self.device, self.dtype = devices.choose(device, dtype)
        _quiet_loaders()
        self.loaded: Optional[LoadedCheckpoint] = None
        self.controlnets: Dict[str, object] = {}
        self.loads = 0
        self._lock = threading.Lock()
        self.caches = {name: cache.BoundedCache(name, budget) for name, budget in CACHE_BUDGETS.items()}
        self._tiny: Dict[str, object] = {}
        # Besides the checkpoint, at most one job-chosen VAE and one SDXL refiner stay loaded (path, module); both go
        # when the checkpoint is unloaded, and a different choice replaces them.
        self.vae: Optional[Tuple[str, object]] = None
        self.refiner: Optional[Tuple[str, object]] = None
        # hires fix and detailer: face detectors of the models folders; the upscale-model function of the
        # hires fix's pixel upscale (the router wires the upscale engine's)
        self.detectors = Detectors(registry.dirs)
        self.pixel_upscaler: Optional[hires_fix.PixelUpscaler] = None
        self._wrapping = contextlib.ExitStack()  # a tileable job's circular padding, undone when its ``run`` ends

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
            raise ProtocolError(
                MODEL_NOT_FOUND,
                "no usable diffusion checkpoint is installed: put a .safetensors "
                "checkpoint in the models folder's checkpoints/",
                field="model",
            )
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
        self.loaded = LoadedCheckpoint(
            entry,
            pipe,
            Adapters(pipe, entry, self.registry),
            dict(pipe.scheduler.config),
            references=refs.ReferenceSet(self.registry, self.device, self.dtype),
            own_vae=pipe.vae,
        )
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
        self.vae = self.refiner = None
        self.controlnets.clear()
        for c in self.caches.values():
            c.clear()
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
        with self._lock, contextlib.ExitStack() as self._wrapping:  # tileable jobs' circular padding ends with the job
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
                        raise ProtocolError(
                            OUT_OF_MEMORY,
                            f"the {self.device.type.upper()} device ran out of memory"
                            + (f" even with {tried}" if tried else "")
                            + ": try a smaller batch, a "
                            "smaller selection or a lower precision",
                        ) from err
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
        """Each ControlNet's input at processing size (preprocessed when asked; inpaint ones from image and mask),
        cached by content and the preprocessing settings."""
        images = []
        params = work.params
        for plan in plans:
            control = plan.control
            if control_plans.uses_inpaint_condition(plan) and work.image is not None:
                key = ("inpaint", cache.digest(work.image, hard), pw, ph)

                def make():
                    return control_plans.inpaint_tensor(
                        imageops.resize(work.image[..., :3], pw, ph), imageops.resize(hard, pw, ph)
                    )
            else:
                settings = tuple(getattr(params, k) for k in PREPROCESS_PARAMS) if control.preprocess else ()
                seed = params.seed if control.preprocess and control.type == "shuffle" else None
                key = (control.type, control.preprocess, cache.digest(control.image), settings, seed, pw, ph)

                def make(c=control):
                    return _pil(
                        imageops.resize(
                            ctx.interruptible(control_plans.control_image, c, self.registry, params, str(self.device)),
                            pw,
                            ph,
                        )
                    )

            images.append(self.caches["controls"].get(key, make))
        return images

    def _run(self, job: Job, ctx: JobContext) -> List[Layer]:
        import torch

        if job.mode == "detail":  # the detailer on its own: an inpaint sub-job per detection
            self.checkpoint_entry(job.model)
            return detailer.run_detail_mode(self._run, self.detectors.detect, job, ctx)
        entry = self.checkpoint_entry(job.model)
        if job.regions and entry.arch not in regions.FAMILIES:
            raise self.refuse_regions(job, arch_name(entry.arch), entry.name)
        plans = control_plans.select(job.controls, entry, self.registry) if job.controls else []
        ref_plans = refs.select(job.references, entry, self.registry) if job.references else []
        ctx.check()
        loaded = self.checkpoint(entry)
        pipe = loaded.pipe
        loaded.references.load(pipe, ref_plans, entry.name)

        prompt, tags = prompts.extract_loras(job.prompt)
        negative, neg_tags = prompts.extract_loras(job.negative_prompt)
        region_texts, region_tags = regions.texts(job.regions, prompt, negative)
        loras = loaded.adapters.apply_loras(tags + neg_tags + region_tags)
        embeddings = loaded.adapters.load_embeddings(prompt, negative, *(t for pair in region_texts for t in pair))

        vae_name = self._use_vae(loaded, job.params.vae)
        refiner = self._refiner(entry, job.params.refiner, bool(plans))
        work, original = _working_job(job, self.registry, ctx.check, lambda: str(self.device))
        plans = [dataclasses.replace(p, control=c) for p, c in zip(plans, work.controls)]
        hard, soft = self._mask(work)
        native = pipe.unet.config.sample_size * pipe.vae_scale_factor
        pw, ph = imageops.processing_size(work.width, work.height, native * native, multiple=pipe.vae_scale_factor)

        masked = job.mode in ("inpaint", "outpaint") or entry.inpaint
        kind = "inpaint" if masked else "img2img" if job.mode == "img2img" else "txt2img"
        nets = [self.controlnet(p.entry) for p in plans]
        tileable = bool(job.params.tileable) and job.mode in seamless.MODES
        if tileable:  # every convolution wraps around: the picture is a torus (put back when ``run`` ends)
            self._wrapping.enter_context(seamless.circular(pipe.unet, pipe.vae, *nets, getattr(refiner, "unet", None)))
        union = bool(plans) and plans[0].entry.info.get("union")
        runner = pipelines.variant(loaded, kind, nets, union)

        layer_plan = (
            transparency.plan(job, entry, self.registry, bool(getattr(job, "live", False)))
            if job.params.transparent
            else None
        )
        preset = self._few_step_preset(entry, tags)
        settings = _settings(job, entry, kind, preset)
        runner.scheduler = samplers.make_scheduler(
            settings["sampler"], loaded.scheduler_config, preset["spacing"] if preset else None, settings["scheduler"]
        )
        steps, seeds = settings["steps"], settings["seeds"]
        call = dict(
            num_inference_steps=steps,
            guidance_scale=settings["cfg"],
            num_images_per_prompt=len(seeds),
            output_type="np",
        )
        call.update(self._conditioning(loaded, runner, prompt, negative, job.params.clip_skip).kwargs())
        region_plan = (
            self._region_plan(loaded, runner, work, region_texts, pw, ph, len(seeds)) if work.regions else None
        )
        init = _init_image(work, kind, pw, ph, tileable)
        call.update(
            self._image_inputs(
                loaded, init, kind, bool(plans), hard, pw, ph, settings["strength"], len(seeds), tileable
            )
        )
        if layer_plan is not None and kind == "img2img":  # the layer's alpha travels in the latents
            rgba = imageops.resize(np.ascontiguousarray(imageops.rgba(work.image)), pw, ph)
            call["image"] = layer_plan.encoded(pipe.vae, rgba, str(self.device)).repeat(len(seeds), 1, 1, 1)
        if plans:
            images = self._control_images(plans, work, hard, pw, ph, ctx)
            call.update(pipelines.control_kwargs(kind, plans, images, union))
        ref_scales = None
        if ref_plans:  # reference images: embeddings, masks, and the scales of the first step
            cfg_on = settings["cfg"] > 1 and pipe.unet.config.time_cond_proj_dim is None
            call["ip_adapter_image_embeds"] = [self._reference_embeddings(loaded, p, cfg_on) for p in ref_plans]
            ref_masks = refs.masks(work.references, pw, ph)
            if ref_masks is not None:
                call["cross_attention_kwargs"] = {"ip_adapter_masks": ref_masks}
            ref_scales = refs.scales(entry.arch, work.references, 0.0)
            runner.set_ip_adapter_scale(ref_scales)

        arch = entry.arch
        tiny = self.tiny_vae(arch)
        fast_decode = tiny is not None and bool(getattr(job, "live", False)) and refiner is None
        # Only the box around the mask is decoded: outside it the result layer keeps the original pixels anyway.
        # hires fix: a second pass at the target size (fw x fh) after this one at the native area
        two = hires_fix.plan(
            job.params.hires,
            work.width,
            work.height,
            pw,
            ph,
            pipe.vae_scale_factor,
            steps,
            bool(getattr(job, "live", False)),
        )
        if two is not None and refiner is not None:
            raise ProtocolError(
                UNSUPPORTED,
                "the SDXL refiner and the hires fix do not run in one job: switch one of them off",
                field="params.refiner",
            )
        if two is not None and two.upscaler not in (hires_fix.LATENT, hires_fix.LANCZOS):
            self.registry.get(two.upscaler, "upscaler")  # model_not_found names what is installed
        fw, fh = (two.width, two.height) if two is not None else (pw, ph)
        box = (
            None
            if fast_decode or kind != "inpaint" or refiner is not None
            else latents_of.decode_box(soft, fw, fh, pipe.vae_scale_factor, pipe.vae.config)
        )
        if fast_decode or box is not None or refiner is not None or layer_plan is not None:
            call["output_type"] = "latent"
        if refiner is not None:
            call["denoising_end"] = job.params.refiner_start
        done = [0]  # steps of the base pass, once the refiner runs
        # progress counts both hires passes: steps done before this pass, steps still to come after it
        count = {"before": 0, "after": hires_fix.second_pass_steps(two) if two is not None else 0, "total": 0}

        def on_step(pipe_, step: int, timestep, tensors: dict) -> dict:
            nonlocal ref_scales
            this_pass = getattr(pipe_, "num_timesteps", None) or steps
            if (
                ref_scales is not None and pipe_ is not refiner
            ):  # the next step's reference scales (0 outside its range)
                wanted = refs.scales(entry.arch, work.references, (step + 1) / this_pass)
                if wanted != ref_scales:
                    pipe_.set_ip_adapter_scale(wanted)
                    ref_scales = wanted
            total = count["before"] + this_pass + count["after"]
            if refiner is not None:  # the base pass, then the refiner's steps after it
                total = max(done[0] + this_pass, steps) if done[0] else steps
            count["total"] = total
            preview = None
            if job.previews:
                latents = tensors["latents"]
                preview = tiny_vae.preview(tiny, latents) if tiny is not None else latents_to_rgb(latents, arch)
            ctx.progress(min(count["before"] + done[0] + step + 1, total), total, preview)
            return tensors

        started = time.perf_counter()
        ctx.check()
        # One call for the whole batch, one generator per image: each seed gives the same pixels alone or in a batch.
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        with torch.inference_mode():
            fast = job.params.speed == "fast"
            if two is not None:
                with regions.applied(runner.unet, region_plan), stepcache.maybe_applied(runner.unet, fast):
                    # regions shape the first pass: the composition
                    first = runner(
                        **dict(call, output_type="latent"),
                        generator=generators,
                        callback_on_step_end=on_step,
                        callback_on_step_end_tensor_inputs=["latents"],
                    )
                count.update(before=getattr(runner, "num_timesteps", None) or steps, after=0)
                ctx.check()
                runner, call = second_pass(
                    self, loaded, two, kind, plans, nets, union, work, hard, first.images, settings, call, preset, ctx
                )
                init = _init_image(work, kind, fw, fh, tileable)
                generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
                region_plan = None  # the second pass refines the whole picture at the target size
            transparent = layer_plan.applied(runner.unet) if layer_plan is not None else contextlib.nullcontext()
            with (
                regions.applied(runner.unet, region_plan),
                transparent,
                stepcache.maybe_applied(runner.unet, fast) as reuse,
            ):
                out = runner(
                    **call,
                    generator=generators,
                    callback_on_step_end=on_step,
                    callback_on_step_end_tensor_inputs=["latents"],
                )
            if refiner is not None:
                done[0] = getattr(runner, "num_timesteps", 0) or int(steps * job.params.refiner_start)
                out = self._run_refiner(refiner, pipe, out.images, prompt, negative, settings, generators, on_step)
            alphas = None
            if fast_decode:
                images = tiny_vae.to_uint8(tiny_vae.decode(tiny, out.images))
            elif layer_plan is not None:  # colour and alpha from LayerDiffuse's transparent decoder
                images, alphas = transparency.decode(pipe.vae, out.images, layer_plan.decoder_model(str(self.device)))
            else:
                if box is not None:
                    out.images = latents_of.decode_into(pipe.vae, out.images, box, init, pipe.vae_scale_factor)
                if not np.isfinite(out.images).all():
                    raise ProtocolError(
                        UNSUPPORTED,
                        f"checkpoint '{entry.name}' produced invalid numbers (NaN): its "
                        f"weights do not fit its {arch_name(arch)} architecture or precision {self.dtype}",
                    )
                images = [np.clip(np.rint(img * 255), 0, 255).astype(np.uint8) for img in out.images]
        elapsed = time.perf_counter() - started

        info = {
            "model": entry.name,
            "arch": arch,
            "sampler": settings["sampler"],
            "scheduler": settings["scheduler"] or "default",
            "steps": steps,
            "cfg": settings["cfg"],
            "strength": settings["strength"],
            "size": [pw, ph],
            "loras": loras,
            "embeddings": embeddings,
            "controlnets": [p.entry.name for p in plans],
            "seconds": round(elapsed, 3),
        }
        if ref_plans:
            info["references"] = [
                {
                    "type": p.reference.type,
                    "strength": p.reference.strength,
                    "adapter": p.adapter.name,
                    "encoder": p.encoder.name,
                    "start": p.reference.start,
                    "end": p.reference.end,
                    "masked": p.reference.mask is not None,
                }
                for p in ref_plans
            ]
        if preset:
            info["few_step"] = preset["family"]
        info["vae"] = vae_name or "default"
        if job.params.clip_skip > 1:
            info["clip_skip"] = job.params.clip_skip
        if refiner is not None:
            info.update(
                refiner=self.registry.get(job.params.refiner, "refiner").name, refiner_start=job.params.refiner_start
            )
        if fast_decode:
            info["decoder"] = "tiny"
        if reuse is not None:
            info["speed"] = {"level": "fast", "reused_steps": reuse.reused, "steps": reuse.calls}
        if box is not None:
            info["decoded"] = list(box)
        if work.regions:
            info["regions"] = len(work.regions)
        if two is not None:
            info["hires"] = {"size": [fw, fh], "upscaler": two.upscaler, "strength": two.strength, "steps": two.steps}
        if tileable:
            info["tileable"] = "circular padding in the UNet and VAE"
        if layer_plan is not None:
            info["transparent"] = {"attention": layer_plan.attention.name, "decoder": layer_plan.decoder.name}
        layers = _layers(job, work, original, soft, images, seeds, info, alphas)
        if job.params.detail.enabled:  # the detailer after the job, its steps counted after the job's
            layers = detailer.after_job(self._run, self.detectors.detect, job, layers, ctx, count["total"])
        return layers

    def _mask(self, work: Job) -> Tuple[np.ndarray, np.ndarray]:
        """The job's (hard, soft) masks (imageops.prepare_mask), read-only, cached by mask content and settings."""
        params = work.params
        key = (cache.digest(work.mask), work.width, work.height, params.grow, params.feather)

        def make():
            hard, soft = imageops.prepare_mask(work)
            for arr in (hard, soft):
                arr.setflags(write=False)
            return hard, soft

        return self.caches["masks"].get(key, make)

    def _conditioning(self, loaded: LoadedCheckpoint, runner, prompt: str, negative: str, clip_skip: int = 0):
        """Prompt embeddings, cached per checkpoint, precision, active LoRAs (their text-encoder part changes them),
        loaded embeddings, CLIP skip and prompt text."""
        adapters = loaded.adapters
        skip = prompts.skipped_layers(clip_skip)
        key = (
            str(loaded.entry.path),
            str(self.dtype),
            tuple(tuple(a) for a in adapters.active),
            tuple(sorted(adapters.embeddings)),
            skip,
            prompt,
            negative,
        )
        return self.caches["prompts"].get(key, lambda: prompts.encode(runner, prompt, negative, self.device, clip_skip))

    def _use_vae(self, loaded: LoadedCheckpoint, name: str) -> str:
        """Put the job's VAE on the loaded pipeline (``""``: the checkpoint's own); the VAE's name, "" for the own."""
        if not name:
            loaded.use_vae(loaded.own_vae)
            return ""
        entry = self.registry.get(name, "vae")
        if self.vae is None or self.vae[0] != str(entry.path):
            self.vae = None
            vae = loading.load_vae(entry, loaded.entry, self.dtype, allow_pickle=self.registry.allow_pickle)
            self.vae = (str(entry.path), vae.to(self.device))
        loaded.use_vae(self.vae[1])
        return entry.name

    def _refiner(self, entry: ModelEntry, name: str, controlled: bool):
        """The SDXL refiner pipeline a job names (loaded once, kept beside the checkpoint), or None."""
        if not name:
            return None
        if entry.arch != "sdxl":
            raise ProtocolError(
                UNSUPPORTED,
                f"the SDXL refiner '{name}' works only after an SDXL checkpoint; "
                f"'{entry.name}' is {arch_name(entry.arch)}",
                field="params.refiner",
            )
        if controlled:
            raise ProtocolError(
                UNSUPPORTED,
                f"the SDXL refiner '{name}' cannot follow a job with control layers "
                "(ControlNets): send the job without one of them",
                field="params.refiner",
            )
        ref = self.registry.get(name, "refiner")
        if self.refiner is None or self.refiner[0] != str(ref.path):
            self.refiner = None
            gc.collect()
            pipe = loading.load_refiner(ref, self.dtype, allow_pickle=self.registry.allow_pickle)
            pipe.to(self.device)
            pipe.set_progress_bar_config(disable=True)
            self.refiner = (str(ref.path), pipe)
        return self.refiner[1]

    def _run_refiner(self, refiner, pipe, latents, prompt: str, negative: str, settings: dict, generators, on_step):
        """The refiner's img2img pass over the base pass's latents from ``refiner_start`` on, decoded with the job's
        VAE. The refiner reads the prompts as plain text (its one text encoder; weights are dropped)."""
        refiner.vae = pipe.vae
        refiner.scheduler = samplers.make_scheduler(
            settings["sampler"], refiner.scheduler.config, schedule=settings["scheduler"]
        )
        start = settings["refiner_start"]
        return refiner(
            prompt=prompts.plain_text(prompt),
            negative_prompt=prompts.plain_text(negative),
            image=latents,
            num_inference_steps=settings["steps"],
            denoising_start=start,
            guidance_scale=settings["cfg"],
            num_images_per_prompt=len(generators),
            generator=generators,
            output_type="np",
            callback_on_step_end=on_step,
            callback_on_step_end_tensor_inputs=["latents"],
        )

    def _reference_embeddings(self, loaded: LoadedCheckpoint, plan: "refs.ReferencePlan", cfg: bool):
        """A reference's image embeddings, cached by encoder, precision, image content and CFG."""
        key = (
            str(plan.encoder.path),
            str(self.dtype),
            plan.adapter.info["encoder_output"],
            cfg,
            cache.digest(plan.reference.image),
        )
        return self.caches["references"].get(key, lambda: loaded.references.embeddings(plan, cfg))

    def _region_plan(
        self, loaded: LoadedCheckpoint, runner, work: Job, texts, pw: int, ph: int, batch: int
    ) -> regions.RegionPlan:
        """The regions of a job for one pipeline call: blend weights at latent size, each region's embeddings."""
        conditionings = [self._conditioning(loaded, runner, text, negative) for text, negative in texts]
        factor = loaded.pipe.vae_scale_factor
        return regions.plan(
            work.regions,
            conditionings,
            work.width,
            work.height,
            pw // factor,
            ph // factor,
            batch,
            self.device,
            loaded.pipe.unet.dtype,
        )

    def _latents(
        self, loaded: LoadedCheckpoint, rgb: np.ndarray, hole: Optional[np.ndarray] = None, tileable: bool = False
    ):
        """VAE latents of an image (with ``hole`` blanked: the masked image of 9-channel UNets), cached by content
        (and by the padding: a tileable job's encoder wraps around)."""
        vae = loaded.pipe.vae
        chosen = self.vae[0] if self.vae is not None and vae is self.vae[1] else ""
        key = (str(loaded.entry.path), str(self.dtype), chosen, cache.digest(rgb, hole), tileable)
        return self.caches["latents"].get(
            key, lambda: latents_of.encode(vae, latents_of.to_tensor(rgb, self.device, vae.dtype, hole))
        )

    def _image_inputs(
        self,
        loaded: LoadedCheckpoint,
        init: Optional[np.ndarray],
        kind: str,
        controlled: bool,
        hard: np.ndarray,
        pw: int,
        ph: int,
        strength: float,
        batch: int,
        tileable: bool = False,
    ) -> dict:
        """The pipeline's size and image arguments: processing size (txt2img, inpaint; img2img takes it from the
        image), init image as latents (img2img, inpaint) and mask (inpaint). ControlNet inpaint pipelines take no
        latents: they get pixels, as stock diffusers."""
        if kind == "txt2img":
            return {"height": ph, "width": pw}
        if kind == "img2img":
            return {
                "image": self._latents(loaded, init, tileable=tileable).repeat(batch, 1, 1, 1),
                "strength": strength,
            }
        mask = _binary(imageops.resize(hard, pw, ph))
        out = {"mask_image": _pil(mask), "height": ph, "width": pw, "strength": strength}
        if controlled:
            out["image"] = _pil(init)
            return out
        image_latents = self._latents(loaded, init)
        nine_channels = loaded.pipe.unet.config.in_channels == 9
        # a regular UNet never reads the masked image's latents: the image's own stand in, unused
        out.update(
            image=image_latents,
            masked_image_latents=self._latents(loaded, init, mask) if nine_channels else image_latents,
        )
        return out

    def _few_step_preset(self, entry: ModelEntry, tags) -> Optional[dict]:
        """The few-step preset of the job's LoRAs (the first that has one), else of the checkpoint, else None."""
        for tag in tags:
            lora = self.registry.find(tag.name, "lora", entry.arch)
            if lora is not None and lora.info.get("few_step"):
                return lora.info["few_step"]
        return entry.info.get("few_step")

    def tiny_vae(self, arch: str):
        """The tiny VAE (TAESD family) for ``arch`` from the models folders, loaded once; None when none is installed."""
        if arch not in self._tiny:
            path = tiny_vae.find(self.registry.dirs, arch, self.registry.allow_pickle)
            vae = None
            if path is not None:
                try:
                    vae = tiny_vae.load(path, self.device, self.dtype)
                    log.info("previews decoded by %s", path.name)
                except Exception as err:  # noqa: BLE001 - previews fall back to the linear map
                    log.warning("cannot load tiny VAE %s: %s", path, err)
            self._tiny[arch] = vae
        return self._tiny[arch]


def _quiet_loaders() -> None:
    """No per-component progress bars in the server's log: the engine logs each load with its time."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
