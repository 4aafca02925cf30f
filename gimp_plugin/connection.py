"""The GIMP plug-in's side of a connection: who it is, where the installer recorded the server command, where the
server's log goes. Connecting, starting a local server, running jobs and every failure message come from
``client.connect``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence

from client import connect as cconnect
from client.wire import protocol
from client.server import LocalServer, read_server_command

from . import __version__

CLIENT_NAME = "paintbridge-gimp"
PLUGIN_DIR = Path(__file__).resolve().parent.parent  # installed: plug-ins/paintbridge (server.json lives there)
LOG_NAME = "paintbridge-server.log"

run_job = cconnect.run_job
run_caption = cconnect.run_caption
describe_event = cconnect.describe_event


def local_server(profile: Path, plugin_dir: Path = PLUGIN_DIR) -> LocalServer:
    """The launcher for the command recorded in ``plugin_dir``; the server outlives the plug-in's process (each GIMP
    run is a process of its own)."""
    return LocalServer(read_server_command(plugin_dir), Path(profile) / LOG_NAME, outlive=True)


def connect(
    url: str,
    token: Optional[str],
    profile: Optional[Path] = None,
    on_status: Optional[cconnect.StatusFn] = None,
    server: Optional[LocalServer] = None,
):
    """A connected client; a local server that is down is started when the install recorded how."""
    if server is None and profile is not None:
        server = local_server(profile)
    return cconnect.open_client(url, token, CLIENT_NAME, __version__, server=server, on_status=on_status)


def fetch_models(url: str, token: Optional[str], timeout: float = 2.0) -> Optional[List[Any]]:
    """The server's model listing for dialog hints, or None when it does not answer within ``timeout``."""
    return cconnect.fetch_models(url, token, CLIENT_NAME, __version__, timeout)


def style_entries(styles: Sequence["protocol.Style"]) -> List[dict]:
    """The server's styles as entries of the choices' listing (kind ``style``; ``arch``: the family it is made for)."""
    return [
        {"name": style.name, "kind": "style", "title": style.title, "arch": style.family}
        for style in styles
        if style.name
    ]


def fetch_welcome(url: str, token: Optional[str], timeout: float = 2.0) -> Optional[Any]:
    """The server's ``welcome`` (models, styles, capabilities), or None when it does not answer within ``timeout``."""
    return cconnect.fetch_welcome(url, token, CLIENT_NAME, __version__, timeout)


def fetch_listing(url: str, token: Optional[str], timeout: float = 2.0) -> Optional[List[Any]]:
    """What the procedures' choices list: the server's models and its styles (``style_entries``), or None when it
    does not answer within ``timeout``."""
    welcome = fetch_welcome(url, token, timeout)
    if welcome is None:
        return None
    return list(welcome.models) + style_entries(welcome.styles)
