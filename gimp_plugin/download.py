"""Filters > Paintbridge > Download Models: which starter set (preset) the server has, what it lacks for a mode or
control type, and downloading presets onto the server's machine through the protocol (``client.downloads``).

After each download the server's model listing is recorded (``choices.record``), so the ``model`` choice that
scripts see lists the new models at GIMP's next start.
"""

from __future__ import annotations

import re
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from client import downloads as cm
from client.errors import JobInputError

from .choices import record
from .connection import style_entries


def names_of(text: str) -> List[str]:
    """Preset names or file ids typed in the dialog (commas or spaces between them)."""
    names = [n for n in re.split(r"[\s,]+", str(text or "").strip()) if n]
    if not names:
        raise JobInputError(
            "Name at least one preset to download (e.g. 'sd15', 'sdxl', 'upscaler', 'annotators'); "
            "the dialog lists what each one holds"
        )
    return names


def scope_of(nick: Any) -> Tuple[str, str]:
    """(mode, control type) for the dialog's "show what is missing for" choice."""
    nick = str(nick or "all")
    if nick.startswith("control-"):
        return "", nick[len("control-") :]
    return ("" if nick == "all" else nick), ""


def status_text(statuses: Optional[Sequence[cm.PresetStatus]], nick: Any, url: str) -> str:
    """The dialog's list: one line per preset, about the chosen mode or control type."""
    if statuses is None:
        return (
            f"The server at {url} is not answering, or cannot download models; start or update it "
            "('paintbridge serve') and open this dialog again."
        )
    mode, control = scope_of(nick)
    lines = [s.line(mode, control) for s in statuses]
    lines.append(cm.summary(statuses, mode, control))
    return "\n".join(lines)


def execute(values: Mapping[str, Any], progress, on_pull_id=None) -> List[dict]:
    """Download the named presets through the server; returns the server's model listing afterwards.
    ``on_pull_id(client, pull_id)`` is called before the download starts (a dialog's Cancel button uses it)."""
    from client.connect import new_job_id

    from . import capture, connection, host, settings

    names = names_of(values.get("names", ""))
    url, token = capture.server_target(values)
    profile = host.profile_dir()
    client = connection.connect(url, token, profile, progress)
    try:
        pull_id = new_job_id("gimp-pull")
        if on_pull_id is not None:
            on_pull_id(client, pull_id)
        settings.remember(profile, url, token)
        listing = cm.run_pull(client, names, progress, pull_id=pull_id)
    finally:
        client.close()
    record(
        profile, list(listing) + style_entries(client.welcome.styles)
    )  # the styles did not change: kept in the choice
    return listing
