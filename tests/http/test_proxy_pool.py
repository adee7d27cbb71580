"""The upstream connection pool: max_idle, idle_timeout, dead pooled connections, and the one
retry of a bodiless idempotent request that failed on a reused connection."""

from __future__ import annotations

import socket

import pytest

from proxy.testing import build_request, request
from proxy.testing.process import proxy_config
from proxy.testing.raw_upstream import accept, listen, read_until

pytestmark = pytest.mark.integration


def _stats(proxy) -> dict:
    return request(*proxy.admin_address, "GET", "/stats", timeout=5).json()


def _read_request(conn: socket.socket) -> bytes:
    """One bodiless request, or b"" if the proxy closed the connection."""
    return read_until(conn, allow_close=True)


def _request_line(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0]


def _answer(conn: socket.socket, body: bytes = b"ok") -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def test_max_idle_keeps_that_many_connections(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, upstream={"max_idle": 1}, admin=True))
    clients = [raw_client(proxy.host, proxy.port, timeout=5) for _ in range(3)]
    for n, client in enumerate(clients):  # three exchanges in flight at once: three connections
        client.send(build_request("GET", f"/slow?delay=0.3&n={n}", host="h"))
    origin.wait_until(lambda b: b.connections_accepted == 3)
    for client in clients:
        assert client.read_response().status == 200
    origin.wait_until(lambda b: b.connections_open == 1)
    assert _stats(proxy)["upstream_idle"] == 1
    assert clients[0].request("GET", "/reuse").status == 200
    assert origin.connections_accepted == 3


def test_idle_connections_close_after_idle_timeout(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, upstream={"idle_timeout": "300ms"}, admin=True))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("GET", "/1").status == 200
    assert origin.connections_open == 1
    origin.wait_until(lambda b: b.connections_open == 0, timeout=3)
    assert _stats(proxy)["upstream_idle"] == 0
    assert client.request("GET", "/2").status == 200
    assert [r.connection_id for r in origin.requests] == [1, 2]


def test_pooled_connection_closed_by_the_server_is_not_used(graylane, raw_client):
    with listen() as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}", admin=True))
        client = raw_client(proxy.host, proxy.port, timeout=5)
        client.send(build_request("GET", "/1", host="h"))
        with accept(upstream) as first:
            _read_request(first)
            _answer(first)
            assert client.read_response().status == 200
            # The server ends the idle connection; graylane notices and closes its side too.
            first.shutdown(socket.SHUT_WR)
            assert first.recv(1) == b""
        client.send(build_request("GET", "/2", host="h"))
        with accept(upstream) as second:
            assert _request_line(_read_request(second)) == b"GET /2 HTTP/1.1"
            _answer(second)
        assert client.read_response().status == 200
    stats = _stats(proxy)
    assert stats["retries"] == 0
    assert stats["pool_misses"] == 2


def test_get_that_fails_on_a_reused_connection_is_retried_once(graylane, raw_client):
    with listen() as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}", admin=True))
        client = raw_client(proxy.host, proxy.port, timeout=5)
        client.send(build_request("GET", "/1", host="h"))
        with accept(upstream) as first:
            _read_request(first)
            _answer(first)
            assert client.read_response().status == 200
            client.send(build_request("GET", "/2", {"X-Request-ID": "rid-2"}, host="h"))
            lost = _read_request(first)
            assert _request_line(lost) == b"GET /2 HTTP/1.1"
        # ... closed without a byte of answer: graylane tries once more on a fresh connection.
        with accept(upstream) as second:
            again = _read_request(second)
            assert again == lost
            _answer(second, b"second try")
        resp = client.read_response()
        assert resp.status == 200
        assert resp.body == b"second try"
    stats = _stats(proxy)
    assert stats["retries"] == 1
    assert stats["errors_by_flag"] == {}


def test_retry_happens_only_once(graylane, raw_client):
    with listen() as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}", admin=True))
        client = raw_client(proxy.host, proxy.port, timeout=5)
        client.send(build_request("GET", "/1", host="h"))
        with accept(upstream) as first:
            _read_request(first)
            _answer(first)
            assert client.read_response().status == 200
            client.send(build_request("GET", "/2", host="h"))
            _read_request(first)
        with accept(upstream) as second:  # the retry also dies
            assert _read_request(second)
        resp = client.read_response()
        assert resp.status == 502
    stats = _stats(proxy)
    assert stats["retries"] == 1
    assert stats["errors_by_flag"] == {"UC": 1}


def test_post_that_fails_on_a_reused_connection_is_not_retried(graylane, raw_client):
    with listen() as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}", admin=True))
        client = raw_client(proxy.host, proxy.port, timeout=5)
        client.send(build_request("GET", "/1", host="h"))
        with accept(upstream) as first:
            _read_request(first)
            _answer(first)
            assert client.read_response().status == 200
            client.send(build_request("POST", "/order", {"Content-Type": "text/plain"}, b"buy 1", host="h"))
            assert _request_line(_read_request(first)) == b"POST /order HTTP/1.1"
        resp = client.read_response()
        assert resp.status == 502
        assert resp.json()["error"] == "bad_gateway"
        # The next upstream connection carries the client's next request, not a second POST.
        client.send(build_request("GET", "/after", host="h"))
        with accept(upstream) as second:
            assert _request_line(_read_request(second)) == b"GET /after HTTP/1.1"
            _answer(second)
        assert client.read_response().status == 200
    stats = _stats(proxy)
    assert stats["retries"] == 0
    assert stats["errors_by_flag"] == {"UC": 1}


def test_backend_restart_is_survived(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("GET", "/before").status == 200
    origin.stop()  # aborts the pooled connection
    origin.start()
    assert client.request("GET", "/after").status == 200
    assert client.request("GET", "/again").status == 200
