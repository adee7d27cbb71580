"""Hot reload through a real graylane: SIGHUP (and POST /reload) swap the config whole or
keep the running one; requests, pooled connections and tunnels already open carry on."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter

import pytest
from e2e_support import (
    RELOAD_FAILED,
    RELOADED,
    admin,
    config,
    get,
    refused_reload,
    reload,
    service,
    split,
    versions_of,
)

from proxy.testing import Backend

pytestmark = pytest.mark.integration


def _split_config(v1: Backend, v2: Backend, w1: int, w2: int, **top) -> str:
    route = {"name": "api", "service": "api", "split": split(v1=w1, v2=w2)}
    return config({"api": service(v1, v2)}, [route], **top)


def _only(version: Backend, **route_extra) -> str:
    """Everything to one backend, the service's only version."""
    return config({"api": service(version)}, [{"name": "api", "service": "api", **route_extra}])


def _stats(proxy) -> dict:
    resp = admin(proxy, "GET", "/stats")
    assert resp.status == 200
    return resp.json()


def test_sighup_applies_a_new_split(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(_split_config(v1, v2, 0, 100, admin={"address": "127.0.0.1:0"}))
    assert versions_of(proxy, 50) == Counter(v2=50)
    reload(proxy, _split_config(v1, v2, 100, 0, admin={"address": "127.0.0.1:0"}))
    assert versions_of(proxy, 50) == Counter(v1=50)
    assert _stats(proxy)["reloads_ok"] == 1


def test_routing_counters_carry_over_a_reload(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    rule = {"match": {"labels": {"tenant": {"exact": "acme"}}}, "version": "v2"}
    text = config({"api": service(v1, v2)}, [{"name": "api", "service": "api", "rules": [rule]}],
                  admin={"address": "127.0.0.1:0"})  # fmt: skip
    proxy = graylane(text)
    bad = {"X-Request-Metadata": "not json"}
    assert get(proxy, headers=bad).status == 200
    assert _stats(proxy)["routing"]["metadata_invalid"] == 1
    reload(proxy, text)  # a new route table: its counters start where the old one's were
    assert _stats(proxy)["routing"]["metadata_invalid"] == 1
    assert get(proxy, headers=bad).status == 200
    assert _stats(proxy)["routing"]["metadata_invalid"] == 2


def _bad_route(v1: Backend, v2: Backend, **route) -> str:
    route = {"name": "api", "service": "api", "split": split(v1=100, v2=0), **route}
    return config({"api": service(v1, v2)}, [route], admin={"address": "127.0.0.1:0"})


# name -> (the bad config's text from the backends, a regex for the log line saying why)
BAD_CONFIGS = {
    "syntax error": (lambda v1, v2: "version: 1\nlisteners: [\n", r"invalid YAML"),
    "unknown service": (lambda v1, v2: _bad_route(v1, v2, service="nope"), r"no service named 'nope'"),
    "bad regex": (
        lambda v1, v2: _bad_route(v1, v2, match={"headers": {"X-A": {"regex": "("}}}),
        r"X-A\.regex: invalid regex",
    ),
    "empty file": (lambda v1, v2: "", r"the file is empty"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_bad_config_is_refused_and_the_running_one_kept(backend, graylane, case):
    v1, v2 = backend("v1"), backend("v2")
    top = {"admin": {"address": "127.0.0.1:0"}}
    proxy = graylane(_split_config(v1, v2, 0, 100, **top))
    make_text, why = BAD_CONFIGS[case]
    refused_reload(proxy, make_text(v1, v2), why)
    assert versions_of(proxy, 30) == Counter(v2=30)
    stats = _stats(proxy)
    assert (stats["reloads_ok"], stats["reloads_failed"]) == (0, 1)
    # A good config afterwards still goes in.
    reload(proxy, _split_config(v1, v2, 100, 0, **top))
    assert versions_of(proxy, 30) == Counter(v1=30)


def test_a_missing_config_file_is_refused_and_the_running_one_kept(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(_split_config(v1, v2, 0, 100))
    mark = proxy.log_mark()
    proxy.config_path.unlink()
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_log(RELOAD_FAILED, since=mark)
    proxy.wait_for_log(r"cannot read", since=mark)
    assert versions_of(proxy, 20) == Counter(v2=20)


def test_in_flight_requests_finish_across_a_reload(backend, graylane, raw_client):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(_only(v1))
    client = raw_client(proxy.host, proxy.port, timeout=10)
    client.send(b"GET /slow?delay=1 HTTP/1.1\r\nHost: e2e\r\n\r\n")
    v1.wait_until(lambda b: any(r.path == "/slow" for r in b.requests))
    # The new config drops v1's endpoint altogether.
    reload(proxy, _only(v2))
    resp = client.read_response()
    assert (resp.status, resp.get("X-Backend-Version")) == (200, "v1")
    assert resp.json()["path"] == "/slow"
    # The same connection's next request follows the new config.
    resp = client.request("GET", "/after")
    assert (resp.status, resp.get("X-Backend-Version")) == (200, "v2")
    assert not [line for line in proxy.logs() if "Traceback" in line or "ERROR" in line]


def test_a_request_body_still_streaming_finishes_across_a_reload(backend, graylane, raw_client):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(_only(v1))
    client = raw_client(proxy.host, proxy.port, timeout=10)
    client.send(b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 10\r\n\r\nfirst")
    v1.wait_until(lambda b: b.connections_accepted == 1)  # routed and connected upstream
    reload(proxy, _only(v2))
    client.send(b"-half")
    resp = client.read_response()
    assert (resp.status, resp.get("X-Backend-Version"), resp.body) == (200, "v1", b"first-half")
    assert client.request("GET", "/after").get("X-Backend-Version") == "v2"


def test_pooled_connections_to_endpoints_still_present_are_kept(backend, graylane, raw_client):
    v1 = backend("v1")
    proxy = graylane(_only(v1))
    client = raw_client(proxy.host, proxy.port, timeout=10)
    for _ in range(5):
        assert client.request("GET", "/before").status == 200
    assert v1.connections_accepted == 1
    reload(proxy, _only(v1, response_headers={"set": {"X-Config": "new"}}))
    for _ in range(5):  # the same client connection, then a new one
        resp = client.request("GET", "/after")
        assert (resp.status, resp.get("X-Config")) == (200, "new")
    assert get(proxy, "/after").get("X-Config") == "new"
    assert v1.connections_accepted == 1, "the reload threw away a pooled upstream connection"
    assert [r.connection_id for r in v1.requests] == [1] * 11


def test_pooled_connections_to_endpoints_that_left_are_closed(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(_only(v1))
    assert get(proxy).status == 200
    assert v1.connections_open == 1  # idle in graylane's pool
    reload(proxy, _only(v2))
    v1.wait_until(lambda b: b.connections_open == 0)
    assert get(proxy).get("X-Backend-Version") == "v2"


UPGRADE = b"GET /ws HTTP/1.1\r\nHost: e2e\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


@pytest.mark.parametrize("endpoint_kept", [True, False], ids=["endpoint-kept", "endpoint-removed"])
def test_an_open_tunnel_survives_a_reload(backend, graylane, raw_client, endpoint_kept):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(_split_config(v1, v2, 100, 0))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(UPGRADE)
    resp = client.read_response()
    assert (resp.status, resp.get("X-Backend-Version")) == (101, "v1")
    client.send(b"ping-1")
    assert client.read_exactly(6) == b"ping-1"
    reload(proxy, _split_config(v1, v2, 0, 100) if endpoint_kept else _only(v2))
    assert versions_of(proxy, 10) == Counter(v2=10)  # new requests follow the new config
    for n in range(2, 5):
        message = b"ping-%d" % n
        client.send(message)
        assert client.read_exactly(len(message)) == message
    assert v1.connections_open == 1


def test_admin_reload_does_what_sighup_does(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    top = {"admin": {"address": "127.0.0.1:0"}}
    proxy = graylane(_split_config(v1, v2, 0, 100, **top))
    assert versions_of(proxy, 20) == Counter(v2=20)

    mark = proxy.log_mark()
    proxy.write_config(_split_config(v1, v2, 100, 0, **top))
    resp = admin(proxy, "POST", "/reload")
    assert (resp.status, resp.json()) == (200, {"reloaded": True})
    proxy.wait_for_log(RELOADED, since=mark)
    assert versions_of(proxy, 20) == Counter(v1=20)

    mark = proxy.log_mark()
    route = {"name": "api", "service": "nope"}
    proxy.write_config(config({"api": service(v1, v2)}, [route], **top))
    resp = admin(proxy, "POST", "/reload")
    assert resp.status == 400
    body = resp.json()
    assert body["reloaded"] is False
    assert any("no service named 'nope'" in problem for problem in body["problems"]), body
    proxy.wait_for_log(RELOAD_FAILED, since=mark)
    assert versions_of(proxy, 20) == Counter(v1=20)
    stats = _stats(proxy)
    assert (stats["reloads_ok"], stats["reloads_failed"]) == (1, 1)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_reloads_under_load_lose_no_request(backend, graylane):
    v1, v2, v3 = backend("v1"), backend("v2"), backend("v3")
    # The two configs differ in weights and in endpoints: every other reload retires v2's pool.
    configs = [
        config({"api": service(v1, v2)}, [{"name": "api", "service": "api", "split": split(v1=90, v2=10)}]),
        config(
            {"api": service(v1, v3)},
            [
                {
                    "name": "api",
                    "service": "api",
                    "split": split(v1=50, v3=50),
                    "response_headers": {"set": {"X-Config": "b"}},
                }
            ],
        ),
    ]
    proxy = graylane(configs[0])
    url = f"http://{proxy.host}:{proxy.port}/"
    wrk = subprocess.Popen(
        ["wrk", "-t2", "-c16", "-d4s", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        v1.wait_until(lambda b: len(b.requests) >= 500, timeout=10)  # the load is on
        for n in range(10):
            reload(proxy, configs[(n + 1) % 2])
            # Let some traffic through on this config before the next reload.
            done = len(v1.requests)
            v1.wait_until(lambda b, done=done: len(b.requests) >= done + 300, timeout=10)
        assert wrk.poll() is None, "wrk ended before the ten reloads: the test proved nothing"
        output, _ = wrk.communicate(timeout=20)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    assert wrk.returncode == 0, output
    assert "Socket errors" not in output, output
    assert "Non-2xx" not in output, output
    finished = re.search(r"(\d+) requests in", output)
    assert finished is not None and int(finished.group(1)) > 1000, output
    assert len(proxy.logs()) and proxy.running
    problems = [line for line in proxy.logs() if "Traceback" in line or "ERROR" in line]
    assert not problems, "\n".join(proxy.logs())
    assert sum(1 for line in proxy.logs() if RELOADED in line) == 10
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(10) == 0
