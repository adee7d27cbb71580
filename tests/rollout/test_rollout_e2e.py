"""Rollouts through a real graylane: steps advance on passing checks, a failing canary is
rolled back by itself, operators steer it over the admin API, and workers follow."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from proxy.testing import GraylaneProcess, request

pytestmark = pytest.mark.integration


def _config(v1, v2, state_dir, *, workers: int = 1, failure_limit: int = 2, steps=None) -> str:
    doc = {
        "version": 1,
        "workers": workers,
        "listeners": [{"address": "127.0.0.1:0"}],
        "admin": {"address": "127.0.0.1:0"},
        "access_log": {"enabled": False},
        "rollouts": {"state_dir": str(state_dir)},
        "services": {
            "shop": {
                "stable": "v1",
                "versions": {"v1": {"endpoints": [v1.endpoint]}, "v2": {"endpoints": [v2.endpoint]}},
            }
        },
        "routes": [
            {
                "name": "shop",
                "service": "shop",
                "rollout": {
                    "canary": "v2",
                    "steps": steps or [{"set_weight": 30}, {"set_weight": 60}, {"set_weight": 100}],
                    "analysis": {
                        "interval": "300ms",
                        "min_requests": 5,
                        "max_error_rate": 0.05,
                        "failure_limit": failure_limit,
                    },
                },
            }
        ],
    }
    return json.dumps(doc)


class Traffic(threading.Thread):
    """Requests at a steady pace until stopped; counts answers per version."""

    def __init__(self, proxy: GraylaneProcess) -> None:
        super().__init__(daemon=True)
        self.proxy = proxy
        self.stop_event = threading.Event()
        self.by_version: dict[str, int] = {}
        self.failed = 0

    def run(self) -> None:
        while not self.stop_event.wait(0.005):
            try:
                resp = request(self.proxy.host, self.proxy.port, "GET", "/", timeout=5)
            except OSError:
                self.failed += 1
                continue
            version = resp.get("X-Backend-Version") or "?"
            self.by_version[version] = self.by_version.get(version, 0) + 1

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def _rollout(proxy: GraylaneProcess) -> dict:
    host, port = proxy.admin_address
    return request(host, port, "GET", "/rollouts", timeout=10).json()["rollouts"]["shop"]


def _command(proxy: GraylaneProcess, action: str):
    host, port = proxy.admin_address
    return request(host, port, "POST", f"/rollouts/shop/{action}", timeout=10)


def _wait_phase(proxy: GraylaneProcess, phase: str, timeout: float = 20.0) -> dict:
    """Poll the admin API (another process's state) until the rollout is in ``phase``."""
    deadline = time.monotonic() + timeout
    while True:
        rollout = _rollout(proxy)
        if rollout["phase"] == phase:
            return rollout
        assert time.monotonic() < deadline, f"still {rollout['phase']}: {rollout}"
        time.sleep(0.1)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_clean_rollout_reaches_100_percent(backend, graylane, tmp_path, workers):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(_config(v1, v2, tmp_path, workers=workers))
    traffic = Traffic(proxy)
    traffic.start()
    try:
        rollout = _wait_phase(proxy, "promoted", timeout=30)
    finally:
        traffic.stop()
    assert rollout["weight"] == 100
    assert traffic.failed == 0
    before = len(v1.requests)
    for _ in range(20):
        assert request(proxy.host, proxy.port, "GET", "/", timeout=5).get("X-Backend-Version") == "v2"
    assert len(v1.requests) == before
    assert json.loads((tmp_path / "rollouts.json").read_text())


def test_a_failing_canary_is_rolled_back_by_itself(backend, graylane, tmp_path):
    v1, v2 = backend("v1"), backend("v2", fail_rate=0.5)
    proxy = graylane(_config(v1, v2, tmp_path))
    traffic = Traffic(proxy)
    traffic.start()
    try:
        rollout = _wait_phase(proxy, "aborted", timeout=30)
    finally:
        traffic.stop()
    assert rollout["weight"] == 0
    assert rollout["failures"] == 2
    assert rollout["reason"]
    served = len(v2.requests)
    for _ in range(30):
        assert request(proxy.host, proxy.port, "GET", "/", timeout=5).get("X-Backend-Version") == "v1"
    assert len(v2.requests) == served, "no canary traffic after the rollback"
    host, port = proxy.admin_address
    metrics = request(host, port, "GET", "/metrics", timeout=10).body.decode()
    assert 'graylane_rollout_checks_total{outcome="fail",route="shop"} 2' in metrics
    assert 'to_phase="aborted"' in metrics
    if shutil.which("promtool"):
        checked = subprocess.run(
            ["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_operators_pause_promote_and_abort_over_the_admin_api(backend, graylane, tmp_path):
    v1, v2 = backend("v1"), backend("v2")
    steps = [{"set_weight": 20}, {"pause": {}}, {"set_weight": 100}]
    proxy = graylane(_config(v1, v2, tmp_path, steps=steps))
    assert _command(proxy, "pause").status == 200
    assert _rollout(proxy)["phase"] == "paused"
    assert _command(proxy, "resume").status == 200
    assert _command(proxy, "promote_full").json()["weight"] == 100
    assert _command(proxy, "abort").status in (200, 409)
    assert _command(proxy, "nonsense").status == 400
    host, port = proxy.admin_address
    assert request(host, port, "POST", "/rollouts/nope/status", timeout=10).status == 404


def test_the_rollout_command_steers_a_running_graylane(backend, graylane, tmp_path):
    import subprocess
    import sys

    v1, v2 = backend("v1"), backend("v2")
    steps = [{"set_weight": 20}, {"pause": {}}, {"set_weight": 100}]
    proxy = graylane(_config(v1, v2, tmp_path, steps=steps))
    host, port = proxy.admin_address
    admin = f"{host}:{port}"

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "proxy", "rollout", *args, "--admin", admin]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    shown = cli("status", "shop")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout.split("\n(")[0])["canary"] == "v2"
    promoted = cli("promote", "shop", "--full")
    assert promoted.returncode == 0, promoted.stderr
    assert _rollout(proxy)["weight"] == 100
    missing = cli("status", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_the_rollout_example_starts_at_its_first_step(backend, graylane, tmp_path):
    import yaml

    conf = Path(__file__).resolve().parents[2] / "conf" / "rollout.yaml"
    doc = yaml.safe_load(conf.read_text())
    v1, v2 = backend("v1"), backend("v2")
    doc["listeners"] = [{"address": "127.0.0.1:0"}]
    doc["admin"] = {"address": "127.0.0.1:0"}
    doc["rollouts"]["state_dir"] = str(tmp_path)
    versions = doc["services"]["shop"]["versions"]
    versions["v1"]["endpoints"], versions["v2"]["endpoints"] = [v1.endpoint], [v2.endpoint]
    proxy = graylane(yaml.safe_dump(doc))
    rollout = _rollout(proxy)
    assert (rollout["phase"], rollout["step"], rollout["weight"]) == ("progressing", 0, 5)
    assert rollout["failure_limit"] == 3


def test_a_restart_mid_pause_resumes_the_same_step_with_the_time_left(backend, tmp_path):
    v1, v2 = backend("v1"), backend("v2")
    steps = [{"set_weight": 20}, {"pause": "30s"}, {"set_weight": 100}]
    doc = json.loads(_config(v1, v2, tmp_path, steps=steps))
    del doc["routes"][0]["rollout"]["analysis"]  # without analysis a step passes at once
    text = json.dumps(doc)
    with GraylaneProcess(text) as first:
        rollout = _wait_phase(first, "progressing")
        deadline = time.monotonic() + 10
        while rollout["step"] != 1:
            assert time.monotonic() < deadline, rollout
            time.sleep(0.05)
            rollout = _rollout(first)
        assert first.stop() == 0
    with GraylaneProcess(text) as second:
        resumed = _rollout(second)
        assert (resumed["step"], resumed["weight"]) == (1, 20)
        assert 0 < resumed["pause_remaining"] < 30
        assert request(second.host, second.port, "GET", "/", timeout=5).status == 200
