"""The parts a Flux/SD3/Klein/Z-Image/Chroma/Qwen-Image checkpoint needs besides its transformer: text encoders and a VAE.

Each comes from inside the checkpoint when it is a full one, else from the models folders (ComfyUI's
``text_encoders/`` or ``clip/``, and ``vae/``), matched by kind and width against the checkpoint's config. When a part
is found nowhere, one error names every missing part and where to put it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from protocol.errors import MODEL_NOT_FOUND, ProtocolError

from ..models.identify import DIFFUSERS, DetectError, file_shapes
from ..models.registry import ModelEntry, ModelRegistry
from ..models import identify_dit
from ..models import qwen
from . import specs

# Which checkpoint role fills which pipeline slot.
SLOT_ROLES = {
    specs.SD3: {"text_encoder": "clip_l", "text_encoder_2": "clip_g", "text_encoder_3": "t5"},
    "flux": {"text_encoder": "clip_l", "text_encoder_2": "t5"},
    specs.FLUX2_KLEIN: {"text_encoder": "qwen3"},
    specs.ZIMAGE: {"text_encoder": "qwen3"},
    specs.CHROMA: {"text_encoder": "t5"},
    qwen.QWEN: {"text_encoder": "qwen"},
}
ROLE_HINTS = {
    "clip_l": ("clip_l", "clip-l", "clipl", "vit-l", "vit_l"),
    "clip_g": ("clip_g", "clip-g", "clipg", "bigg"),
    "t5": ("t5",),
    "qwen3": ("qwen",),
    "qwen": ("qwen",),
}
VAE_HINTS = {
    "flux": ("ae", "flux"),
    specs.SD3: ("sd3",),
    specs.FLUX2_KLEIN: ("flux2", "flux.2"),
    specs.ZIMAGE: ("ae", "flux", "z_image", "z-image"),
    specs.CHROMA: ("ae", "flux", "chroma"),
    qwen.QWEN: ("qwen",),
}
# What a missing part's message suggests, per family: text-encoder files, and the VAE file.
PART_EXAMPLES = {
    "flux": ("clip_l.safetensors, t5xxl_fp16.safetensors", "ae.safetensors"),
    specs.SD3: ("clip_l.safetensors, clip_g.safetensors, t5xxl_fp16.safetensors", "sd3_vae.safetensors"),
    specs.FLUX2_KLEIN: ("qwen_3_4b.safetensors for Klein 4B, qwen_3_8b.safetensors for 9B", "flux2-vae.safetensors"),
    specs.ZIMAGE: ("qwen_3_4b.safetensors", "ae.safetensors"),
    specs.CHROMA: ("t5xxl_fp16.safetensors", "ae.safetensors"),
    qwen.QWEN: ("qwen_2.5_vl_7b.safetensors", "qwen_image_vae.safetensors"),
}
VAE_EXAMPLES = {qwen.QWEN_LAYERED: "qwen_image_layered_vae.safetensors (its RGBA VAE)"}  # where the base's differs


@dataclass
class Source:
    """Where a part's tensors are: a file (with a key prefix), or a diffusers folder; ``name`` is shown in info."""

    path: Path
    prefix: str = ""
    name: str = ""
    folder: bool = False


@dataclass
class EncoderSlot:
    """A text encoder the checkpoint's config asks for."""

    slot: str
    kind: str  # "clip", "t5", "qwen3" or Qwen-Image's "qwen2.5-vl"
    width: int
    projection: bool
    role: str

    @property
    def label(self) -> str:
        return identify_dit.encoder_label(self.kind, self.width)


@dataclass
class Parts:
    encoders: Dict[str, Source] = field(default_factory=dict)
    vae: Optional[Source] = None


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _base(family: str) -> str:
    if family in (specs.SD3, specs.FLUX2_KLEIN, specs.ZIMAGE, specs.CHROMA):
        return family
    return qwen.QWEN if family in qwen.FAMILIES else "flux"


def encoder_slots(family: str, config: Path) -> List[EncoderSlot]:
    """The text encoders a checkpoint's config folder asks for."""
    slots = []
    roles = SLOT_ROLES[_base(family)]
    for slot in specs.text_encoder_slots(family):
        cfg = _json(config / slot / "config.json")
        kind = {"t5": "t5", "qwen2_5_vl": qwen.TEXT_ENCODER, "qwen3": "qwen3"}.get(cfg.get("model_type"), "clip")
        width = int(cfg.get("d_model") or (cfg.get("text_config") or {}).get("hidden_size") or cfg.get("hidden_size"))
        projection = any("WithProjection" in a for a in cfg.get("architectures", []))
        slots.append(EncoderSlot(slot, kind, width, projection, roles[slot]))
    return slots


def _hinted(name: str, hints) -> bool:
    stem = name.lower().rsplit("/", 1)[-1]
    return any(h in stem for h in hints)


def _shared_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a.lower().rsplit("/", 1)[-1], b.lower().rsplit("/", 1)[-1]]))


def _find_encoder(slot: EncoderSlot, checkpoint: ModelEntry, registry: ModelRegistry) -> Optional[ModelEntry]:
    """The installed text encoder of the slot's kind and width; preferred: named for its role, with the projection
    the slot needs, then the one whose name shares most with the checkpoint's."""
    fits = [
        e
        for e in registry.entries("text_encoder")
        if e.problem is None and e.arch == slot.kind and e.info.get("width") == slot.width
    ]
    fits.sort(
        key=lambda e: (
            not _hinted(e.name, ROLE_HINTS[slot.role]),
            slot.projection and not e.info.get("projection"),
            -_shared_prefix(e.name, checkpoint.name),
            e.name,
        )
    )
    return fits[0] if fits else None


def _vae_kind(config: dict) -> Tuple[int, bool, int]:
    """(latent channels, whether it is a 3-D video-style VAE as Qwen-Image's, picture channels: 4 for
    Qwen-Image-Layered's RGBA VAE) of a VAE's diffusers config."""
    latent = int(config.get("latent_channels") or config.get("z_dim") or 4)
    return latent, "z_dim" in config, int(config.get("input_channels") or config.get("in_channels") or 3)


def _vae_channels(entry: ModelEntry) -> Optional[Tuple[int, bool, int]]:
    try:
        if entry.format == DIFFUSERS:
            return _vae_kind(_json(entry.path / "config.json"))
        shapes = file_shapes(entry.path, entry.format != "pickle")
        conv = next((v for k, v in shapes.items() if k.endswith("decoder.conv_in.weight")), ())
        # the encoder's first convolution (diffusers or Wan's names) reads the picture's channels
        first = next(
            (v for k, v in shapes.items() if k.endswith(("encoder.conv_in.weight", "encoder.conv1.weight"))), ()
        )
        picture = first[1] if len(first) > 1 else 3
        return identify_dit.vae_latent_channels(shapes), len(conv) == 5, picture
    except (OSError, ValueError, DetectError):
        return None


def _find_vae(
    family: str, checkpoint: ModelEntry, channels: Tuple[int, bool], registry: ModelRegistry
) -> Optional[ModelEntry]:
    fits = [e for e in registry.entries("vae") if e.problem is None and _vae_channels(e) == channels]
    fits.sort(
        key=lambda e: (not _hinted(e.name, VAE_HINTS[_base(family)]), -_shared_prefix(e.name, checkpoint.name), e.name)
    )
    return fits[0] if fits else None


def find(entry: ModelEntry, config: Path, registry: ModelRegistry) -> Parts:
    """Every part of a single-file checkpoint, or ``model_not_found`` naming each missing one and where it goes."""
    parts = Parts()
    missing: List[str] = []
    inside = entry.info.get("encoders") or {}
    for slot in encoder_slots(entry.arch, config):
        if slot.role in inside:
            parts.encoders[slot.slot] = Source(entry.path, inside[slot.role], f"{entry.name} ({slot.role})")
            continue
        found = _find_encoder(slot, entry, registry)
        if found is None:
            missing.append(slot.label)
        else:
            parts.encoders[slot.slot] = Source(found.path, found.info.get("prefix", ""), found.name)
    channels = _vae_kind(_json(config / "vae" / "config.json"))
    if entry.info.get("vae_prefix") is not None:
        parts.vae = Source(entry.path, entry.info["vae_prefix"], f"{entry.name} (vae)")
    else:
        vae = _find_vae(entry.arch, entry, channels, registry)
        if vae is None:
            example = VAE_EXAMPLES.get(entry.arch) or PART_EXAMPLES[_base(entry.arch)][1]
            missing.append(f"VAE ({channels[0]} latent channels, e.g. {example})")
        else:
            parts.vae = Source(vae.path, "", vae.name, folder=vae.format == DIFFUSERS)
    if missing:
        encoders = " or ".join(str(d / "text_encoders") for d in registry.dirs) or "text_encoders/"
        vaes = " or ".join(str(d / "vae") for d in registry.dirs) or "vae/"
        variant = specs.VARIANT_NAMES.get(entry.info.get("variant", ""), specs.NAMES.get(entry.arch, entry.arch))
        raise ProtocolError(
            MODEL_NOT_FOUND,
            f"checkpoint '{entry.name}' ({variant}) holds only its transformer and needs parts that are not "
            f"installed: {', '.join(missing)}. Put text encoders (e.g. {PART_EXAMPLES[_base(entry.arch)][0]}) "
            f"in {encoders} "
            f"(ComfyUI's clip/ works too) and the VAE in {vaes}",
            field="model",
        )
    return parts
