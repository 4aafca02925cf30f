"""Reference images on Flux.1 through diffusers' ``FluxPriorReduxPipeline``.

1. ``check``: what Redux can honour. It serves ``content`` and ``style`` references (both the same way: Redux has no
   style/layout split) over the whole picture for every step; ``composition`` and ``face`` references, masked ones and
   step ranges (``start`` > 0 or ``end`` < 1: the image tokens are part of the prompt for the whole run) are refused
   with ``unsupported`` naming the reference and the family. SD3 has no Redux and refuses references.
2. ``select``: the installed Redux model (by name, else the first usable one) and its SigLIP tower (a Redux folder's
   own ``image_encoder/``, else the ``clip_vision/`` SigLIP file whose width the embedder reads).
3. ``ReduxSet.prompt_inputs``: the prompt's T5 and CLIP embeddings from the job's Flux pipeline, then each reference
   through the prior pipeline (SigLIP → Redux embedder → image tokens appended to the T5 tokens). Several references
   concatenate, as chained Apply Style Model nodes do in ComfyUI; a reference's ``strength`` is the pipeline's
   ``prompt_embeds_scale`` on its image tokens (ComfyUI's ``multiply`` strength), the pooled CLIP embedding stays the
   prompt's; a reference of strength 0 is left out, so the job equals the one without it.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Dict, List, Optional

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from ..core import Reference
from ..models import redux as rdx
from ..models.detect import DIFFUSERS
from ..models.registry import ModelEntry, ModelRegistry, arch_name

CATALOGUE_HINT = "paintbridge models pull flux-redux"


@dataclasses.dataclass
class ReduxPlan:
    """The Redux model and SigLIP tower serving a job's references (``encoder`` None: the Redux folder's own)."""

    redux: ModelEntry
    encoder: Optional[ModelEntry]


def check(references: List[Reference], checkpoint: ModelEntry) -> None:
    """``unsupported`` for references Flux Redux cannot honour on ``checkpoint`` (and for SD3, which has no Redux)."""
    family = arch_name(checkpoint.arch)
    if checkpoint.arch not in rdx.REDUX_FAMILIES:
        raise ProtocolError(
            UNSUPPORTED,
            f"reference images are not supported for {family} models (checkpoint "
            f"'{checkpoint.name}'): they work with SD1.5 and SDXL checkpoints (IP-Adapter) and Flux.1 "
            "checkpoints (Redux)",
            field="references",
        )
    for i, ref in enumerate(references):
        if ref.type not in rdx.REDUX_TYPES:
            raise ProtocolError(
                UNSUPPORTED,
                f"a '{ref.type}' reference is not supported for {family} models (Flux "
                f"Redux takes {' and '.join(rdx.REDUX_TYPES)} references): use one of those, or an "
                "SD1.5/SDXL checkpoint",
                field=f"references[{i}].type",
            )
        if ref.mask is not None:
            raise ProtocolError(
                UNSUPPORTED,
                f"a masked reference is not supported for {family} models (Flux Redux "
                "guides the whole picture): send it without a mask or region, or use an SD1.5/SDXL "
                "checkpoint",
                field=f"references[{i}].mask",
            )
        if ref.start > 0.0 or ref.end < 1.0:
            field = "start" if ref.start > 0.0 else "end"
            raise ProtocolError(
                UNSUPPORTED,
                f"a reference step range ({ref.start:g}-{ref.end:g}) is not supported for "
                f"{family} models (Flux Redux's image tokens are part of the prompt for every step): "
                "use 0-1, or an SD1.5/SDXL checkpoint",
                field=f"references[{i}].{field}",
            )


def _installed_text(entries: List[ModelEntry]) -> str:
    return "installed: " + ", ".join(e.name for e in entries) if entries else "none is installed"


def select(references: List[Reference], checkpoint: ModelEntry, txt_dim: int, registry: ModelRegistry) -> ReduxPlan:
    """The Redux model for the job (a reference's ``model`` names one) and its SigLIP tower; ``model_not_found`` naming
    what is installed and the catalogue entry, ``unsupported`` for a Redux made for another T5 width."""
    named = [(i, r.model) for i, r in enumerate(references) if r.model]
    if len({m for _, m in named}) > 1:
        raise ProtocolError(
            UNSUPPORTED,
            "references on one Flux job must use one Redux model; named: " + ", ".join(sorted({m for _, m in named})),
            field=f"references[{named[1][0]}].model",
        )
    field = f"references[{named[0][0]}].model" if named else "references"
    installed = [e for e in registry.entries("redux") if e.problem is None]
    if named:
        entry = registry.get(named[0][1], "redux")
    elif installed:
        entry = installed[0]
    else:
        raise ProtocolError(
            MODEL_NOT_FOUND,
            f"reference images on {arch_name(checkpoint.arch)} (checkpoint "
            f"'{checkpoint.name}') need a Flux Redux model in style_models/ and its SigLIP image "
            f"encoder in clip_vision/: {_installed_text(registry.entries('redux'))}; "
            f"{CATALOGUE_HINT} installs both",
            field=field,
        )
    if entry.info.get("txt_dim") != txt_dim:
        raise ProtocolError(
            UNSUPPORTED,
            f"Redux model '{entry.name}' makes {entry.info.get('txt_dim')}-wide tokens "
            f"but checkpoint '{checkpoint.name}' reads {txt_dim}-wide T5 tokens",
            field=field,
        )
    if entry.format == DIFFUSERS:
        return ReduxPlan(entry, None)
    return ReduxPlan(entry, _encoder_for(entry, registry, field))


def _encoder_for(redux: ModelEntry, registry: ModelRegistry, field: str) -> ModelEntry:
    """The installed SigLIP tower as wide as ``redux`` reads (one named sigclip/siglip first)."""
    return registry.first_fitting(
        "clip_vision",
        rdx.SIGLIP,
        lambda e: e.info.get("hidden_size") == redux.info["redux_dim"],
        lambda e: ("sigclip" not in e.name.lower() and "siglip" not in e.name.lower(), e.name.lower()),
        lambda e: rdx.describe_siglip(e.info),
        lambda have: (
            f"Redux model '{redux.name}' needs a {redux.info['redux_dim']}-wide SigLIP image encoder "
            f"(sigclip_vision_patch14_384.safetensors) in clip_vision/ (SigLIP encoders installed: {have}); "
            f"{CATALOGUE_HINT} installs it"
        ),
        field,
    )


class ReduxSet:
    """The Redux parts (SigLIP tower, its image processor, Redux embedder) read once per file, on the engine's device."""

    def __init__(self, device, dtype) -> None:
        self.device, self.dtype = device, dtype
        self._parts: Dict[tuple, tuple] = {}
        self._lock = threading.Lock()

    def parts(self, plan: ReduxPlan) -> tuple:
        """(image_encoder, feature_extractor, image_embedder) of ``plan``, loaded once (one plan kept)."""
        key = (str(plan.redux.path), str(plan.encoder.path) if plan.encoder else "", str(self.dtype))
        with self._lock:
            if key not in self._parts:
                self._parts.clear()
                try:
                    self._parts[key] = self._load(plan)
                except ProtocolError:
                    raise
                except Exception as err:  # loader errors vary; name the files and the reason
                    raise ProtocolError(
                        UNSUPPORTED,
                        f"cannot load Redux model '{plan.redux.name}'"
                        f"{f' with image encoder {plan.encoder.name!r}' if plan.encoder else ''}: {err}",
                        field="references",
                    ) from err
            return self._parts[key]

    def _load(self, plan: ReduxPlan) -> tuple:
        from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
        from transformers import SiglipImageProcessor, SiglipVisionModel

        if plan.encoder is None:  # a FluxPriorReduxPipeline folder
            folder = plan.redux.path
            encoder = SiglipVisionModel.from_pretrained(
                str(folder / "image_encoder"), local_files_only=True, dtype=self.dtype
            )
            processor = SiglipImageProcessor.from_pretrained(str(folder / "feature_extractor"), local_files_only=True)
            embedder = ReduxImageEncoder.from_pretrained(
                str(folder), subfolder="image_embedder", local_files_only=True, torch_dtype=self.dtype
            )
        else:
            encoder, processor = self._siglip_file(plan.encoder)
            from safetensors.torch import load_file

            state = load_file(str(plan.redux.path))
            embedder = ReduxImageEncoder(
                redux_dim=plan.redux.info["redux_dim"], txt_in_features=plan.redux.info["txt_dim"]
            )
            embedder.load_state_dict(state, strict=True)
        return encoder.to(self.device, self.dtype).eval(), processor, embedder.to(self.device, self.dtype).eval()

    def _siglip_file(self, entry: ModelEntry) -> tuple:
        """A single-file SigLIP tower with its config (``<name>.config/`` or the shipped one) and image processor."""
        from safetensors.torch import load_file
        from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

        config_dir = entry.config_dir or rdx.standard_siglip_config(entry.info)
        config = SiglipVisionConfig.from_pretrained(str(config_dir), local_files_only=True)
        config.vision_use_head = bool(entry.info.get("head"))  # Redux reads the last hidden state, not the pooling
        state = load_file(str(entry.path))
        encoder = SiglipVisionModel.from_pretrained(None, config=config, state_dict=state, dtype=self.dtype)
        if (config_dir / "preprocessor_config.json").is_file():
            processor = SiglipImageProcessor.from_pretrained(str(config_dir), local_files_only=True)
        else:
            processor = SiglipImageProcessor(size={"height": config.image_size, "width": config.image_size})
        return encoder, processor

    def prompt_inputs(self, runner, plan: ReduxPlan, prompt: str, references: List[Reference]) -> dict:
        """``prompt_embeds`` (the prompt's T5 tokens, then each reference's scaled image tokens) and
        ``pooled_prompt_embeds`` (the prompt's) for ``runner``, a Flux pipeline; references of strength 0 are left
        out (none left: the plain ``prompt``)."""
        import torch
        from diffusers import FluxPriorReduxPipeline
        from PIL import Image

        used = [r for r in references if r.strength > 0]
        if not used:
            return {"prompt": prompt}
        encoder, processor, embedder = self.parts(plan)
        prior = FluxPriorReduxPipeline(
            image_encoder=encoder,
            feature_extractor=processor,
            image_embedder=embedder,
            text_encoder=runner.text_encoder,
            tokenizer=runner.tokenizer,
            text_encoder_2=runner.text_encoder_2,
            tokenizer_2=runner.tokenizer_2,
        )
        prior.set_progress_bar_config(disable=True)
        with torch.inference_mode():
            text, pooled, _ = runner.encode_prompt(
                prompt=prompt, prompt_2=None, max_sequence_length=512, device=runner._execution_device
            )
            parts = [text]
            for ref in used:
                image = Image.fromarray(np.ascontiguousarray(ref.image[..., :3]))
                out = prior(
                    image=image,
                    prompt_embeds=text,
                    pooled_prompt_embeds=pooled.clone(),
                    prompt_embeds_scale=float(ref.strength),
                    pooled_prompt_embeds_scale=1.0,
                )
                parts.append(out.prompt_embeds[:, text.shape[1] :].to(text.device, text.dtype))
            return {"prompt_embeds": torch.cat(parts, dim=1), "pooled_prompt_embeds": pooled}


def txt_dim(pipe) -> int:
    """The T5 width a Flux pipeline's transformer reads (its ``joint_attention_dim``)."""
    return int(pipe.transformer.config.joint_attention_dim)


def info(plan: ReduxPlan, references: List[Reference]) -> List[dict]:
    """What each reference used, for the result layer's ``info["references"]``."""
    encoder = plan.encoder.name if plan.encoder else f"{plan.redux.name} (image_encoder)"
    return [
        {
            "type": r.type,
            "strength": r.strength,
            "redux": plan.redux.name,
            "encoder": encoder,
            "start": r.start,
            "end": r.end,
            "masked": False,
        }
        for r in references
    ]
