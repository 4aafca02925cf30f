"""The Flux/SD3 engine: generate, img2img, inpaint, outpaint and (Kontext) edit jobs on Flux.1 and SD3/SD3.5.

A peer of the SD1.5/SDXL engine behind ``core.Engine``; the router picks it by the checkpoint's family. One checkpoint
is kept warm and every mode's pipeline is made from it with ``from_pipe`` (shared weights). Geometry is the same as
the SD engine's: the context box is processed at the model's native area and scaled back, outpaint works on the
extended canvas, and the result equals the input outside the (grown, feathered) mask.

On a GPU whose free memory cannot hold the whole model, the model is run with model CPU offload; the choice is made
when the checkpoint loads and reported in each result layer's ``info["memory"]``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import random
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, OUT_OF_MEMORY, UNSUPPORTED, ProtocolError

from .. import device as devices
from .. import imageops
from ..core import Engine, Job, JobContext, Layer
from ..defaults import DEFAULT_STRENGTH, family_settings
from ..diffusion import prompts
from ..diffusion.adapters import Adapters
from ..diffusion.engine import _layers, _working_job
from ..models.detect import DIFFUSERS
from ..models.registry import ModelEntry, ModelRegistry
from . import loading, specs

log = logging.getLogger(__name__)

MODES = ("generate", "img2img", "inpaint", "outpaint", "edit")
NATIVE_KEY = "_paintbridge_native_px"  # optional in model_index.json: a model's native side in pixels
DEFAULT_NATIVE = 1024
SAMPLER = "Euler"  # flow matching: the model's own FlowMatchEulerDiscreteScheduler
OFFLOAD_MARGIN = 1.25  # weights x margin (activations, VAE decode) must fit the free memory, else offload


@dataclasses.dataclass
class Loaded:
    entry: ModelEntry
    pipe: object
    facts: dict
    native: int
    adapters: Adapters
    variants: Dict[type, object] = dataclasses.field(default_factory=dict)


def plain_prompt(text: str) -> str:
    """A prompt without the SD weight syntax (T5 reads the words): ``(red:1.3) cat`` → ``red cat``."""
    runs = prompts.parse_weights(text)
    return "".join(", " if w == -1.0 else t for t, w in runs).strip()


class FamilyEngine(Engine):
    """Runs jobs on Flux.1 (dev, schnell, Fill, Kontext) and SD3/SD3.5 checkpoints; ``loads`` counts loads."""

    name = "flux-sd3"
    modes = MODES

    def __init__(self, registry: ModelRegistry, device: Optional[str] = None, dtype: Optional[str] = None) -> None:
        self.registry = registry
        self.device, self.dtype = devices.choose(device, dtype)
        self.loaded: Optional[Loaded] = None
        self.loads = 0
        self._lock = threading.Lock()

    def models(self) -> List[dict]:
        return [e.listing() for e in self.registry.entries("checkpoint") if e.arch in specs.FAMILIES]

    # --- model management ---

    def checkpoint_entry(self, name: str) -> ModelEntry:
        if name:
            return self.registry.get(name, "checkpoint")
        entry = self.registry.default_checkpoint()
        if entry is None or entry.arch not in specs.FAMILIES:
            raise ProtocolError(MODEL_NOT_FOUND, "no Flux or SD3 checkpoint is the default: name the model",
                                field="model")
        return entry

    def checkpoint(self, entry: ModelEntry) -> Loaded:
        """The loaded pipeline of ``entry``; a different checkpoint is freed first."""
        if self.loaded is not None and self.loaded.entry.path == entry.path:
            return self.loaded
        self.unload()
        started = time.perf_counter()
        pipe, facts = loading.load(entry, self.dtype, self.registry)
        self._place(pipe, facts)
        pipe.set_progress_bar_config(disable=True)
        self.loads += 1
        log.info("loaded %s (%s) in %.1f s", entry.name, facts.get("variant"), time.perf_counter() - started)
        # LoRAs are made for the base family: a Flux LoRA also fits Fill and Kontext.
        base = dataclasses.replace(entry, arch=specs.SD3 if entry.arch == specs.SD3 else specs.FLUX)
        self.loaded = Loaded(entry, pipe, facts, _native_px(entry, pipe), Adapters(pipe, base, self.registry))
        return self.loaded

    def _place(self, pipe, facts: dict) -> None:
        """Move the pipeline to the device, or use model CPU offload when a GPU's free memory cannot hold it."""
        if self.device.type != "cuda":
            pipe.to(self.device)
            return
        import torch

        need = sum(p.numel() * p.element_size() for m in pipe.components.values()
                   if isinstance(m, torch.nn.Module) for p in m.parameters())
        free, _ = torch.cuda.mem_get_info(self.device)
        if need * OFFLOAD_MARGIN > free:
            pipe.enable_model_cpu_offload(device=self.device)
            facts["memory"] = (f"model cpu offload: the model needs {need / 2**30:.1f} GB, "
                               f"{free / 2**30:.1f} GB of the GPU were free")
        else:
            pipe.to(self.device)
            facts["memory"] = f"on the GPU ({need / 2**30:.1f} GB of weights)"

    def warm_up(self, name: str = "") -> None:
        with self._lock:
            self.checkpoint(self.checkpoint_entry(name))

    def unload(self) -> None:
        if self.loaded is None:
            return
        self.loaded = None
        gc.collect()
        devices.empty_cache(self.device)

    def variant(self, loaded: Loaded, kind: str):
        """The family's pipeline for ``kind`` (txt2img, img2img, inpaint, edit), sharing the loaded modules."""
        import diffusers

        cls_name = specs.SPECS[loaded.entry.arch].pipeline(kind)
        cls = getattr(diffusers, cls_name)
        if type(loaded.pipe) is cls:
            return loaded.pipe
        if cls not in loaded.variants:
            loaded.variants[cls] = cls.from_pipe(loaded.pipe, dtype=loaded.pipe.transformer.dtype)
            loaded.variants[cls].set_progress_bar_config(disable=True)
        return loaded.variants[cls]

    # --- jobs ---

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        if job.mode not in self.modes:
            raise self.refuse_mode(job)
        entry = self.checkpoint_entry(job.model)
        if job.mode == "edit" and entry.arch != specs.FLUX_KONTEXT:
            raise ProtocolError(UNSUPPORTED, f"instruction edit needs a Flux.1 Kontext checkpoint; '{entry.name}' is "
                                f"{specs.VARIANT_NAMES.get(entry.info.get('variant', ''), entry.arch)}: pick a Kontext "
                                "model, or use inpaint with a prompt", field="mode")
        if job.mode == "edit" and job.image is None:
            raise ProtocolError(UNSUPPORTED, "edit needs the image to edit", field="image")
        with self._lock:
            try:
                return self._run(job, entry, ctx)
            except MemoryError as err:
                raise ProtocolError(OUT_OF_MEMORY, f"the server ran out of memory: {err or 'try a smaller selection'}"
                                    ) from err
            except ProtocolError:
                raise
            except Exception as err:
                if not devices.is_out_of_memory(err):
                    raise
                devices.empty_cache(self.device)
                raise ProtocolError(OUT_OF_MEMORY, f"the {self.device.type.upper()} device ran out of memory running "
                                    f"'{entry.name}': try a smaller selection or batch, or a quantized (fp8) "
                                    "file of the model") from err

    def _run(self, job: Job, entry: ModelEntry, ctx: JobContext) -> List[Layer]:
        import torch

        ctx.check()
        text, tags = prompts.extract_loras(job.prompt)
        negative, neg_tags = prompts.extract_loras(job.negative_prompt)
        loaded = self.checkpoint(entry)
        loras = loaded.adapters.apply_loras(tags + neg_tags)
        work, original = _working_job(job, self.registry, ctx.check)
        hard, soft = imageops.prepare_mask(work)
        multiple = specs.SPECS[entry.arch].latent_multiple
        pw, ph = imageops.processing_size(work.width, work.height, loaded.native ** 2, multiple=multiple)
        kind = {"generate": "txt2img", "img2img": "img2img", "edit": "edit"}.get(job.mode, "inpaint")
        runner = self.variant(loaded, kind)
        settings = _settings(job, entry, kind)
        call = dict(prompt=plain_prompt(text), num_inference_steps=settings["steps"], guidance_scale=settings["cfg"],
                    height=ph, width=pw, output_type="np")
        if entry.arch == specs.SD3:
            call["negative_prompt"] = plain_prompt(negative)
        call.update(_image_inputs(entry.arch, kind, work, hard, pw, ph, settings["strength"]))

        seeds, steps = settings["seeds"], settings["steps"]
        done = [0]

        def on_step(pipe_, step: int, timestep, tensors: dict) -> dict:
            per_image = getattr(pipe_, "num_timesteps", None) or steps
            ctx.progress(done[0] * per_image + min(step + 1, per_image), per_image * len(seeds), None)
            return tensors

        started = time.perf_counter()
        images = []
        for s in seeds:
            ctx.check()
            with torch.inference_mode():
                out = runner(**call, generator=torch.Generator("cpu").manual_seed(s), callback_on_step_end=on_step)
            if not np.isfinite(out.images).all():
                raise ProtocolError(UNSUPPORTED, f"checkpoint '{entry.name}' produced invalid numbers (NaN): its weights "
                                    f"do not fit its architecture or precision {self.dtype}")
            images.append(np.clip(np.rint(out.images[0] * 255), 0, 255).astype(np.uint8))
            done[0] += 1
        info = {"model": entry.name, "arch": entry.arch, "family": entry.arch, "variant": loaded.facts.get("variant"),
                "sampler": SAMPLER, "steps": steps, "cfg": settings["cfg"], "strength": settings["strength"],
                "size": [pw, ph], "loras": loras, "seconds": round(time.perf_counter() - started, 3)}
        if job.params.sampler and job.params.sampler != SAMPLER:
            info["sampler_note"] = f"{job.params.sampler} is an SD sampler; flow-matching models run with Euler"
        for key in ("parts", "memory"):
            if key in loaded.facts:
                info[key] = loaded.facts[key]
        return _layers(job, work, original, soft, images, seeds, info)


def _native_px(entry: ModelEntry, pipe) -> int:
    """The model's native side: ``_paintbridge_native_px`` in its model_index.json, SD3's sample size, else 1024."""
    folder = entry.path if entry.format == DIFFUSERS else loading.config_dir(entry)
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        if index.get(NATIVE_KEY):
            return int(index[NATIVE_KEY])
    except (OSError, ValueError):
        pass
    sample = getattr(pipe.transformer.config, "sample_size", None)
    if entry.arch == specs.SD3 and sample:
        return int(sample) * int(pipe.vae_scale_factor)
    return DEFAULT_NATIVE


def _settings(job: Job, entry: ModelEntry, kind: str) -> dict:
    """Steps, guidance, strength and seeds with the family's defaults filled in."""
    params = job.params
    defaults = family_settings(entry.arch, entry.info.get("variant", ""))
    steps = params.steps
    strength = params.strength if params.strength is not None else DEFAULT_STRENGTH.get(job.mode, 1.0)
    if kind in ("txt2img", "edit"):
        strength = 1.0
    else:  # diffusers runs int(steps * strength) steps: keep at least one
        strength = max(strength, 1.0 / steps)
    cfg = params.cfg if params.cfg is not None else defaults["cfg"]
    seed = params.seed if params.seed >= 0 else random.randrange(2**32)
    return {"steps": steps, "cfg": cfg, "strength": strength,
            "seeds": [(seed + i) % 2**32 for i in range(params.batch)]}


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(array))


def _image_inputs(family: str, kind: str, work: Job, hard: np.ndarray, pw: int, ph: int, strength: float) -> dict:
    """Image, mask and strength arguments of the family's pipeline for ``kind``."""
    if work.image is not None:
        init = imageops.resize(np.ascontiguousarray(work.image[..., :3]), pw, ph)
    else:
        init = np.full((ph, pw, 3), 127, np.uint8)
    mask = np.where(imageops.resize(hard, pw, ph) > 0, 255, 0).astype(np.uint8)
    kontext = {"_auto_resize": False} if family == specs.FLUX_KONTEXT else {}
    if family == specs.FLUX_FILL:  # Fill always takes an image and a mask: generate = fill everything
        if kind == "txt2img":
            return {"image": _pil(init), "mask_image": _pil(np.full((ph, pw), 255, np.uint8)), "strength": 1.0}
        if kind == "img2img":
            return {"image": _pil(init), "mask_image": _pil(np.full((ph, pw), 255, np.uint8)), "strength": strength}
        return {"image": _pil(init), "mask_image": _pil(mask), "strength": strength}
    if kind == "txt2img":
        return {}
    if kind == "edit":
        return {"image": _pil(init), **kontext}
    if kind == "img2img":
        return {"image": _pil(init), "strength": strength}
    return {"image": _pil(init), "mask_image": _pil(mask), "strength": strength, **kontext}
