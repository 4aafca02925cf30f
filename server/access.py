"""Who may open a connection, decided in the HTTP handshake before any websocket message.

- ``Origin``: browsers send it on every websocket; native clients (the plugins, the CLI) send none. A connection with an
  ``Origin`` is refused unless the user allowed that origin (``paintbridge serve --allow-origin``), so no web page can
  drive the server (cross-site websocket hijacking). ``Origin: null`` (sandboxed frames, files) is always refused.
- ``Host``: must name the address the server listens on or a loopback name, with or without a port, so a page that
  rebinds its own host name to 127.0.0.1 (DNS rebinding) is refused. On a wildcard address (``0.0.0.0``, ``::``) any
  IP literal and this machine's host name pass; other names need ``--allow-host``.

``GuessThrottle`` slows token guesses down per client address: each wrong token doubles the delay before that address's
next token is checked (capped), and guesses from one address are checked one at a time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Set

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def split_host(value: str) -> str:
    """The host part of a ``Host`` header (``name``, ``name:port``, ``[v6]``, ``[v6]:port``), lower-case, without
    brackets; "" when it is malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not _is_port(value[end + 1 :])):
            return ""
        return value[1:end]
    name, sep, port = value.rpartition(":")
    if sep and _is_port(":" + port):
        return name
    return "" if ":" in value else value


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isascii() and text[1:].isdigit() and len(text) <= 6


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _name(host: str) -> str:
    """A host name or address in one comparable form: lower case, IP addresses compressed, no brackets."""
    host = host.strip().lower()
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return host


def _origin_key(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


@dataclass
class AccessRules:
    """The handshake's Origin and Host rules for a server listening on ``listen_host``."""

    listen_host: str
    allow_origins: Iterable[str] = ()
    allow_hosts: Iterable[str] = ()
    _origins: Set[str] = field(init=False, repr=False)
    _hosts: Set[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._origins = {_origin_key(o) for o in self.allow_origins}
        listen = _name(self.listen_host)
        self._hosts = set(LOOPBACK_NAMES) | {_name(h) for h in self.allow_hosts}
        self._wildcard = listen in WILDCARD_HOSTS
        if self._wildcard:
            machine = socket.gethostname().lower()
            self._hosts |= {machine, machine.split(".")[0], machine.split(".")[0] + ".local"}
        else:
            self._hosts.add(listen)

    def refusal(self, origins: list, hosts: list) -> Optional[str]:
        """Why a handshake with these ``Origin`` and ``Host`` header values is refused, or None when it may go on."""
        if len(hosts) != 1:
            return "the request must carry exactly one Host header"
        host = _name(split_host(hosts[0]))
        if not host:
            return f"malformed Host header {hosts[0]!r}"
        if host not in self._hosts and not (self._wildcard and _is_ip(host)):
            return (
                f"Host {hosts[0]!r} is not an address of this server (possible DNS rebinding); connect to "
                f"{self.listen_host} or localhost, or start the server with --allow-host {host}"
            )
        if len(origins) > 1:
            return "the request carries more than one Origin header"
        if origins and _origin_key(origins[0]) == "null":
            return (
                "browser pages may not use this server: Origin 'null' (a sandboxed page or a local file) is "
                "never allowed"
            )
        if origins and _origin_key(origins[0]) not in self._origins:
            return (
                f"browser pages may not use this server: Origin {origins[0]!r} is not allowed (start the server "
                f"with --allow-origin {origins[0]} to allow it)"
            )
        return None


class GuessThrottle:
    """Per-address back-off for wrong tokens: after ``n`` wrong tokens in a row the address waits
    ``delay(n) = min(maximum, base * 2 ** (n - 1))`` s before its next token is checked; checks from one address run one
    at a time, so parallel connections do not multiply the rate. A right token resets the address."""

    def __init__(self, base: float = 0.25, maximum: float = 8.0, forget_after: float = 600.0) -> None:
        self.base = base
        self.maximum = maximum
        self.forget_after = forget_after
        self._failures: Dict[str, int] = {}
        self._not_before: Dict[str, float] = {}
        self._locks: Dict[str, asyncio.Lock] = {}

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` wrong tokens in a row."""
        if failures <= 0:
            return 0.0
        return min(self.maximum, self.base * 2 ** min(failures - 1, 62))

    def wait_time(self, address: str, now: Optional[float] = None) -> float:
        """How long ``address`` must wait before its next token is checked."""
        now = time.monotonic() if now is None else now
        return max(0.0, self._not_before.get(address, 0.0) - now)

    def lock(self, address: str) -> asyncio.Lock:
        """The lock that makes one address's token checks run one at a time."""
        return self._locks.setdefault(address, asyncio.Lock())

    def failed(self, address: str, now: Optional[float] = None) -> float:
        """Record a wrong token; returns the delay now imposed on the address."""
        now = time.monotonic() if now is None else now
        self._forget_old(now)
        failures = self._failures.get(address, 0) + 1
        self._failures[address] = failures
        wait = self.delay(failures)
        self._not_before[address] = now + wait
        return wait

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
        self._not_before.pop(address, None)

    def _forget_old(self, now: float) -> None:
        for address in [a for a, t in self._not_before.items() if now - t > self.forget_after]:
            self._failures.pop(address, None)
            self._not_before.pop(address, None)
            lock = self._locks.get(address)
            if lock is not None and not lock.locked():
                del self._locks[address]
