"""Panel settings kept in Krita's own configuration (``kritarc``, group ``paintbridge``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from krita import Krita  # type: ignore

from .jobs import Settings

GROUP = "paintbridge"
DEFAULT_URL = "ws://127.0.0.1:7860"


@dataclass
class ConnectionSettings:
    url: str = DEFAULT_URL
    token: str = ""
    autostart: bool = True


def _read(key: str, default: str) -> str:
    value = Krita.instance().readSetting(GROUP, key, default)
    return value if isinstance(value, str) else default


def load_connection() -> ConnectionSettings:
    return ConnectionSettings(
        url=_read("server_url", DEFAULT_URL) or DEFAULT_URL,
        token=_read("token", ""),
        autostart=_read("autostart", "true").lower() != "false",
    )


def save_connection(conn: ConnectionSettings) -> None:
    app = Krita.instance()
    app.writeSetting(GROUP, "server_url", conn.url)
    app.writeSetting(GROUP, "token", conn.token)
    app.writeSetting(GROUP, "autostart", "true" if conn.autostart else "false")


def load_job_settings() -> Settings:
    try:
        data = json.loads(_read("job_settings", "{}"))
    except ValueError:
        data = {}
    return Settings.from_dict(data if isinstance(data, dict) else {})


def save_job_settings(settings: Settings) -> None:
    Krita.instance().writeSetting(GROUP, "job_settings", json.dumps(settings.to_dict()))
