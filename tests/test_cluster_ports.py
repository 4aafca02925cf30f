"""Where a studio's Ray processes listen: a head started as ``paintbridge serve --cluster start`` starts it
(``server.cluster.launch.start_ray_node``), every listening TCP socket of its process tree read from /proc."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("ray.serve", reason="cluster mode needs the 'cluster' extra (python3 install.py --dev has it)")

from listening import listeners  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_one_machine_studio_listens_on_loopback_only():
    from server.cluster.launch import start_ray_node, stop_ray_node

    port = free_port()
    head = start_ray_node("127.0.0.1", port=port, num_cpus=1, object_store_bytes=80 * 1024 * 1024)
    try:
        found = listeners(head.pid)
    finally:
        stop_ray_node(head, head_port=port)
    programs = {lst.program for lst in found}
    assert "gcs_server" in programs and "raylet" in programs, found  # the probe sees Ray's own servers
    assert any(lst.port == port for lst in found), found
    assert [lst for lst in found if not lst.loopback] == [], "Ray listens beyond loopback"
    assert "monitor.py" not in programs, found  # the autoscaler monitor (and its metrics port) is not started
