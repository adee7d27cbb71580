"""What RFC 9110 asks of an intermediary: Via on both directions (7.6.3) and Max-Forwards (7.6.2)."""

from __future__ import annotations

import pytest

from proxy.testing import build_request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration


def test_via_is_added_to_the_request_and_the_response(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/")
    assert resp.status == 200
    assert resp.get_all("Via") == ["1.1 graylane"]
    assert origin.requests[0].header_values("Via") == ["1.1 graylane"]


def test_via_keeps_the_list_it_came_with_and_names_the_protocol_received(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, protocol={"via": "edge-7"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/", {"Via": "1.1 cdn, 1.0 corp"}, host="h", version="HTTP/1.0"))
    resp = client.read_response()
    assert resp.status == 200
    # Appended after the client's own list: read as one list, this hop comes last.
    assert origin.requests[0].header_values("Via") == ["1.1 cdn, 1.0 corp", "1.0 edge-7"]
    assert resp.get_all("Via") == ["1.1 edge-7"]


@pytest.mark.parametrize("off", [False, ""])
def test_via_can_be_switched_off(backend, graylane, raw_client, off):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, protocol={"via": off}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/")
    assert resp.get("Via") is None
    assert origin.requests[0].header("Via") is None


def test_options_with_max_forwards_zero_is_answered_by_graylane(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("OPTIONS", "*", {"Max-Forwards": "0"})
    assert resp.status == 200
    assert "OPTIONS" in resp.get("Allow", "")
    assert "TRACE" not in resp.get("Allow", "")
    assert resp.body == b""
    assert origin.requests == []
    # The connection goes on.
    assert client.request("GET", "/next").status == 200


def test_max_forwards_is_decremented_before_forwarding(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, protocol={"trace": True}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("OPTIONS", "/a", {"Max-Forwards": "3"}).status == 200
    assert client.request("TRACE", "/b", {"Max-Forwards": "1"}).status == 200
    # Other methods carry it unchanged (RFC 9110 7.6.2 concerns OPTIONS and TRACE only).
    assert client.request("GET", "/c", {"Max-Forwards": "5"}).status == 200
    values = [r.header_values("Max-Forwards") for r in origin.requests]
    assert values == [["2"], ["0"], ["5"]]


def test_trace_with_max_forwards_zero_is_refused_unless_enabled(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("TRACE", "/", {"Max-Forwards": "0"})
    assert resp.status == 405
    assert "TRACE" not in resp.get("Allow", "")
    assert origin.requests == []


def test_trace_with_max_forwards_zero_is_reflected_when_enabled(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, protocol={"trace": True}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    headers = {"Max-Forwards": "0", "X-Probe": "p1", "Authorization": "Bearer secret", "Cookie": "s=1"}
    resp = client.request("TRACE", "/where", headers)
    assert resp.status == 200
    assert resp.get("Content-Type") == "message/http"
    assert resp.body.startswith(b"TRACE /where HTTP/1.1\r\n")
    assert b"x-probe: p1\r\n" in resp.body
    # Credentials are not echoed (RFC 9110 9.3.8).
    assert b"secret" not in resp.body and b"s=1" not in resp.body
    assert origin.requests == []


def test_malformed_max_forwards_on_options_is_a_400(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("OPTIONS", "/", {"Max-Forwards": "-1"})
    assert resp.status == 400
    assert origin.requests == []
