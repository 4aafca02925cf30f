"""The procedures and their arguments, as plain data: the GIMP side registers them, the job builder reads them back.

Each procedure is one mode of the protocol. Argument names are the PDB names (with dashes); ``values`` maps handed to
``jobs`` use the same names. Choice arguments carry (nick, label) pairs; the nick is what a script passes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Tuple

from client.settings import CAPTION_STYLE_LABELS, CAPTION_STYLES, FALLBACK_DEFAULTS, FILLS, SPEED_LABELS
from protocol.messages import CONTROL_TYPES, MAX_CONTROLS, MAX_LAYER_COUNT, MIN_LAYER_COUNT, REFERENCE_TYPES, SAMPLERS
from protocol.sampling import SCHEDULE_NAMES

PREFIX = "plug-in-paintbridge-"
MENU_PATH = "<Image>/Filters/Paintbridge"
# MAX_CONTROLS (the protocol's): control-layer slots per procedure, as many as a job takes
MAX_REFERENCES = 4  # reference-image slots per procedure (a job takes up to 8, a dialog shows 4)
GINT_MAX = 2**31 - 1
DESCRIBED_MODES = ("generate", "img2img", "inpaint", "outpaint", "upscale", "detail")


@dataclass(frozen=True)
class Arg:
    """One procedure argument."""

    name: str
    kind: str  # "string", "int", "double", "boolean", "choice", "layer", "model" (a choice of installed models of
    # the ``listing`` named: ``choices.listed_choices``), "drawable" (a layer or a channel; regions),
    # "detail-targets" (what the detailer looks for: hands only when the server has a hand detector)
    label: str
    blurb: str
    default: Any = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Tuple[Tuple[str, str], ...] = ()
    listing: str = "model"  # kind "model": which models it lists ("model" = checkpoints, or a ``choices.LISTED`` key)


@dataclass(frozen=True)
class ProcedureSpec:
    """One procedure: its PDB name, menu label, protocol mode and arguments."""

    name: str
    mode: str
    menu_label: str
    title: str
    blurb: str
    help: str
    args: Tuple[Arg, ...]
    returns_image: bool = False
    live: bool = False  # an interactive dialog that reruns on changes (no NONINTERACTIVE use)
    download: bool = False  # downloads models onto the server's machine (no job; works without an image)
    # results history: lists, applies, reuses and deletes the image's earlier results (no job)
    history: bool = False
    styles: bool = False  # lists, creates, duplicates, renames and deletes the server's styles (no job, no image)

    def arg(self, name: str) -> Arg:
        for arg in self.args:
            if arg.name == name:
                return arg
        raise KeyError(f"procedure {self.name} has no argument {name!r}")

    @property
    def takes_description(self) -> bool:
        """Whether the words of the last Describe (prompt from the picture) fill this procedure's prompt (not an
        instruction edit's: an instruction is no description)."""
        return self.mode in DESCRIBED_MODES and any(arg.name == "prompt" for arg in self.args)

    def defaults(self) -> Dict[str, Any]:
        """Every argument's default value (layers default to None)."""
        return {arg.name: arg.default for arg in self.args}


def slug(text: str) -> str:
    """A choice nick for a label: lower case, '+' spelled 'p', other runs of non-alphanumerics as one dash."""
    out, dash = [], False
    for ch in text.lower().replace("+", "p"):
        if ch.isalnum():
            out.append(ch)
            dash = False
        elif not dash and out:
            out.append("-")
            dash = True
    return "".join(out).strip("-")


SAMPLER_CHOICES = (("default", "Model's default"),) + tuple((slug(s), s) for s in SAMPLERS)
SAMPLER_BY_NICK = {slug(s): s for s in SAMPLERS}
SCHEDULER_CHOICES = (("default", "Sampler's own"),) + tuple((slug(s), s) for s in SCHEDULE_NAMES)
SCHEDULER_BY_NICK = {slug(s): s for s in SCHEDULE_NAMES}
CONTROL_CHOICES = tuple((t, t.capitalize()) for t in CONTROL_TYPES)
SOURCE_CHOICES = (("visible", "Visible image"), ("layer", "Active layer"))
MASK_CHOICES = (("selection", "Selection"), ("layer-mask", "Active layer's mask (white = repaint)"))
FILL_CHOICES = tuple(FILLS.items())  # fills: patch (the default), telea, ns, lama
SPEED_CHOICES = tuple(SPEED_LABELS.items())  # speed levels: quality (the default), fast
PREPROCESSOR_CHOICES = (
    ("canny", "Canny edges"),
    ("lineart", "Line art"),
    ("scribble", "Scribble"),
    ("softedge", "Soft edges"),
    ("depth", "Depth"),
    ("normal", "Normal map"),
    ("pose", "Pose"),
    ("shuffle", "Shuffle"),
    ("tile", "Tile (blurred)"),
)
UPSCALE_TARGETS = (("new-image", "New image"), ("layer", "New layer (canvas enlarged)"))


def _style_arg() -> Arg:
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


def _lora_args() -> Tuple[Arg, ...]:
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


def _prompt_args() -> Tuple[Arg, ...]:
    return (
        Arg("prompt", "string", "_Prompt", "What to paint", ""),
        Arg("negative-prompt", "string", "_Negative prompt", "What to avoid", ""),
        _style_arg(),
    )


def _strength(mode: str) -> float:
    """A mode's default strength: the client core's table (what the server announces in ``welcome.defaults``)."""
    return float(FALLBACK_DEFAULTS["modes"][mode]["strength"])


STEPS_BLURB = "Sampling steps; 0 = the model's default"


def _sampling_args(strength: Optional[float]) -> Tuple[Arg, ...]:
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
            "'quality' = every step in full (a style's level applies); 'fast' = deep features reused on alternate "
            "steps: quicker, the pixels change a little (SD1.5/SDXL models; greyed out for others)",
            "quality",
            choices=SPEED_CHOICES,
        ),
    ]
    args += _more_sampling_args()
    return tuple(args)


def _more_sampling_args() -> Tuple[Arg, ...]:
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


def _source_args(mask: bool) -> Tuple[Arg, ...]:
    args = [
        Arg(
            "source",
            "choice",
            "So_urce",
            "What the model sees: the visible image or the active layer",
            "visible",
            choices=SOURCE_CHOICES,
        )
    ]
    if mask:
        args += [
            Arg(
                "mask-source",
                "choice",
                "M_ask",
                "Where the area to repaint comes from",
                "selection",
                choices=MASK_CHOICES,
            ),
            Arg(
                "grow", "int", "_Grow mask", "Grow the mask by this many px; -1 = scaled to the selection", -1, -1, 1024
            ),
            Arg(
                "feather",
                "int",
                "_Feather mask",
                "Soften the mask's edge by this many px; -1 = scaled to the selection",
                -1,
                -1,
                1024,
            ),
        ]
    return tuple(args)


def control_prefix(index: int) -> str:
    """Argument-name prefix of control slot ``index`` (1-based): ``control``, ``control-2`` ..."""
    return "control" if index == 1 else f"control-{index}"


CONTROL_KEYS = ("layer", "type", "strength", "start", "end", "preprocess")  # one control slot's arguments


def _control_args() -> Tuple[Arg, ...]:
    """Control slots: a layer (none = the slot is off), its type, strength, step range and whether the server
    preprocesses it."""
    args = []
    for i in range(1, MAX_CONTROLS + 1):
        p, n = control_prefix(i), "" if i == 1 else f" {i}"
        args += [
            Arg(
                f"{p}-layer",
                "layer",
                f"Control layer{n}",
                "A layer that guides the result (ControlNet); none = off",
                None,
            ),
            Arg(
                f"{p}-type",
                "choice",
                f"Control type{n}",
                "What the control layer holds",
                "canny",
                choices=CONTROL_CHOICES,
            ),
            Arg(
                f"{p}-strength",
                "double",
                f"Control strength{n}",
                "How strongly the control layer guides",
                1.0,
                0.0,
                2.0,
            ),
            Arg(
                f"{p}-start",
                "double",
                f"Control from{n}",
                "Fraction of the steps where the control layer starts guiding",
                0.0,
                0.0,
                1.0,
            ),
            Arg(
                f"{p}-end",
                "double",
                f"Control until{n}",
                "Fraction of the steps where the control layer stops guiding",
                1.0,
                0.0,
                1.0,
            ),
            Arg(
                f"{p}-preprocess",
                "boolean",
                f"Preprocess control{n}",
                "Turn the layer into a control image on the server (e.g. a photo into Canny edges)",
                False,
            ),
        ]
    return tuple(args)


def _tileable_args() -> Tuple[Arg, ...]:
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


def _fill_args() -> Tuple[Arg, ...]:
    """Fills: the fill / pre-fill and the colour match."""
    return (
        Arg(
            "fill",
            "choice",
            "F_ill",
            "Fill without a model and diffusion pre-fill: texture from around the hole, "
            "smooth, or a LaMa network ('paintbridge models pull lama')",
            "patch",
            choices=FILL_CHOICES,
        ),
        Arg("color-match", "boolean", "_Match colours", "Match the result's colours to the area around it", False),
    )


# reference images
REFERENCE_CHOICES = tuple(
    (t, {"style": "Style", "composition": "Composition", "content": "Content", "face": "Face"}[t])
    for t in REFERENCE_TYPES
)


def reference_prefix(index: int) -> str:
    """Argument-name prefix of reference slot ``index`` (1-based): ``reference``, ``reference-2`` ..."""
    return "reference" if index == 1 else f"reference-{index}"


REFERENCE_KEYS = ("layer", "type", "strength", "start", "end", "region")  # one reference slot's arguments


def _reference_args() -> Tuple[Arg, ...]:
    """Reference slots: a layer (none = the slot is off), its type, strength, step range and region."""
    args = []
    for i in range(1, MAX_REFERENCES + 1):
        p, n = reference_prefix(i), "" if i == 1 else f" {i}"
        args += [
            Arg(
                f"{p}-layer",
                "layer",
                f"Reference layer{n}",
                "A layer whose picture guides the result (IP-Adapter; SD1.5 and SDXL); none = off",
                None,
            ),
            Arg(
                f"{p}-type",
                "choice",
                f"Reference type{n}",
                "What the picture gives: style, composition, content or a face",
                "content",
                choices=REFERENCE_CHOICES,
            ),
            Arg(
                f"{p}-strength",
                "double",
                f"Reference strength{n}",
                "How strongly the picture guides; 0 = off",
                1.0,
                0.0,
                2.0,
            ),
            Arg(
                f"{p}-start",
                "double",
                f"Reference from{n}",
                "Fraction of the steps where the picture starts guiding",
                0.0,
                0.0,
                1.0,
            ),
            Arg(
                f"{p}-end",
                "double",
                f"Reference until{n}",
                "Fraction of the steps where the picture stops guiding",
                1.0,
                0.0,
                1.0,
            ),
            Arg(
                f"{p}-region",
                "drawable",
                f"Reference region{n}",
                "A layer or channel (usually one bound as a "
                "region): the picture guides only where it is opaque (a channel: white); none = the whole image",
                None,
            ),
        ]
    return tuple(args)


def _transparent_arg() -> Arg:
    return Arg(
        "transparent",
        "boolean",
        "Trans_parent layer",
        "A layer with real alpha (LayerDiffuse; SD1.5 and SDXL models)",
        False,
    )


def _server_args() -> Tuple[Arg, ...]:
    return (
        Arg("server", "string", "Ser_ver", "Server address (ws://host:port); empty = the last one used", ""),
        Arg("token", "string", "To_ken", "Access token for a server that needs one; empty = the last one used", ""),
    )


# regions
REGION_ARGS = ("use-regions", "region-layer", "region-prompt", "region-negative-prompt")


def _region_args() -> Tuple[Arg, ...]:
    return (
        Arg(
            "use-regions",
            "boolean",
            "Use _regions",
            "Give each layer or channel that carries a region prompt its own prompt over its area (its opacity; a "
            "channel's value); the main prompt applies everywhere. SD1.5/SDXL models",
            True,
        ),
        Arg(
            "region-layer",
            "drawable",
            "Region layer",
            "A layer or channel to bind the region prompt below to (kept on it, saved in the .xcf); none = no change",
            None,
        ),
        Arg(
            "region-prompt",
            "string",
            "Region prompt",
            "The prompt for the region layer's area; empty removes the layer's region",
            "",
        ),
        Arg("region-negative-prompt", "string", "Region negative prompt", "What to avoid in that area", ""),
    )


# hires fix and detailer
HIRES_BLURB = (
    "Hires fix: for an area larger than the model's native size, paint at the native size, upscale, then "
    "paint again at the full size"
)


def _hires_args() -> Tuple[Arg, ...]:
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


def _detail_args(after: bool) -> Tuple[Arg, ...]:
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


PROCEDURES: Tuple[ProcedureSpec, ...] = (
    ProcedureSpec(
        PREFIX + "inpaint",
        "inpaint",
        "_Inpaint Selection...",
        "Paintbridge: Inpaint Selection",
        "Repaint the selection with a local diffusion model",
        "Repaints the selected area (soft edges kept) from the prompt, using the surroundings as context. "
        "The result is a new layer above the active one; your layers are not changed.",
        _prompt_args()
        + _lora_args()
        + _sampling_args(_strength("inpaint"))
        + _source_args(mask=True)
        + _fill_args()
        + _control_args()
        + _reference_args()
        + _server_args()
        + _region_args()
        + _hires_args()
        + _detail_args(after=True),
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
            for a in _prompt_args() + _lora_args() + _sampling_args(_strength("inpaint"))
            if a.name not in ("batch", "batch-count")
        )
        + _source_args(mask=True)
        + _fill_args()
        + _control_args()
        + _reference_args()
        + _server_args()
        + _region_args(),
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
        _prompt_args()
        + _lora_args()
        + (_transparent_arg(),)
        + _sampling_args(_strength("img2img"))
        + _tileable_args()
        + _source_args(mask=True)
        + _control_args()
        + _reference_args()
        + _server_args()
        + _region_args()
        + _hires_args()
        + _detail_args(after=True),
    ),
    ProcedureSpec(
        PREFIX + "outpaint",
        "outpaint",
        "_Outpaint...",
        "Paintbridge: Outpaint",
        "Extend the canvas and paint the new area",
        "Enlarges the canvas by the given number of pixels on the chosen sides and fills the new area to match the "
        "image. The result is a new layer; existing layers only move with the canvas.",
        _prompt_args()
        + _lora_args()
        + _sampling_args(None)
        + _source_args(mask=False)
        + (
            Arg("extend", "int", "E_xtend by (px)", "How many pixels to add on each chosen side", 128, 1, 4096),
            Arg("extend-left", "boolean", "_Left", "Extend the left side", False),
            Arg("extend-top", "boolean", "_Top", "Extend the top side", False),
            Arg("extend-right", "boolean", "_Right", "Extend the right side", True),
            Arg("extend-bottom", "boolean", "_Bottom", "Extend the bottom side", False),
        )
        + _fill_args()
        + _control_args()
        + _reference_args()
        + _server_args()
        + _region_args()
        + _hires_args()
        + _detail_args(after=True),
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
        + _tileable_args()
        + _prompt_args()
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
        + _source_args(mask=False)
        + _server_args(),
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
        + _source_args(mask=False)
        + _server_args(),
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
        _prompt_args()
        + _lora_args()
        + (_transparent_arg(),)
        + _sampling_args(None)
        + _tileable_args()
        + _source_args(mask=True)
        + _control_args()
        + _reference_args()
        + _server_args()
        + _region_args()
        + _hires_args()
        + _detail_args(after=True),
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
        _prompt_args()
        + _lora_args()
        + tuple(a for a in _sampling_args(None) if a.name not in ("batch", "batch-count", "speed"))
        + _source_args(mask=True)
        + _server_args()
        + _detail_args(after=False),
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
            _style_arg(),
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
        + _source_args(mask=True)
        + _server_args(),
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
        + _source_args(mask=False)
        + _server_args(),
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

FOR_CHOICES = (
    (("all", "Every mode"),)
    + tuple(
        (m, m.capitalize()) for m in ("generate", "img2img", "inpaint", "outpaint", "upscale", "preprocess", "detail")
    )
    + tuple((f"control-{t}", f"Control layer: {t}") for t in CONTROL_TYPES)
)

DOWNLOAD = ProcedureSpec(
    PREFIX + "download-models",
    "pull",
    "_Download Models...",
    "Paintbridge: Download Models",
    "Download a starter set of models onto the server's machine",
    "Shows which starter set (preset) the server has complete and what it lacks for the chosen mode or control type, "
    "and downloads the named presets (or catalogue files) through the server, with progress; files that are already "
    "there are kept, a cancelled download continues where it stopped next time. The files land on the server's "
    "machine, also for a remote server.",
    (
        Arg(
            "names",
            "string",
            "_Presets to download",
            "Preset names or catalogue file ids, separated by commas or spaces (e.g. 'sd15' or 'upscaler annotators')",
            "",
        ),
        Arg(
            "for",
            "choice",
            "Show what is missing _for",
            "Which mode or control type the list above is about",
            "all",
            choices=FOR_CHOICES,
        ),
    )
    + _server_args(),
    download=True,
)
# results history
HISTORY_ACTIONS = (
    ("apply", "Apply again (insert the entry's layers)"),
    ("reuse", "Reuse settings (run its mode with them)"),
    ("delete", "Delete the entry"),
    ("list", "List the entries (return value)"),
)
HISTORY = ProcedureSpec(
    PREFIX + "history",
    "history",
    "_History...",
    "Paintbridge: History",
    "Earlier results of this image: apply again, reuse their settings, delete",
    "Every Paintbridge result made for this image is kept inside it (saved with the .xcf), within a size limit: "
    "the dialog lists them with thumbnails and settings, and searches them. Scripts pick an entry by index (0 = the "
    "newest of those 'search' finds) and an action; 'list' returns the entries as JSON, 'reuse' returns the entry's "
    "settings as JSON.",
    (
        Arg("action", "choice", "_Action", "What to do with the entry", "apply", choices=HISTORY_ACTIONS),
        Arg(
            "index",
            "int",
            "_Entry",
            "Which entry: 0 = the newest, 1 = the one before ... (among those the search finds)",
            0,
            0,
            10000,
        ),
        Arg("layer", "int", "_Layer", "Apply again: which of the entry's layers (-1 = all of them)", -1, -1, 1000),
        Arg(
            "limit-mb",
            "int",
            "_Keep at most (MB)",
            "How many MB of results each image keeps (the oldest go first; 0 = no history); -1 = leave as it is",
            -1,
            -1,
            100000,
        ),
        Arg(
            "search",
            "string",
            "_Find",
            "Only the entries that match: words of the prompt, the model, a seed, the "
            "mode or the date (every word must match; prompt:, model:, mode:, seed:, date: name a field, "
            "date:>2026-12-01 from a day on); empty = all",
            "",
        ),
    ),
    history=True,
)
# prompt from the picture: the words fill the prompt of the next run of a procedure that takes a description
DESCRIBE = ProcedureSpec(
    PREFIX + "describe",
    "caption",
    "_Describe...",
    "Paintbridge: Describe",
    "Describe the selection (or the whole image) as a prompt to start from",
    "Asks the server's captioner (Download Models › 'captioner') for words that describe the selection's bounds, or "
    "the whole image without a selection: a sentence, or comma-separated tags. The words are shown, returned to "
    "scripts ('caption'), and fill the prompt of the next Paintbridge run: its dialog opens with them, and a script "
    "that runs a procedure with an empty prompt gets them.",
    (
        Arg(
            "caption-style",
            "choice",
            "_Style",
            "A sentence, or comma-separated tags",
            CAPTION_STYLES[0],
            choices=tuple((style, CAPTION_STYLE_LABELS[style]) for style in CAPTION_STYLES),
        ),
        Arg("captioner", "string", "_Captioner", "A captioner of the server by name; empty = its first", ""),
    )
    + _source_args(mask=False)
    + _server_args(),
)
# the server's styles
STYLE_ACTIONS = (
    ("list", "List the styles (return value)"),
    ("new", "New style"),
    ("duplicate", "Duplicate a style"),
    ("rename", "Rename a saved style"),
    ("delete", "Delete a saved style"),
)
STYLES = ProcedureSpec(
    PREFIX + "styles",
    "styles",
    "St_yles...",
    "Paintbridge: Styles",
    "The server's styles: new, duplicate, rename, delete",
    "Styles bundle a checkpoint preference, LoRAs, VAE, sampling and prompt templates; the server keeps them, so "
    "Krita and GIMP (and every machine using the server) share them. The window lists them and makes new ones, "
    "duplicates, renames and deletes them; shipped styles can be duplicated, not renamed or deleted. Scripts pick an "
    "action on 'style'; every action returns the styles after it as JSON ('styles').",
    (
        Arg("action", "choice", "_Action", "What to do", "list", choices=STYLE_ACTIONS),
        Arg("style", "string", "_Style", "The style to act on (new: the new style's name)", ""),
        Arg("new-name", "string", "New _name", "Duplicate and rename: the name it gets", ""),
        Arg("family", "string", "_Family", "New: the model family it is for (sd15, sdxl, flux...); empty = any", ""),
    )
    + _server_args(),
    styles=True,
)
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
