"""Ray's settings for a studio, set in the environment before Ray is imported (Ray reads them when imported).

- ``RAY_AUTH_MODE=token``: a head started here requires Ray's token (~/.ray/auth_token, made when missing), and this
  process and every node joining sends it; ``RAY_USAGE_STATS_ENABLED=0``: no usage reports;
  ``RAY_enable_metrics_collection=0``: the raylet starts its dashboard agent with ``--disable-metrics-collection``, so
  the agent opens no Prometheus export port (``dashboard/modules/reporter/reporter_agent.py``: ``if not
  self._metrics_collection_disabled``, which would serve on every interface unless the node's address is loopback).
- On a loopback address (a one-machine studio), ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray 2.60 otherwise replaces a
  loopback node address with the machine's routable one (``ray/scripts/scripts.py``, ``ray start``:
  ``services.resolve_ip_for_localhost``, which asks ``services.get_node_ip_address``; that answers 127.0.0.1 only when
  ``ray_constants.ENABLE_RAY_CLUSTER`` is off), and its servers bind every interface unless the node's address is
  loopback (``src/ray/rpc/grpc_server.cc``: ``listen_to_localhost_only_ ? "127.0.0.1" : "0.0.0.0"``;
  ``dashboard/agent.py`` and ``dashboard/head.py``: ``get_localhost_ip() if is_localhost(self.ip)``). Such a head
  is a one-node cluster: Ray refuses a node joining it (``ray/scripts/scripts.py``, ``ray start --address``: "Multi-node
  Ray clusters are not supported" while ``ENABLE_RAY_CLUSTER`` is off), so a one-machine studio runs its replicas
  on the front end's node (``--replicas N``) and a studio of several machines binds a network address.
"""

from __future__ import annotations

import os
from typing import Dict

from protocol.addresses import is_loopback_host

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_enable_metrics_collection": "0"}
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LOOPBACK_HEAD = (
    "a studio's Ray head on a loopback address (the default --ray-bind 127.0.0.1) is a one-machine "
    "studio that no machine can join: run more replicas on it with --replicas N, or start the front end "
    "with --ray-bind set to this machine's network address and join that"
)


def is_loopback(address: str) -> bool:
    """Whether ``address`` (a host, or host:port) is this machine's loopback."""
    if address.startswith("["):
        host = address[1 : address.find("]")]
    else:
        host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    return is_loopback_host(host)


def ray_env(address: str) -> Dict[str, str]:
    """The settings for a Ray node or driver on ``address``."""
    return dict(RAY_ENV, **(LOOPBACK_ENV if is_loopback(address) else {}))


def prepare(address: str) -> None:
    """Set ``ray_env(address)`` in this process's environment (before Ray is imported; explicit settings win)."""
    for key, value in ray_env(address).items():
        os.environ.setdefault(key, value)
