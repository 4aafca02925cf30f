"""How each family runs: the diffusers pipelines per kind of job (names and variants: ``models.identify_dit``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from ..models import qwen
from ..models.identify_dit import (
    CHROMA,
    EDIT_FAMILIES,
    FAMILIES,
    FLUX,
    FLUX2_KLEIN,
    FLUX_FILL,
    FLUX_KONTEXT,
    NAMES,
    SD3,
    VARIANT_CONFIGS,
    VARIANT_NAMES,
    ZIMAGE,
)

__all__ = [
    "CHROMA",
    "EDIT_FAMILIES",
    "FAMILIES",
    "FLUX",
    "FLUX2_KLEIN",
    "FLUX_FILL",
    "FLUX_KONTEXT",
    "NAMES",
    "SD3",
    "SPECS",
    "VARIANT_CONFIGS",
    "VARIANT_NAMES",
    "ZIMAGE",
    "QWEN3_FAMILIES",
    "FamilySpec",
    "text_encoder_slots",
]


@dataclass(frozen=True)
class FamilySpec:
    """How a family runs: the diffusers pipeline class per job kind (txt2img, img2img, inpaint, edit)."""

    name: str
    pipelines: Dict[str, str] = field(default_factory=dict)
    latent_multiple: int = 16  # processing sizes: VAE factor 8 x 2 (Flux packs 2x2 latents, SD3 patches 2x2)
    control_pipelines: Dict[str, str] = field(default_factory=dict)  # with a ControlNet, per job kind
    cfg_argument: str = "guidance_scale"  # the call argument the job's cfg goes to (true CFG: "true_cfg_scale")
    negative: bool = False  # takes a negative prompt
    text_encoders: Tuple[str, ...] = ("text_encoder", "text_encoder_2")  # the pipeline's text-encoder attributes
    references: bool = False  # extra reference images go into the edit pipeline's image list

    def pipeline(self, kind: str) -> Optional[str]:
        return self.pipelines.get(kind)

    def control_pipeline(self, kind: str) -> Optional[str]:
        return self.control_pipelines.get(kind)


SPECS: Dict[str, FamilySpec] = {
    FLUX: FamilySpec(
        FLUX,
        {"txt2img": "FluxPipeline", "img2img": "FluxImg2ImgPipeline", "inpaint": "FluxInpaintPipeline"},
        control_pipelines={
            "txt2img": "FluxControlNetPipeline",
            "img2img": "FluxControlNetImg2ImgPipeline",
            "inpaint": "FluxControlNetInpaintPipeline",
        },
    ),
    FLUX_FILL: FamilySpec(
        FLUX_FILL,
        {"txt2img": "FluxFillPipeline", "img2img": "FluxFillPipeline", "inpaint": "FluxFillPipeline"},
    ),
    FLUX_KONTEXT: FamilySpec(
        FLUX_KONTEXT,
        {
            "txt2img": "FluxKontextPipeline",
            "img2img": "FluxImg2ImgPipeline",
            "inpaint": "FluxKontextInpaintPipeline",
            "edit": "FluxKontextPipeline",
        },
    ),
    SD3: FamilySpec(
        SD3,
        {
            "txt2img": "StableDiffusion3Pipeline",
            "img2img": "StableDiffusion3Img2ImgPipeline",
            "inpaint": "StableDiffusion3InpaintPipeline",
        },
        control_pipelines={"txt2img": "StableDiffusion3ControlNetPipeline"},
        negative=True,
        text_encoders=("text_encoder", "text_encoder_2", "text_encoder_3"),
    ),
    # Klein has no img2img pipeline: its inpaint pipeline with the whole picture masked is one (strength < 1)
    FLUX2_KLEIN: FamilySpec(
        FLUX2_KLEIN,
        {
            "txt2img": "Flux2KleinPipeline",
            "img2img": "Flux2KleinInpaintPipeline",
            "inpaint": "Flux2KleinInpaintPipeline",
            "edit": "Flux2KleinPipeline",
        },
        text_encoders=("text_encoder",),
    ),
    ZIMAGE: FamilySpec(
        ZIMAGE,
        {"txt2img": "ZImagePipeline", "img2img": "ZImageImg2ImgPipeline", "inpaint": "ZImageInpaintPipeline"},
        control_pipelines={"txt2img": "ZImageControlNetPipeline", "inpaint": "ZImageControlNetInpaintPipeline"},
        negative=True,
        text_encoders=("text_encoder",),
    ),
    # Chroma: real CFG (guidance_scale) with a negative prompt, T5 alone
    CHROMA: FamilySpec(
        CHROMA,
        {"txt2img": "ChromaPipeline", "img2img": "ChromaImg2ImgPipeline", "inpaint": "ChromaInpaintPipeline"},
        negative=True,
        text_encoders=("text_encoder",),
    ),
}
_QWEN = dict(cfg_argument="true_cfg_scale", negative=True, text_encoders=("text_encoder",))
_QWEN_BASE = {
    "txt2img": "QwenImagePipeline",
    "img2img": "QwenImageImg2ImgPipeline",
    "inpaint": "QwenImageInpaintPipeline",
}
SPECS.update(
    {
        qwen.QWEN: FamilySpec(
            qwen.QWEN,
            _QWEN_BASE,
            control_pipelines={"txt2img": "QwenImageControlNetPipeline"},
            **_QWEN,
        ),
        qwen.QWEN_EDIT: FamilySpec(
            qwen.QWEN_EDIT,
            {**_QWEN_BASE, "edit": "QwenImageEditPipeline", "inpaint": "QwenImageEditInpaintPipeline"},
            **_QWEN,
        ),
        qwen.QWEN_EDIT_PLUS: FamilySpec(
            qwen.QWEN_EDIT_PLUS, {**_QWEN_BASE, "edit": "QwenImageEditPlusPipeline"}, references=True, **_QWEN
        ),
        # one picture into RGBA layers (mode "decompose"), nothing else
        qwen.QWEN_LAYERED: FamilySpec(qwen.QWEN_LAYERED, {"decompose": "QwenImageLayeredPipeline"}, **_QWEN),
    }
)
QWEN3_FAMILIES = (FLUX2_KLEIN, ZIMAGE)  # one Qwen3 text encoder, the Qwen tokenizer (``qwen3``)


def text_encoder_slots(family: str) -> Tuple[str, ...]:
    """The pipeline's text-encoder attributes, in order."""
    return SPECS[family].text_encoders
