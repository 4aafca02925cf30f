"""Panel settings as stored in the host's configuration (Krita: ``kritarc``, group ``paintbridge``), without Krita.

The storage itself is a ``Store``: two calls, ``read(key, default) -> str`` and ``write(key, value)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from .jobs import Settings

DEFAULT_URL = "ws://127.0.0.1:7860"


class Store(Protocol):
    def read(self, key: str, default: str) -> str: ...
    def write(self, key: str, value: str) -> None: ...


class MemoryStore:
    """A ``Store`` kept in a dict (tests, and a host without persistent settings)."""

    def __init__(self, values: dict | None = None) -> None:
        self.values = dict(values or {})

    def read(self, key: str, default: str) -> str:
        value = self.values.get(key, default)
        return value if isinstance(value, str) else default

    def write(self, key: str, value: str) -> None:
        self.values[key] = value


@dataclass
class ConnectionSettings:
    url: str = DEFAULT_URL
    token: str = ""
    autostart: bool = True


def load_connection(store: Store) -> ConnectionSettings:
    return ConnectionSettings(
        url=store.read("server_url", DEFAULT_URL) or DEFAULT_URL,
        token=store.read("token", ""),
        autostart=store.read("autostart", "true").lower() != "false",
    )


def save_connection(store: Store, conn: ConnectionSettings) -> None:
    store.write("server_url", conn.url)
    store.write("token", conn.token)
    store.write("autostart", "true" if conn.autostart else "false")


def load_job_settings(store: Store) -> Settings:
    try:
        data = json.loads(store.read("job_settings", "{}"))
    except ValueError:
        data = {}
    return Settings.from_dict(data if isinstance(data, dict) else {})


def save_job_settings(store: Store, settings: Settings) -> None:
    store.write("job_settings", json.dumps(settings.to_dict()))
