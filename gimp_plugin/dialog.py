"""Layout of the generated procedure dialogs: the main arguments first, the rest in collapsible sections."""

from __future__ import annotations

from typing import List, Tuple

from .arguments import ProcedureSpec

# (section id, title, argument names); arguments in no section are shown at the top, in table order.
SECTIONS: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    ("sampling", "Sampling", ("steps", "cfg", "sampler", "seed", "batch")),
    ("area", "Source and mask", ("source", "mask-source", "grow", "feather", "fill")),
    ("controls", "Control layers", tuple(f"{p}-{k}" for p in ("control", "control-2")
                                         for k in ("layer", "type", "strength", "preprocess"))),
    ("server", "Server", ("server", "token")),
)


def layout(spec: ProcedureSpec) -> Tuple[List[str], List[Tuple[str, str, List[str]]]]:
    """(top-level argument names, [(section id, title, argument names)]) for a procedure, empty sections dropped."""
    names = [arg.name for arg in spec.args]
    placed = {name for _sid, _title, members in SECTIONS for name in members}
    top = [name for name in names if name not in placed]
    sections = []
    for sid, title, members in SECTIONS:
        present = [name for name in members if name in names]
        if present:
            sections.append((sid, title, present))
    return top, sections


def fill_dialog(dialog, spec: ProcedureSpec) -> None:
    """Fill a GimpUi.ProcedureDialog: main arguments, then one expander per section (plain list if that fails)."""
    top, sections = layout(spec)
    try:
        order = list(top)
        for sid, title, members in sections:
            dialog.get_label(f"{sid}-label", title, False, False)
            dialog.fill_box(f"{sid}-box", members)
            dialog.fill_expander(f"{sid}-expander", f"{sid}-label", False, f"{sid}-box")
            order.append(f"{sid}-expander")
        dialog.fill(order)
    except Exception:  # noqa: BLE001 - an older GimpUi without expanders still gets a usable dialog
        dialog.fill(None)
