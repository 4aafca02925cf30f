"""The pool's routing rule (server/cluster/routing.py) on its own: pure functions, no Ray."""

from __future__ import annotations

from server.cluster.routing import ReplicaState, Want, plan


def replica(
    rid: str,
    models=("sd15", "sdxl"),
    loaded: str = "",
    busy_for=None,
    default: str = "sd15",
    job: float = 1.0,
    load: float = 5.0,
    **kw,
) -> ReplicaState:
    return ReplicaState(
        rid,
        models=set(models),
        loaded=loaded,
        busy_for=busy_for,
        default=default,
        job_seconds=job,
        load_seconds={m: load for m in models},
        **kw,
    )


def test_a_job_goes_to_the_replica_that_holds_its_checkpoint():
    pool = [replica("a", loaded="sdxl"), replica("b", loaded="sd15"), replica("c")]
    assert plan([Want(1, "anna", "sd15")], pool, {}).starts == [(1, "b")]


def test_a_warm_replica_about_to_finish_beats_loading_on_a_free_one():
    pool = [replica("a", loaded="sd15", busy_for=0.5), replica("b")]
    decision = plan([Want(1, "anna", "sd15")], pool, {})
    assert decision.starts == [] and decision.refusals == []  # it waits for a


def test_a_backlog_spills_over_to_a_cold_replica():
    pool = [replica("a", loaded="sd15"), replica("b")]
    wants = [Want(n, "anna", "sd15") for n in range(8)]
    assert plan(wants, pool, {}).starts == [(0, "a"), (6, "b")]  # b pays 5 s of loading once a has 6 s of work


def test_an_empty_replica_is_taken_before_a_warm_one_is_evicted():
    pool = [replica("a", loaded="sd15"), replica("b")]
    assert plan([Want(1, "ben", "sdxl")], pool, {}).starts == [(1, "b")]


def test_ties_go_to_the_owners_last_replica_then_the_least_used():
    pool = [replica("a", loaded="sd15", jobs=3), replica("b", loaded="sd15", jobs=5)]
    assert plan([Want(1, "anna", "sd15")], pool, {}).starts == [(1, "a")]
    assert plan([Want(1, "anna", "sd15")], pool, {"anna": "b"}).starts == [(1, "b")]


def test_each_free_replica_starts_one_job_and_turns_are_kept():
    pool = [replica("a", loaded="sd15"), replica("b", loaded="sd15")]
    wants = [Want("a1", "anna", "sd15"), Want("b1", "ben", "sd15"), Want("a2", "anna", "sd15")]
    assert plan(wants, pool, {}).starts == [("a1", "a"), ("b1", "b")]


def test_the_default_checkpoint_and_jobs_without_one():
    pool = [replica("a", loaded="sdxl", default="sdxl"), replica("b", loaded="sd15", default="sd15")]
    assert plan([Want(1, "x", "")], pool, {}).starts == [(1, "a")]  # "" = each replica's own default: warm on a
    busy = [replica("a", loaded="sd15", busy_for=0.1), replica("b", loaded="sdxl")]
    assert plan([Want(1, "x", None)], busy, {}).starts == [(1, "b")]  # classical: any free replica, no load


def test_refusals_name_what_is_missing_or_why_it_failed():
    pool = [replica("a", models=("sd15",)), replica("b", models=("sd15", "flux"), refused={"flux": "out of memory"})]
    decision = plan([Want(1, "x", "flux"), Want(2, "x", "nope")], pool, {})
    (k1, code1, msg1), (k2, code2, msg2) = decision.refusals
    assert (k1, code1) == (1, "internal") and "replica b: out of memory" in msg1 and "'flux'" in msg1
    assert (k2, code2) == (2, "model_not_found") and "'nope'" in msg2 and "flux, sd15" in msg2


def test_a_refused_checkpoint_routes_to_the_replicas_that_can_load_it():
    pool = [replica("a", loaded="", refused={"sd15": "broken file"}), replica("b", busy_for=0.0)]
    assert plan([Want(1, "x", "sd15")], pool, {}).starts == []  # waits for b rather than asking a again
    assert plan([Want(1, "x", "sdxl")], pool, {}).starts == [(1, "a")]


def test_jobs_wait_while_every_replica_restarts_and_are_refused_without_any():
    dead = [replica("a", alive=False)]
    assert plan([Want(1, "x", "sd15")], dead, {}).refusals == []
    (refused,) = plan([Want(1, "x", "sd15")], [], {}).refusals
    assert refused[1] == "busy" and "paintbridge worker" in refused[2]


def test_live_frames_go_to_the_least_loaded_warm_replica():
    pool = [replica("a", loaded="sd15", busy_for=0.2), replica("b", loaded="sd15", busy_for=0.9), replica("c")]
    decision = plan([Want("f", "x", "sd15", live=True)], pool, {})
    assert decision.starts == []  # b finishes first; c would load
    pool[1].busy_for = None
    assert plan([Want("f", "x", "sd15", live=True)], pool, {}).starts == [("f", "b")]


def test_learning_estimates():
    r = replica("a", job=1.0)
    r.learn_job(2.0)
    assert 1.0 < r.job_seconds < 2.0
    r.learn_load("new", 3.0)
    assert r.load_estimate("new") == 3.0
    assert r.load_estimate("other", {"other": 7.0}) == 7.0
