"""Which diffusers pipeline does a job, made from the loaded checkpoint with ``from_pipe`` (shared weights)."""

from __future__ import annotations

from typing import List

from .controls import UNION_MODES, ControlPlan

# (arch, kind, control) -> diffusers class name; kind: txt2img / img2img / inpaint; control: "", "cn", "union"
CLASSES = {
    ("sd15", "txt2img", ""): "StableDiffusionPipeline",
    ("sd15", "img2img", ""): "StableDiffusionImg2ImgPipeline",
    ("sd15", "inpaint", ""): "StableDiffusionInpaintPipeline",
    ("sd15", "txt2img", "cn"): "StableDiffusionControlNetPipeline",
    ("sd15", "img2img", "cn"): "StableDiffusionControlNetImg2ImgPipeline",
    ("sd15", "inpaint", "cn"): "StableDiffusionControlNetInpaintPipeline",
    ("sdxl", "txt2img", ""): "StableDiffusionXLPipeline",
    ("sdxl", "img2img", ""): "StableDiffusionXLImg2ImgPipeline",
    ("sdxl", "inpaint", ""): "StableDiffusionXLInpaintPipeline",
    ("sdxl", "txt2img", "cn"): "StableDiffusionXLControlNetPipeline",
    ("sdxl", "img2img", "cn"): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("sdxl", "inpaint", "cn"): "StableDiffusionXLControlNetInpaintPipeline",
    ("sdxl", "txt2img", "union"): "StableDiffusionXLControlNetUnionPipeline",
    ("sdxl", "img2img", "union"): "StableDiffusionXLControlNetUnionImg2ImgPipeline",
    ("sdxl", "inpaint", "union"): "StableDiffusionXLControlNetUnionInpaintPipeline",
}


def pipeline_class(arch: str, kind: str, control: str):
    import diffusers

    return getattr(diffusers, CLASSES[(arch, kind, control)])


def variant(loaded, kind: str, nets: list, union: bool):
    """The pipeline for ``kind`` with ``nets`` as ControlNets, sharing the loaded checkpoint's modules."""
    control = "union" if union else "cn" if nets else ""
    cls = pipeline_class(loaded.entry.arch, kind, control)
    # from_pipe casts the (shared) modules to float32 unless told the dtype: keep the loaded precision.
    dtype = loaded.pipe.unet.dtype
    if not nets:
        if type(loaded.pipe) is cls:
            return loaded.pipe
        if cls not in loaded.variants:
            loaded.variants[cls] = cls.from_pipe(loaded.pipe, dtype=dtype)
            loaded.variants[cls].set_progress_bar_config(disable=True)
        return loaded.variants[cls]
    controlnet = nets[0] if union or len(nets) == 1 else list(nets)
    pipe = cls.from_pipe(loaded.pipe, controlnet=controlnet, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def control_kwargs(kind: str, plans: List[ControlPlan], images: list, union: bool) -> dict:
    """The ControlNet arguments of a pipeline call: images, strengths, start/end fractions (control modes for union)."""
    strengths = [p.control.strength for p in plans]
    starts = [p.control.start for p in plans]
    ends = [p.control.end for p in plans]
    if union:
        return {
            "control_image": images,
            "control_mode": [UNION_MODES[p.control.type] for p in plans],
            "controlnet_conditioning_scale": max(strengths),
            "control_guidance_start": min(starts),
            "control_guidance_end": max(ends),
        }
    single = len(plans) == 1
    key = "image" if kind == "txt2img" else "control_image"
    return {
        key: images[0] if single else images,
        "controlnet_conditioning_scale": strengths[0] if single else strengths,
        "control_guidance_start": starts[0] if single else starts,
        "control_guidance_end": ends[0] if single else ends,
    }
