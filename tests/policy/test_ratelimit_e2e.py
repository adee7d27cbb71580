"""Rate limits through real graylane processes: two of them sharing one real Redis.

- 100/s with a burst of 20, under as much load as the clients can send for 5 s through two
  graylane processes: burst + rate x (time from the first answer to the last) +- 5% accepted
  (about 520), and only those reach the backend;
- Redis killed in the middle of the run: graylane keeps serving (fail_open), then limits
  again once Redis is back;
- conf/ratelimit.yaml does what its comments say.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from policy_support import RedisServer

from proxy.testing import Backend, GraylaneProcess, request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]

CONF = Path(__file__).resolve().parents[2] / "conf"
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def limited_config(backend: Backend, redis: RedisServer, **limit: Any) -> str:
    doc = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {"api": {"versions": {"v1": {"endpoints": [backend.endpoint]}}}},
        "redis": {"url": redis.url, "retry_interval": "200ms"},
        "routes": [
            {
                "name": "api",
                "service": "api",
                "rate_limits": [
                    {"name": "global", "rate": 100, "burst": 20, "key": "route", "backend": "redis", **limit}
                ],
            }
        ],
        "access_log": {"enabled": False},
    }
    return json.dumps(doc)


def load(
    targets: list[tuple[str, int]], seconds: float, *, per_target: int = 4, batch: int = 32
) -> list[tuple[float, int]]:
    """Pipelined GETs as fast as the answers come, for ``seconds``: (time since start, status) each."""
    start = time.monotonic()
    deadline = start + seconds
    results: list[list[tuple[float, int]]] = []
    errors: list[BaseException] = []

    def run(address: tuple[str, int], out: list[tuple[float, int]]) -> None:
        try:
            with socket.create_connection(address, timeout=10) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                one = b"GET /items HTTP/1.1\r\nHost: e2e\r\n\r\n"
                while time.monotonic() < deadline:  # bounded by the clock
                    sock.sendall(one * batch)
                    _read(sock, batch, out, start)
        except BaseException as exc:
            errors.append(exc)

    threads = []
    for address in targets:
        for _ in range(per_target):
            out: list[tuple[float, int]] = []
            results.append(out)
            threads.append(threading.Thread(target=run, args=(address, out), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    if errors:
        raise errors[0]
    return sorted(item for out in results for item in out)


def pipelined(address: tuple[str, int], path: str, count: int, **headers: str) -> list[tuple[int, bytes]]:
    """``count`` GETs sent at once on one connection: (status, head) of each answer."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: e2e",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    out: list[tuple[float, int]] = []
    heads: list[bytes] = []
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() * count)
        _read(sock, count, out, time.monotonic(), heads)
    return [(status, head) for (_, status), head in zip(out, heads, strict=True)]


def _read(
    sock: socket.socket,
    count: int,
    out: list[tuple[float, int]],
    start: float,
    heads: list[bytes] | None = None,
) -> None:
    buf = b""
    while count:
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("graylane closed the connection")
        buf += data
        while count:
            end = buf.find(b"\r\n\r\n")
            if end == -1:
                break
            head = buf[: end + 2]
            length = _LENGTH.search(head)
            body_end = end + 4 + (int(length.group(1)) if length else 0)
            if body_end > len(buf):
                break
            out.append((time.monotonic() - start, int(_STATUS.match(head).group(1))))
            if heads is not None:
                heads.append(head)
            buf = buf[body_end:]
            count -= 1


def test_two_processes_sharing_redis_accept_burst_plus_rate_times_duration(
    redis_server: RedisServer, backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess]
) -> None:
    upstream = backend("v1")
    config = limited_config(upstream, redis_server)
    proxies = [graylane(config), graylane(config)]
    results = load([proxy.address for proxy in proxies], 5.0)
    tally = Counter(status for _, status in results)
    assert set(tally) <= {200, 429}, tally
    assert tally[429] > 1000, f"not heavy load: {tally}"
    # The bucket fills over the time it was really under load, not the clients' nominal 5 s:
    # on a busy machine the threads' connects eat part of that.
    span = results[-1][0] - results[0][0]
    expected = 20 + 100 * span
    assert 0.95 * expected <= tally[200] <= 1.05 * expected, (tally, f"span {span:.2f}s")
    assert len(upstream.requests) == tally[200]  # a refused request never reaches the backend


def test_redis_killed_mid_run_fails_open_then_limits_again(
    redis_server: RedisServer, backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess]
) -> None:
    config = limited_config(backend("v1"), redis_server)
    proxies = [graylane(config), graylane(config)]

    def outage() -> None:
        time.sleep(1.5)  # a point in the middle of the load (wall time is the scenario here)
        redis_server.kill()
        time.sleep(1.5)
        redis_server.start()

    chaos = threading.Thread(target=outage, daemon=True)
    chaos.start()
    results = load([proxy.address for proxy in proxies], 6.0)
    chaos.join(30)
    before = Counter(status for t, status in results if t < 1.4)
    during = Counter(status for t, status in results if 2.0 <= t < 2.9)
    after = Counter(status for t, status in results if t >= 4.0)
    assert before[429] > 0 and before[200] <= 20 + 100 * 1.4 * 1.05 + 5
    assert during[200] > 500 and during[429] == 0, during  # fail_open: everything passes
    assert after[429] > 0 and after[200] <= 20 + 100 * 2.0 * 1.05 + 5, after  # limiting again
    for proxy in proxies:
        log = "\n".join(proxy.logs())
        assert log.count("unavailable") == 1 and "is back after" in log


def test_fail_closed_refuses_while_redis_is_down(
    redis_server: RedisServer, backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess]
) -> None:
    proxy = graylane(limited_config(backend("v1"), redis_server, on_redis_error="fail_closed"))
    assert request(proxy.host, proxy.port, "GET", "/").status == 200
    redis_server.kill()
    refused = request(proxy.host, proxy.port, "GET", "/")
    assert refused.status == 429 and refused.get("Retry-After") is not None


def test_the_ratelimit_example(
    redis_server: RedisServer, backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess]
) -> None:
    doc = yaml.safe_load((CONF / "ratelimit.yaml").read_text())
    v1 = backend("v1")
    doc["listeners"] = [{"address": "127.0.0.1:0"}]
    doc["services"]["api"]["versions"]["v1"]["endpoints"] = [v1.endpoint]
    doc["redis"]["url"] = redis_server.url
    proxy = graylane(yaml.safe_dump(doc))
    answers = pipelined(proxy.address, "/api/x", 30, X_Api_Key="k1")
    statuses = Counter(status for status, _ in answers)
    # per-key: a burst of 20, then 100/s (a few refill while the 30 go through one by one)
    assert 20 <= statuses[200] <= 25 and statuses[200] + statuses[429] == 30, statuses
    refused = next(head for status, head in answers if status == 429)
    assert b'\r\nRateLimit-Policy: "per-key";q=100;w=1\r\n' in refused
    assert b'\r\nRateLimit: "per-key";r=0;t=1\r\n' in refused and b"\r\nRetry-After: 1\r\n" in refused
    assert request(proxy.host, proxy.port, "GET", "/api/x", {"X-Api-Key": "k2"}).status == 200
    # search-per-client is in shadow mode: 10 requests over its burst of 5 all pass
    assert {status for status, _ in pipelined(proxy.address, "/search?q=a", 10)} == {200}
    # without Redis, search (fail_closed) is refused and api per-key (fail_open) passes
    redis_server.kill()
    assert request(proxy.host, proxy.port, "GET", "/search?q=a").status == 429
    assert request(proxy.host, proxy.port, "GET", "/api/x", {"X-Api-Key": "k3"}).status == 200
