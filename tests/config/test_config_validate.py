"""Cross-field checks on Config objects built in code (no files)."""

from __future__ import annotations

import msgspec
import pytest

from proxy.config.schema import (
    Config,
    Duration,
    HeaderOps,
    Listener,
    Match,
    Mirror,
    Observability,
    PathMatch,
    Pool,
    Route,
    Service,
    SplitEntry,
    Sticky,
    StringMatch,
    Version,
)
from proxy.config.validate import CHECKS, find_problems, validate

GOOD = Config(
    version=1,
    listeners=[Listener(address="127.0.0.1:8080")],
    services={"api": Service(versions={"v1": Version(endpoints=["127.0.0.1:9001"]), "v2": Version()})},
    routes=[Route(name="all", service="api", split=[SplitEntry(version="v1", weight=1)])],
)


def _with_route(**changes: object) -> Config:
    return msgspec.structs.replace(GOOD, routes=[msgspec.structs.replace(GOOD.routes[0], **changes)])


def test_good_config_has_no_problems() -> None:
    assert validate(GOOD) == []


def test_problems_are_formatted_path_colon_message() -> None:
    config = _with_route(service="nope")
    assert validate(config) == ["routes[0].service: no service named 'nope' (defined: api)"]


def test_every_check_is_a_function_in_the_table() -> None:
    assert all(callable(check) for check in CHECKS)
    assert len(set(CHECKS)) == len(CHECKS)


@pytest.mark.parametrize(
    ("config", "path", "reason"),
    [
        (
            _with_route(sticky=Sticky(header="X User")),
            ("routes", 0, "sticky", "header"),
            "not a valid header name",
        ),
        (
            _with_route(sticky=Sticky(cookie="a;b")),
            ("routes", 0, "sticky", "cookie"),
            "not a valid cookie name",
        ),
        (_with_route(sticky=Sticky()), ("routes", 0, "sticky"), "(found none)"),
        (
            _with_route(match=Match(cookies={"a b": StringMatch(present=False)})),
            ("routes", 0, "match", "cookies", "a b"),
            "not a valid cookie name",
        ),
        (
            _with_route(match=Match(host=["api.*.com"])),
            ("routes", 0, "match", "host", 0),
            "'*.' only at the start",
        ),
        (_with_route(match=Match(host=[""])), ("routes", 0, "match", "host", 0), "not a host name"),
        (_with_route(match=Match(path=PathMatch())), ("routes", 0, "match", "path"), "(found none)"),
        (
            _with_route(match=Match(query={"q": StringMatch(regex="[")})),
            ("routes", 0, "match", "query", "q", "regex"),
            "invalid regex '['",
        ),
        (
            _with_route(response_headers=HeaderOps(remove=["Bad:Name"])),
            ("routes", 0, "response_headers", "remove", 0),
            "not a valid header name",
        ),
        (
            _with_route(request_headers=HeaderOps(add={"X-A": "a\0"})),
            ("routes", 0, "request_headers", "add", "X-A"),
            "CR, LF or NUL",
        ),
        (
            _with_route(mirror=Mirror(version="v2", max_pending=0)),
            ("routes", 0, "mirror", "max_pending"),
            "> 0",
        ),
        (
            _with_route(mirror=Mirror(version="v2", percent=-1)),
            ("routes", 0, "mirror", "percent"),
            "from 0 to 100",
        ),
        (_with_route(name=""), ("routes", 0, "name"), "must not be empty"),
        (
            msgspec.structs.replace(GOOD, observability=Observability(version_header="X Version")),
            ("observability", "version_header"),
            "not a valid header name",
        ),
        (
            msgspec.structs.replace(GOOD, upstream=Pool(connect_timeout=Duration(0))),
            ("upstream", "connect_timeout"),
            "must be > 0",
        ),
        (msgspec.structs.replace(GOOD, upstream=Pool(max_idle=-1)), ("upstream", "max_idle"), "must be >= 0"),
        (
            msgspec.structs.replace(
                GOOD, listeners=[Listener(address="[::1]:80"), Listener(address="[::1]:80")]
            ),
            ("listeners", 1, "address"),
            "already used by listeners[0]",
        ),
        (
            msgspec.structs.replace(
                GOOD, listeners=[Listener(address="Host:80"), Listener(address="host:80")]
            ),
            ("listeners", 1, "address"),
            "already used by listeners[0]",
        ),
    ],
)
def test_check(config: Config, path: tuple, reason: str) -> None:
    problems = find_problems(config)
    assert [p.path for p in problems] == [path], problems
    assert reason in problems[0].message


@pytest.mark.parametrize(
    "listeners",
    [
        ["127.0.0.1:0", "127.0.0.1:0"],  # each gets its own fresh port
        ["127.0.0.1:80", "127.0.0.2:80"],
        ["127.0.0.1:80", "127.0.0.1:81"],
    ],
)
def test_listeners_that_do_not_clash(listeners: list[str]) -> None:
    config = msgspec.structs.replace(GOOD, listeners=[Listener(address=a) for a in listeners])
    assert validate(config) == []


def test_allowed_edge_values() -> None:
    config = _with_route(
        split=[SplitEntry(version="v1", weight=0), SplitEntry(version="v2", weight=3)],
        sticky=Sticky(client_ip=True),
        mirror=Mirror(version="v2", percent=0),
        match=Match(
            host=["*.example.com", "example.com"],
            methods=["GET", "PURGE"],
            headers={"X-Absent": StringMatch(present=False)},
        ),
    )
    config = msgspec.structs.replace(config, upstream=Pool(max_idle=0, request_timeout=Duration(0)))
    assert validate(config) == []
