"""The History dialog: the image's earlier results, newest first, as thumbnails with their settings as tooltips, a
search entry that narrows them (``client.history_search``), Apply again / Reuse settings / Delete buttons and how
many MB each image keeps."""

from __future__ import annotations

from typing import Any, Callable, Optional

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("GimpUi", "3.0")
from gi.repository import GdkPixbuf, GimpUi, GLib, Gtk  # noqa: E402

from client.errors import PaintbridgeError  # noqa: E402

from . import history, host  # noqa: E402

APPLY, REUSE, DELETE = 1, 2, 3


def _thumbnail(entry) -> Gtk.Image:
    w, h, rgba = entry.thumbnail_rgba()
    if not (w and h):
        return Gtk.Image()
    pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(rgba), GdkPixbuf.Colorspace.RGB, True, 8, w, h, w * 4)
    return Gtk.Image.new_from_pixbuf(pixbuf)


def _fill(listbox: Gtk.ListBox, kept, status: Gtk.Label, search: str = "") -> list:
    for row in listbox.get_children():
        listbox.remove(row)
    try:
        entries = history.newest_first(kept, search)
        problem = ""
    except PaintbridgeError as err:
        entries, problem = [], str(err)
    for entry in entries:
        line = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=8)
        line.pack_start(_thumbnail(entry), False, False, 2)
        label = Gtk.Label(label=entry.title())
        label.set_xalign(0.0)
        line.pack_start(label, True, True, 2)
        row = Gtk.ListBoxRow()
        row.add(line)
        row.set_tooltip_text(entry.describe())
        listbox.add(row)
    listbox.show_all()
    if entries:
        listbox.select_row(listbox.get_row_at_index(0))
    stored = sum(e.stored_bytes for e in kept.entries) / 1e6
    found = f", {len(entries)} found" if search.strip() else ""
    status.set_text(
        problem
        or (
            f"{len(kept.entries)} result(s) kept in this image{found}, {stored:.1f} MB"
            if kept.entries
            else "No Paintbridge results are kept in this image yet."
        )
    )
    return entries


def run_dialog(image, drawables: list, interactive_reuse: Callable[[Any, list, Any], Optional[str]]) -> None:
    """Show the dialog until the painter closes it, or reuses an entry's settings through ``interactive_reuse``
    (image, drawables, entry) → an error text or None (its mode's dialog opens); typing goes to the search entry
    first."""
    GimpUi.init("paintbridge")
    profile = host.profile_dir()
    kept = history.of(image)
    dialog = Gtk.Dialog(title="Paintbridge: History")
    for label, response in (
        ("_Apply again", APPLY),
        ("_Reuse settings", REUSE),
        ("_Delete", DELETE),
        ("_Close", Gtk.ResponseType.CLOSE),
    ):
        dialog.add_button(label, response)
    box = dialog.get_content_area()
    note = Gtk.Label(label=kept.problem)
    note.set_line_wrap(True)
    find = Gtk.SearchEntry()
    find.set_placeholder_text("Search: words of the prompt, model, seed, mode, date")
    find.set_tooltip_text(
        'Every word must match; "quoted words" as a phrase; prompt:, model:, mode:, seed:, date: '
        "name a field (date:2026-12, date:>2026-12-01, date:today)"
    )
    listbox = Gtk.ListBox()
    scrolled = Gtk.ScrolledWindow()
    scrolled.set_size_request(460, 360)
    scrolled.add(listbox)
    status = Gtk.Label()
    status.set_xalign(0.0)
    limit_row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    limit = Gtk.SpinButton.new_with_range(0, 100000, 16)
    limit.set_value(history.limit_mb(profile))
    limit_row.pack_start(Gtk.Label(label="Keep at most (MB, per image):"), False, False, 0)
    limit_row.pack_start(limit, False, False, 0)
    for widget in (note, find, scrolled, status, limit_row):
        box.pack_start(widget, widget is scrolled, widget is scrolled, 4)
    dialog.show_all()
    find.grab_focus()
    entries = _fill(listbox, kept, status, find.get_text())

    def searched(_entry) -> None:
        nonlocal entries
        entries = _fill(listbox, kept, status, find.get_text())

    find.connect("search-changed", searched)
    while True:
        answer = dialog.run()
        if int(limit.get_value()) != history.limit_mb(profile):
            history.set_limit_mb(profile, int(limit.get_value()))
            kept.set_limit(int(limit.get_value()) * 1_000_000)
            entries = _fill(listbox, kept, status, find.get_text())
        if answer not in (APPLY, REUSE, DELETE):
            break
        row = listbox.get_selected_row()
        if row is None or not entries:
            continue
        entry = entries[row.get_index()]
        try:
            if answer == APPLY:
                new_image = history.apply_again(image, drawables[0] if drawables else None, entry)
                if new_image is not None:
                    host.show_image(new_image)
                host.flush_displays()
            elif answer == DELETE:
                kept.delete(entry.id)
                entries = _fill(listbox, kept, status, find.get_text())
            else:
                dialog.destroy()
                while Gtk.events_pending():  # let the dialog disappear before the mode's dialog opens
                    Gtk.main_iteration()
                problem = interactive_reuse(image, drawables, entry)
                if problem:
                    host.show_message(f"Paintbridge: {problem}")
                return
        except PaintbridgeError as err:
            status.set_text(str(err))
    dialog.destroy()
