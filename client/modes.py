"""One rule per mode, for both editors: which part of the document a mode reads, whether it sends a mask and an image.

An adapter asks ``plan_read(mode, selection, width, height)`` which box to read, reads exactly that (the image in its
native pixel order, the mask as ``gray8`` when ``plan.mask`` says so) and hands the bytes to ``jobs.build_job``.

| mode       | box read                                             | mask                 | image                   |
|------------|------------------------------------------------------|----------------------|-------------------------|
| generate   | context box around the selection, else the canvas    | the selection, if any| with a selection only   |
| img2img    | context box around the selection, else the canvas    | the selection, if any| always                  |
| inpaint    | context box around the selection (one is required)   | the selection        | always                  |
| outpaint   | the canvas                                           | never                | always                  |
| upscale    | the selection's bounds, else the canvas              | never                | always                  |
| preprocess | the selection's bounds, else the canvas              | never                | always                  |
| edit       | context box around the selection, else the canvas    | the selection, if any| always                  |
| detail     | context box around the selection, else the canvas    | the selection, if any| always                  |
| caption    | the selection's bounds, else the canvas              | never                | always                  |
| decompose  | the selection's bounds, else the canvas              | never                | always                  |

Generate into a selection sends the image and the soft mask, and the server composites (the layer's alpha is the
mask); without a selection only the size travels.

Some modes run only on models whose listing entry says they can (``ModeRule.listing``): instruction ``edit`` needs
``"edit": true`` (Flux.1 Kontext, Flux.2 Klein, Qwen-Image-Edit), ``decompose`` (the picture into a group of layers)
``"decompose": true`` (Qwen-Image-Layered). ``offered(mode, entry)`` tells an adapter whether to offer a mode for the chosen
model, so the plugins hold no family names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import JobInputError
from .wire import Box, protocol

CONTEXT = "context"  # the context box around the selection (protocol geometry), the canvas without one
CANVAS = "canvas"  # always the whole canvas
SELECTION = "selection"  # the selection's bounds exactly, the canvas without one

REQUIRED = "required"
OPTIONAL = "optional"
NEVER = "never"


@dataclass(frozen=True)
class ModeRule:
    """What one mode reads and sends."""

    name: str
    label: str
    box: str  # CONTEXT, CANVAS or SELECTION
    mask: str  # REQUIRED, OPTIONAL or NEVER
    image_without_mask: bool = True  # False: the image travels only together with a mask (generate)
    strength: bool = False  # the mode sends params.strength
    batch: bool = True  # the mode makes several results in one job
    controls: bool = True  # the mode takes control layers
    listing: str = ""  # a model listing key that must be true for the mode to be offered ("" = every model)
    needs: str = ""  # what such a model is, for the refusal ``check_offered`` gives
    exclusive: bool = False  # a model whose listing says it runs this mode runs no other mode on its checkpoint
    checkpoint: bool = True  # runs on the chosen checkpoint (False: the mode's own models, whatever is chosen)


RULES: Dict[str, ModeRule] = {
    "generate": ModeRule("generate", "Generate", CONTEXT, OPTIONAL, image_without_mask=False),
    "img2img": ModeRule("img2img", "Img2img", CONTEXT, OPTIONAL, strength=True),
    "inpaint": ModeRule("inpaint", "Inpaint", CONTEXT, REQUIRED, strength=True),
    "outpaint": ModeRule("outpaint", "Outpaint", CANVAS, NEVER, strength=True),
    "upscale": ModeRule("upscale", "Upscale", SELECTION, NEVER, batch=False, controls=False, checkpoint=False),
    "preprocess": ModeRule("preprocess", "Control", SELECTION, NEVER, batch=False, controls=False, checkpoint=False),
    # instruction edit: the box and an instruction in, an edited layer out, composited by the soft mask
    "edit": ModeRule(
        "edit",
        "Edit",
        CONTEXT,
        OPTIONAL,
        controls=False,
        listing="edit",
        needs="a model that edits from an instruction (Flux.1 Kontext, Flux.2 Klein, Qwen-Image-Edit)",
    ),
    # detailer on its own: faces inside the selection, or in the whole image
    "detail": ModeRule("detail", "Detail", CONTEXT, OPTIONAL, batch=False, controls=False),
    # prompt from the picture: the selection (or the canvas) described in words, no layer back
    "caption": ModeRule("caption", "Describe", SELECTION, NEVER, batch=False, controls=False, checkpoint=False),
    # picture into layers: the selection (or the canvas) in, a group of RGBA layers out, bottom first
    "decompose": ModeRule(
        "decompose",
        "Decompose",
        SELECTION,
        NEVER,
        batch=False,
        controls=False,
        listing="decompose",
        needs="a model that splits a picture into layers (Qwen-Image-Layered)",
        exclusive=True,
    ),
}
MODES: Tuple[str, ...] = tuple(RULES)
LIVE_MODES = ("inpaint", "img2img")


def offered(mode: str, entry: Optional[Mapping[str, Any]]) -> bool:
    """Whether ``mode`` can run on the model of listing ``entry`` (None: unknown here, the server decides)."""
    r = rule(mode)
    if entry is None:
        return True
    if r.listing:
        return bool(entry.get(r.listing))
    return not r.checkpoint or not only_mode(entry)


def only_mode(entry: Optional[Mapping[str, Any]]) -> str:
    """The one mode a model runs on its checkpoint when its listing says so (decompose), else ""."""
    return next((m for m, r in RULES.items() if r.exclusive and (entry or {}).get(r.listing)), "")


def fallback_mode(entry: Optional[Mapping[str, Any]]) -> str:
    """The mode an editor switches to when the chosen model cannot run the current one."""
    return only_mode(entry) or "inpaint"


def check_offered(mode: str, entry: Optional[Mapping[str, Any]]) -> None:
    """A JobInputError naming the model when ``mode`` cannot run on it (``offered``)."""
    if not offered(mode, entry):
        r = rule(mode)
        name = str((entry or {}).get("name") or "the server's default")
        own = only_mode(entry)
        if own and not r.listing:
            raise JobInputError(f"'{name}' runs only {RULES[own].label}: pick another model for {r.label}")
        advice = ", or use Inpaint with a prompt" if mode == "edit" else ""
        raise JobInputError(f"{r.label} needs {r.needs}; '{name}' cannot: pick such a model{advice}")


def rule(mode: str) -> ModeRule:
    """The rule of ``mode``; a JobInputError naming the known modes otherwise."""
    try:
        return RULES[mode]
    except KeyError:
        raise JobInputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}") from None


@dataclass(frozen=True)
class ReadPlan:
    """What an adapter reads for one job: ``box`` (document coordinates), and whether to read a mask and an image."""

    mode: str
    box: Box
    mask: bool
    image: bool


def read_box(mode: str, selection: Box, canvas_width: int, canvas_height: int) -> Box:
    """The part of the document ``mode`` reads, given the selection's (or mask's) bounds; empty = nothing selected."""
    return plan_read(mode, selection, canvas_width, canvas_height).box


def plan_read(mode: str, selection: Box, canvas_width: int, canvas_height: int) -> ReadPlan:
    """Which box to read and whether a mask and an image travel; raises JobInputError naming what to change."""
    r = rule(mode)
    if canvas_width <= 0 or canvas_height <= 0:
        raise JobInputError(f"the document is {canvas_width}x{canvas_height} px; it needs pixels to work on")
    canvas = Box(0, 0, canvas_width, canvas_height)
    selected = (selection or Box(0, 0, 0, 0)).intersect(canvas)
    has_selection = not selected.is_empty
    if selection is not None and not selection.is_empty and not has_selection:
        raise JobInputError("The selection lies outside the canvas: select part of the image")
    if r.mask == REQUIRED and not has_selection:
        raise JobInputError(f"{r.label} needs a selection (or a mask) that marks the area to repaint: select it first")
    if r.box == CONTEXT:
        box = protocol.context_box(selected, canvas_width, canvas_height)
    elif r.box == SELECTION and has_selection:
        box = selected
    else:
        box = canvas
    mask = r.mask != NEVER and has_selection
    return ReadPlan(mode, box, mask, image=mask or r.image_without_mask)
