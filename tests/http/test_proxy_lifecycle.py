"""The process around the data plane: drain on SIGTERM, SIGINT, SIGHUP reload, start-up failures."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from proxy.testing import GraylaneProcess, build_request, request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration


def _refused(proxy) -> bool:
    try:
        socket.create_connection((proxy.host, proxy.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_the_in_flight_request_finish(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"drain_timeout": "5s"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/slow?delay=1", host="h"))
    origin.wait_for_requests(1)
    mark = proxy.log_mark()
    proxy.send_signal(signal.SIGTERM)
    proxy.wait_for_log("draining 1 connection", since=mark)
    assert _refused(proxy)  # no new connections once draining
    resp = client.read_response()
    assert resp.status == 200
    assert resp.json()["path"] == "/slow"
    assert resp.get("Connection", "").lower() == "close"
    assert client.is_closed(timeout=3)
    assert proxy.wait(timeout=5) == 0
    assert not any("deadline passed" in line for line in proxy.logs())


def test_sigterm_closes_idle_keep_alive_connections_at_once(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"drain_timeout": "10s"}))
    idle = [raw_client(proxy.host, proxy.port, timeout=5) for _ in range(3)]
    for client in idle:
        assert client.request("GET", "/").status == 200
    began = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    for client in idle:
        assert client.is_closed(timeout=3)
    assert proxy.wait(timeout=5) == 0
    assert time.monotonic() - began < 3  # nothing in flight: no waiting for the deadline


def test_drain_deadline_closes_what_is_left_and_exits_0(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"drain_timeout": "500ms"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/hang", host="h"))
    origin.wait_for_requests(1)
    began = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(timeout=5) == 0
    elapsed = time.monotonic() - began
    assert 0.4 <= elapsed < 3
    assert client.read_until_closed(timeout=3) == b""  # no answer: the connection was cut
    proxy.wait_for_log("drain deadline passed: closing 1 connection")


def test_sigint_exits_promptly_even_with_a_request_in_flight(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, limits={"drain_timeout": "30s"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/hang", host="h"))
    origin.wait_for_requests(1)
    began = time.monotonic()
    proxy.send_signal(signal.SIGINT)
    assert proxy.wait(timeout=5) == 0
    assert time.monotonic() - began < 2
    assert client.read_until_closed(timeout=3) == b""


def test_sighup_reloads_the_routes(backend, graylane, raw_client):
    first = backend("v1")
    second = backend("v2")
    proxy = graylane(proxy_config(first.endpoint))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("GET", "/").get("X-Backend-Version") == "v1"
    proxy.write_config(proxy_config(second.endpoint))
    mark = proxy.log_mark()
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_log("configuration reloaded", since=mark)
    # The same client connection now reaches the new endpoint.
    assert client.request("GET", "/").get("X-Backend-Version") == "v2"


def test_sighup_with_a_bad_config_keeps_the_running_one(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    proxy.write_config("version: 1\nlisteners: []\nservices: {nope\n")
    mark = proxy.log_mark()
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_log("reload failed, keeping the running config", since=mark)
    assert request(proxy.host, proxy.port, "GET", "/", timeout=5).status == 200
    assert proxy.running


def test_port_in_use_exits_non_zero_naming_the_address(backend):
    origin = backend()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = proxy_config(origin.endpoint).replace("127.0.0.1:0", f"127.0.0.1:{port}")
        proc = GraylaneProcess(config)
        try:
            proc.start(wait_ready=False)
            code = proc.wait(timeout=10)
        finally:
            proc.stop()
    assert code != 0
    text = "\n".join(proc.logs())
    assert f"127.0.0.1:{port}" in text
    assert "in use" in text.lower()
    assert "Traceback" not in text


def test_bad_config_exits_non_zero_naming_the_file_and_problem(backend):
    origin = backend()
    config = proxy_config(origin.endpoint, limits={"max_conections": 5})  # misspelt on purpose
    proc = GraylaneProcess(config)
    try:
        proc.start(wait_ready=False)
        code = proc.wait(timeout=10)
    finally:
        proc.stop()
    assert code != 0
    text = "\n".join(proc.logs())
    assert str(proc.config_path) in text
    assert "max_conections" in text
    assert "Traceback" not in text
