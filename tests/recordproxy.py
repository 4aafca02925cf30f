"""A websocket proxy on loopback that records every ``job`` message on its way to the server, for real-host tests
that check what a plugin sent (e.g. a reference's mask): ``RecordingProxy(server_url)``; point the plugin at its
``url``; ``jobs`` holds each job as the server receives it (the decoded msgpack map), in order.

Messages pass through unchanged in both directions (one websocket message in, the same message out)."""

from __future__ import annotations

import threading
from typing import List

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve

from protocol.codec import decode


class RecordingProxy:
    """Forward websocket connections to ``target_url``; keep a decoded copy of every ``job`` a client sends."""

    def __init__(self, target_url: str) -> None:
        self.target_url = target_url
        self.jobs: List[dict] = []
        self._lock = threading.Lock()
        self._server = serve(self._handle, "127.0.0.1", 0, max_size=None, compression=None)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, name="recordproxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _handle(self, downstream) -> None:
        with connect(self.target_url, max_size=None, compression=None, open_timeout=30) as upstream:
            back = threading.Thread(target=self._pump, args=(upstream, downstream, False), daemon=True)
            back.start()
            self._pump(downstream, upstream, True)
            back.join(timeout=5)

    def _pump(self, src, dst, from_client: bool) -> None:
        try:
            for message in src:
                if from_client and isinstance(message, bytes):
                    try:
                        msg = decode(message)
                    except Exception:  # noqa: BLE001 - not ours to judge: the server answers it
                        msg = None
                    if isinstance(msg, dict) and msg.get("type") == "job":
                        with self._lock:
                            self.jobs.append(msg)
                dst.send(message)
        except ConnectionClosed:
            pass
        finally:
            dst.close()

    def job(self, job_id: str) -> dict:
        """The job the server received as ``job_id`` (KeyError names it when none arrived)."""
        with self._lock:
            found = [j for j in self.jobs if j.get("id") == job_id]
        if not found:
            raise KeyError(f"no job {job_id!r} reached the server; {len(self.jobs)} job(s) did")
        return found[-1]

    def close(self) -> None:
        self._server.shutdown()
