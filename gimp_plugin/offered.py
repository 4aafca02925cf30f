"""Which entries of a dialog's choices can run on the model picked (``client.offers`` over the server's ``welcome``):
the LoRAs the model takes, the control and reference types, the detailer's targets, the preprocessors it serves
and the speed levels it runs. The dialog greys the others out (GIMP's choice sensitivity) and follows the Model
choice; scripts are not limited, the server answers them."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Tuple

from .argchoices import SPEED_NICKS
from .argspec import ProcedureSpec
from .choices import listed_value

# detail-targets nicks → the targets each needs
TARGET_NICKS = {"face": ("face",), "hand": ("hand",), "face-hand": ("face", "hand")}


def sensitivity(
    spec: ProcedureSpec, welcome: Any, model_nick: Any, nicks: Dict[str, Iterable[str]]
) -> Dict[str, Dict[str, bool]]:
    """For each choice argument of ``spec`` whose entries depend on the model (``nicks``: its entries), whether each
    entry can run on the model ``model_nick`` names; arguments that do not depend on it are left out."""
    from client.offers import offers

    o = offers(welcome, listed_value("model", model_nick) if any(a.name == "model" for a in spec.args) else "")
    caps = welcome.capabilities
    out: Dict[str, Dict[str, bool]] = {}
    for arg in spec.args:
        allowed: Tuple[str, ...] = ()
        if arg.kind == "model" and arg.listing == "lora":
            allowed = ("none",) + o.loras
        elif not o.known:
            continue  # a server (or model) that does not say: everything stays, the server decides
        elif arg.name.startswith("control") and arg.name.endswith("-type"):
            allowed = o.controls_for(spec.mode)
        elif arg.name.startswith("reference") and arg.name.endswith("-type"):
            allowed = o.reference_types if spec.mode in o.control_modes else ()
        elif arg.name == "detail-targets":
            allowed = tuple(n for n, needs in TARGET_NICKS.items() if set(needs) <= set(o.detail_targets))
        elif arg.name == "preprocessor" and caps.get("preprocessors"):
            allowed = o.preprocessors
        elif arg.name == "speed":
            allowed = tuple(SPEED_NICKS[level] for level in o.speed_choices() if level in SPEED_NICKS)
        else:
            continue
        out[arg.name] = {nick: nick in allowed for nick in nicks.get(arg.name, ())}
    return out
