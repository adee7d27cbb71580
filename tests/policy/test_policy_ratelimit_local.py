"""In-process token buckets (GCRA): bursts, refill, accuracy over time, idle keys expiring."""

from __future__ import annotations

import pytest

from proxy.policy.ratelimit_local import LocalBuckets


def test_a_burst_passes_at_once_then_one_per_interval() -> None:
    buckets = LocalBuckets(rate=10, burst=5)
    now = 100.0
    assert [buckets.take("k", now) for _ in range(5)] == [0.0] * 5
    wait = buckets.take("k", now)
    assert wait == pytest.approx(0.1)
    assert buckets.take("k", now + 0.099) > 0
    assert buckets.take("k", now + 0.1) == 0.0
    assert buckets.take("k", now + 0.1) == pytest.approx(0.1)


def test_keys_have_their_own_buckets() -> None:
    buckets = LocalBuckets(rate=1, burst=1)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) > 0
    assert buckets.take("b", 0.0) == 0.0
    assert buckets.take(b"a", 0.0) == 0.0  # bytes and str keys are different keys


def test_a_refused_request_takes_nothing() -> None:
    buckets = LocalBuckets(rate=1, burst=2)
    buckets.take("k", 0.0)
    buckets.take("k", 0.0)
    for _ in range(100):
        assert buckets.take("k", 0.5) > 0
    assert buckets.take("k", 1.0) == 0.0  # one token back after 1 s despite the refusals


@pytest.mark.parametrize(
    ("rate", "burst", "seconds", "step"), [(100, 20, 5, 0.0001), (3, 1, 10, 0.001), (1000, 1, 1, 0.0002)]
)
def test_accepted_over_time_is_burst_plus_rate_times_duration(
    rate: float, burst: int, seconds: float, step: float
) -> None:
    buckets = LocalBuckets(rate=rate, burst=burst)
    accepted = 0
    ticks = int(seconds / step)
    for i in range(ticks + 1):  # a request every ``step`` from t=0 to t=seconds, both included
        if buckets.take("k", 1000.0 + i * step) == 0.0:
            accepted += 1
    assert abs(accepted - (burst + rate * seconds)) <= 1


def test_remaining_and_give_back() -> None:
    buckets = LocalBuckets(rate=10, burst=3)
    assert buckets.remaining("k", 0.0) == 3
    buckets.take("k", 0.0)
    buckets.take("k", 0.0)
    assert buckets.remaining("k", 0.0) == 1
    buckets.give_back("k")
    assert buckets.remaining("k", 0.0) == 2
    assert buckets.remaining("k", 10.0) == 3


def test_idle_keys_are_forgotten_without_changing_any_decision() -> None:
    buckets = LocalBuckets(rate=10, burst=10)  # refills in 1 s: the rotation period
    for i in range(1000):
        buckets.take(f"client-{i}", 0.0)
    assert len(buckets) == 1000
    buckets.take("busy", 1.5)  # first rotation: the 1000 keys move to "old"
    assert len(buckets) == 1001
    buckets.take("busy", 3.0)  # second rotation: untouched for a whole period, they are dropped
    assert len(buckets) == 1
    # a dropped key starts with a full bucket, which is what it had anyway
    assert [buckets.take("client-1", 3.0) for _ in range(10)] == [0.0] * 10


def test_a_busy_key_is_not_forgotten_across_rotations() -> None:
    buckets = LocalBuckets(rate=1, burst=2)  # rotations every 2 s from the first call
    buckets.take("x", 0.0)
    assert [buckets.take("k", 1.9) for _ in range(2)] == [0.0, 0.0]  # empty until 3.9
    buckets.take("x", 2.0)  # rotation: k is old now
    assert buckets.take("k", 2.1) == pytest.approx(0.8)  # still remembered, still empty
    buckets.take("x", 4.0)  # rotation: k (touched at 2.1) is kept
    assert "k" in buckets._old
    assert buckets.take("k", 4.0) == 0.0


def test_memory_is_bounded_by_max_keys() -> None:
    buckets = LocalBuckets(rate=1, burst=1, max_keys=100)
    for i in range(1000):
        buckets.take(i, 0.0)
    assert len(buckets) <= 201
    assert buckets.evictions > 0


def test_bad_settings_are_refused() -> None:
    for rate, burst in ((0, 1), (1, 0), (-1, 5)):
        with pytest.raises(ValueError):
            LocalBuckets(rate=rate, burst=burst)
