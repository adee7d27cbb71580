"""The sliding window: quantiles from buckets, differences of snapshots, the ring of ticks. No sockets."""

from __future__ import annotations

import json
from bisect import bisect_left
from itertools import accumulate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.observe.counters import BOUNDS, NO_ROUTE, RequestCounters
from proxy.observe.window import Window, WindowStats, by_version, histogram_quantile, stats_between

SLOTS = len(BOUNDS) + 1


def counts(**at_bound: int) -> list[int]:
    """Bucket counts from {"b0_01": n, "inf": n}: the bucket whose upper bound is 0.01, +Inf."""
    out = [0] * SLOTS
    for name, n in at_bound.items():
        index = SLOTS - 1 if name == "inf" else BOUNDS.index(float(name[1:].replace("_", ".")))
        out[index] = n
    return out


def prometheus_quantile(q: float, per_bucket: list[int]) -> float | None:
    """Prometheus' bucketQuantile, restated on cumulative counts, to compare with."""
    cumulative = list(accumulate(per_bucket))
    total = cumulative[-1]
    if total == 0:
        return None
    rank = q * total
    b = bisect_left(cumulative[:-1], rank)  # first finite bucket whose cumulative count reaches the rank
    if b == len(BOUNDS):
        return BOUNDS[-1]
    start = BOUNDS[b - 1] if b else 0.0
    in_bucket = cumulative[b] - (cumulative[b - 1] if b else 0)
    before = cumulative[b - 1] if b else 0
    if in_bucket == 0:
        return start
    return start + (BOUNDS[b] - start) * (rank - before) / in_bucket


# --- histogram_quantile --------------------------------------------------------------------


def test_quantile_interpolates_inside_the_bucket():
    one_bucket = counts(b0_025=100)  # all in (0.01, 0.025]
    assert histogram_quantile(0.5, one_bucket) == pytest.approx(0.01 + 0.015 * 0.5)
    assert histogram_quantile(0.99, one_bucket) == pytest.approx(0.01 + 0.015 * 0.99)


def test_quantile_first_bucket_starts_at_zero():
    assert histogram_quantile(0.5, counts(b0_001=10)) == pytest.approx(0.0005)


def test_quantile_across_buckets():
    mixed = counts(b0_001=90, b0_5=10)
    assert histogram_quantile(0.5, mixed) == pytest.approx(0.001 * 50 / 90)
    assert histogram_quantile(0.99, mixed) == pytest.approx(0.25 + 0.25 * 9 / 10)
    assert histogram_quantile(0.9, mixed) == pytest.approx(0.001)  # rank 90 ends the first bucket


def test_quantile_in_the_inf_bucket_is_the_highest_bound():
    assert histogram_quantile(0.99, counts(b0_001=50, inf=50)) == 10.0


def test_quantile_without_observations_is_none():
    assert histogram_quantile(0.5, [0] * SLOTS) is None


@pytest.mark.parametrize("q", [-0.1, 1.5])
def test_quantile_outside_0_1_is_refused(q):
    with pytest.raises(ValueError, match="between 0 and 1"):
        histogram_quantile(q, counts(b0_001=1))


@given(
    st.lists(st.integers(0, 1000), min_size=SLOTS, max_size=SLOTS),
    st.floats(0.0, 1.0),
)
def test_quantile_matches_prometheus(per_bucket, q):
    assert histogram_quantile(q, per_bucket) == pytest.approx(prometheus_quantile(q, per_bucket))


@given(st.lists(st.integers(0, 1000), min_size=SLOTS, max_size=SLOTS).filter(any))
def test_quantile_grows_with_q(per_bucket):
    values = [histogram_quantile(q / 20, per_bucket) for q in range(21)]
    assert values == sorted(values)
    assert values[0] >= 0.0 and values[-1] <= BOUNDS[-1]


# --- stats_between / by_version ------------------------------------------------------------


def two_versions() -> tuple[RequestCounters, int, int]:
    counters = RequestCounters()
    return counters, counters.slot("shop", "shop", "v1"), counters.slot("shop", "shop", "v2")


def test_stats_between_counts_only_what_happened_in_between():
    counters, v1, v2 = two_versions()
    for _ in range(50):
        counters.record(v1, 200, 0.003, 10, 100)  # before the window
    older = counters.snapshot(at=100.0)
    for _ in range(95):
        counters.record(v1, 200, 0.02, 10, 100)
    for _ in range(5):
        counters.record(v1, 500, 0.02, 0, 20)
    for _ in range(80):
        counters.record(v2, 200, 0.002, 0, 0)
    for _ in range(20):
        counters.record(v2, 503, 0.3, 0, 0)
    counters.record(NO_ROUTE, 404, 0.0001, 0, 0)
    newer = counters.snapshot(at=110.0)

    stats = stats_between(older, newer)
    assert set(stats) == {NO_ROUTE, v1, v2}
    one = stats[v1]
    assert one.seconds == 10.0
    assert one.requests == 100 and one.codes == {200: 95, 500: 5}
    assert one.errors == 5 and one.error_ratio == pytest.approx(0.05)
    assert one.rate == pytest.approx(10.0) and one.error_rate == pytest.approx(0.5)
    assert one.bytes_in == 950 and one.bytes_out == 9600
    assert one.latency_sum == pytest.approx(100 * 0.02)
    assert one.mean == pytest.approx(0.02)
    assert one.p50 == pytest.approx(0.01 + 0.015 * 0.5)  # the 50 earlier 0.003s are not in it
    two = stats[v2]
    assert two.requests == 100 and two.errors == 20 and two.error_ratio == pytest.approx(0.2)
    assert two.p50 == pytest.approx(0.001 + 0.0015 * 50 / 80)  # 0.002 is in (0.001, 0.0025]
    assert two.p99 == pytest.approx(0.25 + 0.25 * 19 / 20)
    assert stats[NO_ROUTE].codes == {404: 1} and stats[NO_ROUTE].errors == 0


def test_four_hundreds_are_not_errors():
    counters, v1, _ = two_versions()
    older = counters.snapshot(at=0.0)
    for status in (400, 404, 429, 499, 500, 502, 504, 599):
        counters.record(v1, status, 0.01, 0, 0)
    assert stats_between(older, counters.snapshot(at=1.0))[v1].errors == 4


def test_a_quiet_slot_has_zero_figures():
    counters, v1, _ = two_versions()
    older = counters.snapshot(at=0.0)
    stats = stats_between(older, counters.snapshot(at=5.0))[v1]
    assert (stats.requests, stats.errors, stats.rate, stats.error_ratio) == (0, 0, 0.0, 0.0)
    assert stats.p50 is None and stats.p99 is None and stats.mean is None and stats.codes == {}


def test_a_slot_newer_than_the_older_snapshot_starts_at_zero():
    counters, _, _ = two_versions()
    older = counters.snapshot(at=0.0)
    fresh = counters.slot("new", "shop", "v3")
    counters.record(fresh, 200, 0.01, 0, 0)
    stats = stats_between(older, counters.snapshot(at=1.0))
    assert stats[fresh].requests == 1


def test_counters_that_started_again_count_from_zero():
    before, v1, _ = two_versions()
    for _ in range(10):
        before.record(v1, 200, 0.01, 0, 0)
    older = before.snapshot(at=0.0)
    after, v1_again, _ = two_versions()  # e.g. a restarted worker process
    for _ in range(3):
        after.record(v1_again, 500, 0.01, 0, 0)
    stats = stats_between(older, after.snapshot(at=1.0))[v1_again]
    assert stats.requests == 3 and stats.errors == 3 and stats.codes == {500: 3}


def test_stats_between_is_pure():
    counters, v1, _ = two_versions()
    older = counters.snapshot(at=0.0)
    counters.record(v1, 200, 0.01, 0, 0)
    newer = counters.snapshot(at=1.0)
    first = stats_between(older, newer)[v1]
    counters.record(v1, 200, 0.01, 0, 0)
    second = stats_between(older, newer)[v1]
    assert (first.requests, first.codes, first.buckets) == (second.requests, second.codes, second.buckets)


def test_by_version_adds_routes_and_leaves_out_no_route():
    counters = RequestCounters()
    a = counters.slot("web", "shop", "v2")
    b = counters.slot("api", "shop", "v2")
    c = counters.slot("api", "shop", "v1")
    d = counters.slot("cart", "cart", "v2")  # same version name, another service
    older = counters.snapshot(at=0.0)
    for _ in range(9):
        counters.record(a, 200, 0.002, 1, 0)
    counters.record(b, 503, 0.7, 1, 0)
    counters.record(c, 200, 0.002, 0, 0)
    counters.record(d, 200, 0.002, 0, 0)
    counters.record(NO_ROUTE, 404, 0.001, 0, 0)
    newer = counters.snapshot(at=2.0)

    versions = by_version(stats_between(older, newer), newer.keys)
    assert set(versions) == {("shop", "v2"), ("shop", "v1"), ("cart", "v2")}
    v2 = versions[("shop", "v2")]
    assert v2.requests == 10 and v2.codes == {200: 9, 503: 1}
    assert v2.error_ratio == pytest.approx(0.1) and v2.rate == pytest.approx(5.0)
    assert v2.bytes_in == 10
    assert v2.p99 == pytest.approx(0.5 + 0.5 * 0.9 / 1)  # rank 9.9: inside the (0.5, 1] bucket
    assert versions[("cart", "v2")].requests == 1


def test_summary_is_json_ready():
    stats = WindowStats(2.0, {200: 3, 500: 1}, tuple(counts(b0_01=4)), 0.02, 5, 6)
    summary = json.loads(json.dumps(stats.summary()))
    assert summary["requests"] == 4 and summary["errors"] == 1
    assert summary["rate"] == 2.0 and summary["error_ratio"] == 0.25
    assert summary["codes"] == {"200": 3, "500": 1}
    assert summary["p50"] == pytest.approx(0.0075)


# --- Window ----------------------------------------------------------------------------------


def test_window_before_two_ticks_knows_nothing():
    counters, _, _ = two_versions()
    window = Window(counters)
    assert window.per_slot(10) == {} and window.per_version(10) == {}
    window.tick(0.0)
    assert window.pair(10) is None


def test_window_answers_for_the_last_n_seconds():
    counters, v1, v2 = two_versions()
    window = Window(counters, span=60)
    for second in range(30):
        window.tick(float(second))
        for _ in range(second):  # second s: s requests to v1, one failing one to v2
            counters.record(v1, 200, 0.01, 0, 0)
        counters.record(v2, 502, 0.01, 0, 0)
    window.tick(30.0)

    last10 = window.per_slot(10)
    assert last10[v1].seconds == 10.0
    assert last10[v1].requests == sum(range(20, 30))
    assert last10[v2].errors == 10 and last10[v2].error_rate == pytest.approx(1.0)
    everything = window.per_slot(600)  # more than kept: from the oldest snapshot
    assert everything[v1].seconds == 30.0 and everything[v1].requests == sum(range(30))
    versions = window.per_version(10)
    assert versions[("shop", "v2")].error_ratio == 1.0


def test_window_keeps_span_seconds():
    counters, v1, _ = two_versions()
    window = Window(counters, span=5)
    for second in range(20):
        counters.record(v1, 200, 0.01, 0, 0)
        window.tick(float(second))
    older, newer = window.pair(600)
    assert (older.at, newer.at) == (14.0, 19.0)


def test_window_picks_the_snapshot_closest_to_n_seconds_back():
    counters, _, _ = two_versions()
    window = Window(counters)
    for at in (100.0, 101.02, 101.97, 103.05, 104.0):  # a timer with jitter
        window.tick(at)
    older, newer = window.pair(2.0)
    assert (older.at, newer.at) == (101.97, 104.0)


def test_window_tick_without_time_passing_replaces_the_newest():
    counters, v1, _ = two_versions()
    window = Window(counters)
    window.tick(1.0)
    counters.record(v1, 200, 0.01, 0, 0)
    window.tick(2.0)
    counters.record(v1, 200, 0.01, 0, 0)
    window.tick(2.0)
    older, newer = window.pair(1.0)
    assert (older.at, newer.at) == (1.0, 2.0)
    assert window.per_slot(1.0)[v1].requests == 2


def test_window_span_must_be_positive():
    with pytest.raises(ValueError, match="span"):
        Window(RequestCounters(), span=0)
