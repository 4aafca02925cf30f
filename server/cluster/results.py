"""Finished results outside the front end's process: a detached Ray actor keeps each final message of a named
session until its client confirms it, so a restarted front end delivers what finished before (the session rule of
``server.sessions``: the client reconnects with its session id within the grace period).

The actor also notes each job of a named session from when it is queued until its final message is kept: a job still
open when the front end died (or stopped) was lost with it (the job's images and its place in the queues lived in that
process), and the restarted front end answers it with an ``error`` that says so, so the client learns what happened
to it (and can send it again) instead of the job going silent.

The front end calls the actor fire-and-forget (Ray runs one caller's calls to an actor in order); at start it asks for
what is still kept.
"""

from __future__ import annotations

import time
from typing import Dict, List, Tuple

import ray

from protocol.errors import INTERNAL
from protocol.messages import Error, Message

STORE_NAME = "paintbridge-results"
STORE_NAMESPACE = "paintbridge"


class ResultStore:
    """The actor: ``{session id: {"client": str, "finals": {job id: (time kept, message)}, "open": {job id:
    time queued}}}``."""

    def __init__(self) -> None:
        self.sessions: Dict[str, dict] = {}

    def _entry(self, session_id: str, client: str) -> dict:
        return self.sessions.setdefault(session_id, {"client": client, "finals": {}, "open": {}})

    def opened(self, session_id: str, client: str, job_id: str) -> None:
        self._entry(session_id, client)["open"][job_id] = time.time()

    def keep(self, session_id: str, client: str, msg: Message) -> None:
        entry = self._entry(session_id, client)
        entry["open"].pop(msg.id, None)  # type: ignore[attr-defined]
        entry["finals"][msg.id] = (time.time(), msg)  # type: ignore[attr-defined]

    def delivered(self, session_id: str, job_id: str) -> None:
        entry = self.sessions.get(session_id)
        if entry is not None:
            entry["finals"].pop(job_id, None)
            if not entry["finals"] and not entry["open"]:
                del self.sessions[session_id]

    def forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def restore(self, grace: float) -> Dict[str, Tuple[str, List[Message], List[str]]]:
        """What is kept and younger than ``grace`` s: ``{session id: (client, finals, ids of jobs lost open)}``.
        Older entries are dropped; the lost jobs are answered now (an ``error`` kept like a final)."""
        cutoff = time.time() - grace
        out = {}
        for session_id, entry in list(self.sessions.items()):
            entry["finals"] = {k: v for k, v in entry["finals"].items() if v[0] >= cutoff}
            lost = [k for k, t in entry["open"].items() if t >= cutoff and k not in entry["finals"]]
            entry["open"] = {}
            for job_id in lost:
                entry["finals"][job_id] = (time.time(), lost_job(job_id))
            if entry["finals"]:
                out[session_id] = (entry["client"], [m for _, m in entry["finals"].values()], lost)
            else:
                del self.sessions[session_id]
        return out


def lost_job(job_id: str) -> Error:
    """The answer to a job that was queued or running when the front end stopped."""
    return Error(
        INTERNAL,
        f"job {job_id} was lost: the studio's front end restarted while the job was queued or "
        "running, and its images went with it; send the job again",
        id=job_id,
    )


class RayKeeper:
    """``server.sessions.FinalKeeper`` on the ``ResultStore`` actor (made on first use, found by name after).

    ``close`` (the front end is stopping) ends the record: what is open then stays open in the actor, and the next
    front end answers it as lost, rather than keeping the ``cancelled`` a stopping front end gives its running jobs.
    """

    def __init__(self) -> None:
        self.actor = (
            ray.remote(ResultStore)
            .options(name=STORE_NAME, namespace=STORE_NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0)
            .remote()
        )
        self.closed = False
        self.lost: Dict[str, List[str]] = {}  # session id -> jobs a previous front end lost (after ``restore``)

    def opened(self, session_id: str, client: str, job_id: str) -> None:
        if not self.closed:
            self.actor.opened.remote(session_id, client, job_id)

    def keep(self, session_id: str, client: str, msg: Message) -> None:
        if not self.closed:
            self.actor.keep.remote(session_id, client, msg)

    def delivered(self, session_id: str, job_id: str) -> None:
        if not self.closed:
            self.actor.delivered.remote(session_id, job_id)

    def forget(self, session_id: str) -> None:
        if not self.closed:
            self.actor.forget.remote(session_id)

    def close(self) -> None:
        self.closed = True

    def restore(self, grace: float) -> Dict[str, Tuple[str, List[Message]]]:
        kept = ray.get(self.actor.restore.remote(grace), timeout=60)
        self.lost = {sid: lost for sid, (_, _, lost) in kept.items() if lost}
        return {sid: (client, finals) for sid, (client, finals, _) in kept.items()}
