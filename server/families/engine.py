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

import contextlib
import dataclasses
import inspect
import json
import logging
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from protocol.errors import UNSUPPORTED, ProtocolError

from .. import calibration, imageops, seamless
from .. import device as devices
from ..checkpoint.engine import CheckpointEngine, LoadedCheckpoint
from ..checkpoint.jobparts import binary, init_image, pil, result_layers, seeds_of, strength_of, working_job
from ..core import Job, JobContext, Layer
from ..defaults import family_settings
from ..diffusion import prompts, regions as sd_regions
from ..diffusion.adapters import Adapters
from ..diffusion.controls import control_image
from ..models.identify import DIFFUSERS
from ..models.registry import ModelEntry, arch_name
from . import (
    controlnets,
    klein,
    layered,
    loading,
    memory,
    preview,
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

log = logging.getLogger(__name__)

MODES = ("generate", "img2img", "inpaint", "outpaint", "edit", layered.MODE)
KINDS = {"generate": "txt2img", "img2img": "img2img", "edit": "edit"}  # the pipeline per mode (else inpaint)
NATIVE_KEY = "_paintbridge_native_px"  # optional in model_index.json: a model's native side in pixels
DEFAULT_NATIVE = 1024
SAMPLER = "Euler"  # flow matching: the model's own FlowMatchEulerDiscreteScheduler
# each family's regions: its token layout and the kit that masks its joint attention
REGION_KITS = (regions, regions_sd3, regions_zimage, regions_klein, regions_chroma, regions_qwen)


@dataclasses.dataclass(kw_only=True)
class Loaded(LoadedCheckpoint):
    facts: dict
    native: int
    controlnets: Dict[str, object] = dataclasses.field(default_factory=dict)  # ControlNet modules by file path
    preview: Optional[tuple] = None  # (W, b) of preview.fit: latents -> RGB for progress previews
    redux: Optional[redux.ReduxSet] = None  # reference images: Flux Redux parts, loaded on first use


def plain_prompt(text: str) -> str:
    """A prompt without the SD weight syntax (T5 reads the words): ``(red:1.3) cat`` → ``red cat``."""
    runs = prompts.parse_weights(text)
    return "".join(", " if w == -1.0 else t for t, w in runs).strip()


class FamilyEngine(CheckpointEngine):
    """Runs jobs on Flux.1 (dev, schnell, Fill, Kontext), SD3/SD3.5, Flux.2 Klein, Z-Image, Chroma and Qwen-Image (base,
    Edit, Edit Plus) checkpoints; ``loads`` counts loads.

    A family is a ``specs.FamilySpec`` (its pipelines per kind of job) plus what ``_image_inputs`` gives its
    pipelines, ``_latent_layout`` (how its latents unpack, for tileable jobs) and ``specs.text_encoder_slots``."""

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

    # --- model management ---

    def load(self, entry: ModelEntry) -> Loaded:
        dtype, why = self._dtype_for(entry)
        pipe, facts = loading.load(entry, dtype, self.registry)
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
        self._place(pipe, entry, facts)
        adapters = Adapters(pipe, entry, self.registry)  # the LoRAs it takes: ``models.lorafit``
        return Loaded(
            entry=entry, pipe=pipe, facts=facts, native=_native_px(entry, pipe), adapters=adapters, preview=rgb_map
        )

    def load_note(self, loaded: Loaded) -> str:
        return f" ({loaded.facts.get('variant')}): {loaded.facts['memory']}; {loaded.facts['dtype']}"

    def _dtype_for(self, entry: ModelEntry) -> Tuple[object, str]:
        """The dtype to load ``entry`` in, and why: as asked (``--dtype``), the GPU's, or on the CPU bf16 where the
        CPU has native bf16 and the fp32 weights would crowd the RAM (``memory.choose_cpu_dtype``)."""
        import torch

        name = str(self.dtype).rsplit(".", 1)[-1]
        if self.dtype_asked or self.device.type != "cpu":
            return self.dtype, name
        parameters, _ = memory.stored(loading.weight_files(entry, self.registry))
        chosen, why = memory.choose_cpu_dtype(calibration.cpu_flags(), parameters, memory.ram_bytes(), name)
        return getattr(torch, chosen), why

    def _place(self, pipe, entry: ModelEntry, facts: dict) -> None:
        """Place the pipeline as ``memory.choose_placement`` decides from the GPU's free memory, the modules' sizes and
        the precision the checkpoint stores; the choice goes into each result's ``info["memory"]``."""
        free = 0
        if self.device.type == "cuda":
            import torch

            free, _ = torch.cuda.mem_get_info(self.device)
        _, stored_dtype = memory.stored(loading.transformer_files(entry), loading.transformer_prefix(entry))
        compute = str(pipe.vae.dtype).rsplit(".", 1)[-1]  # the VAE runs in the compute dtype (a GGUF transformer's
        # parameters are uint8 blocks)
        placement = memory.choose_placement(
            free,
            memory.module_parameters(pipe),
            stored_dtype,
            self.device.type,
            compute,
            fp8_casting=hasattr(pipe.transformer, "enable_layerwise_casting"),
        )
        memory.apply(pipe, placement, self.device, pipe.vae.dtype)
        facts["memory"], facts["placement"] = placement.reason, placement.where
        facts["stored_dtype"] = stored_dtype

    def variant(self, loaded: Loaded, kind: str, plan: Optional[controlnets.ControlPlan] = None):
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
                    loaded.controlnets[path] = self._place_module(
                        controlnets.load(plan.entry, loaded.entry, loaded.pipe.transformer, loaded.pipe.vae.dtype),
                        loaded,
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
                    self.device,
                    loaded.pipe.vae.dtype,
                )
        return loaded.variants[key]

    def _place_module(self, module, loaded: Loaded):
        """A module added to a loaded pipeline goes where the pipeline's transformer runs (offload: to the CPU)."""
        if loaded.facts.get("placement") in (memory.MODEL_OFFLOAD, memory.SEQUENTIAL_OFFLOAD):
            return module  # the offload hooks move it
        return module.to(self.device)

    # --- jobs ---

    def mode_hint(self, job: Job) -> str:
        return "the detailer runs on SD1.5 and SDXL checkpoints" if job.mode == "detail" else super().mode_hint(job)

    def check(self, job: Job) -> None:
        entry = self.checkpoint_entry(job.model)
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
        if job.regions and entry.arch not in self.region_families:
            raise self.refuse_regions(job, arch_name(entry.arch), entry.name)
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

    def recipe(self, job: Job, ctx: JobContext) -> List[Layer]:
        entry = self.checkpoint_entry(job.model)
        if job.mode == layered.MODE:
            return self._decompose(job, ctx, entry)
        # 1. prompts and adapters: the LoRA tags out of the prompts (the regions' too), those LoRAs on the loaded
        #    checkpoint
        ctx.check()
        text, tags = prompts.extract_loras(job.prompt)
        negative, neg_tags = prompts.extract_loras(job.negative_prompt)
        region_texts, region_tags = sd_regions.texts(job.regions, text, negative)
        loaded = self.checkpoint(entry)
        loras = loaded.adapters.apply_loras(tags + neg_tags + region_tags)
        # 2. geometry: the working job (outpaint's canvas), its masks, the processing size, the kind of pipeline
        work, original = working_job(job, self.registry, ctx.check)
        hard, soft = imageops.prepare_mask(work)
        multiple = specs.SPECS[entry.arch].latent_multiple
        pw, ph = imageops.processing_size(work.width, work.height, loaded.native**2, multiple=multiple)
        kind = KINDS.get(job.mode, "inpaint")
        # 3. conditioning: the pipeline (with the job's ControlNet), settings, prompts, image and mask, control
        #    image, reference images, regions
        plan = controlnets.select(list(work.controls), entry, job.mode, self.registry)
        runner = self.variant(loaded, kind, plan)
        spec = specs.SPECS[entry.arch]
        settings = _settings(job, entry, kind)
        tileable = bool(job.params.tileable) and job.mode in seamless.MODES
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
        call.update(_image_inputs(entry.arch, kind, work, hard, pw, ph, settings["strength"], tileable))
        if controlnets.repaints_fully(plan, kind):  # its pipeline takes no strength
            call.pop("strength", None)
            settings["strength"] = 1.0
        if kind == "edit" and spec.references and work.references:  # Edit Plus: the edited picture, then the others
            call["image"] = [call["image"], *qwen.reference_images(work)]
        if plan is not None:
            call.update(self._control_inputs(plan, job, pw, ph, ctx))
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
            call, region_plan = kit.prepare(runner, call, texts, [r for r, _ in acting], pw, ph)
        # 4. pass and decode: one pipeline call per seed (latents rolled between steps for a tileable job)
        started = time.perf_counter()
        with regions.applied([runner.transformer, getattr(runner, "controlnet", None)], region_plan):
            images = self._passes(job, ctx, loaded, runner, call, settings, (pw, ph), tileable, rolling)
        # 5. info and result layers
        info = dict(_info(entry, loaded, settings, (pw, ph), loras, started), strength=settings["strength"])
        if plan is not None:
            info["controlnet"] = {"name": plan.entry.name, "type": plan.control.type, "union_mode": plan.mode}
        if work.regions:
            info["regions"] = len(work.regions)
        if ref_plan is not None:
            info["references"] = redux.info(ref_plan, work.references)
        elif work.references and entry.arch == specs.FLUX2_KLEIN:
            info["references"] = [{"type": r.type, "seen_as": "picture"} for r in work.references]
        elif work.references:
            # Edit Plus: picture 1 is the edited one, the references follow in order
            info["references"] = [{"type": "content", "picture": i + 2} for i in range(len(work.references))]
        if tileable:
            info["tileable"] = "circular padding in the VAE" + (", latents rolled between steps" if rolling else "")
        if job.params.sampler and job.params.sampler != SAMPLER or job.params.scheduler:
            info["sampler_note"] = (
                f"{job.params.sampler or job.params.scheduler} is an SD sampler or schedule; "
                "flow-matching models run with Euler"
            )
        return result_layers(job, work, original, soft, images, settings["seeds"], info)

    def _passes(
        self,
        job: Job,
        ctx: JobContext,
        loaded: Loaded,
        runner,
        call: dict,
        settings: dict,
        size: Tuple[int, int],
        tileable: bool,
        rolling: bool,
    ) -> List[np.ndarray]:
        """The pipeline called once per seed, each image's pixels; progress counts every image's steps."""
        import torch

        seeds, steps = settings["seeds"], settings["steps"]
        pw, ph = size
        done = [0]
        roller: List[Optional[seamless.LatentRoller]] = [None]

        def per_image(pipe) -> int:
            return getattr(pipe, "num_timesteps", None) or steps

        def roll(pipe, step: int, tensors: dict) -> None:  # tileable: a new random offset, back after the last step
            if roller[0] is not None and tensors.get("latents") is not None:
                tensors["latents"] = roller[0].step(tensors["latents"], last=step + 1 >= per_image(pipe))

        def shown(latents) -> np.ndarray:
            latents = roller[0].unrolled(latents) if roller[0] is not None else latents
            unpack = klein.unpack if loaded.entry.arch == specs.FLUX2_KLEIN else preview.unpack
            return preview.to_rgb(unpack(latents, ph, pw) if latents.dim() == 3 else latents, *loaded.preview)

        on_step = self.step_callback(
            job,
            ctx,
            lambda pipe, step: (
                done[0] * per_image(pipe) + min(step + 1, per_image(pipe)),
                per_image(pipe) * len(seeds),
            ),
            shown if loaded.preview is not None else None,
            roll,
        )
        images = []
        for s in seeds:
            ctx.check()
            if rolling:
                roller[0] = seamless.LatentRoller(s, *_latent_layout(runner, loaded.entry.arch, ph, pw))
            wrapping = seamless.circular(loaded.pipe.vae) if tileable else contextlib.nullcontext()
            # Qwen-Image-Edit reads its pictures at the model's native area
            area = (
                qwen.reference_area(loaded.native**2) if qwen.is_qwen(loaded.entry.arch) else contextlib.nullcontext()
            )
            with torch.inference_mode(), wrapping, area, _one_step_schedule(runner, steps):
                out = runner(**call, generator=torch.Generator("cpu").manual_seed(s), callback_on_step_end=on_step)
            images += self.to_uint8(out.images[:1], loaded.entry, loaded.pipe.vae.dtype)
            done[0] += 1
        return images

    def _decompose(self, job: Job, ctx: JobContext, entry: ModelEntry) -> List[Layer]:
        """Mode decompose (Qwen-Image-Layered): the picture into ``params.layer_count`` RGBA layers, one group per
        seed, bottom first."""
        import torch

        # 1. prompts and adapters (an empty prompt: the model captions the picture itself)
        ctx.check()
        text, tags = prompts.extract_loras(job.prompt)
        negative, neg_tags = prompts.extract_loras(job.negative_prompt)
        loaded = self.checkpoint(entry)
        loras = loaded.adapters.apply_loras(tags + neg_tags)
        # 2. the pipeline and its settings
        runner = self.variant(loaded, layered.KIND)
        spec = specs.SPECS[entry.arch]
        settings = _settings(job, entry, "txt2img")
        seeds, steps = settings["seeds"], settings["steps"]
        # 3. conditioning: the RGBA picture, the layer count, prompts
        call = layered.inputs(job, plain_prompt(text), job.params.layer_count)
        call.update(num_inference_steps=steps, output_type="np", negative_prompt=plain_prompt(negative) or " ")
        call[spec.cfg_argument] = settings["cfg"]
        # 4. one pass per seed at the model's native area; progress counts every pass's steps
        done = [0]
        pw, ph = layered.working_size(loaded.native**2, job.width, job.height)

        def shown(latents) -> np.ndarray:
            return preview.to_rgb(preview.unpack(layered.whole_picture(latents, pw, ph), ph, pw), *loaded.preview)

        on_step = self.step_callback(
            job,
            ctx,
            lambda pipe, step: (done[0] * steps + min(step + 1, steps), steps * len(seeds)),
            shown if loaded.preview is not None else None,
        )
        started = time.perf_counter()
        groups = []
        for s in seeds:
            ctx.check()
            with torch.inference_mode(), layered.working_area(loaded.native**2), _one_step_schedule(runner, steps):
                out = runner(**call, generator=torch.Generator("cpu").manual_seed(s), callback_on_step_end=on_step)
            groups.append(np.stack(self.to_uint8(out.images[0], entry, loaded.pipe.vae.dtype)))
            done[0] += 1
        # 5. info and result layers: each seed's layers in a group of their own, bottom first
        height, width = groups[0].shape[1:3]
        info = _info(entry, loaded, settings, (width, height), loras, started)
        return [
            layer
            for s, frames_of_seed in zip(seeds, groups)
            for layer in layered.result_layers(job, frames_of_seed, s, layered.group_name(text, s), info)
        ]

    def _control_inputs(self, plan: controlnets.ControlPlan, job: Job, pw: int, ph: int, ctx: JobContext) -> dict:
        """The ControlNet pipeline's control arguments: the control image at processing size (preprocessed when
        asked), its strength and step range, and a union ControlNet's mode."""
        c = plan.control
        image = ctx.interruptible(control_image, c, self.registry, job.params, str(self.device))
        out = {
            "control_image": pil(imageops.resize(np.ascontiguousarray(image[..., :3]), pw, ph)),
            "controlnet_conditioning_scale": float(c.strength),
        }
        if plan.entry.arch not in controlnets.NO_STEP_RANGE:
            out.update(control_guidance_start=float(c.start), control_guidance_end=float(c.end))
        if plan.mode is not None:
            out["control_mode"] = plan.mode
        return out


def _native_px(entry: ModelEntry, pipe) -> int:
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


def _info(entry: ModelEntry, loaded: Loaded, settings: dict, size: Tuple[int, int], loras, started: float) -> dict:
    """What every result layer's ``info`` says of the job: the model, its settings, the size it ran at, the LoRAs,
    the seconds since ``started``, and where the weights were and in which dtype."""
    info = {
        "model": entry.name,
        "arch": entry.arch,
        "family": entry.arch,
        "variant": loaded.facts.get("variant"),
        "sampler": SAMPLER,
        "steps": settings["steps"],
        "cfg": settings["cfg"],
        "size": [int(size[0]), int(size[1])],
        "loras": loras,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return dict(info, **{key: loaded.facts[key] for key in ("parts", "memory", "dtype") if key in loaded.facts})


def _settings(job: Job, entry: ModelEntry, kind: str) -> dict:
    """Steps, guidance, strength and seeds with the family's defaults filled in."""
    params = job.params
    defaults = family_settings(entry.arch, entry.info.get("variant", ""))
    return {
        "steps": params.steps,
        "cfg": params.cfg if params.cfg is not None else defaults["cfg"],
        "strength": strength_of(job, kind, params.steps),
        "seeds": seeds_of(params),
    }


def _latent_layout(runner, family: str, ph: int, pw: int) -> tuple:
    """(unpack, pack) between the pipeline's latents and (batch, channels, height, width): Flux packs 2 x 2 latent
    pixels into one token; SD3's latents are 4-D already."""
    if family == specs.SD3:
        return (lambda t: t), (lambda t: t)
    factor = runner.vae_scale_factor

    def unpack(latents):
        return runner._unpack_latents(latents, ph, pw, factor)

    def pack(full):
        return runner._pack_latents(full, full.shape[0], full.shape[1], full.shape[2], full.shape[3])

    return unpack, pack


def _image_inputs(
    family: str, kind: str, work: Job, hard: np.ndarray, pw: int, ph: int, strength: float, tileable: bool = False
) -> dict:
    """Image, mask and strength arguments of the family's pipeline for ``kind`` (a tileable job's image is scaled as
    a picture that wraps)."""
    init = init_image(work, pw, ph, tileable)
    mask = binary(imageops.resize(hard, pw, ph))
    if family == specs.FLUX2_KLEIN:
        return klein.image_inputs(kind, work, init, mask, pw, ph, strength)
    # Kontext scales every job to max_area (1024² px by default) unless told the job's own area
    kontext = {"_auto_resize": False, "max_area": pw * ph} if family == specs.FLUX_KONTEXT else {}
    if family == specs.FLUX_FILL:  # Fill always takes an image and a mask: generate = fill everything
        if kind == "txt2img":
            return {"image": pil(init), "mask_image": pil(np.full((ph, pw), 255, np.uint8)), "strength": 1.0}
        if kind == "img2img":
            return {"image": pil(init), "mask_image": pil(np.full((ph, pw), 255, np.uint8)), "strength": strength}
        return {"image": pil(init), "mask_image": pil(mask), "strength": strength}
    if kind == "txt2img":
        return {"max_area": pw * ph} if family == specs.FLUX_KONTEXT else {}
    if kind == "edit":
        return {"image": pil(init), **kontext}
    if kind == "img2img":
        return {"image": pil(init), "strength": strength}
    return {"image": pil(init), "mask_image": pil(mask), "strength": strength, **kontext}


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


@contextlib.contextmanager
def _one_step_schedule(runner, steps: int):
    """For a one-step job, the pipeline's flow-matching scheduler without its terminal shift (Qwen-Image's
    ``shift_terminal``): stretching a one-sigma schedule to the terminal value divides zero by zero (NaN)."""
    scheduler = getattr(runner, "scheduler", None)
    config = getattr(scheduler, "config", {}) or {}
    if steps != 1 or not config.get("shift_terminal"):
        yield
        return
    runner.scheduler = type(scheduler).from_config(config, shift_terminal=None)
    try:
        yield
    finally:
        runner.scheduler = scheduler
