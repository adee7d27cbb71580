"""The rollout controller driven by a hand clock and traffic written into real counters. No sockets.

Each test moves the clock one analysis interval at a time, "serves" that interval's
requests (split by the canary's current weight) and runs one tick, as the controller's
own loop would.
"""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from rollout_support import ROUTE, SLOW_LATENCY, Clock, Traffic, WeightLog, rollout_config

from proxy.errors import StartupError
from proxy.rollout.controller import BadAction, RolloutConflict, RolloutController, UnknownRollout
from proxy.rollout.state import STATE_FILE, load_states

SEED_ANALYSIS = {
    "interval": "30s",
    "min_requests": 20,
    "max_error_rate": 0.05,
    "max_p99": "500ms",
    "failure_limit": 3,
}
SEED_STEPS = [{"set_weight": 5}, {"set_weight": 25}, {"set_weight": 50}, {"set_weight": 100}]
INTERVAL = 30.0
PER_INTERVAL = 1000  # requests per interval on the route


class Harness:
    def __init__(self, tmp_path, clock: Clock | None = None, traffic: Traffic | None = None, **config):
        config.setdefault("steps", SEED_STEPS)
        config.setdefault("analysis", SEED_ANALYSIS)
        self.config = rollout_config(tmp_path, **config)
        self.clock = clock or Clock()
        self.traffic = traffic or Traffic()
        self.weights = WeightLog()
        self.wall = Clock(1_700_000_000.0)
        self.controller = RolloutController(
            self.config, self.traffic, self.weights, clock=self.clock, wall=self.wall
        )
        self.controller.tick(self.clock.now)

    @property
    def rollout(self) -> dict:
        return self.controller.status()["rollouts"][ROUTE]

    def interval(self, *, error_ratio: float = 0.0, total: int = PER_INTERVAL, latency: float | None = None):
        """One interval of traffic at the current weight, then a tick at its end."""
        weight = self.rollout["weight"]
        if latency is None:
            self.traffic.split(weight, total, error_ratio=error_ratio)
        else:
            mine = total * weight // 100
            self.traffic.serve("v2", mine, latency=latency)
            self.traffic.serve("v1", total - mine)
        self.clock.advance(INTERVAL)
        self.wall.advance(INTERVAL)
        self.controller.tick(self.clock.now)
        return self.rollout


# --- the seed scenario ----------------------------------------------------------------------


def test_a_clean_rollout_reaches_100_percent_one_step_per_passing_check(tmp_path):
    h = Harness(tmp_path)
    assert (h.rollout["phase"], h.rollout["weight"]) == ("progressing", 5)
    seen = [h.interval()["weight"] for _ in range(3)]
    assert seen == [25, 50, 100]
    assert h.rollout["phase"] == "progressing"  # the last step also needs its passing check
    final = h.interval()
    assert (final["phase"], final["weight"], final["failures"]) == ("promoted", 100, 0)
    assert h.weights.canary_percents() == [5, 25, 50, 100]  # each change reported once, in order
    assert h.weights.calls[-1] == {ROUTE: {"v2": 100, "v1": 0}}
    assert h.controller.checks == {(ROUTE, "pass"): 4}
    assert [c["event"] for c in final["history"]] == ["advance", "advance", "advance", "complete"]
    h.interval()
    assert h.controller.checks == {(ROUTE, "pass"): 4}  # no checks once promoted


def test_the_starting_weights_are_there_before_any_tick(tmp_path):
    traffic = Traffic()
    config = rollout_config(tmp_path, steps=SEED_STEPS, analysis=SEED_ANALYSIS)
    controller = RolloutController(config, traffic, WeightLog(), clock=Clock())
    # The first route table is compiled from these: the canary gets nothing yet.
    assert controller.weights() == {ROUTE: {"v2": 0, "v1": 100}}


def test_twenty_percent_errors_roll_back_after_exactly_failure_limit_checks(tmp_path):
    h = Harness(tmp_path)
    for failures in (1, 2):
        status = h.interval(error_ratio=0.2)
        assert (status["phase"], status["weight"], status["failures"]) == ("progressing", 5, failures)
    status = h.interval(error_ratio=0.2)
    assert (status["phase"], status["weight"], status["failures"]) == ("aborted", 0, 3)
    assert status["reason"].startswith("3 failed checks (failure_limit 3); last: error rate 20% >= ")
    assert h.weights.calls[-1] == {ROUTE: {"v2": 0, "v1": 100}}  # no more canary traffic
    assert h.controller.checks == {(ROUTE, "fail"): 3}
    assert h.controller.transitions == {(ROUTE, "fail", "progressing", "aborted"): 1}
    h.interval(error_ratio=0.2)
    assert h.controller.checks == {(ROUTE, "fail"): 3}  # not judged any more
    saved = load_states(str(tmp_path))[ROUTE]
    assert (saved.phase, saved.weight, saved.reason) == ("aborted", 0, status["reason"])


def test_failures_count_in_all_not_in_a_row(tmp_path):
    h = Harness(tmp_path, steps=[{"set_weight": 5}, {"pause": "10m"}, {"set_weight": 50}])
    outcomes = [0.2, 0.0, 0.2, 0.0, 0.2]
    phases = [h.interval(error_ratio=ratio)["phase"] for ratio in outcomes]
    assert phases == ["progressing"] * 4 + ["aborted"]


def test_a_slow_canary_is_rolled_back_on_p99(tmp_path):
    h = Harness(tmp_path)
    for _ in range(3):
        status = h.interval(latency=SLOW_LATENCY)
    assert status["phase"] == "aborted"
    assert "p99" in status["reason"]


def test_a_failed_check_holds_the_step_until_a_check_passes(tmp_path):
    h = Harness(tmp_path)
    assert h.interval(error_ratio=0.2)["weight"] == 5
    assert h.interval()["weight"] == 25


# --- low traffic ------------------------------------------------------------------------------


def test_low_traffic_stays_inconclusive_neither_rolled_back_nor_promoted(tmp_path):
    h = Harness(tmp_path)
    for _ in range(6):
        # 5% of 200 = 10 canary requests, all failing: too few to judge either way.
        status = h.interval(total=200, error_ratio=1.0)
    assert (status["phase"], status["weight"], status["failures"]) == ("progressing", 5, 0)
    assert status["inconclusive"] == 6
    assert h.controller.checks == {(ROUTE, "inconclusive"): 6}
    assert status["last_check"]["outcome"] == "inconclusive"


def test_max_inconclusive_pauses_for_a_human(tmp_path):
    h = Harness(tmp_path, analysis={**SEED_ANALYSIS, "max_inconclusive": 3})
    phases = [h.interval(total=100)["phase"] for _ in range(3)]
    assert phases == ["progressing", "progressing", "paused"]
    status = h.rollout
    assert status["weight"] == 5
    assert status["reason"].startswith("3 inconclusive checks in a row (max_inconclusive 3)")
    # Paused: enough traffic does not move it on, but it is still watched ...
    assert h.interval()["phase"] == "paused"
    # ... so the check that passed meanwhile counts: the step is done once resumed.
    assert h.controller.command(ROUTE, "resume")["weight"] == 25


def test_a_paused_rollout_still_rolls_back(tmp_path):
    h = Harness(tmp_path)
    h.controller.command(ROUTE, "pause")
    for _ in range(3):
        status = h.interval(error_ratio=0.5)
    assert (status["phase"], status["weight"]) == ("aborted", 0)


def test_a_passing_check_after_inconclusive_ones_resets_the_run(tmp_path):
    h = Harness(tmp_path, analysis={**SEED_ANALYSIS, "max_inconclusive": 2})
    h.interval(total=100)
    assert h.interval()["inconclusive"] == 0
    h.interval(total=100)
    assert h.rollout["phase"] == "progressing"


# --- pauses -----------------------------------------------------------------------------------

PAUSED_STEPS = [{"set_weight": 10}, {"pause": "100s"}, {"set_weight": 50}]


def test_a_timed_pause_without_analysis_ends_on_time(tmp_path):
    clock = Clock()
    h = Harness(tmp_path, clock=clock, steps=PAUSED_STEPS, analysis=None)
    assert (h.rollout["current_step"], h.rollout["pause_remaining"]) == ("pause 100s", 100.0)
    h.controller.tick(clock.advance(99.5))
    assert h.rollout["pause_remaining"] == pytest.approx(0.5)
    h.controller.tick(clock.advance(0.5))
    assert (h.rollout["phase"], h.rollout["weight"]) == ("promoted", 100)  # the last step needs no check


def test_a_timed_pause_with_analysis_also_needs_a_passing_check(tmp_path):
    h = Harness(tmp_path, steps=[{"set_weight": 10}, {"pause": "45s"}, {"set_weight": 50}])
    assert h.interval()["current_step"] == "pause 45s"  # the passing check ends the weight step
    assert h.interval(total=100)["current_step"] == "pause 45s"  # 30s served, inconclusive
    status = h.interval(total=100)  # 60s served but no passing check in the pause yet
    assert (status["current_step"], status["pause_remaining"]) == ("pause 45s", 0.0)
    assert h.interval()["weight"] == 50


def test_pause_until_promoted_waits_for_a_human(tmp_path):
    h = Harness(tmp_path, steps=[{"set_weight": 10}, {"pause": {}}, {"set_weight": 50}], analysis=None)
    status = h.rollout
    assert (status["phase"], status["current_step"], status["weight"]) == (
        "paused",
        "pause until promoted",
        10,
    )
    assert status["reason"] == "step 2 pauses until promoted"
    h.controller.tick(h.clock.advance(3600))
    assert h.rollout["phase"] == "paused"
    status = h.controller.command(ROUTE, "promote")
    assert (status["action"], status["phase"], status["weight"]) == ("promote", "promoted", 100)


def test_resume_also_ends_a_pause_until_promoted(tmp_path):
    h = Harness(tmp_path, steps=[{"set_weight": 10}, {"pause": {}}, {"set_weight": 50}, {"pause": "1h"}])
    assert h.interval()["phase"] == "paused"
    status = h.controller.command(ROUTE, "resume")
    assert (status["phase"], status["weight"]) == ("progressing", 50)


# --- restart ----------------------------------------------------------------------------------


def test_a_restart_mid_pause_resumes_with_the_remaining_time(tmp_path):
    first = Harness(tmp_path, steps=PAUSED_STEPS, analysis=None)
    first.controller.tick(first.clock.advance(40.0))
    asyncio.run(first.controller.stop())
    saved = json.loads((tmp_path / STATE_FILE).read_text())["rollouts"][ROUTE]
    assert (saved["step"], saved["entered"], saved["weight"]) == (1, True, 10)
    assert saved["pause_served"] == pytest.approx(40.0)

    # Another process: another monotonic clock; the time it was down does not count.
    clock = Clock(50_000.0)
    second = Harness(tmp_path, clock=clock, steps=PAUSED_STEPS, analysis=None)
    assert second.controller.weights() == {ROUTE: {"v2": 10, "v1": 90}}
    status = second.rollout
    assert (status["phase"], status["step"], status["weight"]) == ("progressing", 1, 10)
    assert status["pause_remaining"] == pytest.approx(60.0)
    second.controller.tick(clock.advance(59.0))
    assert second.rollout["step"] == 1
    second.controller.tick(clock.advance(1.0))
    assert (second.rollout["phase"], second.rollout["weight"]) == ("promoted", 100)


def test_pause_progress_is_saved_while_it_runs(tmp_path):
    h = Harness(tmp_path, steps=PAUSED_STEPS, analysis=None)
    for _ in range(4):
        h.controller.tick(h.clock.advance(3.0))
    # Saved at most SAVE_EVERY (5s) of pause time ago, without a stop: a crash loses little.
    assert load_states(str(tmp_path))[ROUTE].pause_served >= 12.0 - 5.0


def test_an_aborted_rollout_stays_aborted_after_a_restart(tmp_path):
    first = Harness(tmp_path)
    first.controller.command(ROUTE, "abort")
    second = Harness(tmp_path)
    assert (second.rollout["phase"], second.controller.weights()[ROUTE]["v2"]) == ("aborted", 0)


def test_an_unusable_state_dir_stops_the_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = rollout_config(blocker / "state", steps=SEED_STEPS)
    with pytest.raises(StartupError, match="rollout state"):
        RolloutController(config, Traffic(), WeightLog(), clock=Clock())


def test_no_rollouts_no_state_file(tmp_path):
    config = rollout_config(tmp_path / "state")
    config = msgspec.structs.replace(config, routes=[msgspec.structs.replace(config.routes[0], rollout=None)])
    controller = RolloutController(config, Traffic(), WeightLog(), clock=Clock())
    controller.tick()
    assert controller.weights() == {} and not (tmp_path / "state").exists()


# --- reload -----------------------------------------------------------------------------------


def test_a_reload_with_the_same_spec_keeps_the_state(tmp_path):
    h = Harness(tmp_path)
    h.interval()
    before = h.rollout
    weights = h.controller.reload(rollout_config(tmp_path, steps=SEED_STEPS, analysis=SEED_ANALYSIS))
    assert weights == {ROUTE: {"v2": 25, "v1": 75}}
    after = h.rollout
    assert (after["phase"], after["step"], after["weight"], after["history"]) == (
        before["phase"],
        before["step"],
        before["weight"],
        before["history"],
    )
    assert h.interval()["weight"] == 50


def test_a_reload_with_a_new_canary_restarts_the_rollout(tmp_path):
    h = Harness(tmp_path)
    h.interval()
    h.interval()
    assert h.rollout["weight"] == 50
    weights = h.controller.reload(
        rollout_config(tmp_path, steps=SEED_STEPS, analysis=SEED_ANALYSIS, canary="v3")
    )
    status = h.rollout
    assert (status["canary"], status["phase"], status["step"], status["failures"]) == (
        "v3",
        "progressing",
        0,
        0,
    )
    assert status["history"][-1]["event"] == "restart"
    assert "canary changed from shop/v2 to shop/v3" in status["reason"]
    assert weights[ROUTE]["v3"] == 0  # the reload itself starts the new canary at 0 ...
    h.controller.tick(h.clock.now)
    assert h.rollout["weight"] == 5  # ... and its first step begins at the next tick


def test_a_reload_with_edited_steps_keeps_the_position_within_them(tmp_path):
    h = Harness(tmp_path)
    for _ in range(3):
        h.interval()
    assert h.rollout["step"] == 3
    h.controller.reload(rollout_config(tmp_path, steps=SEED_STEPS[:2], analysis=SEED_ANALYSIS))
    assert h.rollout["step"] == 1


def test_a_reload_without_the_rollout_drops_it(tmp_path):
    h = Harness(tmp_path)
    config = rollout_config(tmp_path)
    config = msgspec.structs.replace(config, routes=[msgspec.structs.replace(config.routes[0], rollout=None)])
    assert h.controller.reload(config) == {}
    assert h.controller.status()["rollouts"] == {}


# --- commands ---------------------------------------------------------------------------------


def test_promote_moves_one_step(tmp_path):
    h = Harness(tmp_path)
    status = h.controller.command(ROUTE, "promote")
    assert (status["phase"], status["step"], status["weight"]) == ("progressing", 1, 25)
    assert status["history"][-1]["reason"] == "step 1 promoted by an operator"
    assert h.weights.canary_percents() == [5, 25]


def test_promote_full_goes_straight_to_100(tmp_path):
    h = Harness(tmp_path)
    status = h.controller.command(ROUTE, "promote_full")
    assert (status["phase"], status["weight"]) == ("promoted", 100)
    with pytest.raises(RolloutConflict, match="cannot abort a rollout that is promoted") as caught:
        h.controller.command(ROUTE, "abort")
    assert caught.value.status == 409


def test_pause_and_resume(tmp_path):
    h = Harness(tmp_path)
    assert h.controller.command(ROUTE, "pause")["phase"] == "paused"
    assert h.interval(total=100)["weight"] == 5
    with pytest.raises(RolloutConflict):
        h.controller.command(ROUTE, "pause")
    assert h.controller.command(ROUTE, "resume")["phase"] == "progressing"
    assert h.interval()["weight"] == 25


def test_a_check_passed_while_paused_counts_once_resumed(tmp_path):
    h = Harness(tmp_path)
    h.controller.command(ROUTE, "pause")
    assert h.interval()["weight"] == 5  # a passing check does not move a paused rollout ...
    assert h.controller.command(ROUTE, "resume")["weight"] == 25  # ... until it is resumed


def test_paused_time_does_not_count_towards_a_timed_pause(tmp_path):
    h = Harness(tmp_path, steps=PAUSED_STEPS, analysis=None)
    h.controller.tick(h.clock.advance(30))
    h.controller.command(ROUTE, "pause")
    h.controller.tick(h.clock.advance(500))
    h.controller.command(ROUTE, "resume")
    assert h.rollout["pause_remaining"] == pytest.approx(70.0)


def test_abort_and_retry(tmp_path):
    h = Harness(tmp_path)
    h.interval()
    status = h.controller.command(ROUTE, "abort")
    assert (status["phase"], status["weight"], status["reason"]) == ("aborted", 0, "aborted by an operator")
    with pytest.raises(RolloutConflict):
        h.controller.command(ROUTE, "promote")
    status = h.controller.command(ROUTE, "retry")
    assert (status["phase"], status["step"], status["weight"], status["failures"]) == ("progressing", 0, 5, 0)
    assert h.weights.canary_percents() == [5, 25, 0, 5]


def test_status_command_changes_nothing(tmp_path):
    h = Harness(tmp_path)
    status = h.controller.command(ROUTE, "status")
    assert status["action"] == "status" and status["weights"] == {"v2": 5, "v1": 95}
    assert h.controller.transitions == {}


def test_unknown_route_and_unknown_action(tmp_path):
    h = Harness(tmp_path)
    with pytest.raises(UnknownRollout, match="no rollout on a route named 'nope'") as caught:
        h.controller.command("nope", "promote")
    assert caught.value.status == 404
    with pytest.raises(BadAction) as bad:
        h.controller.command(ROUTE, "yolo")
    assert bad.value.status == 400


def test_status_document_is_json_ready(tmp_path):
    h = Harness(tmp_path)
    h.interval(error_ratio=0.2)
    document = h.controller.status()
    json.dumps(document)
    rollout = document["rollouts"][ROUTE]
    assert rollout["last_check"]["outcome"] == "fail"
    assert rollout["next_check_in"] == pytest.approx(INTERVAL)
    assert document["state_file"].endswith(STATE_FILE)


def test_transitions_are_logged(tmp_path, caplog):
    h = Harness(tmp_path)
    caplog.set_level("INFO", logger="graylane")
    for _ in range(3):
        h.interval(error_ratio=0.2)
    aborted = [r for r in caplog.records if "-> aborted" in r.getMessage()]
    assert len(aborted) == 1 and aborted[0].levelname == "WARNING"
    assert "rollout shop: progressing -> aborted (fail), canary v2 at 0%" in aborted[0].getMessage()


def test_listeners_hear_every_transition(tmp_path):
    h = Harness(tmp_path)
    heard = []
    h.controller.listeners.append(lambda route, change: heard.append((route, change.event, change.after)))
    h.controller.command(ROUTE, "pause")
    h.controller.command(ROUTE, "abort")
    assert heard == [(ROUTE, "pause", "paused"), (ROUTE, "abort", "aborted")]


# --- the real loop, short intervals -----------------------------------------------------------


class LiveTraffic(Traffic):
    """Serves a healthy interval's worth of requests whenever the controller looks."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = lambda: 0

    def snapshot(self, at: float = 0.0):
        self.split(self.weight(), 200)
        return super().snapshot(at)


def test_the_loop_runs_a_clean_rollout_to_100_percent(tmp_path):
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        traffic = LiveTraffic()
        config = rollout_config(
            tmp_path,
            steps=[*SEED_STEPS[:2], {"pause": "50ms"}, *SEED_STEPS[2:]],
            analysis={**SEED_ANALYSIS, "interval": "20ms", "min_requests": 5},
        )
        controller = RolloutController(config, traffic, WeightLog(), clock=loop.time)
        traffic.weight = lambda: (
            controller.weights()[ROUTE]["v2"] * 100 // sum(controller.weights()[ROUTE].values())
        )
        done = asyncio.Event()
        phases = []

        def heard(route, change):
            phases.append(change.after)
            if change.after in ("promoted", "aborted"):
                done.set()

        controller.listeners.append(heard)
        controller.start()
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await controller.stop()
        assert load_states(str(tmp_path))[ROUTE].phase == "promoted"
        return phases

    phases = asyncio.run(scenario())
    assert phases[-1] == "promoted"
    assert "aborted" not in phases
