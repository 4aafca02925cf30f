"""Layout of the generated procedure dialogs: the main arguments first, the rest in collapsible sections."""

from __future__ import annotations

from typing import List, Optional, Tuple

from client.errors import JobInputError

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


def models_hint(models: Optional[List[dict]], mode: str, url: str) -> str:
    """One line for the dialog naming what the Model (and Upscaler) fields accept on this server."""
    if models is None:
        return f"The server at {url} is not answering; start it ('paintbridge serve') before pressing OK."

    def names(kind: str) -> List[str]:
        return [str(m.get("name")) for m in models if m.get("kind") == kind and m.get("name")]

    checkpoints = names("checkpoint")
    parts = [f"Checkpoints: {', '.join(checkpoints)}" if checkpoints else "No checkpoint installed"]
    if mode == "upscale":
        upscalers = names("upscaler")
        parts.insert(0, f"Upscalers: {', '.join(upscalers)}" if upscalers else "Upscaler: Lanczos only")
    elif mode in ("inpaint", "outpaint"):
        parts.append("built-in: classical")
    return " · ".join(parts)


def add_models_hint(dialog, spec: ProcedureSpec, server: str, token: str) -> None:
    """A line under the fields saying which models the server has (or that it is not answering)."""
    import gi

    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    from . import capture
    from .connection import fetch_models

    try:
        url, resolved_token = capture.server_target({"server": server, "token": token})
        text = models_hint(fetch_models(url, resolved_token), spec.mode, url)
    except JobInputError as err:
        text = str(err)
    label = Gtk.Label(label=text)
    label.set_line_wrap(True)
    label.set_xalign(0.0)
    label.set_max_width_chars(60)
    dialog.get_content_area().pack_end(label, False, False, 4)
    label.show()
