"""A route's policies compiled from a config: auth then local limits, 429s and their headers, reloads."""

from __future__ import annotations

import re
import timeit
from typing import Any

import pytest
from policy_support import SECRET, bearer, claims, head, make_config, sign

from proxy.errors import RateLimited, Unauthorized
from proxy.policy import PolicyRuntime, PolicyTable
from proxy.policy.limits import parse_key, redis_key

AUTH = {"jwt": {"algorithms": ["HS256"], "secret": SECRET, "issuers": [], "audiences": []}}


def compile_routes(runtime: PolicyRuntime, *routes: dict[str, Any]) -> PolicyTable:
    return runtime.compile(make_config([{"service": "shop", **route} for route in routes]))


def refusal(policy: Any, req: Any, now: float, client_ip: str = "10.0.0.1") -> RateLimited:
    with pytest.raises(RateLimited) as info:
        policy.admit(req, client_ip, now)
    assert info.value.status == 429 and info.value.flag == "RL"
    return info.value


def test_routes_without_policies_have_none() -> None:
    table = compile_routes(
        PolicyRuntime(), {"name": "plain"}, {"name": "limited", "rate_limits": [{"rate": 5}]}
    )
    assert table.routes[0] is None and table.routes[1] is not None
    assert not table.empty
    assert compile_routes(PolicyRuntime(), {"name": "plain"}).empty


def test_a_429_carries_retry_after_and_the_ratelimit_headers() -> None:
    table = compile_routes(
        PolicyRuntime(), {"name": "api", "rate_limits": [{"rate": 100, "burst": 2, "name": "per-ip"}]}
    )
    policy = table.routes[0]
    for _ in range(2):
        assert policy.admit(head(), "10.0.0.1", 50.0) is None
    error = refusal(policy, head(), 50.0)
    assert error.reason == "per-ip"
    assert error.headers == (
        b'Retry-After: 1\r\nRateLimit-Policy: "per-ip";q=100;w=1\r\nRateLimit: "per-ip";r=0;t=1\r\n'
    )
    assert policy.admit(head(), "10.0.0.2", 50.0) is None  # another client, another bucket
    assert policy.admit(head(), "10.0.0.1", 50.01) is None  # refilled


def test_keys_by_header_route_and_claim() -> None:
    table = compile_routes(
        PolicyRuntime(),
        {"name": "h", "rate_limits": [{"rate": 1, "key": "header:X-Api-Key"}]},
        {"name": "r", "rate_limits": [{"rate": 1, "key": "route"}]},
        {"name": "c", "auth": AUTH, "rate_limits": [{"rate": 1, "key": "claim:sub"}]},
    )
    by_header, by_route, by_claim = table.routes
    assert by_header.admit(head(headers=[("X-Api-Key", "a")]), "1.1.1.1", 0.0) is None
    assert by_header.admit(head(headers=[("X-Api-Key", "b")]), "1.1.1.1", 0.0) is None
    refusal(by_header, head(headers=[("X-Api-Key", "a")]), 0.0, "2.2.2.2")
    # requests without the header share one bucket: leaving it out does not escape the limit
    assert by_header.admit(head(), "1.1.1.1", 0.0) is None
    refusal(by_header, head(), 0.0, "3.3.3.3")
    assert by_route.admit(head(), "1.1.1.1", 0.0) is None
    refusal(by_route, head(), 0.0, "9.9.9.9")
    alice, bob = sign(SECRET, "HS256", claims(sub="alice")), sign(SECRET, "HS256", claims(sub="bob"))
    assert by_claim.admit(bearer(alice), "1.1.1.1", 0.0).claims["sub"] == "alice"
    assert by_claim.admit(bearer(bob), "1.1.1.1", 0.0).claims["sub"] == "bob"
    refusal(by_claim, bearer(alice), 0.0, "4.4.4.4")


def test_authentication_runs_first_and_a_401_takes_no_token() -> None:
    table = compile_routes(PolicyRuntime(), {"name": "api", "auth": AUTH, "rate_limits": [{"rate": 1}]})
    policy = table.routes[0]
    for _ in range(3):
        with pytest.raises(Unauthorized):
            policy.admit(head(), "1.1.1.1", 0.0)
    assert policy.admit(bearer(sign(SECRET, "HS256")), "1.1.1.1", 0.0) is not None
    assert policy.local[0].counters.as_dict() == {
        "allowed": 1, "limited": 0, "shadow_limited": 0, "unavailable": 0
    }  # fmt: skip


def test_several_limits_admit_all_or_take_nothing() -> None:
    table = compile_routes(
        PolicyRuntime(),
        {
            "name": "api",
            "rate_limits": [
                {"rate": 1, "burst": 5, "name": "ip"},
                {"rate": 1, "burst": 1, "key": "header:X-Api-Key", "name": "key"},
            ],
        },
    )
    policy = table.routes[0]
    ip, key = policy.local
    req = head(headers=[("X-Api-Key", "k")])
    assert policy.admit(req, "1.1.1.1", 0.0) is None
    assert refusal(policy, req, 0.0).reason == "key"
    assert ip.buckets.remaining("1.1.1.1", 0.0) == 4  # the ip limit's token was given back
    assert (ip.counters.allowed, key.counters.limited) == (1, 1)


def test_shadow_mode_counts_and_limits_nothing() -> None:
    table = compile_routes(PolicyRuntime(), {"name": "api", "rate_limits": [{"rate": 1, "shadow": True}]})
    policy = table.routes[0]
    for _ in range(10):
        assert policy.admit(head(), "1.1.1.1", 0.0) is None
    assert policy.local[0].counters.as_dict() == {
        "allowed": 1, "limited": 0, "shadow_limited": 9, "unavailable": 0
    }  # fmt: skip


def test_a_reload_keeps_buckets_and_counters_of_unchanged_limits() -> None:
    runtime = PolicyRuntime()
    route = {"name": "api", "rate_limits": [{"rate": 1, "burst": 1}]}
    first = compile_routes(runtime, route).routes[0]
    first.admit(head(), "1.1.1.1", 0.0)
    second = compile_routes(runtime, route).routes[0]
    assert second.local[0].buckets is first.local[0].buckets
    refusal(second, head(), 0.0, "1.1.1.1")
    changed = compile_routes(runtime, {"name": "api", "rate_limits": [{"rate": 2, "burst": 1}]}).routes[0]
    assert changed.admit(head(), "1.1.1.1", 0.0) is None  # new shape, new buckets
    assert changed.local[0].counters is first.local[0].counters
    assert runtime.snapshot()["rate_limits"] == [
        {"route": "api", "limit": "api/0", "allowed": 2, "limited": 1, "shadow_limited": 0, "unavailable": 0}
    ]


def test_the_snapshot_has_every_counter() -> None:
    runtime = PolicyRuntime()
    policy = compile_routes(runtime, {"name": "api", "auth": AUTH}).routes[0]
    token = sign(SECRET, "HS256")
    policy.admit(bearer(token), "1.1.1.1", 0.0)
    policy.admit(bearer(token), "1.1.1.1", 0.0)
    with pytest.raises(Unauthorized):
        policy.admit(head(), "1.1.1.1", 0.0)
    snap = runtime.snapshot()
    assert snap["auth"]["verified"] == 1 and snap["auth"]["cache_hits"] == 1
    assert snap["auth"]["failures"]["missing"] == 1
    assert snap["jwks"] == {} and "redis" not in snap


def test_cost_of_a_cached_jwt_and_a_local_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured and printed (machines differ): the synchronous policy work of one request."""
    runtime = PolicyRuntime()
    table = compile_routes(
        runtime,
        {"name": "jwt", "auth": AUTH},
        {"name": "limit", "rate_limits": [{"rate": 1e9, "burst": 1_000_000}]},
        {
            "name": "both",
            "auth": AUTH,
            "rate_limits": [{"rate": 1e9, "burst": 1_000_000, "key": "claim:sub"}],
        },
    )
    req = bearer(sign(SECRET, "HS256"))
    lines = []
    for policy in table.routes:
        policy.admit(req, "10.1.2.3", 1.0)
        number = 50_000
        best = min(timeit.repeat(lambda p=policy: p.admit(req, "10.1.2.3", 1.0), number=number, repeat=5))
        lines.append(f"policy cost: {best / number * 1e9:6.0f} ns  {policy.route_name}")
    assert all(re.search(r"\d+ ns", line) for line in lines)
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_limit_keys_parse() -> None:
    assert parse_key("client_ip") == ("client_ip", "")
    assert parse_key("route") == ("route", "")
    assert parse_key("header:X-Api-Key") == ("header", "X-Api-Key")
    assert parse_key("claim:realm_access.roles") == ("claim", "realm_access.roles")
    for bad in ("ip", "header:", "claim: sub", "cookie:x", ""):
        with pytest.raises(ValueError):
            parse_key(bad)


def test_redis_keys_are_bounded() -> None:
    assert redis_key(b"p:", "10.0.0.1") == b"p:10.0.0.1"
    assert redis_key(b"p:", b"k") == b"p:k"
    long = redis_key(b"p:", "x" * 1000)
    assert long.startswith(b"p:sha256:") and len(long) == len(b"p:sha256:") + 64
    assert long == redis_key(b"p:", "x" * 1000) != redis_key(b"p:", "x" * 999)
