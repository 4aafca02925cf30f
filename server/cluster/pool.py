"""The pool of engine replicas on a Ray cluster: deploying them as Ray Serve applications, finding them, and keeping
each one's ``routing.ReplicaState`` up to date.

Each replica is its own Serve application ``paintbridge-replica-<machine>-<n>`` (one deployment, one replica), so the
front end can send a job to the very replica routing chose; Serve restarts a replica that dies. Any process attached
to the cluster can add replicas (``paintbridge worker`` does, for its machine); the front end finds them by name.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Dict, List, Optional, Sequence

import ray
from ray import serve

from .replica import EngineReplica
from .routing import ReplicaState

log = logging.getLogger("paintbridge.pool")

APP_PREFIX = "paintbridge-replica-"
DESCRIBE_TIMEOUT = 20.0  # s: a replica that does not answer within this is taken out of routing until it does


def start_serve() -> None:
    """Start Ray Serve on the attached cluster without its HTTP and gRPC proxies (the websocket front end is ours)."""
    serve.start(proxy_location="Disabled")


def deploy_replicas(
    count: int,
    model_dirs: Sequence[str],
    *,
    machine: str = "",
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    threads: int = 0,
    allow_pickle: bool = False,
    pin_node: bool = False,
) -> List[str]:
    """Deploy ``count`` replicas (apps ``paintbridge-replica-<machine>-<n>``) that see ``model_dirs``; returns their
    ids. ``num_gpus=1`` gives each replica a GPU of its own; ``pin_node`` keeps them on this process's Ray node."""
    machine = machine or socket.gethostname()
    options: Dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    if pin_node:
        options["resources"] = {f"node:{ray.util.get_node_ip_address()}": 0.001}
    deployment = serve.deployment(
        EngineReplica,
        name="EngineReplica",
        num_replicas=1,
        max_ongoing_requests=16,
        health_check_period_s=2.0,
        health_check_timeout_s=60.0,
        graceful_shutdown_timeout_s=5.0,
        ray_actor_options=options,
    )
    ids = []
    for n in range(count):
        rid = f"{machine}-{n}"
        serve.run(
            deployment.bind(rid, [str(d) for d in model_dirs], device, dtype, allow_pickle, threads),
            name=APP_PREFIX + rid,
            route_prefix=None,
        )
        ids.append(rid)
    return ids


def remove_replicas(ids: Sequence[str]) -> None:
    for rid in ids:
        serve.delete(APP_PREFIX + rid)


class Pool:
    """The replicas the front end routes to: Serve handles and routing states, refreshed by ``refresh``."""

    def __init__(self) -> None:
        self.states: Dict[str, ReplicaState] = {}
        self.facts: Dict[str, dict] = {}  # id -> its last ``describe``
        self._handles: Dict[str, Any] = {}

    def handle(self, rid: str, stream: bool = False):
        handle = self._handles[rid]
        return handle.options(stream=True) if stream else handle

    def ids(self) -> List[str]:
        return sorted(self.states)

    async def refresh(self, rescan: bool = False) -> None:
        """Find replicas (new workers' too) and ask each what it holds; one that does not answer is out of routing."""
        names = await asyncio.to_thread(lambda: [n for n in serve.status().applications if n.startswith(APP_PREFIX)])
        for name in names:
            rid = name[len(APP_PREFIX) :]
            if rid not in self._handles:
                self._handles[rid] = await asyncio.to_thread(serve.get_app_handle, name)
                self.states[rid] = ReplicaState(rid, alive=False)
        for rid in [r for r in self.states if APP_PREFIX + r not in names]:
            log.warning("replica %s left the pool", rid)
            self.states.pop(rid)
            self._handles.pop(rid, None)
            self.facts.pop(rid, None)
        await asyncio.gather(*(self.check(rid, rescan) for rid in list(self.states)))

    async def check(self, rid: str, rescan: bool = False) -> bool:
        """Ask replica ``rid`` what it holds; False (and out of routing) when it does not answer."""
        state = self.states.get(rid)
        if state is None:
            return False
        try:
            facts = await asyncio.wait_for(self.handle(rid).describe.remote(rescan), DESCRIBE_TIMEOUT)
        except Exception as err:  # noqa: BLE001 - dead, restarting or unreachable: all mean out of routing
            if state.alive:
                log.warning("replica %s does not answer (%s): out of routing until it does", rid, type(err).__name__)
            state.alive = False
            return False
        if not state.alive:
            log.info("replica %s is in the pool: %s, checkpoints %s", rid, facts["device"], ", ".join(facts["models"]))
        if self.facts.get(rid, {}).get("pid") not in (None, facts["pid"]):
            state.refused.clear()  # a restarted replica may load what its predecessor could not
        self.facts[rid] = facts
        state.alive, state.device, state.default = True, facts["device"], facts["default"]
        state.models = set(facts["models"])
        if state.busy_for is None:
            state.loaded = facts["loaded"]
        return True

    def lost(self, rid: str) -> None:
        """Replica ``rid`` died (its job is retried elsewhere): out of routing until it answers again."""
        state = self.states.get(rid)
        if state is not None:
            state.alive, state.loaded = False, ""

    def refuse(self, rid: str, model: str, reason: str) -> None:
        """Replica ``rid`` cannot load ``model``: no more jobs of that model go to it."""
        state = self.states[rid]
        state.refused[model] = reason
        state.loaded = ""
        log.error(
            "replica %s cannot load the checkpoint '%s' (%s): it is taken out of routing for that model",
            rid,
            model,
            reason,
        )

    def listing(self) -> List[dict]:
        """Every model some live replica has, once per name (the first replica's entry), in replica order."""
        seen: Dict[tuple, dict] = {}
        for rid in self.ids():
            if self.states[rid].alive:
                for entry in self.facts.get(rid, {}).get("listing", ()):
                    seen.setdefault((entry.get("kind"), entry.get("name")), entry)
        return list(seen.values())

    def canonical(self, model: str) -> str:
        """A job's model name as the replicas list it (exact, else ignoring case); unknown names stay as given."""
        names = set().union(*(s.models for s in self.states.values())) if self.states else set()
        if not model or model in names:
            return model
        return next((n for n in sorted(names) if n.lower() == model.lower()), model)

    def capabilities(self) -> dict:
        """``welcome.capabilities["pool"]``: each replica's id, device, checkpoints and the one it holds."""
        return {
            "replicas": [
                {"id": rid, "device": s.device, "models": sorted(s.models), "loaded": s.loaded, "alive": s.alive}
                for rid, s in sorted(self.states.items())
            ]
        }

    def device_description(self) -> str:
        alive = [s for s in self.states.values() if s.alive]
        devices = sorted({s.device for s in alive})
        return f"pool of {len(alive)} replica(s): {'; '.join(devices) or 'none yet'}"
