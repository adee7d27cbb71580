"""Header plans per (route, version): what is removed and what is appended when forwarding."""

from __future__ import annotations

import pytest

from proxy.config.schema import HeaderOps
from proxy.errors import ConfigError
from proxy.routing import EMPTY_PLAN, HeaderPlan, RouteTable
from proxy.routing.plans import build_plan, compile_ops
from proxy.routing.problems import Problems

IP = "10.9.9.9"


def ops(**fields) -> list:
    problems = Problems()
    out = compile_ops(HeaderOps(**fields), ("x",), problems)
    assert problems.lines == []
    return out


def test_set_replaces_add_appends_remove_drops():
    plan = build_plan([ops(set={"X-Env": "prod"}, add={"Via-Gray": "1"}, remove=["X-Debug"])])
    assert plan == HeaderPlan(frozenset({b"x-env", b"x-debug"}), b"X-Env: prod\r\nVia-Gray: 1\r\n")


def test_version_ops_come_after_route_ops():
    route = ops(set={"X-Env": "route", "X-Keep": "k"}, add={"X-Tag": "r"})
    version = ops(set={"x-env": "version"}, add={"X-Tag": "v"}, remove=["X-Keep"])
    plan = build_plan([route, version])
    assert plan.extra == b"X-Tag: r\r\nx-env: version\r\nX-Tag: v\r\n"
    assert plan.remove == frozenset({b"x-env", b"x-keep"})


def test_remove_in_a_later_step_drops_an_earlier_add():
    plan = build_plan([ops(add={"X-Tag": "r"}), ops(remove=["x-tag"])])
    assert plan == HeaderPlan(frozenset({b"x-tag"}), b"")


def test_no_ops_is_the_empty_plan():
    assert build_plan([[], ops()]) is EMPTY_PLAN


def plan_config(make_config, **extra):
    services = {
        "shop": {
            "versions": {
                "v1": {"endpoints": ["10.0.1.1:80"]},
                "v2": {
                    "endpoints": ["10.0.2.1:80"],
                    "request_headers": {"set": {"X-Env": "canary"}},
                    "response_headers": {"add": {"X-Served-By": "v2"}},
                },
            }
        }
    }
    route = {
        "name": "r",
        "service": "shop",
        "split": [{"version": "v1", "weight": 1}, {"version": "v2", "weight": 0}],
        "rules": [{"match": {"headers": {"x-canary": {"present": True}}}, "version": "v2"}],
        "request_headers": {"set": {"X-Env": "prod"}, "remove": ["X-Internal"]},
        "response_headers": {"remove": ["Server"]},
    }
    return make_config(
        [route, {**route, "name": "plain", "request_headers": {}, "response_headers": {}}],
        services=services,
        **extra,
    )


def test_plans_per_route_and_version(make_config, make_request):
    table = RouteTable(
        plan_config(
            make_config,
            metadata={"strip": True},
            observability={"version_header": "X-Graylane-Version"},
        )
    )
    v1 = table.decide(make_request(b"/"), IP)
    v2 = table.decide(make_request(b"/", headers=[(b"x-canary", b"1")]), IP)
    assert v1.request_plan == HeaderPlan(
        frozenset({b"x-request-metadata", b"x-env", b"x-internal"}), b"X-Env: prod\r\n"
    )
    assert v2.request_plan == HeaderPlan(
        frozenset({b"x-request-metadata", b"x-env", b"x-internal"}), b"X-Env: canary\r\n"
    )
    assert v1.response_plan == HeaderPlan(
        frozenset({b"server", b"x-graylane-version"}), b"X-Graylane-Version: v1\r\n"
    )
    assert v2.response_plan == HeaderPlan(
        frozenset({b"server", b"x-graylane-version"}), b"X-Served-By: v2\r\nX-Graylane-Version: v2\r\n"
    )


def test_defaults_give_empty_plans_shared_between_routes(make_config, make_request):
    table = RouteTable(
        make_config(
            [
                {"name": "a", "service": "shop", "match": {"path": {"prefix": "/a"}}},
                {"name": "b", "service": "shop"},
            ]
        )
    )
    a, b = table.decide(make_request(b"/a"), IP), table.decide(make_request(b"/b"), IP)
    assert a.request_plan is b.request_plan is EMPTY_PLAN
    assert a.response_plan is EMPTY_PLAN


def test_equal_plans_are_one_object(make_config, make_request):
    route = {
        "name": "a",
        "service": "shop",
        "match": {"path": {"prefix": "/a"}},
        "request_headers": {"set": {"X-A": "1"}},
    }
    table = RouteTable(make_config([route, {**route, "name": "b", "match": {}}]))
    a, b = table.decide(make_request(b"/a"), IP), table.decide(make_request(b"/b"), IP)
    assert (a.route_name, b.route_name) == ("a", "b")
    assert a.request_plan is b.request_plan


@pytest.mark.parametrize(
    ("ops_config", "path"),
    [
        ({"set": {"Content-Length": "0"}}, "routes[0].request_headers.set.Content-Length"),
        ({"remove": ["Transfer-Encoding"]}, "routes[0].request_headers.remove[0]"),
        ({"add": {"Connection": "close"}}, "routes[0].request_headers.add.Connection"),
        ({"set": {"X-A": "a\r\nX-Injected: 1"}}, "routes[0].request_headers.set.X-A"),
        ({"set": {"Bad Name": "1"}}, 'routes[0].request_headers.set["Bad Name"]'),
    ],
)
def test_bad_header_ops_are_config_errors(make_config, ops_config, path):
    with pytest.raises(ConfigError) as info:
        RouteTable(make_config([{"name": "r", "service": "shop", "request_headers": ops_config}]))
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(path + ": ")
