"""``protocol`` and ``client`` as the plugin sees them: the copies installed inside the plugin, or the repository's."""

from __future__ import annotations

import os
import sys
from importlib import import_module

_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)  # pure-Python msgpack and websockets that install.py put next to the plugin

try:  # installed: install.py put copies of protocol/ and client/ inside the plugin folder
    from . import client, protocol  # type: ignore[attr-defined]
except ImportError:  # running from the repository (unit tests)
    import client  # type: ignore[no-redef]
    import protocol  # type: ignore[no-redef]

for _name in (
    "connect",
    "docdata",
    "downloads",
    "errors",
    "history",
    "history_search",
    "jobs",
    "live",
    "loras",
    "modes",
    "offers",
    "regions",
    "results",
    "sampling",
    "server",
    "settings",
    "styles",
):
    import_module(f"{client.__name__}.{_name}")

Box = protocol.Box
