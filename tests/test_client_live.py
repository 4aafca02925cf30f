"""client.live: the one live scheduler, driven with a fake clock (times are plain numbers here, nothing sleeps)."""

from __future__ import annotations

import pytest

from client.live import CANCEL, CANCELLED, FAILED, IDLE, START, WAIT, LiveScheduler, live_settings, signature
from client.settings import Settings


def run_frame(s: LiveScheduler, sig, start: float, took: float, job_id: str) -> None:
    """One answered frame of ``took`` seconds: start it (the scheduler must say START) and finish it."""
    action = s.next_action(start)
    assert action.kind == START and action.signature == sig, action
    s.started(job_id, sig, start)
    s.finished(job_id, start + took)


def test_nothing_to_do_without_inputs_and_a_fast_first_frame_starts_at_once():
    s = LiveScheduler()
    assert s.next_action(0.0).kind == IDLE
    s.changed(None, 0.0)
    assert s.next_action(0.1).kind == IDLE
    s.changed("a", 1.0)
    assert s.next_action(1.0).kind == START  # nothing measured yet: no debounce


def test_answered_inputs_are_not_sent_again_until_they_change_or_rerun():
    s = LiveScheduler()
    s.changed("a", 0.0)
    run_frame(s, "a", 0.0, 0.1, "j1")
    assert s.next_action(1.0).kind == IDLE
    s.changed("a", 2.0)  # the same inputs again: still nothing to do
    assert s.next_action(2.0).kind == IDLE
    s.rerun()
    assert s.next_action(2.0).kind == START


def test_latest_wins_while_a_frame_runs():
    s = LiveScheduler()
    s.changed("a", 0.0)
    s.next_action(0.0)
    s.started("j1", "a", 0.0)
    for t, sig in ((0.05, "b"), (0.06, "c"), (0.07, "d")):
        s.changed(sig, t)
        assert s.next_action(t).kind == IDLE  # one frame in flight; nothing measured, so no cancel
    s.finished("j1", 0.1)
    action = s.next_action(0.1)
    assert action.kind == START and action.signature == "d"  # b and c were never sent


def test_fast_frames_get_no_debounce_slow_ones_get_half_their_time_capped():
    s = LiveScheduler(fast=0.25, max_debounce=0.6)
    s.changed("a", 0.0)
    run_frame(s, "a", 0.0, 0.1, "j1")
    assert s.debounce == 0.0
    s.changed("b", 1.0)
    assert s.next_action(1.0).kind == START
    s.started("j2", "b", 1.0)
    s.finished("j2", 1.8)  # frames now take 0.1 and 0.8 s: median 0.45 s
    assert abs(s.debounce - 0.225) < 1e-9
    s.changed("c", 2.0)
    action = s.next_action(2.0)
    assert action.kind == WAIT and abs(action.at - 2.225) < 1e-9
    s.changed("d", 2.1)  # still moving: the wait starts again from the newest change
    assert abs(s.next_action(2.2).at - 2.325) < 1e-9
    assert s.next_action(2.4).signature == "d"
    for i in range(5):
        s.started(f"k{i}", f"s{i}", 10.0 * i)
        s.finished(f"k{i}", 10.0 * i + 4.0)
    assert s.debounce == 0.6


def test_a_stale_frame_of_a_slow_model_is_cancelled_once_then_the_latest_starts():
    s = LiveScheduler(fast=0.25, slow=1.0)
    s.changed("a", 0.0)
    run_frame(s, "a", 0.0, 3.0, "j1")  # a slow model: 3 s a frame
    s.changed("b", 10.0)
    assert s.next_action(11.5).kind == START  # after the debounce (0.6 s cap)
    s.started("j2", "b", 11.5)
    s.changed("c", 12.0)
    action = s.next_action(12.0)
    assert action.kind == CANCEL and action.job_id == "j2"
    assert s.next_action(12.1).kind == IDLE  # cancel only once
    s.finished("j2", 12.3, CANCELLED)  # cancelled: not counted as an answer, nor as a frame time
    assert s.frame_time == 3.0
    action = s.next_action(12.7)
    assert action.kind == START and action.signature == "c"


def test_a_frame_that_is_nearly_done_or_a_fast_model_is_left_to_finish():
    s = LiveScheduler(fast=0.25, slow=1.0)
    s.changed("a", 0.0)
    run_frame(s, "a", 0.0, 2.0, "j1")
    s.started("j2", "b", 10.0)
    s.changed("c", 11.9)
    assert s.next_action(11.9).kind == IDLE  # 0.1 s to go: cheaper to let it finish
    fast = LiveScheduler(fast=0.25, slow=1.0)
    fast.changed("a", 0.0)
    run_frame(fast, "a", 0.0, 0.2, "j1")
    fast.started("j2", "b", 1.0)
    fast.changed("c", 1.01)
    assert fast.next_action(1.01).kind == IDLE


def test_a_cancelled_frame_whose_inputs_came_back_is_sent_again():
    s = LiveScheduler()
    s.changed("a", 0.0)
    s.next_action(0.0)
    s.started("j1", "a", 0.0)
    s.finished("j1", 0.5, CANCELLED)  # e.g. the connection dropped
    assert s.next_action(0.5).signature == "a"


def test_a_failed_frame_is_not_retried_and_not_timed():
    s = LiveScheduler()
    s.changed("a", 0.0)
    s.started("j1", "a", 0.0)
    s.finished("j1", 5.0, FAILED)
    assert s.next_action(6.0).kind == IDLE and s.frame_time is None
    with pytest.raises(ValueError, match="unknown outcome"):
        s.finished("j1", 6.0, "done")


def test_finished_for_another_job_and_forget():
    s = LiveScheduler()
    s.changed("a", 0.0)
    s.started("j1", "a", 0.0)
    s.finished("other", 1.0)
    assert s.running == "j1"
    s.finished("j1", 1.0)
    s.forget()
    assert s.next_action(2.0).kind == IDLE and s.latest is None


def test_signature_sees_every_byte_and_the_order():
    base = signature([b"\x00\x01", 3, "x"])
    assert base == signature([b"\x00\x01", 3, "x"])
    assert base != signature([b"\x00\x02", 3, "x"])
    assert base != signature([3, b"\x00\x01", "x"])
    assert signature([b"ab", b"c"]) != signature([b"a", b"bc"])


def test_live_settings_use_a_live_mode_one_result_and_a_fixed_seed():
    s = live_settings(Settings(mode="outpaint", batch=4, seed=-1), 77)
    assert (s.mode, s.batch, s.seed) == ("inpaint", 1, 77)
    assert live_settings(Settings(mode="img2img"), 1).mode == "img2img"
