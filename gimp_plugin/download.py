"""Filters > Paintbridge > Download Models: which starter set (preset) the server has, what it lacks for a mode or
control type, and downloading presets onto the server's machine through the protocol (``client.models``).

The last model listing the plug-in saw is recorded in GIMP's profile (``paintbridge-models.json``) after each
download and whenever the procedures are created (``choices``). When the checkpoints changed, the plug-in's entry file
is touched: GIMP registers a plug-in again when its file changes, so at its next start the ``model`` choice that
scripts see lists the new models too (dialogs always show the current ones).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from client import models as cm
from client.errors import JobInputError

RECORD_NAME = "paintbridge-models.json"


def names_of(text: str) -> List[str]:
    """Preset names or file ids typed in the dialog (commas or spaces between them)."""
    names = [n for n in re.split(r"[\s,]+", str(text or "").strip()) if n]
    if not names:
        raise JobInputError("Name at least one preset to download (e.g. 'sd15', 'sdxl', 'upscaler', 'annotators'); "
                            "the dialog lists what each one holds")
    return names


def scope_of(nick: Any) -> Tuple[str, str]:
    """(mode, control type) for the dialog's "show what is missing for" choice."""
    nick = str(nick or "all")
    if nick.startswith("control-"):
        return "", nick[len("control-"):]
    return ("" if nick == "all" else nick), ""


def status_text(statuses: Optional[Sequence[cm.PresetStatus]], nick: Any, url: str) -> str:
    """The dialog's list: one line per preset, about the chosen mode or control type."""
    if statuses is None:
        return (f"The server at {url} is not answering, or cannot download models; start or update it "
                "('paintbridge serve') and open this dialog again.")
    mode, control = scope_of(nick)
    lines = [s.line(mode, control) for s in statuses]
    lines.append(cm.summary(statuses, mode, control))
    return "\n".join(lines)


def record(profile: Path, models: Sequence[Mapping[str, Any]], entry: Optional[Path] = None) -> bool:
    """Remember the server's model listing (names and kinds) in the plug-in's profile; returns True when the
    checkpoints changed, and then touches ``entry`` (the plug-in's entry file: GIMP registers it again at its next
    start)."""
    listing = [{"name": str(m.get("name", "")), "kind": str(m.get("kind", ""))} for m in models if m.get("name")]

    def checkpoints(entries: Sequence[Mapping[str, Any]]) -> List[str]:
        return sorted(str(m["name"]) for m in entries if m.get("kind") == "checkpoint")

    changed = checkpoints(listing) != checkpoints(recorded(profile))
    Path(profile).mkdir(parents=True, exist_ok=True)
    (Path(profile) / RECORD_NAME).write_text(json.dumps({"models": listing}, indent=1), encoding="utf-8")
    if entry is None:
        from .connection import PLUGIN_DIR

        entry = PLUGIN_DIR / "paintbridge.py"
    if changed and Path(entry).is_file():
        try:
            os.utime(entry)
        except OSError:
            pass
    return changed


def recorded(profile: Path) -> List[dict]:
    """The last model listing recorded (empty when none)."""
    try:
        data = json.loads((Path(profile) / RECORD_NAME).read_text(encoding="utf-8"))
        return [dict(m) for m in data.get("models", []) if isinstance(m, dict)]
    except (OSError, ValueError, AttributeError):
        return []


def execute(values: Mapping[str, Any], progress, on_pull_id=None) -> List[dict]:
    """Download the named presets through the server; returns the server's model listing afterwards.
    ``on_pull_id(client, pull_id)`` is called before the download starts (a dialog's Cancel button uses it)."""
    from client.session import new_job_id

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
    record(profile, listing)
    return listing
