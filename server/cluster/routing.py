"""Which replica runs which job: pure functions over replica states, no Ray and no I/O (unit-tested on their own).

The queue hands ``plan`` its waiting jobs in fair order (``JobQueue.startable``: owners take turns, held ones wait).
``plan`` places them one by one, as list scheduling does, on the replica where each would finish first: a replica's time
to become free (the rest of its running job, then the jobs placed on it in this pass), plus loading the job's checkpoint
when the replica would not hold it by then, plus the job itself (and, to choose, not to wait: loading over another
checkpoint counts that checkpoint's reload too, so an empty replica is taken before a warm one is evicted). A job placed
on a replica that is free now starts now; a job placed on a busy replica waits for it, so a warm replica that is about
to finish beats a cold one that would first load (a painter's consecutive jobs stay on the replica that holds their
model), and a backlog spills over to a cold replica once waiting costs more than loading. Ties go to the replica the
owner used last, then to the least used one.

Times are estimates that the dispatcher learns (each replica's job time, each model's load time); they steer the
choice and never decide whether a job runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Hashable, List, Optional, Sequence, Set, Tuple

from protocol.errors import BUSY, INTERNAL, MODEL_NOT_FOUND

DEFAULT_JOB_SECONDS = 1.0
DEFAULT_LOAD_SECONDS = 5.0
LEARN_RATE = 0.3  # weight of the newest measurement in a running average


@dataclass
class ReplicaState:
    """What the front end knows about one engine replica."""

    id: str
    device: str = ""
    models: Set[str] = field(default_factory=set)  # checkpoint names in the models folder it sees
    default: str = ""  # its default checkpoint ("" = none)
    loaded: str = ""  # the checkpoint it holds now ("" = none)
    alive: bool = True
    busy_for: Optional[float] = None  # seconds its running job has run; None = free
    refused: Dict[str, str] = field(default_factory=dict)  # checkpoint -> why it could not load it
    job_seconds: float = DEFAULT_JOB_SECONDS
    load_seconds: Dict[str, float] = field(default_factory=dict)
    jobs: int = 0  # jobs it has run (for ties: the least loaded)

    @property
    def free(self) -> bool:
        return self.alive and self.busy_for is None

    def resolve(self, model: Optional[str]) -> Optional[str]:
        """The checkpoint a job's ``model`` means on this replica ("" = its default; None = needs none)."""
        if model is None:
            return None
        return model or self.default

    def can_run(self, model: Optional[str]) -> bool:
        name = self.resolve(model)
        return self.alive and (name is None or (name in self.models and name not in self.refused))

    def load_estimate(self, name: str, elsewhere: Optional[Dict[str, float]] = None) -> float:
        """Seconds to load ``name`` here: measured here, else measured on another replica, else a default."""
        if name in self.load_seconds:
            return self.load_seconds[name]
        return (elsewhere or {}).get(name, DEFAULT_LOAD_SECONDS)

    def learn_job(self, seconds: float) -> None:
        self.job_seconds += LEARN_RATE * (seconds - self.job_seconds)

    def learn_load(self, name: str, seconds: float) -> None:
        old = self.load_seconds.get(name)
        self.load_seconds[name] = seconds if old is None else old + LEARN_RATE * (seconds - old)


@dataclass(frozen=True)
class Want:
    """A waiting job as routing sees it: ``model`` is the checkpoint name ("" = each replica's default, None = the
    job needs no checkpoint: classical fills, plain upscales)."""

    key: Hashable
    owner: Hashable
    model: Optional[str]
    live: bool = False


@dataclass
class Plan:
    """``starts``: (job key, replica id) to start now; ``refusals``: (job key, error code, message) for jobs no
    replica can run. Jobs in neither wait."""

    starts: List[Tuple[Hashable, str]] = field(default_factory=list)
    refusals: List[Tuple[Hashable, str, str]] = field(default_factory=list)


def refusal(model: Optional[str], replicas: Sequence[ReplicaState]) -> Tuple[str, str]:
    """(error code, message): why no replica can run a job of ``model`` (what each replica lacks or why it refused)."""
    alive = [r for r in replicas if r.alive]
    if not alive:
        return BUSY, (
            "no engine replica is running in the pool: start one with 'paintbridge worker', or wait for "
            "the pool to restart the ones that stopped"
        )
    name = model or "the default checkpoint"
    seen = [r for r in alive if r.resolve(model) and r.resolve(model) in r.models]
    if not seen:
        have = sorted(set().union(*(r.models for r in alive)))
        return MODEL_NOT_FOUND, (
            f"no replica in the pool has the checkpoint '{name}' in its models folder "
            f"(the pool has: {', '.join(have) or 'no checkpoints'})"
        )
    reasons = "; ".join(f"replica {r.id}: {r.refused[r.resolve(model)]}" for r in seen)
    return INTERNAL, f"no replica in the pool could load the checkpoint '{name}' ({reasons})"


def plan(waiting: Sequence[Want], replicas: Sequence[ReplicaState], last_replica: Dict[Hashable, str]) -> Plan:
    """Place ``waiting`` (in fair order) on ``replicas``; see the module docstring. ``last_replica`` maps an owner to
    the replica that ran its last job."""
    out = Plan()
    ready_in = {
        r.id: (max(0.0, r.job_seconds - r.busy_for) if r.busy_for is not None else 0.0) for r in replicas if r.alive
    }
    holds = {r.id: r.loaded for r in replicas}
    measured: Dict[str, float] = {}
    for r in replicas:
        for name, seconds in r.load_seconds.items():
            measured[name] = max(seconds, measured.get(name, 0.0))
    starting: Set[str] = set()
    for want in waiting:
        candidates = [r for r in replicas if r.can_run(want.model)]
        if not candidates and replicas and not any(r.alive for r in replicas):
            continue  # every replica is restarting: wait for them
        if not candidates:
            out.refusals.append((want.key, *refusal(want.model, replicas)))
            continue

        def finish(r: ReplicaState, want: Want = want) -> float:
            name = r.resolve(want.model)
            load = 0.0 if name is None or holds[r.id] == name else r.load_estimate(name, measured)
            return ready_in[r.id] + load + r.job_seconds

        def cost(r: ReplicaState, want: Want = want) -> Tuple[float, int, int, str]:
            name, held = r.resolve(want.model), holds[r.id]
            evicts = name is not None and held and held != name
            sticky = 0 if last_replica.get(want.owner) == r.id else 1
            return finish(r) + (r.load_estimate(held, measured) if evicts else 0.0), sticky, r.jobs, r.id

        best = min(candidates, key=cost)
        if best.free and best.id not in starting:
            starting.add(best.id)
            out.starts.append((want.key, best.id))
        ready_in[best.id] = finish(best)
        holds[best.id] = best.resolve(want.model) or holds[best.id]
    return out
