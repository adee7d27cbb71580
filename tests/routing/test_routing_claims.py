"""JWT claims in routing: content rules on claims, a sticky claim, match + choose, claim headers stripped."""

from __future__ import annotations

import pytest

from proxy.errors import ConfigError
from proxy.routing import RouteTable

AUTH = {"jwt": {"algorithms": ["HS256"], "secret": "s" * 32, "forward_claims": {"sub": "X-User-ID"}}}


def gray_route(**extra: object) -> dict:
    return {
        "name": "shop",
        "service": "shop",
        "auth": AUTH,
        "rules": [
            {"match": {"claims": {"group": {"exact": "beta"}}}, "version": "v2"},
            {"match": {"claims": {"email": {"regex": r".*@staff\.test"}}}, "version": "v2"},
        ],
        **extra,
    }


def version(table: RouteTable, req, claims: dict | None) -> str:
    route, view = table.match(req, "10.0.0.1")
    return table.choose(route, view, req, "10.0.0.1", claims).version_name


def test_a_content_rule_on_a_claim_picks_the_version(make_config, make_request) -> None:
    table = RouteTable(make_config([gray_route()]))
    req = make_request(b"/")
    assert version(table, req, {"group": "beta"}) == "v2"
    assert version(table, req, {"group": "stable-users"}) == "v1"
    assert version(table, req, {"email": "bob@staff.test"}) == "v2"
    assert version(table, req, None) == "v1"  # no token (allow_missing): no claims
    assert table.decide(req, "10.0.0.1", {"group": "beta"}).version_name == "v2"


def test_a_list_claim_matches_when_any_item_does(make_config, make_request) -> None:
    rules = [
        {"match": {"claims": {"groups": {"exact": "beta"}}}, "version": "v2"},
        {"match": {"claims": {"roles": {"prefix": "canary-"}}}, "version": "v2"},
        {"match": {"claims": {"tier": {"present": True}}}, "version": "v2"},
    ]
    table = RouteTable(make_config([{"name": "r", "service": "shop", "auth": AUTH, "rules": rules}]))
    req = make_request(b"/")
    assert version(table, req, {"groups": ("staff", "beta")}) == "v2"
    assert version(table, req, {"groups": ("staff",)}) == "v1"
    assert version(table, req, {"roles": ("x", "canary-eu")}) == "v2"
    assert version(table, req, {"tier": "gold"}) == "v2"
    assert version(table, req, {"other": "x"}) == "v1"


def test_absent_claim_rule(make_config, make_request) -> None:
    rules = [{"match": {"claims": {"tier": {"present": False}}}, "version": "v2"}]
    table = RouteTable(make_config([{"name": "r", "service": "shop", "auth": AUTH, "rules": rules}]))
    assert version(table, make_request(b"/"), {"sub": "a"}) == "v2"
    assert version(table, make_request(b"/"), {"tier": "gold"}) == "v1"


def test_a_sticky_claim_keeps_a_user_on_one_version(make_config, make_request) -> None:
    route = {
        "name": "r",
        "service": "shop",
        "auth": AUTH,
        "split": [{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}],
        "sticky": {"claim": "sub"},
    }
    table = RouteTable(make_config([route]), seed=1)
    req = make_request(b"/")
    seen = {}
    for user in (f"user-{i}" for i in range(200)):
        first = table.decide(req, "10.0.0.1", {"sub": user})
        assert first.sticky_hash >= 0
        assert all(
            table.decide(req, "10.0.0.9", {"sub": user}).version_name == first.version_name for _ in range(3)
        )
        seen[user] = first.version_name
    assert set(seen.values()) == {"v1", "v2"}
    assert table.decide(req, "10.0.0.1", None).sticky_hash == -1  # no claim: a random draw


def test_forwarded_claim_headers_sent_by_the_client_are_removed(make_config) -> None:
    table = RouteTable(make_config([gray_route()]))
    assert b"x-user-id" in table.targets[0].request_plan.remove
    no_token = dict(AUTH["jwt"], forward_token=False, header="X-Token")
    table = RouteTable(make_config([{"name": "r", "service": "shop", "auth": {"jwt": no_token}}]))
    assert {b"x-user-id", b"x-token"} <= table.targets[0].request_plan.remove


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        (
            {"name": "r", "service": "shop", "auth": AUTH, "match": {"claims": {"g": {"exact": "b"}}}},
            "rules only",
        ),
        (
            {
                "name": "r",
                "service": "shop",
                "rules": [{"match": {"claims": {"g": {"exact": "b"}}}, "version": "v2"}],
            },
            "needs auth.jwt",
        ),
        (
            {
                "name": "r",
                "service": "shop",
                "split": [{"version": "v1", "weight": 1}],
                "sticky": {"claim": "sub"},
            },
            "needs auth.jwt",
        ),
        (
            {
                "name": "r",
                "service": "shop",
                "auth": AUTH,
                "rules": [{"match": {"claims": {"g": {}}}, "version": "v2"}],
            },
            "exactly one of",
        ),
    ],
)
def test_claims_misused_are_config_problems(make_config, route: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        RouteTable(make_config([route]))
