"""Request and response bodies: streamed both ways as they arrive, re-framed for the client's version."""

from __future__ import annotations

import pytest

from proxy.testing import build_request, pattern_bytes
from proxy.testing.process import proxy_config
from proxy.testing.raw_upstream import listen, read_at_least, read_until

pytestmark = pytest.mark.integration


def test_content_length_body_is_streamed_before_it_is_complete(graylane, raw_client):
    body = pattern_bytes(200_000)
    half = len(body) // 2
    with listen() as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}"))
        client = raw_client(proxy.host, proxy.port, timeout=5)
        head = build_request("PUT", "/upload", {"Content-Length": str(len(body))}, host="h")
        client.send(head + body[:half])
        conn, _ = upstream.accept()
        with conn:
            conn.settimeout(5)
            got = read_until(conn)
            head, _, got = got.partition(b"\r\n\r\n")
            assert b"\r\ncontent-length: 200000\r\n" in head.lower() + b"\r\n"
            # The first half is upstream while the client has not sent the rest.
            got = read_at_least(conn, got, half)
            assert got == body[:half]
            client.send(body[half:])
            got = read_at_least(conn, got, len(body))
            assert got == body
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            assert client.read_response().status == 201


def test_chunked_body_is_streamed_chunk_by_chunk(graylane, raw_client):
    with listen() as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}"))
        client = raw_client(proxy.host, proxy.port, timeout=5)
        head = build_request("POST", "/c", {"Transfer-Encoding": "chunked"}, host="h")
        client.send(head + b"5\r\nhello\r\n")
        conn, _ = upstream.accept()
        with conn:
            conn.settimeout(5)
            got = read_until(conn)
            head, _, got = got.partition(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head.lower()
            got = read_until(conn, b"hello\r\n", got)
            assert got == b"5\r\nhello\r\n"  # validated chunks pass unchanged
            client.send(b"6;ext=1\r\n world\r\n0\r\n\r\n")
            got = read_until(conn, b"0\r\n\r\n", got)
            assert got == b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            assert client.read_response().body == b"ok"


def test_large_body_arrives_whole(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=10)
    body = pattern_bytes(3 * 1024 * 1024 + 17)
    resp = client.request("POST", "/echo", {"Content-Type": "application/octet-stream"}, body)
    assert resp.status == 200
    assert resp.body == body


def test_chunked_request_body_reaches_the_backend(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(
        build_request("POST", "/echo", {"Transfer-Encoding": "chunked"}, host="h")
        + b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    resp = client.read_response()
    assert resp.body == b"abcdefg"
    assert client.request("GET", "/next").status == 200  # framing ended where it should


def test_expect_100_continue(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    # The first time on a fresh upstream connection, the second on the pooled one.
    for n in range(2):
        body = b"%d" % n * 1000
        head = build_request("POST", "/echo", {"Expect": "100-continue", "Content-Length": "1000"}, host="h")
        client.send(head)
        interim = client.read_response(return_interim=True)
        assert interim.status == 100
        client.send(body)
        resp = client.read_response()
        assert resp.status == 200
        assert resp.body == body
        assert resp.interim == []  # the backend's own 100 is not relayed a second time
    assert origin.connections_accepted == 1
    assert client.request("GET", "/next").status == 200


def test_chunked_response_passes_to_an_http11_client(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/chunked?n=5&size=10000")
    assert resp.status == 200
    assert resp.chunked
    assert resp.body == pattern_bytes(50_000)
    assert client.request("GET", "/next").status == 200


def test_chunked_response_is_decoded_for_an_http10_client(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET /chunked?n=4&size=5000 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
    resp = client.read_response()
    assert resp.status == 200
    assert resp.get("Transfer-Encoding") is None
    assert resp.get("Content-Length") is None
    assert resp.get("Connection", "").lower() != "keep-alive"
    assert resp.body == pattern_bytes(20_000)  # close-delimited: the read ended at the close
    # The backend answered chunked (graylane speaks 1.1 upstream) and kept its connection.
    assert origin.requests[0].http_version == "1.1"


def test_close_delimited_response_is_chunked_for_an_http11_client(graylane, raw_client):
    with listen() as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}"))
        client = raw_client(proxy.host, proxy.port, timeout=5)
        client.send(build_request("GET", "/", host="h"))
        conn, _ = upstream.accept()
        with conn:
            conn.settimeout(5)
            read_until(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst ")
            conn.sendall(b"second")
        resp = client.read_response()
        assert resp.chunked
        assert resp.body == b"first second"
        # Chunked framing told the client where the body ended: its connection lives on.
        client.send(build_request("GET", "/again", host="h"))
        conn, _ = upstream.accept()
        with conn:
            conn.settimeout(5)
            read_until(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain")
            assert client.read_response().body == b"again"


def test_bytes_response_is_exact(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=10)
    resp = client.request("GET", "/bytes?n=5000000")
    assert resp.get("Content-Length") == "5000000"
    assert resp.body == pattern_bytes(5_000_000)


def test_close_delimited_response_stays_close_delimited_for_an_http10_client(graylane, raw_client):
    with listen() as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}"))
        client = raw_client(proxy.host, proxy.port, timeout=5)
        client.send(b"GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
        conn, _ = upstream.accept()
        with conn:
            conn.settimeout(5)
            read_until(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nraw ")
            conn.sendall(b"bytes")
        resp = client.read_response()
    assert resp.get("Transfer-Encoding") is None
    assert resp.get("Connection", "").lower() != "keep-alive"
    assert resp.body == b"raw bytes"
    assert client.is_closed(timeout=3)
