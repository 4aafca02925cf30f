"""The fixed choices of procedure arguments as (nick, label) pairs: samplers and schedules, control and reference types,
sources, masks, fills, preprocessors, upscale targets, and the actions of the History and Styles procedures. (Choices
of installed models are listed from the server: ``choices``.)"""

from __future__ import annotations

from client.settings import FILLS, SPEED_LABELS
from protocol.messages import CONTROL_TYPES, REFERENCE_TYPES, SAMPLERS
from protocol.sampling import SCHEDULE_NAMES

from .argspec import slug

SAMPLER_CHOICES = (("default", "Model's default"),) + tuple((slug(s), s) for s in SAMPLERS)
SAMPLER_BY_NICK = {slug(s): s for s in SAMPLERS}
SCHEDULER_CHOICES = (("default", "Sampler's own"),) + tuple((slug(s), s) for s in SCHEDULE_NAMES)
SCHEDULER_BY_NICK = {slug(s): s for s in SCHEDULE_NAMES}
CONTROL_CHOICES = tuple((t, t.capitalize()) for t in CONTROL_TYPES)
SOURCE_CHOICES = (("visible", "Visible image"), ("layer", "Active layer"))
MASK_CHOICES = (("selection", "Selection"), ("layer-mask", "Active layer's mask (white = repaint)"))
FILL_CHOICES = tuple(FILLS.items())  # fills: patch (the default), telea, ns, lama
# speed levels: the style's (the default: protocol "", a choice's nick cannot be empty), quality, fast
SPEED_BY_NICK = {("style" if level == "" else level): level for level in SPEED_LABELS}
SPEED_NICKS = {level: nick for nick, level in SPEED_BY_NICK.items()}
SPEED_CHOICES = tuple((nick, SPEED_LABELS[level]) for nick, level in SPEED_BY_NICK.items())
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

REFERENCE_CHOICES = tuple(
    (t, {"style": "Style", "composition": "Composition", "content": "Content", "face": "Face"}[t])
    for t in REFERENCE_TYPES
)
FOR_CHOICES = (
    (("all", "Every mode"),)
    + tuple(
        (m, m.capitalize()) for m in ("generate", "img2img", "inpaint", "outpaint", "upscale", "preprocess", "detail")
    )
    + tuple((f"control-{t}", f"Control layer: {t}") for t in CONTROL_TYPES)
)
HISTORY_ACTIONS = (
    ("apply", "Apply again (insert the entry's layers)"),
    ("reuse", "Reuse settings (run its mode with them)"),
    ("delete", "Delete the entry"),
    ("list", "List the entries (return value)"),
)
STYLE_ACTIONS = (
    ("list", "List the styles (return value)"),
    ("new", "New style"),
    ("duplicate", "Duplicate a style"),
    ("rename", "Rename a saved style"),
    ("delete", "Delete a saved style"),
)
