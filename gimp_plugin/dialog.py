"""Layout of the generated procedure dialogs: the main arguments first, the rest in collapsible sections."""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

from client.errors import JobInputError

from .args_inputs import CONTROL_KEYS, MAX_REFERENCES, REFERENCE_KEYS, control_prefix, reference_prefix
from .args_prompt import LORA_SLOTS, lora_prefix
from .argspec import ProcedureSpec
from protocol.messages import MAX_CONTROLS
from .choices import OVERRIDE_SUFFIX

# A section: (id, title, members); a member is an argument name or a section folded inside it.
Section = Tuple[str, str, Tuple[Union[str, "Section"], ...]]


def _slots(
    prefix: Callable[[int], str], count: int, keys: Tuple[str, ...], title: str
) -> Tuple[Union[str, Section], ...]:
    """Numbered slots: the first one's arguments open, each further slot folded in its own expander."""
    first = tuple(f"{prefix(1)}-{k}" for k in keys)
    return first + tuple(
        (prefix(i), f"{title} {i}", tuple(f"{prefix(i)}-{k}" for k in keys)) for i in range(2, count + 1)
    )


# Arguments in no section are shown at the top, in table order: the painter's loop (prompt, style, strength, model)
# and what a mode cannot run without (outpaint's sides, upscale's scale); the rest is folded by theme.
SECTIONS: Tuple[Section, ...] = (
    ("negative", "Negative prompt", ("negative-prompt",)),
    ("loras", "LoRAs", tuple(f"{lora_prefix(i)}{key}" for i in range(1, LORA_SLOTS + 1) for key in ("", "-weight"))),
    ("sampling", "Sampling", ("steps", "cfg", "sampler", "scheduler", "speed", "seed", "batch", "batch-count")),
    ("model-parts", "VAE, CLIP skip and refiner", ("vae", "clip-skip", "refiner", "refiner-start")),
    ("output", "Transparency and seamless texture", ("transparent", "tileable")),
    ("area", "Source and mask", ("source", "mask-source", "grow", "feather", "fill", "color-match")),
    ("hires", "Hires fix", ("hires", "hires-upscaler", "hires-strength", "hires-steps", "hires-scale")),
    (
        "detail",
        "Detailer",
        (
            "detail",
            "detail-targets",
            "detail-prompt",
            "detail-negative-prompt",
            "detail-strength",
            "detail-steps",
            "detail-padding",
            "detail-confidence",
            "detail-separate",
        ),
    ),
    ("controls", "Control layers", _slots(control_prefix, MAX_CONTROLS, CONTROL_KEYS, "Control layer")),
    ("references", "Reference images", _slots(reference_prefix, MAX_REFERENCES, REFERENCE_KEYS, "Reference image")),
    (
        "names",
        "Models by name",
        tuple(
            name + OVERRIDE_SUFFIX
            for name in ("model", "style", "vae", "refiner", "upscaler", "hires-upscaler")
            + tuple(lora_prefix(i) for i in range(1, LORA_SLOTS + 1))
        ),
    ),
    ("server", "Server", ("server", "token")),
    ("regions", "Regions", ("use-regions", "region-layer", "region-prompt", "region-negative-prompt")),
)


def _names(section: Section) -> List[str]:
    """Every argument name of a section, its folded sections included."""
    out: List[str] = []
    for member in section[2]:
        out.extend([member] if isinstance(member, str) else _names(member))
    return out


def _present(section: Section, names: Sequence[str]) -> Optional[Section]:
    """``section`` with only the arguments in ``names`` (folded sections left empty dropped); None when empty."""
    members: List[Union[str, Section]] = []
    for member in section[2]:
        kept = (member if member in names else None) if isinstance(member, str) else _present(member, names)
        if kept is not None:
            members.append(kept)
    return (section[0], section[1], tuple(members)) if members else None


# Arguments of a section that are a mode's own work, shown at the top of that mode's dialog.
TOP_FOR_MODE = {"detail": ("detail-targets", "detail-strength")}


def layout(spec: ProcedureSpec) -> Tuple[List[str], List[Section]]:
    """(top-level argument names, [sections]) for a procedure, empty sections dropped."""
    names = [arg.name for arg in spec.args]
    kept = [name for name in names if name not in TOP_FOR_MODE.get(spec.mode, ())]
    folded = [section for section in (_present(s, kept) for s in SECTIONS) if section is not None]
    placed = {name for section in folded for name in _names(section)}
    top = [name for name in names if name not in placed]
    return top, folded


def _fill_section(dialog, section: Section) -> str:
    """Build a section's expander (its folded sections first) and return its id."""
    sid, title, members = section
    ids = [member if isinstance(member, str) else _fill_section(dialog, member) for member in members]
    dialog.get_label(f"{sid}-label", title, False, False)
    dialog.fill_box(f"{sid}-box", ids)
    dialog.fill_expander(f"{sid}-expander", f"{sid}-label", False, f"{sid}-box")
    return f"{sid}-expander"


def fill_dialog(dialog, spec: ProcedureSpec) -> None:
    """Fill a GimpUi.ProcedureDialog: main arguments, then one expander per section (plain list if that fails)."""
    top, sections = layout(spec)
    try:
        dialog.fill(list(top) + [_fill_section(dialog, section) for section in sections])
    except Exception:  # noqa: BLE001 - an older GimpUi without expanders still gets a usable dialog
        dialog.fill(None)


# the modes only some models run: what such models are called, and what to install when there is none
ABLE_MODELS = {
    "edit": (
        "Instruction-edit models",
        "No instruction-edit model installed (e.g. Flux.1 Kontext: flux1-kontext-dev.safetensors in "
        "diffusion_models/, with its text encoders and VAE)",
    ),
    "decompose": (
        "Models that split pictures into layers",
        "No model that splits pictures into layers installed (Qwen-Image-Layered: its diffusers folder in "
        "checkpoints/)",
    ),
}


def models_hint(models: Optional[List[dict]], mode: str, url: str) -> str:
    """One line for the dialog naming what the Model (and Upscaler) fields accept on this server."""
    if models is None:
        return f"The server at {url} is not answering; start it ('paintbridge serve') before pressing OK."

    def names(kind: str) -> List[str]:
        return [str(m.get("name")) for m in models if m.get("kind") == kind and m.get("name")]

    checkpoints = names("checkpoint")
    parts = [f"Checkpoints: {', '.join(checkpoints)}" if checkpoints else "No checkpoint installed"]
    if mode in ABLE_MODELS:  # only models whose listing says they can run the mode
        from client.modes import offered

        able = [str(m.get("name")) for m in models if m.get("kind") == "checkpoint" and offered(mode, m)]
        what, none = ABLE_MODELS[mode]
        parts = [f"{what}: {', '.join(able)}" if able else none]
    if mode == "caption":  # prompt from the picture: a captioner, no checkpoint
        captioners = names("captioner")
        parts = [
            f"Captioners: {', '.join(captioners)}"
            if captioners
            else "No captioner installed: Download Models › 'captioner'"
        ]
    if mode == "upscale":
        upscalers = names("upscaler")
        parts.insert(0, f"Upscalers: {', '.join(upscalers)}" if upscalers else "Upscaler: Lanczos only")
    elif mode in ("inpaint", "outpaint"):
        parts.append("built-in: classical")
    return " · ".join(parts)


def mode_hint(models: Optional[List[dict]], statuses, spec: ProcedureSpec, url: str, control: str = "") -> str:
    """The hint of a mode dialog: what the Model fields accept, and which preset is ready for this mode (or what to
    download with Filters > Paintbridge > Download Models)."""
    from client import downloads as cm

    text = models_hint(models, spec.mode, url)
    if models is not None and statuses is not None:
        text += "\n" + cm.summary(statuses, spec.mode, control)
    return text


def follow_offers(procedure, spec: ProcedureSpec, config) -> None:
    """Grey out the choices' entries that cannot run on the picked model (``offered.sensitivity``), again whenever
    the Model choice changes; nothing when the server does not answer."""
    import gi

    gi.require_version("Gimp", "3.0")
    from gi.repository import Gimp

    from . import capture, connection
    from .offered import sensitivity

    try:
        url, token = capture.server_target(
            {"server": config.get_property("server"), "token": config.get_property("token")}
        )
    except JobInputError:
        return
    welcome = connection.fetch_welcome(url, token, 1.5)
    if welcome is None:
        return
    choices = {}
    for arg in spec.args:
        if arg.kind in ("choice", "model", "detail-targets"):
            choices[arg.name] = Gimp.param_spec_choice_get_choice(procedure.find_argument(arg.name))

    def update(*_args) -> None:
        nicks = {name: choice.list_nicks() for name, choice in choices.items()}
        model = config.get_property("model") if "model" in choices else ""
        for name, states in sensitivity(spec, welcome, model, nicks).items():
            for nick, runs in states.items():
                choices[name].set_sensitive(nick, runs)

    update()
    if "model" in choices:
        config.connect("notify::model", update)


HINT_MAX_HEIGHT = 240  # px of Download Models' status lines shown before they scroll


def add_models_hint(dialog, spec: ProcedureSpec, server: str, token: str, config=None) -> None:
    """A line under the fields saying which models the server has (or that it is not answering) and which preset is
    ready for the mode; in Download Models, one line per preset about the chosen mode, updated when it changes."""
    import gi

    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    from client import downloads as cm

    from . import __version__, capture, download
    from .connection import CLIENT_NAME

    label = Gtk.Label()
    try:
        url, resolved_token = capture.server_target({"server": server, "token": token})
        listing, statuses = cm.fetch_listing(url, resolved_token, CLIENT_NAME, __version__)
        if spec.download:

            def update(*_args) -> None:
                label.set_text(download.status_text(statuses, config.get_property("for"), url))

            update()
            config.connect("notify::for", update)
        else:
            control = (
                str(config.get_property("preprocessor")) if config is not None and spec.mode == "preprocess" else ""
            )
            label.set_text(mode_hint(listing, statuses, spec, url, control))
    except JobInputError as err:
        label.set_text(str(err))
    label.set_line_wrap(True)
    label.set_xalign(0.0)
    label.set_max_width_chars(72)
    shown = label
    if spec.download:  # a line per starter set: scrolled past a height, so the dialog's buttons stay on the screen
        shown = Gtk.ScrolledWindow()
        shown.set_policy(Gtk.PolicyType.NEVER, Gtk.PolicyType.AUTOMATIC)
        shown.set_propagate_natural_height(True)
        shown.set_max_content_height(HINT_MAX_HEIGHT)
        shown.add(label)
        label.show()
    dialog.get_content_area().pack_end(shown, False, False, 4)
    shown.show()


def run_download_window(values) -> list:
    """Download Models, interactively: a window with the progress and a Cancel button while the download runs in a
    worker thread. Returns the server's model listing; raises what ``download.execute`` raises."""
    import threading

    import gi

    gi.require_version("Gtk", "3.0")
    from gi.repository import GLib, Gtk

    from . import download

    window = Gtk.Dialog(title="Paintbridge: Download Models")
    window.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    box = window.get_content_area()
    text = Gtk.Label(label="Connecting to the server…")
    text.set_xalign(0.0)
    bar = Gtk.ProgressBar()
    box.pack_start(text, False, False, 6)
    box.pack_start(bar, False, False, 6)
    box.set_size_request(460, -1)
    window.show_all()
    outcome: dict = {}
    target: dict = {}

    def show(fraction, message) -> None:
        def apply() -> bool:
            if message:
                text.set_text(message)
            if fraction is not None:
                bar.set_fraction(max(0.0, min(1.0, fraction)))
            return False

        GLib.idle_add(apply)

    def work() -> None:
        try:
            outcome["listing"] = download.execute(values, show, on_pull_id=lambda c, i: target.update(client=c, id=i))
        except BaseException as err:  # noqa: BLE001 - handed to the GIMP thread, which reports it
            outcome["error"] = err
        outcome["done"] = True
        GLib.idle_add(lambda: window.response(Gtk.ResponseType.OK) and False)

    worker = threading.Thread(target=work, name="paintbridge-download", daemon=True)
    worker.start()
    while "done" not in outcome:
        answer = window.run()
        if answer in (Gtk.ResponseType.CANCEL, Gtk.ResponseType.DELETE_EVENT) and "client" in target:
            text.set_text("Cancelling (what was fetched is kept)…")
            client, pull_id = target["client"], target["id"]
            threading.Thread(target=client.cancel, args=(pull_id,), daemon=True).start()
    window.destroy()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("listing", [])
