"""The rollout state machine (one table) and the state file. No sockets."""

from __future__ import annotations

import json
import os

import pytest

from proxy.rollout.state import (
    EFFECTS,
    HISTORY,
    PHASES,
    STATE_FILE,
    TRANSITIONS,
    InvalidTransition,
    fire,
    load_states,
    new_state,
    next_phase,
    save_states,
    write_atomically,
)

STEPS = 4


def state(**changes):
    import msgspec

    return msgspec.structs.replace(new_state("shop", "shop", "v2", at=100.0), **changes)


# --- the table ----------------------------------------------------------------------------


def test_every_event_has_an_effect_and_every_phase_appears():
    events = {event for _, event in TRANSITIONS}
    assert events == set(EFFECTS)
    assert {phase for phase, _ in TRANSITIONS} == set(PHASES)
    assert set(TRANSITIONS.values()) <= set(PHASES)


@pytest.mark.parametrize(
    ("phase", "event", "after"),
    [
        ("progressing", "advance", "progressing"),
        ("progressing", "pause", "paused"),
        ("progressing", "hold", "paused"),
        ("paused", "resume", "progressing"),
        ("paused", "advance", "progressing"),
        ("progressing", "complete", "promoted"),
        ("paused", "complete", "promoted"),
        ("progressing", "fail", "aborted"),
        ("paused", "fail", "aborted"),
        ("paused", "abort", "aborted"),
        ("aborted", "retry", "progressing"),
        ("promoted", "restart", "progressing"),
        ("aborted", "restart", "progressing"),
    ],
)
def test_allowed_moves(phase, event, after):
    assert next_phase(phase, event) == after


@pytest.mark.parametrize(
    ("phase", "event"),
    [
        ("promoted", "abort"),  # nothing to roll back once the canary is the new normal
        ("promoted", "advance"),
        ("aborted", "advance"),
        ("aborted", "resume"),
        ("paused", "pause"),
        ("progressing", "resume"),
        ("progressing", "retry"),
        ("promoted", "retry"),
        ("aborted", "fail"),
    ],
)
def test_refused_moves(phase, event):
    with pytest.raises(InvalidTransition, match=f"cannot {event} a rollout that is {phase}"):
        next_phase(phase, event)


# --- effects and history --------------------------------------------------------------------


def test_advance_moves_to_the_next_step_not_yet_begun():
    before = state(step=1, entered=True, weight=25, pause_served=3.0, step_passed=True, failures=1)
    after = fire(before, "advance", steps=STEPS, reason="step 2 done", at=200.0)
    assert (after.phase, after.step, after.entered, after.pause_served, after.step_passed) == (
        "progressing",
        2,
        False,
        0.0,
        False,
    )
    assert (after.weight, after.failures) == (25, 1)  # the weight changes when the next step begins
    assert (after.reason, after.updated_at) == ("step 2 done", 200.0)


def test_fail_sets_the_canary_weight_to_zero_and_keeps_the_reason():
    before = state(step=2, entered=True, weight=50, failures=3)
    after = fire(before, "fail", steps=STEPS, reason="3 failed checks", at=300.0)
    assert (after.phase, after.weight, after.reason) == ("aborted", 0, "3 failed checks")
    change = after.history[-1]
    assert (change.event, change.before, change.after, change.weight, change.at) == (
        "fail",
        "progressing",
        "aborted",
        0,
        300.0,
    )


def test_complete_puts_the_canary_at_100_percent():
    after = fire(
        state(step=1, entered=True, weight=25), "complete", steps=STEPS, reason="promote --full", at=1.0
    )
    assert (after.phase, after.step, after.weight) == ("promoted", STEPS, 100)


def test_retry_starts_over():
    aborted = state(phase="aborted", step=2, weight=0, failures=3, inconclusive=2, started_at=5.0)
    after = fire(aborted, "retry", steps=STEPS, reason="retried", at=900.0)
    assert (after.phase, after.step, after.entered, after.failures, after.inconclusive) == (
        "progressing",
        0,
        False,
        0,
        0,
    )
    assert after.started_at == 900.0


def test_fire_refuses_and_leaves_the_state_alone():
    promoted = state(phase="promoted", weight=100)
    with pytest.raises(InvalidTransition):
        fire(promoted, "abort", steps=STEPS, reason="x", at=1.0)
    assert promoted.phase == "promoted"


def test_history_is_bounded():
    current = state()
    for i in range(HISTORY + 5):
        current = fire(current, "pause", steps=STEPS, reason=f"p{i}", at=float(i))
        current = fire(current, "resume", steps=STEPS, reason=f"r{i}", at=float(i))
    assert len(current.history) == HISTORY
    assert current.history[-1].reason == f"r{HISTORY + 4}"


# --- persistence ------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    states = {"shop": state(step=1, entered=True, weight=5, pause_served=42.5)}
    states["shop"] = fire(states["shop"], "pause", steps=STEPS, reason="by hand", at=7.0)
    save_states(str(tmp_path), states)
    assert load_states(str(tmp_path)) == states
    document = json.loads((tmp_path / STATE_FILE).read_text())
    assert document["format"] == 1
    assert document["rollouts"]["shop"]["pause_served"] == 42.5


def test_load_without_a_file_is_empty(tmp_path):
    assert load_states(str(tmp_path / "not-yet")) == {}


def test_save_creates_the_directory(tmp_path):
    directory = tmp_path / "a" / "b"
    save_states(str(directory), {"shop": state()})
    assert (directory / STATE_FILE).exists()


def test_a_corrupt_file_is_moved_aside_and_rollouts_start_over(tmp_path, caplog):
    (tmp_path / STATE_FILE).write_text('{"format": 1, "rollouts": {"shop": {"rou')
    assert load_states(str(tmp_path)) == {}
    assert (tmp_path / (STATE_FILE + ".corrupt")).exists()
    assert "unreadable" in caplog.text


def test_a_file_of_the_wrong_shape_is_moved_aside(tmp_path):
    (tmp_path / STATE_FILE).write_text('{"format": 1, "rollouts": {"shop": {"phase": "sideways"}}}')
    assert load_states(str(tmp_path)) == {}


def test_write_is_atomic_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / STATE_FILE)
    write_atomically(path, b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomically(path, b"new")
    assert (tmp_path / STATE_FILE).read_bytes() == b"old"
    assert os.listdir(tmp_path) == [STATE_FILE]  # no temporary file left behind


def test_write_fsyncs_the_file_and_the_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    path = tmp_path / STATE_FILE
    write_atomically(str(path), b"{}")
    assert len(synced) == 2
    assert synced[0].endswith(".tmp")  # the data, before the rename
    assert synced[1] == os.path.realpath(tmp_path)  # the rename
