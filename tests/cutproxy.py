"""A TCP proxy on loopback that drops one connection mid-job, for the real-host tests of resuming a session.

``CuttingProxy(target_port)`` forwards every connection to ``127.0.0.1:target_port``. The first connection whose
client has sent more than ``after_bytes`` (a job frame with pixels; a ``hello`` is far smaller) is cut at the server's
next answer (its ``queued``): that answer is not forwarded, and both sides see the connection end without a close
frame, like a dropped network. The server then holds the job for the session; later connections (the plugin's
reconnect) are forwarded untouched.
"""

from __future__ import annotations

import socket
import threading
from typing import List


class CuttingProxy:
    """Forward loopback connections to ``target_port``; cut the first one that carries a job, once."""

    def __init__(self, target_port: int, after_bytes: int = 4096) -> None:
        self.target_port = target_port
        self.after_bytes = after_bytes
        self.connections = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: List[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="cutproxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            state = {"sent": 0, "cut": False}
            threading.Thread(target=self._pump, args=(client, upstream, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, from_client: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data or state["cut"]:
                break
            if from_client:
                state["sent"] += len(data)
            else:
                with self._lock:
                    cut_now = self.cuts == 0 and state["sent"] > self.after_bytes
                    if cut_now:
                        self.cuts += 1
                if cut_now:
                    state["cut"] = True
                    break
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def __enter__(self) -> "CuttingProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
