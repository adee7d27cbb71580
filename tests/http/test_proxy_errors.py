"""Upstream failures become 502/504 answers graylane writes itself, and are counted by flag."""

from __future__ import annotations

import socket
import struct

import pytest

from proxy.testing import free_port, request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration


def _stats(proxy) -> dict:
    return request(*proxy.admin_address, "GET", "/stats", timeout=5).json()


def _assert_error(resp, status: int) -> None:
    assert resp.status == status
    assert resp.get("Content-Type") == "application/json"
    body = resp.json()
    assert set(body) == {"error", "status", "request_id"}
    assert body["status"] == status
    assert body["request_id"] and body["request_id"] == resp.get("X-Request-ID")


def test_connection_refused_gets_502(graylane, raw_client):
    proxy = graylane(proxy_config(f"127.0.0.1:{free_port()}", admin=True))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/")
    _assert_error(resp, 502)
    assert resp.json()["error"] == "bad_gateway"
    # A failed connect ends the exchange, not the client's connection.
    _assert_error(client.request("GET", "/again"), 502)
    stats = _stats(proxy)
    assert stats["errors_by_flag"] == {"UF": 2}
    assert stats["upstream_connect_errors"] == 2
    assert stats["responses_by_class"][5] == 2


def test_client_request_id_is_named_in_the_error(graylane, raw_client):
    proxy = graylane(proxy_config(f"127.0.0.1:{free_port()}"))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/", {"X-Request-ID": "trace-me"})
    assert resp.status == 502
    assert resp.json()["request_id"] == "trace-me"
    assert resp.get("X-Request-ID") == "trace-me"


def test_upstream_reset_gets_502(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    _assert_error(client.request("GET", "/reset"), 502)
    assert client.request("GET", "/fine").status == 200
    assert _stats(proxy)["errors_by_flag"] == {"UC": 1}


def test_upstream_garbage_gets_502(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    _assert_error(client.request("GET", "/garbage"), 502)
    assert client.request("GET", "/fine").status == 200
    assert _stats(proxy)["errors_by_flag"] == {"UPE": 1}


def test_head_request_error_has_no_body(graylane, raw_client):
    proxy = graylane(proxy_config(f"127.0.0.1:{free_port()}"))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("HEAD", "/")
    assert resp.status == 502
    assert int(resp.get("Content-Length")) > 0
    assert resp.body == b""
    assert client.request("HEAD", "/").status == 502  # nothing stray on the connection


def test_upstream_status_codes_pass_through(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    for status in (404, 500, 503):
        resp = client.request("GET", f"/status/{status}")
        assert resp.status == status
        assert resp.json()["version"] == "v1"  # the backend's own answer
    stats = _stats(proxy)
    assert stats["errors_by_flag"] == {}
    assert stats["responses_by_class"][4:] == [1, 2]


def test_every_error_kind_is_counted(backend, graylane, raw_client):
    origin = backend()
    dead = f"127.0.0.1:{free_port()}"
    config = proxy_config(origin.endpoint, upstream={"response_head_timeout": "300ms"}, admin=True)
    proxy = graylane(config)
    for target in ("/reset", "/garbage", "/hang"):
        assert request(proxy.host, proxy.port, "GET", target, timeout=5).status in (502, 504)
    # UF needs an endpoint that refuses: reload onto one.
    proxy.write_config(proxy_config(dead, admin=True))
    assert request(*proxy.admin_address, "POST", "/reload", timeout=5).status == 200
    assert request(proxy.host, proxy.port, "GET", "/", timeout=5).status == 502
    stats = _stats(proxy)
    assert stats["errors_by_flag"] == {"UC": 1, "UPE": 1, "UT": 1, "UF": 1}
    assert stats["responses_by_class"][5] == 4
    assert stats["requests"] == 4


def test_client_leaving_mid_exchange_is_counted(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: h\r\n\r\n")
    origin.wait_for_requests(1)
    # A reset, not a FIN: a FIN may be a half-close from a client still waiting for its answer.
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    # The upstream side is closed too (the backend, seeing the end of its input, closes
    # once it has answered; a pooled connection would stay open).
    origin.wait_until(lambda b: b.connections_open == 0)
    assert _stats(proxy)["errors_by_flag"] == {"DC": 1}
