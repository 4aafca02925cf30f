"""Panel settings as stored in the host's configuration (Krita: ``kritarc``, group ``paintbridge``), without Krita.

The job settings are ``client.settings.Settings`` in its stored form (the same format GIMP stores); the storage is a
``Store``: two calls, ``read(key, default) -> str`` and ``write(key, value)``.
"""

from __future__ import annotations

import json
from typing import Protocol

from .wire import client

DEFAULT_URL = client.server.DEFAULT_URL
Settings = client.settings.Settings


class Store(Protocol):
    def read(self, key: str, default: str) -> str: ...
    def write(self, key: str, value: str) -> None: ...


def load_connection(store: Store) -> client.server.ServerSettings:
    """The remembered server (``client.server.ServerSettings``, the form both plugins store); an older panel's
    separate ``server_url``/``token``/``autostart`` entries are read when there is none yet."""
    try:
        data = json.loads(store.read("server_settings", ""))
    except ValueError:
        data = None
    if isinstance(data, dict):
        return client.server.ServerSettings.from_dict(data)
    out = client.server.ServerSettings.from_dict(
        {
            "autostart": store.read("autostart", "true").lower() != "false",
            "server": store.read("server_url", DEFAULT_URL) or DEFAULT_URL,
        }
    )
    token = store.read("token", "")
    if token:
        out.remember(out.url, token)
    return out


def save_connection(store: Store, conn: client.server.ServerSettings) -> None:
    store.write("server_settings", json.dumps(conn.to_dict()))


def load_job_settings(store: Store) -> Settings:
    try:
        data = json.loads(store.read("job_settings", "{}"))
    except ValueError:
        data = {}
    return Settings.from_dict(data if isinstance(data, dict) else {})


def save_job_settings(store: Store, settings: Settings) -> None:
    store.write("job_settings", json.dumps(settings.to_dict()))


def load_fixed_seed(store: Store) -> int:
    """The seed the panel's seed field shows (kept while "Random" is ticked, when ``Settings.seed`` is -1)."""
    try:
        return max(0, int(store.read("fixed_seed", "0")))
    except ValueError:
        return 0


def save_fixed_seed(store: Store, seed: int) -> None:
    store.write("fixed_seed", str(int(seed)))
