"""The Styles window: the server's styles in a list (name, title, family, shipped or saved) with New…, Duplicate…,
Rename… and Delete; every refusal is shown in the window, which stays open until Close."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("GimpUi", "3.0")
from gi.repository import GimpUi, Gtk  # noqa: E402

from client import styles as cs  # noqa: E402
from client.errors import JobInputError  # noqa: E402


def _families(client) -> List[str]:
    caps = client.welcome.capabilities
    return sorted(caps.get("families") or ())


def _ask(parent, title: str, name: str, families: Optional[List[str]] = None) -> Optional[Tuple[str, str]]:
    """(name, family) typed into a small dialog, or None when cancelled; ``families``: offer a family choice."""
    ask = Gtk.Dialog(title=title, transient_for=parent, modal=True)
    ask.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    ask.add_button("_OK", Gtk.ResponseType.OK)
    ask.set_default_response(Gtk.ResponseType.OK)
    box = ask.get_content_area()
    entry = Gtk.Entry(text=name, activates_default=True)
    box.pack_start(Gtk.Label(label="Name", xalign=0.0), False, False, 2)
    box.pack_start(entry, False, False, 2)
    family = None
    if families is not None:
        family = Gtk.ComboBoxText()
        family.append("", "Any family")
        for f in families:
            family.append(f, f)
        family.set_active_id("")
        box.pack_start(Gtk.Label(label="Made for", xalign=0.0), False, False, 2)
        box.pack_start(family, False, False, 2)
    ask.show_all()
    answer = ask.run()
    chosen = (family.get_active_id() or "") if family is not None else ""
    out = (entry.get_text(), chosen) if answer == Gtk.ResponseType.OK else None
    ask.destroy()
    return out


def run_window(client) -> tuple:
    """Show the window until Close; returns the styles as the server has them then."""
    GimpUi.init("paintbridge")  # GIMP's theme
    window = Gtk.Dialog(title="Paintbridge: Styles")
    window.add_button("_Close", Gtk.ResponseType.CLOSE)
    window.set_default_size(520, -1)
    store = Gtk.ListStore(str, str, str, str)
    view = Gtk.TreeView(model=store)
    for i, title in enumerate(("Name", "Title", "Family", "Kept")):
        view.append_column(Gtk.TreeViewColumn(title, Gtk.CellRendererText(), text=i))
    scrolled = Gtk.ScrolledWindow()
    scrolled.set_policy(Gtk.PolicyType.NEVER, Gtk.PolicyType.AUTOMATIC)
    scrolled.set_min_content_height(260)
    scrolled.add(view)
    status = Gtk.Label(xalign=0.0)
    status.set_line_wrap(True)
    buttons = Gtk.Box(spacing=6)
    box = window.get_content_area()
    box.pack_start(scrolled, True, True, 4)
    box.pack_start(buttons, False, False, 4)
    box.pack_start(status, False, False, 4)
    state = {"styles": tuple(client.list_styles().styles)}

    def show(styles: tuple) -> None:
        state["styles"] = styles
        store.clear()
        for s in styles:
            store.append([s.name, s.title, s.family or "any", "shipped" if s.builtin else "saved"])

    def selected() -> str:
        model, row = view.get_selection().get_selected()
        return model[row][0] if row is not None else ""

    def do(change: Callable[[], Any]) -> None:
        try:
            show(change())
            status.set_text("")
        except JobInputError as err:
            status.set_text(str(err))

    def on_new(_button) -> None:
        answer = _ask(window, "New style", "", _families(client))
        if answer:
            do(lambda: cs.new(client, *answer))

    def on_named(what: str, change: Callable[[Any, str, str], tuple]) -> Callable[[Any], None]:
        def handler(_button) -> None:
            name = selected()
            if not name:
                status.set_text(f"Pick the style to {what.lower()} first")
                return
            answer = _ask(window, f"{what} '{name}'", f"{name} copy" if what == "Duplicate" else name)
            if answer:
                do(lambda: change(client, name, answer[0]))

        return handler

    def on_delete(_button) -> None:
        name = selected()
        if not name:
            status.set_text("Pick the style to delete first")
            return
        do(lambda: cs.delete(client, name))

    for label, handler in (
        ("_New…", on_new),
        ("_Duplicate…", on_named("Duplicate", cs.duplicate)),
        ("_Rename…", on_named("Rename", cs.rename)),
        ("De_lete", on_delete),
    ):
        button = Gtk.Button.new_with_mnemonic(label)
        button.connect("clicked", handler)
        buttons.pack_start(button, False, False, 0)
    show(state["styles"])
    window.show_all()
    window.run()
    window.destroy()
    return state["styles"]
