"""Token buckets shared by processes (``SharedBuckets``): the ``LocalBuckets`` answers, one
bucket for every instance on the same file, a table of bounded size, several processes
taking at once, and a graylane with two workers holding one limit between them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from policy_support import head, make_config

from proxy.errors import ConfigError, RateLimited
from proxy.policy import PolicyRuntime
from proxy.policy.ratelimit_local import LocalBuckets
from proxy.policy.ratelimit_shared import (
    SHARED_DIR_ENV,
    SharedBuckets,
    SharedTableError,
    key_digest,
    slot_count,
)
from proxy.testing import Backend, GraylaneProcess, RawClient, poll_until
from proxy.testing.process import proxy_config

Make = Callable[..., Any]


@pytest.fixture(params=["local", "shared"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    """``make(rate, burst, max_keys=...)``: LocalBuckets, or SharedBuckets with a table of its own."""
    made = 0

    def build(rate: float, burst: int, max_keys: int = 100_000) -> Any:
        nonlocal made
        made += 1
        if request.param == "local":
            return LocalBuckets(rate, burst, max_keys)
        return SharedBuckets(rate, burst, max_keys, directory=str(tmp_path), identity=["test", made])

    return build


def shared(
    tmp_path: Path, rate: float, burst: int, max_keys: int = 1000, identity: Any = "k"
) -> SharedBuckets:
    return SharedBuckets(rate, burst, max_keys, directory=str(tmp_path), identity=identity)


# --- what LocalBuckets answers, SharedBuckets answers too ------------------------------------


def test_a_burst_passes_at_once_then_one_per_interval(make: Make) -> None:
    buckets = make(rate=10, burst=5)
    now = 100.0
    assert [buckets.take("k", now) for _ in range(5)] == [0.0] * 5
    assert buckets.take("k", now) == pytest.approx(0.1)
    assert buckets.take("k", now + 0.099) > 0
    assert buckets.take("k", now + 0.1) == 0.0
    assert buckets.take("k", now + 0.1) == pytest.approx(0.1)


def test_keys_have_their_own_buckets(make: Make) -> None:
    buckets = make(rate=1, burst=1)
    assert buckets.take("a", 1.0) == 0.0
    assert buckets.take("a", 1.0) > 0
    assert buckets.take("b", 1.0) == 0.0
    assert buckets.take(b"a", 1.0) == 0.0  # bytes and str keys are different keys


def test_a_refused_request_takes_nothing(make: Make) -> None:
    buckets = make(rate=1, burst=2)
    buckets.take("k", 1.0)
    buckets.take("k", 1.0)
    for _ in range(100):
        assert buckets.take("k", 1.5) > 0
    assert buckets.take("k", 2.0) == 0.0  # one token back after 1 s despite the refusals


def test_a_cost_above_the_burst_is_refused(make: Make) -> None:
    buckets = make(rate=1, burst=3)
    assert buckets.take("k", 1.0, cost=4) == pytest.approx(1.0)
    assert buckets.take("k", 1.0, cost=3) == 0.0


@pytest.mark.parametrize(
    ("rate", "burst", "seconds", "step"), [(100, 20, 5, 0.0001), (3, 1, 10, 0.001), (1000, 1, 1, 0.0002)]
)
def test_accepted_over_time_is_burst_plus_rate_times_duration(
    make: Make, rate: float, burst: int, seconds: float, step: float
) -> None:
    buckets = make(rate=rate, burst=burst)
    accepted = 0
    for i in range(int(seconds / step) + 1):
        if buckets.take("k", 1000.0 + i * step) == 0.0:
            accepted += 1
    assert abs(accepted - (burst + rate * seconds)) <= 1


def test_remaining_and_give_back(make: Make) -> None:
    buckets = make(rate=10, burst=3)
    assert buckets.remaining("k", 1.0) == 3
    buckets.take("k", 1.0)
    buckets.take("k", 1.0)
    assert buckets.remaining("k", 1.0) == 1
    buckets.give_back("k")
    assert buckets.remaining("k", 1.0) == 2
    assert buckets.remaining("k", 11.0) == 3
    buckets.give_back("never-taken")  # nothing to undo, nothing happens
    assert buckets.remaining("never-taken", 1.0) == 3


def test_bad_settings_are_refused(make: Make) -> None:
    for rate, burst in ((0, 1), (1, 0), (-1, 5)):
        with pytest.raises(ValueError):
            make(rate=rate, burst=burst)


def test_the_same_shape_and_answers(make: Make) -> None:
    buckets = make(rate=4, burst=2)
    assert (buckets.burst, buckets.interval, buckets.tolerance, buckets.evictions) == (2, 0.25, 0.5, 0)


# --- one table, several instances -------------------------------------------------------------


def test_two_instances_of_one_limit_are_one_bucket(tmp_path: Path) -> None:
    a, b = shared(tmp_path, rate=10, burst=4), shared(tmp_path, rate=10, burst=4)
    assert a.path == b.path
    assert [a.take("k", 1.0), b.take("k", 1.0), a.take("k", 1.0), b.take("k", 1.0)] == [0.0] * 4
    assert a.take("k", 1.0) == pytest.approx(0.1)
    assert b.take("k", 1.0) == pytest.approx(0.1)
    assert b.remaining("k", 1.0) == 0
    a.give_back("k")
    assert b.remaining("k", 1.0) == 1
    assert b.take("k", 1.0) == 0.0
    assert a.take("k", 1.05) > 0
    assert a.take("k", 1.1) == 0.0  # refilled after one interval, for both
    assert b.take("k", 1.1) > 0
    assert a.remaining("k", 2.0) == b.remaining("k", 2.0) == 4


def test_a_changed_limit_gets_a_fresh_table(tmp_path: Path) -> None:
    first = shared(tmp_path, rate=1, burst=2, identity=["api", "per-client"])
    assert first.take("k", 1.0) == first.take("k", 1.0) == 0.0
    same = shared(tmp_path, rate=1, burst=2, identity=["api", "per-client"])
    other_burst = shared(tmp_path, rate=1, burst=3, identity=["api", "per-client"])
    other_rate = shared(tmp_path, rate=2, burst=2, identity=["api", "per-client"])
    other_limit = shared(tmp_path, rate=1, burst=2, identity=["api", "per-key"])
    paths = {b.path for b in (first, other_burst, other_rate, other_limit)}
    assert same.path == first.path and len(paths) == 4
    assert same.remaining("k", 1.0) == 0
    assert other_burst.remaining("k", 1.0) == 3
    assert other_rate.remaining("k", 1.0) == 2
    assert other_limit.remaining("k", 1.0) == 2
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)  # no temporaries left


def test_a_file_that_is_not_such_a_table_is_refused(tmp_path: Path) -> None:
    path = shared(tmp_path, rate=1, burst=2).path
    os.unlink(path)
    Path(path).write_bytes(b"\0" * 64)
    with pytest.raises(SharedTableError, match="not a bucket table"):
        shared(tmp_path, rate=1, burst=2)
    with pytest.raises(SharedTableError, match="cannot create or open"):
        shared(tmp_path / "missing", rate=1, burst=2)


def test_key_digests_are_the_same_in_every_process() -> None:
    keys = ["203.0.113.7", "", "café", b"api-key-1", b"", 42, ("a", 1)]
    here = [key_digest(key) for key in keys]
    assert len(set(here)) == len(keys) and 0 not in here
    assert key_digest("abc") != key_digest(b"abc")  # as LocalBuckets: str and bytes differ
    code = (
        "import json; from proxy.policy.ratelimit_shared import key_digest;"
        f"print(json.dumps([key_digest(k) for k in {keys!r}]))"
    )
    for seed in ("1", "2"):  # hash() would differ between these two processes
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, check=True, timeout=30
        )
        assert json.loads(out.stdout) == here


# --- a table of bounded size ----------------------------------------------------------------------


def _keys_in_one_window(buckets: SharedBuckets, count: int) -> list[str]:
    """``count`` keys whose probes start at the same slot: they compete for the same PROBE slots."""
    mask = buckets.slots - 1
    by_start: dict[int, list[str]] = {}
    i = 0
    while True:
        key = f"key-{i}"
        group = by_start.setdefault(key_digest(key) & mask, [])
        group.append(key)
        if len(group) == count:
            return group
        i += 1


def test_a_full_window_evicts_the_bucket_closest_to_full(tmp_path: Path) -> None:
    buckets = shared(tmp_path, rate=1, burst=10, max_keys=10)
    keys = _keys_in_one_window(buckets, 10)
    for i, key in enumerate(keys[:8]):  # eight buckets, the first one the least used
        for _ in range(i + 1):
            assert buckets.take(key, 100.0) == 0.0
    assert buckets.evictions == 0
    assert buckets.take(keys[8], 100.0) == 0.0  # no free slot: keys[0] is forgotten
    assert buckets.evictions == 1
    assert buckets.remaining(keys[0], 100.0) == 10
    assert buckets.remaining(keys[1], 100.0) == 8  # the others are remembered
    assert buckets.remaining(keys[7], 100.0) == 2
    # A bucket full again frees its slot: a new key takes it over without an eviction.
    assert buckets.take(keys[9], 102.5) == 0.0  # keys[8] (full again at 101) and keys[1] (102) are free
    assert buckets.evictions == 1
    assert buckets.remaining(keys[9], 102.5) == 9
    assert buckets.remaining(keys[2], 102.5) == 9  # still remembered (full at 103)


def test_memory_is_bounded_by_the_table(tmp_path: Path) -> None:
    buckets = shared(tmp_path, rate=1, burst=1, max_keys=100)
    assert buckets.slots == slot_count(100) == 256
    for i in range(5000):
        assert buckets.take(i, 1.0) == 0.0  # a new key always gets a bucket
    assert len(buckets) <= buckets.slots + 7
    assert buckets.evictions >= 5000 - len(buckets)
    size = os.path.getsize(buckets.path)
    assert size == 64 + (256 + 7) * 16


# --- PolicyRuntime: shared tables in workers, local buckets otherwise ------------------------------


def _compiled(runtime: PolicyRuntime, rate: float = 1, burst: int = 2) -> Any:
    route = {"name": "api", "service": "shop", "rate_limits": [{"rate": rate, "burst": burst}]}
    return runtime.compile(make_config([route])).routes[0]


def test_policy_runtimes_of_two_workers_share_their_local_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SHARED_DIR_ENV, raising=False)
    assert isinstance(_compiled(PolicyRuntime()).local[0].buckets, LocalBuckets)  # one process
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))
    worker_a, worker_b = PolicyRuntime(), PolicyRuntime()  # as the supervisor's workers see it
    a, b = _compiled(worker_a), _compiled(worker_b)
    assert isinstance(a.local[0].buckets, SharedBuckets)
    assert a.local[0].buckets.path == b.local[0].buckets.path
    a.admit(head(), "10.0.0.1", 5.0)
    b.admit(head(), "10.0.0.1", 5.0)
    with pytest.raises(RateLimited):
        a.admit(head(), "10.0.0.1", 5.0)
    # A reload keeps the buckets of an unchanged limit; a changed one gets a fresh table.
    assert _compiled(worker_a).local[0].buckets is a.local[0].buckets
    changed = _compiled(worker_a, burst=3)
    assert changed.local[0].buckets.path != a.local[0].buckets.path
    assert changed.admit(head(), "10.0.0.1", 5.0) is None


def test_a_shared_table_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    runtime = PolicyRuntime(shared_dir=str(tmp_path / "gone"))
    with pytest.raises(ConfigError) as info:
        _compiled(runtime)
    assert info.value.problems[0].startswith("routes[0].rate_limits[0]: cannot create or open")


# --- several processes at once -----------------------------------------------------------------

_TAKER = """
import sys
from proxy.policy.ratelimit_shared import SharedBuckets
directory, burst, tries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()  # every process starts at once: creating the table races too
buckets = SharedBuckets(1.0, burst, 1000, directory=directory, identity=["route", "limit"])
allowed = sum(1 for _ in range(tries) if buckets.take("one-key", 1000.0) == 0.0)
print(allowed, flush=True)
"""


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_taking_at_once_share_exactly_one_burst(tmp_path: Path, processes: int) -> None:
    # ``now`` fixed: nothing refills. No process alone empties the bucket, so they all take
    # for some 100 ms, at the same time (without the lock, far more than the burst passes).
    burst = 50_000
    tries = 3 * burst // (2 * processes)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _TAKER, str(tmp_path), str(burst), str(tries)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout.readline() == "ready\n"
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        allowed = [int(child.stdout.readline()) for child in children]
    finally:
        for child in children:
            child.stdin.close()
            child.wait(30)
    assert all(child.returncode == 0 for child in children)
    assert sum(allowed) == burst, allowed
    assert len(os.listdir(tmp_path)) == 1  # one table, whoever created it


# --- graylane with two workers -------------------------------------------------------------------


def _held_by(pid: int, port: int) -> set[int]:
    """The client ports of the TCP connections to ``port`` that process ``pid`` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peers = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(local.rpartition(":")[2], 16) == port:
                peers.add(int(remote.rpartition(":")[2], 16))
    return peers


@pytest.mark.integration
def test_two_workers_hold_one_local_limit(
    backend: Callable[..., Backend],
    graylane: Callable[..., GraylaneProcess],
    raw_client: Callable[..., RawClient],
) -> None:
    upstream = backend("v1")
    # 5 at once, then one an hour: nothing refills during the test.
    limit = {"name": "per-client", "rate": 1, "per": "1h", "burst": 5, "key": "client_ip"}
    config = json.loads(proxy_config([upstream.endpoint], admin=True, workers=2))
    config["routes"][0]["rate_limits"] = [limit]
    config["access_log"] = {"enabled": False}
    proxy = graylane(json.dumps(config))
    pids = [w["pid"] for w in proxy.admin_json("/status")["workers"]]
    assert len(set(pids)) == 2

    # A new connection per request, kept open so that we can see which worker took it.
    clients = [raw_client(proxy.host, proxy.port) for _ in range(24)]
    statuses = Counter(client.request("GET", f"/n{i}").status for i, client in enumerate(clients))
    assert statuses == {200: 5, 429: 19}, statuses
    assert len(upstream.requests) == 5
    ours = {client.sock.getsockname()[1] for client in clients}
    held = [_held_by(pid, proxy.port) & ours for pid in pids]
    assert all(held) and held[0] | held[1] == ours, held  # both workers answered some

    # A worker started again after a crash opens the same table: still nothing left.
    mark = proxy.log_mark()
    os.kill(pids[0], signal.SIGKILL)
    proxy.wait_for_log(r"worker 0 \(pid \d+\) exited with -9; restarting", 10, since=mark)
    poll_until(
        lambda: all(w["ready"] and w["pid"] not in pids[:1] for w in proxy.admin_json("/status")["workers"])
    )
    more = [raw_client(proxy.host, proxy.port) for _ in range(12)]
    assert Counter(client.request("GET", "/after").status for client in more) == {429: 12}
    assert len(upstream.requests) == 5
    raw = Path("/proc", str(pids[1]), "environ").read_bytes().decode()
    environ = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    tables = os.listdir(environ["GRAYLANE_SHARED_DIR"])
    assert len(tables) == 1 and tables[0].startswith("buckets-")
    assert proxy.stop(timeout=20) == 0
    assert not os.path.exists(environ["GRAYLANE_SHARED_DIR"])  # removed by the supervisor
