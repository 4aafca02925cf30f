"""The diffusion-transformer engine: generate, img2img, inpaint, outpaint and (Kontext, Klein, Qwen-Image-Edit) edit jobs
on Flux.1, SD3/SD3.5, Flux.2 Klein, Z-Image, Chroma and Qwen-Image (Klein's own parts, inputs and previews are in
``klein``, Qwen-Image's in ``qwen``).

A specialisation of ``checkpoint.engine.CheckpointEngine``, peer of the SD1.5/SDXL engine; the router picks it by the
checkpoint's family. One checkpoint is kept warm and every mode's pipeline is made from it with ``from_pipe`` (shared
weights); ``recipe`` is one job as numbered steps. Geometry is the same as the SD engine's: the context box is
processed at the model's native area and scaled back, outpaint works on the extended canvas, and the result equals
the input outside the (grown, feathered) mask.

Where the weights live (whole on the GPU, the transformer in fp8, model or sequential CPU offload) and, on a CPU, the
dtype are decided by ``memory`` when the checkpoint loads and reported in each result layer's ``info["memory"]`` and
``info["dtype"]``. A job's control layer runs through the family's ControlNet pipeline (``controlnets``); progress
previews come from ``preview``.
"""

from __future__ import annotations

import time
from typing import List

from .. import device as devices
from .. import imageops, seamless
from ..checkpoint.engine import CheckpointEngine
from ..checkpoint.jobparts import result_layers, working_job
from ..core import Job, JobContext, Layer
from ..diffusion import prompts, regions as sd_regions
from ..models.registry import ModelEntry
from . import (
    checks,
    controlnets,
    decompose,
    layered,
    pipes,
    qwen,
    redux,
    regions,
    regions_chroma,
    regions_klein,
    regions_qwen,
    regions_sd3,
    regions_zimage,
    specs,
)
from .inputs import control_inputs, image_inputs
from .jobparts import inputs_info, job_info, job_settings, plain_prompt
from .passes import run_passes

MODES = ("generate", "img2img", "inpaint", "outpaint", "edit", layered.MODE)
KINDS = {"generate": "txt2img", "img2img": "img2img", "edit": "edit"}  # the pipeline per mode (else inpaint)
# each family's regions: its token layout and the kit that masks its joint attention
REGION_KITS = (regions, regions_sd3, regions_zimage, regions_klein, regions_chroma, regions_qwen)


class FamilyEngine(CheckpointEngine):
    """Runs jobs on Flux.1 (dev, schnell, Fill, Kontext), SD3/SD3.5, Flux.2 Klein, Z-Image, Chroma and Qwen-Image (base,
    Edit, Edit Plus) checkpoints; ``loads`` counts loads.

    A family is a ``specs.FamilySpec`` (its pipelines per kind of job) plus what ``inputs.image_inputs`` gives its
    pipelines, ``inputs.latent_layout`` (how its latents unpack, for tileable jobs) and ``specs.text_encoder_slots``."""

    name = "flux-sd3"
    modes = MODES
    uses_controls = True  # Flux.1 dev/schnell and SD3 ControlNets (controlnets.py)
    # reference images: Flux Redux, pictures Flux.2 Klein sees, Qwen-Image-Edit Plus's extra pictures; SD3, Z-Image
    # and Chroma refuse them
    reference_families = redux.rdx.REDUX_FAMILIES + (specs.FLUX2_KLEIN, specs.qwen.QWEN_EDIT_PLUS)
    # a prompt per area: masked joint attention
    region_families = tuple(f for kit in REGION_KITS for f in kit.FAMILIES)
    dtype_role = devices.DIT
    memory_advice = "try a smaller selection or batch, or a quantized (fp8) file of the model"
    no_default = "no Flux, SD3, Klein, Z-Image, Chroma or Qwen-Image checkpoint is the default: name the model"

    def runs(self, entry: ModelEntry) -> bool:
        return entry.arch in specs.FAMILIES

    def load(self, entry: ModelEntry) -> pipes.Loaded:
        return pipes.load(entry, self.registry, self.device, self.dtype, self.dtype_asked)

    def load_note(self, loaded: pipes.Loaded) -> str:
        return f" ({loaded.facts.get('variant')}): {loaded.facts['memory']}; {loaded.facts['dtype']}"

    def mode_hint(self, job: Job) -> str:
        return "the detailer runs on SD1.5 and SDXL checkpoints" if job.mode == "detail" else super().mode_hint(job)

    def check(self, job: Job) -> None:
        checks.check_job(
            job, self.checkpoint_entry(job.model), self.registry, self.region_families, self.refuse_regions
        )

    def recipe(self, job: Job, ctx: JobContext) -> List[Layer]:
        entry = self.checkpoint_entry(job.model)
        if job.mode == layered.MODE:
            return decompose.recipe(self, job, ctx, entry)
        # 1. prompts: the LoRA tags out of the prompts (the regions' too)
        ctx.check()
        text, tags = prompts.extract_loras(job.prompt)
        negative, neg_tags = prompts.extract_loras(job.negative_prompt)
        region_texts, region_tags = sd_regions.texts(job.regions, text, negative)
        # 2. adapters: those LoRAs on the loaded checkpoint
        loaded = self.checkpoint(entry)
        loras = loaded.adapters.apply_loras(tags + neg_tags + region_tags)
        # 3. geometry: the working job (outpaint's canvas), its masks, the processing size, the kind of pipeline
        work, original = working_job(job, self.registry, ctx.check)
        hard, soft = imageops.prepare_mask(work)
        spec = specs.SPECS[entry.arch]
        pw, ph = imageops.processing_size(work.width, work.height, loaded.native**2, multiple=spec.latent_multiple)
        kind = KINDS.get(job.mode, "inpaint")
        tileable = bool(job.params.tileable) and job.mode in seamless.MODES
        # 4. conditioning: the pipeline (with the job's ControlNet), settings, prompts, image and mask, control
        #    image, reference images, regions
        plan = controlnets.select(list(work.controls), entry, job.mode, self.registry)
        runner = pipes.variant(loaded, kind, self.device, plan)
        settings = job_settings(job, entry, kind)
        # Rolling moves the latents only: a ControlNet's image and Fill's/Kontext's image tokens stay where they are.
        # Regions' masks are fixed to the token grid: their jobs wrap through the VAE's padding alone.
        rolling = tileable and plan is None and not work.regions and entry.arch in (specs.FLUX, specs.SD3, specs.CHROMA)
        call = dict(
            prompt=plain_prompt(text),
            num_inference_steps=settings["steps"],
            height=ph,
            width=pw,
            output_type="np",
        )
        call[spec.cfg_argument] = settings["cfg"]
        if spec.negative:  # true CFG runs only with a negative prompt: " " stands for none
            call["negative_prompt"] = plain_prompt(negative) or (" " if spec.cfg_argument == "true_cfg_scale" else "")
        call.update(image_inputs(entry.arch, kind, work, hard, pw, ph, settings["strength"], tileable))
        if controlnets.repaints_fully(plan, kind):  # its pipeline takes no strength
            call.pop("strength", None)
            settings["strength"] = 1.0
        if kind == "edit" and spec.references and work.references:  # Edit Plus: the edited picture, then the others
            call["image"] = [call["image"], *qwen.reference_images(work)]
        if plan is not None:
            call.update(control_inputs(plan, job, pw, ph, ctx, self.registry, self.device))
        ref_plan = None
        if work.references and entry.arch in redux.rdx.REDUX_FAMILIES:  # Redux tokens after the prompt's T5 tokens
            ref_plan = redux.select(work.references, entry, redux.txt_dim(loaded.pipe), self.registry)
            if loaded.redux is None:
                loaded.redux = redux.ReduxSet(self.device, loaded.pipe.vae.dtype)
            ctx.check()
            call.update(loaded.redux.prompt_inputs(runner, ref_plan, call.pop("prompt"), work.references))
        region_plan = None
        # the regions' texts after the prompt's tokens, their areas as an attention mask; a region at strength 0 or
        # without pixels is read by nothing: left out, its text would only round the attention's sums differently
        acting = [(r, t) for r, t in zip(work.regions, region_texts) if r.strength > 0 and r.mask.any()]
        if acting:
            ctx.check()
            kit = next(k for k in REGION_KITS if entry.arch in k.FAMILIES)
            texts = [(plain_prompt(t), plain_prompt(n)) for _, (t, n) in acting]
            acting_regions = [r for r, _ in acting]
            element = loaded.pipe.vae.dtype.itemsize  # the masks are made in the compute dtype
            early = kit.early_plan(call, acting_regions, pw, ph)  # before any prompt is encoded
            early.check_memory(element, devices.available_bytes(self.device), len(acting_regions))
            call, region_plan = kit.prepare(runner, call, texts, acting_regions, pw, ph)
            region_plan.check_memory(element, devices.available_bytes(self.device), len(acting_regions))
        # 5. pass and 6. decode: one pipeline call per seed (latents rolled between steps for a tileable job), each
        #    image's pixels
        started = time.perf_counter()
        with regions.applied([runner.transformer, getattr(runner, "controlnet", None)], region_plan):
            images = run_passes(self, job, ctx, loaded, runner, call, settings, (pw, ph), tileable, rolling)
        # 7. info and result layers
        info = dict(job_info(entry, loaded, settings, (pw, ph), loras, started), strength=settings["strength"])
        info.update(inputs_info(job, work, entry, plan, ref_plan, tileable, rolling))
        return result_layers(job, work, original, soft, images, settings["seeds"], info)
