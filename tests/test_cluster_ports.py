"""Where a studio's Ray processes listen: a head started as ``paintbridge serve --cluster start`` starts it
(``server.cluster.launch.start_ray_node``), every listening TCP socket of its process tree read from /proc."""

from __future__ import annotations

import socket
import time
from collections import Counter
from typing import List

import pytest

pytest.importorskip("ray.serve", reason="cluster mode needs the 'cluster' extra (python3 install.py --dev has it)")

from listening import Listener, listeners, routable_address

# how many ports each of a head's processes opens (the autoscaler monitor is not started); on a network address the
# Ray client server and the dashboard agent listen on loopback as well
PORTS_ON_LOOPBACK = Counter(
    {
        "gcs_server": 1,
        "raylet": 2,
        "ray.util.client.server": 1,
        "dashboard.py": 1,
        "ray::DashboardAgent": 2,
        "ray::RuntimeEnvAgent": 1,
    }
)
PORTS_ON_ADDRESS = PORTS_ON_LOOPBACK + Counter({"ray.util.client.server": 1, "ray::DashboardAgent": 1})


def all_listening(pid: int, ports: Counter) -> List[Listener]:
    """The head's listeners once each of its processes has opened its ``ports`` (they start, and open their ports,
    one by one: on a loaded machine the last ones come late), or as they are after two minutes."""
    deadline = time.monotonic() + 120
    while True:
        found = listeners(pid)
        if Counter(lst.program for lst in found) >= ports or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_one_machine_studio_listens_on_loopback_only():
    from server.cluster.launch import start_ray_node, stop_ray_node

    port = free_port()
    head = start_ray_node("127.0.0.1", port=port, num_cpus=1, object_store_bytes=80 * 1024 * 1024)
    try:
        found = all_listening(head.pid, PORTS_ON_LOOPBACK)
    finally:
        stop_ray_node(head, head_port=port)
    programs = {lst.program for lst in found}
    assert Counter(lst.program for lst in found) == PORTS_ON_LOOPBACK, found  # the probe sees each of Ray's servers
    assert any(lst.port == port for lst in found), found
    assert [lst for lst in found if not lst.loopback] == [], "Ray listens beyond loopback"
    assert "monitor.py" not in programs, found  # the autoscaler monitor (and its metrics port) is not started


def test_on_a_network_address_ray_binds_its_core_servers_to_every_interface():
    """What Ray 2.60 cannot bind to a given address (no option exists; README's studio section says so): the GCS,
    the raylet's node and object managers, the dashboard agent's gRPC server and the dashboard head's metrics server.
    The agent's metrics server is off (``RAY_enable_metrics_collection=0``). Every other port listens on the given
    address (or loopback). A change in Ray shows up here."""
    from server.cluster.launch import start_ray_node, stop_ray_node

    bind = routable_address()
    if not bind or bind.startswith("127."):
        pytest.skip("this machine has no network address besides loopback")
    port = free_port()
    head = start_ray_node(bind, port=port, num_cpus=1, object_store_bytes=80 * 1024 * 1024)
    try:
        found = all_listening(head.pid, PORTS_ON_ADDRESS)
    finally:
        stop_ray_node(head, head_port=port)
    assert Counter(lst.program for lst in found) == PORTS_ON_ADDRESS, found
    wide = [lst for lst in found if lst.wildcard]
    assert Counter(lst.program for lst in wide) == {
        "gcs_server": 1,
        "raylet": 2,
        "ray::DashboardAgent": 1,
        "dashboard.py": 1,
    }, found
    assert any(lst.port == port for lst in wide)  # the GCS itself
    elsewhere = [lst for lst in found if not (lst.wildcard or lst.loopback or lst.address.endswith(bind))]
    assert elsewhere == [], f"listening beyond {bind} and loopback: {elsewhere}"
