"""Procedure arguments of the prompt and sampling: prompts and style, LoRA slots, sampling (strength defaults from the
client core's table), seamless textures, transparency."""

from __future__ import annotations

from typing import Optional, Tuple

from client.settings import FALLBACK_DEFAULTS

from .argchoices import SAMPLER_CHOICES, SCHEDULER_CHOICES, SPEED_CHOICES
from .argspec import GINT_MAX, Arg


def style_arg() -> Arg:
    return Arg(
        "style",
        "model",
        "St_yle",
        "A style of the server (checkpoint, LoRAs, VAE, sampling, prompt template); every setting changed from its "
        "default here wins over the style's; 'auto' = the style the server suggests for the model; 'none' = no style",
        "auto",
        listing="style",
    )


LORA_SLOTS = 3  # LoRAs a dialog picks from the list (more: <lora:name:weight> tags in the prompt)


def lora_prefix(index: int) -> str:
    """Argument-name prefix of LoRA slot ``index`` (1-based): ``lora``, ``lora-2`` ..."""
    return "lora" if index == 1 else f"lora-{index}"


def lora_args() -> Tuple[Arg, ...]:
    """LoRA slots: an installed LoRA (none = the slot is off) and its weight."""
    args = []
    for i in range(1, LORA_SLOTS + 1):
        p, n = lora_prefix(i), "" if i == 1 else f" {i}"
        args += [
            Arg(
                p,
                "model",
                f"LoRA{n}",
                "An installed LoRA of the model's family (others are greyed out); 'none' = off",
                "none",
                listing="lora",
            ),
            Arg(f"{p}-weight", "double", f"LoRA weight{n}", "How strongly the LoRA applies", 1.0, -2.0, 2.0),
        ]
    return tuple(args)


def prompt_args() -> Tuple[Arg, ...]:
    return (
        Arg("prompt", "string", "_Prompt", "What to paint", ""),
        Arg("negative-prompt", "string", "_Negative prompt", "What to avoid", ""),
        style_arg(),
    )


def mode_strength(mode: str) -> float:
    """A mode's default strength: the client core's table (what the server announces in ``welcome.defaults``)."""
    return float(FALLBACK_DEFAULTS["modes"][mode]["strength"])


STEPS_BLURB = "Sampling steps; 0 = the model's default"


def sampling_args(strength: Optional[float]) -> Tuple[Arg, ...]:
    args = []
    if strength is not None:
        args.append(
            Arg("strength", "double", "_Strength", "How much to change (denoising strength)", strength, 0.0, 1.0)
        )
    args += [
        Arg(
            "model",
            "model",
            "_Model",
            "An installed checkpoint; 'default' = the server's default (or the style's); 'classical' = built-in OpenCV",
            "default",
        ),
        Arg("steps", "int", "S_teps", STEPS_BLURB, 0, 0, 150),
        Arg("cfg", "double", "_CFG scale", "Prompt guidance; 0 = the model's default", 0.0, 0.0, 30.0),
        Arg("sampler", "choice", "Sa_mpler", "Sampler", "default", choices=SAMPLER_CHOICES),
        Arg("seed", "int", "S_eed", "Seed; -1 = random", -1, -1, GINT_MAX),
        Arg("batch", "int", "_Batch", "How many results (one layer each)", 1, 1, 8),
        Arg(
            "speed",
            "choice",
            "Spee_d",
            "'style' = the style's level (quality where it sets none); 'quality' = every step in full; 'fast' = deep "
            "features reused on alternate steps: quicker, the pixels change a little (SD1.5/SDXL models; greyed out "
            "for others)",
            "style",
            choices=SPEED_CHOICES,
        ),
    ]
    args += more_sampling_args()
    return tuple(args)


def more_sampling_args() -> Tuple[Arg, ...]:
    """Sampling options: schedule, batch count, VAE, CLIP skip, SDXL refiner."""
    return (
        Arg(
            "scheduler",
            "choice",
            "Sc_hedule",
            "Noise schedule (Karras, Exponential, ...); one the sampler cannot run with is refused",
            "default",
            choices=SCHEDULER_CHOICES,
        ),
        Arg("batch-count", "int", "Batch _count", "Runs one after another, each making 'Batch' results", 1, 1, 100),
        Arg("vae", "model", "_VAE", "An installed VAE; 'default' = the checkpoint's own", "default", listing="vae"),
        Arg(
            "clip-skip", "int", "CLIP s_kip", "CLIP layers to skip: 0 or 1 = none, 2 = the penultimate layer", 0, 0, 12
        ),
        Arg(
            "refiner",
            "model",
            "Re_finer",
            "An installed SDXL refiner for the last steps; 'none' = off",
            "none",
            listing="refiner",
        ),
        Arg(
            "refiner-start",
            "double",
            "Refiner _from",
            "Fraction of the steps after which the refiner takes over",
            0.8,
            0.05,
            0.95,
        ),
    )


def tileable_args() -> Tuple[Arg, ...]:
    """Seamless textures: generate, img2img and upscale."""
    return (
        Arg(
            "tileable",
            "boolean",
            "Seamless te_xture",
            "Make a result that tiles: its right edge continues into "
            "its left and its bottom into its top (Filters > Map > Tile repeats it to look)",
            False,
        ),
    )


def transparent_arg() -> Arg:
    return Arg(
        "transparent",
        "boolean",
        "Trans_parent layer",
        "A layer with real alpha (LayerDiffuse; SD1.5 and SDXL models)",
        False,
    )
