"""Route matching through a real graylane: host, path, method, headers, query, cookies, labels,
first match wins, and the 404 for a request no route takes.

One graylane serves the whole module: every route sends to the same backend and tags its
answers with ``X-Route: NAME`` (a route response header), so each case reads which route won.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from e2e_support import config, get, service

from proxy.testing import Backend, GraylaneProcess, request

pytestmark = pytest.mark.integration

Headers = dict[str, str] | list[tuple[str, str]]


def _route(name: str, match: dict) -> dict:
    return {"name": name, "service": "api", "match": match, "response_headers": {"set": {"X-Route": name}}}


ROUTES = [
    _route("host-only", {"host": ["only.example"]}),  # no path: ahead of every path below
    _route("exact-path", {"path": {"exact": "/exact"}}),
    _route("host-exact", {"host": ["api.example.com"], "path": {"prefix": "/host"}}),
    _route("host-suffix", {"host": ["*.example.org"], "path": {"prefix": "/host"}}),
    _route("prefix", {"path": {"prefix": "/api"}}),
    _route("regex", {"path": {"regex": r"/items/\d+"}}),
    _route("method", {"methods": ["POST", "PUT"], "path": {"prefix": "/method"}}),
    _route("hdr-exact", {"path": {"prefix": "/hdr"}, "headers": {"X-Env": {"exact": "prod"}}}),
    _route("hdr-prefix", {"path": {"prefix": "/hdr"}, "headers": {"X-Env": {"prefix": "stag"}}}),
    _route("hdr-regex", {"path": {"prefix": "/hdr"}, "headers": {"X-Tenant": {"regex": r"t-\d{3}"}}}),
    _route("hdr-present", {"path": {"prefix": "/hdr"}, "headers": {"X-Debug": {"present": True}}}),
    _route("hdr-absent", {"path": {"prefix": "/absent"}, "headers": {"X-Block": {"present": False}}}),
    _route("query", {"path": {"prefix": "/q"}, "query": {"color": {"exact": "blue"}}}),
    _route("cookie", {"path": {"prefix": "/c"}, "cookies": {"session": {"prefix": "s-"}}}),
    _route("label", {"path": {"prefix": "/l"}, "labels": {"tier": {"exact": "gold"}}}),
    _route("order-a", {"path": {"prefix": "/order"}, "headers": {"X-Pick": {"present": True}}}),
    _route("order-b", {"path": {"prefix": "/order"}}),
    _route("broad", {"path": {"prefix": "/first"}}),
    _route("specific", {"path": {"exact": "/first/special"}}),  # never wins: "broad" comes first
    _route("mixed-regex", {"path": {"regex": "/mixed/.*"}}),
    _route("mixed-exact", {"path": {"exact": "/mixed/b"}}),  # never wins: the regex comes first
    _route("mixed-prefix", {"path": {"prefix": "/mixed"}}),
    _route("short", {"path": {"prefix": "/deep"}}),
    _route("long", {"path": {"prefix": "/deep/er"}}),  # never wins: first match, not longest prefix
]


@pytest.fixture(scope="module")
def proxy() -> Iterator[GraylaneProcess]:
    with Backend("v1") as origin, GraylaneProcess(config({"api": service(origin)}, ROUTES)) as running:
        yield running


CASES = [
    # path
    ("GET", "/exact", {}, "exact-path"),
    ("GET", "/exact/more", {}, None),
    ("GET", "/api", {}, "prefix"),
    ("GET", "/api/", {}, "prefix"),
    ("GET", "/api/v1/users?x=1", {}, "prefix"),
    ("GET", "/apix", {}, None),
    ("GET", "/items/42", {}, "regex"),
    ("GET", "/items/42/extra", {}, None),
    ("GET", "/items/x", {}, None),
    ("GET", "/items/42?page=2", {}, "regex"),  # the query is not part of the path
    # host
    ("GET", "/host", {"Host": "api.example.com"}, "host-exact"),
    ("GET", "/host/a", {"Host": "API.Example.COM:8443"}, "host-exact"),
    ("GET", "/host", {"Host": "www.example.org"}, "host-suffix"),
    ("GET", "/host", {"Host": "a.b.example.org"}, "host-suffix"),
    ("GET", "/host", {"Host": "example.org"}, None),
    ("GET", "/host", {"Host": "api.example.com."}, "host-exact"),
    ("GET", "/host", {"Host": "api.example.com.evil.net"}, None),
    ("GET", "http://api.example.com/host", {"Host": "api.example.com"}, "host-exact"),  # absolute-form
    # method
    ("POST", "/method", {"Content-Length": "0"}, "method"),
    ("PUT", "/method", {"Content-Length": "0"}, "method"),
    ("GET", "/method", {}, None),
    # headers
    ("GET", "/hdr", {"X-Env": "prod"}, "hdr-exact"),
    ("GET", "/hdr", {"X-Env": "production"}, None),
    ("GET", "/hdr", {"X-Env": "staging"}, "hdr-prefix"),
    ("GET", "/hdr", {"X-Tenant": "t-123"}, "hdr-regex"),
    ("GET", "/hdr", {"X-Tenant": "t-1234"}, None),
    ("GET", "/hdr", {"X-Debug": ""}, "hdr-present"),
    ("GET", "/hdr", {"x-debug": "1"}, "hdr-present"),
    ("GET", "/hdr", {"X-Debug": "1", "X-Env": "prod"}, "hdr-exact"),
    ("GET", "/hdr", [("X-Env", "staging"), ("X-Env", "prod")], "hdr-prefix"),  # the first value counts
    ("GET", "/hdr", {}, None),
    ("GET", "/absent", {}, "hdr-absent"),
    ("GET", "/absent", {"X-Block": "1"}, None),
    # query
    ("GET", "/q?color=blue", {}, "query"),
    ("GET", "/q?size=1&color=blue", {}, "query"),
    ("GET", "/q?color=red", {}, None),
    ("GET", "/q", {}, None),
    # cookies
    ("GET", "/c", {"Cookie": "a=1; session=s-abc"}, "cookie"),
    ("GET", "/c", [("Cookie", "a=1"), ("Cookie", "session=s-2")], "cookie"),
    ("GET", "/c", {"Cookie": "session=abc"}, None),
    ("GET", "/c", {}, None),
    # request-metadata labels
    ("GET", "/l", {"X-Request-Metadata": json.dumps({"tier": "gold", "region": "eu"})}, "label"),
    ("GET", "/l", {"X-Request-Metadata": json.dumps({"tier": "silver"})}, None),
    ("GET", "/l", {"X-Request-Metadata": "{not json"}, None),
    ("GET", "/l", {}, None),
    # first match wins, in config order
    ("GET", "/order", {"X-Pick": "yes"}, "order-a"),
    ("GET", "/order/x", {}, "order-b"),
    ("GET", "/first/special", {}, "broad"),
    ("GET", "/mixed/b", {}, "mixed-regex"),
    ("GET", "/mixed", {}, "mixed-prefix"),
    ("GET", "/deep/er/x", {}, "short"),
    ("GET", "/exact", {"Host": "only.example"}, "host-only"),
    ("GET", "/api/x", {"Host": "Only.Example."}, "host-only"),
]


@pytest.mark.parametrize(
    ("method", "target", "headers", "route"), CASES, ids=[f"{c[0]} {c[1]} {c[2]}" for c in CASES]
)
def test_the_first_matching_route_answers(
    proxy: GraylaneProcess, method: str, target: str, headers: Headers, route: str | None
) -> None:
    resp = request(proxy.host, proxy.port, method, target, headers, timeout=10)
    if route is None:
        assert resp.status == 404, resp.text
        assert resp.get("X-Route") is None
    else:
        assert resp.status == 200, resp.text
        assert resp.get("X-Route") == route
        # The backend got the request as sent (in origin-form).
        assert resp.json()["target"] == target.removeprefix("http://api.example.com")


def test_no_match_is_a_json_404_naming_the_request_id(proxy: GraylaneProcess) -> None:
    resp = get(proxy, "/nowhere")
    assert resp.status == 404
    assert resp.get("Content-Type") == "application/json"
    body = resp.json()
    assert body["status"] == 404
    assert body["request_id"]
    assert body["request_id"] == resp.get("X-Request-ID")
    # A client's own request id is the one reported.
    resp = get(proxy, "/nowhere", {"X-Request-ID": "trace-abc-123"})
    assert resp.status == 404
    assert resp.json()["request_id"] == "trace-abc-123"
    assert resp.get("X-Request-ID") == "trace-abc-123"


def test_a_404_keeps_the_connection_for_the_next_request(proxy: GraylaneProcess, raw_client) -> None:
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("GET", "/nowhere").status == 404
    resp = client.request("GET", "/exact")
    assert (resp.status, resp.get("X-Route")) == (200, "exact-path")
