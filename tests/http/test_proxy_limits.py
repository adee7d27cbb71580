"""Client-side limits: head size (431), request-target length (414), header count (431) and
``max_connections`` (idle connections make room; with none idle, accepting pauses instead of failing)."""

from __future__ import annotations

import pytest

from proxy.testing import RawClient, build_request, request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration

LIMITS = {"max_header_bytes": "4KiB", "max_uri_bytes": 1024, "max_headers": 10}


def _rejected(client: RawClient, status: int) -> None:
    resp = client.read_response()
    assert resp.status == status
    assert resp.get("Connection", "").lower() == "close"
    assert resp.json()["status"] == status
    assert resp.get("X-Request-ID") == resp.json()["request_id"]
    assert client.is_closed(timeout=3)


@pytest.fixture
def limited(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits=LIMITS, admin=True))
    return origin, proxy


def test_requests_within_the_limits_pass(limited, raw_client):
    origin, proxy = limited
    client = raw_client(proxy.host, proxy.port, timeout=5)
    headers = [(f"X-H{n}", "v" * 200) for n in range(8)]  # 9 headers with Host, ~1.8 KiB
    assert client.request("GET", "/" + "a" * 1000, headers).status == 200
    assert len(origin.requests) == 1


def test_complete_head_too_large_gets_431(limited, raw_client):
    origin, proxy = limited
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/", {"X-Big": "b" * 5000}, host="h"))
    _rejected(client, 431)
    assert origin.requests == []


def test_endless_head_gets_431_before_it_ends(limited, raw_client):
    origin, proxy = limited
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 6000)  # no blank line yet
    _rejected(client, 431)


def test_long_request_target_gets_414(limited, raw_client):
    origin, proxy = limited
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/" + "u" * 1500, host="h"))
    _rejected(client, 414)
    assert origin.requests == []


def test_endless_request_line_gets_414(limited, raw_client):
    origin, proxy = limited
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(b"GET /" + b"u" * 2000)  # not even the end of the request line yet
    _rejected(client, 414)


def test_too_many_headers_gets_431(limited, raw_client):
    origin, proxy = limited
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/", [(f"X-N{n}", "1") for n in range(20)], host="h"))
    _rejected(client, 431)
    assert origin.requests == []


def test_rejections_are_counted(limited, raw_client):
    origin, proxy = limited
    for target, headers in (("/" + "u" * 1500, {}), ("/", {"X-Big": "b" * 5000})):
        client = raw_client(proxy.host, proxy.port, timeout=5)
        client.send(build_request("GET", target, headers, host="h"))
        assert client.read_response().status in (414, 431)
    stats = request(*proxy.admin_address, "GET", "/stats", timeout=5).json()
    assert stats["rejected_by_reason"] == {"414": 1, "431": 1}
    assert stats["errors_by_flag"].get("DPE") == 2


def test_max_connections_pauses_accepting_while_every_connection_is_busy(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"max_connections": 2}, admin=True))
    first = raw_client(proxy.host, proxy.port, timeout=5)
    second = raw_client(proxy.host, proxy.port, timeout=5)
    first.send(build_request("GET", "/slow?delay=1", host="h"))
    second.send(build_request("GET", "/slow?delay=1", host="h"))
    origin.wait_for_requests(2)
    # The kernel completes the third handshake (backlog), but graylane does not accept it:
    # both connections have a request in flight, so none can make room.
    third = raw_client(proxy.host, proxy.port, timeout=5)
    third.send(build_request("GET", "/3", host="h"))
    with pytest.raises(TimeoutError):
        third.read_response(timeout=0.5)
    assert [r.path for r in origin.requests] == ["/slow", "/slow"]
    assert first.read_response().status == 200
    assert second.read_response().status == 200
    # Once idle, the longest idle connection is closed to make room for the waiting one.
    resp = third.read_response(timeout=5)
    assert resp.status == 200
    assert resp.json()["path"] == "/3"
    stats = request(*proxy.admin_address, "GET", "/stats", timeout=5).json()
    assert stats["accept_paused"] >= 1
    assert stats["connections_evicted"] == 1
    assert stats["connections_open"] == 2
