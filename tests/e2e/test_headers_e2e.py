"""Header changes per route and per version through a real graylane: what the backend
receives (request_headers) and what the client receives (response_headers).

Order (proxy.routing.plans): the route's ops, then the version's; within one set of ops
remove, then set, then add. ``set`` replaces what the client or upstream sent.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from e2e_support import config, split

from proxy.testing import Backend, GraylaneProcess, Response, request

pytestmark = pytest.mark.integration

# Names in another case than the config's: header names are case-insensitive.
CLIENT_HEADERS = [
    ("x-REMOVE-me", "1"),
    ("x-replace", "client"),
    ("X-MULTI", "client"),
    ("X-Keep", "kept"),
]


def _proxy(
    backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess]
) -> tuple[Backend, Backend, GraylaneProcess]:
    v1, v2 = backend("v1"), backend("v2")
    versions = {
        "v1": {
            "endpoints": [v1.endpoint],
            "request_headers": {"set": {"X-Version-Tag": "v1"}},
            "response_headers": {"set": {"X-Served-By": "team-one"}},
        },
        "v2": {
            "endpoints": [v2.endpoint],
            "request_headers": {"set": {"X-Tier": "v2"}, "remove": ["X-Route-Added"]},
            "response_headers": {
                "add": {"X-Multi": "v2"},
                "remove": ["X-Route-Resp"],
                "set": {"X-Backend-Version": "hidden"},
            },
        },
    }
    route = {
        "name": "api",
        "service": "api",
        "rules": [{"match": {"headers": {"X-Canary": {"exact": "always"}}}, "version": "v2"}],
        "split": split(v1=100, v2=0),
        "request_headers": {
            "set": {"X-Tier": "route", "X-Replace": "route"},
            "add": {"X-Multi": "route", "X-Route-Added": "yes"},
            "remove": ["X-Remove-Me"],
        },
        "response_headers": {
            "set": {"Cache-Control": "no-store", "X-Route-Resp": "r"},
            "add": {"X-Multi": "route"},
            "remove": ["Content-Type"],
        },
    }
    return v1, v2, graylane(config({"api": {"versions": versions}}, [route]))


def _send(proxy: GraylaneProcess, *extra: tuple[str, str]) -> Response:
    resp = request(proxy.host, proxy.port, "GET", "/h", [*CLIENT_HEADERS, *extra], timeout=10)
    assert resp.status == 200, resp.text
    return resp


def test_route_and_version_request_headers_reach_the_backend(backend, graylane):
    v1, v2, proxy = _proxy(backend, graylane)
    _send(proxy)
    [seen] = v1.requests
    assert seen.header_values("X-Remove-Me") == []
    assert seen.header_values("X-Replace") == ["route"]
    assert seen.header_values("X-Multi") == ["client", "route"]
    assert seen.header_values("X-Tier") == ["route"]
    assert seen.header_values("X-Route-Added") == ["yes"]
    assert seen.header_values("X-Version-Tag") == ["v1"]
    assert seen.header_values("X-Keep") == ["kept"]

    _send(proxy, ("X-Canary", "always"))
    [seen] = v2.requests
    assert seen.header_values("X-Remove-Me") == []
    assert seen.header_values("X-Replace") == ["route"]
    assert seen.header_values("X-Multi") == ["client", "route"]
    assert seen.header_values("X-Tier") == ["v2"]  # the version's set wins over the route's
    assert seen.header_values("X-Route-Added") == []  # the version's remove drops the route's add
    assert seen.header_values("X-Version-Tag") == []  # v1's ops are not v2's
    assert seen.header_values("X-Keep") == ["kept"]


def test_route_and_version_response_headers_reach_the_client(backend, graylane):
    v1, v2, proxy = _proxy(backend, graylane)
    resp = _send(proxy)
    assert resp.json()["version"] == "v1"
    assert resp.get_all("X-Backend-Version") == ["v1"]
    assert resp.get_all("Cache-Control") == ["no-store"]
    assert resp.get_all("X-Route-Resp") == ["r"]
    assert resp.get_all("X-Multi") == ["route"]
    assert resp.get_all("Content-Type") == []
    assert resp.get_all("X-Served-By") == ["team-one"]

    resp = _send(proxy, ("X-Canary", "always"))
    assert resp.json()["version"] == "v2"
    assert resp.get_all("X-Backend-Version") == ["hidden"]  # set replaces the upstream's header
    assert resp.get_all("Cache-Control") == ["no-store"]
    assert resp.get_all("X-Route-Resp") == []
    assert resp.get_all("X-Multi") == ["route", "v2"]
    assert resp.get_all("Content-Type") == []
    assert resp.get_all("X-Served-By") == []
