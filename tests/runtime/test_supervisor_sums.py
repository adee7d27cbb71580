"""What the supervisor of ``workers: N`` adds up: the counters of exited workers folded into one
running total (``Retired``), and each endpoint's pools and health marks over the live workers
(``merge_endpoints``) as /status shows them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from proxy.admin.status import status_document
from proxy.config.convert import convert
from proxy.config.schema import Config
from proxy.config.validate import validate
from proxy.observe.counters import RequestCounters, SlotTotals, Snapshot
from proxy.observe.snapshot import BOUNDS
from proxy.observe.stats import Stats
from proxy.runtime.ipc import (
    EndpointState,
    Retired,
    WorkerReport,
    _decoder,
    encode,
    merge_endpoints,
    merge_policy,
    merge_snapshots,
)
from proxy.runtime.server import Server, build_table
from proxy.runtime.supervisor import Supervisor
from proxy.runtime.worker import endpoint_states
from proxy.testing import Backend, GraylaneProcess, poll_until, request
from proxy.testing.process import proxy_config

V1 = ["127.0.0.1:9101", "127.0.0.1:9102"]
V2 = ["127.0.0.1:9201", "127.0.0.1:9202"]
KEY = ("all", "api", "v1")
URL = "https://idp.test/jwks"


def _config(versions: dict[str, list[str]] | None = None, on_empty_version: str = "stable") -> Config:
    """Two workers; service api (v1 stable, v2) and one route over it."""
    versions = versions or {"v1": V1, "v2": V2}
    data = {
        "version": 1,
        "workers": 2,
        "listeners": [{"address": "127.0.0.1:0"}],
        "access_log": {"enabled": False},
        "services": {
            "api": {
                "versions": {name: {"endpoints": endpoints} for name, endpoints in versions.items()},
                "on_empty_version": on_empty_version,
            }
        },
        "routes": [{"name": "all", "service": "api"}],
    }
    config, problems = convert(data, Config)
    assert config is not None, problems
    assert validate(config) == []
    return config


def _counters(requests: int) -> Snapshot:
    """A worker's request counters: ``requests`` 200s on route all -> api/v1."""
    buckets = (requests,) + (0,) * len(BOUNDS)
    slot = SlotTotals({200: requests}, buckets, 0.01 * requests, 10 * requests, 100 * requests)
    return Snapshot(0.0, (KEY,), (slot,), {("api", "v1", V1[0]): requests // 10})


def _report(
    requests: int,
    *,
    worker: int = 0,
    endpoints: list[EndpointState] | None = None,
    connections: int = 0,
    keys: int = 0,
) -> WorkerReport:
    """A worker's report whose every counter is ``requests`` (or derived from it)."""
    stats = Stats()
    stats.requests = requests
    stats.responses_by_class[2] = requests
    stats.errors_by_flag["UF"] = requests // 10
    remote = {"keys": keys, "fetches": requests, "failures": 0, "kid_fetches": 0, "kid_refused": 0}
    limit = {"route": "all", "limit": "l", "allowed": requests, "limited": 1}
    policy = {
        "auth": {"verified": requests, "cache_hits": 0, "failures": {"missing": 1}, "headers_dropped": 0},
        "jwks": {URL: {**remote, "down": keys == 0}},
        "rate_limits": [limit],
    }
    return WorkerReport(
        worker=worker,
        pid=1000 + worker,
        counters=_counters(requests),
        stats=stats.snapshot(),
        connections=connections,
        upstream_active=connections,
        upstream_idle=connections,
        mirror={"sent": requests, "dropped": 1, "failed": 0, "skipped_body": 0},
        routing={"metadata_invalid": requests, "metadata_too_large": 0, "empty_version_fallbacks": 2},
        policy=policy,
        health={"ejections": 1, "skipped": 0, "changes": 2},
        endpoints=endpoints or [],
    )


# --- Retired: folding the counters of exited workers -----------------------------------------


def test_folding_gives_the_sum_of_every_folded_report() -> None:
    reports = [_report(n) for n in (3, 5, 11)]
    retired = Retired()
    for report in reports:
        retired.fold(report)
    assert retired.folded == 3
    (counters,) = retired.snapshots()
    assert counters == merge_snapshots([r.counters for r in reports], 0.0)
    assert counters.slots[0].requests == 19 and counters.connect_errors == {("api", "v1", V1[0]): 1}
    assert retired.stats["requests"] == 19 and retired.stats["responses_by_class"][2] == 19
    assert retired.stats["errors_by_flag"] == {"UF": 0 + 0 + 1}
    assert retired.mirror == {"sent": 19, "dropped": 3, "failed": 0, "skipped_body": 0}
    assert retired.routing == {"metadata_invalid": 19, "metadata_too_large": 0, "empty_version_fallbacks": 6}
    assert retired.health == {"ejections": 3, "skipped": 0, "changes": 6}
    assert retired.policy == merge_policy([], [r.policy for r in reports])
    assert retired.policy["auth"]["verified"] == 19 and retired.policy["auth"]["failures"] == {"missing": 3}
    assert retired.policy["rate_limits"][0]["allowed"] == 19


def test_folded_policy_keeps_counters_and_drops_gauges() -> None:
    retired = Retired()
    retired.fold(_report(4, keys=7))
    jwks = retired.policy["jwks"][URL]
    assert (jwks["fetches"], jwks["keys"], jwks["down"]) == (4, 0, False)
    # Merged with a live worker: the keys are the live worker's, the fetches add up.
    merged = merge_policy([_report(1, keys=2).policy], [retired.policy])["jwks"][URL]
    assert (merged["fetches"], merged["keys"], merged["down"]) == (5, 2, False)


def test_retired_memory_is_bounded_whatever_the_number_of_restarts() -> None:
    retired = Retired()
    for _ in range(500):
        retired.fold(_report(2))
    (counters,) = retired.snapshots()
    assert counters.keys == (KEY,) and counters.slots[0].requests == 1000
    assert retired.stats["requests"] == 1000 and retired.mirror["sent"] == 1000
    # One value per kind, whose size does not depend on how many reports were folded.
    size = len(msgspec.msgpack.encode([retired.counters, retired.stats, retired.policy]))
    retired.fold(_report(2))
    assert len(msgspec.msgpack.encode([retired.counters, retired.stats, retired.policy])) == size


def test_an_empty_fold_keeps_what_metrics_read() -> None:
    retired = Retired()
    assert retired.snapshots() == [] and retired.stats == {} and retired.mirror == {}
    # A report from before reports had policies, health or endpoints.
    bare = WorkerReport(0, 1, RequestCounters().snapshot(), Stats().snapshot(), 0, 0, 0, {}, {})
    retired.fold(bare)
    assert retired.policy == merge_policy([])
    assert retired.stats["requests"] == 0


# --- the supervisor's sums across a worker's death -------------------------------------------


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    loop = asyncio.new_event_loop()
    try:
        yield Supervisor(_config(), "unused.yaml", loop)
    finally:
        loop.close()


def _totals(supervisor: Supervisor) -> dict[str, int]:
    stats = supervisor.stats_document()
    return {
        "requests": stats["requests"],
        "series": supervisor.snapshot().slots[-1].requests,
        "mirror_sent": stats["mirror"]["sent"],
        "mirror_dropped": stats["mirror"]["dropped"],
        "metadata_invalid": stats["routing"]["metadata_invalid"],
        "fallbacks": stats["routing"]["empty_version_fallbacks"],
        "ejections": supervisor.merged_health()["ejections"],
        "verified": supervisor.merged_policy()["auth"]["verified"],
    }


def test_no_total_goes_backwards_when_a_worker_dies_and_restarts(supervisor: Supervisor) -> None:
    first, second = supervisor.workers
    first.last, second.last = _report(30, worker=0, connections=4), _report(20, worker=1, connections=1)
    before = _totals(supervisor)
    assert before == {
        "requests": 50,
        "series": 50,
        "mirror_sent": 50,
        "mirror_dropped": 2,
        "metadata_invalid": 50,
        "fallbacks": 4,
        "ejections": 2,
        "verified": 50,
    }
    supervisor.retire(first)  # worker 0 died
    assert first.last is None
    assert _totals(supervisor) == before
    # Gauges are the live workers' only.
    assert supervisor.connection_totals() == {"connections_open": 1, "upstream_active": 1, "upstream_idle": 1}
    first.last = _report(0, worker=0)  # its replacement starts from zero
    after = _totals(supervisor)
    assert all(after[name] >= before[name] for name in before), (before, after)
    first.last = _report(5, worker=0)
    assert _totals(supervisor)["requests"] == 55 and _totals(supervisor)["mirror_sent"] == 55


def test_a_worker_crashing_over_and_over_keeps_one_retired_total(supervisor: Supervisor) -> None:
    handle = supervisor.workers[0]
    for _ in range(200):
        handle.last = _report(3)
        supervisor.retire(handle)
    assert supervisor.retired.folded == 200
    totals = _totals(supervisor)
    assert (totals["requests"], totals["mirror_sent"], totals["metadata_invalid"]) == (600, 600, 600)
    assert "graylane_outlier_ejections_total 200" in supervisor.metrics_text().decode()


# --- endpoints: pools summed, health the worst any worker holds ------------------------------


def test_pools_are_summed_and_health_is_the_worst_with_how_many_hold_it() -> None:
    a, b = ("api", "v1", V1[0]), ("api", "v1", V1[1])
    merged = merge_endpoints(
        [
            [EndpointState(*a, active=2, idle=1, ejected=True), EndpointState(*b, idle=3)],
            [EndpointState(*a, active=1), EndpointState(*b, healthy=False, detail="connect refused")],
            [EndpointState(*b, healthy=False, detail="503")],
        ]
    )
    assert merged.workers == 3
    first, second = merged.get(a), merged.get(b)
    assert (first.active, first.idle, first.ejected, first.ejected_in, first.healthy) == (3, 1, True, 1, True)
    assert first.out_in == {0}
    assert (second.active, second.idle, second.healthy, second.unhealthy_in) == (0, 3, False, 2)
    assert second.detail == "connect refused" and second.out_in == {1, 2}  # the first worker's words
    nobody = merged.get(("api", "v2", V2[0]))  # reported by no worker: the defaults
    assert (nobody.healthy, nobody.ejected, nobody.active, nobody.out_in) == (True, False, 0, set())


def _versions(config: Config, merged: Any = None, health: Any = None) -> dict[str, Any]:
    document = status_document(config, build_table(config), {}, None, 60.0, health, merged)
    return document["services"]["api"]["versions"]


def test_the_supervisors_status_shows_the_union_of_the_workers_marks() -> None:
    config = _config()
    v2a, v2b = ("api", "v2", V2[0]), ("api", "v2", V2[1])
    # Worker 0 ejected one v2 endpoint, worker 1 the other: each still serves v2.
    split = merge_endpoints([[EndpointState(*v2a, ejected=True)], [EndpointState(*v2b, ejected=True)]])
    v2 = _versions(config, split)["v2"]
    assert (v2["serving"], v2["falls_back_to"]) == (True, None)
    assert [(e["ejected"], e["ejected_in"], e["workers"]) for e in v2["endpoints"]] == [(True, 1, 2)] * 2
    # Worker 0 has both out: it sends v2's share to the stable version.
    both = merge_endpoints(
        [[EndpointState(*v2a, ejected=True), EndpointState(*v2b, healthy=False, detail="503")], []]
    )
    v2 = _versions(config, both)["v2"]
    assert (v2["serving"], v2["falls_back_to"]) == (False, "v1")
    assert v2["endpoints"][1] == {
        "address": V2[1],
        "healthy": False,
        "ejected": False,
        "detail": "503",
        "active": 0,
        "idle": 0,
        "unhealthy_in": 1,
        "ejected_in": 0,
        "workers": 2,
    }
    stable = merge_endpoints([[EndpointState("api", "v1", address, ejected=True) for address in V1]])
    assert _versions(config, stable)["v1"]["falls_back_to"] == "503"
    assert _versions(_config(on_empty_version="503"), both)["v2"]["falls_back_to"] == "503"
    # No worker has reported yet: every endpoint healthy, as without health marks.
    nothing = _versions(config, merge_endpoints([]))
    assert all(v["serving"] for v in nothing.values())
    assert {e["workers"] for v in nothing.values() for e in v["endpoints"]} == {0}


def test_a_workers_report_gives_the_supervisor_the_single_process_entries() -> None:
    async def in_a_worker() -> tuple[list[EndpointState], Any, Config]:
        # A worker's Server, not listening: its health marks set as its monitor would set them.
        server = Server(_config(), "unused.yaml", asyncio.get_running_loop(), worker=0)
        try:
            health = server.health.health
            health.set_ejected(("api", "v2", V2[0]), True)
            health.set_healthy(("api", "v1", V1[1]), False, "connect refused")
            return endpoint_states(server), server.status_document(60.0), server.config
        finally:
            await server.policy_runtime.close()

    states, document, config = asyncio.run(in_a_worker())
    # Only the endpoints not in the default state travel.
    assert [(s.address, s.healthy, s.detail, s.ejected) for s in states] == [
        (V1[1], False, "connect refused", False),
        (V2[0], True, None, True),
    ]
    report = WorkerReport(0, 1, RequestCounters().snapshot(), {}, 0, 0, 0, {}, {}, endpoints=states)
    decoded = _decoder.decode(encode(report)[4:])
    assert decoded.endpoints == states
    single = document["services"]["api"]["versions"]
    merged = _versions(config, merge_endpoints([decoded.endpoints]))
    extra = {"unhealthy_in", "ejected_in", "workers"}
    for name, version in single.items():
        assert set(merged[name]) == set(version)  # the same keys per version
        assert (merged[name]["serving"], merged[name]["falls_back_to"]) == (
            version["serving"],
            version["falls_back_to"],
        )
        for alone, summed in zip(version["endpoints"], merged[name]["endpoints"], strict=True):
            assert set(summed) == set(alone) | extra
            assert {k: v for k, v in summed.items() if k not in extra} == alone


def test_an_entry_of_an_older_worker_still_decodes() -> None:
    short = msgspec.msgpack.encode(["api", "v1", V1[0], 2])
    assert msgspec.msgpack.decode(short, type=EndpointState) == EndpointState("api", "v1", V1[0], active=2)


# --- through a real supervisor and two workers -----------------------------------------------


def _workers_config(endpoints: list[str], **service: Any) -> str:
    config = json.loads(proxy_config(endpoints, admin=True, workers=2, access_log={"enabled": False}))
    config["services"]["api"].update(service)
    return json.dumps(config)


def _endpoints(proxy: GraylaneProcess) -> dict[str, dict[str, Any]]:
    versions = proxy.admin_json("/status")["services"]["api"]["versions"]
    return {e["address"]: e for e in versions["v1"]["endpoints"]}


@pytest.mark.integration
def test_an_endpoint_ejected_by_a_worker_shows_ejected_in_the_supervisors_status(
    backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess]
) -> None:
    doomed, good = backend("a"), backend("b")
    # One failed connect ejects, for long enough that it stays out for the test.
    outlier = {"consecutive_errors": 1, "base_ejection_time": "60s", "max_ejection_percent": 50}
    proxy = graylane(_workers_config([doomed.endpoint, good.endpoint], outlier=outlier))
    assert {e["ejected"] for e in _endpoints(proxy).values()} == {False}
    doomed.stop()
    statuses: list[int] = []

    def ejected() -> dict[str, Any] | None:
        # New connections, so the kernel spreads them over both workers.
        for i in range(4):
            statuses.append(request(proxy.host, proxy.port, "GET", f"/e{i}", timeout=10).status)
        entry = _endpoints(proxy)[doomed.endpoint]
        return entry if entry["ejected"] else None

    entry = poll_until(ejected, timeout=15)
    assert entry["workers"] == 2 and 1 <= entry["ejected_in"] <= 2, entry
    # A refused connect is retried on the other endpoint, except by the request whose failure
    # ejects (its version then has one endpoint left): at most one 502 per worker.
    assert set(statuses) <= {200, 502} and statuses.count(502) <= 2, statuses
    assert (entry["healthy"], entry["unhealthy_in"]) == (True, 0)
    # The other endpoint is in every worker, and its pooled connections are summed.
    other = poll_until(lambda: (e := _endpoints(proxy)[good.endpoint])["idle"] >= 1 and e)
    assert (other["ejected"], other["ejected_in"], other["workers"]) == (False, 0, 2)
    v1 = proxy.admin_json("/status")["services"]["api"]["versions"]["v1"]
    assert (v1["serving"], v1["falls_back_to"]) == (True, None)
    metrics = request(*proxy.admin_address, "GET", "/metrics", timeout=10).body.decode()
    assert f"graylane_outlier_ejections_total {entry['ejected_in']}" in metrics


def _sums(proxy: GraylaneProcess) -> dict[str, int]:
    stats = proxy.admin_json("/stats")
    return {
        "requests": stats["requests"],
        "mirror_sent": stats["mirror"].get("sent", 0),
        "metadata_invalid": stats["routing"].get("metadata_invalid", 0),
    }


@pytest.mark.integration
def test_killed_workers_take_no_mirror_routing_or_request_count_with_them(
    backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess]
) -> None:
    v1, v2 = backend("v1"), backend("v2")
    config = json.loads(proxy_config([v1.endpoint], admin=True, workers=2, access_log={"enabled": False}))
    config["services"]["api"]["versions"]["v2"] = {"endpoints": [v2.endpoint]}
    # Every request is copied to v2 (mirror counters), and routes on metadata labels, so a
    # header that is not JSON counts as invalid metadata (routing counters).
    config["routes"][0]["mirror"] = {"version": "v2", "percent": 100}
    config["routes"][0]["rules"] = [{"match": {"labels": {"device": {"exact": "ios"}}}, "version": "v2"}]
    proxy = graylane(json.dumps(config))
    sent = 30
    for i in range(sent):
        headers = [("X-Request-Metadata", "not json")]
        assert request(proxy.host, proxy.port, "GET", f"/m{i}", headers=headers, timeout=10).status == 200
    want = {"requests": sent, "mirror_sent": sent, "metadata_invalid": sent}
    before = poll_until(lambda: (s := _sums(proxy)) == want and s, timeout=15)
    # Kill both workers in turn: afterwards every request counted so far was a dead worker's.
    for index in range(2):
        victim = proxy.admin_json("/status")["workers"][index]["pid"]
        mark = proxy.log_mark()
        os.kill(victim, signal.SIGKILL)
        proxy.wait_for_log(rf"worker {index} \(pid {victim}\) exited with -9; restarting", 10, since=mark)

        def replaced(index: int = index, victim: int = victim) -> bool:
            worker = proxy.admin_json("/status")["workers"][index]
            return worker["pid"] not in (None, victim) and worker["ready"]

        poll_until(replaced, timeout=15)
        now = _sums(proxy)
        assert all(now[name] >= before[name] for name in before), (before, now)
    for i in range(5):
        headers = [("X-Request-Metadata", "not json")]
        assert request(proxy.host, proxy.port, "GET", f"/n{i}", headers=headers, timeout=10).status == 200
    more = {name: count + 5 for name, count in want.items()}
    poll_until(lambda: _sums(proxy) == more, timeout=15)
    assert proxy.admin_json("/stats")["worker_restarts"] == 2
