"""Talking to the server for one procedure run: connect (starting a local server when the install recorded how),
run the job while feeding progress to a callback, and turn every failure into a message for the user (no GIMP needed).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from protocol.client import Client, ConnectionFailed, JobCancelled, JobFailed
from protocol.errors import ProtocolError
from protocol.messages import Message, ResultLayer

from . import __version__
from .errors import Cancelled, JobError, ServerUnavailable
from .settings import is_local

CLIENT_NAME = "paintbridge-gimp"
START_TIMEOUT = 180.0  # a first start may import torch and scan model folders

StatusFn = Callable[[Optional[float], Optional[str]], None]


def describe_event(msg: Union[Message, dict]) -> Tuple[Optional[float], Optional[str]]:
    """(progress fraction or None, status text or None) for one job event."""
    if isinstance(msg, Message):
        msg = msg.to_wire()
    kind = msg.get("type")
    if kind == "queued":
        ahead = int(msg.get("position") or 0)
        return 0.0, f"Waiting for the server: {ahead} job{'s' if ahead != 1 else ''} ahead" if ahead else "Queued"
    if kind == "started":
        return 0.0, "Running on the server"
    if kind == "progress":
        total = max(1, int(msg.get("total") or 1))
        step = min(total, max(0, int(msg.get("step") or 0)))
        return step / total, f"Step {step} of {total}"
    if kind == "result":
        return 1.0, "Inserting the result"
    return None, None


def unavailable_message(url: str, reason: str) -> str:
    return (f"Cannot reach the Paintbridge server at {url} ({reason}). Start it with 'paintbridge serve' "
            "(or run install.py) and try again, or check the Server address in the dialog.")


def _reason(err: Exception) -> str:
    text = str(err)
    marker = ": "
    return text.split(marker, 1)[1] if text.startswith("cannot reach") and marker in text else text


def start_local_server(command: Sequence[str], url: str, log_path: Path) -> subprocess.Popen:
    """Start ``command --host H --port P`` for ``url`` in its own session, so it outlives this plug-in."""
    parts = urlsplit(url)
    argv = list(command) + ["--host", parts.hostname or "127.0.0.1", "--port", str(parts.port or 7860)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    except OSError as err:
        raise ServerUnavailable(f"Could not start the Paintbridge server with {' '.join(argv)}: {err}") from err
    finally:
        log.close()


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def connect(
    url: str,
    token: Optional[str],
    server_command: Optional[Sequence[str]] = None,
    log_path: Optional[Path] = None,
    on_status: Optional[StatusFn] = None,
    start_timeout: float = START_TIMEOUT,
) -> Client:
    """A connected client. A local server that is down is started with ``server_command`` when one is given."""
    client = Client(url, client_name=CLIENT_NAME, client_version=__version__, token=token, open_timeout=5.0)
    try:
        _handshake(client)
        return client
    except ConnectionFailed as err:
        if not server_command or not is_local(url):
            raise ServerUnavailable(unavailable_message(url, _reason(err))) from None
        first_error = err
    log_path = log_path or Path(os.path.expanduser("~")) / "paintbridge-server.log"
    if on_status:
        on_status(None, "Starting the Paintbridge server (the first start takes a while)")
    proc = start_local_server(server_command, url, log_path)
    client.server_process = proc  # type: ignore[attr-defined]  # lets a caller (or a test) stop it
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(
                f"The Paintbridge server did not start (exit status {proc.returncode}). Its log {log_path} ends "
                f"with:\n{_tail(log_path)}")
        time.sleep(0.5)
        try:
            _handshake(client)
            return client
        except ConnectionFailed:
            continue
    raise ServerUnavailable(unavailable_message(url, f"{_reason(first_error)}; started it, but it did not answer "
                                                     f"within {start_timeout:.0f} s: see {log_path}"))


def _handshake(client: Client) -> None:
    try:
        client.connect()
    except JobFailed as err:
        client.close()
        hint = " Check the Token." if err.code == "unauthorized" else ""
        raise JobError(err.code, f"The Paintbridge server at {client.url} refused the connection: {err}.{hint}") \
            from None
    except ProtocolError as err:
        client.close()
        raise JobError(err.code, f"The Paintbridge server at {client.url} cannot be used: {err.message}") from None


def run_job(
    client: Client,
    job: dict,
    on_status: Optional[StatusFn] = None,
    timeout: Optional[float] = None,
) -> Tuple[List[ResultLayer], dict]:
    """Run ``job`` to its end: (result layers, the parameters the server used). Failures raise PaintbridgeError."""

    def on_event(msg: Message) -> None:
        if on_status is not None:
            fraction, text = describe_event(msg)
            if fraction is not None or text is not None:
                on_status(fraction, text)

    try:
        result = client.run(job, on_event=on_event, timeout=timeout)
    except JobFailed as err:
        where = f" (field '{err.field}')" if err.field else ""
        raise JobError(err.code, f"The Paintbridge server could not do this job{where}: {err}") from None
    except JobCancelled:
        raise Cancelled("The job was cancelled.") from None
    except ConnectionFailed as err:
        raise ServerUnavailable(f"The connection to the Paintbridge server broke off during the job: {err}") from None
    except TimeoutError as err:
        raise ServerUnavailable(f"The Paintbridge server did not finish the job: {err}") from None
    layers = list(result.layers)  # validated when the message was parsed
    if not layers:
        raise JobError("internal", "The server finished the job but sent no layer back.")
    return layers, dict(result.params)


def fetch_models(url: str, token: Optional[str], timeout: float = 2.0) -> Optional[List[dict]]:
    """The server's model listing, or None when it does not answer within ``timeout`` (for dialog hints only)."""
    client = Client(url, client_name=CLIENT_NAME, client_version=__version__, token=token, open_timeout=timeout)
    try:
        welcome = client.connect()
        return [dict(m) for m in welcome.models]
    except (ConnectionFailed, JobFailed, ProtocolError, TimeoutError, OSError):
        return None
    finally:
        client.close()
