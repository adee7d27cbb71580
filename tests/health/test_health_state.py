"""Usable endpoints pushed into a real route table's groups; the rule of active checks. No sockets."""

from __future__ import annotations

import pytest
from health_support import get, health_config

from proxy.config.schema import HealthCheck
from proxy.errors import NoHealthyUpstream
from proxy.health.active import Probe, Verdicts
from proxy.health.state import EndpointHealth
from proxy.routing.table import RouteTable

V1 = ["10.0.1.1:80", "10.0.1.2:80"]
V2 = ["10.0.2.1:80", "10.0.2.2:80"]
CANARY_ONLY = [{"version": "v2", "weight": 100}]


def key(version: str, address: str) -> tuple[str, str, str]:
    return ("shop", version, address)


def served(table: RouteTable, count: int = 20) -> list[tuple[str, str]]:
    out = []
    for _ in range(count):
        decision = table.decide(get(), "127.0.0.1")
        out.append((decision.version_name, decision.endpoint.address))
    return out


def test_an_unhealthy_endpoint_gets_no_traffic_and_comes_back():
    table = RouteTable(health_config({"v1": V1, "v2": V2}, split=CANARY_ONLY))
    health = EndpointHealth()
    health.attach(table)
    assert {address for _, address in served(table)} == set(V2)
    health.set_healthy(key("v2", V2[1]), False, "503")
    assert set(served(table)) == {("v2", V2[0])}
    health.set_healthy(key("v2", V2[1]), True)
    assert {address for _, address in served(table)} == set(V2)


def test_ejected_and_unhealthy_marks_add_up():
    table = RouteTable(health_config({"v1": V1, "v2": V2}, split=CANARY_ONLY))
    health = EndpointHealth()
    health.attach(table)
    health.set_ejected(key("v2", V2[0]), True)
    health.set_healthy(key("v2", V2[0]), False, "timed out")
    health.set_ejected(key("v2", V2[0]), False)
    assert set(served(table)) == {("v2", V2[1])}  # still unhealthy


def test_a_version_left_without_endpoints_sends_its_share_to_stable_and_says_so():
    table = RouteTable(health_config({"v1": V1, "v2": V2}, split=CANARY_ONLY))
    health = EndpointHealth()
    health.attach(table)
    for address in V2:
        health.set_ejected(key("v2", address), True)
    assert {version for version, _ in served(table)} == {"v1"}
    described = health.describe("shop", "v2")
    assert (described["serving"], described["falls_back_to"]) == (False, "v1")
    assert [e["ejected"] for e in described["endpoints"]] == [True, True]
    assert health.describe("shop", "v1") == {
        "serving": True,
        "falls_back_to": None,
        "endpoints": [
            {"address": address, "healthy": True, "ejected": False, "detail": None} for address in V1
        ],
    }


def test_without_a_fallback_the_version_answers_503():
    table = RouteTable(health_config({"v1": V1, "v2": V2}, split=CANARY_ONLY, on_empty_version="503"))
    health = EndpointHealth()
    health.attach(table)
    for address in V2:
        health.set_healthy(key("v2", address), False, "refused")
    with pytest.raises(NoHealthyUpstream):
        table.decide(get(), "127.0.0.1")
    assert health.describe("shop", "v2")["falls_back_to"] == "503"


def test_the_stable_version_without_endpoints_is_a_503():
    table = RouteTable(health_config({"v1": V1[:1], "v2": V2}))
    health = EndpointHealth()
    health.attach(table)
    health.set_healthy(key("v1", V1[0]), False, "refused")
    with pytest.raises(NoHealthyUpstream):
        table.decide(get(), "127.0.0.1")
    assert health.describe("shop", "v1")["falls_back_to"] == "503"


def test_marks_carry_over_to_a_new_table_and_forget_removed_endpoints():
    health = EndpointHealth()
    health.attach(RouteTable(health_config({"v1": V1, "v2": V2}, split=CANARY_ONLY)))
    health.set_healthy(key("v2", V2[0]), False, "503")
    health.set_ejected(key("v1", V1[0]), True)
    # A reload (or new rollout weights): a new table with fresh groups holding every endpoint.
    table = RouteTable(health_config({"v1": V1[1:], "v2": V2}, split=CANARY_ONLY))
    health.attach(table)
    assert set(served(table)) == {("v2", V2[1])}
    assert health.ejected == set()  # that endpoint is gone from the config
    assert health.unhealthy == {key("v2", V2[0]): "503"}


# --- the threshold rule -------------------------------------------------------------------------

SPEC = HealthCheck(healthy_threshold=2, unhealthy_threshold=3)
OK, BAD = Probe(True, "200"), Probe(False, "connection refused")


def run(verdicts: Verdicts, probes: list[Probe]) -> list[bool]:
    """Whether the endpoint is healthy after each probe."""
    out = []
    for result in probes:
        verdicts.observe(result, SPEC)
        out.append(verdicts.healthy)
    return out


def test_endpoints_start_healthy_and_fall_after_the_unhealthy_threshold():
    verdicts = Verdicts()
    assert verdicts.healthy
    assert run(verdicts, [BAD, BAD, OK, BAD, BAD, BAD]) == [True, True, True, True, True, False]
    assert verdicts.detail == "connection refused"


def test_they_come_back_after_the_healthy_threshold():
    verdicts = Verdicts()
    run(verdicts, [BAD] * 3)
    assert run(verdicts, [OK, BAD, OK, OK]) == [False, False, False, True]


def test_observe_reports_changes_only():
    verdicts = Verdicts()
    changes = [verdicts.observe(result, SPEC) for result in [BAD, BAD, BAD, BAD, OK, OK, OK]]
    assert changes == [False, False, True, False, False, True, False]
