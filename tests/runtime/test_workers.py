"""``workers: N``: a supervisor and N workers sharing the port, with summed counters,
reload and drain passed on, and crashed workers started again."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from proxy.testing import GraylaneProcess, poll_until, request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration

RELOADED = re.compile(r"configuration reloaded from")


def _config(endpoint: str, workers: int = 2, **top) -> str:
    return proxy_config([endpoint], admin=True, workers=workers, access_log={"enabled": False}, **top)


def _worker_pids(proxy: GraylaneProcess) -> list[int]:
    pids = [w["pid"] for w in proxy.admin_json("/status")["workers"]]
    assert all(pids)
    return pids


def test_two_workers_serve_one_port_and_their_counters_add_up(backend, graylane):
    v1 = backend("v1")
    proxy = graylane(_config(v1.endpoint))
    pids = _worker_pids(proxy)
    assert len(set(pids)) == 2 and proxy.pid not in pids
    sent = 60
    for i in range(sent):
        # A new connection each time, so the kernel spreads them over both workers.
        assert request(proxy.host, proxy.port, "GET", f"/n{i}", timeout=10).status == 200
    assert len(v1.requests) == sent
    # Reports arrive once a second; the sum must reach exactly what was sent.
    stats = poll_until(lambda: (s := proxy.admin_json("/stats"))["requests"] == sent and s)
    assert stats["workers"] == 2
    metrics = request(*proxy.admin_address, "GET", "/metrics", timeout=10).body.decode()
    line = r'graylane_requests_total\{code="200",route="all",service="api",version="v1"\} 60\b'
    assert re.search(line, metrics)


def test_a_killed_worker_is_started_again_and_counts_are_kept(backend, graylane):
    v1 = backend("v1")
    proxy = graylane(_config(v1.endpoint))
    for i in range(20):
        assert request(proxy.host, proxy.port, "GET", f"/before{i}", timeout=10).status == 200
    poll_until(lambda: proxy.admin_json("/stats")["requests"] == 20)
    victim = _worker_pids(proxy)[0]
    mark = proxy.log_mark()
    os.kill(victim, signal.SIGKILL)
    proxy.wait_for_log(r"worker 0 \(pid \d+\) exited with -9; restarting", 10, since=mark)
    pids = poll_until(lambda: (p := _worker_pids(proxy)) and victim not in p and p)
    assert len(pids) == 2
    for i in range(10):
        assert request(proxy.host, proxy.port, "GET", f"/after{i}", timeout=10).status == 200
    stats = poll_until(lambda: (s := proxy.admin_json("/stats"))["requests"] == 30 and s)
    assert stats["worker_restarts"] == 1


def test_reload_reaches_every_worker_and_a_bad_config_reaches_none(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(_config(v1.endpoint))
    mark = proxy.log_mark()
    proxy.write_config(_config(v2.endpoint))
    proxy.send_signal(signal.SIGHUP)
    # One line from the supervisor and one from each worker.
    poll_until(lambda: len([line for line in proxy.logs()[mark:] if RELOADED.search(line)]) == 3)
    for i in range(20):
        assert request(proxy.host, proxy.port, "GET", f"/x{i}", timeout=10).status == 200
    assert len(v2.requests) == 20
    mark = proxy.log_mark()
    proxy.write_config("version: 1\nlisteners: [}\n")
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_log("reload failed, keeping the running config", 10, since=mark)
    assert not any(RELOADED.search(line) for line in proxy.logs()[mark:])
    assert request(proxy.host, proxy.port, "GET", "/still", timeout=10).status == 200
    assert proxy.admin_json("/stats")["reloads_failed"] == 1


def test_sigterm_drains_every_worker_and_exits_zero(backend, graylane):
    v1 = backend("v1")
    proxy = graylane(_config(v1.endpoint))
    pids = _worker_pids(proxy)
    assert proxy.stop(timeout=20) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_auto_means_one_worker_per_core(backend, graylane):
    v1 = backend("v1")
    proxy = graylane(_config(v1.endpoint, workers="auto"))
    assert len(_worker_pids(proxy)) == (os.cpu_count() or 1)
    assert json.loads(json.dumps(proxy.admin_json("/ready"))) == {"status": "ready"}
