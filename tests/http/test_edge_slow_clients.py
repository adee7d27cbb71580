"""Slow and abusive clients, end to end: trickled bodies, stalled origins, clients that leave,
refusals a client can still read (lingering close) and over-long request lines."""

from __future__ import annotations

import select
import socket
import time

import pytest

from proxy.testing import request
from proxy.testing.process import proxy_config
from proxy.testing.raw_upstream import accept, listen, read_until

pytestmark = pytest.mark.integration


def test_trickled_body_gets_408_and_the_origin_never_sees_it_complete(graylane, raw_client):
    srv = listen()
    endpoint = f"127.0.0.1:{srv.getsockname()[1]}"
    proxy = graylane(proxy_config(endpoint, limits={"request_body_timeout": "400ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nab")
    upstream = accept(srv)
    got = read_until(upstream, b"ab")
    began = time.monotonic()
    resp = client.read_response(timeout=5)
    assert resp.status == 408
    assert time.monotonic() - began < 3
    # The upstream request is aborted: its connection ends with the body short.
    upstream.settimeout(3)
    rest = b""
    while chunk := upstream.recv(65536):
        rest += chunk
    body = (got + rest).partition(b"\r\n\r\n")[2]
    assert body == b"ab"
    assert client.is_closed(timeout=5)


def test_a_steady_body_is_not_cut_by_the_body_timeout(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"request_body_timeout": "600ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=10)
    client.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n")
    for byte in b"hello":  # 5 x 0.3 s: longer than the timeout in all, never idle that long
        time.sleep(0.3)  # the pace of the client is what is tested
        client.send(bytes([byte]))
    resp = client.read_response()
    assert resp.status == 200


def test_many_trickling_clients_do_not_slow_normal_requests(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"request_body_timeout": "10s"}))
    tricklers = []
    try:
        for _ in range(100):
            sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\nx")
            tricklers.append(sock)
        began = time.monotonic()
        for n in range(50):
            assert request(proxy.host, proxy.port, "GET", f"/n{n}", timeout=5).status == 200
        assert time.monotonic() - began < 5
    finally:
        for sock in tricklers:
            sock.close()


def test_origin_stalling_mid_body_is_cut_and_the_client_sees_a_short_response(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, upstream={"response_idle_timeout": "400ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=10)
    client.send(b"GET /slowbody?delay=8 HTTP/1.1\r\nHost: h\r\n\r\n")
    began = time.monotonic()
    data = client.read_until_closed(timeout=6)
    assert data.startswith(b"HTTP/1.1 200 ")
    head, _, body = data.partition(b"\r\n\r\n")
    [length_line] = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = int(length_line.split(b":")[1])
    assert len(body) < length
    assert time.monotonic() - began < 4


def test_client_leaving_while_the_answer_is_awaited_aborts_the_upstream_request(graylane, raw_client):
    srv = listen()
    proxy = graylane(proxy_config(f"127.0.0.1:{srv.getsockname()[1]}"))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET /work HTTP/1.1\r\nHost: h\r\n\r\n")
    upstream = accept(srv)
    read_until(upstream)
    client.close()  # an ordinary close: a FIN
    upstream.settimeout(2)
    # The upstream connection ends at once (nothing waits for an answer nobody will read).
    assert upstream.recv(1) == b""


def test_half_closed_client_is_answered_with_ignore_client_abort(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"ignore_client_abort": True}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET /slow?delay=0.1 HTTP/1.1\r\nHost: h\r\n\r\n")
    client.shutdown_write()
    assert client.read_response().status == 200


def test_431_is_readable_by_a_client_still_sending_a_huge_head(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
    try:
        line = b"X-Filler: " + b"f" * 1000 + b"\r\n"
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n" + line * 40)  # past max_header_bytes
        readable, _, _ = select.select([sock], [], [], 5)
        assert readable, "no answer to an over-long head"
        # The client goes on sending its head (6 MiB in all) after graylane has answered: closing
        # with its bytes unread would reset the connection, and this sendall would fail.
        sock.sendall(line * 6000)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, "closed without an answer"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 ")
    finally:
        sock.close()
    assert origin.requests == []


def test_a_64k_request_target_gets_414_not_431(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert client.read_response().status == 414
    stats_client = raw_client(proxy.host, proxy.port, timeout=5)
    # A long target in a small head is a 414 as before.
    stats_client.send(b"GET /" + b"b" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert stats_client.read_response().status == 414
