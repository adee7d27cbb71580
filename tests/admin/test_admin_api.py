"""The admin API of a running graylane: probes, counters, reload, bearer token, errors."""

from __future__ import annotations

import signal

import pytest

from proxy.admin.status import REDACTED, redacted_url
from proxy.testing import RawClient, build_request, request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration


def _admin(proxy, method: str, path: str, headers: dict[str, str] | None = None):
    resp = request(*proxy.admin_address, method, path, headers, timeout=5)
    assert resp.get("Content-Type") == "application/json"
    assert resp.get("Connection") == "close"
    return resp


def test_admin_is_off_unless_configured(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    assert not any("admin API" in line for line in proxy.logs())
    with pytest.raises(RuntimeError):
        proxy.admin_address  # noqa: B018


def test_live_and_ready(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True))
    assert proxy.admin_port != proxy.port
    live = _admin(proxy, "GET", "/live")
    assert (live.status, live.json()) == (200, {"status": "live"})
    ready = _admin(proxy, "GET", "/ready")
    assert (ready.status, ready.json()) == (200, {"status": "ready"})


def test_ready_is_503_while_draining(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True, limits={"drain_timeout": "5s"}))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    client.send(build_request("GET", "/slow?delay=1", host="h"))
    origin.wait_for_requests(1)
    mark = proxy.log_mark()
    proxy.send_signal(signal.SIGTERM)
    proxy.wait_for_log("draining", since=mark)
    ready = _admin(proxy, "GET", "/ready")
    assert (ready.status, ready.json()) == (503, {"status": "draining"})
    assert _admin(proxy, "GET", "/live").status == 200  # alive, just not taking new work
    assert client.read_response().status == 200
    assert proxy.wait(timeout=5) == 0


def test_stats_count_requests_and_connections(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    for path in ("/a", "/b", "/status/404", "/status/503"):
        client.request("GET", path)
    stats = _admin(proxy, "GET", "/stats").json()
    assert stats["requests"] == 4
    assert stats["responses_by_class"] == [0, 0, 2, 0, 1, 1]
    assert stats["pool_misses"] == 1 and stats["pool_hits"] == 3
    assert stats["upstream_connects"] == 1
    assert stats["connections_open"] == 1  # the client above, still open
    assert stats["upstream_idle"] == 1
    assert stats["errors_by_flag"] == {}
    client.close()
    other = raw_client(proxy.host, proxy.port, timeout=5)
    other.request("GET", "/c")
    stats = _admin(proxy, "GET", "/stats").json()
    assert stats["requests"] == 5 and stats["pool_hits"] == 4


def test_reload_with_a_good_config(backend, graylane, raw_client):
    first = backend("v1")
    second = backend("v2")
    proxy = graylane(proxy_config(first.endpoint, admin=True))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("GET", "/").get("X-Backend-Version") == "v1"
    proxy.write_config(proxy_config(second.endpoint, admin=True))
    resp = _admin(proxy, "POST", "/reload")
    assert (resp.status, resp.json()) == (200, {"reloaded": True})
    assert client.request("GET", "/").get("X-Backend-Version") == "v2"
    stats = _admin(proxy, "GET", "/stats").json()
    assert (stats["reloads_ok"], stats["reloads_failed"]) == (1, 0)
    # The admin API keeps its address: it was bound at start.
    assert _admin(proxy, "GET", "/live").status == 200


def test_reload_with_a_bad_config_keeps_the_running_one(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True))
    proxy.write_config(proxy_config(origin.endpoint, admin=True, limits={"max_headerz": 3}))
    resp = _admin(proxy, "POST", "/reload")
    assert resp.status == 400
    body = resp.json()
    assert body["reloaded"] is False
    assert any("max_headerz" in problem and str(proxy.config_path) in problem for problem in body["problems"])
    assert request(proxy.host, proxy.port, "GET", "/", timeout=5).status == 200
    stats = _admin(proxy, "GET", "/stats").json()
    assert (stats["reloads_ok"], stats["reloads_failed"]) == (0, 1)


def test_token_guards_everything_but_the_probes(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin={"token": "s3cret-token"}))
    assert _admin(proxy, "GET", "/stats").status == 401
    assert _admin(proxy, "GET", "/stats", {"Authorization": "Bearer wrong"}).status == 401
    assert _admin(proxy, "GET", "/stats", {"Authorization": "s3cret-token"}).status == 401
    assert _admin(proxy, "POST", "/reload").status == 401
    ok = _admin(proxy, "GET", "/stats", {"Authorization": "Bearer s3cret-token"})
    assert ok.status == 200 and "requests" in ok.json()
    assert _admin(proxy, "GET", "/live").status == 200
    assert _admin(proxy, "GET", "/ready").status == 200


def test_unknown_path_is_404_and_wrong_method_is_405(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True))
    assert _admin(proxy, "GET", "/nope").status == 404
    assert _admin(proxy, "POST", "/stats").status == 405
    assert _admin(proxy, "GET", "/reload").status == 405
    assert _admin(proxy, "DELETE", "/live").status == 405


def test_malformed_admin_request_gets_400_and_the_api_stays_up(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin=True))
    with RawClient(*proxy.admin_address, timeout=5) as client:
        client.send(b"NOT A REQUEST\r\n\r\n")
        assert client.read_response().status == 400
    with RawClient(*proxy.admin_address, timeout=5) as client:
        client.send(b"GET /live HTTP/1.1\r\n")  # never finished
        client.shutdown_write()
        assert client.read_until_closed(timeout=3) == b""
    assert _admin(proxy, "GET", "/live").status == 200


def test_a_401_names_the_bearer_scheme(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, admin={"token": "s3cret-token"}))
    refused = _admin(proxy, "GET", "/stats")
    assert refused.status == 401
    assert refused.get("WWW-Authenticate") == 'Bearer realm="graylane admin"'
    assert _admin(proxy, "GET", "/live").get("WWW-Authenticate") is None


def test_config_redacts_a_password_in_the_redis_url(backend, graylane):
    origin = backend()
    url = "redis://limits:hunter2@127.0.0.1:1/0"
    proxy = graylane(proxy_config(origin.endpoint, admin=True, redis={"url": url}))
    resp = _admin(proxy, "GET", "/config")
    assert resp.status == 200
    assert "hunter2" not in resp.text
    assert resp.json()["redis"]["url"] == f"redis://limits:{REDACTED}@127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", f"redis://:{REDACTED}@h:6379/0"),
        ("redis://u:p@ss@h/0", f"redis://u:{REDACTED}@h/0"),
        ("redis://u:pw@h/p@th?x=@", f"redis://u:{REDACTED}@h/p@th?x=@"),
        ("redis://u@h/0", "redis://u@h/0"),
        ("redis://h/0?user=a@b", "redis://h/0?user=a@b"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redacted_url_hides_only_the_password(url, shown):
    assert redacted_url(url) == shown
