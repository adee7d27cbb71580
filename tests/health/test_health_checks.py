"""Active checks and outlier ejection against real backends on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from health_support import get, health_config

from proxy.config.schema import Duration, HealthCheck
from proxy.health.active import probe
from proxy.health.monitor import HealthMonitor
from proxy.routing.table import RouteTable
from proxy.testing import free_port

pytestmark = pytest.mark.integration

FAST = {"interval": "50ms", "timeout": "500ms", "unhealthy_threshold": 2, "healthy_threshold": 1}


def check(path: str = "/healthz", **changes) -> HealthCheck:
    return HealthCheck(path=path, timeout=Duration(changes.pop("timeout", 2.0)), **changes)


# --- one probe ------------------------------------------------------------------------------------


def test_probe_passes_on_an_expected_status(backend):
    server = backend("v1")
    result = asyncio.run(probe(server.host, server.port, check()))
    assert result == (True, "200")
    seen = server.wait_for_requests(1)[0]
    assert (seen.method, seen.target, seen.header("Connection")) == ("GET", "/healthz", "close")
    assert seen.header("Host") == server.endpoint


def test_probe_fails_on_another_status(backend):
    server = backend("v1")
    assert asyncio.run(probe(server.host, server.port, check("/status/503"))) == (False, "503")
    spec = check("/status/503", expected_statuses=[200, 503])
    assert asyncio.run(probe(server.host, server.port, spec)) == (True, "503")


def test_probe_sends_the_configured_host(backend):
    server = backend("v1")
    asyncio.run(probe(server.host, server.port, check(host="shop.internal")))
    assert server.wait_for_requests(1)[0].header("Host") == "shop.internal"


def test_probe_fails_on_a_refused_connection():
    result = asyncio.run(probe("127.0.0.1", free_port(), check()))
    assert result.ok is False and "refused" in result.detail.lower()


def test_probe_fails_on_a_timeout(backend):
    server = backend("v1")
    result = asyncio.run(probe(server.host, server.port, check("/hang", timeout=0.1)))
    assert result == (False, "timed out after 0.1s")


# --- the monitor ------------------------------------------------------------------------------------


class Changes:
    """Monitor listener: an asyncio.Event per (address, kind, value) the test waits for."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool]] = []
        self._events: dict[tuple[str, str, bool], asyncio.Event] = {}

    def __call__(self, key, kind, value) -> None:
        self.seen.append((key[2], kind, value))
        self._event((key[2], kind, value)).set()

    def _event(self, what) -> asyncio.Event:
        return self._events.setdefault(what, asyncio.Event())

    async def wait(self, address: str, kind: str, value: bool, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._event((address, kind, value)).wait(), timeout)


def test_an_endpoint_killed_mid_run_is_found_by_the_active_checks(backend):
    stable, first, second = backend("v1"), backend("v2-a"), backend("v2-b")
    config = health_config(
        {"v1": [stable.endpoint], "v2": [first.endpoint, second.endpoint]},
        health={"path": "/healthz", **FAST},
        split=[{"version": "v2", "weight": 100}],
    )

    async def scenario():
        table = RouteTable(config)
        monitor = HealthMonitor()
        changes = Changes()
        monitor.listeners.append(changes)
        monitor.attach(table)
        monitor.start()
        try:
            await asyncio.sleep(0)
            group = table.group("shop", "v2")
            assert {e.address for e in group.endpoints} == {first.endpoint, second.endpoint}
            await asyncio.get_running_loop().run_in_executor(None, second.stop)
            await changes.wait(second.endpoint, "health", False)
            assert [e.address for e in group.endpoints] == [first.endpoint]
            chosen = {table.decide(get(), "127.0.0.1").endpoint.address for _ in range(20)}
            status = monitor.status()["services"]["shop"]["v2"]
            # Back up: it is probed into service again (healthy_threshold 1).
            await asyncio.get_running_loop().run_in_executor(None, second.start)
            await changes.wait(second.endpoint, "health", True)
            return chosen, status, {e.address for e in group.endpoints}
        finally:
            monitor.close()

    chosen, status, after = asyncio.run(scenario())
    assert chosen == {first.endpoint}
    assert status["serving"] is True
    dead = [e for e in status["endpoints"] if e["address"] == second.endpoint][0]
    assert dead["healthy"] is False and dead["last_probe"]
    assert after == {first.endpoint, second.endpoint}
    assert len(stable.requests) >= 1  # the stable version is checked too


def test_a_canary_with_every_endpoint_down_hands_its_share_to_stable(backend):
    stable, canary = backend("v1"), backend("v2")
    config = health_config(
        {"v1": [stable.endpoint], "v2": [canary.endpoint]},
        health={"path": "/healthz", **FAST},
        split=[{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}],
    )

    async def scenario():
        table = RouteTable(config)
        monitor = HealthMonitor()
        changes = Changes()
        monitor.listeners.append(changes)
        monitor.attach(table)
        monitor.start()
        try:
            await asyncio.get_running_loop().run_in_executor(None, canary.stop)
            await changes.wait(canary.endpoint, "health", False)
            versions = {table.decide(get(), "127.0.0.1").version_name for _ in range(50)}
            return versions, monitor.status()["services"]["shop"]["v2"]
        finally:
            monitor.close()

    versions, status = asyncio.run(scenario())
    assert versions == {"v1"}
    assert (status["serving"], status["falls_back_to"]) == (False, "v1")


async def send(table: RouteTable, monitor: HealthMonitor, attempts: int = 3) -> tuple[int, list[str]]:
    """A client request as the data plane makes it: connect failures are recorded and retried elsewhere."""
    tried = []
    for _ in range(attempts):
        endpoint = table.decide(get(), "127.0.0.1").endpoint
        tried.append(endpoint.address)
        try:
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        except OSError:
            monitor.record(endpoint, False)
            continue
        writer.write(b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
        status = int((await reader.readline()).split()[1])
        writer.close()
        monitor.record(endpoint, status < 500)
        return status, tried
    return 0, tried


def test_an_endpoint_killed_mid_run_is_ejected_and_no_request_fails(backend):
    stable, first, second = backend("v1"), backend("v2-a"), backend("v2-b")
    config = health_config(
        {"v1": [stable.endpoint], "v2": [first.endpoint, second.endpoint]},
        outlier={"consecutive_errors": 3, "base_ejection_time": "30s", "max_ejection_percent": 50},
        split=[{"version": "v2", "weight": 100}],
    )

    async def scenario():
        table = RouteTable(config)
        monitor = HealthMonitor()
        changes = Changes()
        monitor.listeners.append(changes)
        monitor.attach(table)
        monitor.start()
        try:
            before = [await send(table, monitor) for _ in range(10)]
            await asyncio.get_running_loop().run_in_executor(None, second.stop)
            during = []
            for _ in range(20):  # bounded: the ejection comes after 3 failed connects to it
                during.append(await send(table, monitor))
                if changes.seen:
                    break
            await changes.wait(second.endpoint, "ejection", True, timeout=0.1)
            after = [await send(table, monitor) for _ in range(30)]
            return before, during, after, monitor.status()
        finally:
            monitor.close()

    before, during, after, status = asyncio.run(scenario())
    assert {s for s, _ in before} == {200}
    assert {s for s, _ in during} == {200}  # retries on connect failure covered the gap
    assert {s for s, _ in after} == {200}
    assert all(tried == [first.endpoint] for _, tried in after)  # the ejected endpoint is not even tried
    ejected = [e for e in status["services"]["shop"]["v2"]["endpoints"] if e["ejected"]]
    assert [e["address"] for e in ejected] == [second.endpoint]
    assert ejected[0]["ejection"]["times"] == 1 and ejected[0]["ejection"]["for_seconds"] > 20
    assert status["ejections"] == 1


def test_an_ejected_endpoint_returns_after_its_time(backend):
    server = backend("v1")
    config = health_config(
        {"v1": [server.endpoint]},
        outlier={"consecutive_errors": 2, "base_ejection_time": "50ms", "max_ejection_time": "1s"},
    )

    async def scenario():
        table = RouteTable(config)
        monitor = HealthMonitor()
        changes = Changes()
        monitor.listeners.append(changes)
        monitor.attach(table)
        monitor.start()
        try:
            endpoint = table.group("shop", "v1").endpoints[0]
            monitor.record(endpoint, False)
            monitor.record(endpoint, False)
            assert table.group("shop", "v1").endpoints == ()
            await changes.wait(server.endpoint, "ejection", False, timeout=2)
            return table.group("shop", "v1").endpoints
        finally:
            monitor.close()

    back = asyncio.run(scenario())
    assert [e.address for e in back] == [server.endpoint]


def test_attach_of_a_new_table_keeps_ejections_and_checks(backend):
    first, second = backend("a"), backend("b")
    config = health_config(
        {"v1": [first.endpoint, second.endpoint]},
        health={"path": "/healthz", "interval": "1h"},
        outlier={"consecutive_errors": 1, "base_ejection_time": "1h", "max_ejection_time": "1h"},
    )

    async def scenario():
        monitor = HealthMonitor()
        table = RouteTable(config)
        monitor.attach(table)
        monitor.start()
        try:
            monitor.record(table.group("shop", "v1").endpoints[1], False)
            checkers = dict(monitor.active.checkers)
            fresh = RouteTable(config)
            monitor.attach(fresh)
            same = all(monitor.active.checkers[k] is c for k, c in checkers.items())
            return [e.address for e in fresh.group("shop", "v1").endpoints], same, len(checkers)
        finally:
            monitor.close()

    usable, same_checkers, count = asyncio.run(scenario())
    assert usable == [first.endpoint]
    assert same_checkers and count == 2  # unchanged settings: the running checks go on
