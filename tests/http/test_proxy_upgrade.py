"""Upgrade (WebSocket): the 101 goes through, then a byte tunnel closed from either side."""

from __future__ import annotations

import pytest

from proxy.testing import build_request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration

UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def _open_tunnel(client):
    client.send(build_request("GET", "/ws", UPGRADE_HEADERS, host="h"))
    resp = client.read_response()
    assert resp.status == 101
    assert resp.get("Upgrade", "").lower() == "websocket"
    assert resp.get("Connection", "").lower() == "upgrade"
    return resp


def test_upgrade_request_is_forwarded_with_its_headers(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    _open_tunnel(client)
    [seen] = origin.wait_for_requests(1)
    assert seen.header("Connection", "").lower() == "upgrade"
    assert seen.header("Upgrade") == "websocket"
    assert seen.header("Sec-WebSocket-Key") == UPGRADE_HEADERS["Sec-WebSocket-Key"]
    # Past the 101 nothing is HTTP any more: an HTTP-looking line is just bytes.
    line = b"GET /not-parsed HTTP/1.1\r\n\r\n"
    client.send(line)
    assert client.read_exactly(len(line)) == line
    assert len(origin.requests) == 1


def test_bytes_echo_both_ways_in_many_pieces(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    _open_tunnel(client)
    for n in range(20):
        piece = bytes([n]) * (1 + n * 997)
        client.send(piece)
        assert client.read_exactly(len(piece)) == piece
    big = bytes(range(256)) * 8192  # 2 MiB, more than any socket buffer: flow control both ways
    client.send(big)
    assert client.read_exactly(len(big), timeout=10) == big


def test_bytes_sent_with_the_upgrade_request_reach_the_tunnel(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/ws", UPGRADE_HEADERS, host="h") + b"early bytes")
    assert client.read_response().status == 101
    assert client.read_exactly(11) == b"early bytes"


def test_client_close_closes_the_upstream_side(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    _open_tunnel(client)
    client.send(b"x")
    assert client.read_exactly(1) == b"x"
    assert origin.connections_open == 1
    client.close()
    origin.wait_until(lambda b: b.connections_open == 0)


def test_upstream_close_closes_the_client_side(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    _open_tunnel(client)
    client.send(b"y")
    assert client.read_exactly(1) == b"y"
    origin.stop()  # aborts every connection the backend has
    assert client.is_closed(timeout=3)


def test_declined_upgrade_is_an_ordinary_exchange(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    # IRC is not something the backend switches to: it answers 200 and HTTP goes on.
    # (h2c is never forwarded at all: tests/http/test_edge_smuggling.py.)
    resp = client.request("GET", "/plain", {"Connection": "Upgrade", "Upgrade": "IRC/6.9"})
    assert resp.status == 200
    assert resp.get("Upgrade") is None
    assert origin.requests[0].header("Upgrade") == "IRC/6.9"  # forwarded while asking for a tunnel
