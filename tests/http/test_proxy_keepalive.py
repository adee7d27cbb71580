"""Keep-alive on both sides, pipelining, and ``Connection: close`` from either side."""

from __future__ import annotations

import pytest

from proxy.testing import build_request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration


def test_sequential_requests_share_one_client_and_one_upstream_connection(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    for n in range(5):
        resp = client.request("GET", f"/seq/{n}")
        assert resp.status == 200
        assert resp.get("Connection") is None  # keep-alive is the HTTP/1.1 default
        assert resp.json()["path"] == f"/seq/{n}"
    assert origin.connections_accepted == 1
    assert [r.connection_id for r in origin.requests] == [1] * 5


def test_separate_clients_reuse_the_pooled_upstream_connection(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    for n in range(3):
        client = raw_client(proxy.host, proxy.port, timeout=5)
        assert client.request("GET", f"/c{n}").status == 200
        client.close()
    assert origin.connections_accepted == 1


def test_pipelined_requests_are_answered_in_order(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    # The first is the slowest: a proxy answering out of order would show it.
    client.send(
        build_request("GET", "/slow?delay=0.2", host="h")
        + build_request("POST", "/echo", {"Content-Type": "text/plain"}, b"second body", host="h")
        + build_request("GET", "/third", host="h")
    )
    first = client.read_response()
    second = client.read_response()
    third = client.read_response()
    assert first.json()["path"] == "/slow"
    assert second.body == b"second body"
    assert third.json()["path"] == "/third"
    assert [r.path for r in origin.requests] == ["/slow", "/echo", "/third"]


def test_pipelined_requests_split_across_writes(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    data = b"".join(build_request("GET", f"/p{n}", host="h") for n in range(3))
    cut = len(data) // 2 + 3
    client.send(data[:cut])
    first = client.read_response()
    client.send(data[cut:])
    assert [first.json()["path"]] + [client.read_response().json()["path"] for _ in range(2)] == [
        "/p0",
        "/p1",
        "/p2",
    ]


def test_client_connection_close_is_honoured(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/bye", {"Connection": "close"})
    assert resp.status == 200
    assert resp.get("Connection", "").lower() == "close"
    assert client.is_closed(timeout=3)
    # The upstream connection is the proxy's business: it goes back to the pool.
    [seen] = origin.requests
    assert seen.header("Connection") is None or seen.header("Connection").lower() != "close"
    other = raw_client(proxy.host, proxy.port, timeout=5)
    assert other.request("GET", "/next").status == 200
    assert origin.connections_accepted == 1


def test_upstream_connection_close_ends_that_upstream_connection_only(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/close")
    assert resp.status == 200
    assert resp.get("Connection") is None  # the upstream's close is not the client's
    origin.wait_until(lambda b: b.connections_open == 0)
    # The client's connection goes on, on a new upstream connection.
    assert client.request("GET", "/after").status == 200
    assert [r.connection_id for r in origin.requests] == [1, 2]
    assert client.request("GET", "/again").status == 200
    assert origin.connections_accepted == 2


def test_client_half_close_still_gets_its_answer_with_ignore_client_abort(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"ignore_client_abort": True}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/slow?delay=0.1", host="h"))
    client.shutdown_write()
    resp = client.read_response()
    assert resp.status == 200
    assert client.is_closed(timeout=3)


def test_long_pipeline_beyond_the_head_limit_is_answered_in_order(backend, graylane, raw_client):
    origin = backend()
    # 200 pipelined heads are far more than max_header_bytes: graylane stops reading
    # while they wait, and reads on as answers leave.
    proxy = graylane(proxy_config(origin.endpoint, limits={"max_header_bytes": "2KiB"}))
    client = raw_client(proxy.host, proxy.port, timeout=10)
    count = 200
    pad = {"X-Pad": "p" * 100}
    client.send(b"".join(build_request("GET", f"/n/{n}", pad, host="h") for n in range(count)))
    paths = [client.read_response().json()["path"] for _ in range(count)]
    assert paths == [f"/n/{n}" for n in range(count)]
    assert origin.connections_accepted == 1


def test_pipelined_requests_then_half_close_are_all_answered(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"ignore_client_abort": True}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    # A client that sends its whole pipeline and then its FIN (``nc``-style) still wants every answer.
    client.send(b"".join(build_request("GET", f"/hc/{n}", host="h") for n in range(3)))
    client.shutdown_write()
    paths = [client.read_response().json()["path"] for _ in range(3)]
    assert paths == ["/hc/0", "/hc/1", "/hc/2"]
    assert client.is_closed(timeout=3)
