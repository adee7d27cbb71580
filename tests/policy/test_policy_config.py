"""The policy sections of a config: what validation accepts and what it names as a problem."""

from __future__ import annotations

import json

import pytest
from policy_support import SECRET, KeyPair, config_problems, make_config

from proxy.config.schema import Auth, RateLimit, RedisSettings
from proxy.policy import PolicyRuntime

HS = {"algorithms": ["HS256"], "secret": SECRET}


def route(**fields: object) -> dict:
    return {"name": "api", "service": "shop", **fields}


def test_a_full_policy_config_loads() -> None:
    config = make_config(
        [
            route(
                auth={
                    "jwt": {
                        "algorithms": ["RS256", "ES256"],
                        "issuers": ["https://idp.test"],
                        "audiences": ["shop"],
                        "leeway": "10s",
                        "required_claims": ["exp", "sub"],
                        "jwks_url": "https://idp.test/.well-known/jwks.json",
                        "jwks_refresh": "5m",
                        "jwks_cooldown": "30s",
                        "cookie": "session",
                        "forward_claims": {"sub": "X-User-ID"},
                    }
                },
                rate_limits=[
                    {"rate": 100, "burst": 20, "key": "claim:sub", "backend": "redis"},
                    {"rate": 1000, "per": "1m", "key": "header:X-Api-Key", "shadow": True},
                    {
                        "rate": 5,
                        "key": "route",
                        "name": "everyone",
                        "backend": "redis",
                        "on_redis_error": "fail_closed",
                    },
                ],
            )
        ],
        redis={"url": "redis://127.0.0.1:6379/1", "timeout": "100ms"},
    )
    api = config.routes[0]
    assert isinstance(api.auth, Auth) and api.auth.jwt.leeway == 10.0
    assert all(isinstance(limit, RateLimit) for limit in api.rate_limits)
    assert api.rate_limits[1].per == 60.0
    assert isinstance(config.redis, RedisSettings) and config.redis.timeout == 0.1
    table = PolicyRuntime().compile(config)
    assert [limit.name for limit in table.routes[0].remote] == ["api/0", "everyone"]


@pytest.mark.parametrize(
    ("jwt", "problem"),
    [
        ({"algorithms": ["none"], "secret": SECRET}, '"none" is never accepted'),
        ({"algorithms": ["HS999"], "secret": SECRET}, "'HS999' is not one of"),
        ({"algorithms": []}, "at least one algorithm"),
        ({"algorithms": ["RS256"]}, "set a key source"),
        ({"algorithms": ["RS256"], "secret": SECRET}, "a secret verifies HS256/HS384/HS512 only"),
        ({"algorithms": ["HS256"], "secret": "short"}, "at least 32 bytes"),
        ({"algorithms": ["HS512"], "secret": SECRET}, "at least 64 bytes"),
        ({"algorithms": ["HS256"], "jwks_url": "https://idp/jwks"}, "need a secret"),
        ({"algorithms": ["HS256", "RS256"], "secret": SECRET}, "RS256 need public_keys"),
        ({"algorithms": ["RS256"], "jwks_url": "ftp://idp/jwks"}, "not an http:// or https:// URL"),
        ({**HS, "jwks_cooldown": 0}, "jwks_cooldown: must be > 0"),
        ({**HS, "header": "X-Token", "cookie": "t"}, "at most one of header, cookie"),
        ({**HS, "header": "X Token"}, "not a valid header name"),
        ({**HS, "forward_claims": {"sub": "Content-Length"}}, "cannot carry a claim"),
        ({**HS, "forward_claims": {"sub": "bad header"}}, "not a valid header name"),
        ({**HS, "cache_size": -1}, "must be >= 0"),
        ({**HS, "realm": 'a"b'}, "must not contain quotes"),
        ({**HS, "public_keys": ["/nonexistent/key.pem"]}, "cannot read"),
        ({**HS, "unknown": 1}, "unknown field"),
    ],
)
def test_jwt_problems(jwt: dict, problem: str) -> None:
    problems = config_problems([route(auth={"jwt": jwt})])
    assert any(problem in p for p in problems), problems


def test_a_key_file_that_is_not_a_key(tmp_path, rsa_key: KeyPair) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "kid": "x"}]}))
    good = tmp_path / "good.pem"
    good.write_bytes(rsa_key.public_pem)
    problems = config_problems(
        [
            route(
                auth={
                    "jwt": {
                        "algorithms": ["RS256"],
                        "public_keys": [str(bad), str(good)],
                        "jwks_file": str(jwks),
                    }
                }
            )
        ]
    )
    assert len(problems) == 2
    assert "public_keys[0]" in problems[0] and "not a PEM public key" in problems[0]
    assert "jwks_file" in problems[1] and "no usable key" in problems[1]


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        ({"rate": 0}, "rate: must be > 0"),
        ({"rate": 1, "per": 0}, "per: must be > 0"),
        ({"rate": 1, "burst": 0}, "burst: must be >= 1"),
        ({"rate": 1, "key": "cookie:x"}, "is not one of client_ip, route, header:NAME, claim:NAME"),
        ({"rate": 1, "key": "header:"}, "is not one of"),
        ({"rate": 1, "key": "header:a b"}, "not a valid header name"),
        ({"rate": 1, "key": "claim:sub"}, "a claim key needs auth.jwt"),
        ({"rate": 1, "backend": "redis"}, "needs the top-level redis section"),
        ({"rate": 1, "on_redis_error": "fail_closed"}, "applies to backend redis only"),
        ({"rate": 1, "name": 'a"b'}, "must be printable, without quotes"),
        ({"rate": 1, "backend": "memcached"}, "is not one of 'local', 'redis'"),
    ],
)
def test_rate_limit_problems(limit: dict, problem: str) -> None:
    problems = config_problems([route(rate_limits=[limit])])
    assert any(problem in p for p in problems), problems


def test_limit_names_are_unique_in_a_route() -> None:
    problems = config_problems([route(rate_limits=[{"rate": 1, "name": "x"}, {"rate": 2, "name": "x"}])])
    assert problems == ["routes[0].rate_limits[1].name: 'x' is already the name of rate_limits[0]"]


@pytest.mark.parametrize(
    ("redis", "problem"),
    [
        ({"url": "http://localhost:6379"}, "is not a redis://, rediss:// or unix:// URL"),
        ({"timeout": 0}, "redis.timeout: must be > 0"),
        ({"max_connections": 0}, "must be >= 1"),
    ],
)
def test_redis_problems(redis: dict, problem: str) -> None:
    assert any(problem in p for p in config_problems([route()], redis=redis))


def test_claims_in_the_route_match_or_without_auth_are_problems() -> None:
    problems = config_problems(
        [
            route(auth={"jwt": HS}, match={"claims": {"group": {"exact": "beta"}}}),
            {
                "name": "b",
                "service": "shop",
                "rules": [{"match": {"claims": {"group": {"exact": "beta"}}}, "version": "v2"}],
                "sticky": {"claim": "sub"},
                "split": [{"version": "v1", "weight": 1}, {"version": "v2", "weight": 1}],
            },
        ]
    )
    assert problems == [
        "routes[0].match.claims: claims can be matched in rules only (auth runs once the route is chosen)",
        "routes[1].rules[0].match.claims: needs auth.jwt on the route",
        "routes[1].sticky.claim: needs auth.jwt on the route",
    ]


def test_a_sticky_claim_is_one_source() -> None:
    sticky = {"claim": "sub", "header": "X-User"}
    problems = config_problems([route(auth={"jwt": HS}, sticky=sticky)])
    assert problems == [
        "routes[0].sticky: set exactly one of header, cookie, client_ip, claim (found 2: header, claim)"
    ]
