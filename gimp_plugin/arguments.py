"""The procedures, as plain data: the GIMP side registers them, the job builder reads them back.

Each procedure is one mode of the protocol. Argument names are the PDB names (with dashes); ``values`` maps handed to
``jobs`` use the same names. Choice arguments carry (nick, label) pairs; the nick is what a script passes. What an
argument is: ``argspec``; the fixed choices: ``argchoices``; the arguments by theme: ``args_prompt`` (prompts,
LoRAs, sampling), ``args_inputs`` (source, fills, control and reference slots, regions, server), ``args_passes``
(hires fix, detailer); the procedures beside the modes (downloads, history, describe, styles): ``procedures_tools``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Tuple

from client.settings import FALLBACK_DEFAULTS
from protocol.messages import MAX_LAYER_COUNT, MIN_LAYER_COUNT

from .argchoices import PREPROCESSOR_CHOICES, UPSCALE_TARGETS
from .args_inputs import (
    control_args,
    fill_args,
    reference_args,
    region_args,
    server_args,
    source_args,
)
from .args_passes import detail_args, hires_args
from .args_prompt import (
    lora_args,
    mode_strength,
    prompt_args,
    sampling_args,
    STEPS_BLURB,
    style_arg,
    tileable_args,
    transparent_arg,
)
from .argspec import GINT_MAX, PREFIX, Arg, ProcedureSpec
from .procedures_tools import DESCRIBE, DOWNLOAD, HISTORY, STYLES


PROCEDURES: Tuple[ProcedureSpec, ...] = (
    ProcedureSpec(
        PREFIX + "inpaint",
        "inpaint",
        "_Inpaint Selection...",
        "Paintbridge: Inpaint Selection",
        "Repaint the selection with a local diffusion model",
        "Repaints the selected area (soft edges kept) from the prompt, using the surroundings as context. "
        "The result is a new layer above the active one; your layers are not changed.",
        prompt_args()
        + lora_args()
        + sampling_args(mode_strength("inpaint"))
        + source_args(mask=True)
        + fill_args()
        + control_args()
        + reference_args()
        + server_args()
        + region_args()
        + hires_args()
        + detail_args(after=True),
    ),
    ProcedureSpec(
        PREFIX + "live-inpaint",
        "inpaint",
        "_Live Inpaint...",
        "Paintbridge: Live Inpaint",
        "Repaint the selection again whenever it or a setting changes",
        "Opens a dialog that stays open: each time the selection or a setting changes, the selection is repainted "
        "into a preview layer. OK keeps the latest result as a layer; Cancel removes the preview. Interactive only: "
        "scripts use plug-in-paintbridge-inpaint.",
        tuple(
            a
            for a in prompt_args() + lora_args() + sampling_args(mode_strength("inpaint"))
            if a.name not in ("batch", "batch-count")
        )
        + source_args(mask=True)
        + fill_args()
        + control_args()
        + reference_args()
        + server_args()
        + region_args(),
        live=True,
    ),
    ProcedureSpec(
        PREFIX + "img2img",
        "img2img",
        "I_mg2img...",
        "Paintbridge: Img2img",
        "Redraw the selection (or the whole image) guided by a prompt",
        "Redraws the selection's context box, or the whole image without a selection, keeping its composition; "
        "strength sets how much changes. The result is a new layer. 'Transparent layer' keeps and redraws alpha "
        "(use Source: active layer for a layer with transparency; LayerDiffuse, SD1.5/SDXL).",
        prompt_args()
        + lora_args()
        + (transparent_arg(),)
        + sampling_args(mode_strength("img2img"))
        + tileable_args()
        + source_args(mask=True)
        + control_args()
        + reference_args()
        + server_args()
        + region_args()
        + hires_args()
        + detail_args(after=True),
    ),
    ProcedureSpec(
        PREFIX + "outpaint",
        "outpaint",
        "_Outpaint...",
        "Paintbridge: Outpaint",
        "Extend the canvas and paint the new area",
        "Enlarges the canvas by the given number of pixels on the chosen sides and fills the new area to match the "
        "image. The result is a new layer; existing layers only move with the canvas.",
        prompt_args()
        + lora_args()
        + sampling_args(None)
        + source_args(mask=False)
        + (
            Arg("extend", "int", "E_xtend by (px)", "How many pixels to add on each chosen side", 128, 1, 4096),
            Arg("extend-left", "boolean", "_Left", "Extend the left side", False),
            Arg("extend-top", "boolean", "_Top", "Extend the top side", False),
            Arg("extend-right", "boolean", "_Right", "Extend the right side", True),
            Arg("extend-bottom", "boolean", "_Bottom", "Extend the bottom side", False),
        )
        + fill_args()
        + control_args()
        + reference_args()
        + server_args()
        + region_args()
        + hires_args()
        + detail_args(after=True),
    ),
    ProcedureSpec(
        PREFIX + "upscale",
        "upscale",
        "_Upscale...",
        "Paintbridge: Upscale",
        "Upscale the image or the selection with an upscaler model or Lanczos",
        "Upscales the selection's bounds (or the whole image) by the scale factor, optionally refining tiles with "
        "img2img. The result goes into a new image, or a new layer on an enlarged canvas.",
        (
            Arg(
                "scale",
                "double",
                "_Scale",
                "Scale factor",
                float(FALLBACK_DEFAULTS["modes"]["upscale"]["scale"]),
                1.0,
                8.0,
            ),
            Arg(
                "upscaler",
                "model",
                "_Upscaler",
                "An installed upscale model; 'lanczos' = no model",
                "lanczos",
                listing="upscaler",
            ),
            Arg(
                "refine",
                "double",
                "_Refine strength",
                "img2img strength of a refine pass; 0 = no refine",
                0.0,
                0.0,
                1.0,
            ),
            Arg(
                "target", "choice", "_Result in", "Where the upscaled result goes", "new-image", choices=UPSCALE_TARGETS
            ),
        )
        + tileable_args()
        + prompt_args()
        + (
            Arg(
                "model",
                "model",
                "_Model",
                "Checkpoint for the refine pass; 'default' = the server's default",
                "default",
            ),
            Arg("steps", "int", "S_teps", "Sampling steps of the refine pass; 0 = the model's default", 0, 0, 150),
            Arg("seed", "int", "S_eed", "Seed; -1 = random", -1, -1, GINT_MAX),
        )
        + source_args(mask=False)
        + server_args(),
        returns_image=True,
    ),
    ProcedureSpec(
        PREFIX + "control-layer",
        "preprocess",
        "_Control Layer from Image...",
        "Paintbridge: Control Layer",
        "Make a control layer (edges, line art, depth...) from the image",
        "Turns the visible image (or the active layer), or the selection's bounds of it, into a control image such "
        "as Canny edges or a depth map, as a new layer you can edit and then pick as a control layer.",
        (
            Arg("preprocessor", "choice", "_Kind", "What to extract", "canny", choices=PREPROCESSOR_CHOICES),
            Arg("low-threshold", "int", "_Low threshold", "Canny: weaker edges below this are dropped", 100, 0, 255),
            Arg("high-threshold", "int", "_High threshold", "Canny: edges above this are always kept", 200, 0, 255),
        )
        + source_args(mask=False)
        + server_args(),
    ),
    ProcedureSpec(
        PREFIX + "generate",
        "generate",
        "_Generate into Selection...",
        "Paintbridge: Generate into Selection",
        "Paint something new into the selection from the prompt alone",
        "Generates a new image from the prompt into the selection (or the whole canvas), ignoring what is there. "
        "The result is a new layer, masked by the selection. 'Transparent layer' gives the layer real alpha "
        "(LayerDiffuse on SD1.5/SDXL models: Download Models › 'layerdiffuse-sd15' or 'layerdiffuse-sdxl').",
        prompt_args()
        + lora_args()
        + (transparent_arg(),)
        + sampling_args(None)
        + tileable_args()
        + source_args(mask=True)
        + control_args()
        + reference_args()
        + server_args()
        + region_args()
        + hires_args()
        + detail_args(after=True),
    ),
    # the detailer on its own
    ProcedureSpec(
        PREFIX + "detail",
        "detail",
        "_Detail Faces...",
        "Paintbridge: Detail Faces",
        "Find the faces in the selection (or the whole image) and repaint each at the model's native size",
        "Finds faces with the YuNet face detector, and hands with MediaPipe's palm detector (download the 'detailer' "
        "preset with Download Models), in the selection's context box, or the whole image without a selection, "
        "repaints each one at the model's native resolution with the face prompt (the prompt when empty) and blends "
        "it back through a soft mask. The result is one new layer holding the repainted faces and hands, or one layer "
        "for each.",
        prompt_args()
        + lora_args()
        + tuple(a for a in sampling_args(None) if a.name not in ("batch", "batch-count", "speed"))
        + source_args(mask=True)
        + server_args()
        + detail_args(after=False),
    ),
)

PROCEDURES += (  # instruction edit: offered with the models whose listing says they can (Flux.1 Kontext)
    ProcedureSpec(
        PREFIX + "edit",
        "edit",
        "_Edit Selection from Instruction...",
        "Paintbridge: Edit from Instruction",
        'Change the selection as an instruction says ("make the jacket red") with an instruction-edit model',
        "Redraws the selection's context box (or the whole image without a selection) as the instruction asks, with "
        "a model that edits from instructions (Flux.1 Kontext); the Model list offers only such models. The result "
        "is a new layer, masked by the selection.",
        (
            Arg("prompt", "string", "_Instruction", "What to change, e.g. 'make the jacket red'", ""),
            style_arg(),
            Arg(
                "model",
                "model",
                "_Model",
                "An instruction-edit checkpoint (Flux.1 Kontext); 'default' = the server's default",
                "default",
            ),
            Arg("steps", "int", "S_teps", STEPS_BLURB, 0, 0, 150),
            Arg("cfg", "double", "_Guidance", "Instruction guidance; 0 = the model's default", 0.0, 0.0, 30.0),
            Arg("seed", "int", "S_eed", "Seed; -1 = random", -1, -1, GINT_MAX),
            Arg("batch", "int", "_Batch", "How many results (one layer each)", 1, 1, 8),
        )
        + source_args(mask=True)
        + server_args(),
    ),
    # picture into layers: offered with the models whose listing says they can (Qwen-Image-Layered)
    ProcedureSpec(
        PREFIX + "decompose",
        "decompose",
        "Split into _Layers...",
        "Paintbridge: Split into Layers",
        "Split the selection (or the whole image) into a group of layers with transparency",
        "Splits the selection's bounds (or the whole image) into layers with their own transparency, with a model "
        "that decomposes pictures (Qwen-Image-Layered); the Model list offers only such models. The layers arrive "
        "in a new layer group above the active layer, bottom first as the model stacks them; your layers are not "
        "changed.",
        (
            Arg("prompt", "string", "_Description", "What the picture shows; empty = the model describes it", ""),
            Arg(
                "model",
                "model",
                "_Model",
                "A checkpoint that splits pictures into layers (Qwen-Image-Layered); 'default' = the server's default",
                "default",
            ),
            Arg(
                "layer-count",
                "int",
                "_Layers",
                "How many layers the picture is split into",
                4,
                MIN_LAYER_COUNT,
                MAX_LAYER_COUNT,
            ),
            Arg("steps", "int", "S_teps", STEPS_BLURB, 0, 0, 150),
            Arg("cfg", "double", "_Guidance", "Prompt guidance; 0 = the model's default", 0.0, 0.0, 30.0),
            Arg("seed", "int", "S_eed", "Seed; -1 = random", -1, -1, GINT_MAX),
        )
        + source_args(mask=False)
        + server_args(),
    ),
)


def override_name(arg: Arg) -> str:
    """The free-text argument that overrides a model-like choice: ``<argument>-name``."""
    return arg.name + "-name"


def _with_overrides(args: Tuple[Arg, ...]) -> Tuple[Arg, ...]:
    """Each model-like choice followed by its free-text override (for scripts: a model GIMP has not registered in
    the choice yet)."""
    out = []
    for arg in args:
        out.append(arg)
        if arg.kind == "model":
            label = arg.label.replace("_", "")
            out.append(
                Arg(
                    override_name(arg),
                    "string",
                    f"{label} by name",
                    f"A {label.lower()} name that wins over the list when set (scripts: any name the server "
                    "has, listed or not); empty = the list's",
                    "",
                )
            )
    return tuple(out)


PROCEDURES = tuple(replace(spec, args=_with_overrides(spec.args)) for spec in PROCEDURES)

ALL_PROCEDURES = PROCEDURES + (DOWNLOAD, HISTORY, DESCRIBE, STYLES)

# Keys the generated dialog's own buttons use (Help, Reset, Cancel, OK, Load/Save settings).
RESERVED_MNEMONICS = frozenset("hrcols")


def labels_with_mnemonics(spec: ProcedureSpec) -> Dict[str, str]:
    """Dialog labels with one unique mnemonic each where letters allow: the table's choice first ("S_eed"), then a
    word start, then any letter; letters of the dialog's buttons are avoided. Arguments left over get none."""
    used = set(RESERVED_MNEMONICS)
    labels: Dict[str, str] = {}
    for arg in spec.args:
        plain = arg.label.replace("_", "")
        preferred = [arg.label.index("_")] if "_" in arg.label else []
        starts = [i for i in range(len(plain)) if i == 0 or plain[i - 1] == " "]
        for i in preferred + starts + list(range(len(plain))):
            ch = plain[i].lower()
            if ch.isalnum() and ch not in used:
                used.add(ch)
                labels[arg.name] = plain[:i] + "_" + plain[i:]
                break
        else:
            labels[arg.name] = plain
    return labels


BY_NAME = {spec.name: spec for spec in ALL_PROCEDURES}
BY_MODE = {spec.mode: spec for spec in PROCEDURES if not spec.live}
