"""Timeouts on both sides: request head (408), keep-alive idle, upstream response head and whole
request (504)."""

from __future__ import annotations

import time

import pytest

from proxy.config.load import load_config
from proxy.runtime.server import sweep_interval
from proxy.testing import RawClient, build_request, request
from proxy.testing.process import proxy_config


def _trickle_until_answered(client: RawClient, pieces: list[bytes]) -> bytes:
    """Send ``pieces`` one by one, each after a read that waited 0.1 s for an answer."""
    for piece in pieces:
        try:
            return client.recv_some(timeout=0.1)
        except TimeoutError:
            client.send(piece)
    return client.recv_some(timeout=3)


@pytest.mark.integration
def test_slowloris_head_gets_408(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"request_head_timeout": "300ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    began = time.monotonic()
    client.send(b"GET / HTTP/1.1\r\n")
    first = _trickle_until_answered(client, [b"X-Slow-%d: 1\r\n" % n for n in range(50)])
    elapsed = time.monotonic() - began
    assert first.startswith(b"HTTP/1.1 408 ")
    assert 0.25 <= elapsed < 2.5
    assert client.is_closed(timeout=3)
    assert origin.requests == []


@pytest.mark.integration
def test_silent_connection_is_closed_without_an_answer(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"request_head_timeout": "300ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.is_closed(timeout=3)
    assert client.read_until_closed(timeout=1) == b""


@pytest.mark.integration
def test_head_timeout_applies_to_later_requests_on_a_keep_alive_connection(backend, graylane, raw_client):
    origin = backend()
    limits = {"request_head_timeout": "300ms", "keepalive_timeout": "5s"}
    proxy = graylane(proxy_config(origin.endpoint, limits=limits))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("GET", "/first").status == 200
    client.send(b"GET /second HTTP/1.1\r\n")
    first = _trickle_until_answered(client, [b"X-Slow-%d: 1\r\n" % n for n in range(50)])
    assert first.startswith(b"HTTP/1.1 408 ")


@pytest.mark.integration
def test_idle_keep_alive_connection_is_closed(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"keepalive_timeout": "300ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("GET", "/").status == 200
    began = time.monotonic()
    assert client.is_closed(timeout=3)
    assert time.monotonic() - began >= 0.2


@pytest.mark.integration
def test_keep_alive_timeout_does_not_cut_a_slow_exchange(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"keepalive_timeout": "200ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("GET", "/").status == 200
    assert client.request("GET", "/slow?delay=0.6").status == 200


@pytest.mark.integration
def test_upstream_response_head_timeout_gets_504(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, upstream={"response_head_timeout": "300ms"}, admin=True))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    began = time.monotonic()
    resp = client.request("GET", "/hang")
    assert resp.status == 504
    assert 0.25 <= time.monotonic() - began < 2.5
    body = resp.json()
    assert body["status"] == 504 and body["request_id"] == resp.get("X-Request-ID")
    # The connection that hung is not reused; the client's connection goes on.
    assert client.request("GET", "/fine").status == 200
    assert [r.connection_id for r in origin.requests] == [1, 2]
    stats = request(*proxy.admin_address, "GET", "/stats", timeout=5).json()
    assert stats["errors_by_flag"] == {"UT": 1}
    assert stats["upstream_timeouts"] == 1


@pytest.mark.integration
def test_response_head_timeout_does_not_cut_a_slow_body(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, upstream={"response_head_timeout": "300ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    resp = client.request("GET", "/slowbody?delay=0.6")  # head at once, body later
    assert resp.status == 200
    assert resp.json()["path"] == "/slowbody"


@pytest.mark.integration
def test_request_timeout_gets_504_before_the_response_starts(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, upstream={"request_timeout": "300ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    began = time.monotonic()
    resp = client.request("GET", "/hang")
    assert resp.status == 504
    assert 0.25 <= time.monotonic() - began < 1.5


@pytest.mark.integration
def test_request_timeout_cuts_a_response_already_started(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, upstream={"request_timeout": "400ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/slowbody?delay=3", host="h"))
    began = time.monotonic()
    data = client.read_until_closed(timeout=5)
    assert data.startswith(b"HTTP/1.1 200 ")  # the head had gone: all graylane can do is close
    assert data.endswith(b"\r\n\r\n")
    assert time.monotonic() - began < 1.5


@pytest.mark.parametrize(
    "upstream",
    [{"response_head_timeout": "200ms"}, {"request_timeout": "200ms"}, {"idle_timeout": "200ms"}],
)
def test_sweep_runs_often_enough_for_every_swept_timeout(tmp_path, upstream):
    """Deadlines fire from a periodic sweep: it must tick at least four times per shortest timeout."""
    path = tmp_path / "graylane.yaml"
    path.write_text(proxy_config("127.0.0.1:9", upstream=upstream))
    assert sweep_interval(load_config(str(path))) <= 0.05
    path.write_text(proxy_config("127.0.0.1:9", limits={"keepalive_timeout": "400ms"}))
    assert sweep_interval(load_config(str(path))) <= 0.1
