"""The server's styles as an editor edits them: new, duplicate, rename and delete, through a connected protocol client
(``protocol.client.Client``: ``list_styles``, ``save_style``, ``delete_style``). Every refusal — of the server or
here, before anything is sent — raises JobInputError naming what to change; each call returns the server's styles
after it."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Sequence

from .errors import JobInputError
from .settings import AUTO_STYLE
from .wire import protocol

AUTO = AUTO_STYLE  # the style the server suggests for the model's family


def _styles(answer: Any) -> tuple:
    return tuple(answer.styles)


def find(styles: Sequence[Any], name: str) -> Any:
    """The style called ``name``; JobInputError naming the styles there are."""
    for style in styles:
        if style.name == name:
            return style
    have = ", ".join(s.name for s in styles) or "none"
    raise JobInputError(f"there is no style named '{name}' (styles: {have})")


def _ask(call: Callable[[], Any]) -> tuple:
    from .wire import client_module

    try:
        return _styles(call())
    except client_module().JobFailed as err:
        raise JobInputError(f"The server refused: {err}") from None


def check_name(name: str, taken: Sequence[str] = ()) -> str:
    """``name`` stripped, when it can name a new style (letters, digits, space, ``_ . + -``; up to 64; unused)."""
    name = name.strip()
    if not re.fullmatch(protocol.styles.STYLE_NAME_PATTERN, name):
        raise JobInputError(
            f"{name!r} cannot name a style: use letters, digits, spaces and _ . + - (up to 64, a letter or digit first)"
        )
    if name.lower() in {t.lower() for t in taken}:
        raise JobInputError(f"there is already a style named {name!r}: choose another name")
    return name


def edited(style: "protocol.Style", **fields: Any) -> "protocol.Style":
    """``style`` with ``fields`` changed, checked as the server checks it (a bad value names its field)."""
    try:
        changed = dataclasses.replace(style, builtin=False, **fields)
        return type(style).parse_map(changed.to_wire(), "style", None)
    except (protocol.ProtocolError, TypeError, ValueError) as err:
        raise JobInputError(f"style {style.name!r}: {err}") from None


def first_installed(style: "protocol.Style", checkpoints: Sequence[str]) -> str:
    """The style's preferred checkpoint that the server lists ("" when none is installed)."""
    listed = {name.lower(): name for name in checkpoints}
    return next((listed[c.lower()] for c in style.checkpoints if c.lower() in listed), "")


def _free(styles: Sequence[Any], name: str) -> str:
    return check_name(name, [s.name for s in styles])


def new(client: Any, name: str, family: str = "") -> tuple:
    """A new style ``name`` for ``family`` ("" = any) with every field at its default (the job's own settings)."""
    styles = _styles(client.list_styles())
    name = _free(styles, name)
    return _ask(lambda: client.save_style(protocol.Style(name=name, family=family)))


def duplicate(client: Any, name: str, new_name: str) -> tuple:
    """A copy of style ``name`` (shipped or saved) called ``new_name``."""
    styles = _styles(client.list_styles())
    style, new_name = find(styles, name), _free(styles, new_name)
    return _ask(lambda: client.save_style(dataclasses.replace(style, name=new_name, title="", builtin=False)))


def rename(client: Any, name: str, new_name: str) -> tuple:
    """Style ``name`` under ``new_name`` (saved under the new name, then the old one deleted); a shipped style cannot
    be renamed (duplicate it)."""
    styles = _styles(client.list_styles())
    style, new_name = find(styles, name), _free(styles, new_name)
    if style.builtin:
        raise JobInputError(f"style '{name}' is shipped with the server and cannot be renamed: duplicate it instead")
    _ask(lambda: client.save_style(dataclasses.replace(style, name=new_name)))
    return _ask(lambda: client.delete_style(name))


def delete(client: Any, name: str) -> tuple:
    """Remove the saved style ``name`` (a shipped one cannot be removed: the server says so)."""
    find(_styles(client.list_styles()), name)
    return _ask(lambda: client.delete_style(name))
