"""What the installer reads from the machine, in one object that tests replace (no monkeypatching of the stdlib)."""

from __future__ import annotations

import os
import platform as _platform
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence


def _run_output(cmd: Sequence[str]) -> Optional[str]:
    """stdout of ``cmd`` (stderr appended), or None when the program is missing, fails or hangs."""
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout + out.stderr


def url_reachable(url: str, timeout: float = 8.0) -> bool:
    """True when ``url`` answers at all (any HTTP status counts: the host is there)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _free_bytes(path: Path) -> int:
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


@dataclass
class System:
    """The machine as the installer sees it. Every field has the real default; tests pass fakes.

    ``platform`` is ``sys.platform``'s spelling (``linux``, ``win32``, ``darwin``); ``machine`` is
    ``platform.machine()``; ``root`` is where system-wide paths (``/snap``, ``/Applications``) are looked up.
    """

    platform: str = sys.platform
    machine: str = field(default_factory=_platform.machine)
    home: Path = field(default_factory=Path.home)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    root: Path = Path("/")
    which: Callable[[str], Optional[str]] = shutil.which
    output: Callable[[Sequence[str]], Optional[str]] = _run_output
    reachable: Callable[[str], bool] = url_reachable
    free_bytes: Callable[[Path], int] = _free_bytes

    @property
    def windows(self) -> bool:
        return self.platform == "win32"

    @property
    def macos(self) -> bool:
        return self.platform == "darwin"

    def env_path(self, name: str, default: Path) -> Path:
        """``$name`` as a path when set and not empty, else ``default``."""
        value = self.environ.get(name)
        return Path(value) if value else default

    def data_home(self) -> Path:
        """Where Paintbridge keeps its data (models, the install record): the server's rule, ``$XDG_DATA_HOME`` or
        ``~/.local/share``, on every system."""
        return self.env_path("XDG_DATA_HOME", self.home / ".local" / "share")

    def config_home(self) -> Path:
        return self.env_path("XDG_CONFIG_HOME", self.home / ".config")

    def appdata(self) -> Path:
        """Windows' roaming application data folder."""
        return self.env_path("APPDATA", self.home / "AppData" / "Roaming")

    def local_appdata(self) -> Path:
        return self.env_path("LOCALAPPDATA", self.home / "AppData" / "Local")

    def app_support(self) -> Path:
        """macOS' per-user ``Application Support`` folder."""
        return self.home / "Library" / "Application Support"

    def system_path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


def models_dir(system: System) -> Path:
    """The models folder the server uses by default (``$PAINTBRIDGE_MODELS`` or ``<data>/paintbridge/models``)."""
    return system.env_path("PAINTBRIDGE_MODELS", system.data_home() / "paintbridge" / "models")


def record_path(system: System) -> Path:
    """The install record: ``<data>/paintbridge/install-record.json``."""
    return system.data_home() / "paintbridge" / "install-record.json"
