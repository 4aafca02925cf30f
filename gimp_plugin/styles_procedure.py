"""The Styles procedure (Filters > Paintbridge > Styles…): the server's styles, edited in a window or by a script
(``action`` on ``style``); the editing itself is the client core's (``client.styles``). After a change the Style
choices are recorded again, so GIMP lists the new names from its next start."""

from __future__ import annotations

import json
from typing import Any, Dict, Sequence

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import GLib, GObject, Gimp  # noqa: E402

from client import styles as cs  # noqa: E402
from client.errors import JobInputError  # noqa: E402

from .argspec import ProcedureSpec  # noqa: E402
from .outcome import guarded  # noqa: E402

ERROR_DOMAIN = "paintbridge-error-quark"


def summary(styles: Sequence[Any]) -> str:
    """The styles as the procedure returns them: JSON, one object per style (name, title, family, builtin)."""
    return json.dumps(
        [{"name": s.name, "title": s.title, "family": s.family, "builtin": bool(s.builtin)} for s in styles]
    )


def connected(values: Dict[str, Any]):
    """A client connected to the server the arguments (or the remembered address) name."""
    from . import capture, connection, host

    url, token = capture.server_target(values)
    return connection.connect(url, token, host.profile_dir())


def act(client, values: Dict[str, Any]) -> tuple:
    """One action on the connected ``client``; the styles after it."""
    action = str(values.get("action") or "list")
    name, new_name = str(values.get("style") or "").strip(), str(values.get("new-name") or "")
    if action == "list":
        return tuple(client.list_styles().styles)
    if action == "new":
        return cs.new(client, name, str(values.get("family") or "").strip())
    if action == "duplicate":
        return cs.duplicate(client, name, new_name)
    if action == "rename":
        return cs.rename(client, name, new_name)
    if action == "delete":
        return cs.delete(client, name)
    raise JobInputError(f"Unknown styles action {action!r}; choose list, new, duplicate, rename or delete")


def remember_choices(client, styles: Sequence[Any]) -> None:
    """Record the listing with these styles for the procedures' Style choice (GIMP registers it again if changed)."""
    from . import host
    from .choices import record
    from .connection import style_entries

    try:
        record(host.profile_dir(), list(client.welcome.models) + style_entries(styles))
    except OSError:
        pass


def run_styles(procedure, run_mode, config, spec: ProcedureSpec):
    """Run function of the Styles procedure: the window when interactive, else ``act`` on the arguments."""
    values = {arg.name: config.get_property(arg.name) for arg in spec.args}

    def work() -> tuple:
        client = connected(values)
        try:
            if run_mode == Gimp.RunMode.INTERACTIVE:
                from .styles_dialog import run_window

                styles = run_window(client)
            else:
                styles = act(client, values)
            remember_choices(client, styles)
            return styles
        finally:
            client.close()

    status, message, styles = guarded("the styles", work)
    if status is not None:
        return _returns(procedure, status, message)
    return _returns(procedure, Gimp.PDBStatusType.SUCCESS, "", summary(styles))


def _returns(procedure, status, message: str = "", styles: str = ""):
    error = GLib.Error.new_literal(GLib.quark_from_string(ERROR_DOMAIN), message, 0) if message else GLib.Error()
    result = procedure.new_return_values(status, error)
    if status == Gimp.PDBStatusType.SUCCESS:
        result.remove(1)
        result.insert(1, GObject.Value(GObject.TYPE_STRING, styles))
    return result
