"""Endpoint health through a real graylane: an endpoint killed mid-run is taken out by the
active checks and outlier ejection, and no client request fails meanwhile (a failed
connect is retried on another endpoint of the same version)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from proxy.testing import Backend, GraylaneProcess, free_port, request

pytestmark = pytest.mark.integration


def _config(endpoints: list[str]) -> str:
    doc = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "admin": {"address": "127.0.0.1:0"},
        "access_log": {"enabled": False},
        "services": {
            "api": {
                "versions": {"v1": {"endpoints": endpoints}},
                "health": {
                    "path": "/status/200",
                    "interval": "100ms",
                    "timeout": "200ms",
                    "unhealthy_threshold": 2,
                    "healthy_threshold": 1,
                },
                "outlier": {"consecutive_errors": 2, "base_ejection_time": "30s", "max_ejection_percent": 50},
            }
        },
        "routes": [{"name": "all", "service": "api"}],
    }
    return json.dumps(doc)


def _endpoints(proxy: GraylaneProcess) -> dict[str, dict]:
    host, port = proxy.admin_address
    status = request(host, port, "GET", "/status", timeout=10).json()
    return {e["address"]: e for e in status["services"]["api"]["versions"]["v1"]["endpoints"]}


def test_a_killed_endpoint_is_taken_out_and_no_request_fails(backend, graylane):
    first, second = backend("a"), backend("b")
    proxy = graylane(_config([first.endpoint, second.endpoint]))
    failures: list[str] = []
    served: dict[str, int] = {}
    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(0.002):
            try:
                resp = request(proxy.host, proxy.port, "GET", "/", timeout=5)
            except OSError as exc:
                failures.append(repr(exc))
                continue
            if resp.status != 200:
                failures.append(str(resp.status))
            name = resp.get("X-Backend-Version") or "?"
            served[name] = served.get(name, 0) + 1

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        first.wait_for_requests(20, timeout=10)
        first.stop()  # the endpoint dies mid-run
        deadline = time.monotonic() + 10
        while True:
            marks = _endpoints(proxy)[first.endpoint]
            if not marks["healthy"] or marks["ejected"]:
                break
            assert time.monotonic() < deadline, marks
            time.sleep(0.05)  # polling another process's admin API
        # A request in flight on the killed endpoint's connection when it died may fail;
        # none may fail once the endpoint is out.
        at_ejection = len(failures)
        after = served.get("b", 0)
        second.wait_for_requests(after + 50, timeout=10)
    finally:
        stop.set()
        thread.join(10)
    assert failures[at_ejection:] == [], failures[:5]
    assert at_ejection <= 2, failures
    assert served.get("a", 0) > 0 and served.get("b", 0) > after


def test_the_request_that_ejects_an_endpoint_is_retried_on_the_other(backend, graylane):
    # One error ejects; the ejection leaves the version one endpoint, which the retry must use.
    live, dead = backend("b"), f"127.0.0.1:{free_port()}"  # nothing listens there: connect refused
    config = json.loads(_config([dead, live.endpoint]))
    del config["services"]["api"]["health"]  # outlier ejection alone
    config["services"]["api"]["outlier"]["consecutive_errors"] = 1
    proxy = graylane(json.dumps(config))
    statuses = [request(proxy.host, proxy.port, "GET", "/", timeout=5).status for _ in range(6)]
    assert statuses == [200] * 6
    assert _endpoints(proxy)[dead]["ejected"] is True
    assert len(live.requests) == 6


def test_an_endpoint_that_comes_back_gets_traffic_again(backend, graylane):
    first, second = backend("a"), backend("b")
    proxy = graylane(
        _config([first.endpoint, second.endpoint]).replace(
            '"consecutive_errors": 2', '"consecutive_errors": 1000'
        )
    )
    host, port = first.address
    first.stop()
    deadline = time.monotonic() + 10
    while _endpoints(proxy)[first.endpoint]["healthy"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    revived = Backend("a", port=port)
    revived.start()
    try:
        while not _endpoints(proxy)[first.endpoint]["healthy"]:
            assert time.monotonic() < deadline + 10
            time.sleep(0.05)
        for _ in range(20):
            assert request(proxy.host, proxy.port, "GET", "/", timeout=5).status == 200
        assert any(r.path == "/" for r in revived.requests)
    finally:
        revived.stop()
