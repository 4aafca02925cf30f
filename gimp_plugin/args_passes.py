"""Procedure arguments of the passes after the first: the hires fix and the detailer."""

from __future__ import annotations

from typing import Tuple

from .argspec import Arg

HIRES_BLURB = (
    "Hires fix: for an area larger than the model's native size, paint at the native size, upscale, then "
    "paint again at the full size"
)


def hires_args() -> Tuple[Arg, ...]:
    return (
        Arg("hires", "boolean", "Hires fix", HIRES_BLURB, False),
        Arg(
            "hires-upscaler",
            "model",
            "Hires upscaler",
            "'latent' (the latents), 'lanczos' or an installed upscale model (the pixels)",
            "latent",
            listing="hires-upscaler",
        ),
        Arg(
            "hires-strength",
            "double",
            "Hires denoise",
            "Denoise of the second pass (0.3-0.5 keeps the composition)",
            0.4,
            0.0,
            1.0,
        ),
        Arg("hires-steps", "int", "Hires steps", "Steps of the second pass; 0 = the job's steps", 0, 0, 150),
        Arg(
            "hires-scale",
            "double",
            "Hires size",
            "Second pass size as a multiple of the first; 0 = the area's size",
            0.0,
            0.0,
            8.0,
        ),
    )


def detail_args(after: bool) -> Tuple[Arg, ...]:
    switch = (
        (
            Arg(
                "detail",
                "boolean",
                "Detail faces",
                "After the job, find faces and repaint each at the model's native size",
                False,
            ),
        )
        if after
        else ()
    )
    return switch + (
        Arg(
            "detail-targets",
            "detail-targets",
            "Find",
            "What the detailer repaints: faces, and hands where the "
            "server has a hand detector ('detailer' in Download Models)",
            "face",
        ),
        Arg("detail-prompt", "string", "Face prompt", "Prompt for the faces; empty = the prompt", ""),
        Arg("detail-negative-prompt", "string", "Face negative prompt", "Empty = the negative prompt", ""),
        Arg("detail-strength", "double", "Face denoise", "How much each face changes", 0.4, 0.0, 1.0),
        Arg("detail-steps", "int", "Face steps", "Steps for each face; 0 = the job's steps", 0, 0, 150),
        Arg("detail-padding", "int", "Face padding", "Pixels of surroundings painted with each face", 32, 0, 1024),
        Arg(
            "detail-confidence",
            "double",
            "Face confidence",
            "Faces the detector is less sure of are left alone",
            0.5,
            0.0,
            1.0,
        ),
        Arg("detail-separate", "boolean", "One layer per face", "A layer for each face instead of one layer", False),
    )
