"""What a request and its response look like on the far side of the proxy: versions, forwarded
headers, hop-by-hop headers, request ids, bodiless responses and interim responses."""

from __future__ import annotations

import pytest

from proxy.testing import request
from proxy.testing.process import proxy_config
from proxy.testing.raw_upstream import listen, read_until

pytestmark = pytest.mark.integration

HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "x-hop")


def test_http11_request_reaches_the_backend(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    resp = request(proxy.host, proxy.port, "GET", "/a/b?x=1&y=2", timeout=5)
    assert resp.status == 200
    assert resp.http_version == "HTTP/1.1"
    assert resp.get("X-Backend-Version") == "v1"
    [seen] = origin.requests
    assert (seen.method, seen.target, seen.http_version) == ("GET", "/a/b?x=1&y=2", "1.1")
    assert seen.body_len == 0


def test_http10_request_without_host_gets_its_answer_and_a_close(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET /old HTTP/1.0\r\n\r\n")
    resp = client.read_response()
    assert resp.status == 200
    assert resp.json()["path"] == "/old"
    assert client.is_closed(timeout=3)
    [seen] = origin.requests
    # Upstream always speaks HTTP/1.1, so it needs a Host: the endpoint's address.
    assert seen.http_version == "1.1"
    assert seen.header("Host") == origin.endpoint


def test_http10_keep_alive_is_honoured(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    for n in range(2):
        client.send(b"GET /ka%d HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n" % n)
        resp = client.read_response()
        assert resp.status == 200
        assert resp.get("Connection", "").lower() == "keep-alive"
    assert [r.path for r in origin.requests] == ["/ka0", "/ka1"]


def test_host_is_kept_and_forwarded_headers_are_set(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/", {"Host": "shop.example:8443"})
    assert resp.status == 200
    [seen] = origin.requests
    assert seen.header_values("Host") == ["shop.example:8443"]
    assert seen.header("X-Forwarded-Host") == "shop.example:8443"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header_values("X-Forwarded-For") == ["127.0.0.1"]


def test_x_forwarded_for_is_appended_to(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.request("GET", "/", {"X-Forwarded-For": "203.0.113.7, 198.51.100.2"})
    [seen] = origin.requests
    assert seen.header_values("X-Forwarded-For") == ["203.0.113.7, 198.51.100.2, 127.0.0.1"]


def test_client_cannot_spoof_forwarded_proto_or_host(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    spoof = {"Host": "real.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    client.request("GET", "/", spoof)
    [seen] = origin.requests
    assert seen.header_values("X-Forwarded-Proto") == ["http"]
    assert seen.header_values("X-Forwarded-Host") == ["real.example"]


def test_request_id_is_generated_once_and_returned(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    first = client.request("GET", "/1")
    second = client.request("GET", "/2")
    seen = origin.requests
    ids = [first.get("X-Request-ID"), second.get("X-Request-ID")]
    assert all(ids) and ids[0] != ids[1]
    assert [r.header_values("X-Request-ID") for r in seen] == [[ids[0]], [ids[1]]]
    assert first.get_all("X-Request-ID") == [ids[0]]


def test_request_id_from_the_client_is_kept(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/", {"X-Request-ID": "client-chosen-42"})
    [seen] = origin.requests
    assert seen.header_values("X-Request-ID") == ["client-chosen-42"]
    # The backend does not echo it and graylane adds it only when it made it up.
    assert resp.get_all("X-Request-ID") == []


def test_hop_by_hop_request_headers_are_removed(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    headers = [
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "named by Connection"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),  # not named by Connection: no upgrade, just a hop-by-hop header
        ("X-End-To-End", "kept"),
    ]
    resp = client.request("GET", "/", headers)
    assert resp.status == 200
    [seen] = origin.requests
    names = {name.lower() for name, _ in seen.headers}
    assert not names & set(HOP_BY_HOP), names
    assert seen.header("X-End-To-End") == "kept"
    # The client's connection is still a keep-alive one.
    assert client.request("GET", "/again").status == 200


def test_hop_by_hop_response_headers_are_removed(graylane, raw_client):
    with listen() as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}"))
        client = raw_client(proxy.host, proxy.port, timeout=5)
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        conn, _ = upstream.accept()
        with conn:
            conn.settimeout(5)
            read_until(conn)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n"
                b"Keep-Alive: timeout=30\r\nProxy-Connection: keep-alive\r\nTrailer: X-Sum\r\n"
                b"Upgrade: h2c\r\nX-End-To-End: kept\r\nContent-Length: 2\r\n\r\nok"
            )
            resp = client.read_response()
    assert resp.status == 200 and resp.body == b"ok"
    names = {name.lower() for name, _ in resp.headers}
    assert not names & set(HOP_BY_HOP) - {"connection"}, names
    assert resp.get_all("Connection") == []
    assert resp.get("X-End-To-End") == "kept"


def test_head_response_keeps_content_length_and_has_no_body(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("HEAD", "/head-only")
    assert resp.status == 200
    assert resp.get("Content-Length") == "11"
    assert resp.body == b""
    # No stray body bytes: the next response on the connection parses cleanly.
    after = client.request("GET", "/head-only")
    assert after.body == b"hello world"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_pass_without_a_body(backend, graylane, raw_client, status):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", f"/status/{status}")
    assert resp.status == status
    assert resp.get("Transfer-Encoding") is None
    assert resp.body == b""
    assert client.request("GET", "/next").status == 200


def test_early_hints_reach_an_http11_client(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/early-hints")
    assert resp.status == 200
    [hints] = resp.interim
    assert hints.status == 103
    assert hints.get("Link") == "</style.css>; rel=preload; as=style"


def test_early_hints_are_not_sent_to_an_http10_client(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET /early-hints HTTP/1.0\r\nHost: h\r\n\r\n")
    resp = client.read_response()
    assert resp.status == 200
    assert resp.interim == []


def test_absolute_form_target_is_sent_upstream_in_origin_form(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET http://site.example/p?q=1 HTTP/1.1\r\nHost: site.example\r\n\r\n")
    assert client.read_response().status == 200
    [seen] = origin.requests
    assert seen.target == "/p?q=1"


def test_python_http_client_works_through_the_proxy(backend, graylane):
    import http.client

    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
    try:
        for n in range(3):
            conn.request("POST", f"/echo?n={n}", body=b"payload-%d" % n, headers={"Content-Type": "text/x"})
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == b"payload-%d" % n
    finally:
        conn.close()
    assert {r.connection_id for r in origin.requests} == {1}
