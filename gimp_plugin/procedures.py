"""The GIMP 3 plug-in: procedure registration from ``arguments``, dialogs, and the run of one procedure.

A run reads the context box's pixels, mask and control layers, sends one job, follows its progress in GIMP's progress
bar and inserts the result layers in one undo step. Every failure ends with ``Gimp.message`` and an error status; the
image is left as it was.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import replace
from typing import Any, Dict, Optional

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import GLib, GObject, Gimp  # noqa: E402

from .argspec import MENU_PATH, Arg, ProcedureSpec  # noqa: E402
from .arguments import ALL_PROCEDURES, BY_NAME, labels_with_mnemonics  # noqa: E402
from client.errors import Cancelled, JobInputError, PaintbridgeError  # noqa: E402

ERROR_DOMAIN = "paintbridge-error-quark"


# --- registration ----------------------------------------------------------------------------------------------------


def _add_argument(procedure, arg: Arg, label: str, mode: str = "") -> None:
    flags = GObject.ParamFlags.READWRITE
    arg = replace(arg, label=label)
    if arg.kind == "string":
        procedure.add_string_argument(arg.name, arg.label, arg.blurb, arg.default, flags)
    elif arg.kind == "int":
        procedure.add_int_argument(
            arg.name, arg.label, arg.blurb, int(arg.minimum), int(arg.maximum), arg.default, flags
        )
    elif arg.kind == "double":
        procedure.add_double_argument(
            arg.name, arg.label, arg.blurb, float(arg.minimum), float(arg.maximum), float(arg.default), flags
        )
    elif arg.kind == "boolean":
        procedure.add_boolean_argument(arg.name, arg.label, arg.blurb, bool(arg.default), flags)
    elif arg.kind == "choice":
        choice = Gimp.Choice.new()
        for index, (nick, label) in enumerate(arg.choices):
            choice.add(nick, index, label, "")
        procedure.add_choice_argument(arg.name, arg.label, arg.blurb, choice, arg.default, flags)
    elif arg.kind == "model":  # a choice of the installed models, fixed when the procedure is created
        from . import host
        from .choices import cached_listed_choices

        choice = Gimp.Choice.new()
        for index, (nick, label) in enumerate(cached_listed_choices(host.profile_dir(), arg.listing, mode)):
            choice.add(nick, index, label, "")
        procedure.add_choice_argument(arg.name, arg.label, arg.blurb, choice, arg.default, flags)
    elif arg.kind == "detail-targets":  # hands only where the server's listing has a hand detector
        from . import host
        from .choices import cached_target_choices

        choice = Gimp.Choice.new()
        for index, (nick, label) in enumerate(cached_target_choices(host.profile_dir())):
            choice.add(nick, index, label, "")
        procedure.add_choice_argument(arg.name, arg.label, arg.blurb, choice, arg.default, flags)
    elif arg.kind == "layer":
        procedure.add_layer_argument(arg.name, arg.label, arg.blurb, True, flags)
    elif arg.kind == "drawable":  # regions: a layer or a channel
        procedure.add_drawable_argument(arg.name, arg.label, arg.blurb, True, flags)
    else:  # pragma: no cover - the table only uses the kinds above
        raise ValueError(f"unknown argument kind {arg.kind!r}")


def _read_values(spec: ProcedureSpec, config) -> Dict[str, Any]:
    return {arg.name: config.get_property(arg.name) for arg in spec.args}


class Paintbridge(Gimp.PlugIn):
    """Registers one procedure per mode under Filters > Paintbridge."""

    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [spec.name for spec in ALL_PROCEDURES]

    def do_create_procedure(self, name):
        spec = BY_NAME[name]
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*, GRAY*")
        if spec.download or spec.styles:
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
        else:
            procedure.set_sensitivity_mask(
                Gimp.ProcedureSensitivityMask.DRAWABLE
                | Gimp.ProcedureSensitivityMask.DRAWABLES
                | Gimp.ProcedureSensitivityMask.NO_DRAWABLES
            )
        procedure.set_menu_label(spec.menu_label)
        procedure.add_menu_path(MENU_PATH)
        procedure.set_documentation(spec.blurb, spec.help, name)
        procedure.set_attribution("Paintbridge contributors", "Paintbridge contributors", "2026")
        labels = labels_with_mnemonics(spec)
        for arg in spec.args:
            _add_argument(procedure, arg, labels[arg.name], spec.mode)
        if spec.returns_image:
            procedure.add_image_return_value(
                "new-image",
                "New image",
                "The upscaled image (none when the result went into a layer)",
                True,
                GObject.ParamFlags.READWRITE,
            )
        if spec.mode == "caption":  # prompt from the picture
            procedure.add_string_return_value(
                "caption", "Caption", "The words that describe the picture", "", GObject.ParamFlags.READWRITE
            )
        if spec.styles:
            procedure.add_string_return_value(
                "styles", "Styles", "The server's styles after the action, as JSON", "", GObject.ParamFlags.READWRITE
            )
        if spec.history:  # results history
            procedure.add_string_return_value(
                "entries", "Entries", "'list': the entries as JSON (newest first)", "", GObject.ParamFlags.READWRITE
            )
            procedure.add_string_return_value(
                "settings", "Settings", "'reuse': the entry's settings as JSON", "", GObject.ParamFlags.READWRITE
            )
        return procedure


# --- running ---------------------------------------------------------------------------------------------------------


def _status(procedure, status, message: str = ""):
    error = GLib.Error.new_literal(GLib.quark_from_string(ERROR_DOMAIN), message, 0) if message else GLib.Error()
    return procedure.new_return_values(status, error)


def _show_dialog(procedure, spec: ProcedureSpec, config, image=None) -> bool:
    """The dialog generated from the procedure's arguments (filled with what "Reuse settings" kept for it, layers
    found in ``image``); False when the user cancelled it."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    from .dialog import add_models_hint, fill_dialog, follow_offers

    GimpUi.init("paintbridge")
    from . import host, settings

    if not str(config.get_property("server") or "").strip():
        config.set_property("server", settings.load(host.profile_dir()).url)
    apply_reuse(spec, config, image)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, spec.title)
    fill_dialog(dialog, spec)
    follow_offers(procedure, spec, config)
    add_models_hint(
        dialog, spec, str(config.get_property("server") or ""), str(config.get_property("token") or ""), config
    )
    ok = dialog.run()
    dialog.destroy()
    return bool(ok)


def apply_reuse(spec: ProcedureSpec, config, image) -> None:
    """Fill ``config`` with the values History's "Reuse settings" kept for this procedure, if any: every slot, the
    control and reference layers (and regions) found in ``image`` by their stable ids (a missing one, or every one
    without an image, is named and left empty), a model name the choice does not offer put in its override."""
    from . import host
    from .choices import cached_listed_choices
    from .values import place_unlisted, resolve_items, take_reuse

    reused = take_reuse(host.profile_dir(), spec.name)
    if not reused:
        return
    reused = place_unlisted(
        spec,
        reused,
        lambda arg: [nick for nick, _label in cached_listed_choices(host.profile_dir(), arg.listing, spec.mode)],
    )
    reused, missing = resolve_items(
        spec,
        reused,
        lambda ident: host.layer_by_stable_id(image, ident) if image else None,
        lambda ident: host.item_by_stable_id(image, ident) if image else None,
    )
    if missing:
        Gimp.message(
            "Paintbridge: the image no longer has the layers of " + ", ".join(missing) + "; those slots are left empty"
        )
    for name, value in reused.items():
        config.set_property(name, value)


class _Progress:
    """GIMP's progress bar and status text, fed by job events."""

    def __init__(self, title: str) -> None:
        self.title = title
        Gimp.progress_init(f"Paintbridge: {title}")

    def __call__(self, fraction: Optional[float], text: Optional[str]) -> None:
        if text:
            Gimp.progress_set_text(f"Paintbridge: {text}")
        if fraction is not None:
            Gimp.progress_update(max(0.0, min(1.0, fraction)))

    def end(self) -> None:
        Gimp.progress_end()


def run(procedure, run_mode, image, drawables, config, data):
    """Run function of every Paintbridge procedure."""
    spec = BY_NAME[procedure.get_name()]
    if spec.takes_description:
        _fill_prompt_from_description(config, run_mode)
    if spec.live:
        return _run_live(procedure, run_mode, image, drawables, config, spec)
    if spec.download:
        return _run_download(procedure, run_mode, config, spec)
    if spec.styles:
        from .styles_procedure import run_styles

        return run_styles(procedure, run_mode, config, spec)
    if spec.history:
        from .history_procedure import run_history

        return run_history(procedure, run_mode, image, list(drawables or []), config, spec)
    if run_mode == Gimp.RunMode.INTERACTIVE and not _show_dialog(procedure, spec, config, image):
        return _status(procedure, Gimp.PDBStatusType.CANCEL)
    values = _read_values(spec, config)
    try:
        if spec.mode == "caption":
            caption = describe(
                spec, image, list(drawables or []), values, interactive=run_mode == Gimp.RunMode.INTERACTIVE
            )
        else:
            new_image = execute(
                spec, image, list(drawables or []), values, interactive=run_mode == Gimp.RunMode.INTERACTIVE
            )
    except Cancelled as err:
        return _status(procedure, Gimp.PDBStatusType.CANCEL, str(err))
    except JobInputError as err:
        Gimp.message(f"Paintbridge: {err}")
        return _status(procedure, Gimp.PDBStatusType.CALLING_ERROR, str(err))
    except PaintbridgeError as err:
        Gimp.message(f"Paintbridge: {err}")
        return _status(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, str(err))
    except Exception as err:  # noqa: BLE001 - a bug must still end with a message, not a half-changed image
        traceback.print_exc(file=sys.stderr)
        message = f"Paintbridge failed unexpectedly ({type(err).__name__}: {err}). Please report this."
        Gimp.message(message)
        return _status(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, message)
    result = _status(procedure, Gimp.PDBStatusType.SUCCESS)
    if spec.mode == "caption":
        result.remove(1)
        result.insert(1, GObject.Value(GObject.TYPE_STRING, caption))
    if spec.returns_image:
        result.remove(1)
        from . import host

        result.insert(1, host.image_value(new_image))
    return result


def _fill_prompt_from_description(config, run_mode) -> None:
    """The last Describe's words become the prompt: of a dialog (interactive runs), or of a scripted run that sends
    none; they are used once."""
    if run_mode != Gimp.RunMode.INTERACTIVE and str(config.get_property("prompt") or "").strip():
        return
    from . import host
    from .values import take_description

    text = take_description(host.profile_dir())
    if text:
        config.set_property("prompt", text)


def describe(spec: ProcedureSpec, image, drawables: list, values: Dict[str, Any], interactive: bool = False) -> str:
    """Describe: read the selection's bounds (or the image), ask the server's captioner, keep the words for the next
    run's prompt; returns them."""
    from . import connection, host
    from .values import save_description

    progress = _Progress("describing the picture")
    try:
        _settings, _welcome, text = _send(
            spec, image, drawables[0] if drawables else None, values, progress, connection.run_caption
        )
    finally:
        progress.end()
    save_description(host.profile_dir(), text)
    if interactive:
        Gimp.message(f"Paintbridge: the next run's prompt will be: {text}")
    return text


def _run_download(procedure, run_mode, config, spec: ProcedureSpec):
    """Download Models: the dialog lists what each preset lacks; the download shows progress (and, interactively, a
    Cancel button)."""
    from . import download
    from .outcome import guarded

    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    if interactive and not _show_dialog(procedure, spec, config):
        return _status(procedure, Gimp.PDBStatusType.CANCEL)
    values = _read_values(spec, config)

    def work() -> list:
        if interactive:
            from .dialog import run_download_window

            return run_download_window(values)
        progress = _Progress("downloading models")
        try:
            return download.execute(values, progress)
        finally:
            progress.end()

    status, message, listing = guarded("the download", work)
    if status is not None:
        return _status(procedure, status, message)
    names = ", ".join(str(m.get("name")) for m in listing if m.get("kind") != "builtin")
    Gimp.message(f"Paintbridge: download complete. The server now has: {names or 'no model files'}")
    return _status(procedure, Gimp.PDBStatusType.SUCCESS)


def _run_live(procedure, run_mode, image, drawables, config, spec: ProcedureSpec):
    if run_mode == Gimp.RunMode.NONINTERACTIVE:  # Filters > Repeat (last values) opens the dialog again
        message = f"{spec.title.split(': ', 1)[-1]} needs its dialog; scripts call plug-in-paintbridge-inpaint instead"
        return _status(procedure, Gimp.PDBStatusType.CALLING_ERROR, message)
    try:
        from .live import run_live

        kept = run_live(procedure, config, image, list(drawables or []), spec)
    except Exception as err:  # noqa: BLE001 - a bug must end with a message, not a traceback
        traceback.print_exc(file=sys.stderr)
        message = f"Paintbridge live inpaint failed unexpectedly ({type(err).__name__}: {err}). Please report this."
        Gimp.message(message)
        return _status(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, message)
    return _status(procedure, Gimp.PDBStatusType.SUCCESS if kept else Gimp.PDBStatusType.CANCEL)


def _send(spec: ProcedureSpec, image, active, values: Dict[str, Any], progress: "_Progress", wait):
    """Read what the run's mode needs, connect, send its job and ``wait(client, job, progress)`` for the answer:
    (the run's settings, the server's welcome, what ``wait`` returned)."""
    from client.connect import new_job_id

    from . import capture, connection, host, settings

    job_settings, inputs = capture.read_inputs(spec, image, active, values)
    url, token = capture.server_target(values)
    profile = host.profile_dir()
    client = connection.connect(url, token, profile, progress)
    try:
        job = capture.make_job(job_settings, inputs, client.welcome, new_job_id("gimp"))
        settings.remember(profile, url, token)
        return job_settings, client.welcome, wait(client, job, progress)
    finally:
        client.close()


def execute(spec: ProcedureSpec, image, drawables: list, values: Dict[str, Any], interactive: bool = False):
    """One run: read, connect, send, wait, insert. Returns the new image of an upscale into a new image, else None."""
    from . import capture, connection, history

    active = drawables[0] if drawables else None
    progress = _Progress(spec.title.split(": ", 1)[-1])
    try:
        job_settings, welcome, (layers, used) = _send(spec, image, active, values, progress, connection.run_job)
        new_image = capture.place_results(spec, image, active, job_settings, layers, welcome, values, interactive)
        note = history.record(image, job_settings, layers, capture.names_of(spec, job_settings, layers, welcome), used)
        if note:
            Gimp.message(f"Paintbridge: {note}")
        return new_image
    finally:
        progress.end()


def main() -> None:
    Gimp.main(Paintbridge.__gtype__, sys.argv)
