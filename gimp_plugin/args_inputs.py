"""Procedure arguments of what a job reads: source and mask, fills, control-layer slots, reference-image slots,
regions, and the server to send it to."""

from __future__ import annotations

from typing import Tuple

from protocol.messages import MAX_CONTROLS

from .argchoices import (
    CONTROL_CHOICES,
    FILL_CHOICES,
    MASK_CHOICES,
    REFERENCE_CHOICES,
    SOURCE_CHOICES,
)
from .argspec import Arg

# MAX_CONTROLS (the protocol's): control-layer slots per procedure, as many as a job takes
MAX_REFERENCES = 4  # reference-image slots per procedure (a job takes up to 8, a dialog shows 4)


def source_args(mask: bool) -> Tuple[Arg, ...]:
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


def control_args() -> Tuple[Arg, ...]:
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


def fill_args() -> Tuple[Arg, ...]:
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
def reference_prefix(index: int) -> str:
    """Argument-name prefix of reference slot ``index`` (1-based): ``reference``, ``reference-2`` ..."""
    return "reference" if index == 1 else f"reference-{index}"


REFERENCE_KEYS = ("layer", "type", "strength", "start", "end", "region")  # one reference slot's arguments


def reference_args() -> Tuple[Arg, ...]:
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


def server_args() -> Tuple[Arg, ...]:
    return (
        Arg("server", "string", "Ser_ver", "Server address (ws://host:port); empty = the last one used", ""),
        Arg("token", "string", "To_ken", "Access token for a server that needs one; empty = the last one used", ""),
    )


# regions
REGION_ARGS = ("use-regions", "region-layer", "region-prompt", "region-negative-prompt")


def region_args() -> Tuple[Arg, ...]:
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
