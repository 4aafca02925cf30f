"""Reference images (IP-Adapter) on a loaded SD1.5/SDXL checkpoint, through diffusers' own IP-Adapter support.

1. ``select``: an installed IP-Adapter of the checkpoint's family for each reference (by name, else by type: ``face``
   takes a face adapter, the others a regular one, Plus first) and the image encoder it was trained with (by width).
2. ``ReferenceSet.load``: the adapters go into the UNet with ``load_ip_adapter`` (one slot per reference, so each has
   its own scale, block split and mask); a job without references unloads them. Weights are read from safetensors, or
   from a pickle only with ``torch.load(weights_only=True)``.
3. ``embeddings``: each reference image through its encoder (diffusers' ``encode_image``), with the unconditional half
   for CFG, as ``ip_adapter_image_embeds``; the engine caches them by content.
4. ``scales``: per reference the strength, on every block (content, face) or only InstantStyle's style / layout blocks;
   0 outside the reference's step range. The engine sets them before the call and from its step callback
   (``set_ip_adapter_scale``), as diffusers documents for IP-Adapter cut-offs.
5. ``masks``: ``IPAdapterMaskProcessor`` masks for masked references (all-ones for the others).
"""

from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from ..core import Reference
from ..models import ipadapter as ipa
from ..models import pickles
from ..models.registry import ModelEntry, ModelRegistry, arch_name
from . import attention

# InstantStyle's split (Wang et al. 2024, as diffusers documents it for SDXL): the layout is read in the lowest-
# resolution down block's second attention, the style in the lowest-resolution up block's second attention.
# SD1.5 gets the same positions in its own layout (lowest-resolution cross-attention down block 2, up block 1).
BLOCKS = {
    ("sdxl", "style"): {"up": {"block_0": [0.0, 1.0, 0.0]}},
    ("sdxl", "composition"): {"down": {"block_2": [0.0, 1.0]}},
    ("sd15", "style"): {"up": {"block_1": [0.0, 1.0, 0.0]}},
    ("sd15", "composition"): {"down": {"block_2": [0.0, 1.0]}},
}
CATALOGUE_HINT = {"sd15": "paintbridge models pull sd15-ipadapter", "sdxl": "paintbridge models pull sdxl-ipadapter"}


@dataclasses.dataclass
class ReferencePlan:
    """A reference with the adapter and image encoder that serve it."""

    reference: Reference
    adapter: ModelEntry
    encoder: ModelEntry

    def describe(self) -> dict:
        """What a result layer's ``info["references"]`` says of this reference."""
        ref = self.reference
        return {
            "type": ref.type,
            "strength": ref.strength,
            "adapter": self.adapter.name,
            "encoder": self.encoder.name,
            "start": ref.start,
            "end": ref.end,
            "masked": ref.mask is not None,
        }


def _adapters_text(entries: List[ModelEntry]) -> str:
    if not entries:
        return "no IP-Adapter is installed"
    return "installed: " + ", ".join(
        f"{e.name} ({arch_name(e.arch)}{', face' if e.info.get('face') else ''})" for e in entries
    )


def select(references: List[Reference], checkpoint: ModelEntry, registry: ModelRegistry) -> List[ReferencePlan]:
    """The adapter and encoder of each reference; ``unsupported`` for another family, ``model_not_found`` naming
    what is installed (and the catalogue entry that provides one) when none fits."""
    arch = checkpoint.arch
    if arch not in ipa.REFERENCE_FAMILIES:
        raise ProtocolError(
            UNSUPPORTED,
            f"reference images are not supported for {arch_name(arch)} models "
            f"(checkpoint '{checkpoint.name}'): they work with SD1.5 and SDXL checkpoints",
            field="references",
        )
    installed = [e for e in registry.entries("ipadapter") if e.problem is None]
    plans = []
    for i, ref in enumerate(references):
        field = f"references[{i}].model"
        if ref.model:
            entry = registry.get_fitting(ref.model, "ipadapter", checkpoint, "IP-Adapter", field)
        else:
            fits = [e for e in installed if e.arch == arch and bool(e.info.get("face")) == (ref.type == "face")]
            fits.sort(key=lambda e: (e.info.get("variant") != "plus", e.name.lower()))
            if not fits:
                what = "face IP-Adapter" if ref.type == "face" else "IP-Adapter"
                raise ProtocolError(
                    MODEL_NOT_FOUND,
                    f"no {arch_name(arch)} {what} for a '{ref.type}' reference "
                    f"(checkpoint '{checkpoint.name}'): {_adapters_text(installed)}; "
                    f"{CATALOGUE_HINT[arch]} installs one",
                    field=field,
                )
            entry = fits[0]
        plans.append(ReferencePlan(ref, entry, encoder_for(entry, registry, field)))
    return plans


def encoder_for(adapter: ModelEntry, registry: ModelRegistry, field: str) -> ModelEntry:
    """The installed image encoder whose width fits ``adapter`` (an encoder inside the adapter's own folder first)."""
    output, width = adapter.info["encoder_output"], adapter.info["encoder_dim"]
    need = {
        (1024, "image_embeds"): "ViT-H/14",
        (1280, "hidden_states"): "ViT-H/14",
        (1280, "image_embeds"): "ViT-bigG/14",
        (1664, "hidden_states"): "ViT-bigG/14",
    }.get((width, output))
    pull = "clip-vision-vit-bigg" if need == "ViT-bigG/14" else "clip-vision-vit-h"
    return registry.first_fitting(
        "clip_vision",
        "clip",
        lambda e: ipa.encoder_dim(e.info, output) == width,
        lambda e: (e.path.parent != adapter.path.parent, e.name.lower()),
        lambda e: ipa.describe_encoder(e.info),
        lambda have: (
            f"IP-Adapter '{adapter.name}' needs a {need or f'{width}-wide'} image encoder in clip_vision/ "
            f"(installed: {have}); paintbridge models pull {pull} installs it"
        ),
        field,
    )


def scale_config(arch: str, ref: Reference, strength: Optional[float] = None):
    """What ``set_ip_adapter_scale`` takes for one reference: a float, or InstantStyle's per-block map."""
    s = ref.strength if strength is None else strength
    blocks = BLOCKS.get((arch, ref.type))
    if blocks is None or s == 0:
        return float(s)
    return {part: {block: [v * s for v in values] for block, values in parts.items()} for part, parts in blocks.items()}


def active(ref: Reference, fraction: float) -> bool:
    """Whether a step that starts after ``fraction`` of the steps is inside the reference's range [start, end)."""
    return ref.start <= fraction < ref.end or (ref.end >= 1.0 and fraction >= ref.start)


def scales(arch: str, references: List[Reference], fraction: float) -> list:
    """Every reference's scale config for the step that starts after ``fraction`` of the steps."""
    return [scale_config(arch, r, None if active(r, fraction) else 0.0) for r in references]


def masks(references: List[Reference], width: int, height: int) -> Optional[list]:
    """``ip_adapter_masks`` at processing size (None when no reference is masked)."""
    if all(r.mask is None for r in references):
        return None
    import torch
    from diffusers.image_processor import IPAdapterMaskProcessor
    from PIL import Image

    from .. import imageops

    processor = IPAdapterMaskProcessor()
    out = []
    for ref in references:
        mask = ref.mask if ref.mask is not None else np.full((height, width), 255, np.uint8)
        image = Image.fromarray(imageops.resize(np.ascontiguousarray(mask), width, height))
        out.append(processor.preprocess([image], height=height, width=width).reshape(1, 1, height, width))
    return [m.to(torch.float32) for m in out]


class ReferenceSet:
    """The IP-Adapters loaded into one checkpoint's UNet, their weights as read, and the image encoders."""

    def __init__(self, registry: ModelRegistry, device, dtype) -> None:
        self.registry = registry
        self.device, self.dtype = device, dtype
        self.loaded: Tuple[str, ...] = ()  # adapter paths in slot order
        self._states: Dict[str, dict] = {}
        self._encoders: Dict[str, object] = {}
        self._lock = threading.Lock()

    def load(self, pipe, plans: List[ReferencePlan], checkpoint: str = "") -> None:
        """Make exactly ``plans``' adapters the UNet's IP-Adapters, one slot per reference (none: unloaded)."""
        wanted = tuple(str(p.adapter.path) for p in plans)
        if wanted == self.loaded:
            return
        if self.loaded:
            pipe.unload_ip_adapter()
            attention.restore(pipe.unet, self.device)  # diffusers' unload leaves AttnProcessor2_0
            self.loaded = ()
        if not plans:
            return
        states = [self._state(p.adapter) for p in plans]
        try:
            pipe.load_ip_adapter(states, subfolder="", weight_name=[""] * len(states), image_encoder_folder=None)
        except Exception as err:  # a file that does not fit the UNet
            if getattr(pipe.unet, "encoder_hid_proj", None) is not None:
                pipe.unload_ip_adapter()
            attention.restore(pipe.unet, self.device)
            names = ", ".join(sorted({p.adapter.name for p in plans}))
            raise ProtocolError(
                UNSUPPORTED,
                f"cannot load IP-Adapter {names} into checkpoint '{checkpoint}' (the "
                f"adapter does not fit its UNet): {err}",
                field="references",
            ) from err
        pipe.unet.to(self.device)
        self.loaded = wanted

    def _state(self, entry: ModelEntry) -> dict:
        """The adapter's weights as diffusers takes them (``{"image_proj": {...}, "ip_adapter": {...}}``), read once."""
        key = str(entry.path)
        if key not in self._states:
            if entry.format == "pickle":
                if not self.registry.allow_pickle:
                    raise ProtocolError(
                        UNSUPPORTED,
                        f"IP-Adapter '{entry.name}' is a pickle file: convert it to "
                        ".safetensors or start the server with --allow-pickle",
                        field="references",
                    )
                flat = ipa.flatten(_weights_only(entry.path, "IP-Adapter"))
            else:
                from safetensors.torch import load_file

                flat = load_file(key)
            proj, layers = ipa.split_adapter_state(flat)
            self._states[key] = {"image_proj": proj, "ip_adapter": layers}
        return self._states[key]

    def encoder(self, entry: ModelEntry):
        """The image encoder of ``entry`` (a Hugging Face folder, or a single file with its config), loaded once."""
        key = str(entry.path)
        with self._lock:
            if key not in self._encoders:
                self._encoders[key] = self._load_encoder(entry)
            return self._encoders[key]

    def _load_encoder(self, entry: ModelEntry):
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        if entry.format == "diffusers":
            weights = "model.safetensors" if (entry.path / "model.safetensors").is_file() else "pytorch_model.bin"
            if weights.endswith(".bin") and not self.registry.allow_pickle:
                raise ProtocolError(
                    UNSUPPORTED,
                    f"image encoder '{entry.name}' holds only a pickle "
                    "(pytorch_model.bin): convert it to model.safetensors or start the server with "
                    "--allow-pickle",
                    field="references",
                )
            model = CLIPVisionModelWithProjection.from_pretrained(
                str(entry.path), local_files_only=True, dtype=self.dtype
            )
        else:
            config_dir = entry.config_dir or ipa.standard_config(entry.info)
            config = CLIPVisionConfig.from_pretrained(str(config_dir), local_files_only=True)
            if entry.format == "pickle":
                state = _weights_only(entry.path, "image encoder")
            else:
                from safetensors.torch import load_file

                state = load_file(str(entry.path))
            state = {k[len("clip_vision.") :] if k.startswith("clip_vision.") else k: v for k, v in state.items()}
            model = CLIPVisionModelWithProjection.from_pretrained(
                None, config=config, state_dict=state, dtype=self.dtype
            )
        return model.to(self.device).eval()

    def embeddings(self, plan: ReferencePlan, cfg: bool):
        """``ip_adapter_image_embeds`` of one reference: [2 (unconditional, image) or 1, 1, ...] on the device."""
        import torch
        from diffusers import StableDiffusionPipeline
        from PIL import Image
        from transformers import CLIPImageProcessor

        encoder = self.encoder(plan.encoder)
        size = encoder.config.image_size
        owner = SimpleNamespace(image_encoder=encoder, feature_extractor=CLIPImageProcessor(size=size, crop_size=size))
        hidden = plan.adapter.info["encoder_output"] == "hidden_states"
        image = Image.fromarray(np.ascontiguousarray(plan.reference.image[..., :3]))
        with torch.inference_mode():
            positive, negative = StableDiffusionPipeline.encode_image(owner, image, self.device, 1, hidden)
        positive, negative = positive[None], negative[None]
        return torch.cat([negative, positive]) if cfg else positive


def _weights_only(path, what: str) -> dict:
    """A pickled state dict read by ``models.pickles`` (weights only); a refusal is ``unsupported`` naming the file."""
    try:
        state = pickles.load_weights_only(path, what)
    except pickles.PickleRefused as err:
        raise ProtocolError(UNSUPPORTED, str(err), field="references") from None
    if not isinstance(state, dict):
        raise ProtocolError(
            UNSUPPORTED, f"{what} file {path.name} holds a {type(state).__name__}, not a state dict", field="references"
        )
    return state
