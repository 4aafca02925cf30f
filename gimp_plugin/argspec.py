"""What a procedure and its arguments are, as plain data (``Arg``, ``ProcedureSpec``), and the names they share: the
PDB prefix, the menu, choice nicks (``slug``). The arguments themselves are in ``args_prompt``, ``args_inputs`` and
``args_passes``; the procedures in ``arguments``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

PREFIX = "plug-in-paintbridge-"
MENU_PATH = "<Image>/Filters/Paintbridge"
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
