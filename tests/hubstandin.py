"""A local stand-in for the Hugging Face hub, shared by the download tests (``test_downloads``, ``test_pulls``, the host
tests): it serves what huggingface_hub's ``get_hf_file_metadata`` and ``http_get`` ask for: ``HEAD`` and
``GET /{repo}/resolve/{revision}/{file}`` with ``X-Repo-Commit``, ``ETag`` (sha256 for large files, git blob sha1
for small ones, as the hub does), ``Content-Length`` and HTTP ``Range`` answers (206 + ``Content-Range``). It can cut
a connection half-way through a file, hold it half-way until told to go on, and it records every request.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub:
    """A tiny hub on 127.0.0.1: ``files[(repo, path)] = bytes``; ``cut[(repo, path)] = n`` sends only n bytes of the
    first GET and closes the connection; ``pause[(repo, path)] = n`` sends n bytes of the next GET, then waits for
    ``resume`` (an Event) before the rest; ``etags`` overrides the ETag served."""

    def __init__(self) -> None:
        self.files: Dict[Tuple[str, str], bytes] = {}
        self.cut: Dict[Tuple[str, str], int] = {}
        self.etags: Dict[Tuple[str, str], str] = {}
        self.requests: List[Tuple[str, str, Optional[str]]] = []
        self.pause: Dict[Tuple[str, str], int] = {}
        self.resume = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _lookup(self) -> Optional[Tuple[Tuple[str, str], bytes]]:
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                key = ("/".join(parts[:2]), "/".join(parts[4:]))
                return (key, hub.files[key]) if key in hub.files else None

            def _headers(self, key: Tuple[str, str], data: bytes, status: int, length: int, extra=()) -> None:
                self.send_response(status)
                etag = hub.etags.get(key) or (hashlib.sha256(data).hexdigest() if len(data) > 1000 else git_sha1(data))
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(length))
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()

            def _missing(self) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:
                hub.requests.append(("HEAD", self.path, None))
                found = self._lookup()
                if found is None:
                    return self._missing()
                key, data = found
                self._headers(key, data, 200, len(data))

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                hub.requests.append(("GET", self.path, rng))
                found = self._lookup()
                if found is None:
                    return self._missing()
                key, data = found
                start = int(rng.split("=", 1)[1].split("-", 1)[0]) if rng else 0
                if start:
                    self._headers(
                        key,
                        data,
                        206,
                        len(data) - start,
                        [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")],
                    )
                else:
                    self._headers(key, data, 200, len(data))
                if key in hub.cut:
                    self.wfile.write(data[start : start + hub.cut.pop(key)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if key in hub.pause:
                    n = hub.pause.pop(key)
                    self.wfile.write(data[start : start + n])
                    self.wfile.flush()
                    hub.resume.wait(60)
                    start += n
                self.wfile.write(data[start:])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for the serving loop to look at its flag: every 50 ms, not the default 0.5 s per hub
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._dir = tempfile.TemporaryDirectory(prefix="hubstandin-")
        self.catalogue = unpinned_catalogue(Path(self._dir.name) / "catalogue.json")
        # what a server process needs to download from this stand-in (its files are test bytes, not the pinned ones)
        self.env = {"HF_ENDPOINT": self.url, "HF_HUB_OFFLINE": "0", "PAINTBRIDGE_CATALOGUE": str(self.catalogue)}

    def __enter__(self) -> "Hub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._dir.cleanup()


def unpinned_catalogue(dest: Path) -> Path:
    """A copy of the shipped catalogue with every file's pin (sha256, size) dropped, for tests whose stand-in hub
    serves made-up bytes under the catalogue's names (pins themselves are tested in test_pins)."""
    from server.downloads.catalogue import CATALOGUE_PATH

    data = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))
    for entry in data["files"].values():
        entry.update(sha256=None, size=None, unpinned="served by the test stand-in hub")
    dest.write_text(json.dumps(data), encoding="utf-8")
    return dest


@pytest.fixture
def hub(monkeypatch):
    """A running stand-in with ``HF_ENDPOINT`` pointing at it (and huggingface_hub's offline switch off)."""
    import huggingface_hub.constants

    with Hub() as running:
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        monkeypatch.setenv("PAINTBRIDGE_CATALOGUE", str(running.catalogue))
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest sets HF_HUB_OFFLINE=1
        yield running
        running.resume.set()


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that are not a repeating short pattern."""
    return bytes((i * 7 + seed) % 251 for i in range(size))
