"""Request smuggling at the edge, end to end: header names with "_" and h2c upgrades.

An origin stack that maps header names to CGI/WSGI variables reads ``Content_Length`` as
``Content-Length``; an origin that accepts ``Upgrade: h2c`` switches to HTTP/2 behind
graylane's routing and auth. Neither may ever reach an upstream.
"""

from __future__ import annotations

import json

import pytest

from proxy.testing import build_request, request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration

ALIASES = [
    ("Content_Length", "5"),
    ("Transfer_Encoding", "chunked"),
    ("Host_", "evil.example"),
    ("X_Forwarded_For", "10.0.0.1"),
    ("X_Custom", "plain"),
]


@pytest.mark.parametrize(("name", "value"), ALIASES)
def test_underscore_header_is_refused_by_default(backend, graylane, raw_client, name, value):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n%s: %s\r\n\r\n" % (name.encode(), value.encode()))
    resp = client.read_response()
    assert resp.status == 400
    assert resp.json()["status"] == 400
    assert client.is_closed(timeout=5)
    assert origin.requests == []


def test_drop_mode_forwards_the_request_without_them(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, protocol={"headers_with_underscores": "drop"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    headers = {"Content_Length": "5", "X_User": "admin", "X-Kept": "yes"}
    resp = client.request("GET", "/", headers)
    assert resp.status == 200
    seen = origin.requests[0]
    names = [name.lower() for name, _ in seen.headers]
    assert "content_length" not in names and "x_user" not in names
    assert seen.header("X-Kept") == "yes"
    assert seen.body_len == 0
    # The connection stays usable: nothing was left for the next request to trip over.
    assert client.request("GET", "/again").status == 200


def test_drop_mode_keeps_them_from_routing_too(backend, graylane):
    stable, gray = backend("v1"), backend("v2")
    config = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "protocol": {"headers_with_underscores": "drop"},
        "services": {
            "api": {
                "versions": {"v1": {"endpoints": [stable.endpoint]}, "v2": {"endpoints": [gray.endpoint]}}
            }
        },
        "routes": [
            {
                "name": "api",
                "service": "api",
                "rules": [{"match": {"headers": {"X_Gray": {"exact": "1"}}}, "version": "v2"}],
            }
        ],
    }
    proxy = graylane(json.dumps(config))
    assert request(proxy.host, proxy.port, "GET", "/", {"X_Gray": "1"}, timeout=5).status == 200
    assert len(stable.requests) == 1 and gray.requests == []


@pytest.mark.parametrize(
    "upgrade_lines",
    [
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAA\r\n",
        b"connection: upgrade\r\nupgrade: H2C\r\nhttp2-settings: AAMAAABk\r\n",
        b"Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n",
        b"Connection: HTTP2-Settings\r\nConnection: upgrade\r\nUpgrade: h2c, HTTP/2.0\r\n",
        b"HTTP2-Settings: AAMAAABk\r\n",
    ],
)
def test_h2c_upgrade_is_never_forwarded(backend, graylane, raw_client, upgrade_lines):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET /h2c HTTP/1.1\r\nHost: h\r\n" + upgrade_lines + b"\r\n")
    resp = client.read_response()
    # A plain request reached the origin: no Upgrade, no HTTP2-Settings, no switch.
    assert resp.status == 200
    seen = origin.requests[0]
    assert seen.header("Upgrade") is None
    assert seen.header("HTTP2-Settings") is None
    assert "upgrade" not in (seen.header("Connection") or "").lower()
    assert client.request("GET", "/after").status == 200


def test_websocket_upgrade_still_works_when_h2c_is_offered_too(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(
        build_request(
            "GET",
            "/ws",
            {
                "Connection": "Upgrade",
                "Upgrade": "h2c, websocket",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
            host="h",
        )
    )
    resp = client.read_response()
    assert resp.status == 101
    assert origin.requests[0].header("Upgrade") == "websocket"
    client.send(b"ping")
    assert client.read_exactly(4, timeout=5) == b"ping"
