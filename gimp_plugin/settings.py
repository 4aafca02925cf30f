"""Server address and token remembered between runs and shared by all procedures: ``client.server.ServerSettings``
kept in a small JSON file in GIMP's profile.

An empty ``server`` or ``token`` argument means "the last one used"; a run that reached the server remembers what it
used. Tokens are remembered per address, so a token never travels to a different server. The file is private (0600).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Tuple

from client.server import DEFAULT_URL, ServerSettings, normalise_url

FILE_NAME = "paintbridge.json"
__all__ = ["DEFAULT_URL", "FILE_NAME", "load", "normalise_url", "remember", "resolve", "save"]


def load(folder: Path) -> ServerSettings:
    """The remembered settings (the defaults when there are none or the file is unreadable)."""
    try:
        data = json.loads((folder / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    return ServerSettings.from_dict(data)


def save(folder: Path, remembered: ServerSettings) -> None:
    """Write the settings atomically, readable by this user only."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".paintbridge-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(remembered.to_dict(), handle, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, folder / FILE_NAME)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def resolve(folder: Path, server: str, token: str) -> Tuple[str, Optional[str]]:
    """(url, token) for a run: the arguments when given, else the remembered ones, else the local default."""
    return load(folder).target(server, token)


def remember(folder: Path, url: str, token: Optional[str]) -> None:
    """Remember the address (and its token) a run used successfully."""
    remembered = load(folder)
    remembered.remember(url, token)
    save(folder, remembered)
