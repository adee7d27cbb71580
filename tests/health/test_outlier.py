"""Passive outlier ejection: bookkeeping with a hand clock, no sockets."""

from __future__ import annotations

import pytest

from proxy.config.schema import Duration, Outlier, Pool
from proxy.health.outlier import OutlierDetector, endpoint_key, max_ejected
from proxy.routing.endpoints import Endpoint

SETTINGS = Outlier(
    consecutive_errors=3,
    base_ejection_time=Duration(10.0),
    max_ejection_time=Duration(25.0),
    max_ejection_percent=50.0,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def endpoints(version: str, count: int, service: str = "shop") -> list[Endpoint]:
    return [Endpoint("127.0.0.1", 9000 + i, service, version, Pool()) for i in range(count)]


@pytest.fixture
def world():
    clock = Clock()
    changes: list[tuple[tuple[str, str, str], bool]] = []
    detector = OutlierDetector(clock, lambda key, ejected: changes.append((key, ejected)))
    v1 = endpoints("v1", 4)
    v2 = endpoints("v2", 1)
    detector.configure({"shop": SETTINGS}, [endpoint_key(e) for e in v1 + v2])
    return detector, clock, changes, v1, v2


def fail(detector: OutlierDetector, endpoint: Endpoint, times: int) -> None:
    for _ in range(times):
        detector.record(endpoint, False)


def test_consecutive_failures_eject(world):
    detector, clock, changes, v1, _ = world
    fail(detector, v1[0], 2)
    assert changes == []
    fail(detector, v1[0], 1)
    assert changes == [(endpoint_key(v1[0]), True)]
    assert detector.ejected[endpoint_key(v1[0])].until == clock.now + 10.0


def test_a_success_resets_the_run(world):
    detector, _, changes, v1, _ = world
    fail(detector, v1[0], 2)
    detector.record(v1[0], True)
    fail(detector, v1[0], 2)
    assert changes == []
    assert detector.failing == {v1[0]: 2}


def test_successes_leave_nothing_behind(world):
    detector, _, _, v1, _ = world
    for _ in range(100):
        detector.record(v1[1], True)
    assert detector.failing == {}


def test_ejection_time_grows_with_each_ejection_and_is_capped(world):
    detector, clock, _, v1, _ = world
    key = endpoint_key(v1[0])
    rests = []
    for _ in range(4):
        fail(detector, v1[0], 3)
        ejection = detector.ejected[key]
        rests.append(ejection.until - clock.now)
        clock.now = ejection.until
        assert detector.sweep(clock.now) == [key]
    assert rests == [10.0, 20.0, 25.0, 25.0]


def test_the_count_is_forgotten_after_behaving_for_max_ejection_time(world):
    detector, clock, _, v1, _ = world
    key = endpoint_key(v1[0])
    fail(detector, v1[0], 3)
    clock.now += 10
    detector.sweep(clock.now)
    clock.now += 25  # back for max_ejection_time
    fail(detector, v1[0], 3)
    assert detector.ejected[key].times == 1


def test_sweep_brings_endpoints_back_on_time(world):
    detector, clock, changes, v1, _ = world
    fail(detector, v1[0], 3)
    assert detector.next_expiry() == clock.now + 10
    assert detector.sweep(clock.now + 9.9) == []
    assert detector.sweep(clock.now + 10) == [endpoint_key(v1[0])]
    assert changes[-1] == (endpoint_key(v1[0]), False)
    assert detector.next_expiry() is None


def test_at_most_max_ejection_percent_of_a_version(world):
    detector, _, changes, v1, _ = world
    for endpoint in v1:
        fail(detector, endpoint, 3)
    assert [key for key, _ in changes] == [endpoint_key(v1[0]), endpoint_key(v1[1])]  # 50% of 4
    assert detector.skipped == 2


def test_a_version_of_one_endpoint_can_still_lose_it(world):
    detector, _, changes, _, v2 = world
    fail(detector, v2[0], 3)
    assert changes == [(endpoint_key(v2[0]), True)]


@pytest.mark.parametrize(
    ("count", "percent", "allowed"),
    [(4, 50, 2), (1, 50, 1), (3, 10, 1), (10, 10, 1), (10, 25, 2), (5, 100, 5), (5, 0, 0), (0, 50, 0)],
)
def test_max_ejected(count, percent, allowed):
    assert max_ejected(count, percent) == allowed


def test_services_without_settings_are_ignored(world):
    detector, _, changes, _, _ = world
    other = endpoints("v1", 1, service="other")[0]
    fail(detector, other, 50)
    assert changes == [] and detector.failing == {}


def test_late_failures_of_an_ejected_endpoint_change_nothing(world):
    detector, _, changes, v1, _ = world
    fail(detector, v1[0], 3)
    fail(detector, v1[0], 3)  # answers that were in flight when it was ejected
    assert len(changes) == 1 and detector.ejections == 1


def test_ejections_survive_a_new_table_but_not_a_removed_endpoint(world):
    detector, _, changes, v1, v2 = world
    fail(detector, v1[0], 3)
    fail(detector, v1[1], 3)
    # A reload: new Endpoint objects for the same addresses, and v1[1] is gone.
    again = endpoints("v1", 4)
    keys = [endpoint_key(e) for e in again if e.port != v1[1].port] + [endpoint_key(v2[0])]
    detector.configure({"shop": SETTINGS}, keys)
    assert detector.is_ejected(endpoint_key(again[0]))
    assert not detector.is_ejected(endpoint_key(v1[1]))
    assert changes[-1] == (endpoint_key(v1[1]), False)


def test_turning_outlier_detection_off_ends_ejections(world):
    detector, _, changes, v1, v2 = world
    fail(detector, v1[0], 3)
    detector.configure({}, [endpoint_key(e) for e in v1 + v2])
    assert detector.ejected == {} and changes[-1] == (endpoint_key(v1[0]), False)
