"""Finished results outside the front end's process: a detached Ray actor keeps each final message of a named
session until its client confirms it, so a restarted front end delivers what finished before (the session rule of
``server.sessions``: the client reconnects with its session id within the grace period).

The front end calls the actor fire-and-forget (Ray runs one caller's calls to an actor in order); at start it asks for
what is still kept.
"""

from __future__ import annotations

import time
from typing import Dict, List, Tuple

import ray

from protocol.messages import Message

STORE_NAME = "paintbridge-results"
STORE_NAMESPACE = "paintbridge"


class ResultStore:
    """The actor: ``{session id: {"client": str, "finals": {job id: (time kept, message)}}}``."""

    def __init__(self) -> None:
        self.sessions: Dict[str, dict] = {}

    def keep(self, session_id: str, client: str, msg: Message) -> None:
        entry = self.sessions.setdefault(session_id, {"client": client, "finals": {}})
        entry["finals"][msg.id] = (time.time(), msg)  # type: ignore[attr-defined]

    def delivered(self, session_id: str, job_id: str) -> None:
        entry = self.sessions.get(session_id)
        if entry is not None:
            entry["finals"].pop(job_id, None)
            if not entry["finals"]:
                del self.sessions[session_id]

    def forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def restore(self, grace: float) -> Dict[str, Tuple[str, List[Message]]]:
        """What is kept and younger than ``grace`` s (older entries are dropped)."""
        cutoff = time.time() - grace
        out = {}
        for session_id, entry in list(self.sessions.items()):
            entry["finals"] = {k: v for k, v in entry["finals"].items() if v[0] >= cutoff}
            if entry["finals"]:
                out[session_id] = (entry["client"], [m for _, m in entry["finals"].values()])
            else:
                del self.sessions[session_id]
        return out


class RayKeeper:
    """``server.sessions.FinalKeeper`` on the ``ResultStore`` actor (made on first use, found by name after)."""

    def __init__(self) -> None:
        self.actor = ray.remote(ResultStore).options(
            name=STORE_NAME, namespace=STORE_NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0).remote()

    def keep(self, session_id: str, client: str, msg: Message) -> None:
        self.actor.keep.remote(session_id, client, msg)

    def delivered(self, session_id: str, job_id: str) -> None:
        self.actor.delivered.remote(session_id, job_id)

    def forget(self, session_id: str) -> None:
        self.actor.forget.remote(session_id)

    def restore(self, grace: float) -> Dict[str, Tuple[str, List[Message]]]:
        return ray.get(self.actor.restore.remote(grace), timeout=60)
