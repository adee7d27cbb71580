"""RequestCounters: slots by name, what record() counts, snapshots; record()'s cost is reported."""

from __future__ import annotations

import timeit

import msgspec
import pytest

from proxy.config.schema import Config
from proxy.observe.counters import BOUNDS, NO_ROUTE, RequestCounters, Snapshot
from proxy.routing import RouteTable

SERVICES = {
    "shop": {"versions": {"v1": {"endpoints": ["10.0.1.1:8080"]}, "v2": {"endpoints": ["10.0.2.1:8080"]}}},
    "cart": {"versions": {"v1": {"endpoints": ["10.0.3.1:8080"]}}},
}


def route_table(routes: list[dict]) -> RouteTable:
    data = {"version": 1, "listeners": [{"address": "127.0.0.1:0"}], "services": SERVICES, "routes": routes}
    return RouteTable(msgspec.convert(data, Config))


def test_slot_zero_is_the_no_route_slot():
    counters = RequestCounters()
    assert NO_ROUTE == 0
    assert counters.slot("", "", "") == NO_ROUTE
    assert counters.keys == (("", "", ""),)


def test_a_name_triple_keeps_its_slot():
    counters = RequestCounters()
    a = counters.slot("shop", "shop", "v1")
    b = counters.slot("shop", "shop", "v2")
    c = counters.slot("other", "shop", "v1")
    assert len({NO_ROUTE, a, b, c}) == 4
    assert counters.slot("shop", "shop", "v2") == b
    assert counters.slot("shop", "shop", "v1") == a
    assert counters.keys[b] == ("shop", "shop", "v2")


def test_record_counts_status_latency_bucket_and_bytes():
    counters = RequestCounters()
    slot = counters.slot("shop", "shop", "v1")
    counters.record(slot, 200, 0.001, 10, 100)  # exactly on a bound: that bucket (le)
    counters.record(slot, 200, 0.0011, 20, 200)
    counters.record(slot, 503, 10.0, 0, 50)
    counters.record(slot, 504, 60.0, 0, 0)  # beyond the last bound: +Inf
    totals = counters.snapshot().slots[slot]
    assert totals.codes == {200: 2, 503: 1, 504: 1}
    expected = [0] * (len(BOUNDS) + 1)
    expected[0] = 1
    expected[1] = 1
    expected[BOUNDS.index(10.0)] = 1
    expected[-1] = 1
    assert list(totals.buckets) == expected
    assert totals.requests == 4
    assert totals.seconds == pytest.approx(0.001 + 0.0011 + 10.0 + 60.0)
    assert (totals.bytes_in, totals.bytes_out) == (30, 350)
    assert counters.snapshot().slots[NO_ROUTE].requests == 0


def test_slots_are_counted_apart():
    counters = RequestCounters()
    v1 = counters.slot("shop", "shop", "v1")
    v2 = counters.slot("shop", "shop", "v2")
    for _ in range(3):
        counters.record(v1, 200, 0.02, 0, 0)
    counters.record(v2, 500, 0.02, 0, 0)
    counters.record(NO_ROUTE, 404, 0.0001, 0, 0)
    slots = counters.snapshot().slots
    assert slots[v1].codes == {200: 3}
    assert slots[v2].codes == {500: 1}
    assert slots[NO_ROUTE].codes == {404: 1}


def test_a_snapshot_does_not_move_with_the_counters():
    counters = RequestCounters()
    slot = counters.slot("shop", "shop", "v1")
    counters.record(slot, 200, 0.01, 1, 1)
    before = counters.snapshot(at=5.0)
    counters.record(slot, 200, 0.01, 1, 1)
    counters.slot("new", "shop", "v1")
    assert before.at == 5.0
    assert before.slots[slot].codes == {200: 1}
    assert before.slots[slot].requests == 1
    assert len(before.slots) == len(before.keys) == 2
    assert counters.snapshot().slots[slot].codes == {200: 2}


def test_connect_errors_by_service_version_endpoint():
    counters = RequestCounters()
    counters.connect_error("shop", "v2", "10.0.2.1:8080")
    counters.connect_error("shop", "v2", "10.0.2.1:8080")
    counters.connect_error("shop", "v1", "10.0.1.1:8080")
    assert counters.snapshot().connect_errors == {
        ("shop", "v2", "10.0.2.1:8080"): 2,
        ("shop", "v1", "10.0.1.1:8080"): 1,
    }


def test_snapshot_travels_as_msgpack():
    counters = RequestCounters()
    slot = counters.slot("shop", "shop", "v1")
    counters.record(slot, 200, 0.3, 5, 6)
    counters.connect_error("shop", "v1", "10.0.1.1:8080")
    snap = counters.snapshot(at=12.5)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=Snapshot) == snap


def test_assign_sets_target_slots_and_they_survive_a_reload():
    counters = RequestCounters()
    routes = [
        {"name": "shop", "service": "shop", "match": {"path": {"prefix": "/shop"}}},
        {"name": "cart", "service": "cart"},
    ]
    first = route_table(routes)
    counters.assign(first.targets)
    slots = {(t.route_name, t.group.service, t.version_name): t.stats_slot for t in first.targets}
    assert set(slots) == {("shop", "shop", "v1"), ("shop", "shop", "v2"), ("cart", "cart", "v1")}
    assert len(set(slots.values())) == 3 and NO_ROUTE not in slots.values()
    for key, slot in slots.items():
        assert counters.keys[slot] == key
    counters.record(slots[("shop", "shop", "v2")], 200, 0.01, 0, 0)

    # A reload in another order, with one route gone: the same names get the same slots.
    second = route_table(list(reversed(routes[1:])) + [routes[0]])
    counters.assign(second.targets)
    for target in second.targets:
        assert target.stats_slot == slots[(target.route_name, target.group.service, target.version_name)]
    assert counters.snapshot().slots[slots[("shop", "shop", "v2")]].codes == {200: 1}
    counters.assign(route_table(routes[1:]).targets)
    assert len(counters.keys) == 4  # the gone route keeps its slot (and its counts)


def test_record_cost(capsys):
    """Reported, not asserted tightly (machines differ); the bound only catches a gross regression."""
    counters = RequestCounters()
    for i in range(50):
        counters.slot(f"route{i}", "shop", "v1")
    slot = counters.slot("shop", "shop", "v2")
    record = counters.record
    number = 200_000
    best = min(timeit.repeat(lambda: record(slot, 200, 0.0123, 512, 2048), number=number, repeat=5))
    empty = min(timeit.repeat(lambda: None, number=number, repeat=5))
    cost = (best - empty) / number
    with capsys.disabled():
        print(f"\nrecord() cost: {cost * 1e9:.0f} ns per request")
    assert counters.snapshot().slots[slot].requests == number * 5
    assert cost < 5e-6
