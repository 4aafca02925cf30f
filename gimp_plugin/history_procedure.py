"""The History procedure (Filters > Paintbridge > History…): the image's earlier results, from its dialog or from a
script (``action`` on entry ``index``, 0 = the newest of those ``search`` finds). See ``history`` for where the results
are kept."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import GLib, GObject, Gimp  # noqa: E402

from client.errors import JobInputError, PaintbridgeError  # noqa: E402

from . import history, host  # noqa: E402
from .argspec import ProcedureSpec  # noqa: E402
from .arguments import BY_MODE  # noqa: E402
from .outcome import guarded  # noqa: E402
from .values import save_reuse, values_from_settings  # noqa: E402

ERROR_DOMAIN = "paintbridge-error-quark"


def _returns(procedure, status, message: str = "", entries: str = "", settings: str = ""):
    error = GLib.Error.new_literal(GLib.quark_from_string(ERROR_DOMAIN), message, 0) if message else GLib.Error()
    result = procedure.new_return_values(status, error)
    if status == Gimp.PDBStatusType.SUCCESS:
        for index, text in ((1, entries), (2, settings)):
            result.remove(index)
            result.insert(index, GObject.Value(GObject.TYPE_STRING, text))
    return result


def reuse(image, drawables: list, entry, interactive: bool) -> Dict[str, Any]:
    """Keep the entry's settings for its mode's dialog (opened at once when ``interactive``); returns them."""
    spec = BY_MODE.get(entry.mode)
    if spec is None:
        raise JobInputError(f"Results of mode '{entry.mode}' cannot be made again from GIMP")
    settings = entry.reuse_settings()
    save_reuse(host.profile_dir(), spec.name, values_from_settings(spec, settings))
    if interactive:
        host.run_interactively(spec.name, image, drawables)
    return settings.to_dict()


def act(image, drawables: list, values: Dict[str, Any], interactive: bool = False) -> Dict[str, str]:
    """One scripted action: {"entries": JSON} for ``list``, {"settings": JSON} for ``reuse``, {} otherwise."""
    if int(values.get("limit-mb", -1)) >= 0:
        history.set_limit_mb(host.profile_dir(), int(values["limit-mb"]))
    kept = history.of(image)
    if kept.problem:
        Gimp.message(f"Paintbridge: {kept.problem}")
    action = str(values.get("action") or "apply")
    search = str(values.get("search") or "")
    if action == "list":
        return {"entries": history.listing(kept, search)}
    entry = history.pick(kept, int(values.get("index", 0)), search)
    drawable = drawables[0] if drawables else None
    if action == "apply":
        new_image = history.apply_again(image, drawable, entry, int(values.get("layer", -1)))
        if new_image is not None and interactive:
            host.show_image(new_image)
        return {}
    if action == "reuse":
        return {"settings": json.dumps(reuse(image, drawables, entry, interactive))}
    if action == "delete":
        kept.delete(entry.id)
        return {}
    raise JobInputError(f"Unknown history action {action!r}; choose apply, reuse, delete or list")


def run_history(procedure, run_mode, image, drawables: list, config, spec: ProcedureSpec):
    """Run function of the History procedure: the dialog when interactive, else ``act`` on the arguments."""
    values = {arg.name: config.get_property(arg.name) for arg in spec.args}

    def work() -> Dict[str, str]:
        if run_mode == Gimp.RunMode.INTERACTIVE:
            from .history_dialog import run_dialog

            run_dialog(image, drawables, interactive_reuse)  # its search entry starts empty (GIMP hands interactive
            # runs the last values)
            return {}
        return act(image, drawables, values)

    status, message, out = guarded("the history", work)
    if status is not None:
        return _returns(procedure, status, message)
    return _returns(procedure, Gimp.PDBStatusType.SUCCESS, "", out.get("entries", ""), out.get("settings", ""))


def interactive_reuse(image, drawables: list, entry) -> Optional[str]:
    """The dialog's "Reuse settings": an error text, or None."""
    try:
        reuse(image, drawables, entry, True)
    except PaintbridgeError as err:
        return str(err)
    return None
