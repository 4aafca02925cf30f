"""The SD1.5/SDXL engine: generate / img2img / inpaint / outpaint / detail jobs on SD1.5-class and SDXL-class
checkpoints, with ControlNets, LoRAs, embeddings, weighted prompts, regions, reference images and the samplers users
know. A specialisation of ``checkpoint.engine.CheckpointEngine`` (load, warm-up, memory fallbacks, progress, result
layers); ``recipe`` is one job as numbered steps.

Every mode's pipeline is made from the loaded checkpoint with ``from_pipe`` (shared weights, no reload). The context
box is processed at the model's native area and scaled back; outside the (grown) mask the result equals the input
exactly. When the device runs out of memory the engine degrades (``MEMORY_FALLBACKS``: VAE tiling and slicing, then
model CPU offload on a GPU), runs the job again, and says so in each result layer's ``info["memory_fallbacks"]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from protocol.errors import UNSUPPORTED, ProtocolError

from .. import imageops, seamless
from ..checkpoint.engine import CheckpointEngine, LoadedCheckpoint
from ..checkpoint.jobparts import binary, init_image, pil, result_layers, working_job
from ..core import Job, JobContext, Layer
from ..detect import Detectors
from ..models import loading, vpred
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


@dataclasses.dataclass(kw_only=True)
class LoadedUNet(LoadedCheckpoint):
    """An SD1.5/SDXL checkpoint in memory: also the scheduler config it came with, its reference adapters and VAE."""

    scheduler_config: dict
    references: Optional[refs.ReferenceSet] = None  # reference images: IP-Adapters in the UNet
    own_vae: object = None  # the checkpoint's VAE (a job may decode with another one: ``params.vae``)

    def use_vae(self, vae) -> None:
        """Decode and encode with ``vae`` in the pipeline and every mode variant (shared modules)."""
        for pipe in (self.pipe, *self.variants.values()):
            if pipe.vae is not vae:
                pipe.vae = vae


@dataclasses.dataclass
class Plan:
    """One SD job on its way through ``DiffusionEngine.recipe``: what each step decided, read by the steps after it."""

    job: Job
    entry: ModelEntry
    loaded: LoadedUNet
    controls: list  # ControlNet plans (controls.ControlPlan), one per control layer
    references: list  # reference plans (references.ReferencePlan), one per reference image
    # 2. prompts and adapters
    prompt: str = ""
    negative: str = ""
    region_texts: list = dataclasses.field(default_factory=list)
    loras: list = dataclasses.field(default_factory=list)
    embeddings: list = dataclasses.field(default_factory=list)
    preset: Optional[dict] = None  # a few-step model's sampler, steps and CFG
    vae_name: str = ""
    refiner: Any = None  # the SDXL refiner pipeline
    # 3. geometry
    work: Optional[Job] = None  # the job as processed (outpaint: the extended canvas)
    original: Optional[np.ndarray] = None  # the pixels the result is composited over
    hard: Optional[np.ndarray] = None
    soft: Optional[np.ndarray] = None
    size: Tuple[int, int] = (0, 0)  # processing size (width, height)
    kind: str = "txt2img"
    tileable: bool = False
    # 4. pipeline and sampling
    nets: list = dataclasses.field(default_factory=list)
    union: bool = False
    runner: Any = None
    layer_plan: Optional[transparency.TransparencyPlan] = None
    settings: dict = dataclasses.field(default_factory=dict)
    # 5. conditioning
    call: dict = dataclasses.field(default_factory=dict)
    region_plan: Optional[regions.RegionPlan] = None
    init: Optional[np.ndarray] = None
    ref_scales: Optional[list] = None
    # 6. passes and decoding
    tiny: Any = None
    fast_decode: bool = False
    hires: Optional[hires_fix.HiresPlan] = None
    target: Tuple[int, int] = (0, 0)  # the size of the last pass (the hires fix's target size)
    box: Optional[tuple] = None  # the box around the mask that is decoded

    @property
    def live(self) -> bool:
        return bool(getattr(self.job, "live", False))


class StepCount:
    """Progress across the passes of one SD job: the hires fix's two passes, or the base pass then the refiner's."""

    def __init__(self, steps: int, refiner, after: int) -> None:
        self.steps, self.refiner = steps, refiner
        self.before = 0  # steps of passes done before this one (the hires fix's first pass)
        self.after = after  # steps of passes still to come (the hires fix's second pass)
        self.done = 0  # steps of the base pass, once the refiner runs
        self.total = 0

    def position(self, pipe, step: int) -> Tuple[int, int]:
        this_pass = getattr(pipe, "num_timesteps", None) or self.steps
        total = self.before + this_pass + self.after
        if self.refiner is not None:  # the base pass, then the refiner's steps after it
            total = max(self.done + this_pass, self.steps) if self.done else self.steps
        self.total = total
        return min(self.before + self.done + step + 1, total), total


class DiffusionEngine(CheckpointEngine):
    """Runs SD1.5/SDXL jobs; ``loads`` counts checkpoint loads (a mode switch never adds one)."""

    name = "diffusers"
    modes = MODES
    uses_controls = True
    reference_families = refs.ipa.REFERENCE_FAMILIES
    region_families = regions.FAMILIES  # regions
    speed_families = {"fast": stepcache.FAMILIES}
    memory_fallbacks = MEMORY_FALLBACKS
    no_default = (
        "no usable diffusion checkpoint is installed: put a .safetensors checkpoint in the models folder's checkpoints/"
    )

    def __init__(self, registry: ModelRegistry, device: Optional[str] = None, dtype: Optional[str] = None) -> None:
        super().__init__(registry, device, dtype)
        _quiet_loaders()
        self.controlnets: Dict[str, object] = {}
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

    # --- model management ---

    def load(self, entry: ModelEntry) -> LoadedUNet:
        pipe = loading.load_checkpoint(entry, self.dtype, allow_pickle=self.registry.allow_pickle)
        pipe.to(self.device)
        return LoadedUNet(
            entry=entry,
            pipe=pipe,
            adapters=Adapters(pipe, entry, self.registry),
            scheduler_config=vpred.scheduler_config(dict(pipe.scheduler.config), entry.info.get("prediction")),
            references=refs.ReferenceSet(self.registry, self.device, self.dtype),
            own_vae=pipe.vae,
        )

    def forget(self) -> None:
        """The job-chosen VAE and refiner, the ControlNets and the caches go with the checkpoint."""
        self.vae = self.refiner = None
        self.controlnets.clear()
        for c in self.caches.values():
            c.clear()

    def apply_memory_fallback(self, loaded: LoadedCheckpoint, fallback: str) -> bool:
        if fallback == VAE_TILING:
            loaded.pipe.vae.enable_tiling()
            loaded.pipe.vae.enable_slicing()
            return True
        if fallback == CPU_OFFLOAD and self.device.type != "cpu":
            loaded.pipe.enable_model_cpu_offload(device=self.device)
            return True
        return False

    def controlnet(self, entry: ModelEntry):
        key = str(entry.path)
        if key not in self.controlnets:
            while len(self.controlnets) >= MAX_CONTROLNETS_KEPT:
                self.controlnets.pop(next(iter(self.controlnets)))
            unet = self.loaded.pipe.unet.config if self.loaded is not None else None
            net = loading.load_controlnet(entry, self.dtype, allow_pickle=self.registry.allow_pickle, unet_config=unet)
            self.controlnets[key] = net.to(self.device)
        return self.controlnets[key]

    # --- one job, as numbered steps ---

    def recipe(self, job: Job, ctx: JobContext) -> List[Layer]:
        import torch

        if job.mode == "detail":  # the detailer on its own: an inpaint sub-job per detection
            self.checkpoint_entry(job.model)
            return detailer.run_detail_mode(self.recipe, self.detectors.detect, job, ctx)
        # 1. check inputs, load: refusals by name, ControlNet and reference plans, the checkpoint
        p = self._check_and_load(job, ctx)
        # 2. prompts and adapters: LoRA tags, region prompts, embeddings, few-step preset, the job's VAE and refiner
        self._prompts_and_adapters(p)
        # 3. geometry: the working job (outpaint's canvas), its masks, the processing size, the kind of pipeline
        self._geometry(p, ctx)
        # 4. pipeline and sampling: ControlNets, circular padding when tileable, transparency, scheduler, settings
        self._pipeline(p)
        # 5. conditioning: prompt embeddings, regions, init image and mask, control images, reference embeddings
        self._conditioning_inputs(p, ctx)
        # 6. passes and decoding planned: hires second pass, refiner, the decoded box, the tiny decoder
        self._plan_passes(p)
        started = time.perf_counter()
        ctx.check()
        with torch.inference_mode():
            # 7. denoise: the base pass (with the hires fix, a second pass at the target size), then the refiner
            out, reuse, count = self._denoise(p, ctx)
            # 8. decode: latents to pixels (tiny decoder, transparent decoder, or the VAE on the box)
            images, alphas = self._decode(p, out)
        # 9. info and result layers, then the detailer after the job (its steps counted after the job's)
        info = self._info(p, reuse, time.perf_counter() - started)
        layers = result_layers(job, p.work, p.original, p.soft, images, p.settings["seeds"], info, alphas)
        if job.params.detail.enabled:
            layers = detailer.after_job(self.recipe, self.detectors.detect, job, layers, ctx, count.total)
        return layers

    def _check_and_load(self, job: Job, ctx: JobContext) -> Plan:
        entry = self.checkpoint_entry(job.model)
        if job.regions and entry.arch not in regions.FAMILIES:
            raise self.refuse_regions(job, arch_name(entry.arch), entry.name)
        plans = control_plans.select(job.controls, entry, self.registry) if job.controls else []
        ref_plans = refs.select(job.references, entry, self.registry) if job.references else []
        ctx.check()
        loaded = self.checkpoint(entry)
        loaded.references.load(loaded.pipe, ref_plans, entry.name)
        return Plan(job, entry, loaded, plans, ref_plans)

    def _prompts_and_adapters(self, p: Plan) -> None:
        adapters, job = p.loaded.adapters, p.job
        p.prompt, tags = prompts.extract_loras(job.prompt)
        p.negative, neg_tags = prompts.extract_loras(job.negative_prompt)
        p.region_texts, region_tags = regions.texts(job.regions, p.prompt, p.negative)
        p.loras = adapters.apply_loras(tags + neg_tags + region_tags)
        p.embeddings = adapters.load_embeddings(p.prompt, p.negative, *(t for pair in p.region_texts for t in pair))
        p.preset = self._few_step_preset(p.entry, tags)
        p.vae_name = self._use_vae(p.loaded, job.params.vae)
        p.refiner = self._refiner(p.entry, job.params.refiner, bool(p.controls))

    def _geometry(self, p: Plan, ctx: JobContext) -> None:
        job, pipe = p.job, p.loaded.pipe
        p.work, p.original = working_job(job, self.registry, ctx.check, lambda: str(self.device))
        p.controls = [dataclasses.replace(c, control=w) for c, w in zip(p.controls, p.work.controls)]
        p.hard, p.soft = self._mask(p.work)
        native = pipe.unet.config.sample_size * pipe.vae_scale_factor
        p.size = imageops.processing_size(p.work.width, p.work.height, native * native, multiple=pipe.vae_scale_factor)
        masked = job.mode in ("inpaint", "outpaint") or p.entry.inpaint
        p.kind = "inpaint" if masked else "img2img" if job.mode == "img2img" else "txt2img"
        p.tileable = bool(job.params.tileable) and job.mode in seamless.MODES

    def _pipeline(self, p: Plan) -> None:
        job, pipe = p.job, p.loaded.pipe
        p.nets = [self.controlnet(c.entry) for c in p.controls]
        if p.tileable:  # every convolution wraps around: the picture is a torus (put back when ``run`` ends)
            refiner_unet = getattr(p.refiner, "unet", None)
            self.job_scope.enter_context(seamless.circular(pipe.unet, pipe.vae, *p.nets, refiner_unet))
        p.union = bool(p.controls) and bool(p.controls[0].entry.info.get("union"))
        p.runner = pipelines.variant(p.loaded, p.kind, p.nets, p.union)
        if job.params.transparent:
            p.layer_plan = transparency.plan(job, p.entry, self.registry, p.live)
        p.settings = samplers.job_settings(job, p.entry, p.kind, p.preset)
        p.runner.scheduler = samplers.make_scheduler(
            p.settings["sampler"],
            p.loaded.scheduler_config,
            p.preset["spacing"] if p.preset else None,
            p.settings["scheduler"],
        )

    def _conditioning_inputs(self, p: Plan, ctx: JobContext) -> None:
        loaded, settings, (pw, ph) = p.loaded, p.settings, p.size
        batch = len(settings["seeds"])
        p.call = dict(
            num_inference_steps=settings["steps"],
            guidance_scale=settings["cfg"],
            num_images_per_prompt=batch,
            output_type="np",
        )
        p.call.update(self._conditioning(loaded, p.runner, p.prompt, p.negative, p.job.params.clip_skip).kwargs())
        if p.work.regions:
            p.region_plan = self._region_plan(loaded, p.runner, p.work, p.region_texts, pw, ph, batch)
        p.init = self._init(p, pw, ph)
        strength, controlled = settings["strength"], bool(p.controls)
        p.call.update(
            self._image_inputs(loaded, p.init, p.kind, controlled, p.hard, pw, ph, strength, batch, p.tileable)
        )
        if p.layer_plan is not None and p.kind == "img2img":  # the layer's alpha travels in the latents
            rgba = imageops.resize(np.ascontiguousarray(imageops.rgba(p.work.image)), pw, ph)
            p.call["image"] = p.layer_plan.encoded(loaded.pipe.vae, rgba, str(self.device)).repeat(batch, 1, 1, 1)
        if p.controls:
            images = self.control_images(p.controls, p.work, p.hard, pw, ph, ctx)
            p.call.update(pipelines.control_kwargs(p.kind, p.controls, images, p.union))
        if p.references:  # reference images: embeddings, masks, and the scales of the first step
            cfg_on = settings["cfg"] > 1 and loaded.pipe.unet.config.time_cond_proj_dim is None
            p.call["ip_adapter_image_embeds"] = [self._reference_embeddings(loaded, r, cfg_on) for r in p.references]
            ref_masks = refs.masks(p.work.references, pw, ph)
            if ref_masks is not None:
                p.call["cross_attention_kwargs"] = {"ip_adapter_masks": ref_masks}
            p.ref_scales = refs.scales(p.entry.arch, p.work.references, 0.0)
            p.runner.set_ip_adapter_scale(p.ref_scales)

    def _plan_passes(self, p: Plan) -> None:
        job, pipe, (pw, ph) = p.job, p.loaded.pipe, p.size
        p.tiny = self.tiny_vae(p.entry.arch)
        p.fast_decode = p.tiny is not None and p.live and p.refiner is None
        # hires fix: a second pass at the target size after this one at the native area
        p.hires = hires_fix.plan(
            job.params.hires, p.work.width, p.work.height, pw, ph, pipe.vae_scale_factor, p.settings["steps"], p.live
        )
        if p.hires is not None and p.refiner is not None:
            raise ProtocolError(
                UNSUPPORTED,
                "the SDXL refiner and the hires fix do not run in one job: switch one of them off",
                field="params.refiner",
            )
        if p.hires is not None and p.hires.upscaler not in (hires_fix.LATENT, hires_fix.LANCZOS):
            self.registry.get(p.hires.upscaler, "upscaler")  # model_not_found names what is installed
        p.target = (p.hires.width, p.hires.height) if p.hires is not None else p.size
        # Only the box around the mask is decoded: outside it the result layer keeps the original pixels anyway.
        if not (p.fast_decode or p.kind != "inpaint" or p.refiner is not None):
            p.box = latents_of.decode_box(p.soft, *p.target, pipe.vae_scale_factor, pipe.vae.config)
        if p.fast_decode or p.box is not None or p.refiner is not None or p.layer_plan is not None:
            p.call["output_type"] = "latent"
        if p.refiner is not None:
            p.call["denoising_end"] = job.params.refiner_start

    def _denoise(self, p: Plan, ctx: JobContext):
        """The pipeline passes; (output, the step cache's record or None, the step count)."""
        import torch

        job, settings = p.job, p.settings
        steps, seeds = settings["steps"], settings["seeds"]
        count = StepCount(steps, p.refiner, hires_fix.second_pass_steps(p.hires) if p.hires is not None else 0)
        on_step = self.step_callback(job, ctx, count.position, self._previewer(p), self._reference_scaler(p))
        steps_kw = dict(callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"])
        # One call for the whole batch, one generator per image: each seed gives the same pixels alone or in a batch.
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        fast = job.params.speed == "fast"
        runner, call, region_plan = p.runner, p.call, p.region_plan
        if p.hires is not None:
            with regions.applied(runner.unet, region_plan), stepcache.maybe_applied(runner.unet, fast):
                # regions shape the first pass: the composition
                first = runner(**dict(call, output_type="latent"), generator=generators, **steps_kw)
            count.before, count.after = getattr(runner, "num_timesteps", None) or steps, 0
            ctx.check()
            runner, call = second_pass(self, p, first.images, call, ctx)
            p.init = self._init(p, *p.target)
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            region_plan = None  # the second pass refines the whole picture at the target size
        transparent = p.layer_plan.applied(runner.unet) if p.layer_plan is not None else contextlib.nullcontext()
        with (
            regions.applied(runner.unet, region_plan),
            transparent,
            stepcache.maybe_applied(runner.unet, fast) as reuse,
        ):
            out = runner(**call, generator=generators, **steps_kw)
        if p.refiner is not None:
            count.done = getattr(runner, "num_timesteps", 0) or int(steps * job.params.refiner_start)
            out = self._run_refiner(p, out.images, generators, on_step)
        return out, reuse, count

    def _decode(self, p: Plan, out) -> Tuple[List[np.ndarray], Optional[List[np.ndarray]]]:
        """(images, alphas): the passes' output as pixels, with alphas from LayerDiffuse's transparent decoder."""
        vae = p.loaded.pipe.vae
        if p.fast_decode:
            return tiny_vae.to_uint8(tiny_vae.decode(p.tiny, out.images)), None
        if p.layer_plan is not None:  # colour and alpha from LayerDiffuse's transparent decoder
            return transparency.decode(vae, out.images, p.layer_plan.decoder_model(str(self.device)))
        images = out.images
        if p.box is not None:
            images = latents_of.decode_into(vae, images, p.box, p.init, p.loaded.pipe.vae_scale_factor)
        return self.to_uint8(images, p.entry), None

    def _info(self, p: Plan, reuse, elapsed: float) -> dict:
        """What the result layers say about how they were made."""
        job, settings = p.job, p.settings
        info = {
            "model": p.entry.name,
            "arch": p.entry.arch,
            "sampler": settings["sampler"],
            "scheduler": settings["scheduler"] or "default",
            "steps": settings["steps"],
            "cfg": settings["cfg"],
            "strength": settings["strength"],
            "size": list(p.size),
            "loras": p.loras,
            "embeddings": p.embeddings,
            "controlnets": [c.entry.name for c in p.controls],
            "seconds": round(elapsed, 3),
        }
        if p.references:
            info["references"] = [r.describe() for r in p.references]
        if p.preset:
            info["few_step"] = p.preset["family"]
        if p.entry.info.get("prediction"):  # v-prediction: how its scheduler was set
            options = vpred.scheduler_config({}, p.entry.info["prediction"])
            info["prediction"] = {**options, "from": p.entry.info["prediction"]["from"]}
        info["vae"] = p.vae_name or "default"
        if job.params.clip_skip > 1:
            info["clip_skip"] = job.params.clip_skip
        if p.refiner is not None:
            refiner = self.registry.get(job.params.refiner, "refiner").name
            info.update(refiner=refiner, refiner_start=job.params.refiner_start)
        if p.fast_decode:
            info["decoder"] = "tiny"
        if reuse is not None:
            info["speed"] = {"level": "fast", "reused_steps": reuse.reused, "steps": reuse.calls}
        if p.box is not None:
            info["decoded"] = list(p.box)
        if p.work.regions:
            info["regions"] = len(p.work.regions)
        if p.hires is not None:
            two = p.hires
            info["hires"] = {
                "size": list(p.target),
                "upscaler": two.upscaler,
                "strength": two.strength,
                "steps": two.steps,
            }
        if p.tileable:
            info["tileable"] = "circular padding in the UNet and VAE"
        if p.layer_plan is not None:
            info["transparent"] = {"attention": p.layer_plan.attention.name, "decoder": p.layer_plan.decoder.name}
        return info

    # --- what the steps use ---

    def _init(self, p: Plan, width: int, height: int) -> Optional[np.ndarray]:
        """The init image at ``width`` x ``height``; None for txt2img."""
        return None if p.kind == "txt2img" else init_image(p.work, width, height, p.tileable)

    def _previewer(self, p: Plan) -> Callable[[object], np.ndarray]:
        """Progress previews: the tiny VAE's decode when one is installed, else the linear latent → RGB map."""
        tiny, arch = p.tiny, p.entry.arch
        return lambda latents: tiny_vae.preview(tiny, latents) if tiny is not None else latents_to_rgb(latents, arch)

    def _reference_scaler(self, p: Plan) -> Optional[Callable[[object, int, dict], None]]:
        """Before each step's progress: the next step's reference scales (0 outside a reference's range)."""
        if p.ref_scales is None:
            return None

        def rescale(pipe, step: int, tensors: dict) -> None:
            if pipe is p.refiner:
                return
            this_pass = getattr(pipe, "num_timesteps", None) or p.settings["steps"]
            wanted = refs.scales(p.entry.arch, p.work.references, (step + 1) / this_pass)
            if wanted != p.ref_scales:
                pipe.set_ip_adapter_scale(wanted)
                p.ref_scales = wanted

        return rescale

    def control_images(self, plans, work: Job, hard: np.ndarray, pw: int, ph: int, ctx: JobContext) -> list:
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
                    image = ctx.interruptible(control_plans.control_image, c, self.registry, params, str(self.device))
                    return pil(imageops.resize(image, pw, ph))

            images.append(self.caches["controls"].get(key, make))
        return images

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

    def _conditioning(self, loaded: LoadedUNet, runner, prompt: str, negative: str, clip_skip: int = 0):
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

    def _use_vae(self, loaded: LoadedUNet, name: str) -> str:
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

    def _run_refiner(self, p: Plan, latents, generators, on_step):
        """The refiner's img2img pass over the base pass's latents from ``refiner_start`` on, decoded with the job's
        VAE. The refiner reads the prompts as plain text (its one text encoder; weights are dropped)."""
        refiner, settings = p.refiner, p.settings
        refiner.vae = p.loaded.pipe.vae
        refiner.scheduler = samplers.make_scheduler(
            settings["sampler"], refiner.scheduler.config, schedule=settings["scheduler"]
        )
        start = settings["refiner_start"]
        return refiner(
            prompt=prompts.plain_text(p.prompt),
            negative_prompt=prompts.plain_text(p.negative),
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

    def _reference_embeddings(self, loaded: LoadedUNet, plan: "refs.ReferencePlan", cfg: bool):
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
        self, loaded: LoadedUNet, runner, work: Job, texts, pw: int, ph: int, batch: int
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

    def encode_latents(
        self, loaded: LoadedUNet, rgb: np.ndarray, hole: Optional[np.ndarray] = None, tileable: bool = False
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
        loaded: LoadedUNet,
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
                "image": self.encode_latents(loaded, init, tileable=tileable).repeat(batch, 1, 1, 1),
                "strength": strength,
            }
        mask = binary(imageops.resize(hard, pw, ph))
        out = {"mask_image": pil(mask), "height": ph, "width": pw, "strength": strength}
        if controlled:
            out["image"] = pil(init)
            return out
        image_latents = self.encode_latents(loaded, init)
        nine_channels = loaded.pipe.unet.config.in_channels == 9
        # a regular UNet never reads the masked image's latents: the image's own stand in, unused
        out.update(
            image=image_latents,
            masked_image_latents=self.encode_latents(loaded, init, mask) if nine_channels else image_latents,
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
