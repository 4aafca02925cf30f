"""The ``protocol`` package as the plugin sees it: the copy installed inside the plugin, or the repository's own."""

from __future__ import annotations

import os
import sys
from types import ModuleType

_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)  # pure-Python msgpack and websockets that install.py put next to the plugin

try:  # installed: install.py put a copy of protocol/ inside the plugin folder
    from . import protocol  # type: ignore[attr-defined]
except ImportError:  # running from the repository (unit tests)
    import protocol  # type: ignore[no-redef]

Box = protocol.Box
context_box = protocol.context_box


def client_module() -> ModuleType:
    """``protocol.client`` (imports websockets, so it is loaded only when a connection is made)."""
    from importlib import import_module

    return import_module(".client", protocol.__name__)
