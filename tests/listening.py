"""Listening TCP sockets of a process tree, read from /proc (Linux): which address and port each process listens on."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Dict, List, Set, Tuple


@dataclass(frozen=True)
class Listener:
    pid: int
    program: str  # the process's name as ps shows it (Ray renames its workers: ray::DashboardAgent)
    address: str
    port: int

    @property
    def wildcard(self) -> bool:
        return ipaddress.ip_address(self.address).is_unspecified

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def _children() -> Dict[int, List[int]]:
    kids: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = open(f"/proc/{name}/stat").read()
            except OSError:
                continue
            kids.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(name))
    return kids


def process_tree(root: int) -> List[int]:
    """``root`` and every descendant (Ray's workers are the raylet's children)."""
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _socket_inodes(pid: int) -> Set[int]:
    found = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    # /proc/net/tcp{,6} print each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    mapped = getattr(ip, "ipv4_mapped", None)  # an IPv6 socket bound to an IPv4 address: ::ffff:a.b.c.d
    return str(mapped or ip)


def _listening() -> Dict[int, Tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket on this machine."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                addr, port = fields[1].split(":")
                out[int(fields[9])] = (_address(addr), int(port, 16))
    return out


def _program(pid: int) -> str:
    try:
        argv = open(f"/proc/{pid}/cmdline").read().split("\0")
    except OSError:
        return "?"
    words = [w for w in argv if w]
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0].split()[0]
    scripts = [w for w in words[1:3] if w.endswith(".py") or w.startswith("ray.")]
    return os.path.basename(scripts[0] if scripts else words[0])


def listeners(root: int) -> List[Listener]:
    """Every listening TCP socket held by ``root``'s process tree."""
    table = _listening()
    found = []
    for pid in process_tree(root):
        for inode in _socket_inodes(pid):
            if inode in table:
                found.append(Listener(pid, _program(pid), *table[inode]))
    return sorted(set(found), key=lambda lst: (lst.program, lst.port))


def routable_address() -> str:
    """This machine's address on its default route (no packet is sent), or "" when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))
            return s.getsockname()[0]
        except OSError:
            return ""
