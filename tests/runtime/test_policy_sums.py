"""Policy and health counters under ``workers: N``: each worker reports its own, the
supervisor sums them (``merge_policy``, ``add_counts``) and /metrics shows the same
families as a single process."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import jwt
import msgspec
import pytest

from proxy.health.monitor import HealthMonitor
from proxy.observe.counters import RequestCounters
from proxy.policy.metrics import policy_families
from proxy.rollout.metrics import health_counts, health_families
from proxy.runtime.ipc import WorkerReport, add_counts, encode, merge_policy
from proxy.testing import Backend, GraylaneProcess, RawClient, poll_until, request
from proxy.testing.process import proxy_config


def _snapshot(
    *,
    verified: int = 0,
    cache_hits: int = 0,
    failures: dict[str, int] | None = None,
    jwks: dict[str, dict[str, Any]] | None = None,
    limits: list[dict[str, Any]] | None = None,
    redis: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``PolicyRuntime.snapshot()`` of one worker."""
    out: dict[str, Any] = {
        "auth": {
            "verified": verified,
            "cache_hits": cache_hits,
            "failures": failures or {},
            "headers_dropped": 0,
        },
        "jwks": jwks or {},
        "rate_limits": limits or [],
    }
    if redis is not None:
        out["redis"] = redis
    return out


def _limit(route: str, name: str, allowed: int = 0, limited: int = 0, shadow: int = 0) -> dict[str, Any]:
    return {
        "route": route,
        "limit": name,
        "allowed": allowed,
        "limited": limited,
        "shadow_limited": shadow,
        "unavailable": 0,
    }


def _remote(keys: int, fetches: int, failures: int = 0, down: bool = False) -> dict[str, Any]:
    return {
        "keys": keys,
        "fetches": fetches,
        "failures": failures,
        "kid_fetches": 0,
        "kid_refused": 0,
        "down": down,
    }


def _redis(errors: int, down: bool = False) -> dict[str, Any]:
    return {"decisions": 10, "round_trips": 5, "errors": errors, "outages": 1, "down": down}


def _family(families: list[Any], name: str) -> dict[tuple[str, ...], int]:
    return next(samples for family, _, _, samples in families if family == name)


# --- merge_policy: pure ----------------------------------------------------------------------


def test_auth_counters_and_failures_by_reason_are_summed() -> None:
    a = _snapshot(verified=3, cache_hits=10, failures={"missing": 2, "expired": 1})
    b = _snapshot(verified=4, cache_hits=1, failures={"missing": 5, "bad_signature": 7})
    auth = merge_policy([a, b])["auth"]
    assert auth == {
        "verified": 7,
        "cache_hits": 11,
        "failures": {"missing": 7, "expired": 1, "bad_signature": 7},
        "headers_dropped": 0,
    }


def test_rate_limits_are_summed_per_route_and_limit_and_outcome() -> None:
    a = _snapshot(limits=[_limit("api", "per-ip", allowed=5, limited=2), _limit("api", "global", allowed=9)])
    b = _snapshot(
        limits=[_limit("api", "per-ip", allowed=1, limited=8, shadow=3), _limit("web", "per-ip", 4)]
    )
    merged = {(x["route"], x["limit"]): x for x in merge_policy([a, b])["rate_limits"]}
    assert merged == {
        ("api", "global"): _limit("api", "global", allowed=9),
        ("api", "per-ip"): _limit("api", "per-ip", allowed=6, limited=10, shadow=3),
        ("web", "per-ip"): _limit("web", "per-ip", allowed=4),
    }


def test_a_report_missing_an_outcome_still_gives_every_outcome() -> None:
    partial = {"route": "api", "limit": "l", "allowed": 2}  # e.g. from an older worker
    (limit,) = merge_policy([{"rate_limits": [partial]}])["rate_limits"]
    assert limit == _limit("api", "l", allowed=2)


def test_jwks_counters_are_summed_keys_is_the_max_and_down_if_any_worker_is_down() -> None:
    url = "https://idp.test/jwks"
    a = _snapshot(jwks={url: _remote(keys=3, fetches=2)})
    b = _snapshot(jwks={url: _remote(keys=2, fetches=1, failures=4, down=True)})
    assert merge_policy([a, b])["jwks"] == {url: _remote(keys=3, fetches=3, failures=4, down=True)}
    assert merge_policy([a, a])["jwks"][url]["down"] is False


def test_redis_is_summed_when_any_worker_has_it_and_absent_otherwise() -> None:
    assert "redis" not in merge_policy([_snapshot(), _snapshot()])
    merged = merge_policy([_snapshot(redis=_redis(2)), _snapshot(redis=_redis(3, down=True)), _snapshot()])
    assert merged["redis"] == {"decisions": 20, "round_trips": 10, "errors": 5, "outages": 2, "down": True}


def test_retired_reports_keep_their_counters_but_not_their_gauges() -> None:
    url = "https://idp.test/jwks"
    # Worker 0 died after these; its replacement starts again from zero.
    dead = _snapshot(
        verified=10,
        failures={"expired": 4},
        jwks={url: _remote(keys=5, fetches=6, down=True)},
        limits=[_limit("api", "l", allowed=5, limited=20)],
        redis=_redis(7, down=True),
    )
    fresh = _snapshot(
        verified=1, jwks={url: _remote(keys=2, fetches=1)}, limits=[_limit("api", "l", limited=1)]
    )
    other = _snapshot(verified=3, failures={"expired": 1}, redis=_redis(0))
    before = merge_policy([dead, other])
    after = merge_policy([fresh, other], [dead])
    assert after["auth"]["verified"] == 14 > before["auth"]["verified"]
    assert after["auth"]["failures"] == {"expired": 5}
    assert after["rate_limits"] == [_limit("api", "l", allowed=5, limited=21)]
    assert after["jwks"] == {url: _remote(keys=2, fetches=7)}  # the dead worker's view is stale
    assert after["redis"]["errors"] == 7 and after["redis"]["down"] is False
    # A URL only a dead worker knew keeps its counts, with no keys and not down.
    gone = merge_policy([other], [dead])["jwks"][url]
    assert (gone["fetches"], gone["keys"], gone["down"]) == (6, 0, False)


def test_nothing_reported_gives_zeros_the_metrics_can_render() -> None:
    merged = merge_policy([])
    assert merged == {
        "auth": {"verified": 0, "cache_hits": 0, "failures": {}, "headers_dropped": 0},
        "jwks": {},
        "rate_limits": [],
    }
    families = policy_families(merge_policy([{}]))  # a report from before reports had policies
    assert _family(families, "graylane_auth_tokens_total") == {("verified",): 0, ("cache_hit",): 0}


def test_the_sum_renders_as_the_single_process_families() -> None:
    a = _snapshot(verified=1, failures={"missing": 1}, limits=[_limit("api", "l", 2, 3)], redis=_redis(1))
    b = _snapshot(verified=2, failures={"missing": 2}, limits=[_limit("api", "l", 1, 1)], redis=_redis(2))
    families = policy_families(merge_policy([a, b]))
    assert _family(families, "graylane_auth_failures_total") == {("missing",): 3}
    decisions = _family(families, "graylane_rate_limit_decisions_total")
    assert decisions[("api", "l", "allowed")] == 3 and decisions[("api", "l", "limited")] == 4
    assert _family(families, "graylane_rate_limit_redis_errors_total") == {(): 3}


def test_a_report_carries_policy_and_health_and_an_older_one_still_decodes() -> None:
    from proxy.runtime.ipc import _decoder

    counters = RequestCounters().snapshot()
    policy = _snapshot(verified=2, limits=[_limit("api", "l", 1)])
    report = WorkerReport(0, 1, counters, {}, 0, 0, 0, {}, {}, policy, {"ejections": 1})
    decoded = _decoder.decode(encode(report)[4:])
    assert decoded.policy == policy and decoded.health == {"ejections": 1}
    # Without policy and health and what came after (a worker of the version before): zeros.
    fields = report.__struct_fields__
    older = msgspec.msgpack.encode(list(msgspec.structs.astuple(report))[: fields.index("policy")])
    assert _decoder.decode(older).policy == {} and _decoder.decode(older).health == {}


def test_health_counters_are_summed_and_render_with_the_shared_builder() -> None:
    monitor = HealthMonitor()
    monitor.outlier.ejections, monitor.outlier.skipped, monitor.changes = 2, 1, 5
    single = health_families(health_counts(monitor))
    summed = health_families(
        add_counts([health_counts(monitor), {"ejections": 1, "skipped": 0, "changes": 1}])
    )
    assert _family(single, "graylane_outlier_ejections_total") == {(): 2}
    assert _family(summed, "graylane_outlier_ejections_total") == {(): 3}
    assert _family(summed, "graylane_outlier_ejections_skipped_total") == {(): 1}
    assert _family(summed, "graylane_endpoint_health_changes_total") == {(): 6}
    assert [name for name, *_ in health_families({})] == [name for name, *_ in single]


# --- through a real supervisor and two workers -----------------------------------------------

SECRET = "not-a-real-secret-but-long-enough-for-hs256"
SENT = 24  # requests of each kind, each on a connection of its own


def _policy_config(endpoint: str, workers: int) -> str:
    config = json.loads(proxy_config([endpoint], admin=True, workers=workers, access_log={"enabled": False}))
    secure = {
        "name": "secure",
        "service": "api",
        "match": {"path": {"prefix": "/secure"}},
        "auth": {"jwt": {"algorithms": ["HS256"], "secret": SECRET}},
    }
    # 5 at once, then one an hour: nothing refills during the test.
    limit = {"name": "per-client", "rate": 1, "per": "1h", "burst": 5, "key": "client_ip"}
    config["routes"][0]["rate_limits"] = [limit]
    config["routes"].insert(0, secure)
    return json.dumps(config)


def _metrics(proxy: GraylaneProcess) -> str:
    return request(*proxy.admin_address, "GET", "/metrics", timeout=10).body.decode()


def _sample(text: str, name: str, labels: str) -> int | None:
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\d+)$", text, re.M)
    return int(found.group(1)) if found else None


def _families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+)", text, re.M))


@pytest.mark.integration
def test_two_workers_policy_counters_add_up_in_the_supervisors_metrics(
    backend: Callable[..., Backend],
    graylane: Callable[..., GraylaneProcess],
    raw_client: Callable[..., RawClient],
) -> None:
    upstream = backend("v1")
    proxy = graylane(_policy_config(upstream.endpoint, workers=2))

    def each_on_its_own_connection(path: str, headers: list[tuple[str, str]] | None = None) -> Counter[int]:
        # A new connection per request, so the kernel spreads them over both workers.
        clients = [raw_client(proxy.host, proxy.port) for _ in range(SENT)]
        return Counter(client.request("GET", path, headers).status for client in clients)

    limited = each_on_its_own_connection("/open")
    assert limited == {200: 5, 429: SENT - 5}, limited
    expiring = {"sub": "u1", "exp": int(time.time()) + 600}
    good = jwt.encode(expiring, SECRET, algorithm="HS256")
    forged = jwt.encode(expiring, "another-secret-just-as-long-as-the-first", algorithm="HS256")
    assert each_on_its_own_connection("/secure/a", [("Authorization", f"Bearer {good}")]) == {200: SENT}
    assert each_on_its_own_connection("/secure/b", [("Authorization", f"Bearer {forged}")]) == {401: SENT}
    assert each_on_its_own_connection("/secure/c") == {401: SENT}

    rl = "graylane_rate_limit_decisions_total"
    wanted = {
        (rl, 'limit="per-client",outcome="allowed",route="all"'): limited[200],
        (rl, 'limit="per-client",outcome="limited",route="all"'): limited[429],
        ("graylane_auth_failures_total", 'reason="bad_signature"'): SENT,
        ("graylane_auth_failures_total", 'reason="missing"'): SENT,
    }

    def settled() -> str | None:
        # Workers report once a second: poll until every sum reaches what the client saw.
        text = _metrics(proxy)
        return text if all(_sample(text, *key) == count for key, count in wanted.items()) else None

    text = poll_until(settled, timeout=15)
    tokens = [_sample(text, "graylane_auth_tokens_total", f'result="{r}"') for r in ("verified", "cache_hit")]
    assert sum(t or 0 for t in tokens) == SENT
    assert _sample(text, rl, 'limit="per-client",outcome="shadow_limited",route="all"') == 0
    assert re.search(r"^graylane_outlier_ejections_total 0$", text, re.M)


@pytest.mark.integration
def test_the_supervisor_shows_the_families_a_single_process_shows(
    backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess]
) -> None:
    upstream = backend("v1")
    names = {}
    for workers in (1, 2):
        proxy = graylane(_policy_config(upstream.endpoint, workers=workers))
        assert request(proxy.host, proxy.port, "GET", "/open", timeout=10).status == 200
        if workers == 2:
            # The policy families appear with the first reports (sent as each worker starts).
            poll_until(lambda p=proxy: "graylane_rate_limit_decisions_total{" in _metrics(p))
        names[workers] = _families(_metrics(proxy))
        proxy.stop(timeout=20)
    assert names[1] == names[2]
    assert {"graylane_auth_failures_total", "graylane_outlier_ejections_total"} <= names[2]
