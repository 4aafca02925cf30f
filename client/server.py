"""The local server: address rules, the one recorded start command, and a launcher with a back-off.

- ``normalise_url(text)``: ``ws://host:port`` from what a painter typed (``host``, ``host:port``, ``ws://...``).
- ``is_local(url)``: the address is this machine (127.0.0.0/8, ::1, ``localhost``) — the only servers a plugin starts.
- ``server.json`` ``{"command": [...]}`` in the plugin folder: how to start the server, written by both installers
  (``pbsetup.plugins.record_server_command``); the launcher adds ``--host``/``--port`` (and ``--token``).
- ``LocalServer``: starts that command (output to a log file), says when it listens, stops it.
- ``Autostart``: at most one start per pause, and none after a few starts that never reached a welcome.
- ``ServerSettings``: the remembered address, tokens (kept per address, so a token never travels to another server)
  and autostart switch, in the one stored form both plugins keep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from .errors import AddressError, ServerStartError
from .wire import protocol

DEFAULT_PORT = 7860
DEFAULT_URL = f"ws://127.0.0.1:{DEFAULT_PORT}"
SERVER_FILE = "server.json"
READY_MARK = "listening on"
# Variables a host application sets for its own embedded Python; the server's Python must not inherit them.
HOST_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE")


# --- addresses -------------------------------------------------------------------------------------------------------


def normalise_url(text: str) -> str:
    """``ws://host:port[/path]`` from ``host``, ``host:port``, ``ws://...`` or ``wss://...``; AddressError otherwise."""
    text = text.strip()
    if not text:
        raise AddressError(f"The server address is empty; the local server's address is {DEFAULT_URL}")
    if "://" not in text:
        text = "ws://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise AddressError(f"The server address {text!r} is not valid ({err}); it looks like {DEFAULT_URL}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise AddressError(f"The server address {text!r} is not valid: it looks like {DEFAULT_URL} (ws:// or wss://)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port or DEFAULT_PORT}{parts.path.rstrip('/')}"


def host_port(url: str) -> Tuple[str, int]:
    """(host, port) of a server address (normalised first)."""
    parts = urlsplit(normalise_url(url))
    return parts.hostname or "", parts.port or DEFAULT_PORT


def is_local(url: str) -> bool:
    """Whether ``url`` points at this machine: a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    try:
        host, _port = host_port(url)
    except AddressError:
        return False
    return protocol.is_loopback_host(host)


# --- the recorded command --------------------------------------------------------------------------------------------


def read_server_command(plugin_dir: Path) -> Optional[List[str]]:
    """The command the installer recorded in ``plugin_dir/server.json`` (None when there is none or unreadable)."""
    try:
        data = json.loads((Path(plugin_dir) / SERVER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    command = data.get("command") if isinstance(data, dict) else None
    if isinstance(command, list) and command and all(isinstance(p, str) and p for p in command):
        return list(command)
    return None


def launch_args(command: Sequence[str], url: str, token: Optional[str] = None) -> List[str]:
    """The full argument list that starts ``command`` listening on ``url``'s (local) address."""
    host, port = host_port(url)
    if not is_local(url):
        raise ServerStartError(f"{url} is not a local address; start that server on its own machine")
    args = list(command) + ["--host", "127.0.0.1" if host.lower() == "localhost" else host, "--port", str(port)]
    if token:
        args += ["--token", token]
    return args


# --- the launcher ----------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In the child, before exec (Linux): the kernel stops the server when the editor goes away, even on a crash."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort: a system without prctl starts the server all the same
        pass


class LocalServer:
    """A server process this plugin started; its output goes to ``log_path``.

    ``outlive=True`` (GIMP, whose plug-in process ends after each run) leaves the server running after the plugin's
    process ends; otherwise (Krita) the server stops with the editor.
    """

    def __init__(self, command: Optional[Sequence[str]], log_path: Path, outlive: bool = False) -> None:
        self.command = list(command) if command else None
        self.log_path = Path(log_path)
        self.outlive = outlive
        self.process: Optional[subprocess.Popen] = None
        self._log_start = 0

    @property
    def available(self) -> bool:
        return bool(self.command)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, url: str, token: Optional[str] = None) -> None:
        """Start the server for ``url`` (a local address); returns at once (``wait_ready`` waits)."""
        if not self.command:
            raise ServerStartError(
                "The installer recorded no server command: run install.py again, or start the "
                "server yourself with 'paintbridge serve'"
            )
        if self.running:
            return
        args = launch_args(self.command, url, token)
        env = {k: v for k, v in os.environ.items() if k not in HOST_PYTHON_VARS}
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()
            try:
                self.process = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                    preexec_fn=None if self.outlive or not sys.platform.startswith("linux") else _die_with_parent,
                )
            except OSError as err:
                raise ServerStartError(f"Could not start the Paintbridge server with {' '.join(args)}: {err}") from err

    def output(self) -> str:
        """What the server printed since this start."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def last_output(self, lines: int = 8) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    @property
    def ready(self) -> bool:
        """The server said it listens."""
        return READY_MARK in self.output()

    def wait_ready(self, timeout: float, poll: float = 0.2) -> bool:
        """Block until the server listens (True), or it exits or ``timeout`` passes (False). Not for a UI thread."""
        deadline = time.monotonic() + timeout
        while True:
            if self.ready:
                return True
            if not self.running or time.monotonic() >= deadline:
                return self.ready
            time.sleep(poll)

    def failure(self) -> str:
        """A message for a server that exited: its status and the end of its log."""
        code = self.process.poll() if self.process is not None else None
        return (
            f"The Paintbridge server did not start (exit status {code}). Its log {self.log_path} ends with:\n"
            f"{self.last_output()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (kill it if it does not stop within ``timeout``)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class Autostart:
    """When to (re)start the local server after a failed connection: at most once per ``pause`` seconds, and no
    more after ``tries`` starts that never reached a welcome (a broken install would otherwise restart for ever)."""

    def __init__(self, pause: float = 20.0, tries: int = 3) -> None:
        self.pause = pause
        self.tries = tries
        self.failures = 0
        self._last: Optional[float] = None

    def should_start(self, now: float) -> bool:
        """Whether to start now; counts the start when it says yes."""
        if self.failures >= self.tries or (self._last is not None and now - self._last < self.pause):
            return False
        self._last = now
        self.failures += 1
        return True

    @property
    def given_up(self) -> bool:
        return self.failures >= self.tries

    def welcomed(self) -> None:
        """A connection succeeded: the server works, start counting afresh."""
        self.failures = 0
        self._last = None


# --- remembered server settings --------------------------------------------------------------------------------------


@dataclass
class ServerSettings:
    """Which server a plugin talks to, remembered between sessions."""

    url: str = DEFAULT_URL
    tokens: Dict[str, str] = field(default_factory=dict)  # normalised address -> token
    autostart: bool = True  # start the recorded local server when a local address does not answer

    def token_for(self, url: str) -> Optional[str]:
        """The token remembered for ``url`` (None when there is none)."""
        try:
            return self.tokens.get(normalise_url(url)) or None
        except AddressError:
            return None

    def target(self, server: str = "", token: str = "") -> Tuple[str, Optional[str]]:
        """(url, token) to connect to: the given ones, else the remembered ones (the token of that address)."""
        url = normalise_url(server) if server.strip() else normalise_url(self.url or DEFAULT_URL)
        return url, token.strip() or self.token_for(url)

    def remember(self, url: str, token: Optional[str]) -> None:
        """Remember an address (and its token) that was used successfully."""
        self.url = normalise_url(url)
        if token:
            self.tokens[self.url] = token

    def to_dict(self) -> Dict[str, Any]:
        return {"server": self.url, "tokens": dict(self.tokens), "autostart": self.autostart}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ServerSettings":
        """The stored form back; anything unreadable falls back to the default."""
        out = cls()
        if not isinstance(data, Mapping):
            return out
        try:
            out.url = normalise_url(str(data.get("server") or DEFAULT_URL))
        except AddressError:
            pass
        tokens = data.get("tokens")
        if isinstance(tokens, Mapping):
            out.tokens = {str(k): v for k, v in tokens.items() if isinstance(v, str) and v}
        if isinstance(data.get("autostart"), bool):
            out.autostart = data["autostart"]
        return out
