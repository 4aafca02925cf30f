"""Server configuration: where to listen, who may connect, where the models are, what limits apply."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from protocol import Limits
from protocol.addresses import is_loopback_host

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def default_models_dir() -> Path:
    """``$PAINTBRIDGE_MODELS``, else ``$XDG_DATA_HOME/paintbridge/models`` (``~/.local/share/paintbridge/models``)."""
    env = os.environ.get("PAINTBRIDGE_MODELS")
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "paintbridge" / "models"


def default_styles_dir() -> Path:
    """``$PAINTBRIDGE_STYLES``, else ``$XDG_DATA_HOME/paintbridge/styles`` (``~/.local/share/paintbridge/styles``):
    the styles the user saved, one JSON file each (README, *Styles*)."""
    env = os.environ.get("PAINTBRIDGE_STYLES")
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "paintbridge" / "styles"


def default_cache_dir() -> Path:
    """``$PAINTBRIDGE_CACHE``, else ``$XDG_CACHE_HOME/paintbridge`` (``~/.cache/paintbridge``; on Windows
    ``%LOCALAPPDATA%\\paintbridge``): what the server measures once per machine (``calibration.py``)."""
    env = os.environ.get("PAINTBRIDGE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
    return Path(base or Path.home() / ".cache") / "paintbridge"


is_loopback = is_loopback_host


MIN_OUTBOX_BYTES = 64 * 1024

DTYPES = ("float16", "bfloat16", "float32")
DTYPE_ENV = "PAINTBRIDGE_DTYPE"  # the dtype when --dtype is not given (unset: measured per machine)


@dataclass
class ServerConfig:
    """Everything the server needs to start; ``validate`` refuses unsafe combinations."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: Optional[str] = None
    model_dirs: List[Path] = field(default_factory=lambda: [default_models_dir()])
    styles_dir: Path = field(default_factory=default_styles_dir)
    limits: Limits = field(default_factory=Limits)
    device: Optional[str] = None
    dtype: Optional[str] = None
    recalibrate: bool = False  # measure the dtypes again at start, though this machine has a cached calibration
    allow_pickle: bool = False
    handshake_timeout: float = 10.0
    grace: float = 300.0  # s a dropped client's jobs are kept for its reconnect (live frames are not)
    preload: bool = False  # load the default checkpoint in the background at start, so the first job is warm
    allow_origins: List[str] = field(default_factory=list)  # browser origins allowed to connect (none by default)
    allow_hosts: List[str] = field(default_factory=list)  # extra names the Host header may carry
    # unsent bytes a client may fall behind by: beyond them its next job waits until it has read them (it is not
    # disconnected for results; more than this of other messages, answers it asked for and does not read, does)
    max_outbox_bytes: int = 256 * 1024 * 1024
    write_timeout: float = 60.0  # s a client may read nothing while the server has something for it (then disconnected)
    guess_delay: float = 0.25  # s the first wrong token delays its address's next check (doubling, capped)
    guess_delay_max: float = 8.0
    shared_memory: bool = True  # offer payloads through a shared folder to clients on this machine

    def __post_init__(self) -> None:
        if self.dtype is None:  # a service manager's (or a test suite's) setting; --dtype wins
            self.dtype = os.environ.get(DTYPE_ENV) or None
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} (--dtype or ${DTYPE_ENV}) is not one of {', '.join(DTYPES)}")

    def validate(self) -> None:
        """Raise ValueError when the server must not start as configured."""
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"refusing to listen on {self.host} without a token: any other machine could use this server. "
                "Pass --token SECRET (clients then send it in 'hello'), or listen on 127.0.0.1."
            )
        if self.token is not None and len(self.token) < 8:
            raise ValueError("the token is too short: use at least 8 characters")
        if self.grace < 0:
            raise ValueError(f"the grace period must not be negative, got {self.grace:g} s")
        if self.write_timeout <= 0:
            raise ValueError(f"the write timeout must be positive, got {self.write_timeout:g} s")
        if self.max_outbox_bytes < MIN_OUTBOX_BYTES:
            raise ValueError(
                f"max_outbox_bytes must be at least {MIN_OUTBOX_BYTES} (a welcome and a few answers), "
                f"got {self.max_outbox_bytes}"
            )
        for origin in self.allow_origins:
            if "://" not in origin or origin.rstrip("/").count("/") > 2:
                raise ValueError(f"--allow-origin takes an origin like http://localhost:3000, got {origin!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not between 0 and 65535")
