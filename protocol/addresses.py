"""Which addresses are this machine's loopback: the one rule the server (bind, token, cluster) and the client (start a
local server, share memory) both follow."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` (any case), 127.0.0.0/8 and ::1 (bracketed or not); False for anything else."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
