"""The admin API's /status and /config of a running graylane, and its bearer token.

A stable v1 and a canary v2 behind route ``api`` (a 90/10 split; ``X-Canary: always`` picks
v2). /status answers from a window of counter snapshots taken once a second, so a test waits
for the figures it expects by asking /status again, up to a deadline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from proxy.admin.status import REDACTED
from proxy.testing import Backend, GraylaneProcess, request

pytestmark = pytest.mark.integration

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW_DEADLINE = 6.0  # seconds for the 1 s window ticks to show what a test expects
POLL_EVERY = 0.05


def canary_config(v1: Backend, v2: Backend, **admin: Any) -> str:
    doc = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {
            "api": {
                "stable": "v1",
                "versions": {
                    "v1": {"endpoints": [v1.endpoint], "labels": {"track": "stable"}},
                    "v2": {"endpoints": [v2.endpoint], "labels": {"track": "canary"}},
                },
            }
        },
        "routes": [
            {
                "name": "api",
                "service": "api",
                "rules": [{"match": {"headers": {"X-Canary": {"exact": "always"}}}, "version": "v2"}],
                "split": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}],
                "sticky": {"header": "X-User-ID"},
            }
        ],
        "admin": {"address": "127.0.0.1:0", **admin},
    }
    return json.dumps(doc, indent=1) + "\n"


def admin_get(proxy: GraylaneProcess, path: str, headers: dict[str, str] | None = None) -> Any:
    resp = request(*proxy.admin_address, "GET", path, headers, timeout=5)
    assert resp.status == 200, resp.text
    return resp.json()


def status_when(
    proxy: GraylaneProcess, ready: Callable[[dict[str, Any]], bool], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """/status once ``ready(document)`` holds. The window ticks inside graylane, once a second, and
    /status is the only way to see it: ask again until it shows, bounded by WINDOW_DEADLINE."""
    deadline = time.monotonic() + WINDOW_DEADLINE
    while True:
        document = admin_get(proxy, "/status", headers)
        if ready(document):
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"/status not as expected after {WINDOW_DEADLINE}s:\n{json.dumps(document)}")
        time.sleep(POLL_EVERY)


def windows(document: dict[str, Any]) -> dict[str, Any]:
    """Each version's ``last_window`` (None before the window has two snapshots)."""
    return {name: v["last_window"] for name, v in document["services"]["api"]["versions"].items()}


def window_is_live(document: dict[str, Any]) -> bool:
    return all(w is not None for w in windows(document).values())


def test_status_shows_routes_versions_weights_and_endpoints(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(canary_config(v1, v2))
    document = admin_get(proxy, "/status")

    assert document["draining"] is False
    assert document["window_seconds"] == 60.0
    [route] = document["routes"]
    assert route["name"] == "api" and route["service"] == "api"
    assert route["weights"] == {"v1": 90.0, "v2": 10.0}
    assert route["rules"] == ["v2"]
    assert route["sticky"] == "header:X-User-ID"
    assert route["mirror"] is None
    service = document["services"]["api"]
    assert service["stable"] == "v1"
    versions = service["versions"]
    assert [versions[name]["stable"] for name in ("v1", "v2")] == [True, False]
    assert versions["v2"]["labels"] == {"track": "canary"}
    for name, origin in (("v1", v1), ("v2", v2)):
        [endpoint] = versions[name]["endpoints"]
        assert endpoint["address"] == origin.endpoint and endpoint["healthy"] is True
        assert versions[name]["serving"] is True


def test_status_shows_each_versions_last_window_after_traffic(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(canary_config(v1, v2))
    status_when(proxy, window_is_live)

    sent: Counter[tuple[str, int]] = Counter()  # (version, status)
    canary = {"X-Canary": "always"}
    plan = [("/", {})] * 16 + [("/status/500", {})] * 4
    plan += [("/", canary)] * 6 + [("/status/502", canary)] * 3 + [("/slow?delay=0.3", canary)]
    for path, headers in plan:
        resp = request(proxy.host, proxy.port, "GET", path, headers, timeout=10)
        sent[(resp.get("X-Backend-Version"), resp.status)] += 1
    expected = {
        version: (
            sum(n for (v, _), n in sent.items() if v == version),
            sum(n for (v, status), n in sent.items() if v == version and status >= 500),
        )
        for version in ("v1", "v2")
    }

    def shows_everything(document: dict[str, Any]) -> bool:
        live = windows(document)
        return all(
            live[v] is not None and (live[v]["requests"], live[v]["errors"]) == expected[v] for v in expected
        )

    live = windows(status_when(proxy, shows_everything))

    for version, (requests, errors) in expected.items():
        figures = live[version]
        assert figures["error_ratio"] == pytest.approx(errors / requests)
        assert figures["rate"] == pytest.approx(requests / figures["seconds"])
        assert sum(figures["codes"].values()) == requests
        assert 1.0 <= figures["seconds"] <= 60.0
    v2 = live["v2"]
    assert v2["codes"]["502"] == 3
    # 10 requests, one of 0.3 s: the median is fast, the 99th percentile is in the (0.25, 0.5] bucket.
    assert v2["p50"] < 0.25
    assert 0.25 < v2["p99"] <= 0.5
    assert live["v1"]["p99"] < 0.25


def test_requests_right_after_start_show_in_the_window(backend, graylane):
    # The window's first snapshot is taken when serving starts, not a tick later.
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(canary_config(v1, v2))
    for _ in range(3):
        assert request(proxy.host, proxy.port, "GET", "/", {"X-Canary": "always"}, timeout=5).status == 200
    live = windows(status_when(proxy, window_is_live))
    assert live["v2"]["requests"] == 3


def test_config_redacts_the_admin_token(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(canary_config(v1, v2, token=TOKEN))
    resp = request(*proxy.admin_address, "GET", "/config", AUTH, timeout=5)
    assert resp.status == 200
    assert TOKEN not in resp.text
    document = resp.json()
    assert document["admin"]["token"] == REDACTED
    assert document["services"]["api"]["versions"]["v2"]["endpoints"] == [v2.endpoint]
    assert document["routes"][0]["split"] == [
        {"version": "v1", "weight": 90},
        {"version": "v2", "weight": 10},
    ]


def test_the_token_is_required_when_set(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(canary_config(v1, v2, token=TOKEN))
    for path in ("/status", "/config", "/metrics", "/stats"):
        for headers in (None, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
            refused = request(*proxy.admin_address, "GET", path, headers, timeout=5)
            assert refused.status == 401, (path, headers)
            assert TOKEN not in refused.text
        assert request(*proxy.admin_address, "GET", path, AUTH, timeout=5).status == 200, path
    # The scheme name is case-insensitive (RFC 9110 11.1); the token is not.
    lower = {"Authorization": f"bearer {TOKEN}"}
    assert request(*proxy.admin_address, "GET", "/status", lower, timeout=5).status == 200
    upper = {"Authorization": f"Bearer {TOKEN.upper()}"}
    assert request(*proxy.admin_address, "GET", "/status", upper, timeout=5).status == 401
