"""Start and stop the local Paintbridge server as ``install.py`` recorded it in ``server.json`` (no terminal needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlsplit

SERVER_FILE = Path(__file__).resolve().parent / "server.json"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
READY_MARK = "listening on"
# Variables a host application sets for its own embedded Python; the server's Python must not inherit them.
_HOST_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE")


def _die_with_parent() -> None:
    """In the child, before exec (Linux): ask the kernel to stop the server when Krita goes away, even on a crash."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ServerStartError(RuntimeError):
    """The local server could not be started; the message says why."""


def recorded_command(path: Path = SERVER_FILE) -> Optional[List[str]]:
    """The server command install.py recorded, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    command = data.get("command") if isinstance(data, dict) else None
    if isinstance(command, list) and command and all(isinstance(p, str) and p for p in command):
        return command
    return None


def local_address(url: str) -> Optional[tuple]:
    """(host, port) when ``url`` points at this machine, else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("ws", "wss") or parts.hostname not in LOCAL_HOSTS or not port:
        return None
    return parts.hostname, port


class LocalServer:
    """A server process this plugin started; its output is kept for error messages."""

    def __init__(self, command: Optional[List[str]] = None) -> None:
        self.command = command if command is not None else recorded_command()
        self.process: Optional[subprocess.Popen] = None
        self.ready = threading.Event()
        self.output: deque = deque(maxlen=40)
        self.started_at = 0.0

    @property
    def available(self) -> bool:
        return bool(self.command)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    def start(self, url: str, token: Optional[str] = None) -> None:
        """Start the server for ``url`` (must be a local ws:// address); returns without waiting for it."""
        if not self.command:
            raise ServerStartError("install.py did not record a server command: run install.py again")
        address = local_address(url)
        if address is None:
            raise ServerStartError(f"{url} is not a local address; start that server on its own machine")
        if self.running:
            return
        host, port = address
        args = list(self.command) + ["--host", "127.0.0.1" if host == "localhost" else host, "--port", str(port)]
        if token:
            args += ["--token", token]
        env = {k: v for k, v in os.environ.items() if k not in _HOST_PYTHON_VARS}
        env["PYTHONUNBUFFERED"] = "1"
        self.ready.clear()
        self.output.clear()
        try:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, text=True, errors="replace",
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError as err:
            raise ServerStartError(f"cannot start the server ({args[0]}): {err}") from err
        self.started_at = time.monotonic()
        threading.Thread(target=self._read_output, args=(self.process,), name="paintbridge-server-log",
                         daemon=True).start()

    def _read_output(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.output.append(line.rstrip())
            if READY_MARK in line:
                self.ready.set()

    def wait_ready(self, timeout: float) -> bool:
        """Block until the server listens (True), exits or ``timeout`` passes (False). Not for the UI thread."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.wait(0.1):
                return True
            if not self.running:
                return self.ready.is_set()
        return False

    def last_output(self, lines: int = 6) -> str:
        return "\n".join(list(self.output)[-lines:])

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
