"""What compiling a config into a route table refuses, and what the table tells the rest of graylane."""

from __future__ import annotations

import pytest

from proxy.errors import ConfigError
from proxy.routing import RouteTable


def problems_of(config) -> list[str]:
    with pytest.raises(ConfigError) as info:
        RouteTable(config)
    return info.value.problems


def route(**fields) -> dict:
    return {"name": "r", "service": "shop", **fields}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"split": [{"version": "v1", "weight": 1}, {"version": "v1", "weight": 2}]},
            "routes[0].split[1].version: 'v1' is already in split[0]",
        ),
        (
            {"split": [{"version": "v9", "weight": 1}]},
            "routes[0].split[0].version: 'v9' is not a version of 'shop'",
        ),
        ({"split": [{"version": "v1", "weight": -1}]}, "routes[0].split[0].weight: must be >= 0, not -1"),
        ({"split": [{"version": "v1", "weight": 0}]}, "routes[0].split: the weights are all zero"),
        (
            {"rules": [{"match": {}, "version": "nope"}]},
            "routes[0].rules[0].version: 'nope' is not a version",
        ),
        ({"mirror": {"version": "nope"}}, "routes[0].mirror.version: 'nope' is not a version"),
        ({"mirror": {"version": "v2", "percent": 101}}, "routes[0].mirror.percent: must be from 0 to 100"),
        ({"service": "nope"}, "routes[0].service: no service named 'nope'"),
        ({"sticky": {"header": "X-U", "client_ip": True}}, "routes[0].sticky: set exactly one of"),
        ({"sticky": {}}, "routes[0].sticky: set exactly one of"),
        ({"match": {"path": {"prefix": "api"}}}, "routes[0].match.path.prefix: must start with '/'"),
        ({"match": {"path": {"exact": "/a", "prefix": "/b"}}}, "routes[0].match.path: set exactly one of"),
        ({"match": {"path": {"regex": "(/a"}}}, "routes[0].match.path.regex: invalid regex"),
        ({"match": {"headers": {"X-A": {}}}}, "routes[0].match.headers.X-A: set exactly one of"),
        (
            {"match": {"headers": {"X-A": {"regex": "[a"}}}},
            "routes[0].match.headers.X-A.regex: invalid regex",
        ),
        ({"match": {"host": ["a.*.com"]}}, "routes[0].match.host[0]: not a host name"),
        ({"match": {"host": ["example.com:80"]}}, "routes[0].match.host[0]: not a host name"),
        ({"match": {"methods": ["G T"]}}, "routes[0].match.methods[0]: not a valid method"),
        (
            {"rules": [{"match": {"cookies": {"c": {"prefix": "a", "exact": "b"}}}, "version": "v2"}]},
            "routes[0].rules[0].match.cookies.c: set exactly one of",
        ),
    ],
)
def test_route_problems_name_their_path(make_config, fields, expected):
    problems = problems_of(make_config([route(**fields)]))
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_every_problem_is_reported_at_once_with_the_source(make_config):
    config = make_config(
        [
            route(split=[{"version": "v9", "weight": 1}]),
            route(match={"path": {"regex": "("}}),
        ]
    )
    with pytest.raises(ConfigError) as info:
        RouteTable(config, source="conf/gray.yaml")
    assert [line.split(": ")[1] for line in info.value.problems] == [
        "routes[0].split[0].version",
        "routes[1].name",
        "routes[1].match.path.regex",
    ]
    assert all(line.startswith("conf/gray.yaml: ") for line in info.value.problems)


def test_service_problems(make_config):
    services = {
        "shop": {"stable": "v3", "versions": {"v1": {"endpoints": ["nohost"]}}},
        "empty": {"versions": {}},
    }
    problems = problems_of(make_config([], services=services))
    assert problems[0].startswith("services.shop.versions.v1.endpoints[0]: ")
    assert problems[1].startswith("services.shop.stable: 'v3' is not a version of 'shop'")
    assert problems[2].startswith("services.empty.versions: a service needs at least one version")


def test_bad_named_headers(make_config):
    problems = problems_of(
        make_config(metadata={"header": "X Meta"}, observability={"version_header": "Content-Length"})
    )
    assert problems[0].startswith("metadata.header: not a valid header name")
    assert problems[1].startswith("observability.version_header: Content-Length is managed by the proxy")


def test_what_the_table_exposes(make_config):
    routes = [
        route(
            match={"headers": {"X-Tenant": {"exact": "a"}}, "cookies": {"c": {"present": True}}},
            sticky={"header": "X-User-ID"},
        ),
        {"name": "b", "service": "shop", "mirror": {"version": "v2", "max_pending": 7}},
    ]
    table = RouteTable(make_config(routes))
    assert table.header_names == frozenset({b"x-tenant", b"cookie", b"x-user-id"})
    assert table.route_names == ("r", "b")
    assert table.versions == [("shop", "v1"), ("shop", "v2")]
    assert [e.address for e in table.group("shop", "v1").endpoints] == ["10.0.1.1:8080", "10.0.1.2:8080"]
    assert table.routes[1].mirror.max_pending == 7
    assert table.stats.as_dict() == {
        "metadata_invalid": 0,
        "metadata_too_large": 0,
        "empty_version_fallbacks": 0,
    }
