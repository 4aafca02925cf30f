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

import dataclasses
import logging
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from protocol.errors import UNSUPPORTED, ProtocolError

from .. import imageops, seamless
from ..checkpoint.engine import CheckpointEngine, LoadedCheckpoint
from ..checkpoint.jobparts import result_layers, working_job
from ..core import Job, JobContext, Layer
from ..detect import Detectors
from ..models import loading, vpred
from ..models.registry import ModelEntry, ModelRegistry, arch_name
from . import controls as control_plans
from . import latents as latents_of
from . import detail as detailer
from . import hires as hires_fix
from . import attention, layout, pipelines, prompts, regions, samplers, stepcache, tiny_vae, transparency
from . import references as refs
from .adapters import Adapters, check_loras
from .inputs import JobInputs
from .parts import Parts
from .passes import denoise, init_at
from .plan import LoadedUNet, Plan, result_info

# diffusers warns on every ``.to()`` of a model even when no module needs keeping in float32; that says nothing here.
logging.getLogger("diffusers.models.modeling_utils").setLevel(logging.ERROR)

MODES = ("generate", "img2img", "inpaint", "outpaint", "detail")
# What the engine turns on, in this order, each time a job runs out of device memory (then it runs the job again).
# A fallback stays on while the checkpoint is loaded. Model CPU offload only helps on a GPU.
VAE_TILING = "vae tiling and slicing"
CPU_OFFLOAD = "model cpu offload"
MEMORY_FALLBACKS = (VAE_TILING, CPU_OFFLOAD)


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
        # Besides the checkpoint: its ControlNets, the job-chosen VAE and SDXL refiner, the tiny preview VAEs
        self.parts = Parts(registry, self.device, self.dtype)
        # a job's inputs, prepared once and cached by content
        self.inputs = JobInputs(registry, self.device, self.dtype, self.parts)
        # hires fix and detailer: face detectors of the models folders; the upscale-model function of the
        # hires fix's pixel upscale (the router wires the upscale engine's)
        self.detectors = Detectors(registry.dirs)
        self.pixel_upscaler: Optional[hires_fix.PixelUpscaler] = None

    @property
    def caches(self) -> Dict[str, object]:
        """The content-keyed caches of a job's inputs, by name."""
        return self.inputs.caches

    # --- model management ---

    def load(self, entry: ModelEntry) -> LoadedUNet:
        pipe = loading.load_checkpoint(entry, self.dtype, allow_pickle=self.registry.allow_pickle)
        pipe.to(self.device)
        layout.apply(pipe, self.device, self.dtype)
        attention.install(pipe.unet, self.device)
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
        self.parts.forget()
        self.inputs.clear()

    def apply_memory_fallback(self, loaded: LoadedCheckpoint, fallback: str) -> bool:
        if fallback == VAE_TILING:
            loaded.pipe.vae.enable_tiling()
            loaded.pipe.vae.enable_slicing()
            return True
        if fallback == CPU_OFFLOAD and self.device.type != "cpu":
            loaded.pipe.enable_model_cpu_offload(device=self.device)
            return True
        return False

    # --- one job, as numbered steps ---

    def check(self, job: Job) -> None:
        """Before anything loads: the LoRAs the job's prompts tag and its SDXL refiner must fit its checkpoint (the
        ControlNets and reference adapters are picked, by family, in step 1 before the load)."""
        entry = self.checkpoint_entry(job.model)
        check_loras(job, entry, self.registry)
        if job.params.refiner:
            self.parts.check_refiner(entry, job.params.refiner, bool(job.controls))

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
        self._conditioning(p, ctx)
        # 6. passes and decoding planned: hires second pass, refiner, the decoded box, the tiny decoder
        self._plan_passes(p)
        started = time.perf_counter()
        ctx.check()
        with torch.inference_mode():
            # 7. denoise: the base pass (with the hires fix, a second pass at the target size), then the refiner
            out, reuse, count = denoise(self, p, ctx)
            # 8. decode: latents to pixels (tiny decoder, transparent decoder, or the VAE on the box)
            images, alphas = self._decode(p, out)
        # 9. info and result layers, then the detailer after the job (its steps counted after the job's)
        refiner = self.registry.get(job.params.refiner, "refiner").name if p.refiner is not None else ""
        info = result_info(p, reuse, time.perf_counter() - started, refiner)
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
        p.preset = self.parts.few_step_preset(p.entry, tags)
        p.vae_name = self.parts.use_vae(p.loaded, job.params.vae)
        p.refiner = self.parts.refiner_for(p.entry, job.params.refiner, bool(p.controls))

    def _geometry(self, p: Plan, ctx: JobContext) -> None:
        job, pipe = p.job, p.loaded.pipe
        p.work, p.original = working_job(job, self.registry, ctx.check, lambda: str(self.device))
        p.controls = [dataclasses.replace(c, control=w) for c, w in zip(p.controls, p.work.controls)]
        p.hard, p.soft = self.inputs.mask(p.work)
        native = pipe.unet.config.sample_size * pipe.vae_scale_factor
        p.size = imageops.processing_size(p.work.width, p.work.height, native * native, multiple=pipe.vae_scale_factor)
        masked = job.mode in ("inpaint", "outpaint") or p.entry.inpaint
        p.kind = "inpaint" if masked else "img2img" if job.mode == "img2img" else "txt2img"
        p.tileable = bool(job.params.tileable) and job.mode in seamless.MODES

    def _pipeline(self, p: Plan) -> None:
        job, pipe = p.job, p.loaded.pipe
        p.nets = [self.parts.controlnet(c.entry, pipe.unet.config) for c in p.controls]
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

    def _conditioning(self, p: Plan, ctx: JobContext) -> None:
        loaded, settings, (pw, ph) = p.loaded, p.settings, p.size
        batch = len(settings["seeds"])
        p.call = dict(
            num_inference_steps=settings["steps"],
            guidance_scale=settings["cfg"],
            num_images_per_prompt=batch,
            output_type="np",
        )
        p.call.update(
            self.inputs.prompt_embeddings(loaded, p.runner, p.prompt, p.negative, p.job.params.clip_skip).kwargs()
        )
        if p.work.regions:
            p.region_plan = self.inputs.region_plan(loaded, p.runner, p.work, p.region_texts, pw, ph, batch)
        p.init = init_at(p, pw, ph)
        strength, controlled = settings["strength"], bool(p.controls)
        p.call.update(
            self.inputs.image_inputs(loaded, p.init, p.kind, controlled, p.hard, pw, ph, strength, batch, p.tileable)
        )
        if p.layer_plan is not None and p.kind == "img2img":  # the layer's alpha travels in the latents
            rgba = imageops.resize(np.ascontiguousarray(imageops.rgba(p.work.image)), pw, ph)
            p.call["image"] = p.layer_plan.encoded(loaded.pipe.vae, rgba, str(self.device)).repeat(batch, 1, 1, 1)
        if p.controls:
            images = self.inputs.control_images(p.controls, p.work, p.hard, pw, ph, ctx)
            p.call.update(pipelines.control_kwargs(p.kind, p.controls, images, p.union))
        if p.references:  # reference images: embeddings, masks, and the scales of the first step
            cfg_on = settings["cfg"] > 1 and loaded.pipe.unet.config.time_cond_proj_dim is None
            p.call["ip_adapter_image_embeds"] = [
                self.inputs.reference_embeddings(loaded, r, cfg_on) for r in p.references
            ]
            ref_masks = refs.masks(p.work.references, pw, ph)
            if ref_masks is not None:
                p.call["cross_attention_kwargs"] = {"ip_adapter_masks": ref_masks}
            p.ref_scales = refs.scales(p.entry.arch, p.work.references, 0.0)
            p.runner.set_ip_adapter_scale(p.ref_scales)

    def _plan_passes(self, p: Plan) -> None:
        job, pipe, (pw, ph) = p.job, p.loaded.pipe, p.size
        p.tiny = self.parts.tiny_vae(p.entry.arch)
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


def _quiet_loaders() -> None:
    """No per-component progress bars in the server's log: the engine logs each load with its time."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
